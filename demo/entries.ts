/**
 * The demo page's entry cards (private and public): the lists with Edit and Remove (with undo), the
 * editor, the merge-patch box, and `write`, which applies one local edit and puts a refusal next to
 * the form that caused it.
 */
import type { Json, SectionApi } from '../src/index.js'
import { $, button, el } from './dom.js'
import { explain, showError, showMessage } from './messages.js'
import { UNDO_MS, state } from './state.js'
import { renderStatus } from './status.js'

export function queueRender (): void {
  if (state.renderQueued) return
  state.renderQueued = true
  queueMicrotask(() => { state.renderQueued = false; void render() })
}

async function render (): Promise<void> {
  const current = state.space
  if (current === undefined) return
  const [priv, pub] = await Promise.all([current.getAll(), current.public.getAll()])
  if (current !== state.space) return
  renderEntries($('#private'), priv, current)
  renderEntries($('#public'), pub, current.public)
  renderStatus()
  // Scoped app access: the grants in this space's directory.
  const apps = await current.apps()
  if (current !== state.space) return
  $('#granted-list').replaceChildren(...(apps.length === 0 ? [el('li', undefined, 'No app has access.')] : apps.map(a =>
    el('li', undefined, `${a.app} on ${a.origin ?? 'a native app'}${a.read.length > 0 ? ` (reads ${a.read.join(', ')})` : ''}${a.current ? '' : ' — must connect again'}`))))
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
export async function write (section: HTMLElement, op: () => Promise<void>): Promise<boolean> {
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


/** Puts a copy of the page's one entry form into a section, with the section's title, placeholders and size. */
function addEditor (section: HTMLElement): HTMLFormElement {
  const form = $<HTMLFormElement>('form.editor', $<HTMLTemplateElement>('#editor-template').content).cloneNode(true) as HTMLFormElement
  const { editorTitle, editorKey, editorValue, editorRows } = section.dataset
  $('.editor-title', form).textContent = editorTitle ?? ''
  $<HTMLInputElement>('input[name="key"]', form).placeholder = editorKey ?? ''
  const value = $<HTMLTextAreaElement>('textarea[name="value"]', form)
  value.placeholder = editorValue ?? ''
  value.rows = Number(editorRows ?? 2)
  section.append(form)
  return form
}

export function setupEditor (section: HTMLElement, api: () => SectionApi | undefined): void {
  const form = addEditor(section)
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

export function setupPatch (): void {
  const card = $('#patch')
  const form = $<HTMLFormElement>('#patch-form')
  const error = $('.form-error', card)
  form.addEventListener('input', () => { error.textContent = '' })
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    if (state.space === undefined) return
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
    const api: SectionApi = which === 'public' ? state.space.public : state.space
    void write(card, async () => api.patch(patch as Record<string, Json>))
  })
}
