/**
 * Hub clusters over libp2p pubsub: a hub publishes every record it accepts on the name's
 * IPNS-over-PubSub topic (ipfs/specs `ipns-pubsub-router.md`: `/record/` + base64url of the routing
 * key, message data = the marshalled record) for devices that subscribe, and on the hubs' own topic
 * with the name, the root block (and the whole version when small) and the peers chosen to
 * replicate it. A hub hearing a record checks it exactly as a PUT (signature, size, sequence, owner
 * binding, quota), stores it, indexes its owner and tells its event-stream subscribers; the chosen
 * replicas then store the version's blocks (those sent along at once, the rest fetched by bitswap
 * through a queue) and say so on the "held" topic, which the accepting hub waits for (bounded, with
 * one resend) before it acknowledges the PUT. Everything a peer can send is bounded: message size,
 * messages per second per peer, checks in flight, queued replications and their concurrency, the
 * per-name quota.
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { decode, encode } from 'cborg'
import { base64url } from 'multiformats/bases/base64'
import { sha256 } from '@noble/hashes/sha2.js'
import { multihashToIPNSRoutingKey } from 'ipns'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { systemClock } from '../clock.js'
import { CLUSTER_HELD_TOPIC, CLUSTER_NEXTID_TOPIC, CLUSTER_RECORDS_TOPIC } from '../protocol.js'
import { decodeLink } from './nextid/chain.js'
import { adoptChain } from './nextid/replicate.js'
import { exportAvatarChain } from './nextid/transfer.js'
import { MAX_RECORD_BYTES, nameToMultihash, readRecord } from '../store/record.js'
import { PeerRate } from '../store/peer-rate.js'
import { DEFAULT_HUB_FETCH_TIMEOUT_MS, DEFAULT_HUB_MAX_SPACE_BYTES, DEFAULT_MAX_PEER_CHECKS, DEFAULT_MAX_REPLICATION_QUEUE, DEFAULT_PEER_MESSAGES_PER_SECOND, DEFAULT_REPLICAS, DEFAULT_REPLICATION_CONCURRENCY, DEFAULT_REPLICA_WAIT_MS } from './options.js'
// The cluster's defaults live with the hub's other options; exported here too, where they were first.
export { DEFAULT_MAX_PEER_CHECKS, DEFAULT_MAX_REPLICATION_QUEUE, DEFAULT_PEER_MESSAGES_PER_SECOND, DEFAULT_REPLICAS, DEFAULT_REPLICATION_CONCURRENCY, DEFAULT_REPLICA_WAIT_MS } from './options.js'
import { parseName } from './params.js'
import { MAX_ROOT_BYTES, rootOf, stateLinks } from './quota.js'
import { decodeCurrent } from '../space/root.js'
import { walkDag } from './walk.js'
import type { Clock } from '../clock.js'
import { cidKey } from '../store/blocks.js'
import { flatText } from '../crypto/bytes.js'
import type { HubBlocks } from './blocks.js'
import type { HubRecords } from './records.js'
import type { NextIdStores } from './nextid/store.js'
import type { ImportLimits } from './nextid/transfer.js'
import type { Block } from '../store/interface.js'
import type { GossipSub, Message, SubscriptionChangeData } from '@libp2p/gossipsub'
import type { MultihashDigest } from 'multiformats/hashes/interface'

/**
 * Root blocks up to this size travel with the record, with the current node and owner binding it
 * links (each at most MAX_INLINE_BINDING_BYTES), so peers check the owner binding without a fetch.
 */
const MAX_INLINE_ROOT_BYTES = 32 * 1024
const MAX_INLINE_BINDING_BYTES = 4 * 1024
/**
 * A version whose blocks below the root total at most this travels whole, so replicas need no
 * bitswap round trips (each costs tens of ms on loopback, seconds on a loaded machine).
 */
