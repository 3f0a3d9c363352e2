/**
 * PeerRate, the token buckets bitswap, gossipsub and a hub's cluster messages take from: per peer
 * and for all peers, and a bounded number of peers tracked.
 */
import { describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { GROUP_PEERS, PeerRate, addressGroup } from '../src/store/peer-rate.js'

describe('PeerRate', () => {
  it('forgets peers whose buckets filled up again once 4 096 are tracked', () => {
    let now = 0
    const rate = new PeerRate('units', { peerBurst: 2, peerPerSecond: 1, burst: 1e9, perSecond: 1e9 }, () => now)
    for (let i = 0; i < 4096; i++) expect(rate.take(`p${i}`)).toBeUndefined()
    expect(rate.tracked).toBe(4096)
    // one second later every bucket is full again: a new peer makes room by forgetting them
    now += 1000
    expect(rate.take('new')).toBeUndefined()
    expect(rate.tracked).toBe(1)
    // a forgotten peer starts full
    expect([rate.take('p0'), rate.take('p0'), rate.take('p0')]).toEqual([undefined, undefined, 'units from one peer over 1 a second'])
  })

  it('tracks no more than 4 096 peers when none is full, forgetting the longest known', () => {
    const rate = new PeerRate('units', { peerBurst: 2, peerPerSecond: 1, burst: 1e9, perSecond: 1e9 }, () => 0)
    for (let i = 0; i < 5000; i++) rate.take(`p${i}`)
    expect(rate.tracked).toBeLessThanOrEqual(4096)
    // the newest peer is still held to its bucket
    expect(rate.take('p4999')).toBeUndefined()
    expect(rate.take('p4999')).toBe('units from one peer over 1 a second')
  })

  it('refills nothing, and refuses no new peer, when the clock steps back', () => {
    let now = 100_000
    const rate = new PeerRate('units', { peerBurst: 2, peerPerSecond: 1, burst: Number.MAX_SAFE_INTEGER, perSecond: Number.MAX_SAFE_INTEGER }, () => now)
    expect([rate.take('a'), rate.take('a'), rate.take('a')]).toEqual([undefined, undefined, 'units from one peer over 1 a second'])
    now -= 60_000
    expect(rate.take('a')).toBe('units from one peer over 1 a second')
    expect(rate.take('b')).toBeUndefined()
    now += 1000
    expect(rate.take('a')).toBeUndefined()
  })

  it('with no bound for all peers, holds each peer alone', () => {
    let now = 0
    const rate = new PeerRate('record messages', { peerBurst: 3, peerPerSecond: 1, burst: Number.MAX_SAFE_INTEGER, perSecond: Number.MAX_SAFE_INTEGER }, () => now)
    for (let i = 0; i < 100; i++) for (let k = 0; k < 3; k++) expect(rate.take(`p${i}`)).toBeUndefined()
    expect(rate.take('p0')).toBe('record messages from one peer over 1 a second')
    now += 10_000
    expect(rate.take('p0')).toBeUndefined()
  })

  it('keeps the last half of the all-peers bucket for light peers: heavy peers within their own rate cannot use it up', () => {
    let now = 0
    // each peer may take 100 a second; all peers together 200 a second, 400 at once
    const rate = new PeerRate('units', { peerBurst: 100, peerPerSecond: 100, burst: 400, perSecond: 200 }, () => now)
    const heavy = ['h1', 'h2', 'h3', 'h4']
    const refused = new Map<string, number>()
    let lightRefused = 0
    // 4 peers at 80 a second each (within their own rate, 320 together) for 5 s, one light peer at 2 a second
    for (let ms = 0; ms < 5000; ms += 50) {
      now = ms
      for (const peer of heavy) {
        for (let k = 0; k < 4; k++) {
          const reason = rate.take(peer)
          if (reason !== undefined) refused.set(reason, (refused.get(reason) ?? 0) + 1)
        }
      }
      if (ms % 500 === 0 && rate.take('light') !== undefined) lightRefused++
    }
    expect(lightRefused).toBe(0)
    // the heavy peers were held to about the all-peers rate, refused as heavy rather than for an empty bucket
    const reasons = [...refused.keys()]
    expect(reasons.length).toBeGreaterThan(0)
    expect(reasons.every(r => /^units from one peer at \d+ a second while all peers are near 200 a second$/.test(r))).toBe(true)
  })

  it('lets a heavy peer take the reserve again once its recent rate has fallen', () => {
    let now = 0
    const rate = new PeerRate('units', { peerBurst: 1000, peerPerSecond: 100, burst: 100, perSecond: 0.25 }, () => now)
    // 51 at once: the all-peers bucket falls under its reserve, and this peer's recent rate is 51 (heavy: 25 or more)
    for (let k = 0; k < 51; k++) expect(rate.take('a')).toBeUndefined()
    expect(rate.take('a')).toMatch(/^units from one peer at 51 a second/)
    expect(rate.take('b')).toBeUndefined()
    // half a second later its recent rate is 51 / √e ≈ 31: still heavy
    now = 500
    expect(rate.take('a')).toMatch(/^units from one peer at 31 a second/)
    // 4 s later: 1 token back for all peers (still under half), a's recent rate 51 / e⁴ ≈ 1
    now = 4000
    expect(rate.take('a')).toBeUndefined()
  })

  it('above the reserve, serves a heavy peer as any other', () => {
    const rate = new PeerRate('units', { peerBurst: 1000, peerPerSecond: 1, burst: 100, perSecond: 1 }, () => 0)
    // heavy from its second unit on; served until the all-peers bucket falls under 50
    for (let k = 0; k < 51; k++) expect(rate.take('a')).toBeUndefined()
    expect(rate.take('a')).toMatch(/while all peers are near 1 a second$/)
  })

  it('keeps tracking a heavy peer whose bucket is full when it forgets quiet ones, so it does not come back light', () => {
    let now = 0
    const rate = new PeerRate('units', { peerBurst: 10, peerPerSecond: 1000, burst: 1e9, perSecond: 1e9 }, () => now)
    // one unit a millisecond for 0.4 s: within its own rate (its bucket stays full), a recent rate of ~330 a second
    for (let ms = 0; ms < 400; ms++) { now = ms; expect(rate.take('heavy')).toBeUndefined() }
    for (let i = 0; i < 4095; i++) rate.take(`quiet${i}`)
    expect(rate.tracked).toBe(4096)
    // 1.6 s later every bucket is full; the quiet peers' recent rates are under 1, the heavy one's ~66
    now = 2000
    expect(rate.take('new')).toBeUndefined()
    expect(rate.tracked).toBe(2)
  })

  it('counts new peer ids from one address together: they cannot use up what is kept for light peers, and a light peer from another address gets through', () => {
    const now = 0
    const limits = { peerBurst: 100, peerPerSecond: 100, burst: 400, perSecond: 1 }
    const rate = new PeerRate('units', limits, () => now)
    // fresh ids from one address, 20 units each: each light by its own rate (a quarter is 25)
    let taken = 0
    for (let id = 0; id < 40; id++) for (let k = 0; k < 20; k++) if (rate.take(`sybil${id}`, '203.0.113.7') === undefined) taken++
    // the address turned heavy at a quarter of its rate (GROUP_PEERS × 100 a second): past the reserve it takes no more
    expect(taken).toBe(limits.burst / 2 + 1)
    expect(rate.take('sybil-next', '203.0.113.7')).toBe(`units from one address at ${taken} a second while all peers are near 1 a second`)
    // the half kept for light peers is there for a peer from elsewhere
    expect(rate.take('honest', '198.51.100.1')).toBeUndefined()
    // the same ids counted alone (no address) would have used it up
    const alone = new PeerRate('units', limits, () => now)
    for (let id = 0; id < 40; id++) for (let k = 0; k < 20; k++) alone.take(`sybil${id}`)
    expect(alone.take('honest')).toBe('units from all peers over 1 a second')
  })

  it('holds all peers from one address to GROUP_PEERS times a peer\'s burst and rate', () => {
    let now = 0
    const rate = new PeerRate('units', { peerBurst: 10, peerPerSecond: 10, burst: 1e9, perSecond: 1e9 }, () => now)
    const from = (ip6: string): string | undefined => addressGroup(multiaddr(`/ip6/${ip6}/tcp/4001`))
    let taken = 0
    for (let id = 0; id < 100; id++) for (let k = 0; k < 10; k++) if (rate.take(`id${id}`, from('2001:db8:1:2::5')) === undefined) taken++
    expect(taken).toBe(10 * GROUP_PEERS)
    // another address of the same /64 is the same group, another /64 is not
    expect(rate.take('another', from('2001:db8:1:2:ffff::1'))).toBe(`units from one address over ${10 * GROUP_PEERS} a second`)
    expect(rate.take('another', from('2001:db8:1:3::1'))).toBeUndefined()
    now += 1000
    expect(rate.take('id0', from('2001:db8:1:2::5'))).toBeUndefined()
  })

  it('tracks no more than 4 096 addresses', () => {
    const rate = new PeerRate('units', { peerBurst: 2, peerPerSecond: 1, burst: 1e9, perSecond: 1e9 }, () => 0)
    for (let i = 0; i < 5000; i++) rate.take('one peer id', `10.0.${i >> 8}.${i & 255}`)
    expect(rate.trackedGroups).toBeLessThanOrEqual(4096)
  })

  it('groups a connection by its IPv4 address (mapped too), its IPv6 /64 or its relay\'s; not loopback, link-local or a name', () => {
    expect(addressGroup(multiaddr('/ip4/203.0.113.7/tcp/4001'))).toBe('203.0.113.7')
    expect(addressGroup(multiaddr('/ip6/2001:db8:0001:0002:3:4:5:6/tcp/4001'))).toBe('2001:db8:1:2::/64')
    expect(addressGroup(multiaddr('/ip6/2001:db8::1/tcp/4001/ws'))).toBe('2001:db8:0:0::/64')
    expect(addressGroup(multiaddr('/ip4/198.51.100.9/tcp/4001/p2p/12D3KooWGRUVh2dXRBuyBxX3KSMyWDQq4k2EzK9azmqXbf9fXXzG/p2p-circuit'))).toBe('198.51.100.9')
    expect(addressGroup(multiaddr('/ip4/127.0.0.1/tcp/4001'))).toBeUndefined()
    expect(addressGroup(multiaddr('/ip4/127.3.2.1/tcp/4001'))).toBeUndefined()
    expect(addressGroup(multiaddr('/ip6/::1/tcp/4001'))).toBeUndefined()
    expect(addressGroup(multiaddr('/ip6/::1:0/tcp/4001'))).toBe('0:0:0:0::/64')
    expect(addressGroup(multiaddr('/ip6/::ffff:203.0.113.7/tcp/4001'))).toBe('203.0.113.7')
    expect(addressGroup(multiaddr('/ip6/::ffff:127.0.0.1/tcp/4001'))).toBeUndefined()
    expect(addressGroup(multiaddr('/ip6/fe80::1:2:3:4/tcp/4001'))).toBeUndefined()
    expect(addressGroup(multiaddr('/ip6/febf::1/tcp/4001'))).toBeUndefined()
    expect(addressGroup(multiaddr('/ip6/fec0::1/tcp/4001'))).toBe('fec0:0:0:0::/64')
    expect(addressGroup(multiaddr('/dns4/example.com/tcp/4001'))).toBeUndefined()
    expect(addressGroup(undefined)).toBeUndefined()
  })
})
