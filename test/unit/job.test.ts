// The job schema and capability matching: what a user may submit, and which worker may run it.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { InvalidJobError, parseJob, satisfies, unmetRequirement } from '../../grid/job.ts'
import { DEFAULT_KILL_GRACE_S, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, MAX_COMMAND_BYTES, MAX_JOB_BYTES, MAX_KILL_GRACE_S, MAX_RETRIES, MAX_TIMEOUT_S } from '../../grid/constants.ts'

/** Parse input that must be refused; hand back the error so the test can look at its name and message. */
function refused (input: unknown): Error {
  try {
    parseJob(input)
  } catch (err) {
    assert.instance(err, Error)
    return err as Error
  }
  assert.unreachable(`parseJob accepted ${JSON.stringify(input)}`)
  throw new Error('unreachable')
}

/** Refused with InvalidJobError, in one line that names the field (never the exact wording). */
function refusedNaming (input: unknown, field: RegExp): void {
  const err = refused(input)
  assert.is(err.name, 'InvalidJobError')
  assert.instance(err, InvalidJobError)
  assert.ok(err.message.length > 0, 'message is not empty')
  assert.not.match(err.message, /\n/, 'message is one line')
  assert.match(err.message, field)
}

const one = [{ run: 'make' }]

// ---------------------------------------------------------------- parseJob: accepted jobs

const accepted = suite('parseJob: accepted jobs')

accepted('a minimal job gets every default filled in', () => {
  const job = parseJob({ steps: [{ run: 'make' }] })
  assert.equal(job.requires, {})
  assert.equal(job.env, {})
  assert.is(job.timeout, DEFAULT_TIMEOUT_S)
  assert.is(job.retries, DEFAULT_RETRIES)
  assert.is(job.name, undefined)
  assert.equal(job.steps, [{ name: 'step 1', run: 'make' }])
})

accepted('steps without a name are called "step N", counting from 1; named steps keep their name', () => {
  const job = parseJob({ steps: [{ run: 'a' }, { name: 'test', run: 'b' }, { run: 'c' }] })
  assert.equal(job.steps, [
    { name: 'step 1', run: 'a' },
    { name: 'test', run: 'b' },
    { name: 'step 3', run: 'c' }
  ])
})

accepted('a full job keeps every field as given', () => {
  const input = {
    name: 'release',
    requires: { os: 'linux', gpu: '*' },
    steps: [{ name: 'build', run: 'make' }, { name: 'test', run: 'make test' }],
    env: { CC: 'clang', _X1: '' },
    timeout: 600,
    retries: 0
  }
  const job = parseJob(structuredClone(input))
  // Field by field: defaults for fields the input does not mention may grow.
  for (const key of Object.keys(input) as Array<keyof typeof input>) assert.equal(job[key], input[key], key)
})

accepted('limits themselves are allowed', () => {
  const job = parseJob({ steps: one, timeout: MAX_TIMEOUT_S, retries: MAX_RETRIES })
  assert.is(job.timeout, MAX_TIMEOUT_S)
  assert.is(job.retries, MAX_RETRIES)
  assert.is(parseJob({ steps: one, timeout: 1 }).timeout, 1)
})

accepted('capability names may use letters, digits and _.:-', () => {
  const job = parseJob({ steps: one, requires: { 'cuda.version:major-1_x': '12' } })
  assert.equal(job.requires, { 'cuda.version:major-1_x': '12' })
})

accepted('parsing does not change the input', () => {
  const input = { steps: [{ run: 'make' }] }
  parseJob(input)
  assert.equal(input, { steps: [{ run: 'make' }] })
})

accepted.run()

// ---------------------------------------------------------------- parseJob: refused jobs

const refusedJobs = suite('parseJob: refused jobs')

refusedJobs('no steps at all', () => {
  refusedNaming({}, /steps/)
  refusedNaming({ name: 'x', requires: { os: 'linux' } }, /steps/)
})

refusedJobs('an empty steps array', () => {
  refusedNaming({ steps: [] }, /steps/)
})

refusedJobs('a step without run', () => {
  refusedNaming({ steps: [{ name: 'build' }] }, /run/)
  refusedNaming({ steps: [{ run: 'a' }, {}] }, /steps\.1/)
})

refusedJobs('a step whose run is empty', () => {
  refusedNaming({ steps: [{ run: '' }] }, /run/)
})

refusedJobs('a step with an unknown key', () => {
  refusedNaming({ steps: [{ run: 'make', cmd: 'x' }] }, /cmd/)
})

refusedJobs('an unknown top-level key next to valid steps is named', () => {
  refusedNaming({ steps: one, retry: 3 }, /retry/)
  refusedNaming({ steps: one, enviroment: { A: 'b' } }, /enviroment/)
})

refusedJobs('the typo "step" for "steps" is named as the unknown key', () => {
  // The user wrote `step`; the helpful answer names what they wrote, not only what is missing.
  refusedNaming({ step: [{ run: 'make' }] }, /\bstep\b/)
})