const MAX_INLINE_BLOCKS_BYTES = 40 * 1024
/** Largest cluster message decoded: a record, an inline root, inline blocks and the replica list. */
const MAX_CLUSTER_MESSAGE_BYTES = MAX_RECORD_BYTES + MAX_INLINE_ROOT_BYTES + 2 * MAX_INLINE_BINDING_BYTES + MAX_INLINE_BLOCKS_BYTES + 4 * 1024
/** Largest Next.ID chain gossiped whole (bigger ones move with export/import). */
export const MAX_GOSSIP_CHAIN_BYTES = 48 * 1024
/** Replica peer ids named in one message. */
const MAX_NAMED_REPLICAS = 16

export interface ClusterOptions {
  /** @default DEFAULT_REPLICAS (2); 1 keeps each version on the accepting hub only */
  replicas?: number
  /** @default DEFAULT_REPLICA_WAIT_MS (5 s) */
  replicaWaitMs?: number
  /** @default DEFAULT_PEER_MESSAGES_PER_SECOND (200) */
  peerMessagesPerSecond?: number
  /** @default DEFAULT_MAX_PEER_CHECKS (64) */
  maxPeerChecks?: number
  /** @default DEFAULT_MAX_REPLICATION_QUEUE (1 024) */
  maxReplicationQueue?: number
  /** @default DEFAULT_REPLICATION_CONCURRENCY (2) */
  replicationConcurrency?: number
  /** Per block fetched while replicating. @default DEFAULT_HUB_FETCH_TIMEOUT_MS (3 s) */
  fetchTimeoutMs?: number
  /** The per-name quota, which also bounds what one replication fetches. @default DEFAULT_HUB_MAX_SPACE_BYTES */
  maxSpaceBytes?: number
  /** The clock peer rate limits and replicated blocks' landing times follow, in ms since 1970. @default systemClock (Date.now) */
  nowMs?: Clock
  log?: (line: string) => void
}

/** The parts of a hub the cluster uses. */
export interface ClusterComponents {
  pubsub: GossipSub
  records: Pick<HubRecords, 'acceptFromPeer'>
  blocks: HubBlocks
  /** The Next.ID KV store, when the hub runs it: avatars' chains are gossiped too. */
  nextId?: NextIdStores & ImportLimits
}

/** What a hub sends on CLUSTER_RECORDS_TOPIC. */
interface RecordMessage {
  name: string
  record: Uint8Array
  root?: Uint8Array
  /** With the root: its current node and the owner binding that links, when this hub has them. */
  binding?: Uint8Array[]
  /** The version's blocks below the root, when small (see MAX_INLINE_BLOCKS_BYTES). */
  blocks?: Uint8Array[]
  replicas: string[]
}

/** IPNS over PubSub: the topic of a name. */
export function ipnsTopic (name: string): string {
  const key = multihashToIPNSRoutingKey(nameToMultihash(name) as MultihashDigest<0x00 | 0x12>)
  return flatText('/record/' + base64url.baseEncode(key))
}

interface Waiter { missing: Set<string>, resolve: () => void, resend: (missing: string[]) => Promise<void> }
interface Job { name: string, cid: CID, sequence: bigint, inline: Uint8Array[] }

/** One hub's membership of the cluster. `stop()` leaves the topics. */
export class HubCluster {
  private readonly pubsub: GossipSub
  private readonly components: ClusterComponents
  private readonly self: string
  private readonly limiter: PeerRate
  private readonly waiters = new Map<string, Set<Waiter>>()
  private readonly queue = new Map<string, Job>()
  private checks = 0
  private replicating = 0
  private stopped = false
  private readonly replicas: number
  private readonly replicaWaitMs: number
  private readonly log: (line: string) => void
  private readonly nowMs: Clock
  private readonly onMessage = (event: CustomEvent<Message>): void => { this.heard(event.detail) }
  private readonly onSubscription = (event: CustomEvent<SubscriptionChangeData>): void => {
    for (const { topic, subscribe } of event.detail.subscriptions) {
      if (topic !== CLUSTER_RECORDS_TOPIC) continue
      const peer = event.detail.peerId.toString()
      const others = this.hubs().length
      this.log(`cluster: ${subscribe ? 'joined by' : 'left by'} ${peer} (${others} other hub${others === 1 ? '' : 's'})`)
      // A replica (re)joining while a PUT waits for it may have missed the record.
      if (subscribe) for (const set of this.waiters.values()) for (const waiter of set) if (waiter.missing.has(peer)) waiter.resend([peer]).catch(() => {})
    }
  }

