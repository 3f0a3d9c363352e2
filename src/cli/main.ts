/**
 * The `userspace` command. `bin/userspace.js` installs the Node 20 polyfill and calls `main` with the
 * arguments; `main` resolves with the exit code. Commands live in one table (`COMMANDS`): each has
 * a summary, a usage line, examples (shown by `--help`) and a `run` function, so adding one is
 * adding an entry. Exit codes: 0 done, 2 bad usage (unknown command or flag, bad value), and for
 * failures the code `EXIT_CODE` gives the error's name (1 for anything unexpected).
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { EXIT_CODE, UserSpaceError } from '../errors.js'
import { DEFAULT_RATE_LIMIT } from '../hub/options.js'
import { lineLogger } from '../logger.js'
import { SPACE_COMMANDS } from './space-commands.js'
import { APP_COMMANDS } from './app-commands.js'
import { UsageError } from './usage.js'
import type { ParseArgsConfig } from 'node:util'

/** Where the command writes; tests pass their own. */
export interface CliIO {
  out: (line: string) => void
  err: (line: string) => void
  env: Record<string, string | undefined>
  /** Resolves when the process is asked to stop (SIGINT, SIGTERM). */
  stopSignal: () => Promise<string>
  /** Standard input as text, read when an argument is `-`. @default the process's stdin */
  readStdin?: () => Promise<string>
  /** True when `err` goes to a terminal, so progress can redraw one line. @default false */
  errIsTTY?: boolean
}

export interface Command {
  /** One line for the command list. */
  summary: string
  /** e.g. `userspace serve [--port <n>] …` */
  usage: string
  /** Flag descriptions, one per line, shown by `userspace <command> --help`. */
  options?: string[]
  /** Runnable examples; `--help` shows them all. */
  examples: string[]
  run(args: string[], io: CliIO): Promise<number>
}

const USAGE_ERROR = 2

export const COMMANDS: Record<string, Command> = {
  serve: {
    summary: 'run a hub: an IPFS node with the UserSpace HTTP API, the Next.ID KV API and the demo page',
    usage: 'userspace serve [--host <ip>] [--port <n>] [--data <dir>] [--peer <multiaddr>]… [--peers-file <file>] [--replicas <n>] [--listen <multiaddr>]… [--demo <dir>] [--rate-limit <n>] [--verify-threads <n>] [--public-url <url>]',
    options: [
      '--host <ip>            HTTP interface (env USERSPACE_HOST)                 default 127.0.0.1',
      '--port <n>             HTTP port, 0 picks a free one (env USERSPACE_PORT)  default 8787',
      '--data <dir>           blocks, records and the peer key (env USERSPACE_DATA) default ./data',
      '--peer <multiaddr>     another hub to dial in the background, retried until it answers; repeatable',
      '                       (env USERSPACE_PEERS, comma-separated)',
      '--peers-file <file>    more hubs to dial: one multiaddr a line, # comments (env USERSPACE_PEERS_FILE)',
      '--replicas <n>         hubs that hold each space\'s current version, this one included (env',
      '                       USERSPACE_REPLICAS); a PUT waits (≤ 5 s) for the others   default 2',
      '--listen <multiaddr>   libp2p listen address; repeatable (env USERSPACE_LISTEN, comma-separated)',
      '                       default: the ports of the last start (<data>/listen.json), first time free',
      '                       ports on /ip4/127.0.0.1/tcp/0 and /ip4/127.0.0.1/tcp/0/ws',
      '--demo <dir>           the built demo page                                 default dist/demo',
      `--rate-limit <n>       requests per second per client address, 0 = off (a rate given here bursts to 4×)  default ${DEFAULT_RATE_LIMIT.requestsPerSecond} (bursts of ${DEFAULT_RATE_LIMIT.burst})`,
      '--verify-threads <n>   worker threads checking record signatures, 0 = main thread  default cores − 1 (≤ 4)',
      '--peer-groups <on|off> count libp2p peers by the address they connect from (off: each alone, for a',
      '                       hub all peers reach through one proxy) (env USERSPACE_PEER_GROUPS)  default on',
      '--public-url <url>     origin clients reach the HTTP API at, named as the gateway in provider records',
      '                       (env USERSPACE_PUBLIC_URL)                          default the listening address'
    ],
    examples: [
      'userspace serve',
      'userspace serve --port 8787 --data ./data',
      'userspace serve --port 0 --data ./data2 --peer /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…',
      'userspace serve --port 8788 --data ./hub2 --peers-file ./peers.txt --replicas 2',
      'USERSPACE_HOST=0.0.0.0 USERSPACE_PORT=80 userspace serve --listen /ip4/0.0.0.0/tcp/4001'
    ],
    run: serve
  },
  ...SPACE_COMMANDS,
  ...APP_COMMANDS
}

