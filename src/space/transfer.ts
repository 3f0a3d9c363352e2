/**
 * Moving a space between stores (hubs, nodes) as one CAR file. The CAR's single root is a small
 * dag-cbor manifest `{ type: 'userspace/export', version: 1, name, record, root }` carrying the space's
 * IPNS name and its signed record; the CAR then holds every block of every version reachable from
 * `root` through `parents` — each root and the state under its `current` link, ciphertext staying
 * ciphertext. Import checks everything — each block against
 * its CID, the record's signature against the name, that the record points at `root`, that no block is
 * missing, the owner binding — before it writes anything, then uploads the blocks and, last, the record.
 */
import { CarReader } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { FormatError, IntegrityError, InvalidInputError, InvalidRecordError, NotFoundError } from '../errors.js'
import { cborBlock, cidLabel, cidString, encodeCar, getVerifiedBlock, verifyBlock } from '../store/blocks.js'
import { canonicalName, validateRecord } from '../store/record.js'
import { currentBlocks, decodeRoot, verifyOwner, versionOwner } from './root.js'
import type { AbortOptions, Block, Store } from '../store/interface.js'

export const EXPORT_TYPE = 'userspace/export'

/**
 * Progress of an export or import, in the shape of every progress event here (helia's
 * `{ type, detail }`): `transfer:read` (export), `transfer:verify` and `transfer:upload` (import).
 */
export interface TransferProgress {
  type: 'transfer:read' | 'transfer:verify' | 'transfer:upload'
  detail: {
    /** blocks handled so far */
    done: number
    /** blocks known so far (grows while history is walked) */
    total: number
  }
}

export interface TransferOptions extends AbortOptions {
  onProgress?: (progress: TransferProgress) => void
  /** The clock that decides whether a record has expired. @default systemClock */
  nowMs?: () => number
  /** Blocks per upload batch on import. @default 4 MiB worth */
  batchBytes?: number
}

export interface ExportResult {
  name: string
  root: CID
  sequence: number
  /** True when the exported record has expired (see `readPublic`). */
  expired: boolean
  blocks: number
  car: Uint8Array
}

interface Manifest {
  type: string
  version: number
  name: string
  record: Uint8Array
  root: CID
}

/** Every block of every version reachable from `root`, read through `get`, each exactly once. */
async function walk (root: CID, get: (cid: CID) => Promise<Uint8Array>, progress: (done: number, total: number) => void): Promise<Block[]> {
  const out: Block[] = []
  const seen = new Set<string>([cidString(root)])
  let frontier: CID[] = [root]
  while (frontier.length > 0) {
    const next: CID[] = []
    for (const cid of frontier) {
      const bytes = await get(cid)
      out.push({ cid, bytes })
      const version = decodeRoot(bytes)
      // A version's state shares most blocks with its parent's: a subtree seen before is skipped.
      out.push(...await currentBlocks(version.current, get, seen))
      for (const parent of version.parents) {
        if (!seen.has(cidString(parent))) { seen.add(cidString(parent)); next.push(parent) }
      }
      progress(out.length, seen.size)
    }
    frontier = next
  }
  return out
}

/** Writes the current version of `name` (a `k51…` name), its history and its record into a CAR. */
export async function exportSpace (store: Store, name: string, options: TransferOptions = {}): Promise<ExportResult> {
  name = canonicalName(name)
  const record = await store.getRecord(name, { nocache: true, signal: options.signal })
  if (record === undefined) throw new NotFoundError(`no record for ${name}`)
  // An expired record is still the last version its owner signed: worth a backup.
  const info = await validateRecord(name, record, { allowExpired: true, nowMs: options.nowMs })
  if (info.cid === undefined) throw new FormatError(`the record of ${name} does not point at an /ipfs/ root`)
  const blocks = await walk(info.cid, async cid => getVerifiedBlock(store, cid, options), (done, total) => options.onProgress?.({ type: 'transfer:read', detail: { done, total } }))
  const manifest = await cborBlock({ type: EXPORT_TYPE, version: 1, name, record, root: info.cid })
  const all = [manifest, ...blocks]
  return { name, root: info.cid, sequence: Number(info.sequence), expired: info.expired, blocks: blocks.length, car: encodeCar(all) }
}

