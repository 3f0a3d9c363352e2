/**
 * Installs the package as a user would and uses it: `npm pack`, then a fresh project in a temporary
 * folder installs the tarball (and Vite) with npm's default settings — none of this repository's
 * `.npmrc`, overrides or npm_config_* variables. On that install it checks the tree (no engine
 * warning on this Node, no mobile toolchain, no package that needs a newer Node), loads every
 * documented entry, runs the README's library example against `npx userspace serve`, type-checks
 * the entries with `moduleResolution` bundler and node16, and builds a Vite page that imports
 * `userspace`. Needs `npm run build` first (`npm test` does it) and the npm registry.
 */
import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from './helpers/hub-process.js'
import type { ChildProcess } from 'node:child_process'

const run = promisify(execFile)
const INSTALL_TIMEOUT_MS = 8 * 60_000

let tmp: string
let project: string
let install: { stdout: string, stderr: string }
const children = new Set<ChildProcess>()

/** This environment without npm's per-run settings, so the child npm uses its defaults. */
function cleanEnv (): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)))
}

async function npm (args: string[], cwd: string): Promise<{ stdout: string, stderr: string }> {
  return run('npm', args, { cwd, env: cleanEnv(), maxBuffer: 64 * 1024 * 1024, timeout: INSTALL_TIMEOUT_MS })
}

/** The first ```js block after `<!-- install-test: <file> -->` in the README. */
async function readmeBlock (file: string): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const at = readme.indexOf(`<!-- install-test: ${file}`)
  const block = /```js\n([\s\S]*?)```/.exec(readme.slice(at))
  if (at === -1 || block?.[1] === undefined) throw new Error(`README has no install-test block for ${file}`)
  return block[1]
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'userspace-install-'))
  project = join(tmp, 'app')
  const { stdout } = await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], ROOT)
  const [packed] = JSON.parse(stdout) as Array<{ filename: string }>
  const devDependencies = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).devDependencies as Record<string, string>
  await run('mkdir', ['-p', project])
  await writeFile(join(project, 'package.json'), JSON.stringify({
    name: 'userspace-install-test',
    private: true,
    type: 'module',
    dependencies: { userspace: `file:${join(tmp, packed!.filename)}`, vite: devDependencies.vite }
  }, null, 2))
  install = await npm(['install', '--no-audit', '--no-fund'], project)
}, INSTALL_TIMEOUT_MS)

afterAll(async () => {
  for (const child of children) {
    // npx runs the hub in a process group of its own; end the whole group we started.
    if (child.exitCode === null && child.pid !== undefined) {
      try { process.kill(-child.pid, 'SIGKILL') } catch {}
    }
  }
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true })
})

/** Every installed package.json (nested ones included), as [path, parsed]. */
async function installedPackages (): Promise<Array<{ name: string, engines?: { node?: string } }>> {
  const found: Array<{ name: string, engines?: { node?: string } }> = []
  for (const entry of await readdir(join(project, 'node_modules'), { recursive: true })) {
    if (!/(^|\/)node_modules\/(@[^/]+\/)?[^/@]+\/package\.json$/.test(`node_modules/${entry}`)) continue
    try {
      found.push(JSON.parse(await readFile(join(project, 'node_modules', entry), 'utf8')))
    } catch {}
  }
  return found
}

