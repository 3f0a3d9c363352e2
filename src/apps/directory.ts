/**
 * The apps directory and the owner's verbs on it: grant, list, revoke. The directory lives in the
 * master space's private section, so every device of the owner sees (and merges) it and nobody else
 * can read it: one entry per namespace (`userspace:namespace:<ns>` → its current epoch, IPNS name and
 * owner address) and one per granted app (`userspace:app:<app>` → origin, scope, issue date and the
 * epochs it was given). Keys starting with `userspace:` are reserved for it, in the master space and
 * in namespaces (each holds `userspace:namespace` → its namespace and epoch).
 *
 * Revoking an app moves every namespace it held keys for to the next epoch: new keys, the data copied
 * (re-encrypted) into the new sub-space, the new name recorded here. The old sub-space's record is
 * left where it is: the revoked app keeps what it already read, but cannot read or write anything
 * written afterwards. Other apps that held keys for a moved namespace hold stale grants (`current:
 * false` in `apps()`) until they connect again.
 */
import { systemClock } from '../clock.js'
import { deriveAppKeys } from '../crypto/keys.js'
import { toBase64 } from '../crypto/bytes.js'
import { ApprovalRequiredError, InvalidInputError, InvalidScopeError, NotFoundError, OriginMismatchError } from '../errors.js'
import { checkNamespace, checkOrigin, checkScope } from './scope.js'
import { encodeKeys, GRANT_TYPE, GRANT_VERSION, grantStatement } from './grant.js'
import { namespaceIdentity, openNamespace } from './subspace.js'
import type { Grant, NamespaceGrant } from './grant.js'
import type { AppScope } from './scope.js'
import type { NamespaceOpenOptions } from './subspace.js'
import type { Json } from '../space/json.js'
import type { SpaceStateStore } from '../space/state.js'
import type { Space, SpaceOptions } from '../space/types.js'
import type { AbortOptions, Store } from '../store/interface.js'
import type { PrivateKey } from '@libp2p/interface'

export const NAMESPACE_PREFIX = 'userspace:namespace:'
export const APP_PREFIX = 'userspace:app:'
/** The private entry every namespace holds: its namespace and epoch. */
export const NAMESPACE_MARKER = 'userspace:namespace'
const GRANT_OPTION_WORDS = new Set(['read', 'write', 'origin', 'approveForeignWrite', 'hub', 'signal'])

export interface GrantOptions extends AppScope, AbortOptions {
  /**
   * The web origin the app runs on, exactly as the browser reports it (`MessageEvent.origin`); the
   * app id is pinned to it. Omit for a native app. @default null
   */
  origin?: string | null
  /** The user explicitly approved writing other apps' namespaces (`write`). @default false */
  approveForeignWrite?: boolean
  /** The hub URL to put in the grant, for the app to open its namespace through. */
  hub?: string
}

export interface AppInfo {
  app: string
  origin: string | null
  read: string[]
  write: string[]
  /** ms since the epoch */
  issuedAt: number
  /** namespace → the epoch the grant holds keys for */
  epochs: Record<string, number>
  /** False once a namespace in the grant moved on (the app must connect again). */
  current: boolean
}

interface NamespaceEntry { epoch: number, name: string, address: string }

/** What the directory verbs need from the master space: injected by the space that owns the keys. */
export interface MasterContext {
  space: Space
  store: Store
  ipnsKey: PrivateKey
  appsRoot: Uint8Array
  state: SpaceStateStore
  options: SpaceOptions
}

function subOptions (ctx: MasterContext, extra: Partial<NamespaceOpenOptions> = {}): NamespaceOpenOptions {
  const o = ctx.options
  return { state: ctx.state, deviceId: ctx.space.deviceId, recordLifetimeMs: o.recordLifetimeMs, retryDelayMs: o.retryDelayMs, now: o.now, logger: o.logger, maxValueBytes: o.maxValueBytes, maxSpaceBytes: o.maxSpaceBytes, maxPublicBytes: o.maxPublicBytes, ...extra }
}

