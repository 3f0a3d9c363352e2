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
 * refused in its middle. This holds against a few heavy peers, not against many identities: a peer
 * id seen for the first time is light, so new ids, about 8 a second for bitswap (each with a message
 * of up to 2 048 entries) or 40 for pubsub, can still use the reserve up.
 */

export interface PeerRateLimits {
  /** Units one peer may use at once, and per second after that. */
  peerBurst: number
  peerPerSecond: number
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
/** How long the recent rate remembers (the time constant of its exponential decay). */
const RECENT_MS = 1000

interface Bucket { tokens: number, at: number }
interface PeerBucket extends Bucket {
  /** units taken, decaying by e every RECENT_MS: about the units a second at a steady rate */
  recent: number
}

export class PeerRate {
  private readonly peers = new Map<string, PeerBucket>()
  private readonly all: Bucket

  /** `what` names the units in refusals ("bitswap entries"). */
  constructor (private readonly what: string, readonly limits: PeerRateLimits, private readonly now: () => number = () => performance.now()) {
    this.all = { tokens: limits.burst, at: now() }
  }

  /**
   * Takes one unit for `peer`; a reason, with nothing taken, when its bucket or all peers' is empty,
   * or when the peer is heavy and all peers' bucket is down to the reserve.
   */
  take (peer: string): string | undefined {
    const now = this.now()
    const { peerBurst, peerPerSecond, burst, perSecond } = this.limits
    let mine = this.peers.get(peer)
    if (mine === undefined) {
      if (this.peers.size >= MAX_TRACKED_PEERS) this.forgetFull(now)
      mine = { tokens: peerBurst, at: now, recent: 0 }
      this.peers.set(peer, mine)
    }
    mine.recent *= Math.exp(-Math.max(0, now - mine.at) / RECENT_MS)
    refill(mine, now, peerBurst, peerPerSecond)
    refill(this.all, now, burst, perSecond)
    if (mine.tokens < 1) return `${this.what} from one peer over ${peerPerSecond} a second`
    if (this.all.tokens < 1) return `${this.what} from all peers over ${perSecond} a second`
    if (this.all.tokens < burst * RESERVED_FOR_LIGHT_PEERS && mine.recent >= peerPerSecond * LIGHT_PEER_SHARE) {
      return `${this.what} from one peer at ${Math.round(mine.recent)} a second while all peers are near ${perSecond} a second`
    }
    mine.recent++
    mine.tokens--
    this.all.tokens--
    return undefined
  }

  /** Peers tracked now (a bucket that filled up again may be forgotten). */
  get tracked (): number {
    return this.peers.size
  }

  /**
   * Forgets the peers whose buckets are full again and who have been quiet (a heavy peer within its
   * own rate keeps a full bucket, and would come back light), then, while too many are left, the
   * longest known.
   */
  private forgetFull (now: number): void {
    for (const [peer, bucket] of this.peers) {
      bucket.recent *= Math.exp(-Math.max(0, now - bucket.at) / RECENT_MS)
      refill(bucket, now, this.limits.peerBurst, this.limits.peerPerSecond)
      if (bucket.tokens >= this.limits.peerBurst && bucket.recent < 1) this.peers.delete(peer)
    }
    for (const peer of this.peers.keys()) {
      if (this.peers.size < MAX_TRACKED_PEERS) break
      this.peers.delete(peer)
    }
  }
}

function refill (bucket: Bucket, now: number, burst: number, perSecond: number): void {
  // a clock that steps back refills nothing (and takes nothing)
  bucket.tokens = Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) * perSecond / 1000)
  bucket.at = now
}
