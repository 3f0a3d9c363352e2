/**
 * The `userspace` commands that work on a space through a hub: get, set, remove, ls, patch (with the
 * owner's key), inspect (anyone's space, no key), export and import (moving a space or a Next.ID
 * avatar chain between hubs). The key comes from `USERSPACE_PRIVATE_KEY` or `--key-file`, never
 * from an argument, so it stays out of shell history and process lists.
 */
import { readFile, stat, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { CarReader } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { InvalidInputError, NotFoundError, errorFromName } from '../errors.js'
import { openSpace } from '../space/space.js'
import { readPublic } from '../space/read-public.js'
import { listVersions } from '../space/history.js'
import { privateKeySigner } from '../space/local-signer.js'
import { exportSpace, importSpace, EXPORT_TYPE } from '../space/transfer.js'
import type { TransferProgress } from '../space/transfer.js'
import { hubStore } from '../store/hub.js'
import { canonicalName } from '../store/record.js'
import { checksumAddress } from '../crypto/eip191.js'
import { UsageError } from './usage.js'
import type { Json } from '../space/json.js'
import type { Space, SectionApi } from '../space/space.js'
import type { CliIO, Command } from './main.js'

/** @default hub for every command: the one `userspace serve` starts. */
export const DEFAULT_HUB = 'http://127.0.0.1:8787'

const HUB_OPTION = `--hub <url>            the hub (env USERSPACE_HUB)                       default ${DEFAULT_HUB}`
const KEY_OPTIONS = [
  '--key-file <path>      file holding the wallet private key (hex); or set USERSPACE_PRIVATE_KEY',
  '--public               work on the public section (plaintext, readable by anyone)',
  '--json                 machine-readable output',
  HUB_OPTION
]

type Flags = Record<string, string | boolean | undefined>

function parse (args: string[], options: Record<string, { type: 'string' | 'boolean', short?: string }>, positionals: { min: number, max: number, names: string }): { flags: Flags, positionals: string[] } {
  let parsed
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true })
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0] ?? 'bad arguments'} (see --help)`)
  }
  if (parsed.positionals.length < positionals.min || parsed.positionals.length > positionals.max) {
    throw new UsageError(`expected ${positionals.names} (see --help)`)
  }
  return { flags: parsed.values as Flags, positionals: parsed.positionals }
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
      throw new UsageError(`cannot read --key-file ${flags['key-file']}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  if (key === undefined || key === '') {
    throw new UsageError('no key: set USERSPACE_PRIVATE_KEY or pass --key-file <path> (a key is never taken as an argument)')
  }
  return privateKeySigner(key)
}

async function withSpace<T> (flags: Flags, io: CliIO, fn: (section: SectionApi, space: Space) => Promise<T>): Promise<T> {
  const space = await openSpace({ signer: await signerOf(flags, io), hub: hubOf(flags, io), retryDelayMs: 0 })
  try {
    return await fn(flags.public === true ? space.public : space, space)
  } finally {
    await space.close()
  }
}