export async function main (argv: string[], io: CliIO = processIO()): Promise<number> {
  const [first, ...rest] = argv
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    const topic = first === 'help' ? rest[0] : undefined
    if (topic !== undefined && COMMANDS[topic] === undefined) return unknownCommand(topic, io)
    io.out(topic === undefined ? generalHelp() : commandHelp(topic, COMMANDS[topic] as Command))
    return first === undefined ? USAGE_ERROR : 0
  }
  if (first === '--version' || first === '-v') {
    io.out(await version())
    return 0
  }
  const command = COMMANDS[first]
  if (command === undefined) return unknownCommand(first, io)
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(commandHelp(first, command))
    return 0
  }
  try {
    return await command.run(rest, io)
  } catch (err) {
    return report(err, io)
  }
}

function unknownCommand (name: string, io: CliIO): number {
  io.err(`userspace: unknown command "${name}". Commands: ${Object.keys(COMMANDS).join(', ')}. Try userspace --help.`)
  return USAGE_ERROR
}

function report (err: unknown, io: CliIO): number {
  if (err instanceof UsageError) {
    io.err(`userspace: ${err.message}`)
    return USAGE_ERROR
  }
  if (err instanceof UserSpaceError) {
    io.err(`userspace: ${err.message} (${err.name})`)
    return EXIT_CODE[err.name] ?? 1
  }
  const fsError = describeFsError(err)
  if (fsError !== undefined) {
    io.err(`userspace: ${fsError}`)
    return USAGE_ERROR
  }
  io.err(`userspace: ${(err as Error)?.stack ?? String(err)}`)
  return 1
}

/** Node's file errors (a missing folder, a path that is a directory, no permission) say what and where. */
function describeFsError (err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException | undefined
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EISDIR: 'is a directory',
    ENOTDIR: 'a part of the path is not a directory',
    EEXIST: 'already exists',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device'
  }
  if (typeof e?.code !== 'string' || typeof e.path !== 'string' || reasons[e.code] === undefined) return undefined
  const action = e.syscall === 'open' || e.syscall === undefined ? 'cannot open' : `cannot ${e.syscall}`
  return `${action} ${e.path}: ${reasons[e.code]}`
}


function generalHelp (): string {
  const width = Math.max(...Object.keys(COMMANDS).map(name => name.length))
  return [
    'userspace — a user-owned, end-to-end encrypted key-value store on IPFS',
    '',
    'Usage: userspace <command> [options]     userspace <command> --help',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Examples:',
    ...Object.values(COMMANDS).flatMap(c => c.examples.map(e => `  ${e}`))
  ].join('\n')
}

function commandHelp (name: string, command: Command): string {
  return [
    `userspace ${name} — ${command.summary}`,
    '',
    `Usage: ${command.usage}`,
    ...(command.options === undefined ? [] : ['', 'Options:', ...command.options.map(o => `  ${o}`)]),
    '',
    'Examples:',
    ...command.examples.map(e => `  ${e}`)
  ].join('\n')
}

async function version (): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  for (const path of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(await readFile(new URL(path, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'userspace') return `userspace ${pkg.version ?? ''}`.trim()
    } catch {}
  }
  return 'userspace'
}

/** parseArgs with exit-code-2 errors worded for people. */
function parse<T extends NonNullable<ParseArgsConfig['options']>> (args: string[], options: T): ReturnType<typeof parseArgs<{ args: string[], options: T, strict: true, allowPositionals: false }>>['values'] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0] ?? 'bad arguments'} (see --help)`, { cause: err })
  }
}

/** A peers file: one multiaddr a line; blank lines and `#` comments are skipped. */
async function readPeersFile (path: string): Promise<string[]> {
  const { readFile } = await import('node:fs/promises')
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read the peers file ${path}: ${(err as Error).message}`, { cause: err })
  }
  return text.split('\n').map(line => line.replace(/#.*/, '').trim()).filter(line => line !== '')
}

function listFrom (value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter(s => s !== '')
}

function integer (value: string, flag: string, min: number, max: number): number {
  const n = Number(value)
  if (!/^\d+$/.test(value.trim()) || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} expected an integer from ${min} to ${max}, got "${value.slice(0, 40)}"`)
  }
  return n
}

/** The demo page built next to this file's package (dist/demo), when it exists. */
function defaultDemoDir (): string | undefined {
  const dir = fileURLToPath(new URL('../../demo', import.meta.url))
  return existsSync(dir) ? dir : undefined
}

