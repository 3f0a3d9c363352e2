/**
 * Grants: what an app receives instead of the user's master signature. A grant is plain JSON (it
 * crosses `postMessage` and can be kept in storage) holding, for each namespace in its scope, the
 * namespace's name, epoch and owner address and its keys — write keys (IPNS seed and owner key, plus
 * the read keys) for the app's own namespace and any approved foreign one, read keys (data and bucket
 * keys) for the namespaces it may read. It is signed by the master IPNS key over everything but the
 * keys, so an app (or anyone it shows the grant to) can check which space issued it, for which app
 * id, origin and scope; the signature reveals no secret.
 */
import { publicKeyFromMultihash } from '@libp2p/crypto/keys'
import { fromBase64, toBase64, utf8 } from '../crypto/bytes.js'
import { checksumAddress } from '../crypto/eip191.js'
import { IntegrityError, InvalidInputError, describeValue } from '../errors.js'
import { canonicalName, nameToMultihash } from '../store/record.js'
import { checkNamespace, checkOrigin, MAX_GRANT_NAMESPACES } from './scope.js'
import { namespaceIdentity } from './subspace.js'
import type { NamespaceKeys } from './subspace.js'

export const GRANT_TYPE = 'userspace-grant'
export const GRANT_VERSION = 1

export interface NamespaceGrant {
  namespace: string
  /** The key epoch: it moves on when the owner revokes an app that held this namespace's keys. */
  epoch: number
  /** The namespace's IPNS name (`k51…`). */
  name: string
  /** The address its owner binding names (derived from the master keys, not the wallet's). */
  address: string
  access: 'read' | 'write'
  /** base64 */
  dataKey: string
  /** base64 */
  bucketKey: string
  /** base64; write access only */
  ipnsSeed?: string
  /** base64; write access only */
  ownerKey?: string
}

export interface Grant {
  type: typeof GRANT_TYPE
  version: typeof GRANT_VERSION
  /** The app id (its own namespace). */
  app: string
  /** The web origin the grant was issued to (as the browser reported it), or `null` for a native app. */
  origin: string | null
  /** The hub the granting page used, when known. */
  hub?: string
  /** The wallet address that owns the master space. */
  owner: string
  /** The master space's IPNS name: its key signs the grant. */
  master: string
  /** ms since the epoch */
  issuedAt: number
  namespaces: NamespaceGrant[]
  /** base64 Ed25519 signature by the master IPNS key over `grantStatement(grant)` */
  signature: string
}

/** The bytes the master key signs: every field but the keys and the signature, in a fixed order. */
export function grantStatement (grant: Omit<Grant, 'signature'>): Uint8Array {
  return utf8(JSON.stringify({
    type: grant.type,
    version: grant.version,
    app: grant.app,
    origin: grant.origin,
    owner: grant.owner,
    master: grant.master,
    issuedAt: grant.issuedAt,
    namespaces: grant.namespaces.map(n => ({ namespace: n.namespace, epoch: n.epoch, name: n.name, address: n.address, access: n.access }))
  }))
}

export function encodeKeys (keys: NamespaceKeys, access: 'read' | 'write'): Pick<NamespaceGrant, 'dataKey' | 'bucketKey' | 'ipnsSeed' | 'ownerKey'> {
  const out: Pick<NamespaceGrant, 'dataKey' | 'bucketKey' | 'ipnsSeed' | 'ownerKey'> = { dataKey: toBase64(keys.dataKey), bucketKey: toBase64(keys.bucketKey) }
  if (access === 'write') {
    if (keys.ipnsSeed === undefined || keys.ownerKey === undefined) throw new InvalidInputError('write access needs the IPNS seed and the owner key')
    out.ipnsSeed = toBase64(keys.ipnsSeed)
    out.ownerKey = toBase64(keys.ownerKey)
  }
  return out
}

/** The keys of one namespace in a grant; `signingKey` stands in for an IPNS seed kept non-extractable. */
export function decodeKeys (n: NamespaceGrant, signingKey?: CryptoKey): NamespaceKeys {
  const key = (value: unknown, what: string): Uint8Array => {
    const bytes = fromBase64(value as string, what)
    if (bytes.length !== 32) throw new InvalidInputError(`"${what}" expected 32 bytes, got ${bytes.length}`)
    return bytes
  }
  const keys: NamespaceKeys = { dataKey: key(n.dataKey, `${n.namespace}.dataKey`), bucketKey: key(n.bucketKey, `${n.namespace}.bucketKey`) }
  if (n.access === 'write') {
    if (signingKey !== undefined && n.ipnsSeed === undefined) keys.ipnsSigningKey = signingKey
    else keys.ipnsSeed = key(n.ipnsSeed, `${n.namespace}.ipnsSeed`)
    keys.ownerKey = key(n.ownerKey, `${n.namespace}.ownerKey`)
  }
  return keys
}

/**
 * Checks a grant's shape (a grant may arrive from another window or from storage) and returns it as a
 * typed Grant, or throws InvalidInputError naming the first wrong field. A JSON string is parsed first.
 */
