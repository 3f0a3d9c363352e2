/**
 * The demo page: a dapp and a wallet in one. It opens the user's space through the hub that serves
 * the page (or `?hub=<url>`), with IndexedDB in front of it, so a reload shows the data before the
 * hub answers and edits made while the hub is away are published when it comes back. A service
 * worker (sw.ts) keeps the page itself, so it also loads while the hub is down. It uses the
 * library's browser entry only.
 *
 * Nothing here destroys silently: Remove, a restored version and "New key" each offer an undo.
 * Everything user data touches is written with textContent: values come from other devices.
 */
import './style.css'
import { hubStore, idbState, idbStore, layeredStore, openSpace } from '../src/index.js'
import { readRecord } from '../src/store/record.js'
import type { Eip1193Provider, IdbStore, Json, ProgressEvent, SectionApi, Signer, Space, Store, VersionInfo } from '../src/index.js'
import { newKey, oldKeys, saveKey, storedKey, walletFromKey } from './wallet.js'
import { addressPath } from '../src/protocol.js'

const PREFIX = 'userspace-demo:'
const hubUrl = hubFromLocation()
const ethereum = (window as { ethereum?: Eip1193Provider }).ethereum
/** How long an undo stays offered. */
const UNDO_MS = 30_000

// --- small DOM helpers ------------------------------------------------------------------------

function $<T extends HTMLElement = HTMLElement> (selector: string, root: ParentNode = document): T {
  const found = root.querySelector<T>(selector)
  if (found === null) throw new Error(`missing element ${selector}`)
  return found
}

function el<K extends keyof HTMLElementTagNameMap> (tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag)
  if (className !== undefined) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

function button (text: string, onClick: () => void, className?: string): HTMLButtonElement {
  const b = el('button', className, text)
  b.type = 'button'
  b.addEventListener('click', onClick)
  return b
}

// --- state ------------------------------------------------------------------------------------

let space: Space | undefined
let local: IdbStore | undefined
let walletKind: 'demo' | 'injected' | undefined
let online: boolean | undefined
let publishing = false
let probeTimer: ReturnType<typeof setTimeout> | undefined
let renderQueued = false
let historyTimer: ReturnType<typeof setTimeout> | undefined
/** The past version shown in the history card. */
let viewedRoot: string | undefined

function hubFromLocation (): string {
  const param = new URLSearchParams(location.search).get('hub')
  return (param ?? location.origin).replace(/\/+$/, '')
}

function deviceId (): string {
  let id = localStorage.getItem(PREFIX + 'device')
  if (id === null) {
    id = 'web-' + Array.from(crypto.getRandomValues(new Uint8Array(6)), b => b.toString(16).padStart(2, '0')).join('')
    localStorage.setItem(PREFIX + 'device', id)
  }
  return id
}

// --- messages ---------------------------------------------------------------------------------

interface Explained {
  title: string
  detail: string
  kind: 'error' | 'info'
  /** A button in the message, such as Undo; the message goes once it is clicked. */
  action?: { label: string, run: () => void }
  /** How long an info message stays; 0 keeps it until dismissed or cleared. @default 12 s */
  timeoutMs?: number
}