  constructor (components: ClusterComponents, selfId: string, private readonly options: ClusterOptions = {}) {
    this.components = components
    this.pubsub = components.pubsub
    this.self = selfId
    this.replicas = Math.max(1, Math.floor(options.replicas ?? DEFAULT_REPLICAS))
    this.replicaWaitMs = options.replicaWaitMs ?? DEFAULT_REPLICA_WAIT_MS
    this.nowMs = options.nowMs ?? systemClock
    const rate = options.peerMessagesPerSecond ?? DEFAULT_PEER_MESSAGES_PER_SECOND
    // per peer only: what all peers may send together is bound before the signature checks (pubsub-guard.ts)
    this.limiter = new PeerRate('record messages', { peerBurst: rate * 20, peerPerSecond: rate, burst: Number.MAX_SAFE_INTEGER, perSecond: Number.MAX_SAFE_INTEGER }, this.nowMs)
    this.log = options.log ?? (() => {})
    this.pubsub.topicValidators.set(CLUSTER_RECORDS_TOPIC, async (peer, message) => this.validateRecord(peer.toString(), message))
    this.pubsub.topicValidators.set(CLUSTER_HELD_TOPIC, (peer, message) => this.validateHeld(peer.toString(), message))
    if (components.nextId !== undefined) {
      this.pubsub.topicValidators.set(CLUSTER_NEXTID_TOPIC, async (peer, message) => this.validateChain(peer.toString(), message))
      this.pubsub.subscribe(CLUSTER_NEXTID_TOPIC)
    }
    this.pubsub.addEventListener('message', this.onMessage)
    this.pubsub.addEventListener('subscription-change', this.onSubscription)
    this.pubsub.subscribe(CLUSTER_RECORDS_TOPIC)
    this.pubsub.subscribe(CLUSTER_HELD_TOPIC)
  }

  /** The peers on the cluster topic: the other hubs this one hears. */
  hubs (): string[] {
    return this.pubsub.getSubscribers(CLUSTER_RECORDS_TOPIC).map(String)
  }

  /**
   * Tells devices and peered hubs of a record this hub accepted, and resolves once the chosen
   * replicas hold the version (or after `replicaWaitMs`), with the number of hubs it was sent to.
   */
  async publish (name: string, record: Uint8Array, rootBytes?: Uint8Array): Promise<number> {
    if (this.stopped) return 0
    const topic = ipnsTopic(name)
    // Signing a message nobody listens to costs as much as one that is heard.
    if (this.pubsub.getSubscribers(topic).length > 0) this.pubsub.publish(topic, record).catch(() => {})
    const chosen = rankHubs(name, this.hubs()).slice(0, this.replicas - 1)
    const message: RecordMessage = { name, record, replicas: chosen }
    if (rootBytes !== undefined && rootBytes.byteLength <= MAX_INLINE_ROOT_BYTES) {
      message.root = rootBytes
      const binding = await this.bindingBlocks(rootBytes)
      if (binding !== undefined) message.binding = binding
      if (chosen.length > 0) {
        const inline = await this.smallVersion(rootBytes)
        if (inline !== undefined) message.blocks = inline
      }
    }
    const { sequence } = readRecord(record)
    const resend = async (missing: string[]): Promise<void> => {
      await this.pubsub.publish(CLUSTER_RECORDS_TOPIC, encode({ ...message, replicas: missing }))
    }
    const held = chosen.length === 0 ? Promise.resolve() : this.waitHeld(name, sequence, chosen, resend)
    const { recipients } = await this.pubsub.publish(CLUSTER_RECORDS_TOPIC, encode(message))
    await held
    return recipients.length
  }

  /** A root's current node and the owner binding it links, when this hub has both and they are small. */
  private async bindingBlocks (rootBytes: Uint8Array): Promise<Uint8Array[] | undefined> {
    const root = rootOf(rootBytes)
    if (root === undefined) return undefined
    const { blocks } = this.components
    const current = await blocks.localBlock(root.current)
    if (current === undefined || current.byteLength > MAX_INLINE_BINDING_BYTES) return undefined
    let owner: CID
    try {
      owner = decodeCurrent(current).owner
    } catch {
      return undefined
    }
    const binding = await blocks.localBlock(owner)
    return binding === undefined || binding.byteLength > MAX_INLINE_BINDING_BYTES ? undefined : [current, binding]
  }

