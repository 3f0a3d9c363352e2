import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import * as secp from '@noble/secp256k1'
import vectors from './fixtures/vectors.json' with { type: 'json' }
import { bytesToHex, fromBase64, hexToBytes, utf8 } from '../src/crypto/bytes.js'
import { hashPersonalMessage, normalizeSignature, recoverPersonalSigner, addressOfPublicKey } from '../src/crypto/eip191.js'
import { associatedData, open, padmeLength, randomNonce, seal } from '../src/crypto/envelope.js'
import { nativeXChaCha, nobleXChaCha, xchacha } from '../src/crypto/xchacha.js'
import type { XChaCha } from '../src/crypto/xchacha.js'
import { deriveKeys, KEY_LABELS, OPEN_MESSAGE } from '../src/crypto/keys.js'
import { account, highS, KEY_A, KEY_B, vZeroOne } from './helpers/signers.js'

describe('HKDF-SHA256 (RFC 5869 vectors)', () => {
  for (const c of vectors.hkdf.cases) {
    it(`Test Case ${c.name}`, () => {
      const okm = hkdf(sha256, hexToBytes(c.ikm), hexToBytes(c.salt), hexToBytes(c.info), c.length)
      expect(bytesToHex(okm)).toBe(c.okm)
    })
  }
})

describe('XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03 A.3.1)', () => {
  const v = vectors.xchacha20poly1305
  it('encrypts to the vector and decrypts back', () => {
    const cipher = xchacha20poly1305(hexToBytes(v.key), hexToBytes(v.nonce), hexToBytes(v.aad))
    const sealed = cipher.encrypt(hexToBytes(v.plaintext))
    expect(bytesToHex(sealed)).toBe(v.ciphertext + v.tag)
    const again = xchacha20poly1305(hexToBytes(v.key), hexToBytes(v.nonce), hexToBytes(v.aad))
    expect(bytesToHex(again.decrypt(sealed))).toBe(v.plaintext)
  })
})

describe('the envelope\'s XChaCha20-Poly1305: native (Node) and @noble/ciphers give the same bytes', () => {
  const v = vectors.xchacha20poly1305
  const impls: Array<[string, XChaCha]> = [['noble', nobleXChaCha], ['native', nativeXChaCha as XChaCha]]
  it('Node has the native one, and the envelope uses it', () => {
    expect(nativeXChaCha).toBeDefined()
    expect(xchacha).toBe(nativeXChaCha)
  })
  it.each(impls)('%s: seals to the draft vector (A.3.1) and opens it', (_name, impl) => {
    const plaintext = hexToBytes(v.plaintext)
    const out = new Uint8Array(plaintext.length + 16)
    impl.sealInto(hexToBytes(v.key), hexToBytes(v.nonce), hexToBytes(v.aad), plaintext, out)
    expect(bytesToHex(out)).toBe(v.ciphertext + v.tag)
    expect(bytesToHex(impl.open(hexToBytes(v.key), hexToBytes(v.nonce), hexToBytes(v.aad), out))).toBe(v.plaintext)
  })
  it('each opens what the other sealed, byte for byte the same; a flipped bit fails both', () => {
    const bytes = (n: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: n, maxLength: n })
    fc.assert(fc.property(bytes(32), bytes(24), fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 3000 }), fc.nat(), (key, nonce, ad, plaintext, at) => {
      const a = new Uint8Array(plaintext.length + 16)
      const b = new Uint8Array(plaintext.length + 16)
      nobleXChaCha.sealInto(key, nonce, ad, plaintext, a)
      ;(nativeXChaCha as XChaCha).sealInto(key, nonce, ad, plaintext, b)
      expect(bytesToHex(b)).toBe(bytesToHex(a))
      expect(bytesToHex(nobleXChaCha.open(key, nonce, ad, b))).toBe(bytesToHex(plaintext))
      expect(bytesToHex((nativeXChaCha as XChaCha).open(key, nonce, ad, a))).toBe(bytesToHex(plaintext))
      a[at % a.length]! ^= 1
      for (const [, impl] of impls) expect(() => impl.open(key, nonce, ad, a)).toThrow()
      const otherAd = Uint8Array.from([...ad, 0])
      for (const [, impl] of impls) expect(() => impl.open(key, nonce, otherAd, b)).toThrow()
    }), { numRuns: 150 })
  })
})