/** Turns a library error into words for people; tests match on the error's name, people read this. */
function explain (err: unknown, context?: string): Explained {
  const e = err instanceof Error ? err : new Error(String(err))
  const message = e.message
  switch (e.name) {
    case 'SignerError':
      return /rejected/i.test(message)
        ? { kind: 'error', title: 'Signature rejected', detail: 'You declined the signature request, so your space stays locked. Connect again when you are ready.' }
        : { kind: 'error', title: 'The wallet did not sign', detail: message }
    case 'InvalidSignatureError':
    case 'SignerMismatchError':
    case 'NonDeterministicSignerError':
      return { kind: 'error', title: 'This wallet cannot open a UserSpace', detail: message }
    case 'StoreError':
      return context === 'open'
        ? { kind: 'error', title: 'The hub cannot be reached', detail: `${hubUrl} does not answer, and this browser has no copy of this space yet. Try again when the hub is up.` }
        : {
            kind: 'info',
            title: 'Working offline',
            detail: `The hub at ${hubUrl} cannot be reached. Your changes are saved in this browser, also across reloads, and published when it is back.`,
            // It stays while the page is offline (cleared when the hub answers again).
            timeoutMs: 0
          }
    case 'UntrustedHubError':
      return { kind: 'error', title: 'Integrity check failed: the hub is not trustworthy', detail: `The hub at ${hubUrl} answered with data that does not check out (a block that is not what its address says, or an answer no honest hub sends). It was refused and nothing was changed. (${message})` }
    case 'IntegrityError':
      return { kind: 'error', title: 'Integrity check failed', detail: `Data did not match its content address or could not be decrypted with your key, so it was refused and nothing was changed. (${message})` }
    case 'InvalidRecordError':
      return { kind: 'error', title: 'Invalid record', detail: `The hub handed over an IPNS record that is not validly signed for this space; it was ignored. (${message})` }
    case 'InvalidInputError':
      return { kind: 'error', title: 'Not accepted', detail: message }
    case 'TooLargeError':
      return { kind: 'error', title: 'Too large', detail: message }
    case 'RateLimitError':
      return { kind: 'info', title: 'Slow down', detail: `The hub asks for fewer requests: ${message}` }
    case 'ConflictError':
    case 'EquivocationError':
      return { kind: 'error', title: 'Conflict', detail: message }
    default:
      return { kind: 'error', title: 'Something went wrong', detail: message }
  }
}

function showMessage ({ title, detail, kind, action, timeoutMs }: Explained): void {
  const box = $('#messages')
  // The same message twice in a row is shown once.
  for (const existing of Array.from(box.children)) {
    if ((existing as HTMLElement).dataset.title === title) existing.remove()
  }
  const item = el('div', `message ${kind}`)
  item.dataset.title = title
  item.append(el('strong', undefined, title), el('span', undefined, ' ' + detail))
  if (action !== undefined) item.append(button(action.label, () => { item.remove(); action.run() }, 'action'))
  item.append(button('×', () => { item.remove() }, 'close'))
  ;(item.lastChild as HTMLButtonElement).setAttribute('aria-label', 'Dismiss')
  box.append(item)
  if (kind === 'info' && timeoutMs !== 0) setTimeout(() => { item.remove() }, timeoutMs ?? 12_000)
}

function showError (err: unknown, context?: string): void {
  showMessage(explain(err, context))
}

function clearMessages (title?: string): void {
  for (const item of Array.from($('#messages').children)) {
    if (title === undefined || (item as HTMLElement).dataset.title === title) item.remove()
  }
}

// --- status -----------------------------------------------------------------------------------

function setOnline (value: boolean): void {
  if (online === value) return
  const wasOffline = online === false
  online = value
  if (!value) announceOffline()
  if (value) {
    clearMessages('Working offline')
    // Back online: catch up and publish what waited.
    if (wasOffline && space !== undefined) void space.refresh().then(queueRender, (err: Error) => { handleWriteError(err) })
  }
  renderStatus()
  scheduleProbe()
}

function announceOffline (): void {
  if (space !== undefined) showError(Object.assign(new Error('the hub cannot be reached'), { name: 'StoreError' }))
}

