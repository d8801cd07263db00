/**
 * The closed set of FlexStore errors. Every error a client can see is one of
 * these classes; `errorTable` maps each code to its HTTP status, and
 * `toErrorBody` produces the one JSON shape every error response has:
 *
 *   {"success": false, "error": "<readable message>", "code": "<MACHINE_CODE>", ...details}
 */

export type ErrorCode =
  | 'INVALID_KEY'
  | 'INVALID_REQUEST'
  | 'KEY_NOT_FOUND'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'PAYLOAD_TOO_LARGE'
  | 'CONFLICT'
  | 'QUORUM_NOT_MET'
  | 'NO_MEMBERS'
  | 'UNAVAILABLE'
  | 'UNAUTHORIZED'
  | 'REPLICA_ERROR'
  | 'INTERNAL';

/** code → HTTP status. The only place statuses are chosen. */
export const errorTable: Readonly<Record<ErrorCode, number>> = {
  INVALID_KEY: 400,
  INVALID_REQUEST: 400,
  UNAUTHORIZED: 401,
  KEY_NOT_FOUND: 404,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  INTERNAL: 500,
  REPLICA_ERROR: 502,
  QUORUM_NOT_MET: 503,
  NO_MEMBERS: 503,
  UNAVAILABLE: 503,
};

export type ErrorDetails = Record<string, unknown>;

export abstract class FlexStoreError extends Error {
  abstract readonly code: ErrorCode;
  readonly details: ErrorDetails;
  constructor(message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.details = details;
  }
  get status(): number {
    return errorTable[this.code];
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
export class Unauthorized extends FlexStoreError {
  readonly code = 'UNAUTHORIZED' as const;
}
/** A replica answered with something the protocol does not allow. */
export class ReplicaError extends FlexStoreError {
  readonly code = 'REPLICA_ERROR' as const;
}
export class InternalError extends FlexStoreError {
  readonly code = 'INTERNAL' as const;
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