describe('installed from the packed tarball into a fresh project with default npm settings', () => {
  it('installs without engine warnings, a mobile toolchain or a package that needs a newer Node', async () => {
    const output = install.stdout + install.stderr
    expect(output).not.toMatch(/EBADENGINE|ERESOLVE/)
    const packages = await installedPackages()
    const names = new Set(packages.map(p => p.name))
    for (const heavy of ['react-native', 'react-native-webrtc', '@libp2p/webrtc', '@helia/libp2p', 'undici', 'metro', 'hermes-parser']) {
      expect(names.has(heavy), heavy).toBe(false)
    }
    // userspace and its dependencies (Vite's are counted too); was 624 before the dependencies were trimmed.
    expect(packages.length).toBeLessThan(330)
  })

  it('loads every documented entry and the bin on this Node', { timeout: 60_000 }, async () => {
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `
      const main = await import('userspace')
      const hub = await import('userspace/hub')
      const helia = await import('userspace/helia')
      const node = await import('userspace/helia/node')
      console.log(JSON.stringify([typeof main.openSpace, typeof main.privateKeySigner, typeof hub.startHub, typeof hub.createHubApp, typeof helia.heliaStore, typeof node.createHeliaNode]))
    `], { cwd: project, env: cleanEnv() })
    expect(JSON.parse(stdout)).toEqual(Array(6).fill('function'))
    const version = await run('npx', ['--no-install', 'userspace', '--version'], { cwd: project, env: cleanEnv() })
    expect(version.stdout).toMatch(/^userspace \d+\.\d+\.\d+/)
  })

  it('runs the README example against `npx userspace serve`, which stops when npx is sent SIGTERM', { timeout: 120_000 }, async () => {
    const hub = spawn('npx', ['--no-install', 'userspace', 'serve', '--port', '0', '--data', join(tmp, 'data')], {
      cwd: project, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true
    })
    children.add(hub)
    let out = ''
    hub.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    hub.stderr.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    const url = await new Promise<string>((resolve, reject) => {
      // The demo line is the last one printed at start.
      const check = (): void => {
        const found = /listening on (http:\/\/\S+)/.exec(out)?.[1]
        if (found !== undefined && /^demo: .*\n/m.test(out)) resolve(found)
      }
      hub.stdout.on('data', check)
      hub.once('exit', (code) => { reject(new Error(`hub exited with ${String(code)}: ${out}`)) })
    })
    expect(out).toMatch(/^demo: \//m)

    const example = (await readmeBlock('example.mjs')).replaceAll('http://127.0.0.1:8787', url)
    await writeFile(join(project, 'example.mjs'), example)
    const { stdout } = await run(process.execPath, ['example.mjs'], { cwd: project, env: cleanEnv(), timeout: 60_000 })
    expect(stdout).toMatch(/^k51\w+ \{ 'io\.example\.app': \{ theme: 'dark' \} \}$/m)

    // A supervisor stops `npx userspace serve` with SIGTERM to npx, which npm does not pass on:
    // the hub must notice and stop by itself, releasing its data directory.
    process.kill(hub.pid!, 'SIGTERM')
    await expect.poll(() => out, { timeout: 30_000, interval: 100 }).toMatch(/^stopped$/m)
  })

  it('type-checks every entry with moduleResolution bundler and node16', { timeout: 240_000 }, async () => {
    await writeFile(join(project, 'types.ts'), [
      "import { openSpace, memoryStore, privateKeySigner, NotFoundError, type Space } from 'userspace'",
      "import { startHub, createHubApp, type RunningHub } from 'userspace/hub'",
      "import { heliaStore } from 'userspace/helia'",
      "import { createHeliaNode, type HeliaNode } from 'userspace/helia/node'",
      'export const space: Promise<Space> = openSpace({ signer: privateKeySigner(new Uint8Array(32).fill(1)), store: memoryStore() })',
      'export const hub: (o: { port: number }) => Promise<RunningHub> = startHub',
      'export const node: () => Promise<HeliaNode> = createHeliaNode',
      'export const both = [createHubApp, heliaStore, new NotFoundError("x").name]',
      ''
    ].join('\n'))
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
    const common = ['--noEmit', '--strict', '--target', 'es2022', '--lib', 'es2024,dom', '--typeRoots', join(ROOT, 'node_modules', '@types'), '--types', 'node', 'types.ts']
    for (const resolution of [['--module', 'node16', '--moduleResolution', 'node16'], ['--module', 'esnext', '--moduleResolution', 'bundler']]) {
      const result = await run(process.execPath, [tsc, ...resolution, ...common], { cwd: project }).catch((err: { stdout: string }) => err)
      expect(result.stdout, resolution.join(' ')).toBe('')
    }
  })

  it('builds a Vite page that imports userspace, with no Node module in it', { timeout: 120_000 }, async () => {
    await writeFile(join(project, 'index.html'), '<!doctype html><html><body><script type="module" src="./main.js"></script></body></html>\n')
    await writeFile(join(project, 'main.js'), [
      "import { openSpace, memoryStore, privateKeySigner } from 'userspace'",
      "const space = await openSpace({ signer: privateKeySigner(new Uint8Array(32).fill(1)), store: memoryStore() })",
      "await space.set('io.example.app', { theme: 'dark' })",
      'document.body.textContent = JSON.stringify(await space.getAll())',
      ''
    ].join('\n'))
    const { stdout, stderr } = await run(process.execPath, [join(project, 'node_modules', 'vite', 'bin', 'vite.js'), 'build'], { cwd: project, env: cleanEnv() })
    expect(stdout + stderr).not.toMatch(/externalized for browser compatibility|error/i)
    expect(existsSync(join(project, 'dist', 'index.html'))).toBe(true)
    const assets = await readdir(join(project, 'dist', 'assets'))
    const code = (await Promise.all(assets.filter(f => f.endsWith('.js')).map(async f => readFile(join(project, 'dist', 'assets', f), 'utf8')))).join('\n')
    expect(code).toContain('Open UserSpace')
    expect(code).not.toMatch(/["']node:[a-z_]+["']/)
  })
})
