/**
 * The demo page's status line: whether the hub answers (probed now and then, quickly while it does
 * not), whether changes are publishing or pending, and the version shown. The Space's progress
 * events and errors feed it.
 */
import { addressPath } from '../src/protocol.js'
import type { ProgressEvent } from '../src/index.js'
import { $, short } from './dom.js'
import { showError, clearMessages } from './messages.js'
import { hubUrl, redraw, state } from './state.js'

export function setOnline (value: boolean): void {
  if (state.online === value) return
  const wasOffline = state.online === false
  state.online = value
  if (!value) announceOffline()
  if (value) {
    clearMessages('Working offline')
    // Back online: catch up and publish what waited.
    if (wasOffline && state.space !== undefined) void state.space.refresh().then(redraw.entries, (err: Error) => { handleWriteError(err) })
  }
  renderStatus()
  scheduleProbe()
}

export function announceOffline (): void {
  if (state.space !== undefined) showError(Object.assign(new Error('the hub cannot be reached'), { name: 'StoreError' }))
}

export function renderStatus (): void {
  const conn = $('#conn')
  const sync = $('#sync')
  const space = state.space
  if (space === undefined) {
    conn.textContent = 'Not connected'
    conn.dataset.state = 'idle'
    sync.hidden = true
    return
  }
  sync.hidden = false
  conn.textContent = state.online === false ? 'Offline' : state.online === true ? 'Connected' : 'Connecting…'
  conn.dataset.state = state.online === false ? 'offline' : state.online === true ? 'online' : 'idle'
  conn.title = state.online === false ? `${hubUrl} cannot be reached` : hubUrl
  // The Space's own count: durable writes it has not published yet, also those from before a reload.
  const pending = space.pending
  // A publish that fails says nothing (the Space retries quietly): offline, it is pending.
  if (state.publishing && state.online !== false) {
    sync.textContent = pending > 0 ? `Publishing ${pending} change${pending === 1 ? '' : 's'}…` : 'Publishing…'
    sync.dataset.state = 'publishing'
  } else if (pending > 0) {
    sync.textContent = `${pending} change${pending === 1 ? '' : 's'} pending`
    sync.dataset.state = 'pending'
  } else {
    sync.textContent = space.sequence === 0 ? 'Nothing published yet' : `Up to date · v${space.sequence}`
    sync.dataset.state = 'synced'
  }
  sync.dataset.pending = String(pending)
  $('#version').textContent = space.sequence === 0
    ? 'none yet — your first change publishes version 1'
    : `${space.sequence}${space.root === null ? '' : ` · ${short(space.root.toString())}`}`
}

/** Asks the hub something cheap: fast while offline (to publish soon after it is back), slow otherwise. */
export function scheduleProbe (): void {
  clearTimeout(state.probeTimer)
  if (state.space === undefined) return
  state.probeTimer = setTimeout(() => { void probe() }, state.online === false ? 1_500 : 10_000)
}

export async function probe (): Promise<void> {
  const current = state.space
  if (current === undefined) return
  let reachable = false
  try {
    const res = await fetch(`${hubUrl}${addressPath(current.address)}`, { cache: 'no-store', signal: AbortSignal.timeout(5_000) })
    reachable = res.status < 500
  } catch {
    reachable = false
  }
  if (current !== state.space) return
  setOnline(reachable)
  // Still something waiting although the hub answers (a retry is not due yet): push it now.
  if (reachable && state.space.pending > 0 && !state.publishing) void state.space.flush().catch((err: Error) => { handleWriteError(err) })
  scheduleProbe()
}

export function onProgress (event: ProgressEvent): void {
  if (event.type === 'space:publish:start') {
    state.publishing = true
  } else if (event.type === 'space:publish:error') {
    // Whoever started the publish (a write, a retry, a live update), it is over; the Space retries.
    state.publishing = false
    const err = event.detail.error
    if (err.name === 'StoreError' || err.name === 'AbortedError') setOnline(false)
    // Another device publishing first is ordinary: the Space merges and publishes again by itself,
    // and keeps the writes pending meanwhile. Anything else is worth saying.
    else if (err.name !== 'ConflictError' && err.name !== 'EquivocationError') showError(err)
  } else if (event.type === 'space:publish:end') {
    state.publishing = false
    setOnline(true)
    redraw.history()
  }
  renderStatus()
}

export function handleWriteError (err: Error): void {
  state.publishing = false
  if (err.name === 'StoreError' || err.name === 'AbortedError') setOnline(false)
  else showError(err)
  renderStatus()
}
