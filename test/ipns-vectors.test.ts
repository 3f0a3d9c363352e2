/**
 * The IPNS record codec against public data: every gateway-conformance fixture gets the verdict the
 * IPNS record spec gives it (see test/fixtures/ipns/README.md), and records made by `createRecord`
 * pass the plain `ipns` validator and resolve through a stock @helia/ipns on another node.
 */
import { startHeliaPair, stopHeliaPair } from './helpers/helia-pair.js'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { ipns } from '@helia/ipns'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rawBlock } from '../src/store/blocks.js'
import { heliaStore } from '../src/store/helia.js'
import {
  DEFAULT_RECORD_LIFETIME_MS, MAX_RECORD_BYTES, canonicalName, createRecord, nameOfKey, nameToMultihash, readRecord, validateRecord
} from '../src/store/record.js'
import type { HeliaNode } from '../src/store/helia-node.js'
import type { MultihashDigest } from 'multiformats/hashes/interface'

const FIXTURES = fileURLToPath(new URL('./fixtures/ipns/', import.meta.url))

/** The IPNS record spec's verdicts on its six test vectors (ipfs/specs, "IPNS Record", Test Vectors). */
const SPEC_VERDICTS: Record<string, boolean> = {
  v1: false,
  'v1-v2': true,
  'v1-v2-broken-v1-value': false,
  'v1-v2-broken-signature-v2': false,
  'v1-v2-broken-signature-v1': true,
  v2: true
}

interface Fixture {
  file: string
  name: string
  valid: boolean
  bytes: Uint8Array
}

function loadFixtures (): Fixture[] {
  return readdirSync(FIXTURES).filter(file => file.endsWith('.ipns-record')).map((file) => {
    const match = /(k51[0-9a-z]+|12D3Koo[1-9A-HJ-NP-Za-km-z]+|Qm[1-9A-HJ-NP-Za-km-z]{44})(?:_([a-z0-9-]+))?\.ipns-record$/.exec(file)
    if (match === null || match[1] === undefined) throw new Error(`no IPNS name in fixture ${file}`)
    let valid = true
    if (file.startsWith('fixtures_ipns_records_')) {
      const verdict = SPEC_VERDICTS[match[2] ?? '']
      if (verdict === undefined) throw new Error(`no spec verdict for ${file}`)
      valid = verdict
    }
    return { file, name: match[1], valid, bytes: new Uint8Array(readFileSync(FIXTURES + file)) }
  })
}

const fixtures = loadFixtures()