async function namespaceEntry (ctx: MasterContext, ns: string): Promise<NamespaceEntry | undefined> {
  const value = await ctx.space.get(NAMESPACE_PREFIX + ns) as Record<string, unknown> | undefined
  if (value === undefined || typeof value !== 'object' || value === null) return undefined
  if (!Number.isSafeInteger(value.epoch) || typeof value.name !== 'string' || typeof value.address !== 'string') return undefined
  return { epoch: value.epoch as number, name: value.name, address: value.address }
}

/**
 * Creates namespace `ns` at `epoch` (publishing an empty first version, so read grants find it) and
 * optionally fills it; returns its directory entry. Deterministic: doing it twice does no harm.
 */
async function createNamespace (ctx: MasterContext, ns: string, epoch: number, fill?: { priv: Record<string, Json>, pub: Record<string, Json> }, options?: AbortOptions): Promise<NamespaceEntry> {
  const keys = deriveAppKeys(ctx.appsRoot, ns, epoch)
  const id = await namespaceIdentity(keys)
  const sub = await openNamespace(ctx.store, keys, id, subOptions(ctx, { signal: options?.signal }))
  try {
    // A first version must exist for read grants to open; this entry also tells an app where it is.
    await sub.set(NAMESPACE_MARKER, { namespace: ns, epoch })
    if (fill !== undefined) {
      delete fill.priv[NAMESPACE_MARKER]
      if (Object.keys(fill.priv).length > 0) await sub.patch(fill.priv)
      if (Object.keys(fill.pub).length > 0) await sub.public.patch(fill.pub)
    }
    await sub.flush(options)
  } finally {
    await sub.close()
  }
  return { epoch, ...id }
}

/** Issues a grant to `app` for its own namespace plus `scope`, and records it in the directory. */
export async function grantApp (ctx: MasterContext, app: string, options: GrantOptions): Promise<Grant> {
  checkNamespace(app, 'app')
  if (typeof options !== 'object' || options === null) throw new InvalidInputError('"options" expected { origin, read, write }')
  for (const word of Object.keys(options)) {
    if (!GRANT_OPTION_WORDS.has(word)) throw new InvalidScopeError(`unknown scope word ${JSON.stringify(word.slice(0, 40))} (known: read, write, origin, approveForeignWrite, hub, signal)`)
  }
  const origin = options.origin === undefined || options.origin === null ? null : checkOrigin(options.origin)
  const scope = checkScope(app, { ...(options.read === undefined ? {} : { read: options.read }), ...(options.write === undefined ? {} : { write: options.write }) })
  if (scope.write.length > 0 && options.approveForeignWrite !== true) {
    throw new ApprovalRequiredError(`${app} asks to write other apps' namespaces (${scope.write.join(', ')}): the user must approve that explicitly (approveForeignWrite)`)
  }
  // Start from the newest directory: a device that missed a revocation must never write an older
  // epoch back over it (the revoked app holds that epoch's keys).
  await ctx.space.refresh(options)
  const existing = await appEntry(ctx, app)
  if (existing !== undefined && existing.origin !== origin) {
    throw new OriginMismatchError(`${app} was granted to ${existing.origin ?? 'a native app'}, not to ${origin ?? 'a native app'}: revoke it first to grant it elsewhere`)
  }
  const wanted: Array<[string, 'read' | 'write']> = [[app, 'write'], ...scope.write.map(ns => [ns, 'write'] as [string, 'write']), ...scope.read.map(ns => [ns, 'read'] as [string, 'read'])]
  const namespaces: NamespaceGrant[] = []
  const epochs: Record<string, number> = {}
  for (const [ns, access] of wanted) {
    let entry = await namespaceEntry(ctx, ns)
    if (entry === undefined) {
      entry = await createNamespace(ctx, ns, 0, undefined, options)
      await ctx.space.set(NAMESPACE_PREFIX + ns, { ...entry })
    }
    epochs[ns] = entry.epoch
    namespaces.push({ namespace: ns, epoch: entry.epoch, name: entry.name, address: entry.address, access, ...encodeKeys(deriveAppKeys(ctx.appsRoot, ns, entry.epoch), access) })
  }
  const issuedAt = Math.floor((ctx.options.now ?? systemClock)())
  const body: Omit<Grant, 'signature'> = { type: GRANT_TYPE, version: GRANT_VERSION, app, origin, owner: ctx.space.address, master: ctx.space.name, issuedAt, namespaces }
  if (typeof options.hub === 'string') body.hub = options.hub
  const signature = toBase64(await ctx.ipnsKey.sign(grantStatement(body)))
  await ctx.space.set(APP_PREFIX + app, { app, origin, read: scope.read, write: scope.write, issuedAt, epochs })
  // The owner's other devices (and a later revocation from any of them) must see the grant.
  await ctx.space.flush(options)
  return { ...body, signature }
}

