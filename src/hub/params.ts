/**
 * Parsing of route parameters and content negotiation: IPNS names, CIDs and the trustless
 * gateway's response format. Each refusal is a 4xx with the parameter's name.
 */
import { HTTPException } from 'hono/http-exception'
import { CID } from 'multiformats/cid'
import { InvalidInputError, UserSpaceError } from '../errors.js'
import { canonicalName } from '../store/record.js'
import { CAR_TYPE, RAW_TYPE } from '../protocol.js'
import type { Context } from 'hono'

/** How many spellings of names the parser remembers. */
const KNOWN_NAMES = 10_000

/** Names as clients write them → canonical `k51…` form (parsing a CID costs more than a lookup). */
const canonicalNames = new Map<string, string>()

export function parseName (raw: string): string {
  const known = canonicalNames.get(raw)
  if (known !== undefined) return known
  let name: string
  try {
    name = canonicalName(raw)
  } catch (err) {
    if (err instanceof UserSpaceError) throw err
    throw new InvalidInputError('"name" expected an IPNS name (k51…)')
  }
  if (canonicalNames.size >= KNOWN_NAMES) canonicalNames.clear()
  canonicalNames.set(raw, name)
  return name
}

export function parseCid (raw: string): CID {
  try {
    return CID.parse(raw)
  } catch {
    throw new InvalidInputError(`"cid" expected a CID, got "${raw.slice(0, 80)}"`)
  }
}

/** `raw` or `car`, from `?format=` first, then `Accept`; anything else is a 406. */
export function responseFormat (c: Context): 'raw' | 'car' {
  const format = c.req.query('format')
  if (format === 'raw' || format === 'car') return format
  if (format !== undefined) throw new InvalidInputError(`"format" expected raw or car, got "${format.slice(0, 40)}"`)
  const accept = (c.req.header('accept') ?? '').toLowerCase()
  if (accept.includes(RAW_TYPE)) return 'raw'
  if (accept.includes(CAR_TYPE)) return 'car'
  throw new HTTPException(406, { message: `this is a trustless gateway: ask for ${RAW_TYPE} or ${CAR_TYPE} (or ?format=raw|car)` })
}
