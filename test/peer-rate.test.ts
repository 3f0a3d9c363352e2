/**
 * PeerRate, the token buckets bitswap, gossipsub and a hub's cluster messages take from: per peer
 * and for all peers, and a bounded number of peers tracked.
 */
import { describe, expect, it } from 'vitest'
import { PeerRate } from '../src/store/peer-rate.js'

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
})