async function appEntry (ctx: MasterContext, app: string): Promise<Omit<AppInfo, 'current'> | undefined> {
  return toAppInfo(await ctx.space.get(APP_PREFIX + app))
}

function toAppInfo (value: Json | undefined): Omit<AppInfo, 'current'> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const v = value as Record<string, Json>
  if (typeof v.app !== 'string' || !(v.origin === null || typeof v.origin === 'string') || !Array.isArray(v.read) || !Array.isArray(v.write) || typeof v.issuedAt !== 'number' || typeof v.epochs !== 'object' || v.epochs === null || Array.isArray(v.epochs)) return undefined
  return { app: v.app, origin: v.origin, read: v.read as string[], write: v.write as string[], issuedAt: v.issuedAt, epochs: v.epochs as Record<string, number> }
}

/** The granted apps, by app id, each saying whether its keys are still current. */
export async function listApps (ctx: MasterContext): Promise<AppInfo[]> {
  const all = await ctx.space.getAll()
  const out: AppInfo[] = []
  for (const [key, value] of Object.entries(all)) {
    if (!key.startsWith(APP_PREFIX)) continue
    const info = toAppInfo(value)
    if (info === undefined) continue
    let current = true
    for (const [ns, epoch] of Object.entries(info.epochs)) {
      const entry = all[NAMESPACE_PREFIX + ns] as { epoch?: unknown } | undefined
      if (entry?.epoch !== epoch) current = false
    }
    out.push({ ...info, current })
  }
  return out.sort((a, b) => a.app < b.app ? -1 : a.app > b.app ? 1 : 0)
}

/**
 * Revokes `app`: every namespace it held keys for moves to the next epoch (its data copied into the
 * new sub-space), then its grant is removed. Returns the namespaces moved, with their new names.
 */
export async function revokeApp (ctx: MasterContext, app: string, options?: AbortOptions): Promise<Array<{ namespace: string, epoch: number, name: string }>> {
  checkNamespace(app, 'app')
  await ctx.space.refresh(options)
  const info = await appEntry(ctx, app)
  if (info === undefined) throw new NotFoundError(`${app} holds no grant`)
  const moved: Array<{ namespace: string, epoch: number, name: string }> = []
  for (const ns of Object.keys(info.epochs).sort()) {
    const entry = await namespaceEntry(ctx, ns)
    if (entry === undefined) continue
    // The app may have held an older epoch (already moved by another revocation): moving the current
    // one on is still what guarantees it cannot read what comes next.
    const oldKeys = deriveAppKeys(ctx.appsRoot, ns, entry.epoch)
    const old = await openNamespace(ctx.store, oldKeys, entry, subOptions(ctx, { signal: options?.signal }))
    let fill: { priv: Record<string, Json>, pub: Record<string, Json> }
    try {
      fill = { priv: await old.getAll(), pub: await old.public.getAll() }
    } finally {
      await old.close()
    }
    const next = await createNamespace(ctx, ns, entry.epoch + 1, fill, options)
    await ctx.space.set(NAMESPACE_PREFIX + ns, { ...next })
    moved.push({ namespace: ns, epoch: next.epoch, name: next.name })
  }
  await ctx.space.remove(APP_PREFIX + app)
  await ctx.space.flush(options)
  return moved
}
