// A log view that stays fast on huge logs: every line is kept in an array, but only the lines in (and just around)
// the visible window are in the DOM. Lines have one fixed height, so a line's position is its index times it.
import { ansiLine, PLAIN } from './ansi.js'

/** Must match `.log .ln` height in style.css. */
const LINE_HEIGHT = 18
/** Lines rendered above and below the window, so a fast scroll shows no blank band. */
const OVERSCAN = 30
const HEADER = /^--- (step \d+\/\d+: |attempt )/

export class LogView {
  constructor (element, { onFollowChange = () => {} } = {}) {
    this.element = element
    this.lines = []
    /** The ANSI state each line starts in (shared objects: a colourless log holds one). */
    this.states = []
    this.partial = ''
    this.endState = PLAIN
    this.following = true
    this.onFollowChange = onFollowChange
    this.spacer = document.createElement('div')
    this.rows = document.createElement('div')
    this.rows.className = 'rows'
    element.append(this.spacer, this.rows)
    this.frame = 0
    this.shown = ''
    this.emptyText = 'No output yet.'
    element.addEventListener('scroll', () => {
      const atBottom = element.scrollTop + element.clientHeight >= element.scrollHeight - LINE_HEIGHT
      // Scrolling up stops following; scrolling back to the bottom starts it again, as in a terminal.
      if (atBottom !== this.following) this.setFollowing(atBottom)
      this.render()
    }, { passive: true })
    addEventListener('resize', () => this.schedule())
    this.schedule()
  }

  get lineCount () { return this.lines.length + (this.partial === '' ? 0 : 1) }

  /** Append decoded text; a trailing partial line is shown and completed by the next append. */
  append (text) {
    const parts = (this.partial + text).split('\n')
    this.partial = parts.pop()
    for (const line of parts) {
      this.states.push(this.endState)
      // Only an escape sequence can change the style: most lines skip the converter here.
      if (line.includes('\x1b')) this.endState = ansiLine(line, this.endState).state
      this.lines.push(line)
    }
    this.schedule()
  }

  /** What an empty log says (escaped text). */
  setEmptyText (text) {
    if (text === this.emptyText) return
    this.emptyText = text
    this.shown = ''
    this.schedule()
  }

  setFollowing (on) {
    this.following = on
    if (on) this.scrollToEnd()
    this.onFollowChange(on)
  }

  scrollToEnd () { this.element.scrollTop = this.element.scrollHeight }

  schedule () {
    if (this.frame !== 0) return
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render() })
  }

  line (i) {
    return i < this.lines.length ? [this.lines[i], this.states[i]] : [this.partial, this.endState]
  }

  render () {
    const count = this.lineCount
    this.spacer.style.height = (count * LINE_HEIGHT) + 'px'
    if (this.following) this.scrollToEnd()
    if (count === 0) {
      if (this.shown !== 'empty') this.rows.innerHTML = '<div class="empty"></div>'
      this.rows.firstChild.textContent = this.emptyText
      this.shown = 'empty'
      return
    }
    const first = Math.max(0, Math.floor(this.element.scrollTop / LINE_HEIGHT) - OVERSCAN)
    const last = Math.min(count, Math.ceil((this.element.scrollTop + this.element.clientHeight) / LINE_HEIGHT) + OVERSCAN)
    const key = first + ':' + last + ':' + count + ':' + this.partial.length
    if (key === this.shown) return
    this.shown = key
    let html = ''
    for (let i = first; i < last; i++) {
      const [text, state] = this.line(i)
      const cls = HEADER.test(text) ? 'ln hdr' : 'ln'
      html += '<div class="' + cls + '"><span class="no">' + (i + 1) + '</span>' + ansiLine(text, state).html + '</div>'
    }
    this.rows.style.transform = 'translateY(' + (first * LINE_HEIGHT) + 'px)'
    this.rows.innerHTML = html
  }
}
