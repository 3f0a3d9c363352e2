/**
 * Every failure UserSpace reports has a class here with a stable `name`. Callers (and tests) match on
 * `err.name`, never on message text; the hub maps names to HTTP statuses and the CLI maps them to exit
 * codes, each in one table (`HTTP_STATUS` and `EXIT_CODE` below).
 */

export class UserSpaceError extends Error {
  static readonly code: string = 'UserSpaceError'
  override name = 'UserSpaceError'
}

/** A value, key, option or request body has the wrong type or shape. */
export class InvalidInputError extends UserSpaceError {
  static override readonly code: string = 'InvalidInputError'
  override name = 'InvalidInputError'
}

/** A value, block, record, body or space is larger than its limit. */
export class TooLargeError extends UserSpaceError {
  static override readonly code: string = 'TooLargeError'
  override name = 'TooLargeError'
}

/** The wallet signature is malformed (length, v byte, r or s out of range). */
export class InvalidSignatureError extends UserSpaceError {
  static override readonly code: string = 'InvalidSignatureError'
  override name = 'InvalidSignatureError'
}

/** The signature is well formed but recovers to another address than the signer's. */
export class SignerMismatchError extends UserSpaceError {
  static override readonly code: string = 'SignerMismatchError'
  override name = 'SignerMismatchError'
}

/** The wallet refused to sign, or the signer object cannot sign. */
export class SignerError extends UserSpaceError {
  static override readonly code: string = 'SignerError'
  override name = 'SignerError'
}

/**
 * The wallet produced a signature that derives another space than the one already bound to its
 * address: it does not sign deterministically (some hardware, MPC and contract wallets).
 */
export class NonDeterministicSignerError extends UserSpaceError {
  static override readonly code: string = 'NonDeterministicSignerError'
  override name = 'NonDeterministicSignerError'
}

/** Decryption or a hash check failed: the bytes were changed, or belong to another space or key. */
export class IntegrityError extends UserSpaceError {
  static override readonly code: string = 'IntegrityError'
  override name = 'IntegrityError'
}

/** A block or record is not in the store (and, online, could not be found before the signal fired). */
export class NotFoundError extends UserSpaceError {
  static override readonly code: string = 'NotFoundError'
  override name = 'NotFoundError'
}

/** An IPNS record is malformed, badly signed, expired, oversized, or for another name. */
export class InvalidRecordError extends UserSpaceError {
  static override readonly code: string = 'InvalidRecordError'
  override name = 'InvalidRecordError'
}

/** A record has a lower sequence than one already seen (rollback), or a replayed request. */
export class ConflictError extends UserSpaceError {
  static override readonly code: string = 'ConflictError'
  override name = 'ConflictError'
  /** The record that won, when the store knows it (a marshalled IPNS record). */
  readonly record?: Uint8Array

  constructor (message: string, options?: ErrorOptions & { record?: Uint8Array }) {
    super(message, options)
    if (options?.record !== undefined) this.record = options.record
  }
}

/** A record has the same sequence as one already seen but another value. */
export class EquivocationError extends ConflictError {
  static override readonly code: string = 'EquivocationError'
  override name = 'EquivocationError'
}

/** The root block or section is of an unknown format version or shape. */
export class FormatError extends UserSpaceError {
  static override readonly code: string = 'FormatError'
  override name = 'FormatError'
}

/** The store (a hub, a helia node) failed or could not be reached. */
export class StoreError extends UserSpaceError {
  static override readonly code: string = 'StoreError'
  override name = 'StoreError'
}

/**
 * A hub answered something no honest hub sends: a body over the limit for its kind, an address
 * index entry that the named space's owner binding contradicts, a malformed answer. The message
 * names the hub, so that the user blames it rather than their wallet or their data.
 */
export class UntrustedHubError extends StoreError {
  static override readonly code: string = 'UntrustedHubError'
  override name = 'UntrustedHubError'
}

