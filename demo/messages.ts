/**
 * The demo page's words for people: `explain` turns a library error (by its `name`) into a title
 * and a sentence, and the message box shows those, with an optional action such as Undo. Tests
 * match on error names; people read this.
 */
import { $, button, el } from './dom.js'
import { hubUrl } from './state.js'

export interface Explained {
  title: string
  detail: string
  kind: 'error' | 'info'
  /** A button in the message, such as Undo; the message goes once it is clicked. */
  action?: { label: string, run: () => void }
  /** How long an info message stays; 0 keeps it until dismissed or cleared. @default 12 s */
  timeoutMs?: number
}

/** Turns a library error into words for people; tests match on the error's name, people read this. */
export function explain (err: unknown, context?: string): Explained {
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

export function showMessage ({ title, detail, kind, action, timeoutMs }: Explained): void {
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

export function showError (err: unknown, context?: string): void {
  showMessage(explain(err, context))
}

export function clearMessages (title?: string): void {
  for (const item of Array.from($('#messages').children)) {
    if (title === undefined || (item as HTMLElement).dataset.title === title) item.remove()
  }
}
