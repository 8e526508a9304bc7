// The scheduler alone, on trust and secrets: a build with secrets goes only to a trusted worker, with the values in
// its assignment and nowhere else; a build from a member without the trusted join code never goes to a trusted
// worker and gets no secret; a secret out of the build's scope fails it at once, and one gone by dispatch fails it
// then. Every queued build says in `waiting` why no worker takes it.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { MemoryHistory, StubLink, StubSecrets, finishAttempt, job, scheduler, stopAll, stored } from '../scheduler-fixtures.ts'
import { NO_TRUSTED_WORKER, ONLY_TRUSTED_CAPABLE, ONLY_TRUSTED_CONNECTED } from '../../coordinator/scheduler.ts'
import type { Build } from '../../grid/build.ts'
import { MAX_ASSIGNED_SECRET_BYTES } from '../../grid/constants.ts'

const linux = { os: 'linux' }
/** A value no record may ever hold. */
const TOKEN = 'tok-3f9a1c-never-in-a-record'

function trustedLink (capabilities: Record<string, string> = linux, slots = 1): StubLink {
  const link = new StubLink(capabilities, slots)
  link.trusted = true
  return link
}

const oneStep = (extra: Record<string, unknown> = {}): ReturnType<typeof job> => job({ steps: [{ run: 'true' }], ...extra })

const secrets = suite('scheduler: builds with secrets')
secrets.after.each(stopAll)

secrets('go only to the trusted worker, with the values in the assignment; the untrusted one with the same capabilities gets none', async () => {
  const resolver = new StubSecrets({ DEPLOY_TOKEN: TOKEN })
  const { scheduler: s } = scheduler({ secrets: resolver })
  const untrusted = new StubLink(linux, 4)
  const trusted = trustedLink(linux, 1)
  s.workerJoined(untrusted)
  s.workerJoined(trusted)
  const builds: Build[] = []
  for (let i = 0; i < 4; i++) builds.push(await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] })))
  assert.is(untrusted.assigned.length, 0, 'the untrusted worker, with 4 free slots, got none of them')
  for (let i = 0; i < builds.length; i++) {
    assert.is(trusted.assigned.length, i + 1)
    const assignment = trusted.assigned[i]
    assert.is(assignment.build, builds[i].id)
    assert.equal(assignment.secrets, { DEPLOY_TOKEN: TOKEN })
    const attempt = builds[i].attempts[0]
    assert.is(attempt.worker, trusted.worker)
    assert.is(attempt.trusted, true)
    finishAttempt(s, trusted, assignment.attempt)
    if (i < builds.length - 1) assert.is(builds[i + 1].status, 'running', 'the next one started on the trusted worker as soon as it was free')
  }
  assert.equal(resolver.checked[0], { names: ['DEPLOY_TOKEN'], scope: { repo: null } }, 'a lone build\'s scope names no repository')
})

secrets('a build without secrets may run on either; each attempt records whether its worker was trusted', async () => {
  const { scheduler: s } = scheduler()
  const untrusted = new StubLink(linux, 1)
  const trusted = trustedLink()
  s.workerJoined(untrusted)
  s.workerJoined(trusted)
  const a = await s.submit(oneStep())
  const b = await s.submit(oneStep())
  assert.equal([a, b].map(x => x.attempts[0].trusted).sort(), [false, true])
  assert.is(untrusted.assigned[0].secrets, undefined)
  assert.is(trusted.assigned[0].secrets, undefined)
})

secrets('wait, saying so, while no trusted worker can run them; start when one joins', async () => {
  const { scheduler: s } = scheduler({ secrets: new StubSecrets({ DEPLOY_TOKEN: TOKEN }) })
  const alone = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }))
  assert.is(alone.waiting, NO_TRUSTED_WORKER, 'no worker at all')
  const untrusted = new StubLink(linux, 1)
  s.workerJoined(untrusted)
  assert.is(alone.waiting, NO_TRUSTED_WORKER)
  const gpu = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'], requires: { gpu: '*' } }))
  const trusted = trustedLink(linux, 1)
  s.workerJoined(trusted)
  assert.is(alone.status, 'running')
  assert.is(trusted.assigned[0].build, alone.id)
  assert.is(gpu.waiting, `${NO_TRUSTED_WORKER} (none has capability gpu)`, 'what the trusted workers lack, not what the untrusted have')
  assert.is(untrusted.assigned.length, 0)
  const cuda = trustedLink({ os: 'linux', gpu: 'a100' })
  s.workerJoined(cuda)
  assert.is(cuda.assigned[0].build, gpu.id)
  // A queued one waits for the busy trusted worker, not for the free untrusted one.
  const third = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'], requires: { gpu: 'a100' } }))
  assert.is(third.waiting, 'every capable worker is busy')
  assert.is(untrusted.assigned.length, 0)
})

