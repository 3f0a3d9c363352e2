/**
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03) for the envelope, in two interchangeable
 * implementations that give the same bytes. Where the runtime has a native ChaCha20-Poly1305
 * (Node's OpenSSL, reached through `process.getBuiltinModule`, which no bundler follows, so browser
 * bundles never see `node:crypto`), a message is sealed there under the HChaCha20 subkey (§2.3:
 * subkey = HChaCha20(key, nonce[0..16]), nonce' = 0x00000000 ‖ nonce[16..24]). Everywhere else
 * (browsers: WebCrypto has no ChaCha) @noble/ciphers does the whole construction. Opening a large
 * space decrypts thousands of buckets: natively that costs several times less than in JavaScript.
 */
import { hchacha, xchacha20poly1305 } from '@noble/ciphers/chacha.js'

export interface XChaCha {
  /** Encrypts `plaintext` into `out` (plaintext length + 16: ciphertext ‖ tag). */
  sealInto(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array, out: Uint8Array): void
  /** Decrypts `sealed` (ciphertext ‖ tag); throws when the tag does not authenticate it. */
  open(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Uint8Array
}

const TAG_BYTES = 16

/** @noble/ciphers: pure JavaScript, runs everywhere. */
export const nobleXChaCha: XChaCha = {
  sealInto (key, nonce, ad, plaintext, out) {
    xchacha20poly1305(key, nonce, ad).encrypt(plaintext, out)
  },
  open (key, nonce, ad, sealed) {
    return xchacha20poly1305(key, nonce, ad).decrypt(sealed)
  }
}

interface NodeCipher {
  setAAD(ad: Uint8Array, options: { plaintextLength: number }): void
  update(data: Uint8Array): Uint8Array
  final(): Uint8Array
  getAuthTag(): Uint8Array
  setAuthTag(tag: Uint8Array): void
}
interface NodeCrypto {
  getCiphers(): string[]
  createCipheriv(algorithm: 'chacha20-poly1305', key: Uint8Array, iv: Uint8Array, options: { authTagLength: number }): NodeCipher
  createDecipheriv(algorithm: 'chacha20-poly1305', key: Uint8Array, iv: Uint8Array, options: { authTagLength: number }): NodeCipher
}

/** "expand 32-byte k" (RFC 8439 §2.3), the ChaCha constants HChaCha20 starts from. */
const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574])

function nodeCrypto (): NodeCrypto | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
  try {
    const crypto = proc?.getBuiltinModule?.('node:crypto') as NodeCrypto | undefined
    return crypto?.getCiphers().includes('chacha20-poly1305') === true ? crypto : undefined
  } catch {
    return undefined
  }
}

/**
 * Words and bytes of one HChaCha20 call, kept for the next: a typed array of 64 bytes or fewer lives
 * in V8's heap until something asks for its `.buffer` (a view, a `slice().buffer`), and then gets an
 * ArrayBuffer and a backing store of its own, ~1 µs each. Allocating them per call made the subkey
 * cost 3.4 µs; reading the bytes into kept words, 0.3 µs (one-off measurement). Synchronous and
 * never re-entered, so one set serves every call.
 */
const keyWords = new Uint32Array(8)
const nonceWords = new Uint32Array(4)
const subkeyWords = new Uint32Array(8)
/** The subkey as bytes: a view of `subkeyWords` in the platform's order, so callers check it is little-endian. */
const subkeyBytes = new Uint8Array(subkeyWords.buffer)
const ivBytes = new Uint8Array(12)

/** The little-endian word at `at` of `bytes`. */
function wordAt (bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) | (bytes[at + 1] as number) << 8 | (bytes[at + 2] as number) << 16 | (bytes[at + 3] as number) << 24) >>> 0
}

/**
 * HChaCha20(key, nonce[0..16]) (§2.2), into bytes that the next call overwrites: the cipher copies
 * its key when it is created, straight after.
 */
function subkey (key: Uint8Array, nonce: Uint8Array): Uint8Array {
  for (let i = 0; i < 8; i++) keyWords[i] = wordAt(key, 4 * i)
  for (let i = 0; i < 4; i++) nonceWords[i] = wordAt(nonce, 4 * i)
  hchacha(SIGMA, keyWords, nonceWords, subkeyWords)
  // the space's key is not left in memory that outlives the call; the subkey is wiped by `wipeSubkey`
  keyWords.fill(0)
  return subkeyBytes
}

/** Zeroes the subkey once the cipher has copied it. */
function wipeSubkey (): void {
  subkeyWords.fill(0)
}

/** 0x00000000 ‖ nonce[16..24], into bytes that the next call overwrites (as `subkey`). */
function iv (nonce: Uint8Array): Uint8Array {
  for (let i = 0; i < 8; i++) ivBytes[4 + i] = nonce[16 + i] as number
  return ivBytes
}

function nativeWith (crypto: NodeCrypto): XChaCha {
  return {
    sealInto (key, nonce, ad, plaintext, out) {
      if (key.length !== 32 || nonce.length !== 24 || out.length !== plaintext.length + TAG_BYTES) throw new RangeError(`xchacha: key 32, nonce 24 and output plaintext + 16 bytes expected, got key ${key.length}, nonce ${nonce.length}, output ${out.length} for plaintext ${plaintext.length}`)
      let cipher: NodeCipher
      try {
        cipher = crypto.createCipheriv('chacha20-poly1305', subkey(key, nonce), iv(nonce), { authTagLength: TAG_BYTES })
      } finally {
        wipeSubkey()
      }
      cipher.setAAD(ad, { plaintextLength: plaintext.length })
      const body = cipher.update(plaintext)
      const rest = cipher.final()
      out.set(body, 0)
      out.set(rest, body.length)
      out.set(cipher.getAuthTag(), plaintext.length)
    },
    open (key, nonce, ad, sealed) {
      if (key.length !== 32 || nonce.length !== 24) throw new RangeError(`xchacha: key 32 and nonce 24 bytes expected, got key ${key.length}, nonce ${nonce.length}`)
      if (sealed.length < TAG_BYTES) throw new Error('xchacha: sealed message shorter than its tag')
      const length = sealed.length - TAG_BYTES
      let decipher: NodeCipher
      try {
        decipher = crypto.createDecipheriv('chacha20-poly1305', subkey(key, nonce), iv(nonce), { authTagLength: TAG_BYTES })
      } finally {
        wipeSubkey()
      }
      decipher.setAAD(ad, { plaintextLength: length })
      decipher.setAuthTag(sealed.subarray(length))
      const body = decipher.update(sealed.subarray(0, length))
      // final() throws unless the tag authenticates everything: nothing is returned before that.
      const rest = decipher.final()
      return rest.length === 0 ? body : Uint8Array.from([...body, ...rest])
    }
  }
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
const node = littleEndian ? nodeCrypto() : undefined

/** The native implementation, when this runtime has one. */
export const nativeXChaCha: XChaCha | undefined = node === undefined ? undefined : nativeWith(node)

/** The implementation the envelope uses: native where available, else @noble/ciphers. */
export const xchacha: XChaCha = nativeXChaCha ?? nobleXChaCha
