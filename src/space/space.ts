/**
 * The Space's front door: `openSpace` and the public types. A space is a user's key-value map,
 * opened from one wallet signature; see `default-space.ts` for how its parts fit (`writer.ts`,
 * `publisher.ts`, `merger.ts`), `state.ts` for what a device keeps between runs.
 */
export { openSpace } from './open.js'
export { DEFAULT_MAX_PUBLIC_BYTES, DEFAULT_MAX_SPACE_BYTES, DEFAULT_MAX_VALUE_BYTES } from './types.js'
export type * from './types.js'
