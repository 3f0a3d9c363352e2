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

describe('the "got …" half of a message', () => {
  it('names the type and size of a bad input, never its content (it may be a key or a signature)', () => {
    const secret = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff8'
    expect(errors.describeValue(secret)).toBe('a string of 65 characters')
    expect(errors.describeValue(new Uint8Array(31))).toBe('31 bytes')
    expect(errors.describeValue([1, 2])).toBe('an array of 2')
    expect(errors.describeValue({ key: secret })).toBe('an object')
    expect(errors.describeValue('')).toBe('an empty string')
    expect(errors.describeValue(null)).toBe('null')
    expect(errors.describeValue(undefined)).toBe('undefined')
    expect(errors.describeValue(7)).toBe('number')
  })

  it('a bad private key is refused with its size, not its digits', () => {
    const secret = 'ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2'
    let message = ''
    try { entry.privateKeySigner(secret) } catch (err) { message = (err as Error).message }
    expect(message).toMatch(/^"privateKey" expected a 32-byte secp256k1 private key \(64 hex digits\), got /)
    expect(message).not.toContain(secret.slice(8, 24))
  })
})
