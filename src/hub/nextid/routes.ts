/**
 * The Next.ID KV Service routes, in kv_server's wire format: `/healthz`, `GET /v1/kv`,
 * `GET /v1/kv/by_identity`, `POST /v1/kv/payload` (what to sign) and `POST /v1/kv` (a signed patch,
 * accepted through `acceptLink`). Bodies are built as text so that field order and number spelling
 * match kv_server's byte for byte.
 */
import { randomUUID } from 'node:crypto'
import { fromBase64 } from '../../crypto/bytes.js'
import { InvalidInputError, InvalidSignatureError, RateLimitError } from '../../errors.js'
import { bodyPatch, describe, readKvBody } from './body.js'
import {
  SIGNATURE_BYTES, SIGN_PAYLOAD_VERSION, avatarHex, buildSignPayload, checkSeconds, checkText, parsePublicKey, parseSignature, parseUuid
} from './chain.js'
import { canonicalJson } from './json.js'
import { checkNextIdIdentity, checkProof } from './proof.js'
import { getCid, getEntry, listAvatars, listEntries, keys, loadLink } from './store.js'
import { acceptLink } from './write.js'
import type { NextIdConfig } from './options.js'
import type { AbortOptions } from '../../store/interface.js'
import type { Context, Hono } from 'hono'

export function addKvRoutes (app: Hono, config: NextIdConfig): void {
  app.get('/healthz', c => jsonText(c, 200, JSON.stringify({ hello: 'kv server', build_at: config.buildAt, commit_version: config.commitVersion })))

  app.get('/v1/kv', async c => {
    const param = c.req.query('avatar') ?? c.req.query('persona')
    if (param === undefined) throw new InvalidInputError('Param missing: avatar')
    const avatar = avatarHex(parsePublicKey(param))
    return jsonText(c, 200, await avatarResponse(config, avatar, { signal: c.req.raw.signal }))
  })

  app.get('/v1/kv/by_identity', async c => {
    const platform = c.req.query('platform')
    const identity = c.req.query('identity')
    if (platform === undefined) throw new InvalidInputError('Param missing: platform')
    if (identity === undefined) throw new InvalidInputError('Param missing: identity')
    checkText(platform, 'platform')
    checkText(identity, 'identity')
    const values: string[] = []
    let bytes = 0
    // At most maxIdentityResults avatars, in key order, and values only while the body stays under
    // maxIdentityResponseBytes: anyone can claim any identity on a hub without a ProofService.
    for (const avatar of await listAvatars(config.datastore, platform, identity, config.maxIdentityResults, { signal: c.req.raw.signal })) {
      const entry = await getEntry(config.datastore, avatar, platform, identity, { signal: c.req.raw.signal })
      if (entry === undefined) continue
      const value = '{"avatar":"0x' + avatar + '","content":' + canonicalJson(entry.content) + '}'
      bytes += value.length + 1
      if (bytes > config.maxIdentityResponseBytes) break
      values.push(value)
    }
    return jsonText(c, 200, '{"values":[' + values.join(',') + ']}')
  })

  app.post('/v1/kv/payload', async c => {
    const signal = c.req.raw.signal
    const { body, publicKey, platform, identity } = await readKvBody(c, config.maxBodyBytes)
    const patch = bodyPatch(body)
    checkNextIdIdentity(publicKey, platform, identity)
    await checkProof(config.proofService, publicKey, platform, identity, signal)
    const avatar = avatarHex(publicKey)
    const headCid = await getCid(config.datastore, keys.head(avatar), { signal })
    const head = headCid === null ? null : await loadLink(config, headCid, { signal })
    const uuid = randomUUID()
    const createdAt = Math.floor(config.nowMs() / 1000)
    const signPayload = buildSignPayload({ uuid, avatar: publicKey, platform, identity, patch, createdAtSeconds: createdAt, previous: head?.signature ?? null })
    return jsonText(c, 200, JSON.stringify({ uuid, sign_payload: signPayload, created_at: createdAt }))
  })

  app.post('/v1/kv', async c => {
    const signal = c.req.raw.signal
    // Everything up to acceptLink is parsing: no store access, no curve arithmetic.
    const { body, publicKey, platform, identity } = await readKvBody(c, config.maxBodyBytes)
    const uuid = parseUuid(body.uuid)
    const createdAt = checkSeconds(body.created_at)
    if (typeof body.signature !== 'string') throw new InvalidInputError(`"signature" expected base64 string, got ${describe(body.signature)}`)
    const signature = fromBase64(body.signature, 'signature')
    if (signature.length !== SIGNATURE_BYTES) {
      throw new InvalidSignatureError(`"signature" expected ${SIGNATURE_BYTES} bytes (r‖s‖v), got length=${signature.length}`)
    }
    parseSignature(signature)
    const patch = bodyPatch(body)
    const skewMs = Math.abs(createdAt * 1000 - config.nowMs())
    if (skewMs > config.createdAtWindowMs) {
      throw new InvalidInputError(`"created_at" ${createdAt} is ${Math.round(skewMs / 1000)} s from the hub's clock; it must be within ${Math.floor(config.createdAtWindowMs / 1000)} s: request a new payload`)
    }
    checkNextIdIdentity(publicKey, platform, identity)
    const avatar = avatarHex(publicKey)
    try {
      await acceptLink(config, { version: SIGN_PAYLOAD_VERSION, avatar, platform, identity, uuid, created_at: createdAt, patch, signature }, publicKey, {
        signal,
        afterSignature: async () => { await checkProof(config.proofService, publicKey, platform, identity, signal) }
      })
    } catch (err) {
      if (err instanceof RateLimitError) c.header('Retry-After', '1')
      throw err
    }
    return jsonText(c, 201, await avatarResponse(config, avatar))
  })
}

function jsonText (c: Context, status: 200 | 201, text: string): Response {
  return c.body(text, status, { 'Content-Type': 'application/json' })
}

/** The GET /v1/kv (and 201) body, in kv_server's field order. */
async function avatarResponse (config: NextIdConfig, avatar: string, options?: AbortOptions): Promise<string> {
  const proofs = (await listEntries(config.datastore, avatar, options)).map(entry =>
    '{"platform":' + JSON.stringify(entry.platform) +
    ',"identity":' + JSON.stringify(entry.identity) +
    ',"content":' + canonicalJson(entry.content) +
    // kv_server also reports where it mirrored the link on Arweave; this hub does not.
    ',"arweave_id":null}')
  const key = JSON.stringify('0x' + avatar)
  return '{"persona":' + key + ',"avatar":' + key + ',"proofs":[' + proofs.join(',') + ']}'
}
