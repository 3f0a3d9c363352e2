/**
 * Bitswap messages written by hand (message.proto of @helia/bitswap), field by field, for tests and
 * benchmarks that send a node what no encoder would, or more of it than a peer should.
 */
import { encode as encodeVarint } from 'uint8-varint'

export const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}
/** A length-delimited protobuf field (wire type 2). */
export const field = (n: number, bytes: Uint8Array): Uint8Array => concat(encodeVarint(n * 8 + 2), encodeVarint(bytes.byteLength), bytes)
/** A message behind its length prefix, as bitswap streams carry them. */
export const framed = (body: Uint8Array): Uint8Array => concat(encodeVarint(body.byteLength), body)

/** A CIDv1 (raw, sha2-256) whose digest is `seed` written into zeros: a block nobody has. */
export function cid (seed: number): Uint8Array {
  const bytes = concat(new Uint8Array([0x01, 0x55, 0x12, 0x20]), new Uint8Array(32))
  new DataView(bytes.buffer).setUint32(32, seed)
  return bytes
}
/** A wantlist entry: want-have (wantType 1, field 4) with sendDontHave (field 5), priority 1 (field 2). */
export const want = (seed: number): Uint8Array => field(1, concat(field(1, cid(seed)), new Uint8Array([0x10, 0x01, 0x20, 0x01, 0x28, 0x01])))
/** The wantlist field (1) of a message, with `full` (field 2) set. */
export const wantlist = (entries: Uint8Array[]): Uint8Array => field(1, concat(...entries, new Uint8Array([0x10, 0x01])))
/** A block of bitswap 1.1+ (payload, field 3): prefix (1) and data (2). */
export const payload = (data: Uint8Array): Uint8Array => field(3, concat(field(1, new Uint8Array([0x01, 0x55, 0x12, 0x20])), field(2, data)))
/** A block of bitswap 1.0 (blocks, field 2). */
export const rawBlock = (data: Uint8Array): Uint8Array => field(2, data)
/** A block presence (field 4): cid (1), type DONT_HAVE (2 = 1). */
export const presence = (seed: number): Uint8Array => field(4, concat(field(1, cid(seed)), new Uint8Array([0x10, 0x01])))
export const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i)
