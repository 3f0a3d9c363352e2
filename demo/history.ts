/**
 * The demo page's history card: the list of published versions, one version's entries shown on
 * request, and restoring one as a new version (with an undo that puts back what was there).
 */
import type { Json, SectionApi, VersionInfo } from '../src/index.js'
import { $, button, el, short, timeAgo } from './dom.js'
import { write } from './entries.js'
import { explain, showError, showMessage } from './messages.js'
import { UNDO_MS, state } from './state.js'

export function queueHistory (): void {
  clearTimeout(state.historyTimer)
  state.historyTimer = setTimeout(() => { void renderHistory() }, 250)
}

export async function renderHistory (): Promise<void> {
  const current = state.space
  if (current === undefined) return
  const list = $('#history ol.versions')
  const note = $('#history .history-note')
  if (list.childElementCount === 0) note.textContent = 'Loading history…'
  let versions: VersionInfo[]
  try {
    versions = await current.history({ limit: 30 })
  } catch (err) {
    if (current !== state.space) return
    note.textContent = (err as Error).name === 'StoreError' || (err as Error).name === 'NotFoundError'
      ? 'Older versions are on the hub; they show when it can be reached.'
      : explain(err).detail
    return
  }
  if (current !== state.space) return
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
  const current = state.space
  if (current === undefined) return
  try {
    const version = await current.at(root)
    if (current !== state.space) return
    state.viewedRoot = root
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
export async function restoreVersion (root: string): Promise<void> {
  const current = state.space
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
  if (current !== state.space) return
  const changes = reshape(current, before.priv, target.priv).length + reshape(current.public, before.pub, target.pub).length
  if (changes === 0) {
    showMessage({ kind: 'info', title: 'Nothing to restore', detail: `Your entries are the same as in version ${target.sequence}.` })
    return
  }
  const card = $('#history')
  const applied = await write(card, async () => { await applyAll([...reshape(current, before.priv, target.priv), ...reshape(current.public, before.pub, target.pub)]) })
  if (!applied) return
  $('#version-view').hidden = true
  state.viewedRoot = undefined
  showMessage({
    kind: 'info',
    title: `Restored version ${target.sequence}`,
    detail: `${changes} entr${changes === 1 ? 'y' : 'ies'} changed back; the versions in between stay in the history.`,
    action: {
      label: 'Undo',
      run: () => {
        if (current !== state.space) return
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
