// ANSI SGR colour codes to HTML, one line at a time. The style state carries from line to line as in a terminal,
// so the caller keeps the state a line starts with. Other escape sequences (cursor moves, erase) are dropped;
// a carriage return starts the line over, so progress bars show their last state.

export const PLAIN = Object.freeze({ fg: null, bg: null, bold: false, dim: false, italic: false, underline: false })

const escapeText = s => s.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])

// eslint-disable-next-line no-control-regex
const SEQUENCE = /\x1b\[([0-9;:?]*)([A-Za-z])|\x1b[\]P^_][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|\r/g

function color256 (n) {
  if (n < 16) return n
  if (n < 232) {
    const v = [Math.floor((n - 16) / 36), Math.floor((n - 16) / 6) % 6, (n - 16) % 6].map(x => x === 0 ? 0 : 55 + x * 40)
    return 'rgb(' + v.join(',') + ')'
  }
  const g = 8 + (n - 232) * 10
  return 'rgb(' + g + ',' + g + ',' + g + ')'
}

/** The state after applying one SGR parameter list (like "1;31" or "38;5;208"). */
export function applySgr (state, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map(Number)
  const s = { ...state }
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]
    if (c === 0) Object.assign(s, PLAIN)
    else if (c === 1) s.bold = true
    else if (c === 2) s.dim = true
    else if (c === 3) s.italic = true
    else if (c === 4) s.underline = true
    else if (c === 22) { s.bold = false; s.dim = false } else if (c === 23) s.italic = false
    else if (c === 24) s.underline = false
    else if (c >= 30 && c <= 37) s.fg = c - 30
    else if (c >= 90 && c <= 97) s.fg = c - 90 + 8
    else if (c === 39) s.fg = null
    else if (c >= 40 && c <= 47) s.bg = c - 40
    else if (c >= 100 && c <= 107) s.bg = c - 100 + 8
    else if (c === 49) s.bg = null
    else if (c === 38 || c === 48) {
      let value = null
      if (codes[i + 1] === 5 && codes[i + 2] >= 0 && codes[i + 2] <= 255) { value = color256(codes[i + 2]); i += 2 } else if (codes[i + 1] === 2 && codes.length >= i + 5) {
        value = 'rgb(' + codes.slice(i + 2, i + 5).map(v => Math.max(0, Math.min(255, v | 0))).join(',') + ')'
        i += 4
      } else break
      if (c === 38) s.fg = value
      else s.bg = value
    }
  }
  return s
}

function open (s) {
  const classes = []
  const style = []
  if (typeof s.fg === 'number') classes.push('f' + s.fg)
  else if (s.fg !== null) style.push('color:' + s.fg)
  if (typeof s.bg === 'number') classes.push('b' + s.bg)
  else if (s.bg !== null) style.push('background:' + s.bg)
  if (s.bold) classes.push('ansi-b')
  if (s.dim) classes.push('ansi-d')
  if (s.italic) classes.push('ansi-i')
  if (s.underline) classes.push('ansi-u')
  if (classes.length === 0 && style.length === 0) return ''
  return '<span' + (classes.length > 0 ? ' class="' + classes.join(' ') + '"' : '') + (style.length > 0 ? ' style="' + style.join(';') + '"' : '') + '>'
}

/** One line (no "\n") to HTML, starting in `state`; returns the HTML and the state the next line starts in. */
export function ansiLine (line, state = PLAIN) {
  if (!line.includes('\x1b') && !line.includes('\r')) {
    const tag = line === '' ? '' : open(state)
    return { html: tag === '' ? escapeText(line) : tag + escapeText(line) + '</span>', state }
  }
  let html = ''
  let s = state
  let last = 0
  const text = t => {
    if (t === '') return
    const tag = open(s)
    html += tag === '' ? escapeText(t) : tag + escapeText(t) + '</span>'
  }
  SEQUENCE.lastIndex = 0
  for (let m = SEQUENCE.exec(line); m !== null; m = SEQUENCE.exec(line)) {
    text(line.slice(last, m.index))
    last = SEQUENCE.lastIndex
    if (m[0] === '\r') {
      // "\r\n" line ends are not a rewrite; a bare "\r" is.
      if (last < line.length) html = ''
    } else if (m[2] === 'm') s = applySgr(s, m[1])
  }
  text(line.slice(last))
  return { html, state: s }
}

/** A whole text to HTML (used for short texts; the log view converts line by line). */
export function ansiToHtml (text) {
  let state = PLAIN
  return text.split('\n').map(line => { const r = ansiLine(line, state); state = r.state; return r.html }).join('\n')
}
