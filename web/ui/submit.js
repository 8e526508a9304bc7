// Submit a command as a job: name, requires as KEY=VALUE lines, one or more steps, artifact globs. Needs the API token.
import { write, onToken } from './common.js'

const form = document.getElementById('submit-form')
const list = document.getElementById('step-list')
const error = document.getElementById('submit-error')

function addStep (name = '', run = '') {
  const li = document.createElement('li')
  li.innerHTML = '<div class="step-row"><div><input name="step-name" placeholder="step name (optional)" maxlength="200">' +
    '<textarea name="step-run" rows="2" spellcheck="false" placeholder="make test" aria-label="command"></textarea></div>' +
    '<button type="button" class="remove" title="remove this step">✕</button></div>'
  li.querySelector('[name=step-name]').value = name
  li.querySelector('[name=step-run]').value = run
  li.querySelector('.remove').addEventListener('click', () => { if (list.children.length > 1) li.remove() })
  list.append(li)
}

/** "KEY=VALUE" lines to an object; a line without "=" is an error the user should see. */
function parsePairs (text, what) {
  const out = {}
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const eq = line.indexOf('=')
    if (eq < 1) throw new Error(what + ' line ' + (i + 1) + ' must look like KEY=VALUE: "' + line + '"')
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim()
  }
  return out
}

function job () {
  const data = new FormData(form)
  const names = data.getAll('step-name')
  const steps = data.getAll('step-run').map((run, i) => ({ name: names[i].trim(), run }))
    .filter(s => s.run.trim() !== '').map(s => s.name === '' ? { run: s.run } : s)
  if (steps.length === 0) throw new Error('a job needs at least one step with a command')
  const result = { requires: parsePairs(data.get('requires'), 'requires'), steps }
  const artifacts = data.get('artifacts').split('\n').map(line => line.trim()).filter(line => line !== '' && !line.startsWith('#'))
  if (artifacts.length > 0) result.artifacts = artifacts
  const name = data.get('name').trim()
  if (name !== '') result.name = name
  return result
}

addStep()
document.getElementById('add-step').addEventListener('click', () => { addStep(); list.lastElementChild.querySelector('textarea').focus() })
onToken(has => {
  document.getElementById('submit-token-hint').hidden = has
  form.querySelector('button[type=submit]').disabled = !has
})
form.addEventListener('submit', async e => {
  e.preventDefault()
  error.hidden = true
  try {
    const { id } = await write('/api/builds', job())
    location.href = '/builds/' + encodeURIComponent(id)
  } catch (err) {
    error.textContent = err.message
    error.hidden = false
  }
})
