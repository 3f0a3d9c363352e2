import type { Json } from '../../src/index.js'

/** RFC 7396 MergePatch(Target, Patch), written from the RFC's pseudocode, as a test model. */
export function mergePatch (target: Json, patch: Json): Json {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch
  const out: Record<string, Json> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k] ?? null, v)
  }
  return out
}
