/**
 * A node aborts an inbound bitswap stream at a message of more than MAX_BITSWAP_MESSAGE_ENTRIES
 * entries (wants, blocks and presences together), counting them from protobuf tags and lengths as
 * the bytes arrive, before bitswap decodes the message. Messages within the limit are handled as
 * before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encode as encodeVarint } from 'uint8-varint'
import { BITSWAP_PEER_ENTRY_BURST, BITSWAP_PROTOCOL, MAX_BITSWAP_MESSAGE_ENTRIES, MAX_BITSWAP_PEER_PENDING_BYTES, PendingBytes, bitswapEntryGuard, limitBitswapEntries } from '../src/store/bitswap-guard.js'
import { createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import { PeerRate } from '../src/store/peer-rate.js'
import type { HeliaNode } from '../src/store/helia-node.js'
// the decoder @helia/bitswap reads messages with (not among the package's exports)
import { BitswapMessage } from '../node_modules/@helia/bitswap/dist/src/pb/message.js'
import type { Stream } from '@libp2p/interface'
import { concat, field, framed, payload, presence, range, rawBlock, want, wantlist } from './helpers/bitswap-wire.js'


describe('bitswapEntryGuard', () => {
  const feed = (bytes: Uint8Array, step: number, max = 10): string | undefined => {
    const guard = bitswapEntryGuard(max)
    let over: string | undefined
    for (let i = 0; i < bytes.byteLength && over === undefined; i += step) over = guard(bytes.subarray(i, i + step))
    return over
  }
  const tooMany = 'a bitswap message of more than 10 entries (wants, blocks and presences)'

  it.each([1, 2, 3, 7, 1000])('counts wants, blocks of both versions and presences together, in chunks of %i bytes', (step) => {
    // bodies and digests of 0x0a / 0xff: read as tags, they would be fields
    const data = new Uint8Array(40).fill(0x0a)
    const ten = [wantlist(range(4).map(want)), payload(data), payload(new Uint8Array(0)), rawBlock(new Uint8Array(300).fill(0xff)), presence(0x0a0a0a0a), presence(1), presence(2)]
    // pendingBytes (field 5) of -1: a 10-byte varint; unknown fixed64 (6) and fixed32 (7) fields
    const other = concat(new Uint8Array([0x28]), new Uint8Array(9).fill(0xff), new Uint8Array([0x01]), new Uint8Array([0x31]), new Uint8Array(8).fill(0x0a), new Uint8Array([0x3d]), new Uint8Array(4).fill(0x0a))
    const atLimit = framed(concat(...ten, other))
    // every message is counted on its own: three at the limit, and an empty one
    expect(feed(concat(atLimit, framed(new Uint8Array(0)), atLimit, atLimit), step)).toBeUndefined()
    const elevens = [
      [wantlist(range(5).map(want)), ...ten.slice(1)],
      [...ten, payload(data)],
      [...ten, rawBlock(data)],
      [...ten, presence(9)]
    ]
    for (const eleven of elevens) expect(feed(concat(atLimit, framed(concat(...eleven))), step)).toBe(tooMany)
  })

  it('counts the entries of a wantlist given in several parts', () => {
    expect(feed(framed(concat(wantlist(range(5).map(want)), wantlist(range(5).map(want)))), 1)).toBeUndefined()
    expect(feed(framed(concat(wantlist(range(5).map(want)), wantlist(range(6).map(want)))), 1)).toBe(tooMany)
  })

  it('refuses at the first entry over the limit, before the rest of the message arrives, and stays refused', () => {
    const message = framed(concat(...range(1011).map(presence)))
    const prefix = message.byteLength - 1011 * presence(0).byteLength
    // the eleventh presence's tag is at prefix + 10 presences
    const tagAt = prefix + 10 * presence(0).byteLength
    const guard = bitswapEntryGuard(10)
    expect(guard(message.subarray(0, tagAt))).toBeUndefined()
    expect(guard(message.subarray(tagAt, tagAt + 1))).toBe(tooMany)
    expect(guard(framed(presence(1)))).toBe(tooMany)
  })

  it.each([
    ['a field longer than the message', concat(encodeVarint(3), new Uint8Array([0x12, 0x05, 0x00])), 'a bitswap message with a field that runs past the end of what it is in'],
    ['an entry longer than its wantlist', framed(concat(new Uint8Array([0x0a, 0x02, 0x0a, 0x05]), new Uint8Array(5))), 'a bitswap message with a field that runs past the end of what it is in'],
    ['a fixed64 past the message end', concat(encodeVarint(5), new Uint8Array([0x31, 0, 0, 0, 0]), new Uint8Array(4)), 'a bitswap message with a field that runs past the end of what it is in'],
    ['a tag as the message\'s last byte', concat(encodeVarint(1), new Uint8Array([0x12]), encodeVarint(1), new Uint8Array([0x00])), 'a bitswap message with a field that runs past the end of what it is in'],
    ['a varint field\'s tag as the message\'s last byte', concat(encodeVarint(1), new Uint8Array([0x28]), new Uint8Array([0x01, 0x28])), 'a bitswap message with a field that runs past the end of what it is in'],
    ['a group (wire type 3)', framed(new Uint8Array([0x13, 0x14])), 'a bitswap message with field 2 of wire type 3'],
    ['a varint that does not end', framed(concat(new Uint8Array([0x28]), new Uint8Array(11).fill(0xff))), 'a bitswap message with a varint that does not end']
  ])('refuses a message that is not protobuf: %s', (_, bytes, why) => {
    for (const step of [1, 1000]) expect(feed(bytes, step)).toBe(why)
  })
})

/**
 * The guard against @helia/bitswap's own decoder (protons, as generated for message.proto): every
 * message the guard lets through decodes to no more entries than it counted.
 */
