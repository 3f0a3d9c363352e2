/**
 * The connect page, served by every hub at `/connect`. A dapp on any origin opens it in a popup
 * (`connect()` in the library); this page checks the request (`checkRequest`: from its opener, a web
 * origin, known words only, no forged origin), asks the user's wallet (EIP-6963 announced wallets,
 * `window.ethereum`, or this hub's demo wallet) for the open signature, shows who asks for what — the
 * app id, the origin the browser reports and the scope — and on approval posts only the grant back to
 * that origin. The signature and the master keys stay in this page. Opened directly, it lists the
 * apps with access and revokes them.
 */
import './style.css'
import { hubStore, openSpace } from '../src/index.js'
import type { Eip1193Provider, Signer, Space } from '../src/index.js'
import { checkRequest, CONNECT_GRANT, CONNECT_READY, CONNECT_REFUSED } from '../src/connect/messages.js'
import type { ConnectRequest } from '../src/connect/messages.js'
import { storedKey, walletFromKey } from './wallet.js'

const $ = <T extends HTMLElement = HTMLElement>(selector: string): T => document.querySelector(selector) as T

const opener = window.opener as Window | null
let request: ConnectRequest | undefined
/** One request per window: a second one (or a second sender) is never served. */
let answered = false
let space: Space | undefined

interface Announced { info: { uuid: string, name: string, icon?: string }, provider: Eip1193Provider }
const announced = new Map<string, Announced>()

function refuse (err: Error, to?: { id: string, origin: string }): void {
  $('#refused').hidden = false
  $('#refused-text').textContent = `${err.name}: ${err.message}`
  $('#refused').dataset.error = err.name
  for (const id of ['#consent', '#wallets', '#request']) $(id).hidden = true
  if (to !== undefined && opener !== null) {
    opener.postMessage({ type: CONNECT_REFUSED, id: to.id, error: { name: err.name, message: err.message } }, to.origin)
  }
}

function onMessage (event: MessageEvent): void {
  if (answered) return
  let checked: ConnectRequest
  try {
    checked = checkRequest(event, opener)
  } catch (err) {
    // A sender that is not our opener gets no answer at all; our opener gets the reason.
    if (event.source !== opener || opener === null) return
    answered = true
    const id = typeof (event.data as { id?: unknown })?.id === 'string' ? (event.data as { id: string }).id : ''
    refuse(err as Error, /^https?:/.test(event.origin) ? { id, origin: event.origin } : undefined)
    return
  }
  answered = true
  request = checked
  $('#req-app').textContent = checked.app
  $('#req-origin').textContent = checked.origin
  $('#req-own').textContent = `${checked.app} (read and write)`
  $('#req-read').textContent = checked.read.length === 0 ? 'nothing else' : checked.read.join(', ')
  $('#req-write').textContent = checked.write.length === 0 ? 'nothing else' : checked.write.join(', ')
  $('#request').hidden = false
  showWallets()
}

function showWallets (): void {
  $('#wallets').hidden = false
  $('#this-origin').textContent = location.origin
  const list = $('#wallet-list')
  list.replaceChildren()
  const add = (label: string, id: string, signer: () => Signer): void => {
    const button = document.createElement('button')
    button.type = 'button'
    button.textContent = label
    button.dataset.wallet = id
    button.addEventListener('click', () => { void unlock(signer()) })
    list.append(button)
  }
  for (const { info, provider } of announced.values()) add(`Use ${info.name}`, info.uuid, () => provider)
  const injected = (window as { ethereum?: Eip1193Provider }).ethereum
  if (injected !== undefined && announced.size === 0) add('Use browser wallet', 'injected', () => injected)
  const key = storedKey()
  if (key !== undefined) {
    const wallet = walletFromKey(key)
    add(`Use demo wallet ${wallet.address.slice(0, 8)}…`, 'demo', () => wallet)
  }
  $('#no-wallet').hidden = list.childElementCount > 0
}