  /** The blocks below a root, when this hub has all of them and they are small enough to send along. */
  private async smallVersion (rootBytes: Uint8Array): Promise<Uint8Array[] | undefined> {
    const root = rootOf(rootBytes)
    if (root === undefined) return undefined
    const { blocks } = this.components
    const io = { read: async (c: CID) => blocks.localBlock(c), size: async (c: CID) => (await blocks.localBlock(c))?.byteLength }
    const below = stateLinks(root)
    const walked = await walkDag(below, io, { maxLinks: 1024, maxBlocks: 64, maxBytes: MAX_INLINE_BLOCKS_BYTES })
    if (walked.over !== undefined) return undefined
    const out: Uint8Array[] = []
    for (const cid of walked.cids) {
      const bytes = await blocks.localBlock(cid)
      if (bytes === undefined) return undefined
      out.push(bytes)
    }
    // Incomplete (a block missing here): replicas fetch instead.
    return out.length === walked.cids.length ? out : undefined
  }

  /**
   * Resolves once every replica said it holds the version, or after `replicaWaitMs`. A message
   * can be lost (a peer's gossip stream not open yet, a connection replaced): a silent replica is
   * sent the record again when it joins the cluster topic (again) meanwhile, and once, after half
   * the wait, whatever happened; never more, so that a slow cluster is not made slower by resends.
   */
  private async waitHeld (name: string, sequence: bigint, replicas: string[], resend: (missing: string[]) => Promise<void>): Promise<void> {
    const key = `${name} ${sequence}`
    let waiter!: Waiter
    const done = new Promise<void>((resolve) => { waiter = { missing: new Set(replicas), resolve, resend } })
    let set = this.waiters.get(key)
    if (set === undefined) this.waiters.set(key, set = new Set())
    set.add(waiter)
    let timer: ReturnType<typeof setTimeout> | undefined
    const within = async (ms: number): Promise<boolean> => {
      const late = await Promise.race([done.then(() => false), new Promise<boolean>((resolve) => { timer = setTimeout(() => { resolve(true) }, ms) })])
      clearTimeout(timer)
      return !late
    }
    try {
      const halfMs = this.replicaWaitMs / 2
      if (await within(halfMs) || this.stopped) return
      await resend([...waiter.missing]).catch(() => {})
      if (await within(this.replicaWaitMs - halfMs) || this.stopped) return
      this.log(`cluster: ${name} #${sequence} not yet held by ${[...waiter.missing].join(', ')} after ${this.replicaWaitMs} ms`)
    } finally {
      clearTimeout(timer)
      set.delete(waiter)
      if (set.size === 0 && this.waiters.get(key) === set) this.waiters.delete(key)
    }
  }

  private async validateRecord (peer: string, message: Message): Promise<TopicValidatorResult> {
    // Signed messages only: `from` names the hub that accepted the record and chose its replicas.
    if (message.type !== 'signed') return TopicValidatorResult.Reject
    if (this.limiter.take(peer) !== undefined) return TopicValidatorResult.Ignore
    const decoded = decodeRecordMessage(message.data)
    if (decoded === undefined) return TopicValidatorResult.Reject
    if (this.checks >= (this.options.maxPeerChecks ?? DEFAULT_MAX_PEER_CHECKS)) return TopicValidatorResult.Ignore
    this.checks++
    try {
      await this.components.records.acceptFromPeer(decoded.name, decoded.record, decoded.root, decoded.binding)
    } catch (err) {
      const name = (err as Error).name
      // An older or equal-sequence record is a peer that is behind, not one that lies.
      if (name === 'ConflictError' || name === 'EquivocationError' || name === 'InsufficientStorageError' || name === 'StoreError') return TopicValidatorResult.Ignore
      this.log(`cluster: refused a record for ${decoded.name} from ${peer}: ${(err as Error).message}`)
      return TopicValidatorResult.Reject
    } finally {
      this.checks--
    }
    if (decoded.replicas.includes(this.self)) {
      const { cid, sequence } = readRecord(decoded.record)
      const job = cid === undefined ? undefined : { name: decoded.name, cid, sequence, inline: [...(decoded.root === undefined ? [] : [decoded.root]), ...(decoded.blocks ?? [])] }
      if (job !== undefined && decoded.root !== undefined && decoded.blocks !== undefined) {
        // The whole version came along: nothing to fetch, so no queue to wait in (a slot of the
        // checks cap bounds these instead).
        this.checks++
        this.replicate(job).catch((err: Error) => {
          this.log(`cluster: cannot replicate ${job.name}: ${err.message}`)
        }).finally(() => { this.checks-- })
      } else if (job !== undefined) {
        this.enqueue(job)
      }
    }
    return TopicValidatorResult.Accept
  }