describe('EIP-191 personal_sign', () => {
  const [viemCase, kvCase] = vectors.eip191.cases as [any, any]
  it("hashes viem's `hello world` vector and recovers its signer", () => {
    expect(bytesToHex(hashPersonalMessage(viemCase.message))).toBe(viemCase.hash)
    const recovered = recoverPersonalSigner(viemCase.message, '0x' + viemCase.signature)
    expect(recovered.address).toBe(viemCase.address)
  })
  it("recovers kv_server's `Test123!` vector (v = 0) to its key", () => {
    const sig = fromBase64(kvCase.signatureBase64)
    expect(sig[64]).toBe(0)
    const expected = addressOfPublicKey(secp.getPublicKey(hexToBytes(kvCase.privateKey), false))
    expect(recoverPersonalSigner(kvCase.message, sig).address).toBe(expected)
  })
})

describe('signature normalisation', () => {
  const acct = account(KEY_A)
  it('gives the same keys for every encoding of one signature', async () => {
    const sig = hexToBytes(await acct.signMessage({ message: OPEN_MESSAGE }))
    const encodings = [sig, vZeroOne(sig), highS(sig), vZeroOne(highS(sig))]
    const keys = encodings.map(e => deriveKeys(normalizeSignature(OPEN_MESSAGE, e, acct.address)))
    for (const k of keys) {
      expect(bytesToHex(k.ipnsSeed)).toBe(bytesToHex(keys[0]!.ipnsSeed))
      expect(bytesToHex(k.dataKey)).toBe(bytesToHex(keys[0]!.dataKey))
      expect(bytesToHex(k.bucketKey)).toBe(bytesToHex(keys[0]!.bucketKey))
    }
    // and the purposes never share a key
    expect(new Set([keys[0]!.ipnsSeed, keys[0]!.dataKey, keys[0]!.bucketKey].map(bytesToHex)).size).toBe(3)
    expect(new Set(Object.values(KEY_LABELS)).size).toBe(3)
  })
  it('refuses a signature by another address', async () => {
    const other = await account(KEY_B).signMessage({ message: OPEN_MESSAGE })
    expect(() => normalizeSignature(OPEN_MESSAGE, other, acct.address)).toThrow(expect.objectContaining({ name: 'SignerMismatchError' }))
  })
  it.each([
    ['64 bytes (EIP-2098 compact)', (s: Uint8Array) => s.subarray(0, 64)],
    ['empty (Safe)', () => new Uint8Array(0)],
    ['a passkey-sized blob', () => new Uint8Array(300).fill(1)],
    ['v = 29', (s: Uint8Array) => { const o = s.slice(); o[64] = 29; return o }],
    ['r = 0', (s: Uint8Array) => { const o = s.slice(); o.fill(0, 0, 32); return o }],
    ['s = n', (s: Uint8Array) => { const o = s.slice(); o.set(hexToBytes(secp.Point.CURVE().n.toString(16)), 32); return o }]
  ])('refuses a malformed signature: %s', async (_name, mangle) => {
    const sig = hexToBytes(await acct.signMessage({ message: OPEN_MESSAGE }))
    expect(() => normalizeSignature(OPEN_MESSAGE, mangle(sig), acct.address)).toThrow(expect.objectContaining({ name: 'InvalidSignatureError' }))
  })
  it('refuses non-hex input with a named error', () => {
    expect(() => normalizeSignature(OPEN_MESSAGE, '0xzz', acct.address)).toThrow(expect.objectContaining({ name: 'InvalidInputError' }))
  })
})

describe('the open message', () => {
  it('is fixed: first line, warning and version line', () => {
    const lines = OPEN_MESSAGE.split('\n')
    expect(lines[0]).toBe('Open UserSpace')
    expect(OPEN_MESSAGE).toMatch(/trust/)
    expect(lines.at(-1)).toBe('Version: 1')
    // Its exact bytes are part of the format: a change here changes every user's space.
    expect(bytesToHex(sha256(utf8(OPEN_MESSAGE)))).toBe('fcce50ff8f938c5362d32433029486b95785c82195297ddd7888edddcfb56fc9')
  })
})

