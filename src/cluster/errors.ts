/**
 * The closed set of FlexStore errors. Every error a client can see is one of
 * these classes; `errorTable` maps each code to its HTTP status and its class,
 * and `toErrorBody` produces the one JSON shape every error response has:
 *
 *   {"success": false, "error": "<readable message>", "code": "<MACHINE_CODE>", ...details}
 *
 * The same codes travel between processes (an HTTP error body, a TCP ERROR
 * frame); `peerError` turns one received from a peer back into its class.
 * The internal errors at the end (ReplicaUnreachable, ProtocolError,
 * RegistryError) never reach a client as such: the caller turns them into
 * one of the classes above (a QuorumNotMet, say) or a start-up failure.
 */

export type ErrorCode =
  | 'INVALID_KEY'
  | 'INVALID_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'REQUEST_TIMEOUT'
  | 'HEADERS_TOO_LARGE'
  | 'OVERLOADED'
  | 'STORAGE_FULL'
  | 'KEY_NOT_FOUND'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'PAYLOAD_TOO_LARGE'
  | 'CONFLICT'
  | 'VERSION_FROM_FUTURE'
  | 'QUORUM_NOT_MET'
  | 'NO_MEMBERS'
  | 'UNAVAILABLE'
  | 'INTERNAL'
  | 'MEMBER_BOUND'
  | 'MEMBER_UNREACHABLE'
  | 'TOO_MANY_MEMBERS'
  | 'RATE_LIMITED';

export type ErrorDetails = Record<string, unknown>;

/**
 * code → HTTP status, and how an error of that code received from a peer
 * (message and details as the peer sent them) is made again. The only place
 * statuses are chosen. The arrows run only after the classes below exist.
 */
export const errorTable: Readonly<Record<ErrorCode, { status: number; make: (message: string, details: ErrorDetails) => FlexStoreError }>> = {
  INVALID_KEY: { status: 400, make: (m, d) => new InvalidKey(m, d) },
  INVALID_REQUEST: { status: 400, make: (m, d) => new InvalidRequest(m, d) },
  UNAUTHORIZED: { status: 401, make: (m, d) => new Unauthorized(m, d) },
  FORBIDDEN: { status: 403, make: (m, d) => new Forbidden(m, d) },
  REQUEST_TIMEOUT: { status: 408, make: (m, d) => new RequestTimeout(m, d) },
  HEADERS_TOO_LARGE: { status: 431, make: (m, d) => new HeadersTooLarge(m, d) },
  KEY_NOT_FOUND: { status: 404, make: (m, d) => withMessage(new KeyNotFound(String(d.key ?? ''), d), m) },
  NOT_FOUND: { status: 404, make: (m, d) => new RouteNotFound(m, d) },
  METHOD_NOT_ALLOWED: { status: 405, make: (m, d) => new MethodNotAllowed(m, d) },
  CONFLICT: { status: 409, make: (m, d) => new Conflict(m, d) },
  // 409, not 400: the version is well formed; it conflicts with the receiver's
  // clock, and the same write may be accepted once time has caught up. Being
  // a 4xx it also tells a gateway the replica is up (errors.ts peerError).
  VERSION_FROM_FUTURE: { status: 409, make: (m, d) => new VersionFromFuture(m, d) },
  PAYLOAD_TOO_LARGE: { status: 413, make: (m, d) => new PayloadTooLarge(m, d) },
  INTERNAL: { status: 500, make: (m, d) => new InternalError(m, d) },
  QUORUM_NOT_MET: {
    status: 503,
    make: (m, d) => withMessage(new QuorumNotMet('', Number(d.required), Number(d.answered), d), m),
  },
  NO_MEMBERS: { status: 503, make: (m, d) => new NoMembers(m, d) },
  UNAVAILABLE: { status: 503, make: (m, d) => new Unavailable(m, d) },
  MEMBER_BOUND: { status: 409, make: (m, d) => new MemberBound(m, d) },
  MEMBER_UNREACHABLE: { status: 422, make: (m, d) => new MemberUnreachable(m, d) },
  TOO_MANY_MEMBERS: { status: 503, make: (m, d) => new TooManyMembers(m, d) },
  RATE_LIMITED: { status: 429, make: (m, d) => new RateLimited(m, d) },
  // 503 like QUORUM_NOT_MET: the request was fine and a retry after
  // Retry-After may succeed. Coming from a peer it is that peer's failure.
  OVERLOADED: { status: 503, make: (m, d) => new Overloaded(m, d) },
  // 507: the replica is up and serving reads but cannot commit; a gateway
  // counts it as a replica that failed the write (peerError: a 5xx).
  STORAGE_FULL: { status: 507, make: (m, d) => new StorageFull(m, d) },
};

