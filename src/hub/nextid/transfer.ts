/**
 * Moving an avatar's chain between hubs: reading it (as blocks, or as a CAR streamed block by
 * block, newest first, so an export holds one block in memory), and importing one, all or nothing,
 * after checking every block, every uuid and every signature. An import's cost is bounded before
 * any signature is recovered (links and bytes per chain, one import at a time per hub), links the
 * hub already holds are not verified again, and the event loop is yielded between recoveries so
 * that other requests go on while a long chain is checked.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import * as dagCbor from '@ipld/dag-cbor'
import { varint } from 'multiformats'
import { CID } from 'multiformats/cid'
import { bytesToHex, hexToBytes } from '../../crypto/bytes.js'
import { ConflictError, IntegrityError, InvalidInputError, StoreError, TooLargeError, throwIfAborted } from '../../errors.js'
import { avatarHex, decodeLink, parsePublicKey, verifyLinkSignature, type KvLink } from './chain.js'
import { mergePatch } from './json.js'
import {
  commitBatch, encodeEntry, encodeStat, getCid, keys, mutexFor, readBlock, type AvatarStat, type KvEntry, type NextIdStores, type Put
} from './store.js'
import type { Block, AbortOptions } from '../../store/interface.js'

/** @default for `maxChainLinks`: patches kept per avatar (and accepted in one import). */
export const DEFAULT_MAX_CHAIN_LINKS = 10_000

/** @default for `maxChainBytes`: block bytes kept per avatar (and accepted in one import). */
export const DEFAULT_MAX_CHAIN_BYTES = 8 * 1024 * 1024

/** Yields the avatar's blocks from the head back to the first, each checked against its CID. */
async function * walkChain (stores: NextIdStores, avatar: string, head: CID | null, options?: AbortOptions): AsyncGenerator<Block & { link: KvLink }> {
  const seen = new Set<string>()
  for (let cid = head; cid !== null;) {
    throwIfAborted(options?.signal)
    if (seen.has(cid.toString())) throw new StoreError(`the chain of 0x${avatar} loops at ${cid.toString()}`)
    seen.add(cid.toString())
    const bytes = await readBlock(stores, cid, options)
    const link = await decodeLink({ cid, bytes })
    yield { cid, bytes, link }
    cid = link.previous
  }
}

/** Counts the totals of a chain stored before they were kept beside its head, and reads its blocks. */
export async function avatarStatFromChain (stores: NextIdStores, avatar: string, head: CID | null, options?: AbortOptions): Promise<{ stat: AvatarStat, blocks: Block[] }> {
  const stat = { links: 0, chainBytes: 0, contentBytes: 0 }
  const blocks: Block[] = []
  for await (const { cid, bytes } of walkChain(stores, avatar, head, options)) {
    stat.links++
    stat.chainBytes += bytes.length
    blocks.push({ cid, bytes })
  }
  for await (const { value } of stores.datastore.query({ prefix: keys.kvPrefix(avatar) }, options)) stat.contentBytes += value.length
  return { stat, blocks }
}

export interface AvatarChain {
  /** the newest block, or null when the hub holds nothing for the avatar */
  head: CID | null
  /** every block of the chain, oldest first */
  blocks: Block[]
}

/**
 * Reads an avatar's whole chain into memory (its size is capped by `maxChainBytes` when written).
 * Each block is checked against its CID as it is read.
 */
export async function exportAvatarChain (options: NextIdStores & AbortOptions, avatar: string | Uint8Array): Promise<AvatarChain> {
  const hex = avatarHex(parsePublicKey(avatar))
  const head = await getCid(options.datastore, keys.head(hex), options)
  const blocks: Block[] = []
  for await (const { cid, bytes } of walkChain(options, hex, head, options)) blocks.push({ cid, bytes })
  return { head, blocks: blocks.reverse() }
}

/**
 * The avatar's chain as a CARv1 whose root is the head, blocks newest first, produced as the reader
 * pulls (one block read per pull), or null when the hub holds nothing for the avatar. A block found
 * damaged half-way errors the stream, which the importer then refuses as incomplete.
 */
