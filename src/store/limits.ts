/**
 * Limits every client store applies to what it reads from others (hubs, helia peers): one value per
 * concept, shared by hubStore and heliaStore, so a default means the same thing in both.
 */

/**
 * Block fetches in flight at once; more wait their turn. Each helia fetch opens streams (bitswap,
 * and a provider lookup outside a session); ~1 000 at once exhaust a yamux connection's stream limit
 * (1 000 by default) and the block requests are then never sent. @default 32
 */
export const DEFAULT_FETCH_CONCURRENCY = 32
/** Most blocks read in one `getDag`. @default 65 536 */
export const DEFAULT_MAX_DAG_BLOCKS = 65_536
/** Most bytes read in one `getDag`, after any content decoding (a hub's own default CAR cap). @default 64 MiB */
export const DEFAULT_MAX_DAG_BYTES = 64 * 1024 * 1024
