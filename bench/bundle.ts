/**
 * Bundle size of the browser entry: builds `src/index.ts` with Vite in library mode (minified, every
 * dependency bundled, as an app's bundler would) and prints the minified and gzipped size of what a
 * page loads up front, the lazily loaded chunks apart, the heaviest packages, and the built demo
 * page's JavaScript. Target: under 150 KB gzipped up front.
 *
 *   npm run bench:bundle            (builds first; or `node dist/bench/bundle.js` after a build)
 *   node dist/bench/bundle.js --files      (also the heaviest files)
 *   node dist/bench/bundle.js --dedupe     (what-if: one copy of the packages ipns duplicates; not
 *                                          what ships, since it runs ipns on newer majors than it asks for)
 *   node dist/bench/bundle.js --json
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import { build } from 'vite'

/** Packages `ipns` brings a second, older major of (see `--dedupe`). */
const DUPLICATED = ['cborg', 'multiformats', 'protons-runtime', 'uint8arrays', 'uint8-varint', 'uint8arraylist']

/** @default 150 KB gzipped */
export const TARGET_GZIP_BYTES = 150 * 1024

interface Chunk {
  fileName: string
  code: string
  isEntry: boolean
  isDynamicEntry: boolean
  imports: string[]
  modules: Record<string, { renderedLength: number }>
}

function findRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'userspace') return dir
    const up = dirname(dir)
    if (up === dir) throw new Error('cannot find the userspace package root')
    dir = up
  }
}

function sizes (code: string | Uint8Array): { minified: number, gzip: number, brotli: number } {
  const bytes = typeof code === 'string' ? Buffer.from(code) : code
  return { minified: bytes.byteLength, gzip: gzipSync(bytes, { level: 9 }).byteLength, brotli: brotliCompressSync(bytes).byteLength }
}

/** `node_modules/@scope/name/...` → `@scope/name`; our own files → `userspace (src/<folder>)`. */
function owner (id: string, root: string): string {
  const path = id.replace(/\0/g, '').replace(/\?.*$/, '')
  const at = path.lastIndexOf(`node_modules${sep}`)
  if (at !== -1) {
    const parts = path.slice(at + 'node_modules'.length + 1).split(sep)
    return (parts[0] ?? '').startsWith('@') ? `${parts[0] ?? ''}/${parts[1] ?? ''}` : parts[0] ?? path
  }
  const rel = relative(root, path).split(sep)
  return rel[0] === 'src' ? `userspace (src/${rel[1]?.endsWith('.ts') === true ? rel[1] : `${rel[1] ?? ''}/`})` : rel.join('/')
}

/** The project's own source files a chunk holds: what a page must use before the chunk loads. */
function ownFiles (chunk: Chunk, root: string): string[] {
  return Object.keys(chunk.modules)
    .map(id => relative(root, id.replace(/\0/g, '').replace(/\?.*$/, '')).split(sep).join('/'))
    .filter(path => path.startsWith('src/'))
    .sort()
}

const kb = (n: number): string => `${(n / 1024).toFixed(1)} KB`

