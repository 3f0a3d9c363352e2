/**
 * A DHT server node refuses over-long messages on inbound DHT streams before reading them: the
 * stream is aborted as soon as a length prefix declares more than MAX_DHT_REQUEST_BYTES, and the
 * request is never answered. Requests within the limit are answered as before, on the same stream.
 * A node's own queries refuse answers over MAX_DHT_RESPONSE_BYTES the same way, and learn nothing
 * from them.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { encode as encodeVarint } from 'uint8-varint'
import { MAX_DHT_REQUEST_BYTES, MAX_DHT_RESPONSE_BYTES, lengthPrefixGuard, limitReceivedMessages } from '../src/store/dht-guard.js'
import { TooLargeError } from '../src/errors.js'
import { DHT_PROTOCOL, createHeliaNode, stopHeliaNode } from '../src/store/helia-node.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import type { Stream } from '@libp2p/interface'

const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}
const framed = (body: Uint8Array): Uint8Array => concat(encodeVarint(body.byteLength), body)

/** A kad-dht GET_VALUE request (type 1, field 1; key, field 2) for `key`, length-prefixed. */
function getValue (key: Uint8Array): Uint8Array {
  return framed(concat(new Uint8Array([0x08, 0x01, 0x12]), encodeVarint(key.byteLength), key))
}
/** An IPNS routing key's shape (`/ipns/` and 38 bytes of an identity multihash, 44 in all), `extra` bytes longer. */
const ipnsKey = (fill: number, extra = 0): Uint8Array => concat(new TextEncoder().encode('/ipns/'), new Uint8Array([0x00, 0x24]), new Uint8Array(36 + extra).fill(fill))

describe('lengthPrefixGuard', () => {
  const feed = (guard: (c: Uint8Array) => string | undefined, bytes: Uint8Array, step: number): string | undefined => {
    let over: string | undefined
    for (let i = 0; i < bytes.byteLength && over === undefined; i += step) over = guard(bytes.subarray(i, i + step))
    return over
  }

  it.each([1, 2, 3, 7, 1000])('passes messages of up to the limit and refuses the first one over it, in chunks of %i bytes', (step) => {
    const max = 300
    const ok = concat(framed(new Uint8Array(5)), framed(new Uint8Array(max)), framed(new Uint8Array(0)), framed(new Uint8Array(200)))
    expect(feed(lengthPrefixGuard(max), ok, step)).toBeUndefined()
    // the same messages, then one of max + 1 bytes: refused on its prefix, before any of its body
    const over = concat(ok, encodeVarint(max + 1))
    expect(feed(lengthPrefixGuard(max), over, step)).toBe(`a DHT message of ${max + 1} bytes or more, over the ${max}-byte limit`)
  })

  it.each([1, 3, 1000])('skips message bodies whatever their bytes, in chunks of %i bytes', (step) => {
    // bodies of 0xff: read as prefixes, any one of them would be a length that does not end
    const max = 300
    const ok = concat(framed(new Uint8Array(max).fill(0xff)), framed(new Uint8Array(1).fill(0xff)), framed(new Uint8Array(129).fill(0x80)))
    expect(feed(lengthPrefixGuard(max), ok, step)).toBeUndefined()
    expect(feed(lengthPrefixGuard(max), concat(ok, encodeVarint(max + 1), new Uint8Array(max + 1).fill(0xff)), step)).toMatch(/^a DHT message of 301 bytes or more/)
  })

  it('refuses on the first prefix byte that already passes the limit, and stays refused', () => {
    const guard = lengthPrefixGuard(100)
    // 0xe5 0x8e 0x26 is 624 485: its first byte (101) is already over 100
    expect(guard(new Uint8Array([0xe5]))).toMatch(/^a DHT message of 101 bytes or more/)
    expect(guard(new Uint8Array([0x01]))).toMatch(/^a DHT message of 101 bytes or more/)
  })

  it('refuses a prefix that does not end, whatever the limit', () => {
    expect(lengthPrefixGuard(Number.MAX_SAFE_INTEGER)(new Uint8Array(9).fill(0x80))).toBe('a DHT message length prefix that does not end')
  })

  it('refuses a length prefix written in more bytes than it needs, which the reader would read from another place', () => {
    // 5 as 0x85 0x00: the reader skips one byte, this would skip two
    expect(lengthPrefixGuard(100)(new Uint8Array([0x85, 0x00]))).toBe('a DHT message length prefix written in more bytes than it needs')
    expect(lengthPrefixGuard(100)(new Uint8Array([0x80, 0x80, 0x00]))).toBe('a DHT message length prefix written in more bytes than it needs')
    // the shortest forms pass, 0 and 128 among them
    expect(lengthPrefixGuard(200)(concat(new Uint8Array([0x00, 0x05]), new Uint8Array(5), new Uint8Array([0x80, 0x01]), new Uint8Array(128)))).toBeUndefined()
  })

  it('counts a prefix past 2^31 as such rather than wrapping', () => {
    // 2^35: 0x80 0x80 0x80 0x80 0x80 0x01
    expect(lengthPrefixGuard(2 ** 34)(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]))).toMatch(/^a DHT message of 34359738368 bytes or more/)
  })
})

