// What a step sees of the machine: the worker, run through `npx grid` or `npm start`, must not hand its steps (or
// its `node` capability) npm's PATH and npm_* variables, or steps get the grid's bundled Node, not the host's.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { hostEnvironment } from '../../worker/capabilities.ts'

const env = suite('hostEnvironment')

env('under npm: npm_* variables and the node_modules/.bin folders npm put on PATH are gone, the rest kept in order', () => {
  const host = hostEnvironment({
    PATH: '/work/p/node_modules/.bin:/work/node_modules/.bin:/usr/lib/node_modules/npm/node_modules/@npmcli/run-script/lib/node-gyp-bin:/usr/local/bin:/usr/bin',
    npm_lifecycle_event: 'npx',
    npm_package_json: '/work/p/package.json',
    npm_config_cache: '/root/.npm',
    HOME: '/root',
    CI: 'true'
  })
  assert.equal(host, { PATH: '/usr/local/bin:/usr/bin', HOME: '/root', CI: 'true' })
})

env('not under npm: PATH is the user\'s own, even with a node_modules/.bin on it', () => {
  const given = { PATH: '/home/me/proj/node_modules/.bin:/usr/bin', HOME: '/home/me' }
  assert.equal(hostEnvironment(given), given)
})

env.run()
