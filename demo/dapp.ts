/**
 * An example dapp, meant to run on another origin than the hub: it calls `connect()` (the library's
 * browser entry), which opens the hub's connect page in a popup; with the grant it receives it opens
 * its own namespace (read and write) and the shared `profile` namespace (read only). It keeps the
 * grant with `keepGrant` (IndexedDB, its signing key non-extractable), the way a real dapp would keep
 * a session; it never sees the user's wallet signature. `?connect=<url of the connect page>` names the hub (default: this origin).
 */
import './style.css'
import { connect, forgetGrant, keepGrant, loadGrant, openSpace } from '../src/index.js'
import type { KeptGrant, Space } from '../src/index.js'

const APP = 'io.example.dapp'
const $ = <T extends HTMLElement = HTMLElement>(selector: string): T => document.querySelector(selector) as T
const connectUrl = new URLSearchParams(location.search).get('connect') ?? new URL('/connect', location.href).href
$('#connect-url').textContent = connectUrl

let own: Space | undefined
let profile: Space | undefined

function message (text: string, kind: 'error' | 'info' = 'error', name?: string): void {
  const div = document.createElement('div')
  div.className = `message ${kind}`
  if (name !== undefined) div.dataset.error = name
  div.textContent = text
  $('#messages').append(div)
}

async function open (grant: KeptGrant): Promise<void> {
  await own?.close().catch(() => {})
  await profile?.close().catch(() => {})
  own = await openSpace({ grant })
  $('#own').hidden = false
  $('#own-name').textContent = own.name
  $('#state').textContent = `Connected as ${grant.grant.app}`
  $('#state').dataset.nonExtractable = String(grant.nonExtractable)
  $('#state').dataset.state = 'connected'
  $('#forget').hidden = false
  own.subscribe(() => { void render() })
  try {
    profile = await openSpace({ grant, namespace: 'profile' })
    $('#shared').hidden = false
  } catch (err) {
    message(`profile: ${(err as Error).name}: ${(err as Error).message}`, 'error', (err as Error).name)
  }
  await render()
}

async function render (): Promise<void> {
  if (own !== undefined) $('#own-data').textContent = JSON.stringify(await own.getAll(), null, 2)
  if (profile !== undefined) $('#profile').textContent = JSON.stringify(await profile.getAll(), null, 2)
}

$('#connect').addEventListener('click', () => {
  // connect() opens the popup synchronously, inside this click.
  connect({ app: APP, read: ['profile'], connectUrl }).then(async (grant) => {
    await open(await keepGrant(grant))
  }).catch((err: Error) => { message(`${err.name}: ${err.message}`, 'error', err.name) })
})
$('#forget').addEventListener('click', () => {
  void forgetGrant(APP).then(() => { location.reload() })
})
$('#note-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const note = $<HTMLInputElement>('#note').value
  own?.set('note', note).then(async () => { await own?.flush(); await render(); $('#own').dataset.saved = note })
    .catch((err: Error) => { message(`${err.name}: ${err.message}`, 'error', err.name) })
})
$('#refresh').addEventListener('click', () => {
  Promise.all([own?.refresh(), profile?.refresh()]).then(render).then(() => { $('#shared').dataset.refreshed = String(Date.now()) })
    .catch((err: Error) => { message(`${err.name}: ${err.message}`, 'error', err.name) })
})

loadGrant(APP).then(async (kept) => { if (kept !== undefined) await open(kept) })
  .catch((err: Error) => { message(`${err.name}: ${err.message}`, 'error', err.name) })
