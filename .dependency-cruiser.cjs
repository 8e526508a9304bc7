// The layering rule, checked by test/unit/layers.test.ts: a folder imports only folders below it. Lowest first:
//   net             libp2p plumbing every role uses (host, wire, dial, sessions, heartbeats, identity, join code)
//   grid            the grid's shared words (ids, job, build, placement, content naming, grants, limits)
//   protocols       one file per libp2p protocol: its id, messages and limits, and each end's plumbing
//   client          talking to the grid from any process (content, logs, the coordinator)
//   artifact-store, coordinator, worker   the roles: each uses what is below, never another role
//   web             the HTTP API and web UI
//   node            process wiring and the CLI
// Tests and benchmarks may reach any layer.
const layers = [['net'], ['grid'], ['storage'], ['protocols'], ['client'], ['artifact-store', 'coordinator', 'worker'], ['web'], ['node']]

const folder = names => `^(${names.join('|')})/`
const forbidden = []
layers.forEach((names, i) => {
  const above = layers.slice(i + 1).flat()
  for (const name of names) {
    if (above.length > 0) {
      forbidden.push({
        name: `${name}-imports-a-layer-above`,
        comment: `${name}/ is below ${above.join(', ')}: it may not import them`,
        severity: 'error',
        from: { path: folder([name]) },
        to: { path: folder(above) }
      })
    }
    const siblings = names.filter(n => n !== name)
    if (siblings.length > 0) {
      forbidden.push({
        name: `${name}-imports-another-role`,
        comment: `the roles stand side by side: ${name}/ may not import ${siblings.join(', ')}; move what they share below them`,
        severity: 'error',
        from: { path: folder([name]) },
        to: { path: folder(siblings) }
      })
    }
  }
})

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|bench/peers/helia)' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] }
  }
}

// For the layering test (not a depcruise option, so not enumerable: depcruise refuses keys it does not know).
Object.defineProperty(module.exports, 'layers', { value: layers, enumerable: false })