function renderStatus (): void {
  const conn = $('#conn')
  const sync = $('#sync')
  if (space === undefined) {
    conn.textContent = 'Not connected'
    conn.dataset.state = 'idle'
    sync.hidden = true
    return
  }
  sync.hidden = false
  conn.textContent = online === false ? 'Offline' : online === true ? 'Connected' : 'Connecting…'
  conn.dataset.state = online === false ? 'offline' : online === true ? 'online' : 'idle'
  conn.title = online === false ? `${hubUrl} cannot be reached` : hubUrl
  // The Space's own count: durable writes it has not published yet, also those from before a reload.
  const pending = space.pending
  // A publish that fails says nothing (the Space retries quietly): offline, it is pending.
  if (publishing && online !== false) {
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
function scheduleProbe (): void {
  clearTimeout(probeTimer)
  if (space === undefined) return
  probeTimer = setTimeout(() => { void probe() }, online === false ? 1_500 : 10_000)
}

async function probe (): Promise<void> {
  const current = space
  if (current === undefined) return
  let reachable = false
  try {
    const res = await fetch(`${hubUrl}${addressPath(current.address)}`, { cache: 'no-store', signal: AbortSignal.timeout(5_000) })
    reachable = res.status < 500
  } catch {
    reachable = false
  }
  if (current !== space) return
  setOnline(reachable)
  // Still something waiting although the hub answers (a retry is not due yet): push it now.
  if (reachable && space.pending > 0 && !publishing) void space.flush().catch((err: Error) => { handleWriteError(err) })
  scheduleProbe()
}

function onProgress (event: ProgressEvent): void {
  if (event.type === 'space:publish:start') {
    publishing = true
  } else if (event.type === 'space:publish:error') {
    // Whoever started the publish (a write, a retry, a live update), it is over; the Space retries.
    publishing = false
    const err = event.detail.error
    if (err.name === 'StoreError' || err.name === 'AbortedError') setOnline(false)
    // Another device publishing first is ordinary: the Space merges and publishes again by itself,
    // and keeps the writes pending meanwhile. Anything else is worth saying.
    else if (err.name !== 'ConflictError' && err.name !== 'EquivocationError') showError(err)
  } else if (event.type === 'space:publish:end') {
    publishing = false
    setOnline(true)
    queueHistory()
  }
  renderStatus()
}

// --- opening ----------------------------------------------------------------------------------

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

async function connect (signer: Signer, kind: 'demo' | 'injected'): Promise<void> {
  if (space !== undefined) await disconnect()
  setOpening(true)
  clearMessages()
  try {
    local ??= idbStore('userspace-demo')
    const remote = hubStore(hubUrl)
    const store = withRememberedBinding(layeredStore(local, remote))
    // The rollback state and the writes not yet published live in the same database.
    const opened = await openSpace({ signer, store, state: idbState(local), offlineFirst: true, deviceId: deviceId(), onProgress })
    localStorage.setItem(PREFIX + 'name:' + opened.address.toLowerCase(), opened.name)
    localStorage.setItem(PREFIX + 'wallet', kind)
    space = opened
    walletKind = kind
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
        if (opened !== space || (offered !== undefined && offered >= opened.sequence)) return
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
    if (online === false) announceOffline()
    void probe()
  } catch (err) {
    showError(err, 'open')
  } finally {
    setOpening(false)
  }
}

async function disconnect (): Promise<void> {
  const current = space
  space = undefined
  walletKind = undefined
  online = undefined
  publishing = false
  viewedRoot = undefined
  clearTimeout(probeTimer)
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

function showConnect (): void {
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
  if (space === undefined) return
  $('#connect').hidden = true
  $('#account').hidden = false
  $('#workspace').hidden = false
  $('#address').textContent = space.address
  $('#ipns-name').textContent = space.name
  $('#device-id').textContent = space.deviceId
  $('#wallet-kind').textContent = walletKind === 'demo' ? 'demo wallet' : 'browser wallet'
  $('#wallet-kind').className = walletKind === 'demo' ? 'badge warn' : 'badge'
  $('#show-key').hidden = walletKind !== 'demo'
  queueRender()
  queueHistory()
}

// --- entries ----------------------------------------------------------------------------------

function queueRender (): void {
  if (renderQueued) return
  renderQueued = true
  queueMicrotask(() => { renderQueued = false; void render() })
}

async function render (): Promise<void> {
  const current = space
  if (current === undefined) return
  const [priv, pub] = await Promise.all([current.getAll(), current.public.getAll()])
  if (current !== space) return
  renderEntries($('#private'), priv, current)
  renderEntries($('#public'), pub, current.public)
  renderStatus()
  // Scoped app access: the grants in this space's directory.
  const apps = await current.apps()
  if (current !== space) return
  $('#granted-list').replaceChildren(...(apps.length === 0 ? [Object.assign(document.createElement('li'), { textContent: 'No app has access.' })] : apps.map(a => Object.assign(document.createElement('li'), {
    textContent: `${a.app} on ${a.origin ?? 'a native app'}${a.read.length > 0 ? ` (reads ${a.read.join(', ')})` : ''}${a.current ? '' : ' — must connect again'}`
  }))))
}

function renderEntries (section: HTMLElement, entries: Record<string, Json>, api: SectionApi): void {
  const list = $('ul.entries', section)
  const keys = Object.keys(entries).sort()
  const items: HTMLElement[] = []
  for (const key of keys) {
    const value = entries[key] as Json
    const li = el('li', 'entry')
    li.dataset.key = key
    const head = el('div', 'entry-head')
    head.append(el('code', 'entry-key', key))
    const actions = el('div', 'entry-actions')
    actions.append(
      button('Edit', () => { editEntry(section, key, value) }, 'small'),
      button('Remove', () => { void removeWithUndo(section, api, key, value) }, 'small danger')
    )
    head.append(actions)
    li.append(head, el('pre', 'entry-value', JSON.stringify(value, null, 2)))
    items.push(li)
  }
  if (items.length === 0) items.push(el('li', 'empty', section.dataset.section === 'public' ? 'No public fields yet.' : 'No entries yet.'))
  list.replaceChildren(...items)
}

/** Removes at once and offers to put the entry back as it was. */
async function removeWithUndo (section: HTMLElement, api: SectionApi, key: string, value: Json): Promise<void> {
  if (!await write(section, async () => api.remove(key))) return
  const where = section.dataset.section === 'public' ? 'the public profile' : 'your private entries'
  showMessage({
    kind: 'info',
    title: `Removed “${key}”`,
    detail: `It is gone from ${where}.`,
    action: { label: 'Undo', run: () => { void write(section, async () => api.set(key, value)) } },
    timeoutMs: UNDO_MS
  })
}

function editEntry (section: HTMLElement, key: string, value: Json): void {
  const form = $<HTMLFormElement>('form.editor', section)
  ;(form.elements.namedItem('key') as HTMLInputElement).value = key
  const textarea = form.elements.namedItem('value') as HTMLTextAreaElement
  textarea.value = JSON.stringify(value, null, 2)
  $('.editor-title', section).textContent = `Edit “${key}”`
  form.scrollIntoView({ behavior: 'smooth', block: 'nearest' })
  textarea.focus()
}

/** Parses JSON typed by a person, with an error that says where and what to do. */
function parseJson (text: string, what: string): Json {
  if (text.trim() === '') throw new Error(`${what} is empty. Type JSON: "text" in double quotes, a number, true/false, null, [ … ] or { … }.`)
  try {
    return JSON.parse(text) as Json
  } catch (err) {
    const hint = /^[^"{[\d\-tfn]/.test(text.trim()) ? ` Text needs double quotes: "${text.trim().slice(0, 40)}".` : ''
    throw new Error(`${what} is not valid JSON: ${(err as Error).message}.${hint}`)
  }
}

/**
 * Applies a local edit; resolves true once the Space has it saved on this device (its publish goes
 * on in the background and shows in the sync state), false when it was refused or could not be
 * saved, with the reason in the section's form or a message.
 */
async function write (section: HTMLElement, op: () => Promise<void>): Promise<boolean> {
  const done = op()
  queueRender()
  try {
    await done
    return true
  } catch (err) {
    const e = err as Error
    const box = section.querySelector<HTMLElement>('.form-error')
    if (box !== null && (e.name === 'InvalidInputError' || e.name === 'TooLargeError' || e.name === 'ClosedError')) box.textContent = explain(e).detail
    else showError(e)
    return false
  } finally {
    queueRender()
  }
}

function handleWriteError (err: Error): void {
  publishing = false
  if (err.name === 'StoreError' || err.name === 'AbortedError') setOnline(false)
  else showError(err)
  renderStatus()
}

function setupEditor (section: HTMLElement, api: () => SectionApi | undefined): void {
  const form = $<HTMLFormElement>('form.editor', section)
  const error = $('.form-error', section)
  const title = $('.editor-title', section)
  const defaultTitle = title.textContent ?? ''
  form.addEventListener('reset', () => { error.textContent = ''; title.textContent = defaultTitle })
  form.addEventListener('input', () => { error.textContent = '' })
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const target = api()
    if (target === undefined) return
    const key = (form.elements.namedItem('key') as HTMLInputElement).value.trim()
    const text = (form.elements.namedItem('value') as HTMLTextAreaElement).value
    if (key === '') { error.textContent = 'Give the entry a key.'; return }
    let value: Json
    try {
      value = parseJson(text, 'The value')
    } catch (err) {
      error.textContent = (err as Error).message
      return
    }
    error.textContent = ''
    void write(section, async () => target.set(key, value)).then((ok) => {
      // Clear the form, unless the next entry is already being typed into it.
      const keyNow = (form.elements.namedItem('key') as HTMLInputElement).value.trim()
      const textNow = (form.elements.namedItem('value') as HTMLTextAreaElement).value
      if (ok && keyNow === key && textNow === text) form.reset()
    })
  })
}

function setupPatch (): void {
  const card = $('#patch')
  const form = $<HTMLFormElement>('#patch-form')
  const error = $('.form-error', card)
  form.addEventListener('input', () => { error.textContent = '' })
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    if (space === undefined) return
    const which = (form.elements.namedItem('section') as HTMLSelectElement).value
    let patch: Json
    try {
      patch = parseJson((form.elements.namedItem('patch') as HTMLTextAreaElement).value, 'The patch')
    } catch (err) {
      error.textContent = (err as Error).message
      return
    }
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      error.textContent = 'A merge patch is a JSON object: { "key": value, "removed": null }.'
      return
    }
    error.textContent = ''
    const api: SectionApi = which === 'public' ? space.public : space
    void write(card, async () => api.patch(patch as Record<string, Json>))
  })
}