/** Another process (a hub) holds the data directory. */
export class DataDirectoryLockedError extends StoreError {
  static override readonly code: string = 'DataDirectoryLockedError'
  override name = 'DataDirectoryLockedError'
}

/** A request body of a media type the route does not take (HTTP 415). */
export class UnsupportedMediaTypeError extends InvalidInputError {
  static override readonly code: string = 'UnsupportedMediaTypeError'
  override name = 'UnsupportedMediaTypeError'
}

/** A response format the route cannot give (HTTP 406). */
export class NotAcceptableError extends InvalidInputError {
  static override readonly code: string = 'NotAcceptableError'
  override name = 'NotAcceptableError'
}

/** Too many requests from one client. */
export class RateLimitError extends UserSpaceError {
  static override readonly code: string = 'RateLimitError'
  override name = 'RateLimitError'
}

/** The hub is out of a shared resource (connections, streams, file descriptors) for now; retry later. */
export class UnavailableError extends UserSpaceError {
  static override readonly code: string = 'UnavailableError'
  override name = 'UnavailableError'
}

/** The hub's storage budget is spent: it stores nothing more until garbage collection frees some. */
export class InsufficientStorageError extends UserSpaceError {
  static override readonly code: string = 'InsufficientStorageError'
  override name = 'InsufficientStorageError'
}

/**
 * A condition the request set cannot be met: `Cache-Control: only-if-cached` for data the hub does
 * not hold (HTTP 412, as the path gateway spec says).
 */
export class PreconditionFailedError extends UserSpaceError {
  static override readonly code: string = 'PreconditionFailedError'
  override name = 'PreconditionFailedError'
}

/** A route the hub knows of but does not implement (HTTP 501, as the delegated routing spec says). */
export class NotImplementedError extends UserSpaceError {
  static override readonly code: string = 'NotImplementedError'
  override name = 'NotImplementedError'
}

/** The space was closed; no more reads or writes. */
export class ClosedError extends UserSpaceError {
  static override readonly code: string = 'ClosedError'
  override name = 'ClosedError'
}

/** The operation was aborted through its `signal`. */
export class AbortedError extends UserSpaceError {
  static override readonly code: string = 'AbortedError'
  override name = 'AbortedError'
}

/**
 * A space was closed (or could not publish) while writes were not yet taken by any store, and this
 * device keeps no durable state to publish them from later. `keys` lists them (`public:` before the
 * public section's keys).
 */
export class UnpublishedWritesError extends UserSpaceError {
  static override readonly code: string = 'UnpublishedWritesError'
  override name = 'UnpublishedWritesError'
  readonly keys: string[]
  constructor (message: string, options: { keys?: string[], cause?: unknown } = {}) {
    super(message, { cause: options.cause })
    this.keys = options.keys ?? []
  }
}

// Scoped app access
/** An app id, a namespace or a scope is malformed or names something unknown. */
export class InvalidScopeError extends InvalidInputError {
  static override readonly code: string = 'InvalidScopeError'
  override name = 'InvalidScopeError'
}

/** A write through a grant that may only read that namespace. */
export class ReadOnlyGrantError extends UserSpaceError {
  static override readonly code: string = 'ReadOnlyGrantError'
  override name = 'ReadOnlyGrantError'
}

/** A write grant to another app's namespace was asked for without the user's explicit approval. */
export class ApprovalRequiredError extends UserSpaceError {
  static override readonly code: string = 'ApprovalRequiredError'
  override name = 'ApprovalRequiredError'
}

/** An app id already granted to one origin was asked for by another (a replayed or phished request). */
export class OriginMismatchError extends UserSpaceError {
  static override readonly code: string = 'OriginMismatchError'
  override name = 'OriginMismatchError'
}

