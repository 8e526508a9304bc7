// Cache keys: what a job's `cache` accepts (strict, limits, expressions a worker can fill in), how the worker fills
// `${{ hashFiles(…) }}` and `${{ capabilities.K }}` over a work dir, and the scope the coordinator gives a build.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdir, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidJobError, MAX_CACHE_KEY_CHARS, MAX_JOB_CACHES, parseCacheExpression, parseJob } from '../../grid/job.ts'
import { CacheKeyError, HASH_FILES_CHARS, cacheFiles, hashFiles, resolveCaches, substituteCacheKey } from '../../worker/build-caches.ts'
import { cacheScopeOf } from '../../coordinator/builds-service.ts'
import { parsePipelineFile, planPipeline } from '../../grid/pipeline.ts'
import { removeDir, tempDir } from '../helpers.ts'
import { rejection } from '../wait.ts'

const t = suite<{ dir: string }>('cache keys')

t.before.each(async context => { context.dir = await tempDir('cache-keys') })
t.after.each(async ({ dir }) => { await removeDir(dir) })

const job = (cache: unknown): unknown => ({ steps: [{ run: 'true' }], cache })
const refusal = (input: unknown): string => {
  try {
    parseJob(input)
  } catch (err: any) {
    assert.instance(err, InvalidJobError)
    return err.message
  }
  throw new Error('the job was accepted')
}

t('a job takes caches and reuse, and keeps them as given', () => {
  const parsed = parseJob({ ...job([{ key: "deps-${{ hashFiles('package-lock.json', 'x/**') }}-${{ capabilities.os }}", paths: ['node_modules'], restore: ['deps-'], save: 'always' }]) as object, reuse: true })
  assert.equal(parsed.cache, [{ key: "deps-${{ hashFiles('package-lock.json', 'x/**') }}-${{ capabilities.os }}", paths: ['node_modules'], restore: ['deps-'], save: 'always' }])
  assert.is(parsed.reuse, true)
  assert.is(parseJob(job(undefined)).cache, undefined)
})

t('bad caches are refused at submission, each with where and why', () => {
  assert.match(refusal(job([{ key: 'k', paths: ['a'], svae: 'always' }])), /cache\.0\.svae: unknown key \(did you mean save\?\)/)
  assert.match(refusal(job([{ key: 'k', paths: ['../up'] }])), /cache\.0\.paths\.0: paths are relative to the work dir/)
  assert.match(refusal(job([{ key: 'k', paths: ['/abs'] }])), /cache\.0\.paths\.0/)
  assert.match(refusal(job([{ key: 'k', paths: [] }])), /cache\.0\.paths: a cache needs at least one path/)
  assert.match(refusal(job([{ key: '', paths: ['a'] }])), /cache\.0\.key: a cache key may not be empty/)
  assert.match(refusal(job([{ key: 'a\nb', paths: ['a'] }])), /cache\.0\.key: a cache key is one line/)
  assert.match(refusal(job([{ key: 'x'.repeat(MAX_CACHE_KEY_CHARS + 1), paths: ['a'] }])), new RegExp(`at most ${MAX_CACHE_KEY_CHARS} characters`))
  assert.not.throws(() => parseJob(job([{ key: 'x'.repeat(MAX_CACHE_KEY_CHARS), paths: ['a'] }])))
  assert.match(refusal(job([{ key: 'k', paths: ['a'], save: 'never' }])), /cache\.0\.save/)
  assert.match(refusal(job(Array.from({ length: MAX_JOB_CACHES + 1 }, (_, i) => ({ key: `k${i}`, paths: ['a'] })))), new RegExp(`at most ${MAX_JOB_CACHES} caches`))
  assert.match(refusal(job([{ key: 'k-${{ env.HOME }}', paths: ['a'] }])), /cache\.0\.key: \$\{\{ env\.HOME \}\} is not an expression a cache key takes/)
  assert.match(refusal(job([{ key: "k-${{ hashFiles('../etc/passwd') }}", paths: ['a'] }])), /hashFiles takes globs relative to the work dir/)
  assert.match(refusal(job([{ key: 'k-${{ hashFiles(lock) }}', paths: ['a'] }])), /is not an expression a cache key takes/)
  assert.match(refusal(job([{ key: 'k-${{ matrix.os }}', paths: ['a'] }])), /filled in only in a pipeline file with a matrix/)
  assert.match(refusal(job([{ key: 'k', paths: ['a'], restore: ['p-${{ nope }}'] }])), /cache\.0\.restore\.0/)
  assert.match(refusal({ steps: [{ run: 'true' }], reuse: 'yes' }), /reuse/)
})