export function parseGrant (value: unknown, signingKeys: Record<string, CryptoKey> = {}): Grant {
  if (typeof value === 'string') {
    try { value = JSON.parse(value) } catch { throw new InvalidInputError('"grant" expected a grant object or its JSON, got a string that is not JSON') }
  }
  const g = value as Record<string, unknown>
  if (typeof g !== 'object' || g === null || g.type !== GRANT_TYPE) throw new InvalidInputError(`"grant" expected an object of type "${GRANT_TYPE}", got ${typeof g === 'object' && g !== null ? `type ${JSON.stringify(String(g.type)).slice(0, 60)}` : describeValue(g)}`)
  if (g.version !== GRANT_VERSION) throw new InvalidInputError(`"grant.version" expected ${GRANT_VERSION}, got ${String(g.version)}`)
  const app = checkNamespace(g.app, 'grant.app')
  if (g.origin !== null) checkOrigin(g.origin)
  if (g.hub !== undefined && typeof g.hub !== 'string') throw new InvalidInputError(`"grant.hub" expected a URL, got ${describeValue(g.hub)}`)
  if (typeof g.owner !== 'string') throw new InvalidInputError(`"grant.owner" expected an address, got ${describeValue(g.owner)}`)
  checksumAddress(g.owner)
  if (typeof g.master !== 'string') throw new InvalidInputError(`"grant.master" expected an IPNS name, got ${describeValue(g.master)}`)
  canonicalName(g.master)
  if (!Number.isSafeInteger(g.issuedAt)) throw new InvalidInputError(`"grant.issuedAt" expected ms since the epoch, got ${describeValue(g.issuedAt)}`)
  if (typeof g.signature !== 'string') throw new InvalidInputError(`"grant.signature" expected base64, got ${describeValue(g.signature)}`)
  if (!Array.isArray(g.namespaces) || g.namespaces.length === 0 || g.namespaces.length > MAX_GRANT_NAMESPACES) {
    throw new InvalidInputError(`"grant.namespaces" expected 1 to ${MAX_GRANT_NAMESPACES} namespaces`)
  }
  const seen = new Set<string>()
  for (const n of g.namespaces as Array<Record<string, unknown>>) {
    if (typeof n !== 'object' || n === null) throw new InvalidInputError('"grant.namespaces" expected objects')
    const ns = checkNamespace(n.namespace, 'grant.namespaces[].namespace')
    if (seen.has(ns)) throw new InvalidInputError(`"grant.namespaces" names ${ns} twice`)
    seen.add(ns)
    if (!Number.isSafeInteger(n.epoch) || (n.epoch as number) < 0) throw new InvalidInputError(`"${ns}.epoch" expected a non-negative integer`)
    if (typeof n.name !== 'string') throw new InvalidInputError(`"${ns}.name" expected an IPNS name`)
    canonicalName(n.name)
    if (typeof n.address !== 'string') throw new InvalidInputError(`"${ns}.address" expected an address`)
    checksumAddress(n.address)
    if (n.access !== 'read' && n.access !== 'write') throw new InvalidInputError(`"${ns}.access" expected "read" or "write"`)
    decodeKeys(n as unknown as NamespaceGrant, Object.hasOwn(signingKeys, ns) ? signingKeys[ns] : undefined)
  }
  if (!seen.has(app)) throw new InvalidInputError(`the grant for ${app} holds no keys for its own namespace`)
  return g as unknown as Grant
}

/**
 * Checks a grant completely: its shape, the master key's signature over it, and that its write keys
 * derive the names and addresses it states. Returns the grant. An app calls this on what it received;
 * `openSpace({ grant })` does too.
 */
export async function verifyGrant (value: unknown, signingKeys: Record<string, CryptoKey> = {}): Promise<Grant> {
  const grant = parseGrant(value, signingKeys)
  const publicKey = publicKeyFromMultihash(nameToMultihash(grant.master) as Parameters<typeof publicKeyFromMultihash>[0])
  const { signature, ...body } = grant
  let valid = false
  try {
    valid = await publicKey.verify(grantStatement(body), fromBase64(signature, 'grant.signature'))
  } catch {
    valid = false
  }
  if (!valid) throw new IntegrityError(`the grant for ${grant.app} is not signed by the key of ${grant.master}`)
  for (const n of grant.namespaces) {
    // A key kept non-extractable is checked when the namespace opens (it signs, the name verifies).
    if (n.access !== 'write' || n.ipnsSeed === undefined) continue
    const id = await namespaceIdentity(decodeKeys(n) as Required<Pick<NamespaceKeys, 'ipnsSeed' | 'ownerKey'>>)
    if (id.name !== canonicalName(n.name) || id.address !== checksumAddress(n.address)) {
      throw new IntegrityError(`the grant's keys for ${n.namespace} derive ${id.name} owned by ${id.address}, not ${n.name} owned by ${n.address}`)
    }
  }
  return grant
}
