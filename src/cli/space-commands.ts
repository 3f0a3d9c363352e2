/**
 * The `userspace` commands that work on a space through a hub: get, set, remove, ls, patch (with the
 * owner's key), inspect (anyone's space, no key), export and import (moving a space or a Next.ID
 * avatar chain between hubs). The key comes from `USERSPACE_PRIVATE_KEY` or `--key-file`, never
 * from an argument, so it stays out of shell history and process lists.
 */
import { CAR_TYPE, NEXTID_EXPORT_PATH, NEXTID_IMPORT_PATH } from '../protocol.js'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { CarReader } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { InvalidInputError, NotFoundError, StoreError, TooLargeError, UntrustedHubError, UserSpaceError, errorFromName } from '../errors.js'
import { openSpace } from '../space/space.js'
import { readPublic } from '../space/read-public.js'
import { listVersions } from '../space/history.js'
import { privateKeySigner } from '../space/local-signer.js'
import { exportSpace, importSpace, EXPORT_TYPE } from '../space/transfer.js'
import type { TransferProgress } from '../space/transfer.js'
import { DEFAULT_REQUEST_TIMEOUT_MS, MAX_JSON_RESPONSE_BYTES, hubStore, readCapped } from '../store/hub.js'
import type { Store } from '../store/interface.js'
import { canonicalName } from '../store/record.js'
import { checksumAddress } from '../crypto/eip191.js'
import { UsageError } from './usage.js'
import type { Json } from '../space/json.js'
import type { Space, SectionApi } from '../space/space.js'
import type { CliIO, Command } from './main.js'

/** @default hub for every command: the one `userspace serve` starts. */
export const DEFAULT_HUB = 'http://127.0.0.1:8787'

export const HUB_OPTION = `--hub <url>            the hub (env USERSPACE_HUB)                       default ${DEFAULT_HUB}`
export type Flags = Record<string, string | boolean | undefined>

export function parse (args: string[], options: Record<string, { type: 'string' | 'boolean', short?: string }>, positionals: { min: number, max: number, names: string }): { flags: Flags, positionals: string[] } {
  let parsed
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true })
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0] ?? 'bad arguments'} (see --help)`, { cause: err })
  }
  if (parsed.positionals.length < positionals.min || parsed.positionals.length > positionals.max) {
    throw new UsageError(`expected ${positionals.names} (see --help)`)
  }
  return { flags: parsed.values as Flags, positionals: parsed.positionals }
}

/** Largest CAR the CLI reads from a hub (an avatar chain export); env `USERSPACE_MAX_CAR_BYTES`. @default 256 MiB */
export const DEFAULT_CLI_MAX_CAR_BYTES = 256 * 1024 * 1024

/** A positive whole number from the environment, or undefined when unset. */
function envNumber (io: CliIO, name: string, unit: string): number | undefined {
  const text = io.env[name]
  if (text === undefined || text === '') return undefined
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${name} expected a positive whole number of ${unit}, got "${text.slice(0, 40)}"`)
  return n
}

/**
 * Milliseconds one call to the hub may take: `USERSPACE_TIMEOUT_MS`, or the library's 30 s default,
 * so that a hub that accepts the connection and never answers ends the command with exit code 8.
 */
function timeoutOf (io: CliIO): number | undefined {
  return envNumber(io, 'USERSPACE_TIMEOUT_MS', 'milliseconds')
}

/** The hub as a Store, with the request timeout. */
function storeOf (flags: Flags, io: CliIO): ReturnType<typeof hubStore> {
  return hubStore(hubOf(flags, io), { timeoutMs: timeoutOf(io) })
}

function hubOf (flags: Flags, io: CliIO): string {
  const hub = (flags.hub as string | undefined) ?? io.env.USERSPACE_HUB ?? DEFAULT_HUB
  try {
    const url = new URL(hub)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http')
  } catch {
    throw new UsageError(`--hub expected an http(s) URL, got "${hub.slice(0, 80)}"`)
  }
  return hub.replace(/\/+$/, '')
}