/** A JSON argument, or `-` for standard input. */
async function jsonArg (text: string, what: string, io: CliIO): Promise<Json> {
  const source = text === '-' ? await readStdin() : text
  try {
    return JSON.parse(source) as Json
  } catch {
    throw new UsageError(`${what} must be JSON (quote strings: '"dark"'), got ${JSON.stringify(source.slice(0, 60))}`)
  }
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

const common = { 'key-file': { type: 'string' as const }, public: { type: 'boolean' as const }, json: { type: 'boolean' as const }, hub: { type: 'string' as const } }

function done (io: CliIO, flags: Flags, space: Space, what: Record<string, unknown>): number {
  if (flags.json === true) io.out(JSON.stringify({ ...what, name: space.name, sequence: space.sequence }))
  else io.out(`${Object.values(what).map(v => typeof v === 'string' ? v : JSON.stringify(v)).join(' ')} (sequence ${space.sequence})`)
  return 0
}

/** A progress bar on standard error, redrawn in place on a terminal, one line per step otherwise. */
function progressBar (io: CliIO, label: string, show: boolean): (p: TransferProgress) => void {
  let last = 0
  return (p) => {
    if (!show) return
    const now = Date.now()
    const total = Math.max(p.total, p.done)
    const finished = p.phase === 'upload' && p.done === p.total
    if (!finished && now - last < 100) return
    last = now
    const width = 24
    const filled = total === 0 ? 0 : Math.round(width * p.done / total)
    const bar = `${label} ${p.phase.padEnd(6)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${total} blocks`
    if (process.stderr.isTTY) process.stderr.write(`\r${bar}${finished ? '\n' : ''}`)
    else io.err(bar)
  }
}

/** A name as given, or the name a hub's address index holds for a wallet address. */
async function nameOf (target: string, hub: string): Promise<string> {
  if (/^0x[0-9a-fA-F]{40}$/.test(target)) {
    const name = await hubStore(hub).lookupAddress?.(checksumAddress(target))
    if (name === undefined) throw new NotFoundError(`the hub knows no space of ${target}`)
    return name
  }
  return canonicalName(target)
}

export const SPACE_COMMANDS: Record<string, Command> = {
  get: {
    summary: 'print the value of a key as JSON',
    usage: 'userspace get <key> [--public] [--json] [--hub <url>] [--key-file <path>]',
    options: KEY_OPTIONS,
    examples: ['USERSPACE_PRIVATE_KEY=0x… userspace get io.example.app'],
    async run (args, io) {
      const { flags, positionals } = parse(args, common, { min: 1, max: 1, names: '<key>' })
      const key = positionals[0] as string
      const value = await withSpace(flags, io, async section => section.get(key))
      if (value === undefined) throw new NotFoundError(`no value at "${key}"`)
      io.out(flags.json === true ? JSON.stringify({ key, value }) : JSON.stringify(value, null, 2))
      return 0
    }
  },
  set: {
    summary: 'set a key to a JSON value (- reads the value from standard input)',
    usage: 'userspace set <key> <json|-> [--public] [--json] [--hub <url>] [--key-file <path>]',
    options: KEY_OPTIONS,
    examples: [
      `USERSPACE_PRIVATE_KEY=0x… userspace set io.example.app '{"theme":"dark"}'`,
      `echo '"Alice"' | userspace set name - --public --key-file ./wallet.key`
    ],
    async run (args, io) {
      const { flags, positionals } = parse(args, common, { min: 2, max: 2, names: '<key> <json>' })
      const [key, text] = positionals as [string, string]
      const value = await jsonArg(text, 'the value', io)
      return withSpace(flags, io, async (section, space) => { await section.set(key, value); return done(io, flags, space, { set: key }) })
    }
  },
  remove: {
    summary: 'remove a key',
    usage: 'userspace remove <key> [--public] [--json] [--hub <url>] [--key-file <path>]',
    options: KEY_OPTIONS,
    examples: ['USERSPACE_PRIVATE_KEY=0x… userspace remove io.example.app'],
    async run (args, io) {
      const { flags, positionals } = parse(args, common, { min: 1, max: 1, names: '<key>' })
      const key = positionals[0] as string
      return withSpace(flags, io, async (section, space) => { await section.remove(key); return done(io, flags, space, { removed: key }) })
    }
  },
  ls: {
    summary: 'list the keys (with --json: the whole map)',
    usage: 'userspace ls [--public] [--json] [--hub <url>] [--key-file <path>]',
    options: KEY_OPTIONS,
    examples: ['USERSPACE_PRIVATE_KEY=0x… userspace ls', 'USERSPACE_PRIVATE_KEY=0x… userspace ls --json | jq .'],
    async run (args, io) {
      const { flags } = parse(args, common, { min: 0, max: 0, names: 'no arguments' })
      return withSpace(flags, io, async (section) => {
        if (flags.json === true) io.out(JSON.stringify(await section.getAll()))
        else for (const key of await section.keys()) io.out(key)
        return 0
      })
    }
  },
  patch: {
    summary: 'apply an RFC 7396 JSON merge patch to the whole map (- reads it from standard input)',
    usage: 'userspace patch <json|-> [--public] [--json] [--hub <url>] [--key-file <path>]',
    options: KEY_OPTIONS,
    examples: [`USERSPACE_PRIVATE_KEY=0x… userspace patch '{"io.example.app":{"volume":3,"muted":null}}'`],
    async run (args, io) {
      const { flags, positionals } = parse(args, common, { min: 1, max: 1, names: '<json>' })
      const patch = await jsonArg(positionals[0] as string, 'the patch', io)
      if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) throw new UsageError('the patch must be a JSON object')
      return withSpace(flags, io, async (section, space) => { await section.patch(patch); return done(io, flags, space, { patched: Object.keys(patch) }) })
    }
  },
  inspect: {
    summary: "show anyone's space: owner (verified), sequence, public section, history",
    usage: 'userspace inspect <name|address> [--json] [--hub <url>]',
    options: ['--json                 machine-readable output', HUB_OPTION],
    examples: ['userspace inspect 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', 'userspace inspect k51qzi5uqu5dj… --json'],
    async run (args, io) {
      const { flags, positionals } = parse(args, { json: { type: 'boolean' }, hub: { type: 'string' } }, { min: 1, max: 1, names: '<name|address>' })
      const hub = hubOf(flags, io)
      const store = hubStore(hub)
      const name = await nameOf(positionals[0] as string, hub)
      const profile = await readPublic({ name, store })
      const history = (await listVersions(store, profile.root, 50)).map(h => ({ sequence: h.sequence, updatedAt: new Date(h.updatedAt).toISOString(), device: h.device, root: h.root.toString() }))
      const info = {
        name: profile.name,
        owner: profile.address,
        ownerVerified: true,
        sequence: profile.sequence,
        updatedAt: new Date(profile.updatedAt).toISOString(),
        root: profile.root.toString(),
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
        const res = await hubFetch(`${hub}/api/v1/nextid/export?avatar=${encodeURIComponent(flags.avatar)}`)
        const car = new Uint8Array(await res.arrayBuffer())
        await writeFile(out, car)
        io.out(flags.json === true
          ? JSON.stringify({ avatar: flags.avatar, bytes: car.length, file: out })
          : `exported the chain of avatar ${flags.avatar} (${car.length} bytes) to ${out}`)
        return 0
      }
      if (positionals.length === 0) throw new UsageError('expected <name|address> or --avatar <key>')
      const name = await nameOf(positionals[0] as string, hub)
      const result = await exportSpace(hubStore(hub), name, { onProgress: progressBar(io, 'export', flags.progress === true || process.stderr.isTTY) })
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
        throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      }
      const hub = hubOf(flags, io)
      if (!(await isSpaceExport(car))) {
        const res = await hubFetch(`${hub}/api/v1/nextid/import`, { method: 'POST', headers: { 'content-type': 'application/vnd.ipld.car' }, body: car as Uint8Array<ArrayBuffer> })
        const body = await res.json() as { head: string, blocks: number }
        io.out(flags.json === true
          ? JSON.stringify({ head: body.head, blocks: body.blocks, hub })
          : `imported an avatar chain of ${body.blocks} signed patches (head ${body.head}) into ${hub}`)
        return 0
      }
      const result = await importSpace(hubStore(hub), car, { onProgress: progressBar(io, 'import', flags.progress === true || process.stderr.isTTY) })
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

async function hubFetch (url: string, init?: RequestInit): Promise<Response> {
  let res: Response
  try {
    res = await fetch(url, init)
  } catch (err) {
    throw errorFromName('StoreError', `cannot reach the hub at ${new URL(url).origin}: ${(err as Error).message}`)
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({})) as { message?: string, name?: string }
    throw errorFromName(body.name ?? (res.status === 404 ? 'NotFoundError' : res.status === 409 ? 'ConflictError' : res.status < 500 ? 'InvalidInputError' : 'StoreError'), body.message ?? `the hub answered ${res.status}`)
  }
  return res
}