  /** Gossips an avatar's chain after this hub accepted a patch (or kept its chain over a losing one). */
  async publishChain (avatar: string): Promise<void> {
    const stores = this.components.nextId
    if (stores === undefined || this.stopped) return
    const { blocks } = await exportAvatarChain(stores, avatar)
    const bytes = blocks.reduce((n, b) => n + b.bytes.length, 0)
    if (blocks.length === 0) return
    if (bytes > MAX_GOSSIP_CHAIN_BYTES) {
      this.log(`cluster: the Next.ID chain of 0x${avatar.slice(0, 16)}… is ${bytes} bytes, over ${MAX_GOSSIP_CHAIN_BYTES}; move it with export/import`)
      return
    }
    await this.pubsub.publish(CLUSTER_NEXTID_TOPIC, encode({ blocks: blocks.map(b => b.bytes) }))
  }

  private async validateChain (peer: string, message: Message): Promise<TopicValidatorResult> {
    const stores = this.components.nextId
    if (stores === undefined || message.type !== 'signed') return TopicValidatorResult.Reject
    if (this.limiter.take(peer) !== undefined) return TopicValidatorResult.Ignore
    const blocks = await decodeChain(message.data)
    if (blocks === undefined) return TopicValidatorResult.Reject
    if (this.checks >= (this.options.maxPeerChecks ?? DEFAULT_MAX_PEER_CHECKS)) return TopicValidatorResult.Ignore
    this.checks++
    let adopted
    try {
      adopted = await adoptChain(stores, blocks)
    } catch (err) {
      const name = (err as Error).name
      if (name === 'InsufficientStorageError' || name === 'StoreError' || name === 'RateLimitError') return TopicValidatorResult.Ignore
      this.log(`cluster: refused a Next.ID chain from ${peer}: ${(err as Error).message}`)
      return TopicValidatorResult.Reject
    } finally {
      this.checks--
    }
    if (adopted === 'kept') {
      // Ours wins: say so, at most once a second per avatar, so the sender converges on it.
      const link = await decodeLink(blocks[0] as Block)
      const now = this.nowMs()
      if ((this.chainSentAt.get(link.avatar) ?? 0) + 1000 <= now) {
        if (this.chainSentAt.size > 10_000) this.chainSentAt.clear()
        this.chainSentAt.set(link.avatar, now)
        this.publishChain(link.avatar).catch(() => {})
      }
      // Not forwarded: the mesh hears the winner instead.
      return TopicValidatorResult.Ignore
    }
    return TopicValidatorResult.Accept
  }

  private readonly chainSentAt = new Map<string, number>()

  private validateHeld (peer: string, message: Message): TopicValidatorResult {
    if (message.type !== 'signed') return TopicValidatorResult.Reject
    if (this.limiter.take(peer) !== undefined) return TopicValidatorResult.Ignore
    return decodeHeld(message.data) === undefined ? TopicValidatorResult.Reject : TopicValidatorResult.Accept
  }

  /** Validated messages: "held" ones settle waiting PUTs (records are handled in their validator). */
  private heard (message: Message): void {
    if (message.topic !== CLUSTER_HELD_TOPIC || message.type !== 'signed') return
    const held = decodeHeld(message.data)
    if (held === undefined) return
    const from = message.from.toString()
    for (const waiter of this.waiters.get(`${held.name} ${held.sequence}`) ?? []) {
      waiter.missing.delete(from)
      if (waiter.missing.size === 0) waiter.resolve()
    }
  }

