// The browser's ANSI converter (web/ui/ansi.js) is plain JavaScript with no DOM: it runs here as it runs in the page.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { join } from 'node:path'

// A path in a variable: the module is browser JavaScript, outside the type check.
const modulePath = join(import.meta.dirname, '../../web/ui/ansi.js')
const { ansiToHtml, ansiLine, PLAIN } = await import(modulePath)

const ansi = suite('ANSI to HTML')

ansi('plain text is escaped and left alone', () => {
  assert.is(ansiToHtml('a <b> & "c" \'d\''), 'a &lt;b&gt; &amp; &quot;c&quot; &#39;d&#39;')
  assert.is(ansiToHtml(''), '')
})

ansi('16 colours, bold and reset become spans with classes', () => {
  assert.is(ansiToHtml('\x1b[31mred\x1b[0m ok'), '<span class="f1">red</span> ok')
  assert.is(ansiToHtml('\x1b[1;92;44mx\x1b[m'), '<span class="f10 b4 ansi-b">x</span>')
  assert.is(ansiToHtml('\x1b[4mu\x1b[24mv'), '<span class="ansi-u">u</span>v')
  assert.is(ansiToHtml('\x1b[31ma\x1b[39mb'), '<span class="f1">a</span>b')
})

ansi('256 colours and truecolour become inline colours', () => {
  assert.is(ansiToHtml('\x1b[38;5;208mo'), '<span style="color:rgb(255,135,0)">o</span>')
  assert.is(ansiToHtml('\x1b[38;5;9mo'), '<span class="f9">o</span>')
  assert.is(ansiToHtml('\x1b[48;2;1;2;3mo'), '<span style="background:rgb(1,2,3)">o</span>')
  assert.is(ansiToHtml('\x1b[38;5;244mg'), '<span style="color:rgb(128,128,128)">g</span>')
})

ansi('a colour carries over to the next line, as in a terminal', () => {
  assert.is(ansiToHtml('\x1b[32mone\ntwo\x1b[0m\nthree'), '<span class="f2">one</span>\n<span class="f2">two</span>\nthree')
  const first = ansiLine('\x1b[33mwarn', PLAIN)
  assert.is(first.state.fg, 3)
  assert.is(ansiLine('next', first.state).html, '<span class="f3">next</span>')
  assert.is(PLAIN.fg, null, 'the shared start state is never changed')
})

ansi('other escape sequences are dropped; a carriage return starts the line over', () => {
  assert.is(ansiToHtml('a\x1b[2Kb\x1b[1Gc\x1b]0;title\x07d'), 'abcd')
  assert.is(ansiToHtml('10%\r50%\r100%'), '100%')
  assert.is(ansiToHtml('crlf\r\nnext'), 'crlf\nnext')
})

ansi('a script in the log stays text even inside colours', () => {
  assert.is(ansiToHtml('\x1b[31m<script>alert(1)</script>'), '<span class="f1">&lt;script&gt;alert(1)&lt;/script&gt;</span>')
  // Not a well-formed sequence: it is shown as text, never copied into an attribute.
  assert.not.match(ansiToHtml('\x1b[38;2;1;2;"onmouseover=x>m'), /[<>"]/)
})

ansi.run()
