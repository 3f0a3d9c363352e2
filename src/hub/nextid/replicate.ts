/**
 * Next.ID chains across peered hubs: a hub adopts an avatar's chain heard from a peer when it is
 * the chain that every hub would pick. Each link signs the previous link's signature, so an
 * avatar's patches form one line; two hubs that accept different patches on the same head fork it.
 * The rule, applied by every hub to the same two chains with the same outcome:
 *
 * 1. a chain that extends the other (its head's history holds the other's head) wins;
 * 2. otherwise the longer chain wins;
 * 3. at equal length, the chain whose first link after the common prefix has the lower CID
 *    (string order) wins.
 *
 * The losing branch's patches are dropped everywhere (their writers see them missing and write
 * again on the winning head). Every link the hub does not already hold is checked before anything
 * is written (CID, avatar, uuid, "nextid" identity, the signature over the previous signature),
 * and the switch is one atomic batch: the losing branch's keys out, the winner's in.
 */
import { hexToBytes } from '../../crypto/bytes.js'
import { IntegrityError, InvalidInputError, TooLargeError } from '../../errors.js'
import { decodeLink, verifyLinkSignature, type KvLink } from './chain.js'
import { mergePatch } from './json.js'
import { commitBatch, getCid, keys, mutexFor, type KvEntry, type NextIdStores } from './store.js'
import { DEFAULT_MAX_CHAIN_BYTES, DEFAULT_MAX_CHAIN_LINKS, chainPuts, exportAvatarChain, sameKey, type ImportLimits } from './transfer.js'
import type { Block } from '../../store/interface.js'
import type { Key } from 'interface-datastore'

/** What adopting a heard chain did. */
export type Adopted = 'same' | 'extended' | 'kept' | 'replaced'

interface Item { block: Block, link: KvLink }

/** True when chain `a` wins over chain `b` by the rule above (both oldest first, neither extending the other). */
export function wins (a: Item[], b: Item[]): boolean {
  if (a.length !== b.length) return a.length > b.length
  let i = 0
  while (i < a.length && (a[i] as Item).block.cid.equals((b[i] as Item).block.cid)) i++
  if (i === a.length) return false
  return (a[i] as Item).block.cid.toString() < (b[i] as Item).block.cid.toString()
}

/**
 * Adopts the chain ending at the last of `blocks` (oldest first, the whole chain) when the rule
 * says so. Throws IntegrityError, InvalidSignatureError or InvalidInputError for a chain that does
 * not check out, TooLargeError over the per-avatar caps; nothing is written then.
 */
export async function adoptChain (options: NextIdStores & ImportLimits, blocks: Block[]): Promise<Adopted> {
  const maxLinks = options.maxChainLinks ?? DEFAULT_MAX_CHAIN_LINKS
  const maxBytes = options.maxChainBytes ?? DEFAULT_MAX_CHAIN_BYTES
  if (blocks.length === 0) throw new InvalidInputError('an empty chain')
  if (blocks.length > maxLinks) throw new TooLargeError(`the chain has ${blocks.length} links, more than this hub keeps per avatar (${maxLinks})`)
  if (blocks.reduce((n, b) => n + b.bytes.length, 0) > maxBytes) throw new TooLargeError(`the chain is over the ${maxBytes}-byte limit this hub keeps per avatar`)
  const remote: Item[] = []
  for (const block of blocks) remote.push({ block, link: await decodeLink(block) })
  const avatar = (remote[0] as Item).link.avatar
  const publicKey = hexToBytes(avatar)
  const uuids = new Set<string>()
  remote.forEach(({ block, link }, i) => {
    const expected = i === 0 ? null : (remote[i - 1] as Item).block.cid
    if (!(link.previous === null ? expected === null : expected !== null && link.previous.equals(expected))) throw new IntegrityError(`block ${block.cid.toString()} does not follow the link before it`)
    if (link.avatar !== avatar) throw new IntegrityError(`block ${block.cid.toString()} belongs to another avatar than the chain`)
    if (uuids.has(link.uuid)) throw new IntegrityError(`uuid ${link.uuid} is used twice in the chain`)
    uuids.add(link.uuid)
    if (link.platform === 'nextid' && !sameKey(link.identity, publicKey)) throw new IntegrityError(`block ${block.cid.toString()} has platform "nextid" with another identity than its avatar`)
  })
  const head = (remote[remote.length - 1] as Item).block.cid

  return mutexFor(options.datastore).run([`avatar:${avatar}`], async () => {
    const localHead = await getCid(options.datastore, keys.head(avatar))
    if (localHead?.equals(head) === true) return 'same'
    const local: Item[] = []
    if (localHead !== null) {
      for (const block of (await exportAvatarChain(options, publicKey)).blocks) local.push({ block, link: await decodeLink(block) })
    }
    let shared = 0
    while (shared < local.length && shared < remote.length && (local[shared] as Item).block.cid.equals((remote[shared] as Item).block.cid)) shared++
    // The heard chain is (part of) ours, or loses to it.
    if (shared === remote.length) return 'kept'
    if (shared < local.length && !wins(remote, local)) return 'kept'
    // Links this hub already holds were checked when it took them; the rest are checked now.
    for (let i = shared; i < remote.length; i++) {
      const { block, link } = remote[i] as Item
      verifyLinkSignature(link, i === 0 ? null : (remote[i - 1] as Item).link.signature, block.cid)
    }
    const deletes: Key[] = []
    const kept = new Set(remote.map(({ block }) => block.cid.toString()))
    const localEntries = new Map<string, { platform: string, identity: string }>()
    for (const { block, link } of local) {
      localEntries.set(JSON.stringify([link.platform, link.identity]), link)
      deletes.push(keys.uuid(avatar, link.uuid))
      if (!kept.has(block.cid.toString())) deletes.push(keys.block(block.cid), keys.acceptedAt(block.cid))
    }
    for (const { platform, identity } of localEntries.values()) deletes.push(keys.kv(avatar, platform, identity), keys.identity(platform, identity, avatar))
    const entries = new Map<string, KvEntry>()
    for (const { link } of remote) {
      const slot = JSON.stringify([link.platform, link.identity])
      entries.set(slot, { platform: link.platform, identity: link.identity, content: mergePatch(entries.get(slot)?.content, link.patch) })
    }
    await commitBatch(options.datastore, chainPuts(avatar, remote, shared, entries, head), options.syncWrites ?? true, options.maxStoredBytes, deletes)
    return shared === local.length ? 'extended' : 'replaced'
  })
}
