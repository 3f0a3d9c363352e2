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
})