describe('limitReceivedMessages', () => {
  /**
   * A stream as far as the guard sees it: message events, a status and abort. As libp2p's streams
   * do, it keeps what arrives while nobody listens and hands it to the first listener added.
   */
  class FakeStream extends EventTarget {
    status = 'open'
    aborted: Error | undefined
    private readonly waiting: unknown[] = []
    abort (err: Error): void { this.aborted = err; this.status = 'aborted' }
    message (data: unknown): void {
      if (this.listeners === 0) { this.waiting.push(data); return }
      const event = new Event('message') as Event & { data: unknown }
      event.data = data
      this.dispatchEvent(event)
    }

    private listeners = 0
    override addEventListener (type: string, listener: EventListenerOrEventListenerObject | null, options?: AddEventListenerOptions | boolean): void {
      super.addEventListener(type, listener, options)
      if (type !== 'message') return
      this.listeners++
      for (const data of this.waiting.splice(0)) this.message(data)
    }
  }
  const guarded = (status = 'open'): { stream: FakeStream, seen: unknown[] } => {
    const stream = new FakeStream()
    stream.status = status
    limitReceivedMessages(stream as unknown as Stream, 100)
    const seen: unknown[] = []
    // the protocol's own reader, added after the guard
    stream.addEventListener('message', (event) => { seen.push((event as Event & { data: unknown }).data) })
    return { stream, seen }
  }

  it('leaves what arrived before the reader for the reader', () => {
    const stream = new FakeStream()
    const first = framed(new Uint8Array(10))
    stream.message(first)
    limitReceivedMessages(stream as unknown as Stream, 100)
    const seen: unknown[] = []
    stream.addEventListener('message', (event) => { seen.push((event as Event & { data: unknown }).data) })
    const second = framed(new Uint8Array(101))
    stream.message(second)
    expect(seen).toEqual([first])
    expect(stream.aborted).toBeInstanceOf(TooLargeError)
  })

  it('judges each chunk once, however many listeners the reader adds', () => {
    const { stream, seen } = guarded()
    const more: unknown[] = []
    stream.addEventListener('message', (event) => { more.push((event as Event & { data: unknown }).data) })
    // 60 + 60 bytes of one message would pass 100 if the same chunk were counted twice
    const message = framed(new Uint8Array(100).fill(0xff))
    stream.message(message.subarray(0, 60))
    stream.message(message.subarray(60))
    expect(stream.aborted).toBeUndefined()
    expect([seen.length, more.length]).toEqual([2, 2])
  })

  it('passes chunks within the limit on to the reader', () => {
    const { stream, seen } = guarded()
    const chunk = framed(new Uint8Array(100).fill(0xff))
    stream.message(chunk)
    expect(seen).toEqual([chunk])
    expect(stream.aborted).toBeUndefined()
  })

  it('aborts at a prefix over the limit and keeps that chunk and every later one from the reader', () => {
    const { stream, seen } = guarded()
    // a message within the limit and one over it, in one chunk
    stream.message(concat(framed(new Uint8Array(5)), framed(new Uint8Array(101))))
    expect(stream.aborted).toBeInstanceOf(TooLargeError)
    expect(stream.aborted?.message).toMatch(/^a DHT message of 101 bytes or more/)
    stream.message(framed(new Uint8Array(1)))
    expect(seen).toEqual([])
  })

  it('keeps the chunk from the reader of a stream the remote has already closed', () => {
    const { stream, seen } = guarded('closed')
    stream.message(framed(new Uint8Array(101)))
    expect(seen).toEqual([])
  })

  it('aborts a stream whose own writable end is closing (a query sent, its answer awaited)', () => {
    const { stream, seen } = guarded('closing')
    stream.message(framed(new Uint8Array(101)))
    expect(stream.aborted).toBeInstanceOf(TooLargeError)
    expect(seen).toEqual([])
  })

  it('reads every part of a list of chunks', () => {
    const { stream, seen } = guarded()
    // as libp2p's Uint8ArrayList is read: part by part. The prefix over the limit is in the last part.
    stream.message([framed(new Uint8Array(5)), new Uint8Array([0x01, 0xff]), encodeVarint(101)])
    expect(stream.aborted).toBeInstanceOf(TooLargeError)
    expect(seen).toEqual([])
  })
})

