/**
 * The demo page: a dapp and a wallet in one. It opens the user's space through the hub that serves
 * the page (or `?hub=<url>`), with IndexedDB in front of it, so a reload shows the data before the
 * hub answers and edits made while the hub is away are published when it comes back. A service
 * worker (sw.ts) keeps the page itself, so it also loads while the hub is down. It uses the
 * library's browser entry only.
 *
 * This file wires the page together; each card has a module of its own: session.ts (connect and
 * disconnect), status.ts (online state and the sync line), entries.ts (entries, editor, patch),
 * history.ts (versions and restore), messages.ts (error wording), with the shared state in state.ts.
 *
 * Nothing here destroys silently: Remove, a restored version and "New key" each offer an undo.
 * Everything user data touches is written with textContent: values come from other devices.
 */
import './style.css'
import { $ } from './dom.js'
import { queueRender, setupEditor, setupPatch } from './entries.js'
import { queueHistory, renderHistory, restoreVersion } from './history.js'
import { showMessage } from './messages.js'
import { connect, disconnect, showConnect } from './session.js'
import { PREFIX, UNDO_MS, ethereum, hubUrl, redraw, state } from './state.js'
import { handleWriteError, probe, setOnline } from './status.js'
import { newKey, saveKey, storedKey, walletFromKey } from './wallet.js'

function openDemo (key: string): void {
  void connect(walletFromKey(key), 'demo')
}

function setup (): void {
  redraw.entries = queueRender
  redraw.history = queueHistory
  $('#hub-url').textContent = hubUrl

  $('#use-demo').addEventListener('click', () => { openDemo(storedKey() ?? newKey()) })
  $('#new-key').addEventListener('click', () => {
    const previous = storedKey()
    newKey()
    showConnect()
    if (previous === undefined) return
    showMessage({
      kind: 'info',
      title: 'New demo key',
      detail: `The previous key (${walletFromKey(previous).address}) stays in this browser under “Previous keys”.`,
      action: { label: 'Undo', run: () => { saveKey(previous); showConnect() } },
      timeoutMs: UNDO_MS
    })
  })
  $('#show-paste').addEventListener('click', () => {
    const form = $('#paste-form')
    form.hidden = !form.hidden
    if (!form.hidden) $('#paste-key').focus()
  })
  $('#paste-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const input = $<HTMLInputElement>('#paste-key')
    try {
      const key = saveKey(input.value)
      input.value = ''
      $('#paste-error').textContent = ''
      $('#paste-form').hidden = true
      openDemo(key)
    } catch (err) {
      $('#paste-error').textContent = (err as Error).message
    }
  })
  $('#connect-injected').addEventListener('click', () => {
    if (ethereum !== undefined) void connect(ethereum, 'injected')
  })
  // Another account in the wallet is another space: close this one rather than show it under the new address.
  ;(ethereum as { on?: (event: string, listener: () => void) => void } | undefined)?.on?.('accountsChanged', () => {
    if (state.walletKind === 'injected') void disconnect()
  })

  $('#show-key').addEventListener('click', () => {
    const box = $('#key-box')
    box.hidden = !box.hidden
    $('#private-key').textContent = box.hidden ? '' : storedKey() ?? ''
    $('#show-key').textContent = box.hidden ? 'Show key' : 'Hide key'
  })
  $('#copy-key').addEventListener('click', () => {
    const key = storedKey()
    if (key !== undefined) void navigator.clipboard?.writeText(key).then(() => { $('#copy-key').textContent = 'Copied' }, () => {})
  })
  $('#refresh').addEventListener('click', () => {
    void state.space?.refresh().then(() => { setOnline(true); queueRender(); queueHistory() }, (err: Error) => { handleWriteError(err) })
  })
  $('#disconnect').addEventListener('click', () => { void disconnect() })
  $('#reload-history').addEventListener('click', () => { void renderHistory() })
  $('#close-version').addEventListener('click', () => { $('#version-view').hidden = true; state.viewedRoot = undefined })
  $('#restore-version').addEventListener('click', () => { if (state.viewedRoot !== undefined) void restoreVersion(state.viewedRoot) })

  setupEditor($('#private'), () => state.space)
  setupEditor($('#public'), () => state.space?.public)
  setupPatch()

  window.addEventListener('online', () => { void probe() })
  setInterval(() => { if (state.space !== undefined) queueHistory() }, 60_000)

  registerShell()
  showConnect()
  const key = storedKey()
  if (localStorage.getItem(PREFIX + 'wallet') === 'demo' && key !== undefined) openDemo(key)
}

/**
 * The service worker that keeps the page for when the hub is down (sw.ts). Built pages only: the
 * dev server has no sw.js. Browsers allow service workers on https and on localhost/127.0.0.1; on
 * plain http elsewhere the page works as before, online only. `updateViaCache: 'none'` makes every
 * navigation check for a new build past the HTTP cache.
 */
function registerShell (): void {
  if (!import.meta.env.PROD || !('serviceWorker' in navigator)) return
  navigator.serviceWorker.register('./sw.js', { updateViaCache: 'none' }).catch((err: Error) => {
    console.warn('the page will not load while the hub is down:', err)
  })
}

setup()
