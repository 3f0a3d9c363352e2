/**
 * Request bodies and their headers: a capped body reader (refuses with 413 as soon as a body is over
 * its limit, reading the Node request directly when there is one) and the Content-Type check.
 */
import { HTTPException } from 'hono/http-exception'
import { InvalidInputError, TooLargeError, UserSpaceError } from '../../errors.js'
import { collect } from '../bytes.js'
import type { Env } from '../options.js'
import type { Context } from 'hono'
import type { IncomingMessage } from 'node:http'

/**
 * Refuses (415) a request whose media type is not `type`; with `charset`, also one that names
 * another charset (none named is taken as `charset`).
 */
export function requireContentType (c: Context, type: string, charset?: string): void {
  const [media, ...params] = (c.req.header('content-type') ?? '').split(';')
  const given = media?.trim().toLowerCase()
  if (given !== type) {
    throw new HTTPException(415, { message: `Content-Type expected ${type}, got ${given === '' || given === undefined ? 'none' : `"${given.slice(0, 80)}"`}` })
  }
  if (charset === undefined) return
  for (const param of params) {
    const [name = '', value = ''] = param.split('=')
    const named = value.trim().replace(/^"(.*)"$/, '$1')
    if (name.trim().toLowerCase() === 'charset' && named.toLowerCase() !== charset) {
      throw new HTTPException(415, { message: `Content-Type charset expected ${charset}, got "${named.slice(0, 40)}"` })
    }
  }
}

/** Reads a request body, refusing it (413) as soon as it is larger than `max` bytes. */
export async function readBody (c: Context, max: number, what: string): Promise<Uint8Array> {
  const declared = c.req.header('content-length')
  if (declared !== undefined && Number(declared) > max) {
    throw new TooLargeError(`${what} is ${declared} bytes, over the ${max}-byte limit`)
  }
  const parts: Uint8Array[] = []
  let length = 0
  const take = (chunk: Uint8Array): void => {
    length += chunk.byteLength
    if (length > max) throw new TooLargeError(`${what} is over the ${max}-byte limit`)
    parts.push(chunk)
  }
  const incoming = (c.env as Env['Bindings'] | undefined)?.incoming
  try {
    if (incoming !== undefined && typeof incoming.on === 'function' && !incoming.readableEnded) {
      // Under @hono/node-server, read the request directly: a web ReadableStream costs more than
      // verifying the record it carries.
      await readIncoming(incoming, take)
    } else {
      const body = c.req.raw.body
      if (body === null) throw new InvalidInputError(`${what} expected, got an empty body`)
      const reader = body.getReader()
      try {
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          take(value)
        }
      } finally {
        await reader.cancel().catch(() => {})
      }
    }
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new InvalidInputError(`${what} could not be read: ${(err as Error).message}`, { cause: err })
  }
  if (length === 0) throw new InvalidInputError(`${what} expected, got an empty body`)
  return collect(parts)
}

/**
 * Feeds a Node request's chunks to `take` until the end. When `take` throws (too large), stops
 * listening and lets the rest drain unread, so the refusal can still be sent on the connection.
 */
async function readIncoming (incoming: IncomingMessage, take: (chunk: Uint8Array) => void): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const finish = (err?: Error): void => {
      incoming.off('data', onData)
      incoming.off('end', onEnd)
      incoming.off('error', finish)
      incoming.off('close', onClose)
      if (err === undefined) resolve()
      else { incoming.resume(); reject(err) }
    }
    const onData = (chunk: Uint8Array): void => {
      try { take(chunk) } catch (err) { finish(err as Error) }
    }
    const onEnd = (): void => { finish() }
    const onClose = (): void => { if (!incoming.readableEnded) finish(new Error('the client closed the connection')) }
    incoming.on('data', onData)
    incoming.once('end', onEnd)
    incoming.once('error', finish)
    incoming.once('close', onClose)
  })
}