export abstract class FlexStoreError extends Error {
  abstract readonly code: ErrorCode;
  readonly details: ErrorDetails;
  constructor(message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.details = details;
  }
  get status(): number {
    return errorTable[this.code].status;
  }
}

/** The key is empty, longer than MAX_KEY_BYTES, or not valid percent-encoded UTF-8. */
export class InvalidKey extends FlexStoreError {
  readonly code = 'INVALID_KEY' as const;
}
/** A malformed body, query parameter or header. */
export class InvalidRequest extends FlexStoreError {
  readonly code = 'INVALID_REQUEST' as const;
}
/**
 * The request lacks the credential its route needs: a valid cluster
 * signature (cluster-auth.ts) or the admin token. The message names which
 * check failed and nothing more.
 */
export class Unauthorized extends FlexStoreError {
  readonly code = 'UNAUTHORIZED' as const;
}
/**
 * The client's token is valid but its role or key prefixes do not allow this
 * operation on this key (gateway client tokens). Details name the key or item.
 */
export class Forbidden extends FlexStoreError {
  readonly code = 'FORBIDDEN' as const;
}
/** The request's headers or body did not arrive within REQUEST_TIMEOUT_MS; the connection is closed. */
export class RequestTimeout extends FlexStoreError {
  readonly code = 'REQUEST_TIMEOUT' as const;
}
/** The request line and headers are larger than the server reads (Node's 16 KiB); a long key is the usual cause. */
export class HeadersTooLarge extends FlexStoreError {
  readonly code = 'HEADERS_TOO_LARGE' as const;
}
/** The gateway holds MAX_INFLIGHT_BYTES of request bodies already; retry after the Retry-After header. */
export class Overloaded extends FlexStoreError {
  readonly code = 'OVERLOADED' as const;
}
/**
 * The KV server's storage cannot commit (disk full, I/O error, LMDB map
 * full). It keeps serving reads and takes writes again once a commit succeeds.
 */
export class StorageFull extends FlexStoreError {
  readonly code = 'STORAGE_FULL' as const;
}
/** The key has no live value (never written, or deleted). */
export class KeyNotFound extends FlexStoreError {
  readonly code = 'KEY_NOT_FOUND' as const;
  constructor(key: string, details: ErrorDetails = {}) {
    super(`key not found: ${JSON.stringify(key)}`, { key, ...details });
  }
}
/** No such route. */
export class RouteNotFound extends FlexStoreError {
  readonly code = 'NOT_FOUND' as const;
}
export class MethodNotAllowed extends FlexStoreError {
  readonly code = 'METHOD_NOT_ALLOWED' as const;
}
/** The request contradicts the cluster's state (e.g. a removed member heartbeating again). */
export class Conflict extends FlexStoreError {
  readonly code = 'CONFLICT' as const;
}
/**
 * A version more than MAX_CLOCK_SKEW ahead of the receiver's clock: refused so
 * that a forged version or a skewed clock cannot shadow later writes. Details:
 * version, aheadMs, maxClockSkewMs.
 */
export class VersionFromFuture extends FlexStoreError {
  readonly code = 'VERSION_FROM_FUTURE' as const;
}
export class PayloadTooLarge extends FlexStoreError {
  readonly code = 'PAYLOAD_TOO_LARGE' as const;
}
/** Fewer replicas answered than the consistency level requires. */
export class QuorumNotMet extends FlexStoreError {
  readonly code = 'QUORUM_NOT_MET' as const;
  constructor(op: string, required: number, answered: number, details: ErrorDetails = {}) {
    super(
      `${op} needs ${required} replica(s) but only ${answered} answered`,
      { required, answered, ...details },
    );
  }
}
/** The gateway knows no KV servers at all. */
export class NoMembers extends FlexStoreError {
  readonly code = 'NO_MEMBERS' as const;
}
/** The server cannot serve right now (shutting down, not ready). */
export class Unavailable extends FlexStoreError {
  readonly code = 'UNAVAILABLE' as const;
}
export class InternalError extends FlexStoreError {
  readonly code = 'INTERNAL' as const;
}
/** A registration of a member id at another URL, or of another id at a member's URL (registry). */
export class MemberBound extends FlexStoreError {
  readonly code = 'MEMBER_BOUND' as const;
}
/** A registered URL did not answer its health check, so it may not join (registry). */
export class MemberUnreachable extends FlexStoreError {
  readonly code = 'MEMBER_UNREACHABLE' as const;
}
/** The registry holds MAX_MEMBERS members; a new one is refused. */
export class TooManyMembers extends FlexStoreError {
  readonly code = 'TOO_MANY_MEMBERS' as const;
}
/** Too many unauthenticated requests from one source address; retry after the Retry-After header. */
export class RateLimited extends FlexStoreError {
  readonly code = 'RATE_LIMITED' as const;
}

