/**
 * The Store: what a Space needs from the outside world, and nothing more. Bytes in, bytes out —
 * content-addressed blocks and marshalled IPNS records. Memory, helia (Node and browser) and hub
 * (HTTP) implementations sit behind it; the Space never knows which one it has.
 */
import type { CID } from 'multiformats/cid'

export interface AbortOptions {
  signal?: AbortSignal
}

export interface Block {
  cid: CID
  bytes: Uint8Array
}

export interface GetRecordOptions extends AbortOptions {
  /**
   * Skip any cache and ask the network for the newest record. Spaces always pass `true` before they
   * publish, so that a stale cache can never make them publish over newer data.
   *
   * @default false
   */
  nocache?: boolean
}

export interface PublishOptions extends AbortOptions {
  /**
   * Called once the store holds the version and it has gone out to listeners, where the store
   * checks the network after that (a helia node asks the DHT for a newer record). The publish
   * promise still settles with the check's outcome: a ConflictError then means the version went
   * out but the store kept another record (named by the error's `record`). Callers that pass it may
   * publish the next version before the promise settles; stores that answer in one step never
   * call it.
   */
  onAccepted?: () => void
}

export interface GetDagOptions extends AbortOptions {
  /**
   * A path below `cid` (`private`, `a/b`): the blocks on the way there and the DAG below it, as a
   * trustless gateway serves `/ipfs/{cid}/{path}`.
   */
  path?: string
}

export interface LookupAddressOptions extends AbortOptions {
  /**
   * The name the caller expects. An answer that names it needs no proof (the caller checks the
   * binding when it reads the space), so a store may skip verifying it; any other answer is verified.
   */
  expected?: string
}

/** Called with the marshalled bytes of each new record heard for a name. */
export type RecordListener = (record: Uint8Array) => void

export interface Store {
  /**
   * Stores blocks. Implementations check each block against its CID (a mismatch throws
   * IntegrityError) and store all of them or none.
   */
  putBlocks(blocks: Block[], options?: AbortOptions): Promise<void>

  /** Returns a block's bytes, verified against its CID; throws NotFoundError when it cannot be had. */
  getBlock(cid: CID, options?: AbortOptions): Promise<Uint8Array>

  /**
   * The blocks of the DAG under `cid` (and `path`) that the store can hand over in one go, each
   * verified against its CID, in no promised order and not necessarily all of them: callers read what
   * is missing with `getBlock`. A hub answers with one trustless-gateway CAR. Optional: stores
   * without it are read block by block.
   */
  getDag?(cid: CID, options?: GetDagOptions): Promise<Block[]>

  /** Stores and announces a marshalled IPNS record for `name` (a `k51…` string). */
  putRecord(name: string, record: Uint8Array, options?: AbortOptions): Promise<void>

  /**
   * Stores `blocks` and the record of `name` that points into them as one step, all or nothing: a
   * record the store refuses (ConflictError for a stale sequence on a conditional store) leaves no
   * block behind — except one refused after `options.onAccepted` was called, whose blocks stay for
   * the versions built on it. A hub does it in one request. Optional: for stores without it, spaces
   * call `putBlocks` then `putRecord`.
   */
  publish?(name: string, record: Uint8Array, blocks: Block[], options?: PublishOptions): Promise<void>

  /** The newest marshalled record known for `name`, or undefined when there is none. */
  getRecord(name: string, options?: GetRecordOptions): Promise<Uint8Array | undefined>

  /**
   * The IPNS name bound to a wallet address, where the store keeps an address index (hubs do).
   * Undefined when unknown or unsupported.
   */
  lookupAddress?(address: string, options?: LookupAddressOptions): Promise<string | undefined>

  /** Listens for new records of `name`; returns a function that stops listening. */
  subscribe?(name: string, listener: RecordListener): () => void

  /**
   * True when `putRecord` is a conditional write: it throws ConflictError (and stores nothing) for
   * a record whose sequence is lower than the stored one, or equal with another value. Spaces then
   * publish without resolving first, and merge and retry on a conflict. Stores that cannot promise
   * this (a DHT) leave it unset, and spaces resolve before every publish.
   */
  readonly conditional?: boolean

  /** True for a store that lives only in this process (`memoryStore`); a space on it keeps its state in memory too. */
  readonly ephemeral?: boolean
}