describe('bitswapEntryGuard and the decoder bitswap uses', () => {
  const LIMIT = 8
  const entriesOf = (body: Uint8Array): number | 'refused' => {
    try {
      const m = BitswapMessage.decode(body)
      return (m.wantlist?.entries.length ?? 0) + m.blocks.length + m.blockPresences.length
    } catch {
      return 'refused'
    }
  }
  const guardPasses = (body: Uint8Array): boolean => bitswapEntryGuard(LIMIT)(framed(body)) === undefined
  const tag = (n: number): Uint8Array => encodeVarint(n)
  const presences = concat(...range(100).map(presence))

  it.each([
    // pendingBytes (5, a varint) sent as bytes holding presences: protons reads a varint, then the presences
    ['a varint field sent as bytes', concat(tag(0x2a), encodeVarint(presences.byteLength), presences)],
    // a tag with 2^32 added: protons keeps its low 32 bits (field 4)
    ['a tag past 2^32', concat(...range(100).map(i => concat(new Uint8Array([0xa2, 0x80, 0x80, 0x80, 0x10]), presence(i).subarray(1))))],
    // the wantlist's `full` (2, a varint) sent as bytes holding entries
    ['a wantlist varint sent as bytes', field(1, concat(tag(0x12), encodeVarint(concat(...range(100).map(want)).byteLength), ...range(100).map(want)))],
    // the wantlist and its entries sent as varints
    ['a nested message sent as a varint', concat(tag(0x08), encodeVarint(5), presences)],
    // a block of 8 bytes whose data field runs past its end, over the presences
    ['a field past the end of its nested message', (() => {
      const wrapper = concat(tag(0x3a), encodeVarint(presences.byteLength))
      const head = concat(field(1, new Uint8Array([0x01, 0x55, 0x12, 0x20])), tag(0x12), encodeVarint(wrapper.byteLength))
      return concat(tag(0x1a), encodeVarint(head.byteLength), head, wrapper, presences)
    })()],
    // pendingBytes in 6 bytes: protons reads 5 and skips the next 5 whatever they are, where the
    // guard reads the 6th as the varint's end and the next as an unknown field over the presences
    ['a varint field of 6 bytes', concat(tag(0x28), new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x3a]), encodeVarint(1 + presences.byteLength), new Uint8Array([0x00]), presences)],
    // an unknown field's tag in 6 bytes: protons reads 5, skips 5, and reads its length (0) after them
    ['a tag of 6 bytes', concat(new Uint8Array([0xba, 0x80, 0x80, 0x80, 0x80, 0x00]), encodeVarint(3 + presences.byteLength), new Uint8Array([0x00, 0x00, 0x00]), presences)]
  ])('refuses %s, which protons reads as more entries', (_, body) => {
    expect(entriesOf(body)).not.toBe('refused')
    expect(entriesOf(body) as number).toBeGreaterThan(LIMIT)
    expect(guardPasses(body)).toBe(false)
  })

  it('refuses a length prefix written in more bytes than it needs', () => {
    // it-length-prefixed reads the value and skips the bytes of its shortest form: a longer form
    // would have it read each later message from another place than the guard
    const body = concat(presence(1), presence(2))
    const padded = concat(new Uint8Array([(body.byteLength & 0x7f) | 0x80, (body.byteLength >> 7) | 0x80, 0x80, 0x80, 0x00]), body)
    expect(bitswapEntryGuard(LIMIT)(padded)).toBe('a bitswap message length prefix written in more bytes than it needs')
    expect(bitswapEntryGuard(LIMIT)(framed(body))).toBeUndefined()
    expect(bitswapEntryGuard(LIMIT)(new Uint8Array([0x80, 0x00]))).toBe('a bitswap message length prefix written in more bytes than it needs')
  })

  it('refuses a varint past the end of its nested message, which would leave the next message uncounted', () => {
    // a presence of 1 byte, the tag of its type: the type's value lies past the presence's end
    const broken = framed(concat(tag(0x22), encodeVarint(1), new Uint8Array([0x10, 0x01])))
    const next = framed(concat(...range(LIMIT + 1).map(presence)))
    expect(entriesOf(concat(...range(LIMIT + 1).map(presence)))).toBe(LIMIT + 1)
    expect(bitswapEntryGuard(LIMIT)(concat(broken, next))).toBe('a bitswap message with a field that runs past the end of what it is in')
  })

  it('counts no fewer entries than protons reads, in every message it lets through, over 20 000 re-encoded messages', () => {
    let seed = 7
    const random = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return Math.floor(seed / 2147483648 * n) }
    /** A varint, sometimes written longer than it need be. */
    const varint = (x: number, odd: boolean): number[] => {
      const out: number[] = []
      while (x >= 128) { out.push((x % 128) | 128); x = Math.floor(x / 128) }
      out.push(x)
      for (let pad = odd ? 1 + random(9) : 0; pad > 0; pad--) { out[out.length - 1] = (out[out.length - 1] as number) | 128; out.push(0) }
      return out
    }
    const odd = (): boolean => random(30) === 0
    const tagOf = (f: number, wire: number): number[] => varint(f * 8 + (odd() ? [0, 1, 2, 5, 3][random(5)] as number : wire) + (odd() ? 2 ** 32 : 0), odd())
    const bytesField = (f: number, body: number[]): number[] => [...tagOf(f, 2), ...varint(body.length, odd()), ...body]
    const varintField = (f: number, x: number): number[] => [...tagOf(f, 0), ...varint(x, odd())]
    const cidBytes = (): number[] => [1, 0x55, 0x12, 0x20, ...range(32).map(() => random(256))]
    let passed = 0
    let refused = 0
    for (let n = 0; n < 20_000; n++) {
      const parts: number[][] = []
      for (let k = 1 + random(6); k > 0; k--) {
        const kind = random(4)
        if (kind === 0) parts.push(bytesField(1, [...range(random(8)).flatMap(() => bytesField(1, [...bytesField(1, cidBytes()), ...varintField(2, 1), ...varintField(5, 1)])), ...varintField(2, random(2))]))
        else if (kind === 1) parts.push(bytesField(3, [...bytesField(1, [1, 0x55, 0x12, 0x20]), ...bytesField(2, [random(256)])]))
        else if (kind === 2) parts.push(bytesField(4, [...bytesField(1, cidBytes()), ...varintField(2, 1)]))
        else parts.push(varintField(5, random(2) === 0 ? 2 ** 32 - 1 : random(100)))
      }
      let body = parts.flat()
      // a field wrapping the rest, or a byte changed
      if (random(6) === 0) { const at = random(body.length); body = [...body.slice(0, at), ...tagOf([5, 2, 7, 1][random(4)] as number, 2), ...varint(body.length - at, false), ...body.slice(at)] }
      if (random(6) === 0) body[random(body.length)] = random(256)
      const bytes = Uint8Array.from(body)
      const message = framed(bytes)
      if (bitswapEntryGuard(Number.MAX_SAFE_INTEGER)(message) === undefined) {
        passed++
        // never fewer than protons reads: at a limit of one fewer, refused (it may count more: a
        // bitswap 1.0 block, several wantlists)
        const decoded = entriesOf(bytes)
        if (decoded !== 'refused' && decoded > 0) expect(bitswapEntryGuard(decoded - 1)(message)).toBeDefined()
      } else {
        refused++
      }
    }
    // both outcomes were exercised
    expect(Math.min(passed, refused)).toBeGreaterThan(2000)
  })
})