  private enqueue (job: Job): void {
    const queued = this.queue.get(job.name)
    if (queued !== undefined && queued.sequence >= job.sequence) return
    if (queued === undefined && this.queue.size >= (this.options.maxReplicationQueue ?? DEFAULT_MAX_REPLICATION_QUEUE)) {
      this.log(`cluster: replication queue full; ${job.name} #${job.sequence} is left to readers' fetches`)
      return
    }
    this.queue.set(job.name, job)
    this.drain()
  }

  private drain (): void {
    while (!this.stopped && this.replicating < (this.options.replicationConcurrency ?? DEFAULT_REPLICATION_CONCURRENCY) && this.queue.size > 0) {
      const job = this.queue.values().next().value as Job
      this.queue.delete(job.name)
      this.replicating++
      this.replicate(job).catch((err: Error) => {
        this.log(`cluster: cannot replicate ${job.name}: ${err.message}`)
      }).finally(() => {
        this.replicating--
        this.drain()
      })
    }
  }

  /** Fetches every block of one version (bounded by the per-name quota and walk caps), then says so. */
  private async replicate (job: Job): Promise<void> {
    const { blocks } = this.components
    const timeoutMs = this.options.fetchTimeoutMs ?? DEFAULT_HUB_FETCH_TIMEOUT_MS
    const max = this.options.maxSpaceBytes ?? DEFAULT_HUB_MAX_SPACE_BYTES
    let missing = 0
    // Blocks the sender carried, by the CID their bytes hash to (so a CID found here is verified);
    // the rest come by bitswap.
    const carried = new Map<string, Uint8Array>()
    for (const bytes of job.inline) {
      const digest = await sha256Hasher.digest(bytes)
      // dag-cbor (roots, public sections) and raw (private buckets): the codecs a space writes.
      for (const code of [dagCbor.code, 0x55]) carried.set(cidKey(CID.createV1(code, digest)), bytes)
    }
    // The walk asks for a block's size and then its bytes: each is read (and stored) once.
    const seen = new Map<string, Promise<Uint8Array | undefined>>()
    const load = async (c: CID): Promise<Uint8Array | undefined> => {
      const given = carried.get(cidKey(c))
      if (given !== undefined) {
        await blocks.keepFromNetwork(c, given)
        return given
      }
      const bytes = await blocks.readBlock(c, timeoutMs)
      if (bytes === undefined) missing++
      return bytes
    }
    const read = async (c: CID): Promise<Uint8Array | undefined> => {
      const key = cidKey(c)
      let pending = seen.get(key)
      if (pending === undefined) seen.set(key, pending = load(c))
      return pending
    }
    const io = { read, size: async (c: CID) => (await read(c))?.byteLength }
    const rootBytes = await read(job.cid)
    if (rootBytes === undefined) throw new Error(`root ${job.cid.toString()} not found`)
    const root = rootBytes.byteLength <= MAX_ROOT_BYTES ? rootOf(rootBytes) : undefined
    // A space's root links its previous roots too: only the current version is replicated.
    const below = root === undefined ? [job.cid] : stateLinks(root)
    const walked = await walkDag(below, io, blocks.walkCaps(max))
    blocks.storage.claim([job.cid, ...walked.cids])
    if (walked.over !== undefined) throw new Error(`over the ${walked.over} cap of one walk`)
    if (missing > 0) throw new Error(`${missing} blocks could not be fetched`)
    if (this.stopped) return
    await this.pubsub.publish(CLUSTER_HELD_TOPIC, encode({ name: job.name, sequence: job.sequence }))
  }