async function serve (args: string[], io: CliIO): Promise<number> {
  const flags = parse(args, {
    host: { type: 'string' },
    port: { type: 'string' },
    data: { type: 'string' },
    peer: { type: 'string', multiple: true },
    'peers-file': { type: 'string' },
    replicas: { type: 'string' },
    listen: { type: 'string', multiple: true },
    demo: { type: 'string' },
    'rate-limit': { type: 'string' },
    'verify-threads': { type: 'string' },
    'public-url': { type: 'string' },
    'peer-groups': { type: 'string' }
  })
  const host = flags.host ?? io.env.USERSPACE_HOST ?? undefined
  const portText = flags.port ?? io.env.USERSPACE_PORT
  const port = portText === undefined || portText === '' ? undefined : integer(portText, flags.port === undefined ? 'USERSPACE_PORT' : '--port', 0, 65535)
  const directory = resolve(flags.data ?? io.env.USERSPACE_DATA ?? './data')
  const peersFile = flags['peers-file'] ?? io.env.USERSPACE_PEERS_FILE
  const peers = [...(flags.peer ?? listFrom(io.env.USERSPACE_PEERS)), ...(peersFile === undefined || peersFile === '' ? [] : await readPeersFile(peersFile))]
  const replicasText = flags.replicas ?? io.env.USERSPACE_REPLICAS
  const replicas = replicasText === undefined || replicasText === '' ? undefined : integer(replicasText, flags.replicas === undefined ? 'USERSPACE_REPLICAS' : '--replicas', 1, 16)
  const listenAddrs = flags.listen ?? listFrom(io.env.USERSPACE_LISTEN)
  const rate = flags['rate-limit'] === undefined ? undefined : integer(flags['rate-limit'], '--rate-limit', 0, 1_000_000)
  const demoDir = flags.demo === undefined ? defaultDemoDir() : resolve(flags.demo)
  const verifyThreads = flags['verify-threads'] === undefined ? undefined : integer(flags['verify-threads'], '--verify-threads', 0, 64)
  const peerGroups = flags['peer-groups'] ?? (io.env.USERSPACE_PEER_GROUPS === '' ? undefined : io.env.USERSPACE_PEER_GROUPS) ?? 'on'
  if (peerGroups !== 'on' && peerGroups !== 'off') throw new UsageError(`${flags['peer-groups'] === undefined ? 'USERSPACE_PEER_GROUPS' : '--peer-groups'} expected on or off, got "${peerGroups.slice(0, 20)}"`)

  // Loaded here, not at the top: `userspace --help` should not pay for libp2p.
  const { startHub } = await import('../hub/server.js')
  const hub = await startHub({
    host,
    port,
    directory,
    peers,
    listen: listenAddrs.length > 0 ? listenAddrs : undefined,
    demoDir,
    verifyThreads,
    publicUrl: flags['public-url'] ?? (io.env.USERSPACE_PUBLIC_URL === '' ? undefined : io.env.USERSPACE_PUBLIC_URL),
    cluster: { replicas },
    rateLimit: rate === undefined ? undefined : rate === 0 ? 0 : { requestsPerSecond: rate, burst: rate * 4 },
    peerAddressGroup: peerGroups === 'off' ? () => undefined : undefined,
    logger: lineLogger(io.out)
  })
  io.out(`UserSpace hub listening on ${hub.url}`)
  io.out(`peer id: ${hub.peerId}`)
  for (const address of hub.multiaddrs) io.out(`multiaddr: ${address}`)
  io.out(`data: ${directory}`)
  if (peerGroups === 'off') io.out('peer groups: off (each libp2p peer is counted alone by the bitswap and pubsub rate limits)')
  io.out(demoDir === undefined ? 'demo: not built (run the demo build; / shows a note)' : `demo: ${demoDir}`)
  const signal = await io.stopSignal()
  io.out(`${signal}: stopping`)
  await hub.stop()
  io.out('stopped')
  return 0
}

function processIO (): CliIO {
  // A reader that went away (`userspace inspect … | head -4`) is not the command's mistake: what
  // is left to print goes nowhere, and the command ends as it would have (a hub keeps serving).
  let outGone = false
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err
    outGone = true
  })
  return {
    out: (line) => { if (!outGone) process.stdout.write(line + '\n') },
    err: (line) => { process.stderr.write(line + '\n') },
    env: process.env,
    errIsTTY: process.stderr.isTTY,
    readStdin: async () => {
      const chunks: Buffer[] = []
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks).toString('utf8')
    },
    stopSignal: async () => new Promise<string>((resolve) => {
      const stop = (signal: string): void => {
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
        // A second Ctrl-C while stopping ends the process at once.
        process.once('SIGINT', () => process.exit(130))
        resolve(signal)
      }
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
      // npm (`npm start`, `npx userspace serve`) does not pass a supervisor's SIGTERM on: it exits
      // and leaves this process to init, still holding the data directory. Started by npm, stop
      // when orphaned that way; started directly (systemd, Docker, nohup), the parent is not watched.
      if (process.env.npm_lifecycle_event !== undefined || process.env.npm_command !== undefined) {
        const parent = process.ppid
        const watch = setInterval(() => {
          if (process.ppid !== parent) { clearInterval(watch); stop('parent npm exited') }
        }, ORPHAN_CHECK_MS)
        watch.unref()
      }
    })
  }
}

/** How often a hub started through npm checks that npm is still its parent. */
const ORPHAN_CHECK_MS = 500
