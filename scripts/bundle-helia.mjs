// Inlines helia's core and bitswap into dist/src/store/helia-core.js after `tsc` (why: see
// src/store/helia-core.ts). Every other package stays an import. Then the build fails if anything
// in dist/src imports a package that is not in package.json's `dependencies`, so an installed
// `userspace` never imports a package it did not install. helia and @helia/bitswap are
// Apache-2.0 OR MIT; their notice heads the output.
import { mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { rolldown } from 'rolldown'

const INLINED = ['helia', '@helia/bitswap']
const root = new URL('..', import.meta.url)
const target = fileURLToPath(new URL('dist/src/store/helia-core.js', root))
const pkg = JSON.parse(await readFile(new URL('package.json', root), 'utf8'))
const packageOf = (id) => id.startsWith('@') ? id.split('/').slice(0, 2).join('/') : id.split('/')[0]
const inlined = (id) => INLINED.includes(packageOf(id))
const bare = (id) => !id.startsWith('.') && !id.startsWith('/') && !id.startsWith('\0')

const bundle = await rolldown({
  input: target,
  platform: 'node',
  logLevel: 'warn',
  external: (id) => bare(id) && !inlined(id),
  // The packages left external are imported for what they export, not for side effects; this lets
  // the unused parts of helia's entry (createHelia and its @helia/libp2p import) fall away.
  treeshake: { moduleSideEffects: (_id, external) => !external }
})
const dir = await mkdtemp(join(tmpdir(), 'userspace-bundle-'))
try {
  const versions = INLINED.map(name => `${name}@${pkg.devDependencies[name]}`).join(', ')
  await bundle.write({
    dir,
    format: 'esm',
    entryFileNames: 'helia-core.js',
    banner: `// Built from ${versions} (Apache-2.0 OR MIT, https://github.com/ipfs/helia); see src/store/helia-core.ts.`
  })
  await bundle.close()
  await rename(join(dir, 'helia-core.js'), target)
  await rm(`${target}.map`, { force: true })
} finally {
  await rm(dir, { recursive: true, force: true })
}

// Read from the code itself: a chunk's `imports` also lists imports that tree-shaking removed.
const importsOf = (code) => [
  ...code.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm),
  ...code.matchAll(/^import\s*["']([^"']+)["']/gm),
  ...code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)
].map(m => m[1]).filter(bare)
const imported = new Set()
for (const file of await readdir(new URL('dist/src', root), { recursive: true })) {
  if (!file.endsWith('.js')) continue
  for (const id of importsOf(await readFile(new URL(`dist/src/${file}`, root), 'utf8'))) imported.add(packageOf(id))
}
const builtins = new Set(builtinModules)
const wrong = [...imported].filter(name => !name.startsWith('node:') && !builtins.has(name) &&
  (pkg.dependencies[name] === undefined || inlined(name) || name === '@helia/libp2p'))
if (wrong.length > 0) {
  console.error(`bundle-helia: dist/src imports packages that are not dependencies: ${wrong.join(', ')}`)
  process.exit(1)
}