secrets('out of scope or unknown: the build fails at once with the resolver\'s sentence, without an attempt or a value asked for', async () => {
  const resolver = new StubSecrets({ DEPLOY_TOKEN: { value: TOKEN, repos: ['r1'] } })
  const { scheduler: s, history } = scheduler({ secrets: resolver })
  const trusted = trustedLink()
  s.workerJoined(trusted)
  const lone = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }))
  assert.is(lone.status, 'failed')
  assert.is(lone.error, 'secret DEPLOY_TOKEN is not available to this build (scope: repos r1)')
  assert.equal(lone.attempts, [])
  const unknown = await s.submit(oneStep({ secrets: ['NOPE'] }))
  assert.is(unknown.error, 'secret NOPE is not available to this build (no such secret)')
  const other = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }), { pipeline: 'p1', jobName: 'deploy', source: { repo: 'r2', ref: 'refs/heads/main' } })
  assert.is(other.status, 'failed')
  assert.equal(other.source, { repo: 'r2', ref: 'refs/heads/main' }, 'the build keeps the source it was checked against')
  assert.equal(resolver.checked.at(-1)?.scope, { repo: 'r2', ref: 'refs/heads/main' })
  assert.equal(resolver.given, [], 'no value was asked for')
  assert.is(trusted.assigned.length, 0)
  assert.is((await stored(history, lone.id)).status, 'failed')
  const mine = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }), { source: { repo: 'r1', ref: 'refs/heads/main' } })
  assert.is(mine.status, 'running', 'in scope, it runs')
  assert.equal(trusted.assigned[0].secrets, { DEPLOY_TOKEN: TOKEN })
})

secrets('a grid that keeps no secrets fails every build that names one', async () => {
  const { scheduler: s } = scheduler()
  s.workerJoined(trustedLink())
  const build = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }))
  assert.is(build.status, 'failed')
  assert.match(build.error ?? '', /^secret DEPLOY_TOKEN is not available to this build \(/)
})

secrets('a secret removed while the build waited: it fails at dispatch, saying so, and what runs after it is skipped', async () => {
  const resolver = new StubSecrets({ DEPLOY_TOKEN: TOKEN })
  const { scheduler: s } = scheduler({ secrets: resolver })
  const deploy = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }))
  const next = await s.submit(oneStep({ after: [{ build: deploy.id }] }))
  resolver.secrets.delete('DEPLOY_TOKEN')
  const trusted = trustedLink(linux, 2)
  s.workerJoined(trusted)
  assert.is(deploy.status, 'failed')
  assert.is(deploy.error, 'secret DEPLOY_TOKEN is not available to this build (no such secret)')
  assert.equal(deploy.attempts, [])
  assert.is(next.status, 'skipped')
  assert.is(trusted.assigned.length, 0)
  // A store that fails otherwise than with a sentence (a bug, a disk error) fails the build all the same, once.
  resolver.secrets.set('DEPLOY_TOKEN', { value: TOKEN })
  const values = resolver.values.bind(resolver)
  resolver.values = () => { resolver.values = values; throw new Error('disk on fire') }
  const broken = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }))
  assert.is(broken.status, 'failed')
  assert.is(broken.error, 'the values of this build\'s secrets could not be read (disk on fire)')
  const fine = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }))
  assert.is(fine.status, 'running')
  assert.equal(trusted.assigned.map(a => a.build), [fine.id])
})

secrets('more secret bytes than an assignment carries: the build fails at dispatch, saying how many', async () => {
  const big = 'x'.repeat(60_000)
  const many: Record<string, string> = {}
  for (let i = 0; i < 10; i++) many[`BIG_${i}`] = big
  const { scheduler: s } = scheduler({ secrets: new StubSecrets(many) })
  const trusted = trustedLink()
  s.workerJoined(trusted)
  const build = await s.submit(oneStep({ secrets: Object.keys(many) }))
  assert.is(build.status, 'failed')
  assert.is(build.error, `the secrets of this build are 600000 bytes together; a worker is sent at most ${MAX_ASSIGNED_SECRET_BYTES}`)
  assert.is(trusted.assigned.length, 0)
})