// --- history ----------------------------------------------------------------------------------

function queueHistory (): void {
  clearTimeout(historyTimer)
  historyTimer = setTimeout(() => { void renderHistory() }, 250)
}

async function renderHistory (): Promise<void> {
  const current = space
  if (current === undefined) return
  const list = $('#history ol.versions')
  const note = $('#history .history-note')
  if (list.childElementCount === 0) note.textContent = 'Loading history…'
  let versions: VersionInfo[]
  try {
    versions = await current.history({ limit: 30 })
  } catch (err) {
    if (current !== space) return
    note.textContent = (err as Error).name === 'StoreError' || (err as Error).name === 'NotFoundError'
      ? 'Older versions are on the hub; they show when it can be reached.'
      : explain(err).detail
    return
  }
  if (current !== space) return
  note.textContent = versions.length === 0 ? 'No versions yet: your first change publishes one.' : ''
  list.replaceChildren(...versions.map((v) => {
    const li = el('li', 'version')
    li.dataset.root = v.root.toString()
    li.dataset.sequence = String(v.sequence)
    const text = el('div', 'version-text')
    text.append(
      el('strong', undefined, `v${v.sequence}`),
      el('span', 'muted', ` ${timeAgo(v.updatedAt)} · ${v.device === current.deviceId ? 'this device' : v.device}${v.parents.length > 1 ? ' · merge' : ''}`),
      el('code', 'cid', short(v.root.toString()))
    )
    li.append(text, button('View', () => { void viewVersion(v.root.toString()) }, 'small'))
    return li
  }))
}

