/**
 * The wire protocol a hub and its clients share: media types and HTTP paths. Browser-safe (no
 * `node:*`), so the hub, the client stores, the CLI and the demo import one spelling of each. Paths
 * that take a parameter are functions; route patterns for the hub's router sit beside them.
 */

/** The IPNS record media type (Delegated Routing V1, IPNS record spec). */
export const IPNS_RECORD_TYPE = 'application/vnd.ipfs.ipns-record'
/** Trustless gateway: one raw block. */
export const RAW_TYPE = 'application/vnd.ipld.raw'
/** Trustless gateway and uploads: a CAR (CARv1) stream of blocks. */
export const CAR_TYPE = 'application/vnd.ipld.car'
/** Live events. */
export const EVENT_STREAM_TYPE = 'text/event-stream'
export const JSON_TYPE = 'application/json'

/** Delegated Routing V1: an IPNS record by name. */
export const ipnsRecordPath = (name: string): string => `/routing/v1/ipns/${name}`
/** Trustless gateway: a block or a DAG by CID. */
export const ipfsPath = (cid: string): string => `/ipfs/${cid}`
/** Upload a CAR of blocks. */
export const BLOCKS_PATH = '/api/v1/blocks'
/** Server-sent events of a name's accepted records. */
export const eventsPath = (name: string): string => `/api/v1/events/${name}`
/**
 * The query a client adds to `eventsPath` to hear each version published in one request as a
 * `version` event: base64 of a CAR shaped like the publish body (its single root the record, as a
 * block of the `ipns-record` codec, then the blocks the publish carried), so that it reads the
 * update without fetching a block. Records that came without blocks, or whose event would be over
 * MAX_VERSION_EVENT_CHARS, still come as `record` events.
 */
export const VERSION_EVENTS_QUERY = 'with=blocks'
/**
 * Longest data of a `version` event, in base64 characters (12 KiB of CAR): a single-key update
 * (~2–4 KiB of blocks at 10 000–100 000 keys) and its record fit with room to spare. Small on
 * purpose: a stream that stops reading holds the event being written, and a hub has thousands of
 * streams.
 */
export const MAX_VERSION_EVENT_CHARS = 16 * 1024
/** The address index: a wallet address's IPNS name. */
export const addressPath = (address: string): string => `/api/v1/address/${address}`
/** Next.ID chains as CARs. */
export const NEXTID_EXPORT_PATH = '/api/v1/nextid/export'
export const NEXTID_IMPORT_PATH = '/api/v1/nextid/import'

// One-request publish: a CAR of blocks plus the signed IPNS record as a block of the `ipns-record` codec.
/** The `ipns-record` multicodec (0x0300): a publish CAR carries the marshalled record as a block of this codec. */
export const IPNS_RECORD_CODEC = 0x0300
/** Publish blocks and a record in one request (POST a CAR whose single root is the record block). */
export const publishPath = (name: string): string => `/api/v1/publish/${name}`

// Storage format 2: a version's current state under its root, one Trustless Gateway request away
/** The root field linking a version's state (profile, clock, bucket index tree): no history below it. */
export const CURRENT_VERSION_FIELD = 'current'
/** The path of a space's public profile (plain JSON) under its IPNS name: `ipns://<name>/public`. */
export const PUBLIC_PROFILE_PATH = 'public'
/** The CAR of a version's root and its whole current state, without the history behind `parents`. */
export const currentVersionPath = (root: string): string => `/ipfs/${root}/${CURRENT_VERSION_FIELD}?format=car&dag-scope=all`

// Scoped app access: the connect page every hub serves.
/** The connect page: a dapp opens it in a popup to ask the user for a grant. */
export const CONNECT_PATH = '/connect'

// Trustless gateway and delegated routing: providers, IPNS names on the gateway, streamed answers.
/** Delegated Routing V1: who provides a CID (this hub, for blocks it holds). */
export const providersPath = (cid: string): string => `/routing/v1/providers/${cid}`
/** Trustless gateway: an IPNS name's record (`?format=ipns-record`) or what it points at. */
export const ipnsPath = (name: string): string => `/ipns/${name}`
/** Delegated Routing V1: newline-delimited JSON, asked for with Accept. */
export const NDJSON_TYPE = 'application/x-ndjson'
// Hub clusters: libp2p pubsub topics between peered hubs (names of spaces travel on their IPNS-over-PubSub topics too).
/** Every record a hub accepts, as a dag-cbor `{ name, record, root?, replicas }` message. */
export const CLUSTER_RECORDS_TOPIC = '/userspace/hub/records/1.0.0'
/** "I hold this version": dag-cbor `{ name, sequence }`, published by a replica once it has every block. */
export const CLUSTER_HELD_TOPIC = '/userspace/hub/held/1.0.0'
/** Next.ID chain heads: dag-cbor `{ avatar, car }` with the avatar's chain, published after each accepted patch. */
export const CLUSTER_NEXTID_TOPIC = '/userspace/hub/nextid/1.0.0'
// Live updates between helia devices: a new version's small blocks ride with its record.
/** Prefix of a name's version topic (`/userspace/version/1.0.0/` + base64url of the IPNS routing key): dag-cbor `{ record, blocks: [[cid, bytes], …] }`, beside the plain IPNS-over-PubSub record. */
export const VERSION_TOPIC_PREFIX = '/userspace/version/1.0.0/'
// One round trip for a version between helia nodes (helia-dag.ts).
/** A libp2p protocol: a length-prefixed trustless-gateway CAR request path in, a varint status and a CARv1 (or a message) out. */
export const DAG_PROTOCOL = '/userspace/dag/1.0.0'