secrets('a lost attempt is queued again and the values go again, to a trusted worker only', async () => {
  const { scheduler: s } = scheduler({ secrets: new StubSecrets({ DEPLOY_TOKEN: TOKEN }) })
  const first = trustedLink()
  const untrusted = new StubLink(linux, 1)
  s.workerJoined(first)
  s.workerJoined(untrusted)
  const build = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }))
  s.workerLeft(first, 'its worker disconnected')
  assert.is(build.status, 'queued')
  assert.match(build.waiting ?? '', new RegExp(`: ${NO_TRUSTED_WORKER}$`))
  assert.is(untrusted.assigned.length, 0)
  const second = trustedLink()
  s.workerJoined(second)
  assert.equal(second.assigned[0].secrets, { DEPLOY_TOKEN: TOKEN })
  assert.equal(build.attempts.map(a => [a.worker, a.trusted]), [[first.worker, true], [second.worker, true]])
})

secrets('no value is ever in a build record, its history or a build or capacity event', async () => {
  const history = new MemoryHistory()
  const { scheduler: s } = scheduler({ history, secrets: new StubSecrets({ DEPLOY_TOKEN: TOKEN, OTHER: `${TOKEN}-2` }) })
  const events: string[] = []
  s.onBuild(b => events.push(JSON.stringify(b)))
  s.onCapacity(c => events.push(JSON.stringify(c)))
  const trusted = trustedLink()
  s.workerJoined(trusted)
  const build = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN', 'OTHER'], env: { PLAIN: 'visible' } }))
  finishAttempt(s, trusted, trusted.attempt(0))
  assert.is(trusted.assigned[0].secrets?.OTHER, `${TOKEN}-2`, 'the test can fail: the value did travel')
  assert.ok(events.length > 3)
  const everything = [...events, JSON.stringify(await s.get(build.id)), JSON.stringify([...history.builds.values()]), JSON.stringify(await s.list(10))].join('\n')
  assert.not.ok(everything.includes(TOKEN), 'no record holds the value')
  assert.ok(everything.includes('DEPLOY_TOKEN') && everything.includes('visible'), 'the names and the plain env are there')
})

const untrusted = suite('scheduler: builds from a member without the trusted join code')
untrusted.after.each(stopAll)

untrusted('never run on a trusted worker; wait, saying why, until an untrusted one can take them', async () => {
  const { scheduler: s } = scheduler()
  const trusted = trustedLink(linux, 4)
  s.workerJoined(trusted)
  const builds: Build[] = []
  for (let i = 0; i < 3; i++) builds.push(await s.submit(oneStep({ requires: linux }), { untrusted: true }))
  assert.is(trusted.assigned.length, 0, 'the trusted worker, with 4 free slots, got none of them')
  for (const b of builds) {
    assert.is(b.untrusted, true)
    assert.is(b.waiting, ONLY_TRUSTED_CONNECTED)
  }
  const small = new StubLink({ os: 'darwin' }, 1)
  s.workerJoined(small)
  assert.is(builds[0].waiting, ONLY_TRUSTED_CAPABLE, 'an untrusted worker is there, but only the trusted one fits')
  const member = new StubLink(linux, 1)
  s.workerJoined(member)
  for (const b of builds) {
    assert.is(b.attempts[0]?.worker, member.worker)
    assert.is(b.attempts[0]?.trusted, false)
    finishAttempt(s, member, b.attempts[0].id)
  }
  assert.is(trusted.assigned.length, 0)
  assert.is(small.assigned.length, 0)
  const nobody = await s.submit(oneStep({ requires: { gpu: '*' } }), { untrusted: true })
  assert.is(nobody.waiting, 'no worker has capability gpu', 'when no worker at all fits, trust is not the reason given')
})

untrusted('naming a secret fails at once, without asking the store', async () => {
  const resolver = new StubSecrets({ DEPLOY_TOKEN: TOKEN })
  const { scheduler: s } = scheduler({ secrets: resolver })
  s.workerJoined(new StubLink(linux, 1))
  const build = await s.submit(oneStep({ secrets: ['DEPLOY_TOKEN'] }), { untrusted: true })
  assert.is(build.status, 'failed')
  assert.is(build.error, 'secret DEPLOY_TOKEN is not available to this build (it was submitted without the trusted join code)')
  assert.equal(build.attempts, [])
  assert.equal(resolver.checked, [])
  assert.equal(resolver.given, [])
})

untrusted('capacity counts the trusted workers of each group', async () => {
  const { scheduler: s } = scheduler()
  s.workerJoined(trustedLink(linux, 1))
  s.workerJoined(new StubLink(linux, 1))
  s.workerJoined(trustedLink({ os: 'darwin' }, 1))
  const groups = s.capacity().groups.map(g => [g.capabilities.os, g.nodes, g.trusted]).sort()
  assert.equal(groups, [['darwin', 1, 1], ['linux', 2, 1]])
})

secrets.run()
untrusted.run()