describe('entries a second', () => {
  it('are held to a burst and a rate per peer and for all peers, keeping the last half for light peers', () => {
    let now = 0
    const rate = new PeerRate('bitswap entries', { peerBurst: 10, peerPerSecond: 5, burst: 40, perSecond: 20 }, () => now)
    const take = (peer: string, n: number): Array<string | undefined> => range(n).map(() => rate.take(peer))
    expect(take('a', 10).every(r => r === undefined)).toBe(true)
    expect(rate.take('a')).toBe('bitswap entries from one peer over 5 a second')
    // 30 left for all peers: light peers (one entry each) get all of them
    expect(range(30).every(i => rate.take(`light${i}`) === undefined)).toBe(true)
    expect(rate.take('light30')).toBe('bitswap entries from all peers over 20 a second')
    // a second later: 5 more for each peer and 20 for all; a, whose recent rate is still ~10 / e,
    // gets none of the last half (the reserve) while light peers get all of it
    now += 1000
    expect(rate.take('a')).toBeUndefined()
    expect(rate.take('a')).toMatch(/^bitswap entries from one peer at 5 a second while all peers are near 20 a second$/)
    expect(range(19).every(i => rate.take(`other${i}`) === undefined)).toBe(true)
    expect(rate.take('other19')).toBe('bitswap entries from all peers over 20 a second')
    // refills stop at the burst
    now += 60_000
    expect(take('a', 10).every(r => r === undefined)).toBe(true)
    expect(rate.take('a')).toBeDefined()
  })

  it('judges a peer at every entry: one that turns heavy within a message is refused in its middle, below the reserve', () => {
    const rate = new PeerRate('bitswap entries', { peerBurst: 10_000, peerPerSecond: 400, burst: 1000, perSecond: 100 }, () => 0)
    // another peer leaves all peers' bucket at its reserve (500)
    for (let i = 0; i < 500; i++) rate.take('other')
    // light (under 100 a second) for its first 100 entries, then heavy
    const guard = bitswapEntryGuard(1000, () => rate.take('a'))
    expect(guard(framed(concat(...range(300).map(presence))))).toMatch(/^bitswap entries from one peer at 100 a second while all peers are near 100 a second$/)
    expect(rate.take('light')).toBeUndefined()
  })

  it('refuses a message at the first entry past the rate', () => {
    const rate = new PeerRate('bitswap entries', { peerBurst: 3, peerPerSecond: 1, burst: 100, perSecond: 100 }, () => 0)
    const guard = bitswapEntryGuard(10, () => rate.take('a'))
    expect(guard(framed(concat(presence(1), presence(2), presence(3))))).toBeUndefined()
    expect(guard(framed(presence(4)))).toBe('bitswap entries from one peer over 1 a second')
  })
})

