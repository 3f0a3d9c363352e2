/**
 * Every named error is in both tables: the hub's HTTP status per name and the CLI's exit code per
 * name, and `errorFromName` rebuilds each one with its class, so a name never falls through to a
 * generic status, exit code or class.
 */
import { describe, expect, it } from 'vitest'
import * as errors from '../src/errors.js'
import * as entry from '../src/index.js'
import { readRecord } from '../src/store/record.js'
import { decodeRoot } from '../src/space/root.js'

const classes = Object.entries(errors).filter(([, value]) =>
  typeof value === 'function' && value.prototype instanceof errors.UserSpaceError) as Array<[string, new (message: string) => errors.UserSpaceError]>

describe('error tables', () => {
  it('finds the error classes', () => {
    expect(classes.length).toBeGreaterThan(15)
  })
  for (const [exported, Ctor] of classes) {
    it(`${exported}: its name, an HTTP status, an exit code, and errorFromName`, () => {
      const err = new Ctor('message')
      expect(err.name).toBe(exported)
      expect(errors.HTTP_STATUS[exported], `HTTP_STATUS misses ${exported}`).toBeGreaterThanOrEqual(400)
      expect(errors.EXIT_CODE[exported], `EXIT_CODE misses ${exported}`).toBeGreaterThanOrEqual(2)
      const rebuilt = errors.errorFromName(exported, 'again')
      expect(rebuilt).toBeInstanceOf(Ctor)
      expect(rebuilt.name).toBe(exported)
    })
  }

  it('the browser entry exports every error class, and neither the HTTP nor the exit-code table', () => {
    for (const [exported, Ctor] of classes) expect((entry as Record<string, unknown>)[exported], exported).toBe(Ctor)
    expect(entry).not.toHaveProperty('HTTP_STATUS')
    expect(entry).not.toHaveProperty('EXIT_CODE')
  })

  it('a wrapped failure keeps what went wrong underneath as its cause', () => {
    for (const fail of [() => readRecord(new Uint8Array([0xff, 0x01])), () => decodeRoot(new Uint8Array([0xff]))]) {
      let caught: unknown
      try { fail() } catch (err) { caught = err }
      expect(caught).toBeInstanceOf(errors.UserSpaceError)
      expect((caught as Error).cause).toBeInstanceOf(Error)
    }
  })
})
