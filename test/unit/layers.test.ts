// The layering rule (.dependency-cruiser.cjs): a folder imports only the folders below it, and the roles never
// import each other. Checked on the real tree, and on a small tree that breaks it, so the check itself can fail.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { createRequire } from 'node:module'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { cruise } from 'dependency-cruiser'
import { ROOT } from '../helpers.ts'

const config = createRequire(import.meta.url)(join(ROOT, '.dependency-cruiser.cjs')) as { forbidden: unknown[], layers: string[][], options: Record<string, unknown> }
const folders = config.layers.flat()

interface Violation { from: string, to: string, rule: { name: string } }

async function violations (baseDir: string, roots: string[] = folders): Promise<Violation[]> {
  const result = await cruise(roots, { ...config.options, baseDir, ruleSet: { forbidden: config.forbidden } as any, validate: true, tsConfig: undefined } as any)
  const output = result.output as { summary: { violations: Violation[] } }
  return output.summary.violations
}

const layers = suite('layers')

layers('the tree keeps the rule: no folder imports one above it, no role imports another', async () => {
  const found = await violations(ROOT)
  assert.equal(found.map(v => `${v.rule.name}: ${v.from} → ${v.to}`), [])
})

layers('every folder of the tree is in a layer, and each layer folder exists', async () => {
  const { readdir } = await import('node:fs/promises')
  const code = (await readdir(ROOT, { withFileTypes: true }))
    .filter(e => e.isDirectory() && !e.name.startsWith('.') && !['node_modules', 'test', 'bench', 'docs'].includes(e.name))
    .map(e => e.name).sort()
  assert.equal(code, [...folders].sort())
})

layers('a lower layer importing a higher one, or a role importing another, is caught', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'grid-layers-'))
  try {
    const files: Record<string, string> = {
      'net/host.ts': "import { main } from '../node/cli.ts'\nexport const host = main\n",
      'node/cli.ts': 'export const main = 1\n',
      'coordinator/scheduler.ts': "import { run } from '../worker/runner.ts'\nexport const s = run\n",
      'worker/runner.ts': "import { word } from '../grid/word.ts'\nexport const run = word\n",
      'grid/word.ts': 'export const word = 1\n'
    }
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true })
      await writeFile(join(dir, path), text)
    }
    const found = (await violations(dir, [...new Set(Object.keys(files).map(f => f.split('/')[0]))])).map(v => `${v.rule.name}: ${v.from} → ${v.to}`).sort()
    assert.equal(found, [
      'coordinator-imports-another-role: coordinator/scheduler.ts → worker/runner.ts',
      'net-imports-a-layer-above: net/host.ts → node/cli.ts'
    ])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

layers.run()
