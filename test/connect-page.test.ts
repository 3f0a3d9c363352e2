/**
 * The connect page's server side and its request check, without a browser: the hub serves the page
 * at /connect and forbids framing it; `checkRequest` refuses anything not from the opener, from an
 * opaque origin, with a forged origin, an unknown word or a malformed name.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkRequest, CONNECT_REQUEST } from '../src/connect/messages.js'
import { CONNECT_PATH } from '../src/protocol.js'
import { makeHub } from './helpers/hub-app.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'userspace-connect-'))
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>main</title>')
  await writeFile(join(dir, 'connect.html'), '<!doctype html><title>connect</title>')
})

afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

describe('the hub serves the connect page', () => {
  it('at /connect, never cached stale and never framed', async () => {
    const { app } = makeHub({ demoDir: dir })
    const res = await app.request(CONNECT_PATH)
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('<title>connect</title>')
    expect(res.headers.get('x-frame-options')).toBe('DENY')
    expect(res.headers.get('content-security-policy')).toBe("frame-ancestors 'none'")
    expect(res.headers.get('cache-control')).toBe('no-cache')
    // the main page is not affected
    expect((await app.request('/')).headers.get('x-frame-options')).toBeNull()
  })
})

describe('checkRequest', () => {
  const opener = {}
  const origin = 'https://app.example'
  const ok = { type: CONNECT_REQUEST, id: 'request-0001', app: 'io.example.app', read: ['profile'] }
  const error = (fn: () => unknown): string => { try { fn() } catch (err) { return (err as Error).name } return 'none' }

  it('accepts a well-formed request from the opener, with the origin the browser reported', () => {
    expect(checkRequest({ data: ok, origin, source: opener as MessageEventSource }, opener)).toEqual({ id: 'request-0001', app: 'io.example.app', read: ['profile'], write: [], origin })
    // a claimed origin that is the real one is fine
    expect(checkRequest({ data: { ...ok, origin }, origin, source: opener as MessageEventSource }, opener).origin).toBe(origin)
  })

  it('refuses what does not come from the opener, opaque origins, forged origins, unknown words and bad names', () => {
    const source = opener as MessageEventSource
    expect(error(() => checkRequest({ data: ok, origin, source: {} as MessageEventSource }, opener))).toBe('OriginMismatchError')
    expect(error(() => checkRequest({ data: ok, origin, source }, null))).toBe('OriginMismatchError')
    expect(error(() => checkRequest({ data: ok, origin: 'null', source }, opener))).toBe('InvalidScopeError')
    expect(error(() => checkRequest({ data: ok, origin: 'file://', source }, opener))).toBe('InvalidScopeError')
    expect(error(() => checkRequest({ data: { ...ok, origin: 'https://bank.example' }, origin, source }, opener))).toBe('OriginMismatchError')
    expect(error(() => checkRequest({ data: { ...ok, scope: 'all' }, origin, source }, opener))).toBe('InvalidScopeError')
    expect(error(() => checkRequest({ data: { ...ok, app: 'IO.APP' }, origin, source }, opener))).toBe('InvalidScopeError')
    expect(error(() => checkRequest({ data: { ...ok, read: 'profile' }, origin, source }, opener))).toBe('InvalidScopeError')
    expect(error(() => checkRequest({ data: { ...ok, read: Array.from({ length: 17 }, (_, i) => `ns-${i}`) }, origin, source }, opener))).toBe('InvalidScopeError')
    expect(error(() => checkRequest({ data: { ...ok, id: 'x' }, origin, source }, opener))).toBe('InvalidScopeError')
    expect(error(() => checkRequest({ data: 'hello', origin, source }, opener))).toBe('InvalidScopeError')
  })
})