t('expressions parse to what the worker computes', () => {
  assert.equal(parseCacheExpression("hashFiles('a', 'b/**/*.lock')"), { t: 'hashFiles', globs: ['a', 'b/**/*.lock'] })
  assert.equal(parseCacheExpression('capabilities.node'), { t: 'capability', key: 'node' })
  assert.throws(() => parseCacheExpression('hashFiles()'), /is not an expression/)
})

t('hashFiles: the same files give the same value, any change a new one; no match is empty', async ({ dir }) => {
  await writeFile(join(dir, 'package-lock.json'), '{"v":1}')
  await mkdir(join(dir, 'sub'))
  await writeFile(join(dir, 'sub', 'a.lock'), 'a')
  const first = await hashFiles(dir, ['package-lock.json', 'sub/*.lock'])
  assert.match(first, new RegExp(`^[0-9a-f]{${HASH_FILES_CHARS}}$`))
  assert.is(await hashFiles(dir, ['sub/*.lock', 'package-lock.json']), first, 'the order of globs does not matter')
  assert.is(await hashFiles(dir, ['package-lock.json', 'package-lock.json', 'sub/*.lock']), first, 'a file matched twice counts once')
  await writeFile(join(dir, 'sub', 'a.lock'), 'b')
  assert.is.not(await hashFiles(dir, ['package-lock.json', 'sub/*.lock']), first, 'a content change changes it')
  await writeFile(join(dir, 'sub', 'a.lock'), 'a')
  assert.is(await hashFiles(dir, ['package-lock.json', 'sub/*.lock']), first)
  await writeFile(join(dir, 'sub', 'b.lock'), '')
  assert.is.not(await hashFiles(dir, ['package-lock.json', 'sub/*.lock']), first, 'a new (even empty) file changes it')
  assert.is(await hashFiles(dir, ['nothing-*.here']), '')
})

t('hashFiles: a file renamed with the same content changes the value; a link counts as its target text', async ({ dir }) => {
  await writeFile(join(dir, 'a.lock'), 'same')
  const before = await hashFiles(dir, ['*.lock'])
  await removeDir(join(dir, 'a.lock'))
  await writeFile(join(dir, 'b.lock'), 'same')
  assert.is.not(await hashFiles(dir, ['*.lock']), before)
  await symlink('b.lock', join(dir, 'c.lock'))
  const linked = await hashFiles(dir, ['*.lock'])
  assert.is.not(linked, await hashFiles(dir, ['b.lock']))
})

t('substitution fills hashFiles and capabilities; an unknown capability fails with one sentence', async ({ dir }) => {
  await writeFile(join(dir, 'lock'), 'x')
  const hash = await hashFiles(dir, ['lock'])
  assert.is(await substituteCacheKey("deps-${{ hashFiles('lock') }}-${{capabilities.os}}", { workDir: dir, capabilities: { os: 'linux' } }), `deps-${hash}-linux`)
  assert.is(await substituteCacheKey('plain', { workDir: dir, capabilities: {} }), 'plain')
  try {
    await substituteCacheKey('deps-${{ capabilities.node }}', { workDir: dir, capabilities: { os: 'linux' } })
    assert.unreachable('an unknown capability was filled in')
  } catch (err: any) {
    assert.instance(err, CacheKeyError)
    assert.is(err.message, 'cache key deps-${{ capabilities.node }} names capabilities.node, which this worker does not have')
  }
  assert.match((await rejection(substituteCacheKey('k-${{ capabilities.v }}', { workDir: dir, capabilities: { v: 'x'.repeat(MAX_CACHE_KEY_CHARS) } }))).message, /characters once filled in/)
  assert.match((await rejection(substituteCacheKey('k-${{ capabilities.v }}', { workDir: dir, capabilities: { v: 'a\nb' } }))).message, /control character/)
  assert.match((await rejection(substituteCacheKey('k-${{ env.X }}', { workDir: dir, capabilities: {} }))).message, /is not an expression a cache key takes/)
})