async function viewVersion (root: string): Promise<void> {
  const current = space
  if (current === undefined) return
  try {
    const version = await current.at(root)
    if (current !== space) return
    viewedRoot = root
    $('#version-title').textContent = `Version ${version.sequence} · ${new Date(version.updatedAt).toLocaleString()}`
    $('#version-private').textContent = JSON.stringify(version.getAll(), null, 2)
    $('#version-public').textContent = JSON.stringify(version.public.getAll(), null, 2)
    $('#version-view').hidden = false
    $('#version-view').scrollIntoView({ behavior: 'smooth', block: 'nearest' })
  } catch (err) {
    showError(err)
  }
}

/**
 * Makes the space hold what version `root` held: entries it lacks are removed, the others set to
 * their old values, all in one go (so they publish together, as one new version). The versions in
 * between stay in the history, and the message offers to undo the restore.
 */
async function restoreVersion (root: string): Promise<void> {
  const current = space
  if (current === undefined) return
  let target: { priv: Record<string, Json>, pub: Record<string, Json>, sequence: number }
  let before: { priv: Record<string, Json>, pub: Record<string, Json> }
  try {
    const version = await current.at(root)
    target = { priv: version.getAll(), pub: version.public.getAll(), sequence: version.sequence }
    before = { priv: await current.getAll(), pub: await current.public.getAll() }
  } catch (err) {
    showError(err)
    return
  }
  if (current !== space) return
  const changes = reshape(current, before.priv, target.priv).length + reshape(current.public, before.pub, target.pub).length
  if (changes === 0) {
    showMessage({ kind: 'info', title: 'Nothing to restore', detail: `Your entries are the same as in version ${target.sequence}.` })
    return
  }
  const card = $('#history')
  const applied = await write(card, async () => { await applyAll([...reshape(current, before.priv, target.priv), ...reshape(current.public, before.pub, target.pub)]) })
  if (!applied) return
  $('#version-view').hidden = true
  viewedRoot = undefined
  showMessage({
    kind: 'info',
    title: `Restored version ${target.sequence}`,
    detail: `${changes} entr${changes === 1 ? 'y' : 'ies'} changed back; the versions in between stay in the history.`,
    action: {
      label: 'Undo',
      run: () => {
        if (current !== space) return
        void (async () => {
          const now = { priv: await current.getAll(), pub: await current.public.getAll() }
          await write(card, async () => { await applyAll([...reshape(current, now.priv, before.priv), ...reshape(current.public, now.pub, before.pub)]) })
        })()
      }
    },
    timeoutMs: UNDO_MS
  })
}