async function unlock (signer: Signer): Promise<void> {
  try {
    space ??= await openSpace({ signer, store: hubStore(location.origin), retryDelayMs: 0 })
  } catch (err) {
    message(err as Error)
    return
  }
  $('#wallets').hidden = true
  await showApps()
  if (request === undefined) return
  const existing = (await space.apps()).find(a => a.app === request?.app)
  if (existing !== undefined && existing.origin !== request.origin) {
    refuse(Object.assign(new Error(`${request.app} was granted to ${existing.origin ?? 'a native app'}, not to ${request.origin}: revoke it first to grant it elsewhere`), { name: 'OriginMismatchError' }), request)
    return
  }
  $('#consent').hidden = false
  $('#consent-text').textContent = `${request.app}, running on ${request.origin}, will keep its own data in your space` +
    (request.read.length > 0 ? ` and read ${request.read.join(', ')}` : '') + '.'
  $('#foreign-write').hidden = request.write.length === 0
  $('#foreign-list').textContent = request.write.join(', ')
}

async function approve (): Promise<void> {
  if (request === undefined || space === undefined) return
  const req = request
  const button = $<HTMLButtonElement>('#approve')
  button.disabled = true
  try {
    const grant = await space.grant(req.app, { origin: req.origin, read: req.read, write: req.write, approveForeignWrite: $<HTMLInputElement>('#approve-foreign').checked, hub: location.origin })
    opener?.postMessage({ type: CONNECT_GRANT, id: req.id, grant }, req.origin)
    $('#consent').hidden = true
    $('#request').dataset.state = 'granted'
    message(`${req.app} has access. You can close this window.`, 'info')
    await showApps()
  } catch (err) {
    refuse(err as Error, req)
  } finally {
    button.disabled = false
  }
}

async function showApps (): Promise<void> {
  if (space === undefined) return
  const apps = await space.apps()
  const list = $('#app-list')
  list.replaceChildren(...apps.map((a) => {
    const li = document.createElement('li')
    li.dataset.app = a.app
    li.dataset.current = String(a.current)
    const text = document.createElement('span')
    text.textContent = `${a.app} on ${a.origin ?? 'a native app'}: own data${a.read.length > 0 ? `, reads ${a.read.join(', ')}` : ''}${a.write.length > 0 ? `, writes ${a.write.join(', ')}` : ''}${a.current ? '' : ' (must connect again)'}`
    const revoke = document.createElement('button')
    revoke.type = 'button'
    revoke.className = 'revoke'
    revoke.textContent = 'Revoke'
    revoke.addEventListener('click', () => {
      revoke.disabled = true
      space?.revoke(a.app).then(async () => { message(`${a.app} no longer has access to anything written from now on.`, 'info'); await showApps() })
        .catch((err: Error) => { message(err) })
        .finally(() => { revoke.disabled = false })
    })
    li.append(text, revoke)
    return li
  }))
  $('#no-apps').hidden = apps.length > 0
  $('#apps').hidden = false
  $('#apps').dataset.count = String(apps.length)
}

function message (err: Error | string, kind: 'error' | 'info' = 'error'): void {
  const div = document.createElement('div')
  div.className = `message ${kind}`
  div.textContent = typeof err === 'string' ? err : `${err.name}: ${err.message}`
  $('#messages').append(div)
}

window.addEventListener('eip6963:announceProvider', (event) => {
  const detail = (event as CustomEvent<Announced>).detail
  if (detail?.info?.uuid === undefined || typeof detail.provider?.request !== 'function') return
  announced.set(detail.info.uuid, detail)
  if (!$('#wallets').hidden) showWallets()
})
$('#approve').addEventListener('click', () => { void approve() })
$('#deny').addEventListener('click', () => {
  if (request !== undefined) refuse(Object.assign(new Error('the user denied access'), { name: 'SignerError' }), request)
})

if (window.top !== window) {
  // Framed by another page, a consent screen could be dressed up by it: refuse to work at all.
  refuse(Object.assign(new Error('the connect page does not work inside a frame'), { name: 'OriginMismatchError' }))
} else {
  window.dispatchEvent(new Event('eip6963:requestProvider'))
  if (opener !== null) {
    window.addEventListener('message', onMessage)
    // Says only "ready"; the request comes back from the opener, checked by origin.
    opener.postMessage({ type: CONNECT_READY }, '*')
  } else {
    showWallets()
  }
}