describe('IPNS fixtures (ipfs/gateway-conformance)', () => {
  it('has all sixteen fixtures, including the six spec vectors and the 12D3Koo…/Qm… names', () => {
    expect(fixtures).toHaveLength(16)
    expect(fixtures.filter(f => f.file.startsWith('fixtures_ipns_records_'))).toHaveLength(6)
    expect(fixtures.some(f => f.name.startsWith('12D3Koo'))).toBe(true)
    expect(fixtures.some(f => f.name.startsWith('Qm'))).toBe(true)
  })

  for (const fixture of fixtures) {
    it(`${fixture.valid ? 'accepts' : 'rejects'} ${fixture.file}`, async () => {
      if (fixture.valid) {
        const info = await validateRecord(fixture.name, fixture.bytes)
        expect(info.value).toMatch(/^\/ipfs\//)
        expect(info.cid).toBeDefined()
        expect(info.validUntilMs).toBeGreaterThan(Date.now())
        // The same verdict under the canonical k51… form of the name.
        await expect(validateRecord(canonicalName(fixture.name), fixture.bytes)).resolves.toEqual(info)
      } else {
        await expect(validateRecord(fixture.name, fixture.bytes)).rejects.toMatchObject({ name: 'InvalidRecordError' })
      }
    })
  }

  it('agrees with the plain ipns validator on every fixture', async () => {
    for (const fixture of fixtures) {
      const key = multihashToIPNSRoutingKey(nameToMultihash(fixture.name) as MultihashDigest<0x00 | 0x12>)
      const plain = await ipnsValidator(key, fixture.bytes).then(() => true, () => false)
      expect(plain, fixture.file).toBe(fixture.valid)
    }
  })

  it('rejects a valid record presented under another name', async () => {
    const [a, b] = fixtures.filter(f => f.valid && f.name.startsWith('k51'))
    if (a === undefined || b === undefined) throw new Error('need two valid k51 fixtures')
    await expect(validateRecord(b.name, a.bytes)).rejects.toMatchObject({ name: 'InvalidRecordError' })
  })

  it('rejects the RSA record under the Ed25519 name and the reverse', async () => {
    const rsa = fixtures.find(f => f.name.startsWith('Qm'))
    const ed = fixtures.find(f => f.name.startsWith('12D3Koo'))
    if (rsa === undefined || ed === undefined) throw new Error('missing fixtures')
    await expect(validateRecord(ed.name, rsa.bytes)).rejects.toMatchObject({ name: 'InvalidRecordError' })
    await expect(validateRecord(rsa.name, ed.bytes)).rejects.toMatchObject({ name: 'InvalidRecordError' })
  })

  it('rejects truncated, bit-flipped and oversized bytes', async () => {
    const fixture = fixtures.find(f => f.valid && f.file.endsWith('_v1-v2.ipns-record'))
    if (fixture === undefined) throw new Error('missing v1-v2 vector')
    await expect(validateRecord(fixture.name, fixture.bytes.subarray(0, fixture.bytes.length - 10))).rejects.toMatchObject({ name: 'InvalidRecordError' })
    // Any change to the signed CBOR data or to the V2 signature (V1 fields are not trusted anyway).
    const record = unmarshalIPNSRecord(fixture.bytes)
    for (const field of ['data', 'signatureV2'] as const) {
      for (const index of [0, 10, record[field].byteLength - 1]) {
        const changed = record[field].slice()
        changed[index] = (changed[index] ?? 0) ^ 0x01
        const bytes = marshalIPNSRecord({ ...record, [field]: changed })
        await expect(validateRecord(fixture.name, bytes), `${field}[${index}]`).rejects.toMatchObject({ name: 'InvalidRecordError' })
      }
    }
    await expect(validateRecord(fixture.name, new Uint8Array(MAX_RECORD_BYTES + 1))).rejects.toMatchObject({ name: 'TooLargeError' })
    await expect(validateRecord(fixture.name, new Uint8Array(0))).rejects.toMatchObject({ name: 'InvalidRecordError' })
  })

  it('rejects names that are not IPNS names', async () => {
    const fixture = fixtures[0]
    if (fixture === undefined) throw new Error('no fixtures')
    for (const name of ['', 'k51', 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi', 'not a name']) {
      await expect(validateRecord(name, fixture.bytes), name).rejects.toMatchObject({ name: 'InvalidInputError' })
    }
  })
})

describe('records made by createRecord', () => {
  const seed = new Uint8Array(32).fill(7)

  it('pass the plain ipns validator and carry what was asked', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', seed)
    const name = nameOfKey(key)
    expect(name).toMatch(/^k51/)
    const { cid } = await rawBlock(new TextEncoder().encode('root'))
    const before = Date.now()
    const bytes = await createRecord(key, cid, 42)
    await ipnsValidator(multihashToIPNSRoutingKey(key.publicKey.toMultihash()), bytes)

    const record = unmarshalIPNSRecord(bytes)
    expect(record.value).toBe(`/ipfs/${cid.toString()}`)
    expect(record.sequence).toBe(42n)
    // V2-only (the spec makes V1 optional): no V1 signature, and the V2 one is there.
    expect((record as { signatureV1?: Uint8Array }).signatureV1).toBeUndefined()
    expect(record.signatureV2.byteLength).toBe(64)
    expect(bytes.byteLength).toBeLessThanOrEqual(MAX_RECORD_BYTES)
    // Round-trips byte for byte through the plain codec.
    expect(marshalIPNSRecord(record)).toEqual(bytes)

    const info = readRecord(bytes)
    expect(info.cid?.equals(cid)).toBe(true)
    expect(info.validUntilMs).toBeGreaterThanOrEqual(before + DEFAULT_RECORD_LIFETIME_MS - 1000)
    await expect(validateRecord(name, bytes)).resolves.toMatchObject({ sequence: 42n })
  })

  it('are refused once expired', async () => {
    const key = await generateKeyPairFromSeed('Ed25519', seed)
    const { cid } = await rawBlock(new TextEncoder().encode('root'))
    const bytes = await createRecord(key, cid, 1, { lifetimeMs: 1 })
    await new Promise(resolve => setTimeout(resolve, 5))
    await expect(validateRecord(nameOfKey(key), bytes)).rejects.toMatchObject({ name: 'InvalidRecordError' })
  })

  describe('on two helia nodes', () => {
    let node1: HeliaNode
    let node2: HeliaNode

    beforeAll(async () => { [node1, node2] = await startHeliaPair() })
    afterAll(async () => { await stopHeliaPair(node2, node1) })

    it('resolve through a stock @helia/ipns on the other node', async () => {
      const key = await generateKeyPairFromSeed('Ed25519', seed.map((b, i) => b ^ i))
      const name = nameOfKey(key)
      const { cid } = await rawBlock(new TextEncoder().encode('resolved elsewhere'))
      await heliaStore(node1).putRecord(name, await createRecord(key, cid, 3), { signal: AbortSignal.timeout(5000) })

      const results = []
      for await (const result of ipns(node2).resolve(key.publicKey.toCID(), { nocache: true, signal: AbortSignal.timeout(5000) })) {
        results.push(result)
      }
      expect(results.map(r => r.value)).toEqual([`/ipfs/${cid.toString()}`])
      // @helia/ipns hands back a V2-only record as its protobuf fields: the sequence is in `data`.
      expect(unmarshalIPNSRecord(marshalIPNSRecord(results[0]?.record as unknown as Parameters<typeof marshalIPNSRecord>[0])).sequence).toBe(3n)
    })
  })
})
