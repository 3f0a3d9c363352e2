/**
 * The demo page's small DOM helpers: find an element that must exist, make one with a class and
 * text, make a button. Text always goes in through textContent, never markup: values come from
 * other devices.
 */

export function $<T extends HTMLElement = HTMLElement> (selector: string, root: ParentNode = document): T {
  const found = root.querySelector<T>(selector)
  if (found === null) throw new Error(`missing element ${selector}`)
  return found
}

export function el<K extends keyof HTMLElementTagNameMap> (tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag)
  if (className !== undefined) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

export function button (text: string, onClick: () => void, className?: string): HTMLButtonElement {
  const b = el('button', className, text)
  b.type = 'button'
  b.addEventListener('click', onClick)
  return b
}

/** A CID or name short enough for a line: its head and its tail. */
export function short (text: string): string {
  return text.length > 16 ? `${text.slice(0, 8)}…${text.slice(-6)}` : text
}

export function timeAgo (ms: number): string {
  const s = Math.round((Date.now() - ms) / 1000)
  if (s < 5) return 'just now'
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`
  return new Date(ms).toLocaleDateString()
}
