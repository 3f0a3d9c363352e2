/**
 * A device's pending writes sealed before they reach a state that outlives the process (a journal
 * file, IndexedDB): keys and values are encrypted there, as they are in the space's blocks, so a
 * backup or a disk read by someone else shows sizes, stamps and device ids only.
 *
 * A pending entry is stored as `{ section, key: "k:" + id, stamp, device, json: "u1:" + sealed }`:
 * - `id` is HMAC-SHA256(id key, section ‖ 0 ‖ key), 16 bytes in base64url: one write per section
 *   and key still has one place in the state, so the state's merge rules work unchanged;
 * - `sealed` is an XChaCha20-Poly1305 envelope (base64) of the JSON text `[key, value text or null]`,
 *   padded, bound to the space's name, under a nonce taken from an HMAC of everything it seals: the
 *   same write always seals to the same text (only equal writes show as equal), so a write is removed
 *   from the state by its exact sealed form, as the state's rule asks.
 * A JSON text never starts with `u`, so an entry written in plain text by an earlier version is
 * told apart and read as it is; removals also remove that plain form, so it leaves the state with
 * its write. An entry that fails to open (changed on disk, another space's) is left out and reported.
 */
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { associatedData, open, seal } from '../crypto/envelope.js'
import { FORMAT_VERSION, derivePendingKeys } from '../crypto/keys.js'
import { concatBytes, fromBase64, fromUtf8, toBase64, utf8 } from '../crypto/bytes.js'
import type { PendingEntry, SpaceState, SpaceStateStore } from './state.js'

const SEALED_PREFIX = 'u1:'
const ID_PREFIX = 'k:'
const ID_BYTES = 16
const NONCE_BYTES = 24

/**
 * `inner` with the pending writes of a space sealed under keys derived from its `dataKey` (and
 * bound to its name); `onError` hears of entries that could not be opened.
 */
export function sealedState (inner: SpaceStateStore, dataKey: Uint8Array, onError: (err: Error) => void): SpaceStateStore {
  const keys = derivePendingKeys(dataKey)
  const adOf = (space: string): Uint8Array => associatedData(FORMAT_VERSION, space, 'pending')
  const idOf = (section: string, key: string): string => ID_PREFIX + base64url(hmac(sha256, keys.id, utf8(`${section}\u0000${key}`)).subarray(0, ID_BYTES))

  const sealEntry = (space: string) => (e: PendingEntry): PendingEntry => {
    const plaintext = utf8(JSON.stringify([e.key, e.json ?? null]))
    const nonce = hmac(sha256, keys.id, concatBytes(utf8(`nonce\u0000${e.section}\u0000${e.stamp}\u0000${e.device}\u0000`), plaintext)).subarray(0, NONCE_BYTES)
    return { section: e.section, key: idOf(e.section, e.key), stamp: e.stamp, device: e.device, json: SEALED_PREFIX + toBase64(seal(keys.seal, adOf(space), plaintext, nonce)) }
  }

  const openEntry = (space: string, e: PendingEntry): PendingEntry | undefined => {
    if (e.json?.startsWith(SEALED_PREFIX) !== true) return e
    try {
      const value: unknown = JSON.parse(fromUtf8(open(keys.seal, adOf(space), fromBase64(e.json.slice(SEALED_PREFIX.length)))))
      if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== 'string' || (value[1] !== null && typeof value[1] !== 'string')) throw new Error('not a [key, value] pair')
      const [key, json] = value as [string, string | null]
      // the id binds the entry to its section and key: an entry moved to another place is refused
      if (idOf(e.section, key) !== e.key) throw new Error('sealed for another key or section')
      const out: PendingEntry = { section: e.section, key, stamp: e.stamp, device: e.device }
      if (json !== null) out.json = json
      return out
    } catch (err) {
      onError(new Error(`a pending write of ${space} in the device state could not be opened and is left out: ${(err as Error).message}`, { cause: err }))
      return undefined
    }
  }

  return {
    durable: inner.durable,
    async get (space): Promise<SpaceState | undefined> {
      const state = await inner.get(space)
      if (state === undefined) return undefined
      const pending: PendingEntry[] = []
      for (const e of state.pending) {
        const opened = openEntry(space, e)
        if (opened !== undefined) pending.push(opened)
      }
      return { ...state, pending }
    },
    async put (space, seen) { await inner.put(space, seen) },
    async addPending (space, entries) { await inner.addPending(space, entries.map(sealEntry(space))) },
    // the plain form too: an entry an earlier version wrote leaves with its write
    async removePending (space, entries) { await inner.removePending(space, [...entries.map(sealEntry(space)), ...entries]) }
  }
}

function base64url (bytes: Uint8Array): string {
  return toBase64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}
