/**
 * What the demo page knows and shares between its modules: where its hub is, the injected wallet,
 * and one mutable `state` object (the open space, the online state, what is being shown). Modules
 * import it rather than keeping their own copies, so who reads and who changes what is visible.
 */
import type { Eip1193Provider, IdbStore, Space } from '../src/index.js'

/** localStorage keys of the demo start with this. */
export const PREFIX = 'userspace-demo:'
/** How long an undo stays offered. */
export const UNDO_MS = 30_000
export const hubUrl = hubFromLocation()
export const ethereum = (window as { ethereum?: Eip1193Provider }).ethereum

export interface DemoState {
  space: Space | undefined
  /** The IndexedDB store, kept across connects (it holds every space this browser opened). */
  local: IdbStore | undefined
  walletKind: 'demo' | 'injected' | undefined
  /** undefined until the hub has answered or failed once. */
  online: boolean | undefined
  publishing: boolean
  probeTimer: ReturnType<typeof setTimeout> | undefined
  renderQueued: boolean
  historyTimer: ReturnType<typeof setTimeout> | undefined
  /** The past version shown in the history card. */
  viewedRoot: string | undefined
}

export const state: DemoState = {
  space: undefined,
  local: undefined,
  walletKind: undefined,
  online: undefined,
  publishing: false,
  probeTimer: undefined,
  renderQueued: false,
  historyTimer: undefined,
  viewedRoot: undefined
}

/**
 * Redraws asked for by modules below the views (the status line asks for entries and history when
 * the hub comes back); main.ts points them at the views, which keeps the imports one-way.
 */
export const redraw = {
  entries: (): void => {},
  history: (): void => {}
}

function hubFromLocation (): string {
  const param = new URLSearchParams(location.search).get('hub')
  return (param ?? location.origin).replace(/\/+$/, '')
}

/** This browser's device id, made once and kept in localStorage. */
export function deviceId (): string {
  let id = localStorage.getItem(PREFIX + 'device')
  if (id === null) {
    id = 'web-' + Array.from(crypto.getRandomValues(new Uint8Array(6)), b => b.toString(16).padStart(2, '0')).join('')
    localStorage.setItem(PREFIX + 'device', id)
  }
  return id
}
