/**
 * Real hub processes for tests: `node bin/userspace.js serve --port 0` (built by `npm run build`),
 * on 127.0.0.1, with the URL, peer id and multiaddrs it prints; and the `userspace` command run as a
 * user would run it, with its real exit code. Callers stop what they start, by pid.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const BIN = join(ROOT, 'bin', 'userspace.js')

export interface HubProcess {
  child: ChildProcess
  url: string
  peerId: string
  multiaddrs: string[]
  output: () => string
}

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Starts `userspace serve` and resolves once it has printed where it listens. */
export async function startHubProcess (dataDir: string, extra: string[] = []): Promise<HubProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dataDir, '--rate-limit', '0', ...extra], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const deadline = Date.now() + 30_000
  // `--peer` is dialled in the background; a caller that passes one wants it connected.
  const peers = extra.filter((_, i) => extra[i - 1] === '--peer').length
  const ready = (): boolean => /^data: /m.test(out) && (out.match(/^peer: connected to /gm)?.length ?? 0) >= peers
  while (!ready()) {
    if (child.exitCode !== null) throw new Error(`hub exited with ${child.exitCode}: ${err}${out}`)
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`hub did not start within 30 s: ${err}${out}`) }
    await sleep(25)
  }
  const url = /listening on (http:\/\/\S+)/.exec(out)?.[1]
  const peerId = /^peer id: (\S+)/m.exec(out)?.[1]
  const multiaddrs = [...out.matchAll(/^multiaddr: (\S+)/gm)].map(m => m[1] as string)
  if (url === undefined || peerId === undefined) { child.kill('SIGKILL'); throw new Error(`unexpected hub output: ${out}`) }
  return { child, url, peerId, multiaddrs, output: () => out + err }
}

export async function stopProcess (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
  const exited = new Promise<number | null>(resolve => child.once('exit', (code) => { resolve(code) }))
  child.kill(signal)
  return exited
}

export interface CliResult { code: number | null, stdout: string, stderr: string }

/** Runs `userspace <args>` in a new process, as a user would. */
export async function runCli (args: string[], env: Record<string, string> = {}, stdin?: string): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  child.stdin.end(stdin ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const code = await new Promise<number | null>(resolve => child.once('exit', c => { resolve(c) }))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

/**
 * A Node module script (`node --input-type=module -e`) that runs `startHub` from `entry` with the
 * options in `HUB_OPTIONS` (JSON), prints `url <url>` once it listens, and stops on SIGTERM: a hub in
 * its own process, for tests and benchmarks that watch its memory or kill it.
 */
export function hubScript (entry: string): string {
  return `
    const { startHub } = await import(${JSON.stringify(entry)})
    const hub = await startHub(JSON.parse(process.env.HUB_OPTIONS))
    console.log('url ' + hub.url)
    process.on('SIGTERM', () => { hub.stop().then(() => process.exit(0)) })
  `
}
