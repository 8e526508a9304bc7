#!/usr/bin/env node
// Launcher for `grid`: the CLI is TypeScript run by Node's type stripping, which needs Node 22.18 or newer.
// Under `npx grid` and npm scripts the `node@22` devDependency provides it; say so plainly anywhere else.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`grid: needs Node 22.18 or newer (this is ${process.versions.node}); run it as "npx grid" inside the project\n`)
  process.exit(1)
}
const { main } = await import('../cli/index.ts')
await main(process.argv.slice(2))