/** HTTP status per error name, used by the hub's single error handler. */
export const HTTP_STATUS: Readonly<Record<string, number>> = {
  InvalidInputError: 400,
  InvalidSignatureError: 400,
  SignerMismatchError: 400,
  SignerError: 400,
  NonDeterministicSignerError: 400,
  InvalidRecordError: 400,
  IntegrityError: 400,
  FormatError: 400,
  NotFoundError: 404,
  ConflictError: 409,
  EquivocationError: 409,
  TooLargeError: 413,
  UnsupportedMediaTypeError: 415,
  NotAcceptableError: 406,
  RateLimitError: 429,
  PreconditionFailedError: 412,
  NotImplementedError: 501,
  StoreError: 502,
  UntrustedHubError: 502,
  UnpublishedWritesError: 502,
  UnavailableError: 503,
  ClosedError: 503,
  DataDirectoryLockedError: 503,
  AbortedError: 504,
  InsufficientStorageError: 507,
  InvalidScopeError: 400,
  ReadOnlyGrantError: 403,
  ApprovalRequiredError: 403,
  OriginMismatchError: 403
}

/** Process exit code per error name, used by the CLI. 1 is anything unexpected. */
export const EXIT_CODE: Readonly<Record<string, number>> = {
  InvalidInputError: 2,
  InvalidSignatureError: 3,
  SignerMismatchError: 3,
  SignerError: 3,
  NonDeterministicSignerError: 3,
  NotFoundError: 4,
  IntegrityError: 5,
  InvalidRecordError: 5,
  FormatError: 5,
  ConflictError: 6,
  EquivocationError: 6,
  TooLargeError: 7,
  StoreError: 8,
  RateLimitError: 8,
  UnpublishedWritesError: 8,
  UnavailableError: 8,
  InsufficientStorageError: 8,
  AbortedError: 9,
  UntrustedHubError: 10,
  ClosedError: 11,
  DataDirectoryLockedError: 12,
  UnsupportedMediaTypeError: 2,
  NotAcceptableError: 2,
  PreconditionFailedError: 4,
  NotImplementedError: 8,
  InvalidScopeError: 2,
  ReadOnlyGrantError: 13,
  ApprovalRequiredError: 13,
  OriginMismatchError: 13
}

/** Rebuilds a named error from its name and message (as carried in a hub's JSON error body). */
export function errorFromName (name: string | undefined, message: string): UserSpaceError {
  const Ctor = ERRORS[name ?? ''] ?? StoreError
  return new Ctor(message)
}

const ERRORS: Record<string, new (message: string) => UserSpaceError> = {
  InvalidInputError,
  TooLargeError,
  InvalidSignatureError,
  SignerMismatchError,
  SignerError,
  NonDeterministicSignerError,
  IntegrityError,
  NotFoundError,
  InvalidRecordError,
  ConflictError,
  EquivocationError,
  FormatError,
  StoreError,
  UntrustedHubError,
  DataDirectoryLockedError,
  UnsupportedMediaTypeError,
  NotAcceptableError,
  RateLimitError,
  UnavailableError,
  InsufficientStorageError,
  ClosedError,
  AbortedError,
  UnpublishedWritesError,
  PreconditionFailedError,
  NotImplementedError,
  InvalidScopeError,
  ReadOnlyGrantError,
  ApprovalRequiredError,
  OriginMismatchError
}

/** Throws AbortedError if the signal has fired. */
export function throwIfAborted (signal?: AbortSignal): void {
  if (signal?.aborted === true) {
    throw new AbortedError(signal.reason instanceof Error ? signal.reason.message : 'The operation was aborted', { cause: signal.reason })
  }
}

/**
 * What a bad input was, for the "got …" half of a message: its type and size, never its content
 * (it may be a key or a signature).
 */
export function describeValue (value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (value instanceof Uint8Array) return `${value.length} bytes`
  if (Array.isArray(value)) return `an array of ${value.length}`
  if (typeof value === 'string') return value === '' ? 'an empty string' : `a string of ${value.length} characters`
  if (typeof value === 'object') return 'an object'
  return typeof value
}
