/**
 * @packageDocumentation
 *
 * UserSpace keeps a user's data in a key-value map that the user owns: encrypted on the client,
 * stored as IPFS blocks, and published under an IPNS name that only the user's wallet signature can
 * update. Any IPFS node, gateway or UserSpace hub can carry it; none of them can read it.
 *
 * This is the browser-safe entry: it never loads Node-only code. The hub lives in `userspace/hub`.
 * On Node 20 it installs a `Promise.withResolvers` polyfill (./polyfill.ts); elsewhere that is a no-op.
 *
 * @example Open a space through a hub and use it
 *
 * ```ts
 * import { openSpace } from 'userspace'
 *
 * const space = await openSpace({ signer: window.ethereum, hub: 'http://127.0.0.1:8787' })
 * await space.set('io.example.app', { theme: 'dark', volume: 3 })
 * await space.get('io.example.app')          // { theme: 'dark', volume: 3 }
 * await space.patch({ 'io.example.app': { volume: null } }) // RFC 7396: removes volume
 * await space.remove('io.example.app')
 * await space.getAll()                       // {}
 * await space.close()
 * ```
 *
 * @example Any `{ address, signMessage }` is a signer: viem accounts, wallet clients, ethers signers
 *
 * ```ts
 * import { privateKeyToAccount } from 'viem/accounts'
 * import { openSpace, memoryStore } from 'userspace'
 *
 * const space = await openSpace({ signer: privateKeyToAccount(key), store: memoryStore() })
 * ```
 *
 * @example A public profile anyone can read, by address, with no signature
 *
 * ```ts
 * await space.public.set('name', 'Alice')
 * const profile = await readPublic({ address: '0x…', hub: 'http://127.0.0.1:8787' })
 * profile.data.name                          // 'Alice'
 * ```
 *
 * @example Live changes from the user's other devices
 *
 * ```ts
 * space.subscribe(({ keys }) => console.log('changed elsewhere:', keys))
 * ```
 *
 * Apps keep their data under their own top-level key (their package or domain name), so that apps
 * sharing a space never overwrite each other.
 *
 * @example Scoped access: a dapp gets a grant for its own namespace, never the master signature
 *
 * ```ts
 * import { connect, keepGrant, loadGrant, openSpace } from 'userspace'
 *
 * button.onclick = async () => {             // popups open only from a user gesture
 *   const grant = await connect({ app: 'io.example.app', read: ['profile'], connectUrl: 'https://hub.example/connect' })
 *   const kept = await keepGrant(grant)       // IndexedDB, the IPNS signing key non-extractable
 *   const mine = await openSpace({ grant: kept })                     // read and write
 *   const profile = await openSpace({ grant: kept, namespace: 'profile' }) // read only
 * }
 * const again = await loadGrant('io.example.app') // on the next visit
 * ```
 *
 * @example A wallet grants, lists and revokes itself
 *
 * ```ts
 * const grant = await space.grant('io.example.app', { origin: 'https://app.example', read: ['profile'] })
 * await space.apps()                   // [{ app, origin, read, write, issuedAt, epochs, current }]
 * await space.revoke('io.example.app') // new keys for its namespaces; it reads nothing written afterwards
 * ```
 */
import './polyfill.js'

export { openSpace, DEFAULT_MAX_PUBLIC_BYTES, DEFAULT_MAX_SPACE_BYTES, DEFAULT_MAX_VALUE_BYTES } from './space/space.js'
export type {
  Space, SpaceOptions, SectionApi, SpaceEvents, ChangeEvent, RollbackEvent, ConflictEvent, PendingEvent, ExpiredEvent,
  SpaceVersion, VersionInfo, CloseResult, ProgressEvent
} from './space/space.js'
export { memoryState, fileState, idbState } from './space/state.js'
export type { SpaceStateStore, SeenVersion, SpaceState, PendingEntry, FileStateOptions } from './space/state.js'
export { readPublic } from './space/read-public.js'
export { privateKeySigner } from './space/local-signer.js'
export type { LocalSigner } from './space/local-signer.js'
export type { ReadPublicOptions, PublicProfile } from './space/read-public.js'
export type { Signer, Eip1193Provider, MessageSigner } from './space/signer.js'
export type { Json } from './space/json.js'
export { memoryStore } from './store/memory.js'
export { hubStore } from './store/hub.js'
export { failoverStore } from './store/failover.js'
export type { FailoverStoreOptions } from './store/failover.js'
export type { HubStoreOptions } from './store/hub.js'
export { layeredStore } from './store/layered.js'
export { idbStore, type IdbStore, type IdbStoreOptions } from './store/idb.js'
export type { MemoryStore } from './store/memory.js'
export type { Store, Block, AbortOptions, GetRecordOptions, PublishOptions, RecordListener } from './store/interface.js'
/** The optional logger component (libp2p's shape: `logger.forComponent(name)` → `log`, `log.error`, `log.trace`). */
export { lineLogger, noopLogger } from './logger.js'
export type { ComponentLogger, Logger, LineLoggerOptions } from './logger.js'
export { OPEN_MESSAGE, FORMAT_VERSION } from './crypto/keys.js'
/** Storage format 2: the one Trustless Gateway request for a version's current state, and where a profile sits under a name. */
export { currentVersionRequest } from './space/root.js'
export { CURRENT_VERSION_FIELD, PUBLIC_PROFILE_PATH } from './protocol.js'
export {
  UserSpaceError, InvalidInputError, TooLargeError, InvalidSignatureError, SignerMismatchError, SignerError,
  NonDeterministicSignerError, IntegrityError, NotFoundError, InvalidRecordError, ConflictError, EquivocationError,
  FormatError, StoreError, UntrustedHubError, DataDirectoryLockedError, UnsupportedMediaTypeError, NotAcceptableError,
  RateLimitError, UnavailableError, InsufficientStorageError, ClosedError, AbortedError, UnpublishedWritesError,
  PreconditionFailedError, NotImplementedError,
  InvalidScopeError, ReadOnlyGrantError, ApprovalRequiredError, OriginMismatchError
} from './errors.js'
// Scoped app access: grants, the connect page's client, namespace rules.
export { verifyGrant, parseGrant } from './apps/grant.js'
export type { Grant, NamespaceGrant } from './apps/grant.js'
export type { GrantOptions, AppInfo } from './apps/directory.js'
export type { GrantedSpaceOptions } from './apps/open-granted.js'
export { checkNamespace, checkScope, MAX_NAMESPACE_LENGTH, MAX_GRANT_NAMESPACES } from './apps/scope.js'
export type { AppScope } from './apps/scope.js'
export { connect, DEFAULT_CONNECT_TIMEOUT_MS } from './connect/client.js'
export type { ConnectOptions } from './connect/client.js'
export { keepGrant, loadGrant, forgetGrant, DEFAULT_GRANT_DATABASE } from './connect/keep.js'
export type { KeptGrant, KeepOptions } from './connect/keep.js'