/** The writes that turn `now` into `target` in `api`, one per key that differs. */
function reshape (api: SectionApi, now: Record<string, Json>, target: Record<string, Json>): Array<() => Promise<void>> {
  const ops: Array<() => Promise<void>> = []
  for (const key of Object.keys(now)) {
    if (!Object.hasOwn(target, key)) ops.push(async () => api.remove(key))
  }
  for (const [key, value] of Object.entries(target)) {
    if (!Object.hasOwn(now, key) || canonical(now[key] as Json) !== canonical(value)) ops.push(async () => api.set(key, value))
  }
  return ops
}

/** Starts every write before awaiting any, so the Space publishes them together. */
async function applyAll (ops: Array<() => Promise<void>>): Promise<void> {
  await Promise.all(ops.map(async op => op()))
}

/** JSON with object keys sorted, to compare values whatever order their keys were written in. */
function canonical (value: Json): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return v
    return Object.fromEntries(Object.keys(v).sort().map(k => [k, (v as Record<string, unknown>)[k]]))
  })
}

function timeAgo (ms: number): string {
  const s = Math.round((Date.now() - ms) / 1000)
  if (s < 5) return 'just now'
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`
  return new Date(ms).toLocaleDateString()
}

function short (text: string): string {
  return text.length > 16 ? `${text.slice(0, 8)}…${text.slice(-6)}` : text
}

// --- wiring -----------------------------------------------------------------------------------

function openDemo (key: string): void {
  void connect(walletFromKey(key), 'demo')
}

function setup (): void {
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
    if (walletKind === 'injected') void disconnect()
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
    void space?.refresh().then(() => { setOnline(true); queueRender(); queueHistory() }, (err: Error) => { handleWriteError(err) })
  })
  $('#disconnect').addEventListener('click', () => { void disconnect() })
  $('#reload-history').addEventListener('click', () => { void renderHistory() })
  $('#close-version').addEventListener('click', () => { $('#version-view').hidden = true; viewedRoot = undefined })
  $('#restore-version').addEventListener('click', () => { if (viewedRoot !== undefined) void restoreVersion(viewedRoot) })

  setupEditor($('#private'), () => space)
  setupEditor($('#public'), () => space?.public)
  setupPatch()

  window.addEventListener('online', () => { void probe() })
  setInterval(() => { if (space !== undefined) queueHistory() }, 60_000)

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