async function main (): Promise<void> {
  const root = findRoot()
  const json = process.argv.includes('--json')
  const dedupe = process.argv.includes('--dedupe')
  const output = await build({
    root,
    configFile: false,
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
    // What-if: `ipns` 10 pins cborg 5, multiformats 13 and protons-runtime 6 while the rest of the
    // tree is on cborg 6, multiformats 14 and protons-runtime 7, so the bundle carries two copies.
    resolve: { dedupe: dedupe ? DUPLICATED : [] },
    build: {
      write: false,
      minify: true,
      target: 'es2022',
      reportCompressedSize: false,
      lib: { entry: join(root, 'src', 'index.ts'), formats: ['es'], fileName: 'index' }
    }
  })
  const outputs = (Array.isArray(output) ? output : [output]) as Array<{ output: unknown[] }>
  const chunks = outputs.flatMap(o => o.output).filter((c): c is Chunk => (c as { type?: string }).type === 'chunk')
  const byName = new Map(chunks.map(c => [c.fileName, c]))
  const entry = chunks.find(c => c.isEntry)
  if (entry === undefined) throw new Error('no entry chunk')

  // What a page loads up front: the entry and everything it imports statically.
  const upFront = new Set<string>()
  const visit = (name: string): void => {
    if (upFront.has(name)) return
    upFront.add(name)
    for (const dep of byName.get(name)?.imports ?? []) visit(dep)
  }
  visit(entry.fileName)
  const eager = chunks.filter(c => upFront.has(c.fileName))
  const lazy = chunks.filter(c => !upFront.has(c.fileName))
  const eagerSize = sizes(eager.map(c => c.code).join('\n'))

  const packages = new Map<string, number>()
  for (const chunk of eager) {
    for (const [id, info] of Object.entries(chunk.modules)) {
      const name = owner(id, root)
      packages.set(name, (packages.get(name) ?? 0) + info.renderedLength)
    }
  }
  const heaviest = [...packages.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)
  const files = eager.flatMap(c => Object.entries(c.modules).map(([id, info]) => [relative(root, id.replace(/\0/g, '')), info.renderedLength] as const))
    .sort((a, b) => b[1] - a[1]).slice(0, 25)

  const demoDir = join(root, 'dist', 'demo', 'assets')
  const demo = existsSync(demoDir)
    ? readdirSync(demoDir).filter(f => f.endsWith('.js')).map(f => ({ file: f, ...sizes(readFileSync(join(demoDir, f))) }))
    : undefined

  const result = {
    entry: 'src/index.ts',
    dedupe,
    upFront: { chunks: eager.map(c => c.fileName), ...eagerSize },
    lazy: lazy.map(c => ({ file: c.fileName, holds: ownFiles(c, root), ...sizes(c.code) })),
    heaviest: heaviest.map(([name, bytes]) => ({ name, renderedBytes: bytes })),
    heaviestFiles: files.map(([name, bytes]) => ({ name, renderedBytes: bytes })),
    demo,
    targetGzipBytes: TARGET_GZIP_BYTES,
    withinTarget: eagerSize.gzip <= TARGET_GZIP_BYTES
  }
  if (json) {
    console.log(JSON.stringify(result, null, 2))
    return
  }
  console.log(`Browser entry (src/index.ts), Vite library build, minified, all dependencies bundled${dedupe ? `, WHAT-IF deduplicated: ${DUPLICATED.join(', ')}` : ''}`)
  console.log(`  up front: ${kb(eagerSize.minified)} minified, ${kb(eagerSize.gzip)} gzip, ${kb(eagerSize.brotli)} brotli  (target < ${kb(TARGET_GZIP_BYTES)} gzip: ${result.withinTarget ? 'within' : 'OVER'})`)
  for (const c of result.lazy) console.log(`  lazy ${c.file}: ${kb(c.minified)} minified, ${kb(c.gzip)} gzip (${c.holds.length > 0 ? `loaded on first use of ${c.holds.join(', ')}` : 'dependencies of other lazy chunks'})`)
  console.log('  heaviest packages up front (rendered bytes, before minification):')
  for (const [name, bytes] of heaviest) console.log(`    ${kb(bytes).padStart(9)}  ${name}`)
  if (process.argv.includes('--files')) {
    console.log('  heaviest files up front (rendered bytes, before minification):')
    for (const [name, bytes] of files) console.log(`    ${kb(bytes).padStart(9)}  ${name}`)
  }
  if (demo === undefined) {
    console.log('Demo page: not built (npm run build:demo)')
  } else {
    for (const d of demo) console.log(`Demo page JS ${d.file}: ${kb(d.minified)} minified, ${kb(d.gzip)} gzip`)
  }
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message)
  process.exitCode = 1
})
