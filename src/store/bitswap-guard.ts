/**
 * A limit on the entries of each bitswap message a peer sends. @helia/bitswap reads messages of up
 * to 4 MiB and handles what they carry one entry at a time: it hashes every block and looks up
 * every wantlist entry and block presence. One message of 270 000 14-byte blocks held a node's
 * event loop 2.6 s; 85 000 wantlist entries, 0.7 s; 85 000 presences, 0.3 s (loopback, Node 20).
 * A legitimate message carries far fewer: a peer keeps at most 1 024 wants of another
 * (@helia/bitswap's wantlist limit) and sends each wanted block or presence once.
 *
 * The guard counts the entries as the bytes arrive, reading protobuf tags and lengths at every
 * level of message.proto of the bitswap spec (wantlist = 1 with its entries = 1, blocks = 2,
 * payload = 3, blockPresences = 4), and aborts the stream at the first entry over the limit, or at
 * anything protons would read otherwise (see bitswapEntryGuard), before bitswap decodes the message.
 */
import { guardReceived } from './stream-guard.js'
import { PeerRate } from './peer-rate.js'
import type { Stream } from '@libp2p/interface'

/**
 * The most entries (wantlist entries, blocks and block presences together) one inbound bitswap
 * message may carry: twice the wants @helia/bitswap keeps per peer (a full wantlist and as many
 * cancels). Entries of the smallest kind cost 25–30 µs each (loopback, Node 20): a message at the
 * limit holds the event loop ~65 ms. @default 2048
 */
export const MAX_BITSWAP_MESSAGE_ENTRIES = 2048

/** The protocol @helia/bitswap speaks and handles inbound streams of. */
export const BITSWAP_PROTOCOL = '/ipfs/bitswap/1.2.0'

/**
 * How @helia/bitswap's decoder (protons) reads each message of message.proto, by field number:
 * a varint, bytes, or a nested message. Fields marked `entry` are the entries counted.
 */
interface Schema { readonly [field: number]: { readonly kind: 'varint' | 'bytes' | Schema, readonly entry?: true } | undefined }
const ENTRY: Schema = { 1: { kind: 'bytes' }, 2: { kind: 'varint' }, 3: { kind: 'varint' }, 4: { kind: 'varint' }, 5: { kind: 'varint' } }
const WANTLIST: Schema = { 1: { kind: ENTRY, entry: true }, 2: { kind: 'varint' } }
const BLOCK: Schema = { 1: { kind: 'bytes' }, 2: { kind: 'bytes' } }
const PRESENCE: Schema = { 1: { kind: 'bytes' }, 2: { kind: 'varint' } }
/** Field 2 (bitswap 1.0 blocks) is not read by @helia/bitswap; it is counted all the same. */
const MESSAGE: Schema = { 1: { kind: WANTLIST }, 2: { kind: 'bytes', entry: true }, 3: { kind: BLOCK, entry: true }, 4: { kind: PRESENCE, entry: true }, 5: { kind: 'varint' } }

/** Longest varint: a negative int32 (`pendingBytes`, `priority`) is written in 10 bytes. */
const MAX_VARINT_BYTES = 10
/** protons reads tags, lengths and known varint fields as uint32: at most 5 bytes (10 for a negative int32). */
const MAX_UINT32_BYTES = 5

const enum Phase { Prefix, Tag, Length, Varint, Skip }

/**
 * Follows a stream of length-prefixed bitswap messages chunk by chunk. Returns a function to call
 * with each chunk in order: it returns a message once a message carries more than `maxEntries`
 * entries, or is not one that protons reads exactly as written; undefined while every message is
 * within it.
 *
 * protons is lenient where this is not: it reads a known field whatever its wire type, a tag or a
 * length of over 5 bytes in part, and lets a nested message's last field run past the nested
 * message's end. A peer could use any of these to make protons read entries this guard would not
 * count, so each is refused: a known field of another wire type, a tag or length of over 5 bytes
 * or 2^32 or more, a known varint of 6 to 9 bytes, a field past the end of the message (or nested
 * message) it is in, groups and unknown wire types. A message an encoder writes has none of them.
 */