describe('bytes of incomplete messages', () => {
  it('are counted from the length prefix until the message ends, in any chunks', () => {
    const message = framed(concat(presence(1), payload(new Uint8Array(300).fill(0xff))))
    const empty = framed(new Uint8Array(0))
    for (const step of [1, 2, 7, 1000]) {
      const guard = bitswapEntryGuard(10)
      const bytes = concat(message, empty, message, message.subarray(0, 5))
      for (let i = 0; i < bytes.byteLength; i += step) {
        const end = Math.min(i + step, bytes.byteLength)
        expect(guard(bytes.subarray(i, end))).toBeUndefined()
        // bytes since the last message that ended
        const ends = [message.byteLength, message.byteLength + 1, 2 * message.byteLength + 1]
        const since = end - Math.max(0, ...ends.filter(e => e <= end))
        expect(guard.pending).toBe(since)
      }
      expect(guard.pending).toBe(5)
    }
  })

  it('are held to a limit per peer and for all peers, and given back', () => {
    const pending = new PendingBytes(250, 100)
    expect(pending.add('a', 60)).toBeUndefined()
    expect(pending.add('a', 41)).toBe('bitswap messages of 101 bytes or more held for one peer, over the 100-byte limit')
    expect(pending.add('a', 40)).toBeUndefined()
    expect(pending.add('b', 100)).toBeUndefined()
    expect(pending.add('c', 51)).toBe('bitswap messages of 251 bytes or more held for all peers, over the 250-byte limit')
    expect([pending.held('a'), pending.held('b'), pending.held('c'), pending.held()]).toEqual([100, 100, 0, 200])
    expect(pending.add('a', -100)).toBeUndefined()
    expect(pending.add('c', 51)).toBeUndefined()
    expect([pending.held('a'), pending.held()]).toEqual([0, 151])
  })
})