describe('DHT server: message length limit on inbound streams', () => {
  let server: HeliaNode
  let client: HeliaNode

  /** Lengths of the keys over the limit that reached kad-dht's own message handler: none may. */
  const longKeys: number[] = []

  beforeAll(async () => {
    server = await createHeliaNode({ dhtServer: true })
    client = await createHeliaNode({ peers: server.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws')) })
    type Handler = (peer: unknown, message: { key?: Uint8Array }) => Promise<unknown>
    const rpc = (server.libp2p.services.dht as unknown as { rpc: { handleMessage: Handler } }).rpc
    const handle = rpc.handleMessage.bind(rpc)
    rpc.handleMessage = async (peer, message) => {
      if ((message.key?.byteLength ?? 0) > MAX_DHT_REQUEST_BYTES) longKeys.push(message.key?.byteLength ?? 0)
      return await handle(peer, message)
    }
  }, 30_000)

  afterEach(() => {
    expect(longKeys).toEqual([])
  })

  afterAll(async () => {
    await stopHeliaNode(client)
    await stopHeliaNode(server)
  })

  /**
   * Sends each request on one stream in turn and reads one length-prefixed answer after each: the
   * answers' lengths, and how the stream ended when an answer did not come ('reset').
   */
  async function ask (requests: Uint8Array[]): Promise<Array<number | 'reset'>> {
    const stream = await client.libp2p.dialProtocol(server.libp2p.peerId, DHT_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    const reader = stream[Symbol.asyncIterator]()
    let buffered: Uint8Array = new Uint8Array(0)
    const answers: Array<number | 'reset'> = []
    try {
      for (const request of requests) {
        stream.send(request)
        let length: number | undefined
        let prefix = 0
        while (true) {
          // a complete answer buffered: its length prefix, then its body
          if (buffered.byteLength > 0) {
            let value = 0
            for (prefix = 0; prefix < buffered.byteLength; prefix++) {
              value += ((buffered[prefix] as number) & 0x7f) * 2 ** (7 * prefix)
              if (((buffered[prefix] as number) & 0x80) === 0) { length = value; prefix++; break }
            }
            if (length !== undefined && buffered.byteLength >= prefix + length) break
            length = undefined
          }
          let next: IteratorResult<Uint8Array | { subarray: () => Uint8Array }>
          try {
            next = await reader.next()
          } catch {
            answers.push('reset')
            return answers
          }
          if (next.done === true) { answers.push('reset'); return answers }
          const chunk = next.value instanceof Uint8Array ? next.value : next.value.subarray()
          buffered = concat(buffered, chunk)
        }
        answers.push(length)
        buffered = buffered.subarray(prefix + length)
      }
      await stream.close()
    } finally {
      if (stream.status === 'open') stream.abort(new Error('test done'))
    }
    return answers
  }

  it('answers requests within the limit, and aborts the stream at one over it without answering', async () => {
    const small = getValue(ipnsKey(1))
    // A GET_VALUE whose key alone is twice the limit; kad-dht would answer it, key and all.
    const large = getValue(ipnsKey(2, 2 * MAX_DHT_REQUEST_BYTES))
    const answers = await ask([small, small, large, small])
    expect(answers.slice(0, 2)).toEqual([expect.any(Number), expect.any(Number)])
    expect(answers[2]).toBe('reset')
    expect(answers).toHaveLength(3)
  }, 30_000)

  it('aborts a stream whose first message is over the limit', async () => {
    expect(await ask([getValue(ipnsKey(3, MAX_DHT_REQUEST_BYTES))])).toEqual(['reset'])
  }, 30_000)

  /** Sends `parts` on one stream in the same tick, closes its writable end if `close`, and reads until the stream ends. */
  async function sendRaw (parts: Uint8Array[], close: boolean): Promise<void> {
    const stream = await client.libp2p.dialProtocol(server.libp2p.peerId, DHT_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    for (const part of parts) stream.send(part)
    if (close) void stream.close().catch(() => {})
    try {
      for await (const chunk of stream) void chunk
    } catch {}
    if (stream.status === 'open') stream.abort(new Error('test done'))
  }

  it.each([
    ['a request within the limit and one over it, in one send', false, (small: Uint8Array, large: Uint8Array) => [concat(small, large)]],
    ['a request over the limit, split after its prefix', false, (_: Uint8Array, large: Uint8Array) => [large.subarray(0, 2), large.subarray(2)]],
    ['a request over the limit, and the writable end closed at once', true, (_: Uint8Array, large: Uint8Array) => [large]]
  ])('never hands kad-dht %s', async (_, close, parts) => {
    const small = getValue(ipnsKey(5))
    const large = getValue(ipnsKey(6, 2 * MAX_DHT_REQUEST_BYTES))
    await sendRaw(parts(small, large), close)
    // a later stream on the same connection is answered: everything sent before has been handled
    expect(await ask([small])).toEqual([expect.any(Number)])
  }, 30_000)

  it('answers a request of exactly the limit', async () => {
    // type (2 bytes), key tag (1), key length (a 2-byte varint below 16 384), the key
    const key = ipnsKey(4, MAX_DHT_REQUEST_BYTES - 5 - 44)
    const request = getValue(key)
    expect(request.byteLength - encodeVarint(MAX_DHT_REQUEST_BYTES).byteLength).toBe(MAX_DHT_REQUEST_BYTES)
    expect(await ask([request])).toEqual([expect.any(Number)])
  }, 30_000)
})

describe('DHT queries: answer length limit', () => {
  let honest: HeliaNode
  let liar: HeliaNode
  let asker: HeliaNode
  /** Peers the liar's answers name: one real-looking Ed25519 peer id each, with one address. */
  const fakePeers: Uint8Array[] = []

  /** A kad-dht Peer (id: field 1, one address: field 2) for an Ed25519 identity peer id of `seed`. */
  function peer (seed: number): Uint8Array {
    const id = concat(new Uint8Array([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]), new Uint8Array(32).fill(seed & 0xff))
    id[37] = seed >> 8
    fakePeers.push(id)
    const addr = new Uint8Array([0x04, 10, 9, seed >> 8, seed & 0xff, 0x06, 0x0f, 0xa1])
    return concat(new Uint8Array([0x0a, id.byteLength]), id, new Uint8Array([0x12, addr.byteLength]), addr)
  }

  /** An answer of type FIND_NODE (4) listing `count` closer peers (field 8), length-prefixed. */
  function answer (count: number): Uint8Array {
    const peers: Uint8Array[] = []
    for (let i = 0; i < count; i++) {
      const p = peer(i + 1)
      peers.push(concat(new Uint8Array([0x42]), encodeVarint(p.byteLength), p))
    }
    return framed(concat(new Uint8Array([0x08, 0x04]), ...peers))
  }

  beforeAll(async () => {
    honest = await createHeliaNode({ dhtServer: true })
    liar = await createHeliaNode({ dhtServer: true })
    const big = answer(Math.ceil(MAX_DHT_RESPONSE_BYTES / 50))
    expect(big.byteLength).toBeGreaterThan(MAX_DHT_RESPONSE_BYTES)
    // The liar answers every DHT request with one FIND_NODE answer over the limit.
    await liar.libp2p.handle(DHT_PROTOCOL, (stream) => {
      stream.addEventListener('message', () => {
        if (stream.status === 'open' && stream.writeStatus === 'writable') stream.send(big)
      }, { once: true })
    }, { force: true })
    const addrs = (n: HeliaNode): string[] => n.libp2p.getMultiaddrs().map(String).filter(a => !a.includes('/ws'))
    asker = await createHeliaNode({ peers: [...addrs(honest), ...addrs(liar)] })
  }, 30_000)

  afterAll(async () => {
    await stopHeliaNode(asker)
    await stopHeliaNode(liar)
    await stopHeliaNode(honest)
  })

  it('refuses an answer over the limit on its length prefix and learns none of the peers it lists', async () => {
    const events: Array<{ name: string, from?: string, error?: Error }> = []
    const dht = asker.libp2p.services.dht
    for await (const event of dht.getClosestPeers(new TextEncoder().encode('a key to look near'), { signal: AbortSignal.timeout(10_000) })) {
      events.push({ name: event.name, from: 'from' in event ? event.from.toString() : undefined, error: 'error' in event ? event.error : undefined })
    }
    const fromLiar = events.filter(e => e.from === liar.libp2p.peerId.toString())
    expect(fromLiar.map(e => e.name)).toContain('QUERY_ERROR')
    expect(fromLiar.map(e => e.name)).not.toContain('PEER_RESPONSE')
    expect(fromLiar.find(e => e.name === 'QUERY_ERROR')?.error?.message).toMatch(new RegExp(`over the ${MAX_DHT_RESPONSE_BYTES}-byte limit`))
    // the honest server answered as usual
    expect(events.filter(e => e.from === honest.libp2p.peerId.toString()).map(e => e.name)).toContain('PEER_RESPONSE')
    // none of the listed peers reached the peer store
    const known = new Set((await asker.libp2p.peerStore.all()).map(p => p.id.toString()))
    expect(known.has(honest.libp2p.peerId.toString())).toBe(true)
    const { peerIdFromMultihash } = await import('@libp2p/peer-id')
    const Digest = await import('multiformats/hashes/digest')
    for (const id of fakePeers.slice(0, 50)) expect(known.has(peerIdFromMultihash(Digest.decode(id)).toString())).toBe(false)
  }, 30_000)
})