  stop (): void {
    this.stopped = true
    this.queue.clear()
    this.pubsub.removeEventListener('message', this.onMessage)
    this.pubsub.removeEventListener('subscription-change', this.onSubscription)
    this.pubsub.topicValidators.delete(CLUSTER_RECORDS_TOPIC)
    this.pubsub.topicValidators.delete(CLUSTER_HELD_TOPIC)
    this.pubsub.topicValidators.delete(CLUSTER_NEXTID_TOPIC)
    try {
      this.pubsub.unsubscribe(CLUSTER_RECORDS_TOPIC)
      this.pubsub.unsubscribe(CLUSTER_HELD_TOPIC)
      if (this.components.nextId !== undefined) this.pubsub.unsubscribe(CLUSTER_NEXTID_TOPIC)
    } catch {
      // Already stopped with the node.
    }
    for (const set of this.waiters.values()) for (const waiter of set) waiter.resolve()
    this.waiters.clear()
  }
}

/**
 * Rendezvous hashing: peers ordered by sha256(name ‖ peer id), so every hub with the same view picks
 * the same replicas for a name, and losing a hub moves only the names it held.
 */
export function rankHubs (name: string, peers: string[]): string[] {
  const encoder = new TextEncoder()
  const score = (peer: string): string => base64url.baseEncode(sha256(encoder.encode(`${name} ${peer}`)))
  return peers.map(peer => ({ peer, score: score(peer) })).sort((a, b) => a.score < b.score ? -1 : a.score > b.score ? 1 : 0).map(p => p.peer)
}

function decodeRecordMessage (data: Uint8Array): RecordMessage | undefined {
  if (data.byteLength > MAX_CLUSTER_MESSAGE_BYTES) return undefined
  let value: unknown
  try {
    value = decode(data, { rejectDuplicateMapKeys: true, strict: true })
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const { name, record, root, replicas } = value as Record<string, unknown>
  if (typeof name !== 'string' || !(record instanceof Uint8Array) || record.byteLength > MAX_RECORD_BYTES) return undefined
  if (root !== undefined && (!(root instanceof Uint8Array) || root.byteLength > MAX_INLINE_ROOT_BYTES)) return undefined
  const { blocks, binding } = value as Record<string, unknown>
  if (binding !== undefined && (root === undefined || !Array.isArray(binding) || binding.length !== 2 || !binding.every(b => b instanceof Uint8Array && b.byteLength <= MAX_INLINE_BINDING_BYTES))) return undefined
  if (blocks !== undefined && (!Array.isArray(blocks) || blocks.length > 64 || !blocks.every(b => b instanceof Uint8Array) ||
    (blocks as Uint8Array[]).reduce((n, b) => n + b.byteLength, 0) > MAX_INLINE_BLOCKS_BYTES)) return undefined
  if (!Array.isArray(replicas) || replicas.length > MAX_NAMED_REPLICAS || !replicas.every(r => typeof r === 'string' && r.length < 128)) return undefined
  let canonical: string
  try {
    canonical = parseName(name)
  } catch {
    return undefined
  }
  return { name: canonical, record, root: root as Uint8Array | undefined, binding: binding as Uint8Array[] | undefined, blocks: blocks as Uint8Array[] | undefined, replicas: replicas as string[] }
}

function decodeHeld (data: Uint8Array): { name: string, sequence: bigint } | undefined {
  if (data.byteLength > 512) return undefined
  try {
    const value = decode(data, { strict: true, rejectDuplicateMapKeys: true }) as { name?: unknown, sequence?: unknown }
    if (typeof value?.name !== 'string' || (typeof value.sequence !== 'number' && typeof value.sequence !== 'bigint')) return undefined
    return { name: parseName(value.name), sequence: BigInt(value.sequence) }
  } catch {
    return undefined
  }
}

/** A gossiped chain: `{ blocks: [dag-cbor bytes, oldest first] }`, each block's CID computed here. */
async function decodeChain (data: Uint8Array): Promise<Block[] | undefined> {
  if (data.byteLength > MAX_GOSSIP_CHAIN_BYTES + 4 * 1024) return undefined
  let value: unknown
  try {
    value = decode(data, { strict: true, rejectDuplicateMapKeys: true })
  } catch {
    return undefined
  }
  const list = (value as { blocks?: unknown } | null)?.blocks
  if (!Array.isArray(list) || list.length === 0 || !list.every(b => b instanceof Uint8Array)) return undefined
  return Promise.all((list as Uint8Array[]).map(async bytes => ({ cid: CID.createV1(dagCbor.code, await sha256Hasher.digest(bytes)), bytes })))
}
