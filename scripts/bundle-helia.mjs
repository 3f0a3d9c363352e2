// Inlines helia's core and bitswap into dist/src/store/helia-core.js after `tsc` (why: see
// src/store/helia-core.ts). Every other package stays an import; the build fails if one of them is
// not in package.json's `dependencies`, so an installed `userspace` never imports a package it did
// not install. helia and @helia/bitswap are Apache-2.0 OR MIT; their notice heads the output.
import { readFile, rm, rename, mkdtemp } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rolldown } from 'rolldown'

const INLINED = ['helia', '@helia/bitswap']
const root = new URL('..', import.meta.url)
const target = new URL('dist/src/store/helia-core.js', root)
const pkg = JSON.parse(await readFile(new URL('package.json', root), 'utf8'))
const packageOf = (id) => id.startsWith('@') ? id.split('/').slice(0, 2).join('/') : id.split('/')[0]
const inlined = (id) => INLINED.includes(packageOf(id))
const bare = (id) => !id.startsWith('.') && !id.startsWith('/') && !id.startsWith('\0')

const bundle = await rolldown({
  input: target.pathname,
  platform: 'node',
  logLevel: 'warn',
  external: (id) => {
    return bare(id) && !inlined(id)
  },
  // The packages left external are imported for what they export, not for side effects; this lets
  // the unused parts of helia's entry (createHelia and its @helia/libp2p import) fall away.
  treeshake: { moduleSideEffects: (_id, external) => !external }
})
const dir = await mkdtemp(join(tmpdir(), 'userspace-bundle-'))
const versions = INLINED.map(name => `${name}@${pkg.devDependencies[name]}`).join(', ')
const { output } = await bundle.write({
  dir,
  format: 'esm',
  entryFileNames: 'helia-core.js',
  banner: `// Built from ${versions} (Apache-2.0 OR MIT, https://github.com/ipfs/helia); see src/store/helia-core.ts.`
})
await bundle.close()
// Read from the code itself: the chunk's `imports` also lists imports that tree-shaking removed.
const code = output.map(chunk => chunk.type === 'chunk' ? chunk.code : '').join('\n')
const specifiers = [
  ...code.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"/gm),
  ...code.matchAll(/^import\s*"([^"]+)"/gm),
  ...code.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g)
].map(m => m[1]).filter(bare)
const imported = new Set(specifiers.map(packageOf))
await rename(join(dir, 'helia-core.js'), target)
await rm(dir, { recursive: true, force: true })
await rm(new URL('dist/src/store/helia-core.js.map', root), { force: true })

const builtins = new Set(builtinModules)
const missing = [...imported].filter(name => !builtins.has(name) && !name.startsWith('node:') && pkg.dependencies[name] === undefined)
const leaked = [...imported].filter(name => name === '@helia/libp2p' || inlined(name))
if (missing.length > 0 || leaked.length > 0) {
  console.error(`bundle-helia: helia-core.js imports packages that are not dependencies: ${[...missing, ...leaked].join(', ')}`)
  process.exit(1)
}
