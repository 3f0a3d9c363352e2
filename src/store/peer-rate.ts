/**
 * Token buckets per peer and for all peers together: what the libp2p protocols a node serves to
 * strangers (bitswap, pubsub) take for each unit of work a peer asks of it, before doing the work.
 *
 * Fair share: a few peers, each within its own rate, could otherwise use up the all-peers bucket
 * and leave nothing for the rest (4 bitswap peers at 6–7 k entries a second made 1 of 10 honest
 * fetches fail). So the last half of the all-peers bucket is kept for light peers: once it is below
 * half, a peer whose recent rate (a moving average over about a second) is a quarter of its own
 * rate or more is refused, while lighter peers still get through. A peer is judged at every unit,
 * so a peer that turns heavy within one message (bitswap: past 2 048 entries in about a second) is
 * refused in its middle.
 *
 * Many identities: a peer id costs nothing to make, and one seen for the first time is light. So
 * peers are also counted by the address they connect from (`addressGroup`: an IPv4 address, an IPv6
 * /64), which has a bucket of its own, GROUP_PEERS times a peer's, and is judged heavy or light the
 * same way: new ids from one address share its rate and its weight. Loopback is not grouped (the
 * machine's own nodes, and every node of a test).
 */

export interface PeerRateLimits {
  /** Units one peer may use at once, and per second after that. */
  peerBurst: number
  peerPerSecond: number
  /** The same for all peers from one address. @default GROUP_PEERS times a peer's */
  groupBurst?: number
  groupPerSecond?: number
  /** The same for all peers together. */
  burst: number
  perSecond: number
}

/** Peers whose buckets are kept before those full again are forgotten (they start full), then the longest known. */
const MAX_TRACKED_PEERS = 4096
/** The part of the all-peers bucket kept for light peers (see above). */
export const RESERVED_FOR_LIGHT_PEERS = 0.5
/** A peer is light while its recent rate is under this part of its own rate. */
export const LIGHT_PEER_SHARE = 0.25
/** How many peers' worth of units all peers from one address may use (a NAT holds several honest nodes). */
export const GROUP_PEERS = 4
/** How long the recent rate remembers (the time constant of its exponential decay). */
const RECENT_MS = 1000

interface Bucket { tokens: number, at: number }
interface PeerBucket extends Bucket {
  /** units taken, decaying by e every RECENT_MS: about the units a second at a steady rate */
  recent: number
}

export class PeerRate {
  private readonly peers = new Map<string, PeerBucket>()
  private readonly groups = new Map<string, PeerBucket>()
  private readonly all: Bucket
  private readonly groupBurst: number
  private readonly groupPerSecond: number

  /** `what` names the units in refusals ("bitswap entries"). */
  constructor (private readonly what: string, readonly limits: PeerRateLimits, private readonly now: () => number = () => performance.now()) {
    this.all = { tokens: limits.burst, at: now() }
    this.groupBurst = limits.groupBurst ?? limits.peerBurst * GROUP_PEERS
    this.groupPerSecond = limits.groupPerSecond ?? limits.peerPerSecond * GROUP_PEERS
  }

  /**
   * Takes one unit for `peer`, connected from the address `group` names (see `addressGroup`); a
   * reason, with nothing taken, when its bucket, its address's or all peers' is empty, or when the
   * peer or its address is heavy and all peers' bucket is down to the reserve.
   */
  take (peer: string, group?: string): string | undefined {
    const now = this.now()
    const { peerBurst, peerPerSecond, burst, perSecond } = this.limits
    const mine = bucketOf(this.peers, peer, now, peerBurst, peerPerSecond)
    const theirs = group === undefined ? undefined : bucketOf(this.groups, group, now, this.groupBurst, this.groupPerSecond)
    refill(this.all, now, burst, perSecond)
    if (mine.tokens < 1) return `${this.what} from one peer over ${peerPerSecond} a second`
    if (theirs !== undefined && theirs.tokens < 1) return `${this.what} from one address over ${this.groupPerSecond} a second`
    if (this.all.tokens < 1) return `${this.what} from all peers over ${perSecond} a second`
    if (this.all.tokens < burst * RESERVED_FOR_LIGHT_PEERS) {
      if (mine.recent >= peerPerSecond * LIGHT_PEER_SHARE) {
        return `${this.what} from one peer at ${Math.round(mine.recent)} a second while all peers are near ${perSecond} a second`
      }
      if (theirs !== undefined && theirs.recent >= this.groupPerSecond * LIGHT_PEER_SHARE) {
        return `${this.what} from one address at ${Math.round(theirs.recent)} a second while all peers are near ${perSecond} a second`
      }
    }
    for (const bucket of theirs === undefined ? [mine] : [mine, theirs]) {
      bucket.recent++
      bucket.tokens--
    }
    this.all.tokens--
    return undefined
  }