async function signerOf (flags: Flags, io: CliIO): Promise<ReturnType<typeof privateKeySigner>> {
  let key = io.env.USERSPACE_PRIVATE_KEY
  if (typeof flags['key-file'] === 'string') {
    try {
      key = (await readFile(flags['key-file'], 'utf8')).trim()
    } catch (err) {
      throw new UsageError(`cannot read --key-file ${flags['key-file']}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
    }
  }
  if (key === undefined || key === '') {
    throw new UsageError('no key: set USERSPACE_PRIVATE_KEY or pass --key-file <path> (a key is never taken as an argument)')
  }
  return privateKeySigner(key)
}

export async function withSpace<T> (flags: Flags, io: CliIO, fn: (section: SectionApi, space: Space) => Promise<T>): Promise<T> {
  const space = await openSpace({ signer: await signerOf(flags, io), store: storeOf(flags, io), retryDelayMs: 0 })
  try {
    return await fn(flags.public === true ? space.public : space, space)
  } finally {
    await space.close()
  }
}

/** A JSON argument, or `-` for standard input. */
async function jsonArg (text: string, what: string, io: CliIO): Promise<Json> {
  const source = text === '-' ? await (io.readStdin ?? noStdin)() : text
  try {
    return JSON.parse(source) as Json
  } catch {
    throw new UsageError(`${what} must be JSON (quote strings: '"dark"'), got ${JSON.stringify(source.slice(0, 60))}`)
  }
}

async function noStdin (): Promise<string> {
  throw new UsageError('"-" reads standard input, and this caller gave none')
}

/** The flags of a command that opens the caller's own space: what `parse` takes, the usage tail and the help lines. */
export interface FlagSet {
  options: Record<string, { type: 'string' | 'boolean', short?: string }>
  usage: string
  help: string[]
}

/** The owner-key commands' flags, without `--public` (the app commands work on the whole space). */
export const OWNER_FLAGS: FlagSet = {
  options: { json: { type: 'boolean' }, hub: { type: 'string' }, 'key-file': { type: 'string' } },
  usage: '[--json] [--hub <url>] [--key-file <path>]',
  help: [
    '--key-file <path>      file holding the wallet private key (hex); or set USERSPACE_PRIVATE_KEY',
    '--json                 machine-readable output',
    HUB_OPTION
  ]
}

const KEY_FLAGS: FlagSet = {
  options: { public: { type: 'boolean' }, ...OWNER_FLAGS.options },
  usage: `[--public] ${OWNER_FLAGS.usage}`,
  help: [
    OWNER_FLAGS.help[0] as string,
    '--public               work on the public section (plaintext, readable by anyone)',
    ...OWNER_FLAGS.help.slice(1)
  ]
}

/** What differs between two commands that open the caller's own space. */
export interface OwnSpaceCommand {
  summary: string
  /** The positional arguments as usage shows them, space-separated (`'<key> <json|->'`); each is required. */
  args: string
  examples: string[]
  /** The positional arguments, as many as `args` names (checked before `run`). */
  run(positionals: [string, string], flags: Flags, io: CliIO): Promise<number>
}

/** Commands that share one flag set: the usage line, the help and the argument check come from it. */
export function ownSpaceCommands (flagSet: FlagSet, table: Record<string, OwnSpaceCommand>): Record<string, Command> {
  return Object.fromEntries(Object.entries(table).map(([name, c]) => {
    const count = c.args === '' ? 0 : c.args.split(' ').length
    const command: Command = {
      summary: c.summary,
      usage: `userspace ${name} ${c.args === '' ? '' : `${c.args} `}${flagSet.usage}`,
      options: flagSet.help,
      examples: c.examples,
      async run (args, io) {
        const { flags, positionals } = parse(args, flagSet.options, { min: count, max: count, names: c.args === '' ? 'no arguments' : c.args })
        return c.run(positionals as [string, string], flags, io)
      }
    }
    return [name, command]
  }))
}

/**
 * Waits for a write to reach the hub, then reports it. The write is already durable in this
 * device's state (a file under the state directory) before that: when the hub cannot take it now,
 * the command fails, and the write goes out with the next command that reaches the hub.
 */
async function published (io: CliIO, flags: Flags, space: Space, what: Record<string, unknown>): Promise<number> {
  try {
    await space.flush()
  } catch (err) {
    io.err(`the write is kept on this device and goes out with the next userspace command that reaches the hub (${space.pending} pending)`)
    throw err
  }
  return done(io, flags, space, what)
}

function done (io: CliIO, flags: Flags, space: Space, what: Record<string, unknown>): number {
  if (flags.json === true) io.out(JSON.stringify({ ...what, name: space.name, sequence: space.sequence }))
  else io.out(`${Object.values(what).map(v => typeof v === 'string' ? v : JSON.stringify(v)).join(' ')} (sequence ${space.sequence})`)
  return 0
}

/** A progress bar on standard error, redrawn in place on a terminal, one line per step otherwise. */
function progressBar (io: CliIO, label: string, show: boolean): (p: TransferProgress) => void {
  let last = 0
  return ({ type, detail: p }) => {
    if (!show) return
    const phase = type.slice('transfer:'.length)
    // A throttle, not a date: the monotonic timer.
    const now = performance.now()
    const total = Math.max(p.total, p.done)
    const finished = phase === 'upload' && p.done === p.total
    if (!finished && now - last < 100) return
    last = now
    const width = 24
    const filled = total === 0 ? 0 : Math.round(width * p.done / total)
    const bar = `${label} ${phase.padEnd(6)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${total} blocks`
    if (io.errIsTTY === true) process.stderr.write(`\r${bar}${finished ? '\n' : ''}`)
    else io.err(bar)
  }
}

/** A name as given, or the name a hub's address index holds for a wallet address. */
async function nameOf (target: string, store: Store): Promise<string> {
  if (/^0x[0-9a-fA-F]{40}$/.test(target)) {
    const name = await store.lookupAddress?.(checksumAddress(target))
    if (name === undefined) throw new NotFoundError(`the hub knows no space of ${target}`)
    return name
  }
  return canonicalName(target)
}

export const SPACE_COMMANDS: Record<string, Command> = {
  ...ownSpaceCommands(KEY_FLAGS, {
    get: {
      summary: 'print the value of a key as JSON',
      args: '<key>',
      examples: ['USERSPACE_PRIVATE_KEY=0x… userspace get io.example.app'],
      async run ([key], flags, io) {
        const value = await withSpace(flags, io, async section => section.get(key))
        if (value === undefined) throw new NotFoundError(`no value at "${key}"`)
        io.out(flags.json === true ? JSON.stringify({ key, value }) : JSON.stringify(value, null, 2))
        return 0
      }
    },
    set: {
      summary: 'set a key to a JSON value (- reads the value from standard input)',
      args: '<key> <json|->',
      examples: [
        `USERSPACE_PRIVATE_KEY=0x… userspace set io.example.app '{"theme":"dark"}'`,
        `echo '"Alice"' | userspace set name - --public --key-file ./wallet.key`
      ],
      async run ([key, text], flags, io) {
        const value = await jsonArg(text, 'the value', io)
        return withSpace(flags, io, async (section, space) => { await section.set(key, value); return published(io, flags, space, { set: key }) })
      }
    },
    remove: {
      summary: 'remove a key',
      args: '<key>',
      examples: ['USERSPACE_PRIVATE_KEY=0x… userspace remove io.example.app'],
      async run ([key], flags, io) {
        return withSpace(flags, io, async (section, space) => { await section.remove(key); return published(io, flags, space, { removed: key }) })
      }
    },
    ls: {
      summary: 'list the keys (with --json: the whole map)',
      args: '',
      examples: ['USERSPACE_PRIVATE_KEY=0x… userspace ls', 'USERSPACE_PRIVATE_KEY=0x… userspace ls --json | jq .'],
      async run (_, flags, io) {
        return withSpace(flags, io, async (section) => {
          if (flags.json === true) io.out(JSON.stringify(await section.getAll()))
          else for (const key of await section.keys()) io.out(key)
          return 0
        })
      }
    },
    patch: {
      summary: 'apply an RFC 7396 JSON merge patch to the whole map (- reads it from standard input)',
      args: '<json|->',
      examples: [`USERSPACE_PRIVATE_KEY=0x… userspace patch '{"io.example.app":{"volume":3,"muted":null}}'`],
      async run ([text], flags, io) {
        const patch = await jsonArg(text, 'the patch', io)
        if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new UsageError('the patch must be a JSON object')
        return withSpace(flags, io, async (section, space) => { await section.patch(patch); return published(io, flags, space, { patched: Object.keys(patch) }) })
      }
    }
  }),
  inspect: {
    summary: "show anyone's space: owner (verified), sequence, public section, history",
    usage: 'userspace inspect <name|address> [--json] [--hub <url>]',
    options: ['--json                 machine-readable output', HUB_OPTION],
    examples: ['userspace inspect 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', 'userspace inspect k51qzi5uqu5dj… --json'],
    async run (args, io) {
      const { flags, positionals } = parse(args, { json: { type: 'boolean' }, hub: { type: 'string' } }, { min: 1, max: 1, names: '<name|address>' })
      const store = storeOf(flags, io)
      const name = await nameOf(positionals[0] as string, store)
      const profile = await readPublic({ name, store })
      const history = (await listVersions(store, profile.root, 50)).map(h => ({ sequence: h.sequence, updatedAt: new Date(h.updatedAt).toISOString(), device: h.device, root: h.root.toString() }))
      const info = {
        name: profile.name,
        owner: profile.address,
        ownerVerified: true,
        sequence: profile.sequence,
        updatedAt: new Date(profile.updatedAt).toISOString(),
        root: profile.root.toString(),
        expired: profile.expired,
        validUntil: new Date(profile.validUntilMs).toISOString(),
        public: profile.data,
        history
      }
      if (flags.json === true) {
        io.out(JSON.stringify(info))
      } else {
        io.out(`name:     ${info.name}`)
        io.out(`owner:    ${info.owner} (owner binding verified)`)
        io.out(`sequence: ${info.sequence}, updated ${info.updatedAt}`)
        io.out(`root:     ${info.root}`)
        io.out(info.expired
          ? `record:   EXPIRED on ${info.validUntil}: this is the last version its owner signed; opening the space renews it`
          : `record:   valid until ${info.validUntil}`)
        io.out(`public:   ${JSON.stringify(info.public)}`)
        io.out('history:')
        for (const h of history) io.out(`  ${String(h.sequence).padStart(5)}  ${h.updatedAt}  device ${h.device}  ${h.root}`)
      }
      return 0
    }
  },
  export: {
    summary: 'write a space (all versions, ciphertext stays ciphertext, plus its signed record) or a Next.ID avatar chain to a CAR file',
    usage: 'userspace export <name|address> -o <file.car> [--hub <url>] [--progress] [--json]   |   userspace export --avatar <public key> -o <file.car>',
    options: [
      '-o, --out <file>       the CAR file to write',
      '--json                 machine-readable output',
      '--avatar <key>         export a Next.ID avatar\'s signed patch chain instead of a space',
      '--progress             show a progress bar on standard error (always on a terminal)',
      HUB_OPTION
    ],
    examples: ['userspace export 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 -o space.car', 'userspace export --avatar 0x02d7… -o avatar.car --hub http://127.0.0.1:8787'],
    async run (args, io) {
      const { flags, positionals } = parse(args, { out: { type: 'string', short: 'o' }, avatar: { type: 'string' }, progress: { type: 'boolean' }, hub: { type: 'string' }, json: { type: 'boolean' } }, { min: 0, max: 1, names: '<name|address> or --avatar <key>' })
      const out = flags.out as string | undefined
      if (out === undefined) throw new UsageError('-o <file.car> is required')
      await checkOutputFolder(out)
      const hub = hubOf(flags, io)
      if (typeof flags.avatar === 'string') {
        if (positionals.length > 0) throw new UsageError('give either <name|address> or --avatar, not both')
        const car = await hubFetch(`${hub}${NEXTID_EXPORT_PATH}?avatar=${encodeURIComponent(flags.avatar)}`, io, envNumber(io, 'USERSPACE_MAX_CAR_BYTES', 'bytes') ?? DEFAULT_CLI_MAX_CAR_BYTES)
        await writeFile(out, car)
        io.out(flags.json === true
          ? JSON.stringify({ avatar: flags.avatar, bytes: car.length, file: out })
          : `exported the chain of avatar ${flags.avatar} (${car.length} bytes) to ${out}`)
        return 0
      }
      if (positionals.length === 0) throw new UsageError('expected <name|address> or --avatar <key>')
      const store = storeOf(flags, io)
      const name = await nameOf(positionals[0] as string, store)
      const result = await exportSpace(store, name, { onProgress: progressBar(io, 'export', flags.progress === true || io.errIsTTY === true) })
      await writeFile(out, result.car)
      io.out(flags.json === true
        ? JSON.stringify({ name: result.name, sequence: result.sequence, blocks: result.blocks, bytes: result.car.length, file: out })
        : `exported ${result.name} at sequence ${result.sequence}: ${result.blocks} blocks, ${result.car.length} bytes, to ${out}`)
      return 0
    }
  },
  import: {
    summary: 'verify a CAR made by export, every block and signature, then load it into a hub',
    usage: 'userspace import <file.car> [--hub <url>] [--progress] [--json]',
    options: ['--progress             show a progress bar on standard error (always on a terminal)', '--json                 machine-readable output', HUB_OPTION],
    examples: ['userspace import space.car --hub http://127.0.0.1:8788', 'userspace import avatar.car --hub http://127.0.0.1:8788'],
    async run (args, io) {
      const { flags, positionals } = parse(args, { progress: { type: 'boolean' }, hub: { type: 'string' }, json: { type: 'boolean' } }, { min: 1, max: 1, names: '<file.car>' })
      const file = positionals[0] as string
      let car: Uint8Array
      try {
        car = new Uint8Array(await readFile(file))
      } catch (err) {
        throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
      }
      const hub = hubOf(flags, io)
      if (!(await isSpaceExport(car))) {
        const answer = await hubFetch(`${hub}${NEXTID_IMPORT_PATH}`, io, MAX_JSON_RESPONSE_BYTES, { method: 'POST', headers: { 'content-type': CAR_TYPE }, body: car as Uint8Array<ArrayBuffer> })
        let body: { head: string, blocks: number }
        try {
          body = JSON.parse(new TextDecoder().decode(answer)) as { head: string, blocks: number }
        } catch (err) {
          throw new UntrustedHubError(`the hub at ${hub} answered the import with something that is not JSON`, { cause: err })
        }
        io.out(flags.json === true
          ? JSON.stringify({ head: body.head, blocks: body.blocks, hub })
          : `imported an avatar chain of ${body.blocks} signed patches (head ${body.head}) into ${hub}`)
        return 0
      }
      const result = await importSpace(storeOf(flags, io), car, { onProgress: progressBar(io, 'import', flags.progress === true || io.errIsTTY === true) })
      io.out(flags.json === true
        ? JSON.stringify({ name: result.name, sequence: result.sequence, blocks: result.blocks, hub })
        : `imported ${result.name} at sequence ${result.sequence}: ${result.blocks} blocks verified and loaded into ${hub}`)
      return 0
    }
  }
}

/** Refuses an output path whose folder does not exist before any network work is done. */
async function checkOutputFolder (file: string): Promise<void> {
  const folder = dirname(resolve(file))
  const info = await stat(folder).catch(() => undefined)
  if (info?.isDirectory() !== true) throw new UsageError(`cannot write ${file}: the folder ${folder} does not exist`)
}

async function isSpaceExport (car: Uint8Array): Promise<boolean> {
  try {
    const reader = await CarReader.fromBytes(car)
    const [root] = await reader.getRoots()
    const block = root === undefined ? undefined : await reader.get(root)
    return block !== undefined && (dagCbor.decode(block.bytes) as { type?: unknown })?.type === EXPORT_TYPE
  } catch {
    throw new InvalidInputError('the file is not a CAR made by userspace export')
  }
}

/**
 * A call to a hub route the Store does not cover (Next.ID chains), bounded like the Store's: the
 * request timeout over the whole exchange and at most `maxBytes` of answer.
 */
async function hubFetch (url: string, io: CliIO, maxBytes: number, init: RequestInit = {}): Promise<Uint8Array> {
  const origin = new URL(url).origin
  const timeoutMs = timeoutOf(io) ?? DEFAULT_REQUEST_TIMEOUT_MS
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    const res = await fetch(url, { ...init, signal })
    if (!res.ok) {
      let body: { message?: unknown, name?: unknown } = {}
      try { body = JSON.parse(new TextDecoder().decode(await readCapped(res, MAX_JSON_RESPONSE_BYTES))) } catch {}
      const name = typeof body.name === 'string' && body.name !== 'NonDeterministicSignerError' && body.name !== 'SignerError' ? body.name : undefined
      throw errorFromName(name ?? (res.status === 404 ? 'NotFoundError' : res.status === 409 ? 'ConflictError' : res.status < 500 ? 'InvalidInputError' : 'StoreError'),
        typeof body.message === 'string' ? body.message.slice(0, 500) : `the hub answered ${res.status}`)
    }
    try {
      return await readCapped(res, maxBytes)
    } catch (err) {
      if (err instanceof TooLargeError) throw new UntrustedHubError(`the hub at ${origin} sent an answer over the ${maxBytes}-byte limit`, { cause: err })
      throw err
    }
  } catch (err) {
    if (signal.aborted) throw new StoreError(`the hub at ${origin} did not answer within ${timeoutMs} ms`, { cause: err })
    if (err instanceof UserSpaceError) throw err
    throw new StoreError(`cannot reach the hub at ${origin}: ${(err as Error).message}`, { cause: err })
  }
}