export function bitswapEntryGuard (maxEntries: number, onEntry?: () => string | undefined): BitswapGuard {
  let phase = Phase.Prefix
  /** Bytes of the message not complete yet received so far, its length prefix included. */
  let pending = 0
  /** The varint being read, and its bytes so far. */
  let value = 0
  let varintBytes = 0
  /** The messages being read, outermost (the bitswap message) first, and their bytes not read yet. */
  const schemas: Schema[] = []
  const lefts: number[] = []
  /** The field being read: its kind (undefined: unknown) and the bytes of its value still to skip. */
  let kind: 'varint' | 'bytes' | Schema | undefined
  let skip = 0
  let entries = 0
  let failed: string | undefined
  const fail = (why: string): string => (failed = `a bitswap message ${why}`)

  /** Bytes read inside the message: counted against it and every nested message they are in. */
  const read = (n: number): boolean => {
    let inside = true
    for (let i = 0; i < lefts.length; i++) {
      const left = (lefts[i] as number) - n
      lefts[i] = left
      if (left < 0) inside = false
    }
    return inside
  }
  /** A field ended: so do the nested messages (and the message) it was the last of. */
  const fieldDone = (): void => {
    phase = Phase.Tag
    while (lefts.length > 0 && lefts[lefts.length - 1] === 0) {
      lefts.pop()
      schemas.pop()
    }
    if (lefts.length === 0) { phase = Phase.Prefix; pending = 0 }
  }

  const check = (chunk: Uint8Array): string | undefined => {
    if (failed !== undefined) return failed
    let at = 0
    while (at < chunk.byteLength) {
      if (phase === Phase.Skip) {
        const n = Math.min(skip, chunk.byteLength - at)
        skip -= n
        at += n
        pending += n
        if (!read(n)) return fail('with a field that runs past the end of what it is in')
        if (skip === 0) fieldDone()
        continue
      }
      const byte = chunk[at++] as number
      pending++
      if (phase !== Phase.Prefix && !read(1)) return fail('with a field that runs past the end of what it is in')
      value += (byte & 0x7f) * 2 ** (7 * varintBytes)
      varintBytes++
      if ((byte & 0x80) !== 0) {
        if (varintBytes >= MAX_VARINT_BYTES) return fail('with a varint that does not end')
        if (varintBytes >= MAX_UINT32_BYTES && phase !== Phase.Varint) return fail('with a tag or length of over 5 bytes')
        continue
      }
      const v = value
      const bytes = varintBytes
      value = 0
      varintBytes = 0
      switch (phase) {
        case Phase.Prefix:
          // bitswap's reader (it-length-prefixed) reads the value, then skips as many bytes as its
          // shortest form takes: a longer form would have it read the message from another place
          if (byte === 0 && bytes > 1) return fail('length prefix written in more bytes than it needs')
          entries = 0
          if (v === 0) { pending = 0; break }
          schemas.push(MESSAGE)
          lefts.push(v)
          phase = Phase.Tag
          break
        case Phase.Tag: {
          if (v >= 2 ** 32) return fail('with a tag of 2^32 or more')
          const field = Math.floor(v / 8)
          const wire = v % 8
          const known = (schemas[schemas.length - 1] as Schema)[field]
          kind = known?.kind
          const expected = kind === undefined ? wire : kind === 'varint' ? 0 : 2
          if (wire !== expected || (wire !== 0 && wire !== 1 && wire !== 2 && wire !== 5)) return fail(`with field ${field} of wire type ${wire}`)
          if (known?.entry === true) {
            if (++entries > maxEntries) return fail(`of more than ${maxEntries} entries (wants, blocks and presences)`)
            const refused = onEntry?.()
            if (refused !== undefined) return (failed = refused)
          }
          if (wire === 0) phase = Phase.Varint
          else if (wire === 2) phase = Phase.Length
          else { skip = wire === 1 ? 8 : 4; phase = Phase.Skip }
          break
        }
        case Phase.Varint:
          if (kind !== undefined && bytes > MAX_UINT32_BYTES && bytes < MAX_VARINT_BYTES) return fail(`with a varint field of ${bytes} bytes`)
          fieldDone()
          break
        case Phase.Length:
          if (v > (lefts[lefts.length - 1] as number)) return fail('with a field that runs past the end of what it is in')
          if (typeof kind === 'object' && v > 0) {
            // a nested message: its own fields are read next
            schemas.push(kind)
            lefts.push(v)
            phase = Phase.Tag
          } else if (v > 0) {
            skip = v
            phase = Phase.Skip
          } else {
            fieldDone()
          }
          break
      }
    }
    return undefined
  }
  return Object.defineProperty(check, 'pending', { get: () => pending }) as BitswapGuard
}

/** A function to call with each chunk of a bitswap stream in order (see bitswapEntryGuard). */
export interface BitswapGuard {
  (chunk: Uint8Array): string | undefined
  /** Bytes received of the message not complete yet (its length prefix included), which bitswap holds until it is. */
  readonly pending: number
}

