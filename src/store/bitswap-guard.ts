/**
 * A limit on the entries of each bitswap message a peer sends. @helia/bitswap reads messages of up
 * to 4 MiB and handles what they carry one entry at a time: it hashes every block and looks up
 * every wantlist entry and block presence. One message of 270 000 14-byte blocks held a node's
 * event loop 2.6 s; 85 000 wantlist entries, 0.7 s; 85 000 presences, 0.3 s (loopback, Node 20).
 * A legitimate message carries far fewer: a peer keeps at most 1 024 wants of another
 * (@helia/bitswap's wantlist limit) and sends each wanted block or presence once.
 *
 * The guard counts the entries as the bytes arrive, reading only protobuf tags and lengths
 * (message.proto of the bitswap spec: wantlist = 1 with its entries = 1, blocks = 2, payload = 3,
 * blockPresences = 4), and aborts the stream at the first entry over the limit, before bitswap
 * decodes the message.
 */
import { guardReceived } from './dht-guard.js'
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

/** Longest varint: a negative int32 (`pendingBytes`) is written in 10 bytes. */
const MAX_VARINT_BYTES = 10

const enum Phase { Prefix, Tag, Length, Varint, Skip }

/**
 * Follows a stream of length-prefixed bitswap messages chunk by chunk. Returns a function to call
 * with each chunk in order: it returns a message once a message carries more than `maxEntries`
 * entries, or is not a protobuf message a reader could decode (a field running past its message,
 * an unknown wire type, a varint that does not end); undefined while every message is within it.
 */
export function bitswapEntryGuard (maxEntries: number): BitswapGuard {
  let phase = Phase.Prefix
  /** Bytes of the message not complete yet received so far, its length prefix included. */
  let pending = 0
  /** The varint being read, and its bytes so far. */
  let value = 0
  let varintBytes = 0
  /** Bytes of the current message not read yet. */
  let messageLeft = 0
  /** Inside the wantlist field: its bytes not read yet. */
  let inWantlist = false
  let wantlistLeft = 0
  /** The field whose length is being read, and the bytes of a field's value still to skip. */
  let field = 0
  let skip = 0
  let entries = 0
  let failed: string | undefined
  const fail = (why: string): string => (failed = why)

  /** Bytes read inside a message: counted against it and against the wantlist they are in. */
  const read = (n: number): boolean => {
    messageLeft -= n
    if (inWantlist) wantlistLeft -= n
    return messageLeft >= 0 && (!inWantlist || wantlistLeft >= 0)
  }
  /** A field ended: the wantlist or the message may end with it. */
  const fieldDone = (): void => {
    phase = Phase.Tag
    if (inWantlist && wantlistLeft === 0) inWantlist = false
    if (messageLeft === 0) { phase = Phase.Prefix; pending = 0 }
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
        if (!read(n)) return fail('a bitswap message with a field that runs past its end')
        if (skip === 0) fieldDone()
        continue
      }
      const byte = chunk[at++] as number
      pending++
      if (phase !== Phase.Prefix && !read(1)) return fail('a bitswap message with a field that runs past its end')
      value += (byte & 0x7f) * 2 ** (7 * varintBytes)
      varintBytes++
      if ((byte & 0x80) !== 0) {
        if (varintBytes >= MAX_VARINT_BYTES) return fail('a bitswap message with a varint that does not end')
        continue
      }
      const v = value
      value = 0
      varintBytes = 0
      switch (phase) {
        case Phase.Prefix:
          messageLeft = v
          entries = 0
          if (v > 0) phase = Phase.Tag
          else pending = 0
          break
        case Phase.Tag: {
          field = Math.floor(v / 8)
          const wire = v % 8
          if (wire === 0) phase = Phase.Varint
          else if (wire === 2) phase = Phase.Length
          else if (wire === 1 || wire === 5) { skip = wire === 1 ? 8 : 4; phase = Phase.Skip }
          else return fail(`a bitswap message with a field of wire type ${wire}`)
          break
        }
        case Phase.Varint:
          fieldDone()
          break
        case Phase.Length:
          if (v > (inWantlist ? wantlistLeft : messageLeft)) return fail('a bitswap message with a field that runs past its end')
          if (!inWantlist && field === 1) {
            // the wantlist: its own fields are read next
            inWantlist = true
            wantlistLeft = v
            fieldDone()
            break
          }
          if ((inWantlist && field === 1) || (!inWantlist && field >= 2 && field <= 4)) {
            if (++entries > maxEntries) return fail(`a bitswap message of more than ${maxEntries} entries (wants, blocks and presences)`)
          }
          skip = v
          if (v > 0) phase = Phase.Skip
          else fieldDone()
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
 * Aborts `stream` (from `peer`) once a bitswap message it receives carries more than `maxEntries`
 * entries, or once the bytes of its message not complete yet would pass `budget`'s limits.
 */
export function limitBitswapEntries (stream: Stream, peer: string, budget: PendingBytes, maxEntries = MAX_BITSWAP_MESSAGE_ENTRIES): void {
  const check = bitswapEntryGuard(maxEntries)
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