refusedJobs('every problem is named in the one line, field first; an unknown key says which key it most likely meant', () => {
  const err = refused({ steps: [{ run: '' }], timout: 60, enviroment: {} }) as InvalidJobError
  assert.is(err.message, 'steps.0.run: a step needs a command in "run"; timout: unknown key (did you mean timeout?); enviroment: unknown key')
  assert.equal(err.issues.map(i => i.where), ['steps.0.run', 'timout', 'enviroment'])
  // A typo of a required key is said once, as the typo, not also as the key missing.
  assert.is(refused({ stpes: one }).message, 'stpes: unknown key (did you mean steps?)')
})

refusedJobs('steps that is not an array', () => {
  refusedNaming({ steps: 'make' }, /steps/)
  refusedNaming({ steps: { run: 'make' } }, /steps/)
  refusedNaming({ steps: null }, /steps/)
})

refusedJobs('a step that is not an object', () => {
  refusedNaming({ steps: ['make'] }, /steps/)
})

refusedJobs('timeout negative, zero, fractional, too big or not a number', () => {
  refusedNaming({ steps: one, timeout: -1 }, /timeout/)
  refusedNaming({ steps: one, timeout: 0 }, /timeout/)
  refusedNaming({ steps: one, timeout: 1.5 }, /timeout/)
  refusedNaming({ steps: one, timeout: MAX_TIMEOUT_S + 1 }, /timeout/)
  refusedNaming({ steps: one, timeout: '600' }, /timeout/)
})

refusedJobs('retries negative, fractional or too big', () => {
  refusedNaming({ steps: one, retries: -1 }, /retries/)
  refusedNaming({ steps: one, retries: 0.5 }, /retries/)
  refusedNaming({ steps: one, retries: MAX_RETRIES + 1 }, /retries/)
})

refusedJobs('a bad capability key', () => {
  refusedNaming({ steps: one, requires: { 'has space': 'x' } }, /requires/)
  refusedNaming({ steps: one, requires: { 'a/b': 'x' } }, /requires/)
  refusedNaming({ steps: one, requires: { ['k'.repeat(65)]: 'x' } }, /requires/)
})

refusedJobs('a capability value that is not a string', () => {
  refusedNaming({ steps: one, requires: { cpus: 4 } }, /requires\.cpus/)
})

refusedJobs('a bad environment name', () => {
  refusedNaming({ steps: one, env: { '1ABC': 'x' } }, /env/)
  refusedNaming({ steps: one, env: { 'A-B': 'x' } }, /env/)
  refusedNaming({ steps: one, env: { A: 1 } }, /env/)
})

refusedJobs('input that is not an object', () => {
  for (const input of [null, undefined, [], [{ run: 'make' }], 'make', 42, true]) {
    const err = refused(input)
    assert.is(err.name, 'InvalidJobError', `for ${JSON.stringify(input)}`)
    assert.not.match(err.message, /\n/)
    assert.match(err.message, /job|object/)
  }
})

// ---------------------------------------------------------------- what a worker would refuse is refused at submit

const osRefused = suite('parseJob: strings the operating system cannot take are refused at submit')

// Each of these reaches spawn() or open() on the worker, which throws on a NUL byte: the build used to be accepted
// (201) and then fail with no exit code and no reason.
for (const [field, job] of [
  ['env.BAD', { env: { BAD: 'a\u0000b' }, steps: one }],
  ['steps.0.run', { steps: [{ run: 'echo a\u0000b' }] }],
  ['steps.0.name', { steps: [{ name: 'x\u0000', run: 'true' }] }],
  ['artifacts.0', { steps: one, artifacts: ['dist/\u0000x'] }],
  ['inputs', { steps: one, inputs: { 'in/\u0000x': 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy' } }],
  ['inputs.x', { steps: one, inputs: { x: 'build:0mx22eifw8c000599/out\u0000.txt' } }],
  ['name', { name: 'a\u0000b', steps: one }]
] as const) {
  osRefused(`a NUL byte in ${field} is refused, naming the field`, () => {
    refusedNaming(job, new RegExp(`^${field.replace(/\./g, '\\.')}`))
  })
}

osRefused('a NUL in an env name is quoted in the error, not sent raw to the terminal', () => {
  const err = refused({ env: { 'B\u0000AD': 'x' }, steps: one })
  assert.is(err.name, 'InvalidJobError')
  assert.ok(!err.message.includes('\u0000'), err.message)
  assert.match(err.message, /^env\."B\\u0000AD": /)
})

osRefused('an empty required value (--require gpu=) is refused: no worker announces one, so it would wait forever', () => {
  refusedNaming({ steps: one, requires: { gpu: '' } }, /^requires\.gpu: .*"\*"/)
  assert.equal(parseJob({ steps: one, requires: { gpu: '*' } }).requires, { gpu: '*' })
})

osRefused('a malformed input says what is expected', () => {
  for (const bad of ['bafkwrong', 'build:nope/x', 'http://example.com/x']) {
    refusedNaming({ steps: one, inputs: { x: bad } }, /^inputs\.x: expected a CID .* or build:BUILD_ID\/ARTIFACT_PATH$/)
  }
})

osRefused('a command or value is measured in bytes, not characters (Linux caps one argument at 128 KiB)', () => {
  // 30,000 three-byte characters: under the old 65,536-character limit, over 64 KiB of UTF-8.
  const wide = '€'.repeat(30_000)
  assert.ok(wide.length < MAX_COMMAND_BYTES && Buffer.byteLength(wide) > MAX_COMMAND_BYTES)
  refusedNaming({ steps: [{ run: `echo ${wide}` }] }, /^steps\.0\.run: .*bytes/)
  refusedNaming({ steps: one, env: { WIDE: wide } }, /^env\.WIDE: .*bytes/)
})

osRefused('the job size limit holds on every path, not only HTTP\'s body limit', () => {
  const env = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`V${i}`, 'x'.repeat(MAX_COMMAND_BYTES - 100)]))
  refusedNaming({ steps: one, env }, new RegExp(`^job: a job is at most ${MAX_JOB_BYTES} bytes`))
})

