/**
 * The optional logger component: what the space and the hub store report through it, under which
 * component names, and how `lineLogger` writes it. The default (no logger) writes nothing and
 * changes nothing; the hub's own lines are checked where the hub runs (hub-ops, cluster).
 */
import { afterEach, describe, expect, it } from 'vitest'
import { hubStore, lineLogger, memoryState, memoryStore, noopLogger, openSpace, StoreError } from '../src/index.js'
import type { ComponentLogger, Logger, Space, Store } from '../src/index.js'
import { account, KEY_A } from './helpers/signers.js'
import { makeHub } from './helpers/hub-app.js'
import { publishPath } from '../src/protocol.js'

interface Line { component: string, level: 'log' | 'error' | 'trace', formatter: string, args: unknown[] }

/** A ComponentLogger that keeps every call, with its component and level. */
function recorder (): ComponentLogger & { lines: Line[] } {
  const lines: Line[] = []
  return {
    lines,
    forComponent (component: string): Logger {
      const at = (level: Line['level']) => (formatter: string, ...args: unknown[]) => { lines.push({ component, level, formatter, args }) }
      return Object.assign(at('log'), { error: at('error'), trace: at('trace'), enabled: true })
    }
  }
}

/** A memory store whose record writes fail while `online` is false. */
function flakyStore (): Store & { online: boolean } {
  const inner = memoryStore()
  const out = {
    online: true,
    putBlocks: async (...a: Parameters<Store['putBlocks']>) => inner.putBlocks(...a),
    getBlock: async (...a: Parameters<Store['getBlock']>) => inner.getBlock(...a),
    getRecord: async (...a: Parameters<Store['getRecord']>) => inner.getRecord(...a),
    putRecord: async (...a: Parameters<Store['putRecord']>) => {
      if (!out.online) throw new StoreError('offline')
      return await inner.putRecord(...a)
    }
  }
  return out
}

const open: Space[] = []
afterEach(async () => { for (const s of open.splice(0)) await s.close().catch(() => {}) })

describe('lineLogger', () => {
  it('writes the formatted message as one line: %s, %d, %% and extra arguments', () => {
    const lines: string[] = []
    const log = lineLogger(l => { lines.push(l) }).forComponent('userspace:test')
    log('peer: connected to %s (%s)', '/ip4/127.0.0.1/tcp/1', 'id', 'extra')
    log('%d%% done, %s', 50)
    expect(lines).toEqual(['peer: connected to /ip4/127.0.0.1/tcp/1 (id) extra', '50% done, %s'])
  })

  it('sends errors to the error writer when given, and drops trace lines unless asked', () => {
    const out: string[] = []
    const err: string[] = []
    const quiet = lineLogger(l => { out.push(l) }, { error: l => { err.push(l) } }).forComponent('x')
    quiet.trace('not shown')
    quiet.error('failed: %s', new StoreError('offline'))
    expect(out).toEqual([])
    expect(err).toEqual(['failed: StoreError: offline'])
    lineLogger(l => { out.push(l) }, { trace: true }).forComponent('x').trace('shown %d', 1)
    expect(out).toEqual(['shown 1'])
  })

  it('noopLogger writes nothing and says so', () => {
    const log = noopLogger().forComponent('x')
    expect(log.enabled).toBe(false)
    expect(() => { log('a'); log.error('b'); log.trace('c') }).not.toThrow()
  })
})

describe('the space logs through its logger', () => {
  it('a failed publish is a log.error of userspace:space naming the retry delay; the publish that follows is a trace', async () => {
    const logger = recorder()
    const store = flakyStore()
    let failed: () => void = () => {}
    const publishFailed = new Promise<void>(resolve => { failed = resolve })
    const space = await openSpace({
      signer: account(KEY_A), store, state: memoryState(), retryDelayMs: 20, logger,
      onProgress: (event) => { if (event.type === 'space:publish:error') failed() }
    })
    open.push(space)
    await space.flush()
    store.online = false
    await space.set('k', 'v')
    await publishFailed
    const error = logger.lines.find(l => l.level === 'error') as Line
    expect(error.component).toBe('userspace:space')
    expect(error.formatter).toBe('publish of %s failed, retrying in %d ms: %s')
    expect(error.args).toEqual([space.name, 20, 'offline'])
    store.online = true
    await space.flush()
    expect(logger.lines.some(l => l.level === 'trace' && l.formatter.startsWith('published %s #%d') && l.args[1] === space.sequence)).toBe(true)
  })

  it('a merge of another device\'s version is a trace of userspace:space', async () => {
    const store = memoryStore()
    const writer = await openSpace({ signer: account(KEY_A), store, state: memoryState() })
    open.push(writer)
    await writer.set('k', 1)
    await writer.flush()
    const logger = recorder()
    const reader = await openSpace({ signer: account(KEY_A), store, state: memoryState(), logger })
    open.push(reader)
    const merge = logger.lines.find(l => l.formatter.startsWith('merged %s #%d'))
    expect(merge).toMatchObject({ component: 'userspace:space', level: 'trace', args: [reader.name, writer.sequence, String(writer.root), 0] })
  })
})

describe('the hub store logs through its logger', () => {
  it('says once that a hub has no one-request publish route, and publishes through the standard routes', async () => {
    const hub = makeHub()
    const logger = recorder()
    const store = hubStore('http://hub.test', {
      logger,
      // A hub that predates the publish route: 404 there, everything else answered.
      fetch: async (input, init) => String(input).includes(publishPath('')) ? new Response('{"message":"no route"}', { status: 404 }) : await hub.app.request(String(input), init)
    })
    const space = await openSpace({ signer: account(KEY_A), store, state: memoryState() })
    open.push(space)
    await space.set('k', 'v')
    await space.flush()
    await space.set('k', 'w')
    await space.flush()
    const fallbacks = logger.lines.filter(l => l.formatter.startsWith('hub %s has no one-request publish route'))
    expect(fallbacks).toHaveLength(1)
    expect(fallbacks[0]).toMatchObject({ component: 'userspace:store:hub', level: 'log', args: ['http://hub.test'] })
  })

  it('an event stream the hub refuses for good is a log.error, and the subscription ends', async () => {
    const logger = recorder()
    let calls = 0
    const store = hubStore('http://hub.test', {
      logger,
      fetch: async () => { calls++; return new Response('{"message":"gone"}', { status: 403 }) }
    })
    const stop = store.subscribe?.('k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8', () => {}) as () => void
    await expect.poll(() => logger.lines.length).toBe(1)
    stop()
    expect(logger.lines[0]).toMatchObject({ component: 'userspace:store:hub', level: 'error', formatter: 'the event stream of %s at %s was refused (%d): not retried' })
    expect(logger.lines[0]?.args[2]).toBe(403)
    expect(calls).toBe(1)
  })
})
