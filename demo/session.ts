/**
 * Opening and closing a space from the demo page: the store stack (IndexedDB in front of the hub,
 * with the address → name binding remembered in this browser), the Space's events turned into
 * messages, and the connect and account views.
 */
import { hubStore, idbState, idbStore, layeredStore, openSpace } from '../src/index.js'
import { readRecord } from '../src/store/record.js'
import type { Signer, Store } from '../src/index.js'
import { $, button, el } from './dom.js'
import { queueRender } from './entries.js'
import { queueHistory } from './history.js'
import { clearMessages, showError, showMessage } from './messages.js'
import { PREFIX, deviceId, ethereum, hubUrl, state } from './state.js'
import { announceOffline, onProgress, probe, renderStatus, setOnline } from './status.js'
import { oldKeys, saveKey, storedKey, walletFromKey } from './wallet.js'

/**
 * The address → name binding is checked at the hub on every open (a wallet that signs differently
 * each time would otherwise open an empty space). This browser remembers the answer, so a reload
 * does not wait for a slow hub and an offline open still runs the check against what it knew.
 */
function withRememberedBinding (store: Store): Store {
  const lookup = store.lookupAddress?.bind(store)
  if (lookup === undefined) return store
  return {
    ...store,
    async lookupAddress (address, options) {
      const key = PREFIX + 'name:' + address.toLowerCase()
      const known = localStorage.getItem(key) ?? undefined
      try {
        const name = await (known === undefined
          ? lookup(address, options)
          : Promise.race([lookup(address, options), new Promise<string | undefined>(resolve => setTimeout(() => { resolve(known) }, 1_500))]))
        if (name !== undefined) localStorage.setItem(key, name)
        return name ?? known
      } catch (err) {
        if ((err as Error).name !== 'StoreError' || known === undefined) throw err
        setOnline(false)
        return known
      }
    }
  }
}

export async function connect (signer: Signer, kind: 'demo' | 'injected'): Promise<void> {
  if (state.space !== undefined) await disconnect()
  setOpening(true)
  clearMessages()
  try {
    state.local ??= idbStore('userspace-demo')
    const remote = hubStore(hubUrl)
    const store = withRememberedBinding(layeredStore(state.local, remote))
    // The rollback state and the writes not yet published live in the same database.
    const opened = await openSpace({ signer, store, state: idbState(state.local), offlineFirst: true, deviceId: deviceId(), onProgress })
    localStorage.setItem(PREFIX + 'name:' + opened.address.toLowerCase(), opened.name)
    localStorage.setItem(PREFIX + 'wallet', kind)
    state.space = opened
    state.walletKind = kind
    opened.on('error', (err) => {
      if (err.name === 'StoreError') setOnline(false)
      else showError(err)
    })
    opened.on('pending', () => { renderStatus() })
    // A live update that arrives late (a stream that connects hears the hub's record of that moment)
    // can be older than what this device has by then, and is harmless. Ask the hub itself: only a
    // hub that still offers a version older than one this browser has seen is worth a word.
    let checkingRollback = false
    opened.on('rollback', () => {
      if (checkingRollback) return
      checkingRollback = true
      void remote.getRecord(opened.name, { nocache: true }).then((bytes) => {
        const offered = bytes === undefined ? undefined : Number(readRecord(bytes).sequence)
        if (opened !== state.space || (offered !== undefined && offered >= opened.sequence)) return
        showMessage({
          kind: 'info',
          title: 'Old version ignored',
          detail: `The hub offers ${offered === undefined ? 'no version' : `version ${offered}`} of this space, older than version ${opened.sequence} this browser has already seen; this browser keeps the newer one.`
        })
      }, () => {}).finally(() => { checkingRollback = false })
    })
    opened.on('conflict', ({ sequence }) => {
      showMessage({ kind: 'info', title: 'Concurrent versions', detail: `Two devices published version ${sequence}; their entries were merged.` })
    })
    opened.subscribe(() => { queueRender(); queueHistory() })
    showSpace()
    if (state.online === false) announceOffline()
    void probe()
  } catch (err) {
    showError(err, 'open')
  } finally {
    setOpening(false)
  }
}

export async function disconnect (): Promise<void> {
  const current = state.space
  state.space = undefined
  state.walletKind = undefined
  state.online = undefined
  state.publishing = false
  state.viewedRoot = undefined
  clearTimeout(state.probeTimer)
  localStorage.removeItem(PREFIX + 'wallet')
  $('#key-box').hidden = true
  $('#version-view').hidden = true
  // Undo offers and notices belong to the space that is closing.
  clearMessages()
  showConnect()
  await current?.close().catch(() => {})
}

function setOpening (busy: boolean): void {
  $('#opening').hidden = !busy
  for (const b of Array.from(document.querySelectorAll<HTMLButtonElement>('#connect button'))) b.disabled = busy
}

export function showConnect (): void {
  $('#connect').hidden = false
  $('#account').hidden = true
  $('#workspace').hidden = true
  $('#injected').hidden = ethereum === undefined
  const key = storedKey()
  $('#demo-address').textContent = key === undefined ? 'none yet' : walletFromKey(key).address
  $('#use-demo').textContent = key === undefined ? 'Make a demo wallet' : 'Use demo wallet'
  renderOldKeys()
  renderStatus()
}

/** The keys this browser used before, each one a click away from being the demo key again. */
function renderOldKeys (): void {
  const keys = oldKeys()
  $('#old-keys').hidden = keys.length === 0
  $('#old-key-count').textContent = String(keys.length)
  $('#old-keys ul').replaceChildren(...keys.reverse().map((key) => {
    const li = el('li')
    li.append(el('code', undefined, walletFromKey(key).address), button('Use this key', () => { saveKey(key); showConnect() }, 'small'))
    return li
  }))
}

function showSpace (): void {
  if (state.space === undefined) return
  $('#connect').hidden = true
  $('#account').hidden = false
  $('#workspace').hidden = false
  $('#address').textContent = state.space.address
  $('#ipns-name').textContent = state.space.name
  $('#device-id').textContent = state.space.deviceId
  $('#wallet-kind').textContent = state.walletKind === 'demo' ? 'demo wallet' : 'browser wallet'
  $('#wallet-kind').className = state.walletKind === 'demo' ? 'badge warn' : 'badge'
  $('#show-key').hidden = state.walletKind !== 'demo'
  queueRender()
  queueHistory()
}