  /** Peers tracked now (a bucket that filled up again may be forgotten). */
  get tracked (): number {
    return this.peers.size
  }

  /** Addresses tracked now, as peers are. */
  get trackedGroups (): number {
    return this.groups.size
  }
}

/** `key`'s bucket in `buckets`, made (full) when it has none, with its recent rate decayed and its tokens refilled. */
function bucketOf (buckets: Map<string, PeerBucket>, key: string, now: number, burst: number, perSecond: number): PeerBucket {
  let bucket = buckets.get(key)
  if (bucket === undefined) {
    if (buckets.size >= MAX_TRACKED_PEERS) forgetFull(buckets, now, burst, perSecond)
    bucket = { tokens: burst, at: now, recent: 0 }
    buckets.set(key, bucket)
  }
  bucket.recent *= Math.exp(-Math.max(0, now - bucket.at) / RECENT_MS)
  refill(bucket, now, burst, perSecond)
  return bucket
}

/**
 * Forgets the buckets that are full again and quiet (a heavy peer within its own rate keeps a full
 * bucket, and would come back light), then, while too many are left, the longest known.
 */
function forgetFull (buckets: Map<string, PeerBucket>, now: number, burst: number, perSecond: number): void {
  for (const [key, bucket] of buckets) {
    bucket.recent *= Math.exp(-Math.max(0, now - bucket.at) / RECENT_MS)
    refill(bucket, now, burst, perSecond)
    if (bucket.tokens >= burst && bucket.recent < 1) buckets.delete(key)
  }
  for (const key of buckets.keys()) {
    if (buckets.size < MAX_TRACKED_PEERS) break
    buckets.delete(key)
  }
}

/**
 * The address a libp2p connection comes from, as `PeerRate` groups peers: an IPv4 address as it
 * is (also when mapped into IPv6), an IPv6 address as its /64 (one host usually holds a whole /64),
 * a relayed connection as its relay's. Undefined for loopback, link-local IPv6 and addresses that
 * name no IP (peers are then counted alone).
 */
export function addressGroup (remoteAddr: { toString: () => string } | undefined): string | undefined {
  const [, protocol, host] = (remoteAddr?.toString() ?? '').split('/')
  if (host === undefined || host === '') return undefined
  if (protocol === 'ip4') return host.startsWith('127.') ? undefined : host
  if (protocol !== 'ip6') return undefined
  const words = ipv6Groups(host).map(g => Number.parseInt(g, 16))
  // ::1
  if (words.every((w, i) => w === (i === 7 ? 1 : 0))) return undefined
  // ::ffff:a.b.c.d (multiaddr writes it ::ffff:abcd:efgh): the IPv4 address it maps
  if (words.slice(0, 5).every(w => w === 0) && words[5] === 0xffff) {
    const [high = 0, low = 0] = words.slice(6)
    return high >> 8 === 127 ? undefined : `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`
  }
  // link-local (fe80::/10): every network's peers share the prefix, so they are counted alone
  if (((words[0] ?? 0) & 0xffc0) === 0xfe80) return undefined
  return ipv6Prefix64(host)
}

/** The eight groups of an IPv6 address written with or without `::`. */
function ipv6Groups (address: string): string[] {
  if (!address.includes('::')) return address.split(':')
  const [head = '', tail = ''] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  return [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
}

/** An IPv6 address's /64 prefix, written `a:b:c:d::/64` (groups without leading zeros, lower case). */
export function ipv6Prefix64 (address: string): string {
  return ipv6Groups(address).slice(0, 4).map(g => g.replace(/^0+(?=.)/, '').toLowerCase()).join(':') + '::/64'
}

function refill (bucket: Bucket, now: number, burst: number, perSecond: number): void {
  // a clock that steps back refills nothing (and takes nothing)
  bucket.tokens = Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) * perSecond / 1000)
  bucket.at = now
}