t('resolveCaches fills keys and prefixes, defaults save, and refuses a malformed cache from the assignment', async ({ dir }) => {
  const resolved = await resolveCaches({ cache: [{ key: 'k-${{ capabilities.os }}', paths: ['a'], restore: ['k-${{ capabilities.os }}-', 'k-'] }] }, { workDir: dir, capabilities: { os: 'linux' } })
  assert.equal(resolved, [{ key: 'k-linux', restore: ['k-linux-', 'k-'], paths: ['a'], save: 'success' }])
  assert.equal(await resolveCaches({}, { workDir: dir, capabilities: {} }), [])
  assert.match((await rejection(resolveCaches({ cache: [{ key: 'k' }] }, { workDir: dir, capabilities: {} }))).message, /not one this worker understands \(0\.paths/)
})

t('cacheFiles lists a fixed order, leaves out links leading out and missing paths, and says so', async ({ dir }) => {
  await mkdir(join(dir, 'm', 'b'), { recursive: true })
  await writeFile(join(dir, 'm', 'z.js'), 'z')
  await writeFile(join(dir, 'm', 'b', 'a.js'), 'a')
  await symlink('b/a.js', join(dir, 'm', 'in'))
  await symlink('../../etc', join(dir, 'm', 'out'))
  await symlink('m', join(dir, 'via'))
  const said: string[] = []
  const files = await cacheFiles(dir, ['m', 'missing', 'via/z.js', './m'], line => said.push(line))
  assert.equal(files, ['m', 'm/b', 'm/b/a.js', 'm/in', 'm/z.js'])
  assert.equal(said, [
    'cache path m/out: left out: m/out is a link to ../../etc, which leads outside the directory',
    'cache path missing does not exist: nothing saved for it',
    'cache path via/z.js is reached through a link: left out'
  ])
})

t('a pipeline file passes cache through: matrix filled in, hashFiles and capabilities left for the worker', () => {
  const file = parsePipelineFile([
    'jobs:',
    '  install:',
    '    matrix: { node: ["20", "22"] }',
    '    steps: [{ run: "npm ci" }]',
    '    reuse: true',
    '    cache:',
    '      - key: "deps-${{ matrix.node }}-${{ hashFiles(\'package-lock.json\') }}-${{ capabilities.os }}"',
    '        paths: [node_modules]',
    '        restore: ["deps-${{ matrix.node }}-"]',
    ''
  ].join('\n'))
  const planned = planPipeline(file, {})
  assert.equal(planned.map(p => p.spec.cache?.[0].key), [
    "deps-20-${{ hashFiles('package-lock.json') }}-${{ capabilities.os }}",
    "deps-22-${{ hashFiles('package-lock.json') }}-${{ capabilities.os }}"
  ])
  assert.equal(planned.map(p => p.spec.cache?.[0].restore), [['deps-20-'], ['deps-22-']])
  assert.equal(planned.map(p => p.spec.reuse), [true, true])
})

t('the scope comes from the build record: repository, branch of the ref, trust', () => {
  assert.equal(cacheScopeOf({}), { repo: null, trusted: true })
  assert.equal(cacheScopeOf({ source: { repo: 'R', ref: 'refs/heads/feature/x' } }), { repo: 'R', branch: 'feature/x', trusted: true })
  assert.equal(cacheScopeOf({ source: { repo: 'R', ref: 'main' }, untrusted: true }), { repo: 'R', branch: 'main', trusted: false })
  assert.equal(cacheScopeOf({ source: { repo: 'R', ref: 'refs/tags/v1' } }), { repo: 'R', trusted: true })
})

t.run()