describe('bitswap: bytes held for incomplete messages', () => {
  const MiB = 1024 * 1024
  let server: HeliaNode
  let first: HeliaNode
  let second: HeliaNode

  beforeAll(async () => {
    server = await createHeliaNode({ maxBitswapPendingBytes: 10 * MiB })
    const peers = server.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws'))
    first = await createHeliaNode({ peers })
    second = await createHeliaNode({ peers })
  }, 30_000)

  afterAll(async () => {
    await stopHeliaNode(second)
    await stopHeliaNode(first)
    await stopHeliaNode(server)
  })

  /** Opens a bitswap stream from `client` and sends the first 3 MiB of a 4 MiB message (one block). */
  async function start (client: HeliaNode): Promise<{ stream: Stream, ended: Promise<void> }> {
    const stream = await client.libp2p.dialProtocol(server.libp2p.peerId, BITSWAP_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    const ended = new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
    const block = 4 * MiB - 100
    stream.send(concat(encodeVarint(block + 10), new Uint8Array([0x12]), encodeVarint(block)))
    stream.send(new Uint8Array(3 * MiB))
    return { stream, ended }
  }
  const within = async (ended: Promise<void>, ms = 8_000): Promise<boolean> => await Promise.race([ended.then(() => true), new Promise<boolean>(resolve => setTimeout(() => { resolve(false) }, ms))])

  it('aborts the stream that would pass the limit per peer, and takes more once a stream ends', async () => {
    expect(MAX_BITSWAP_PEER_PENDING_BYTES).toBe(8 * MiB)
    const a = await start(first)
    const b = await start(first)
    const c = await start(first)
    // 9 MiB would pass 8 MiB: the third is aborted, the first two (sent before it) are held
    expect(await within(c.ended)).toBe(true)
    expect(c.stream.status).toBe('reset')
    expect([a.stream.status, b.stream.status]).toEqual(['open', 'open'])
    // the first stream ends: what it held is given back, so a new one fits, and the one after it does not
    a.stream.abort(new Error('test: done with it'))
    const d = await start(first)
    const e = await start(first)
    expect(await within(e.ended)).toBe(true)
    expect([b.stream.status, d.stream.status]).toEqual(['open', 'open'])
  }, 30_000)

  it('aborts the stream that would pass the limit for all peers', async () => {
    // the first peer still holds 6 MiB of the 10; another peer's 3 MiB fit, 3 more do not
    const f = await start(second)
    const g = await start(second)
    expect(await within(g.ended)).toBe(true)
    expect(g.stream.status).toBe('reset')
    expect(f.stream.status).toBe('open')
  }, 30_000)
})

describe('bitswap: entry limit on inbound streams', () => {
  let server: HeliaNode
  let client: HeliaNode
  /** Presences the server sent the client, by the digests' seeds. */
  const dontHaves: number[] = []
  /** The connections the server's guard asked its address grouping about. */
  const groupedAs: string[] = []

  beforeAll(async () => {
    server = await createHeliaNode({ peerAddressGroup: (remoteAddr) => { groupedAs.push(remoteAddr.toString()); return undefined } })
    client = await createHeliaNode({ peers: server.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws')) })
    // The client reads what the server sends it: each presence's CID, as a seed.
    await client.libp2p.handle(BITSWAP_PROTOCOL, (stream) => {
      let buffered: Uint8Array = new Uint8Array(0)
      stream.addEventListener('message', (event) => {
        const data = event.data instanceof Uint8Array ? event.data : event.data.subarray()
        buffered = concat(buffered, data)
        // presences are the only field the server sends here; find each CID by its prefix
        for (let i = 0; i + 36 <= buffered.byteLength; i++) {
          if (buffered[i] === 0x01 && buffered[i + 1] === 0x55 && buffered[i + 2] === 0x12 && buffered[i + 3] === 0x20 && buffered[i - 1] === 36) {
            dontHaves.push(new DataView(buffered.buffer, buffered.byteOffset).getUint32(i + 32))
            i += 35
          }
        }
        buffered = buffered.subarray(Math.max(0, buffered.byteLength - 37))
      })
    }, { force: true })
  }, 30_000)

  afterAll(async () => {
    await stopHeliaNode(client)
    await stopHeliaNode(server)
  })

  /** Sends `message` on a new bitswap stream and waits up to `ms` for the stream to end. */
  async function send (message: Uint8Array, ms: number): Promise<string> {
    const stream = await client.libp2p.dialProtocol(server.libp2p.peerId, BITSWAP_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    const ended = new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
    stream.send(message)
    await Promise.race([ended, new Promise(resolve => setTimeout(resolve, ms))])
    const status = stream.status
    if (status === 'open') stream.abort(new Error('test done'))
    return status
  }

  it('asks the node\'s address grouping about the connection a bitswap stream comes on', async () => {
    await send(framed(payload(new Uint8Array([9, 9, 9]))), 200)
    expect(groupedAs.length).toBeGreaterThan(0)
    expect(groupedAs.every(a => a.startsWith('/ip4/127.0.0.1/tcp/'))).toBe(true)
  }, 30_000)

  it('holds a stream to what all peers of its address may send, below its peer\'s own rate', async () => {
    const GUARDED = '/userspace-test/guarded-entries/1.0.0'
    const rate = new PeerRate('bitswap entries', { peerBurst: 1e6, peerPerSecond: 1, groupBurst: 100, groupPerSecond: 0.001, burst: 1e9, perSecond: 1e9 })
    await server.libp2p.handle(GUARDED, (stream) => {
      limitBitswapEntries(stream, 'one peer', new PendingBytes(), rate, MAX_BITSWAP_MESSAGE_ENTRIES, 'one address')
      // the guard judges what the protocol's reader is handed: this one reads and drops it
      stream.addEventListener('message', () => {})
    })
    const stream = await client.libp2p.dialProtocol(server.libp2p.peerId, GUARDED, { signal: AbortSignal.timeout(10_000) })
    const ended = new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
    stream.send(framed(concat(...range(200).map(i => payload(new Uint8Array([i, 7, 7]))))))
    await Promise.race([ended, new Promise(resolve => setTimeout(resolve, 5_000))])
    expect(stream.status).toBe('reset')
  }, 30_000)

  it('handles a message at the limit', async () => {
    // wants for MAX blocks the server lacks: it answers DONT_HAVE for those it keeps (up to 1 024)
    const message = framed(wantlist(range(MAX_BITSWAP_MESSAGE_ENTRIES, 1).map(want)))
    await send(message, 200)
    await expect.poll(() => dontHaves.length, { timeout: 10_000 }).toBeGreaterThan(0)
    expect(dontHaves.every(seed => seed >= 1 && seed <= MAX_BITSWAP_MESSAGE_ENTRIES)).toBe(true)
  }, 30_000)

  it('aborts the stream at a message of one entry more, and handles none of it', async () => {
    const before = dontHaves.length
    const seeds = range(MAX_BITSWAP_MESSAGE_ENTRIES + 1, 100_000)
    expect(await send(framed(wantlist(seeds.map(want))), 5_000)).toBe('reset')
    // a message within the limit on a later stream is answered; the refused one never was
    await send(framed(wantlist([want(200_000)])), 200)
    await expect.poll(() => dontHaves.includes(200_000), { timeout: 10_000 }).toBe(true)
    expect(dontHaves.slice(before).filter(seed => seed >= 100_000 && seed < 200_000)).toEqual([])
  }, 30_000)

  it('aborts the stream at a message of many tiny blocks', async () => {
    const blocks = range(MAX_BITSWAP_MESSAGE_ENTRIES + 1).map(i => payload(new Uint8Array([i & 0xff, i >> 8])))
    expect(await send(framed(concat(...blocks)), 5_000)).toBe('reset')
  }, 30_000)

  it('aborts a stream of messages within the limit, back to back, past the entries a peer may send a second', async () => {
    // twelve messages of 2 048 blocks: 24 576 entries, past the burst of 16 384 and what refills meanwhile
    const messages = range(12).map(m => framed(concat(...range(MAX_BITSWAP_MESSAGE_ENTRIES).map(i => payload(new Uint8Array([i & 0xff, i >> 8, m]))))))
    expect(MAX_BITSWAP_MESSAGE_ENTRIES * 12).toBeGreaterThan(BITSWAP_PEER_ENTRY_BURST + 4096)
    expect(await send(concat(...messages), 5_000)).toBe('reset')
  }, 30_000)
})