/** Checks a CAR made by `exportSpace` completely, then loads it into `store`. All checks come first. */
export async function importSpace (store: Store, car: Uint8Array, options: TransferOptions = {}): Promise<{ name: string, root: CID, sequence: number, blocks: number }> {
  let reader: CarReader
  try {
    reader = await CarReader.fromBytes(car)
  } catch (err) {
    throw new InvalidInputError(`not a CAR file: ${(err as Error).message}`, { cause: err })
  }
  const roots = await reader.getRoots()
  if (roots.length !== 1) throw new FormatError(`a space export has one root (its manifest), this CAR has ${roots.length}`)
  const byCid = new Map<string, Uint8Array>()
  let checked = 0
  for await (const block of reader.blocks()) {
    if (!(await verifyBlock(block.cid, block.bytes))) throw new IntegrityError(`block ${cidLabel(block.cid)} does not match its CID: the file was changed`)
    byCid.set(cidString(block.cid), block.bytes)
    options.onProgress?.({ type: 'transfer:verify', detail: { done: ++checked, total: 0 } })
  }
  const get = async (cid: CID): Promise<Uint8Array> => {
    const bytes = byCid.get(cidString(cid))
    if (bytes === undefined) throw new IntegrityError(`block ${cidLabel(cid)} is missing from the file`)
    return bytes
  }
  const manifest = readManifest(await get(roots[0] as CID))
  const info = await validateRecord(manifest.name, manifest.record, { allowExpired: true, nowMs: options.nowMs })
  if (info.expired) {
    // Stores refuse expired records: say so now rather than after uploading every block.
    throw new InvalidRecordError(`the record in the file expired on ${new Date(info.validUntilMs).toISOString()}: its owner must open the space once (which renews it) and export it again`)
  }
  if (info.cid === undefined || !info.cid.equals(manifest.root)) {
    throw new IntegrityError(`the record in the file points at ${info.value}, not at the exported root ${manifest.root.toString()}`)
  }
  const blocks = await walk(manifest.root, get, (done, total) => options.onProgress?.({ type: 'transfer:verify', detail: { done, total } }))
  verifyOwner(await versionOwner(manifest.root, get), manifest.name)

  const batchBytes = options.batchBytes ?? 4 * 1024 * 1024
  let batch: Block[] = []
  let batchSize = 0
  let uploaded = 0
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    await store.putBlocks(batch, options)
    uploaded += batch.length
    options.onProgress?.({ type: 'transfer:upload', detail: { done: uploaded, total: blocks.length } })
    batch = []
    batchSize = 0
  }
  for (const block of blocks) {
    if (batchSize + block.bytes.length > batchBytes) await flush()
    batch.push(block)
    batchSize += block.bytes.length
  }
  await flush()
  await store.putRecord(manifest.name, manifest.record, options)
  return { name: manifest.name, root: manifest.root, sequence: Number(info.sequence), blocks: blocks.length }
}

function readManifest (bytes: Uint8Array): Manifest {
  let value: unknown
  try { value = dagCbor.decode(bytes) } catch { throw new FormatError('the CAR root is not a UserSpace export manifest') }
  const m = value as Partial<Manifest>
  if (m?.type !== EXPORT_TYPE || m.version !== 1 || typeof m.name !== 'string' || !(m.record instanceof Uint8Array) || CID.asCID(m.root) === null) {
    throw new FormatError('the CAR root is not a UserSpace export manifest')
  }
  return { type: m.type, version: m.version, name: canonicalName(m.name), record: m.record, root: CID.asCID(m.root) as CID }
}
