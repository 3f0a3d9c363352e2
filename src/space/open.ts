/**
 * Opening a space: pick the store, ask the wallet for the open signature, derive the keys, refuse a
 * wallet that does not sign deterministically, then load the newest version and this device's state.
 */
import { InvalidInputError, NonDeterministicSignerError, throwIfAborted } from '../errors.js'
import { nameOfKey, validateRecord } from '../store/record.js'
import { DefaultSpace } from './default-space.js'
import { toWallet } from './signer.js'
import { defaultState, memoryState } from './state.js'
import { keysFromWallet } from './wallet-keys.js'
import { parseGrant } from '../apps/grant.js'
import type { Space, SpaceOptions } from './types.js'
import type { Store } from '../store/interface.js'
import type { GrantedSpaceOptions } from '../apps/open-granted.js'

/**
 * Opens the space of the wallet behind `signer`: one signature prompt, plus one more the first time
 * the space is created (the owner binding).
 */
export async function openSpace (options: SpaceOptions | GrantedSpaceOptions): Promise<Space> {
  // Scoped app access: an app opens its namespace with a grant, never with the master signature.
  if ('grant' in options && options.grant !== undefined) {
    const { openGranted } = await import('../apps/open-granted.js')
    const given = options.grant
    const hub = options.hub ?? (typeof given === 'string' ? parseGrant(given).hub : 'signingKeys' in given ? given.grant.hub : given.hub)
    return openGranted(options, await resolveStore({ store: options.store, hub, helia: options.helia, logger: options.logger }))
  }
  options = options as SpaceOptions
  const store = await resolveStore(options)
  const wallet = toWallet(options.signer)
  const address = await wallet.getAddress()
  throwIfAborted(options.signal)
  options.onProgress?.({ type: 'space:open:signature' })
  const keys = await keysFromWallet(wallet, address)
  const name = nameOfKey(keys.ipnsKey)

  // The address lookup and the record are asked for together (one round trip, not two); nothing
  // is read from the record, and nothing opened, until the lookup has cleared this signature.
  // When the lookup fails or refuses the signature, the record request is called off.
  const recordAbort = new AbortController()
  const recordSignal = options.signal === undefined ? recordAbort.signal : AbortSignal.any([options.signal, recordAbort.signal])
  const recordRead = (async () => await store.getRecord(name, { nocache: options.offlineFirst !== true, signal: recordSignal }))()
  recordRead.catch(() => {})
  let bound: string | undefined
  try {
    bound = await store.lookupAddress?.(address, { signal: options.signal, expected: name })
  } catch (err) {
    recordAbort.abort()
    throw err
  }
  if (bound !== undefined && bound !== name && options.rebind !== true) {
    recordAbort.abort()
    throw new NonDeterministicSignerError(`the wallet ${address} already owns the space ${bound}, but this signature derives ${name}: either the wallet does not sign deterministically (some hardware, MPC and smart-contract wallets), so it cannot open its UserSpace, or the address was bound to ${bound} by a binding signed elsewhere (open with \`rebind: true\` to bind it to ${name} again)`)
  }

  const state = options.state ?? (store.ephemeral === true ? memoryState() : await defaultState())
  const space = new DefaultSpace(store, wallet, address, name, keys, state, options)
  const record = await recordRead
  options.onProgress?.({ type: 'space:open:resolved', detail: { name, sequence: record === undefined ? null : Number((await validateRecord(name, record, { allowExpired: true, nowMs: options.now })).sequence) } })
  await space.init(record, options)
  if (options.offlineFirst === true) space.refresh().catch((err: Error) => { space.emit('error', err) })
  return space
}

async function resolveStore (options: Pick<SpaceOptions, 'store' | 'hub' | 'helia' | 'logger'>): Promise<Store> {
  if (options.store !== undefined) return options.store
  if (typeof options.hub === 'string') {
    const { hubStore } = await import('../store/hub.js')
    return hubStore(options.hub, { logger: options.logger })
  }
  if (options.helia !== undefined) {
    const { heliaStore } = await import('../store/helia.js')
    return heliaStore(options.helia as Parameters<typeof heliaStore>[0])
  }
  throw new InvalidInputError('openSpace expected one of "store", "hub" or "helia", got none')
}