osRefused('killGrace: whole seconds, defaulting to Buildkite\'s 10, at most MAX_KILL_GRACE_S', () => {
  assert.is(parseJob({ steps: one }).killGrace, DEFAULT_KILL_GRACE_S)
  assert.is(parseJob({ steps: one, killGrace: 0 }).killGrace, 0)
  refusedNaming({ steps: one, killGrace: MAX_KILL_GRACE_S + 1 }, /^killGrace/)
  refusedNaming({ steps: one, killGrace: 1.5 }, /^killGrace/)
})

refusedJobs.run()
osRefused.run()

// ---------------------------------------------------------------- satisfies

const satisfiesSuite = suite('satisfies')

satisfiesSuite('equal values satisfy, different values do not', () => {
  assert.is(satisfies({ os: 'linux' }, { os: 'linux', arch: 'x64' }), true)
  assert.is(satisfies({ os: 'linux' }, { os: 'darwin', arch: 'x64' }), false)
  assert.is(satisfies({ os: 'linux', arch: 'arm64' }, { os: 'linux', arch: 'x64' }), false)
  assert.is(satisfies({ os: 'linux', arch: 'x64' }, { os: 'linux', arch: 'x64' }), true)
})

satisfiesSuite('"*" asks only that the key is present, whatever its value', () => {
  assert.is(satisfies({ gpu: '*' }, { gpu: 'a100' }), true)
  assert.is(satisfies({ gpu: '*' }, { gpu: '' }), true)
  assert.is(satisfies({ gpu: '*' }, { os: 'linux' }), false)
})

satisfiesSuite('a missing key fails even when the value would be empty', () => {
  assert.is(satisfies({ os: 'linux' }, {}), false)
  assert.is(satisfies({ os: '' }, {}), false)
})

satisfiesSuite('a worker value of "*" is not a wildcard for the job', () => {
  assert.is(satisfies({ os: 'linux' }, { os: '*' }), false)
})

satisfiesSuite('empty requires is met by any worker', () => {
  assert.is(satisfies({}, {}), true)
  assert.is(satisfies({}, { os: 'linux' }), true)
})

satisfiesSuite.run()

// ---------------------------------------------------------------- unmetRequirement

const unmet = suite('unmetRequirement')

unmet('no workers at all', () => {
  assert.is(unmetRequirement({}, []), 'no worker is connected')
  assert.is(unmetRequirement({ os: 'linux' }, []), 'no worker is connected')
})

unmet('undefined when one worker fits', () => {
  assert.is(unmetRequirement({}, [{ os: 'linux' }]), undefined)
  assert.is(unmetRequirement({ os: 'linux', gpu: '*' }, [{ os: 'darwin' }, { os: 'linux', gpu: 'a100' }]), undefined)
})

unmet('names a missing "*" capability', () => {
  const why = unmetRequirement({ gpu: '*' }, [{ os: 'linux' }, { os: 'darwin' }])
  assert.type(why, 'string')
  assert.match(why!, /gpu/)
})

unmet('names the key and value nobody has', () => {
  const why = unmetRequirement({ os: 'linux', arch: 'riscv64' }, [{ os: 'linux', arch: 'x64' }])
  assert.type(why, 'string')
  assert.match(why!, /arch/)
  assert.match(why!, /riscv64/)
  assert.not.match(why!, /os=linux/)
})

unmet('a combination no single worker has', () => {
  const why = unmetRequirement({ os: 'linux', gpu: '*' }, [{ os: 'linux' }, { os: 'darwin', gpu: 'm2' }])
  assert.type(why, 'string')
  assert.ok(why !== 'no worker is connected')
  // Each key alone is available, so the phrase must not blame one of them.
  assert.not.match(why!, /no worker has (capability )?(os|gpu)/)
  assert.match(why!, /single|combination|every|all/)
})

unmet.run()
