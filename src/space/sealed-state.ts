/**
 * A device's pending writes sealed before they reach a state that outlives the process (a journal
 * file, IndexedDB): keys and values are encrypted there, as they are in the space's blocks, so a
 * backup or a disk read by someone else shows stamps, device ids and padded sizes only.
 *
 * A pending entry is stored as `{ section, key: "k:" + id, stamp, device, json: "u1:" + sealed }`:
 * - `id` is HMAC-SHA256(id key, section ‖ 0 ‖ key), 16 bytes in base64url: one write per section
 *   and key still has one place in the state, so the state's merge rules work unchanged;
 * - `sealed` is an XChaCha20-Poly1305 envelope (base64) of the JSON text `[key, value text or null]`,
 *   padded, its associated data naming the space. Its nonce is synthetic (as in SIV): an HMAC, under
 *   a key of its own, of the space's name, the section, stamp and device and the plaintext. The
 *   same write always seals to the same text (only equal writes show as equal), so a write is
 *   removed from the state by its exact sealed form, as the state's rule asks; and on opening, the
 *   nonce is computed again, so a stamp, device or section changed on disk (a stamp raised to beat
 *   later writes, an old entry put back) is refused like a changed ciphertext.
 * An entry that fails to open is removed from the state (nothing can ever open it, and it would hold
 * its key's place) and reported. A JSON text never starts with `u`, so an entry written in plain
 * text by an earlier version is told apart: it is read as it is and sealed in its place.
 */
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { base64url } from 'multiformats/bases/base64'
import { associatedData, open, seal } from '../crypto/envelope.js'
import { derivePendingKeys } from '../crypto/keys.js'
import { concatBytes, fromBase64, fromUtf8, toBase64, utf8 } from '../crypto/bytes.js'
import type { PendingEntry, SpaceState, SpaceStateStore } from './state.js'

const SEALED_PREFIX = 'u1:'
const ID_PREFIX = 'k:'
const ID_BYTES = 16
const NONCE_BYTES = 24
/** The version of this sealing, in its associated data: it changes only with the sealing, not with the storage format. */
const PENDING_SEAL_VERSION = 1

/**
 * `inner` with the pending writes of a space sealed under keys derived from its `dataKey` (and
 * bound to its name); `onError` hears of entries that could not be opened (and were removed).
 */
export function sealedState (inner: SpaceStateStore, dataKey: Uint8Array, onError: (err: Error) => void): SpaceStateStore {
  const keys = derivePendingKeys(dataKey)
  const adOf = (space: string): Uint8Array => associatedData(PENDING_SEAL_VERSION, space, 'pending')
  const idOf = (section: string, key: string): string => ID_PREFIX + base64url.baseEncode(hmac(sha256, keys.id, utf8(`${section}\u0000${key}`)).subarray(0, ID_BYTES))
  // JSON texts hold no raw NUL, the name and device ids none either: the fields cannot run into each other
  const nonceOf = (space: string, e: PendingEntry, plaintext: Uint8Array): Uint8Array =>
    hmac(sha256, keys.nonce, concatBytes(utf8(`${space}\u0000${e.section}\u0000${e.stamp}\u0000${e.device}\u0000`), plaintext)).subarray(0, NONCE_BYTES)

  const sealEntry = (space: string) => (e: PendingEntry): PendingEntry => {
    const plaintext = utf8(JSON.stringify([e.key, e.json ?? null]))
    const envelope = seal(keys.seal, adOf(space), plaintext, nonceOf(space, e, plaintext))
    return { section: e.section, key: idOf(e.section, e.key), stamp: e.stamp, device: e.device, json: SEALED_PREFIX + toBase64(envelope) }
  }

  /** The write `e` holds: itself when it is in plain text; throws when it does not open. */
  const openEntry = (space: string, e: PendingEntry): PendingEntry => {
    if (e.json?.startsWith(SEALED_PREFIX) !== true) return e
    const envelope = fromBase64(e.json.slice(SEALED_PREFIX.length))
    const plaintext = open(keys.seal, adOf(space), envelope)
    // the envelope's nonce (after its version byte) is the one this write makes: nothing it says was changed
    const nonce = nonceOf(space, e, plaintext)
    for (let i = 0; i < NONCE_BYTES; i++) if (envelope[1 + i] !== nonce[i]) throw new Error('its stamp, device or section was changed')
    const value: unknown = JSON.parse(fromUtf8(plaintext))
    if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== 'string' || (value[1] !== null && typeof value[1] !== 'string')) throw new Error('not a [key, value] pair')
    const [key, json] = value as [string, string | null]
    // the id binds the entry to its key: an entry moved to another key's place is refused
    if (idOf(e.section, key) !== e.key) throw new Error('it sits in another key\'s place')
    const out: PendingEntry = { section: e.section, key, stamp: e.stamp, device: e.device }
    if (json !== null) out.json = json
    return out
  }

  return {
    durable: inner.durable,
    async get (space): Promise<SpaceState | undefined> {
      const state = await inner.get(space)
      if (state === undefined) return undefined
      const pending: PendingEntry[] = []
      const plain: PendingEntry[] = []
      const failed: PendingEntry[] = []
      for (const e of state.pending) {
        try {
          const opened = openEntry(space, e)
          pending.push(opened)
          if (opened === e) plain.push(e)
        } catch (err) {
          failed.push(e)
          onError(new Error(`a pending write of ${space} in the device state could not be opened and was removed: ${(err as Error).message}`, { cause: err }))
        }
      }
      // what an earlier version wrote in plain text is sealed in its place; what never opens goes
      if (plain.length > 0) await inner.addPending(space, plain.map(sealEntry(space)))
      if (plain.length > 0 || failed.length > 0) await inner.removePending(space, [...plain, ...failed])
      return { ...state, pending }
    },
    async put (space, seen) { await inner.put(space, seen) },
    async addPending (space, entries) { await inner.addPending(space, entries.map(sealEntry(space))) },
    async removePending (space, entries) { await inner.removePending(space, entries.map(sealEntry(space))) }
  }
}