/**
 * The most bytes of bitswap messages not complete yet that one peer may have this node hold:
 * @helia/bitswap buffers each message whole (up to 4 MiB) before decoding it, and accepts up to
 * 1 024 inbound streams a connection, so one peer sending the start of a 4 MiB message on each of
 * 100 streams made a node hold 430 MB. A peer sends one message at a time of blocks
 * (@helia/bitswap's ledger) besides its small wantlists. @default 8 MiB
 */
export const MAX_BITSWAP_PEER_PENDING_BYTES = 8 * 1024 * 1024

/** The same, for all peers together. @default 64 MiB */
export const MAX_BITSWAP_PENDING_BYTES = 64 * 1024 * 1024

/**
 * Bytes of incomplete bitswap messages held, per peer and in all: a stream whose next chunk would
 * pass either limit is aborted instead, and a stream that ends gives back what it held.
 */
export class PendingBytes {
  private total = 0
  private readonly byPeer = new Map<string, number>()

  constructor (readonly maxTotal = MAX_BITSWAP_PENDING_BYTES, readonly maxPerPeer = MAX_BITSWAP_PEER_PENDING_BYTES) {}

  /** Counts `delta` bytes (negative: given back) for `peer`; a reason, with nothing counted, when more would pass a limit. */
  add (peer: string, delta: number): string | undefined {
    const mine = (this.byPeer.get(peer) ?? 0) + delta
    if (delta > 0 && mine > this.maxPerPeer) return `bitswap messages of ${mine} bytes or more held for one peer, over the ${this.maxPerPeer}-byte limit`
    if (delta > 0 && this.total + delta > this.maxTotal) return `bitswap messages of ${this.total + delta} bytes or more held for all peers, over the ${this.maxTotal}-byte limit`
    this.total += delta
    if (mine <= 0) this.byPeer.delete(peer)
    else this.byPeer.set(peer, mine)
    return undefined
  }

  /** Bytes held for `peer`, or for all peers. */
  held (peer?: string): number {
    return peer === undefined ? this.total : this.byPeer.get(peer) ?? 0
  }
}

/**
 * Entries a peer may send in a burst, and per second after it. A message at the entry limit costs
 * ~65 ms; written back to back, 100 of them held a node's event loop 810 ms. Devices and hubs fetch
 * a version in one round trip of their own (helia-dag.ts), not over bitswap, which serves other
 * IPFS nodes and replicas catching up. @default 16 384 and 8 192
 */
export const BITSWAP_PEER_ENTRY_BURST = 16_384
export const BITSWAP_PEER_ENTRIES_PER_SECOND = 8_192
/** The same for all peers together. @default 65 536 and 16 384 */
export const BITSWAP_ENTRY_BURST = 65_536
export const BITSWAP_ENTRIES_PER_SECOND = 16_384

/**
 * Token buckets of bitswap entries, per peer and for all peers (BITSWAP_PEER_ENTRY_BURST and the
 * rest): an entry takes one token from both; a message with an entry past either is refused (its
 * stream aborted) before bitswap handles any of it.
 */
export function bitswapRate (now?: () => number): PeerRate {
  return new PeerRate('bitswap entries', {
    peerBurst: BITSWAP_PEER_ENTRY_BURST,
    peerPerSecond: BITSWAP_PEER_ENTRIES_PER_SECOND,
    burst: BITSWAP_ENTRY_BURST,
    perSecond: BITSWAP_ENTRIES_PER_SECOND
  }, now)
}

/**
 * Aborts `stream` (from `peer`, connected from the address `group` names: see `addressGroup`) once
 * a bitswap message it receives carries more than `maxEntries` entries or an entry past `rate`, or
 * once the bytes of its message not complete yet would pass `budget`'s limits.
 */
export function limitBitswapEntries (stream: Stream, peer: string, budget: PendingBytes, rate: PeerRate, maxEntries = MAX_BITSWAP_MESSAGE_ENTRIES, group?: string): void {
  // judged at every entry: judged at a message's first only, flooding peers got whole messages of
  // 700 entries through below half, and an honest fetch took 102–129 ms at worst instead of 13–32 ms
  const check = bitswapEntryGuard(maxEntries, () => rate.take(peer, group))
  let counted = 0
  let refused: string | undefined
  guardReceived(stream, (chunk) => {
    refused ??= check(chunk) ?? budget.add(peer, check.pending - counted)
    if (refused === undefined) counted = check.pending
    return refused
  })
  stream.addEventListener('close', () => {
    budget.add(peer, -counted)
    counted = 0
  })
}
