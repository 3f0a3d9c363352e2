/**
 * Request bodies of the Next.ID routes: a JSON object read through the hub's capped body reader
 * (`application/json` in UTF-8 only: a wrong type is 415, not `{}`; too large is 413; anything
 * that is not strict JSON is 400), and the fields every write names: the avatar and the patch.
 */
import { fromUtf8 } from '../../crypto/bytes.js'
import { InvalidInputError } from '../../errors.js'
import { readBody, requireContentType } from '../middleware/body.js'
import { checkText, parsePublicKey } from './chain.js'
import { isJsonObject, parseJson, type JsonObject, type JsonValue } from './json.js'
import type { Context } from 'hono'

/** A value's JSON kind, for "expected X, got Y" messages. */
export function describe (value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  return Array.isArray(value) ? 'array' : typeof value
}

export async function readJsonObject (c: Context, maxBytes: number): Promise<JsonObject> {
  requireContentType(c, 'application/json', 'utf-8')
  const bytes = await readBody(c, maxBytes, '"body"')
  let text: string
  try {
    text = fromUtf8(bytes)
  } catch (err) {
    throw new InvalidInputError('"body" is not valid UTF-8', { cause: err })
  }
  const value = parseJson(text, 'body')
  if (!isJsonObject(value)) throw new InvalidInputError(`"body" expected a JSON object, got ${describe(value)}`)
  return value
}

/** The JSON body of a payload request or a write, with the fields both name: who writes, and where. */
export async function readKvBody (c: Context, maxBytes: number): Promise<{ body: JsonObject, publicKey: Uint8Array, platform: string, identity: string }> {
  const body = await readJsonObject(c, maxBytes)
  const publicKey = bodyAvatar(body)
  const platform = checkText(body.platform, 'platform')
  const identity = checkText(body.identity, 'identity')
  return { body, publicKey, platform, identity }
}

/** `avatar`, or kv_server's older name `persona` (avatar wins when both are given). */
export function bodyAvatar (body: JsonObject): Uint8Array {
  for (const name of ['avatar', 'persona']) {
    const value = body[name]
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw new InvalidInputError(`"${name}" expected a secp256k1 public key in hex, got ${describe(value)}`)
    }
  }
  const given = body.avatar ?? body.persona
  if (given === undefined || given === null) throw new InvalidInputError('"avatar" is missing')
  return parsePublicKey(given, body.avatar != null ? 'avatar' : 'persona')
}

export function bodyPatch (body: JsonObject): JsonValue {
  const patch = body.patch
  if (patch === undefined) throw new InvalidInputError('"patch" expected a JSON merge patch (RFC 7396), got nothing')
  return patch
}