export async function streamAvatarChain (options: NextIdStores & AbortOptions, avatar: string | Uint8Array): Promise<ReadableStream<Uint8Array> | null> {
  const hex = avatarHex(parsePublicKey(avatar))
  const head = await getCid(options.datastore, keys.head(hex), options)
  if (head === null) return null
  const blocks = walkChain(options, hex, head, options)
  let started = false
  return new ReadableStream<Uint8Array>({
    async pull (controller) {
      if (!started) {
        started = true
        controller.enqueue(carSection(dagCbor.encode({ roots: [head], version: 1 })))
        return
      }
      const next = await blocks.next()
      if (next.done === true) {
        controller.close()
        return
      }
      controller.enqueue(carSection(next.value.cid.bytes, next.value.bytes))
    },
    async cancel () {
      await blocks.return(undefined)
    }
  }, { highWaterMark: 0 })
}

/** One CARv1 section: varint length, then the parts. */
function carSection (...parts: Uint8Array[]): Uint8Array {
  const length = parts.reduce((n, p) => n + p.length, 0)
  const out = new Uint8Array(varint.encodingLength(length) + length)
  varint.encodeTo(length, out)
  let offset = varint.encodingLength(length)
  for (const part of parts) { out.set(part, offset); offset += part.length }
  return out
}

export interface ImportLimits {
  /** @default DEFAULT_MAX_CHAIN_LINKS */
  maxChainLinks?: number
  /** @default DEFAULT_MAX_CHAIN_BYTES */
  maxChainBytes?: number
  /** Next.ID bytes the hub keeps, all avatars together (507 beyond). @default DEFAULT_MAX_STORED_BYTES (1 GiB) */
  maxStoredBytes?: number
  /** fsync the import's batch on LevelDB before resolving. @default true */
  syncWrites?: boolean
}

/**
 * Imports a chain exported by `exportAvatarChain` (or streamed by `streamAvatarChain`), all or
 * nothing. Every block must hash to its CID, decode to a link of one avatar and carry a signature
 * by that avatar over its sign_payload given the previous link; every block must be on the chain
 * from `head`; no uuid may appear twice in it. The hub's existing chain for the avatar, if any,
 * must be a prefix of the imported one (ConflictError otherwise); its links are not verified again.
 * Nothing is written until all of it has been checked. History is taken as it was accepted:
 * `created_at` is not compared with the clock, ProofService bindings and content caps are not
 * re-checked (the "nextid" identity rule and the chain caps are). One import runs at a time per
 * datastore: another gets RateLimitError at once. An import that would take the hub's Next.ID data
 * past `maxStoredBytes` is refused with InsufficientStorageError.
 */
