/**
 * A local store in front of a remote one: the device's own copy (IndexedDB in a browser, a
 * directory in Node) and the network (a hub). Everything written goes to both — a record to the
 * remote first, so the local copy never claims a version the network has not taken (the writes
 * behind it stay pending in the Space's state until it has); reads are served locally when
 * possible and cached when not. When the remote cannot be reached, resolving falls back
 * to the local record, so a space opens and edits offline; the Space retries publishing until the
 * remote takes it.
 */
import { NotFoundError, StoreError, UntrustedHubError } from '../errors.js'
import { readRecord } from './record.js'
import type { AbortOptions, Block, GetRecordOptions, RecordListener, Store } from './interface.js'
import type { CID } from 'multiformats/cid'

export function layeredStore (local: Store, remote: Store): Store {
  const store: { -readonly [K in keyof Store]: Store[K] } = {
    conditional: remote.conditional,
    async putBlocks (blocks: Block[], options?: AbortOptions): Promise<void> {
      await local.putBlocks(blocks, options)
      await remote.putBlocks(blocks, options)
    },

    async getBlock (cid: CID, options?: AbortOptions): Promise<Uint8Array> {
      try {
        return await local.getBlock(cid, options)
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err
      }
      const bytes = await remote.getBlock(cid, options)
      await local.putBlocks([{ cid, bytes }], options)
      return bytes
    },

    async putRecord (name: string, record: Uint8Array, options?: AbortOptions): Promise<void> {
      await remote.putRecord(name, record, options)
      await local.putRecord(name, record, options)
    },

    async getRecord (name: string, options?: GetRecordOptions): Promise<Uint8Array | undefined> {
      const mine = await local.getRecord(name, options)
      if (options?.nocache !== true && mine !== undefined) return mine
      let theirs: Uint8Array | undefined
      try {
        theirs = await remote.getRecord(name, options)
      } catch (err) {
        // offline: what this device has; a hub that lies is not offline, and is said to be lying
        if (err instanceof StoreError && !(err instanceof UntrustedHubError) && mine !== undefined) return mine
        throw err
      }
      if (theirs === undefined) return mine
      if (mine !== undefined && readRecord(mine).sequence > readRecord(theirs).sequence) return mine
      await local.putRecord(name, theirs, options)
      return theirs
    }
  }
  if (remote.lookupAddress !== undefined) {
    const lookup = remote.lookupAddress.bind(remote)
    // Offline, the address index cannot be asked; the space opens from the local copy all the same.
    store.lookupAddress = async (address, options) => {
      try {
        return await lookup(address, options)
      } catch (err) {
        if (err instanceof StoreError && !(err instanceof UntrustedHubError)) return undefined
        throw err
      }
    }
  }
  if (remote.getDag !== undefined) {
    const getDag = remote.getDag.bind(remote)
    // A DAG this device already holds the top of is read locally, block by block (only what changed
    // goes to the remote); a new one comes in one remote request and is kept.
    store.getDag = async (cid, options) => {
      try {
        await local.getBlock(cid, options)
        return []
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err
      }
      const blocks = await getDag(cid, options)
      await local.putBlocks(blocks, options)
      return blocks
    }
  }
  if (remote.publish !== undefined) {
    const publish = remote.publish.bind(remote)
    // The same order as putBlocks then putRecord: blocks here first, the record here only once the remote took it.
    // The record is kept here once the remote settled, so the remote's early acceptance is not passed on.
    store.publish = async (name, record, blocks, options) => {
      const signal = options?.signal
      await local.putBlocks(blocks, { signal })
      await publish(name, record, blocks, { signal })
      await local.putRecord(name, record, { signal })
    }
  }
  if (remote.subscribe !== undefined) {
    store.subscribe = (name: string, listener: RecordListener) => (remote.subscribe as NonNullable<Store['subscribe']>)(name, listener)
  }
  return store
}