describe('envelope', () => {
  const key = new Uint8Array(32).fill(7)
  const name = 'k51qzi5uqu5djtge0ytuuxft6nytrerco6wntnw00rdwln2gfimils7jf1wmmb'
  const ad = associatedData(2, name, 'bucket 0/1')
  it('round-trips and pads (Padmé)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 5000 }), (plaintext) => {
      const sealed = seal(key, ad, plaintext)
      expect(sealed[0]).toBe(1)
      expect(sealed.length).toBe(1 + 24 + padmeLength(4 + plaintext.length) + 16)
      expect(bytesToHex(open(key, ad, sealed))).toBe(bytesToHex(plaintext))
    }), { numRuns: 200 })
  })
  it('fails with IntegrityError when any byte is flipped', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (plaintext, at, bit) => {
      const sealed = seal(key, ad, plaintext)
      sealed[at % sealed.length]! ^= bit
      expect(() => open(key, ad, sealed)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    }), { numRuns: 300 })
  })
  it('binds the ciphertext to the space name, the format version and the place (associated data)', () => {
    const sealed = seal(key, ad, utf8('secret'))
    expect(() => open(key, associatedData(2, name.replace('k51', 'k52'), 'bucket 0/1'), sealed)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(() => open(key, associatedData(1, name, 'bucket 0/1'), sealed)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(() => open(key, associatedData(2, name, 'bucket 1/2'), sealed)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(() => open(key, associatedData(2, name), sealed)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(() => open(new Uint8Array(32).fill(8), ad, sealed)).toThrow(expect.objectContaining({ name: 'IntegrityError' }))
    expect(bytesToHex(associatedData(1, name))).not.toBe(bytesToHex(associatedData(2, name)))
    expect(new TextDecoder().decode(ad)).toBe(`userspace/v2\u0000${name}\u0000bucket 0/1`)
  })
  it('pads to what padTo says, never below the plaintext', () => {
    const sealed = seal(key, ad, utf8('x'), undefined, n => Math.max(512, padmeLength(n)))
    expect(sealed.length).toBe(1 + 24 + 512 + 16)
    expect(new TextDecoder().decode(open(key, ad, sealed))).toBe('x')
    expect(() => seal(key, ad, utf8('xyz'), undefined, () => 2)).toThrow(RangeError)
  })
  it('uses a fresh random nonce each time', () => {
    const a = seal(key, ad, utf8('same'))
    const b = seal(key, ad, utf8('same'))
    expect(bytesToHex(a.subarray(1, 25))).not.toBe(bytesToHex(b.subarray(1, 25)))
  })
  it('never hands out the same nonce twice, across refills of the pool nonces are drawn from', () => {
    const seen = new Set<string>()
    // 1 000 nonces: several refills of the 128-nonce pool
    for (let i = 0; i < 1000; i++) {
      const nonce = randomNonce()
      expect(nonce.length).toBe(24)
      seen.add(bytesToHex(nonce))
      // a caller that changes its nonce changes nothing for the next one
      nonce.fill(0)
    }
    expect(seen.size).toBe(1000)
    const envelopes = Array.from({ length: 300 }, () => bytesToHex(seal(key, ad, utf8('same')).subarray(1, 25)))
    expect(new Set(envelopes).size).toBe(300)
    for (const n of envelopes) expect(seen.has(n)).toBe(false)
  })
  it('checks its arguments', () => {
    expect(() => seal(new Uint8Array(16), ad, utf8('x'))).toThrow('"key" expected Uint8Array of length 32, got length=16')
    expect(() => seal(key, ad, utf8('x'), new Uint8Array(12))).toThrow('"nonce" expected Uint8Array of length 24, got length=12')
  })
})

describe('fast Ed25519 signing', () => {
  it('signs exactly as @libp2p/crypto does (Ed25519 is deterministic)', async () => {
    const { generateKeyPairFromSeed } = await import('@libp2p/crypto/keys')
    const { withFastSigning } = await import('../src/crypto/ed25519.js')
    const seed = new Uint8Array(32).fill(9)
    const key = await generateKeyPairFromSeed('Ed25519', seed)
    const fast = await withFastSigning(key, seed)
    const message = utf8('ipns-signature:data')
    expect(bytesToHex(await fast.sign(message))).toBe(bytesToHex(await key.sign(message)))
    expect(fast.publicKey.equals(key.publicKey)).toBe(true)
  })

  it('the native (Node) signer signs exactly as @libp2p/crypto does, and its signatures verify', async () => {
    const { generateKeyPairFromSeed } = await import('@libp2p/crypto/keys')
    const { nativeSigner } = await import('../src/crypto/ed25519.js')
    await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 400 }), async (seed, message) => {
      const key = await generateKeyPairFromSeed('Ed25519', seed)
      const sign = nativeSigner(seed)
      expect(sign).toBeDefined()
      const signature = await sign!(message)
      expect(bytesToHex(signature)).toBe(bytesToHex(await key.sign(message)))
      expect(await key.publicKey.verify(message, signature)).toBe(true)
    }), { numRuns: 40 })
  })
})