export interface ErrorBody {
  success: false;
  error: string;
  code: ErrorCode;
  [detail: string]: unknown;
}

/** success, error and code first (as the README shows them), then the details; a detail never overrides them. */
export function toErrorBody(err: FlexStoreError): ErrorBody {
  const body: ErrorBody = { success: false, error: err.message, code: err.code };
  for (const [k, v] of Object.entries(err.details)) if (!(k in body)) body[k] = v;
  return body;
}

/**
 * Maps anything thrown inside a request handler to a FlexStoreError, including
 * fastify's own errors (body too large, bad JSON, bad content length), so that
 * no error ever reaches a client in another shape.
 */
export function normalizeError(err: unknown): FlexStoreError {
  if (err instanceof FlexStoreError) return err;
  if (err instanceof ProtocolError) return new InvalidRequest(err.message, {}, { cause: err });
  const e = err as { code?: string; statusCode?: number; message?: string } | undefined;
  const message = e?.message ?? String(err);
  switch (e?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new PayloadTooLarge('request body is larger than the limit', {}, { cause: err });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_EMPTY_TYPE':
    case 'FST_ERR_CTP_INVALID_TYPE':
    case 'FST_ERR_VALIDATION':
      return new InvalidRequest(message, {}, { cause: err });
  }
  if (e?.statusCode === 413) return new PayloadTooLarge(message, {}, { cause: err });
  if (e?.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
    return new InvalidRequest(message, {}, { cause: err });
  }
  return new InternalError(message, {}, { cause: err });
}

function withMessage<E extends FlexStoreError>(err: E, message: string): E {
  err.message = message;
  return err;
}

/** How much of a peer's error text a transport keeps in the error it raises (HTTP and TCP alike). */
export const MAX_ERROR_TEXT = 500;

/**
 * What a peer's error answer means to the caller. `answer` says what came
 * back ("PUT answered 400: INVALID_KEY key is empty"); `code` and `details`
 * are the FlexStore code and details in it, when it had them.
 *
 * A code that blames the request (a 4xx) comes back as its own class: the
 * peer is up and asking it again would get the same answer, so the caller
 * must not count the peer as down. Everything else means this peer cannot
 * serve the call: its own failure (a 5xx code), a route it does not have
 * (NOT_FOUND, METHOD_NOT_ALLOWED: not a compatible KV server), a refused
 * cluster signature (UNAUTHORIZED: the two hold different secrets), or no
 * code at all. That is a ReplicaUnreachable, with the peer's error as its cause.
 * Either way the message is the same: the node URL and the answer.
 */
export function peerError(
  nodeUrl: string,
  answer: string,
  code?: string,
  details: ErrorDetails = {},
): FlexStoreError | ReplicaUnreachable {
  const known = code !== undefined && Object.hasOwn(errorTable, code) ? errorTable[code as ErrorCode] : undefined;
  const err = known?.make(`${nodeUrl}: ${answer}`, details);
  // UNAUTHORIZED blames this process's secret, not the client's request: the
  // peer cannot serve it, and a client must not be told it is unauthorized.
  if (err && err.status < 500 && !(err instanceof RouteNotFound) && !(err instanceof MethodNotAllowed) && !(err instanceof Unauthorized)) {
    return err;
  }
  return new ReplicaUnreachable(nodeUrl, answer, err && { cause: err });
}

// ---- internal errors: between FlexStore processes, never a client's answer ----

/**
 * A replica or peer could not serve a call: no connection, no answer before
 * the deadline, a failure of its own, or an answer the protocol does not
 * allow. Callers count it as a missing replica (and, on the gateway, suspect
 * the node for a moment).
 */
export class ReplicaUnreachable extends Error {
  constructor(
    readonly nodeUrl: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${nodeUrl}: ${message}`, options);
    this.name = 'ReplicaUnreachable';
  }
}

/** The peer broke the TCP framing or sent a body that does not parse; the connection must close. */
export class ProtocolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProtocolError';
  }
}

/** A registry call failed. `status` is the HTTP status, or undefined when no answer came. */
export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RegistryError';
  }
}