export async function importAvatarChain (options: NextIdStores & AbortOptions & ImportLimits, blocks: Block[], head: CID | null): Promise<void> {
  if (!Array.isArray(blocks)) throw new InvalidInputError(`"blocks" expected an array, got ${typeof blocks}`)
  if (head === null) {
    if (blocks.length > 0) throw new InvalidInputError('"head" is null but blocks were given')
    return
  }
  const headCid = CID.asCID(head)
  if (headCid === null) throw new InvalidInputError(`"head" expected a CID, got ${typeof head}`)
  const maxLinks = options.maxChainLinks ?? DEFAULT_MAX_CHAIN_LINKS
  const maxBytes = options.maxChainBytes ?? DEFAULT_MAX_CHAIN_BYTES
  if (blocks.length > maxLinks) throw new TooLargeError(`the chain has ${blocks.length} blocks, more than this hub keeps per avatar (${maxLinks})`)
  let chainBytes = 0
  for (const given of blocks) chainBytes += given?.bytes instanceof Uint8Array ? given.bytes.length : 0
  if (chainBytes > maxBytes) throw new TooLargeError(`the chain is ${chainBytes} bytes, more than this hub keeps per avatar (${maxBytes})`)

  const mutex = mutexFor(options.datastore)
  await mutex.run(['import'], async () => {
    const byCid = new Map<string, { block: Block, link: KvLink }>()
    for (const given of blocks) {
      const cid = CID.asCID(given?.cid)
      if (cid === null || !(given.bytes instanceof Uint8Array)) throw new InvalidInputError(`"blocks" expected { cid, bytes } items, got one without ${cid === null ? 'a CID' : 'bytes'}`)
      const block = { cid, bytes: given.bytes }
      byCid.set(cid.toString(), { block, link: await decodeLink(block) })
    }

    const chain: Array<{ block: Block, link: KvLink }> = []
    for (let cid: CID | null = headCid; cid !== null;) {
      const item = byCid.get(cid.toString())
      if (item === undefined) throw new InvalidInputError(`block ${cid.toString()} of the chain is missing`)
      if (chain.length >= byCid.size) throw new IntegrityError('the chain loops')
      chain.push(item)
      cid = item.link.previous
    }
    if (chain.length !== byCid.size) throw new InvalidInputError(`${byCid.size - chain.length} of the blocks are not on the chain from the head`)
    chain.reverse()

    // Every check without curve arithmetic, for the whole chain, before the first recovery.
    const first = chain[0] as { block: Block, link: KvLink }
    const avatar = first.link.avatar
    const publicKey = hexToBytes(avatar)
    const uuids = new Set<string>()
    const entries = new Map<string, KvEntry>()
    for (const { block, link } of chain) {
      if (link.avatar !== avatar) throw new IntegrityError(`block ${block.cid.toString()} belongs to another avatar than the chain`)
      if (uuids.has(link.uuid)) throw new IntegrityError(`uuid ${link.uuid} is used twice in the chain`)
      uuids.add(link.uuid)
      if (link.platform === 'nextid' && !sameKey(link.identity, publicKey)) {
        throw new IntegrityError(`block ${block.cid.toString()} has platform "nextid" with another identity than its avatar`)
      }
      const slot = JSON.stringify([link.platform, link.identity])
      entries.set(slot, { platform: link.platform, identity: link.identity, content: mergePatch(entries.get(slot)?.content, link.patch) })
    }

    // What this hub already holds of the chain was verified when it was accepted.
    const localHead = await getCid(options.datastore, keys.head(avatar), options)
    const known = localHead === null ? 0 : chain.findIndex(({ block }) => block.cid.equals(localHead)) + 1
    if (localHead !== null && known === 0) {
      throw new ConflictError(`avatar 0x${avatar} already has a chain on this hub (head ${localHead.toString()}) that the imported chain does not extend`)
    }
    for (let i = known; i < chain.length; i++) {
      const { block, link } = chain[i] as { block: Block, link: KvLink }
      // Recoveries are synchronous: let other requests run between them.
      if (i > known) await yieldToEventLoop()
      throwIfAborted(options.signal)
      verifyLinkSignature(link, i === 0 ? null : (chain[i - 1] as { link: KvLink }).link.signature, block.cid)
    }

    await mutex.run([`avatar:${avatar}`], async () => {
      throwIfAborted(options.signal)
      const local = await getCid(options.datastore, keys.head(avatar), options)
      if (!(local === null ? localHead === null : localHead !== null && local.equals(localHead))) {
        throw new ConflictError(`avatar 0x${avatar}'s chain on this hub changed during the import; import again`)
      }
      await commitBatch(options.datastore, chainPuts(avatar, chain, known, entries, headCid), options.syncWrites ?? true, options.maxStoredBytes)
    })
  }, 1)
}

/**
 * The datastore writes that make `chain` (its links from index `known` on new here) an avatar's
 * chain: new blocks, the merged entries and their identity index, every uuid, the stat and the head.
 * Import and replication both commit these in one batch.
 */
export function chainPuts (avatar: string, chain: Array<{ block: Block, link: KvLink }>, known: number, entries: Map<string, KvEntry>, head: CID): Put[] {
  const puts: Put[] = []
  for (const { block } of chain.slice(known)) puts.push([keys.block(block.cid), block.bytes])
  let contentBytes = 0
  for (const entry of entries.values()) {
    const bytes = encodeEntry(entry)
    contentBytes += bytes.length
    puts.push([keys.kv(avatar, entry.platform, entry.identity), bytes])
    puts.push([keys.identity(entry.platform, entry.identity, avatar), new Uint8Array(0)])
  }
  for (const { block, link } of chain) puts.push([keys.uuid(avatar, link.uuid), block.cid.bytes])
  puts.push([keys.stat(avatar), encodeStat({ links: chain.length, chainBytes: chain.reduce((n, { block }) => n + block.bytes.length, 0), contentBytes })])
  puts.push([keys.head(avatar), head.bytes])
  return puts
}

export function sameKey (identity: string, publicKey: Uint8Array): boolean {
  try {
    return bytesToHex(parsePublicKey(identity, 'identity')) === bytesToHex(publicKey)
  } catch {
    return false
  }
}
