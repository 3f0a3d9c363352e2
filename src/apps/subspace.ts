/**
 * Opening one app namespace: a normal space (same format, sync, merge and durability) whose keys
 * come from a grant or from the owner's apps root instead of a wallet signature. Its owner binding
 * is signed by the namespace's derived secp256k1 owner key, so no wallet prompt is needed per app.
 *
 * With write keys it is a full Space. With read keys only (a read grant) it can read and follow
 * changes; every write is refused with ReadOnlyGrantError — and could not be published anyway,
 * because the IPNS key is not in the grant.
 */
import { generateKeyPairFromSeed, publicKeyFromMultihash } from '@libp2p/crypto/keys'
import { withFastSigning } from '../crypto/ed25519.js'
import { IntegrityError, NotFoundError, ReadOnlyGrantError, throwIfAborted } from '../errors.js'
import { DefaultSpace } from '../space/default-space.js'
import { privateKeySigner } from '../space/local-signer.js'
import { toWallet } from '../space/signer.js'
import { defaultState, memoryState } from '../space/state.js'
import { canonicalName, nameOfKey, nameToMultihash } from '../store/record.js'
import type { SpaceOptions, Space, SectionApi } from '../space/types.js'
import type { WalletAdapter } from '../space/signer.js'
import type { Store } from '../store/interface.js'
import type { PrivateKey } from '@libp2p/interface'

/** The keys of one namespace at one epoch: write keys (`ipnsSeed`, `ownerKey`) or read keys only. */
export interface NamespaceKeys {
  dataKey: Uint8Array
  bucketKey: Uint8Array
  ipnsSeed?: Uint8Array
  /** The IPNS signing key as a non-extractable WebCrypto key, instead of `ipnsSeed`. */
  ipnsSigningKey?: CryptoKey
  ownerKey?: Uint8Array
}

export type NamespaceOpenOptions = Omit<SpaceOptions, 'signer' | 'store' | 'hub' | 'helia' | 'checkDeterministic'>

/** The IPNS name and owner address that write keys derive (what a directory records). */
export async function namespaceIdentity (keys: Required<Pick<NamespaceKeys, 'ipnsSeed' | 'ownerKey'>>): Promise<{ name: string, address: string }> {
  const ipnsKey = await generateKeyPairFromSeed('Ed25519', keys.ipnsSeed)
  return { name: nameOfKey(ipnsKey), address: privateKeySigner(keys.ownerKey).address }
}

/**
 * Opens the namespace `expected.name` (owned by `expected.address`) with `keys`. Write keys that do
 * not derive that name and address are refused (IntegrityError): a grant cannot point an app at a
 * space its keys do not open. Read keys need a published namespace (NotFoundError otherwise).
 */
export async function openNamespace (store: Store, keys: NamespaceKeys, expected: { name: string, address: string }, options: NamespaceOpenOptions): Promise<Space> {
  const name = canonicalName(expected.name)
  const writable = (keys.ipnsSeed !== undefined || keys.ipnsSigningKey !== undefined) && keys.ownerKey !== undefined
  let ipnsKey: PrivateKey
  let wallet: WalletAdapter
  let address: string
  if (writable) {
    const seed = keys.ipnsSeed
    ipnsKey = seed !== undefined
      ? await withFastSigning(await generateKeyPairFromSeed('Ed25519', seed), seed)
      : await cryptoKeyIpnsKey(name, keys.ipnsSigningKey as CryptoKey)
    const signer = privateKeySigner(keys.ownerKey as Uint8Array)
    wallet = toWallet(signer)
    address = signer.address
    if (nameOfKey(ipnsKey) !== name || address !== expected.address) {
      throw new IntegrityError(`the keys for ${name} derive ${nameOfKey(ipnsKey)} owned by ${address}, not ${name} owned by ${expected.address}`)
    }
  } else {
    ipnsKey = readOnlyKey(name)
    address = expected.address
    wallet = {
      getAddress: async () => address,
      signMessage: async () => { throw new ReadOnlyGrantError(`${name} is open read-only: this grant cannot sign for it`) }
    }
  }
  throwIfAborted(options.signal)
  const spaceOptions = { ...options, store } as SpaceOptions
  const state = options.state ?? (store.ephemeral === true ? memoryState() : await defaultState())
  const space = new DefaultSpace(store, wallet, address, name, { ipnsKey, dataKey: keys.dataKey, bucketKey: keys.bucketKey }, state, spaceOptions)
  const record = await store.getRecord(name, { nocache: options.offlineFirst !== true, signal: options.signal })
  if (record === undefined && !writable) throw new NotFoundError(`the namespace ${name} has not been published yet`)
  await space.init(record, spaceOptions)
  if (options.offlineFirst === true) space.refresh().catch((err: Error) => { space.emit('error', err) })
  return writable ? space : readOnly(space)
}

/**
 * The IPNS key of `name` held as a non-extractable WebCrypto key. It cannot be compared with the
 * name directly, so it signs a random challenge that the name's public key must verify.
 */
async function cryptoKeyIpnsKey (name: string, key: CryptoKey): Promise<PrivateKey> {
  const publicKey = publicKeyFromMultihash(nameToMultihash(name) as Parameters<typeof publicKeyFromMultihash>[0])
  const sign = async (data: Uint8Array | { subarray: () => Uint8Array }): Promise<Uint8Array> => {
    const bytes = data instanceof Uint8Array ? data : data.subarray()
    return new Uint8Array(await crypto.subtle.sign('Ed25519', key, bytes as Uint8Array<ArrayBuffer>))
  }
  const challenge = crypto.getRandomValues(new Uint8Array(32))
  let valid = false
  try { valid = await publicKey.verify(challenge, await sign(challenge)) } catch { valid = false }
  if (!valid) throw new IntegrityError(`the signing key kept for ${name} is not that name's key`)
  return {
    type: 'Ed25519',
    publicKey,
    get raw (): Uint8Array { throw new IntegrityError('the key is non-extractable') },
    equals: () => false,
    sign
  } as unknown as PrivateKey
}

/** A stand-in for the IPNS key of a namespace open read-only: it names the space and cannot sign. */
function readOnlyKey (name: string): PrivateKey {
  const publicKey = publicKeyFromMultihash(nameToMultihash(name) as Parameters<typeof publicKeyFromMultihash>[0])
  const refuse = (): never => { throw new ReadOnlyGrantError(`${name} is open read-only: this grant holds no key to publish it`) }
  return {
    type: publicKey.type,
    publicKey,
    get raw (): Uint8Array { return refuse() },
    equals: () => false,
    sign: refuse
  } as unknown as PrivateKey
}

const WRITES = new Set(['set', 'remove', 'patch'])

/** The space with every write refused before it touches the device's state. */
function readOnly (space: Space): Space {
  const refuse = async (): Promise<never> => { throw new ReadOnlyGrantError(`${space.name} is open read-only: the grant lets this app read it, not write it`) }
  const section = (api: SectionApi): SectionApi => new Proxy(api, {
    get: (target, prop, receiver) => typeof prop === 'string' && WRITES.has(prop) ? refuse : Reflect.get(target, prop, receiver)
  })
  const pub = section(space.public)
  return new Proxy(space, {
    get (target, prop) {
      if (typeof prop === 'string' && (WRITES.has(prop) || prop === 'grant' || prop === 'revoke')) return refuse
      if (prop === 'public') return pub
      const value = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}
