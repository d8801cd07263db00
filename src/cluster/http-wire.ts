import { InvalidKey, InvalidRequest, type ErrorDetails } from './errors.js';
import { isVersion } from './hlc.js';
import type { ReplicaRecord } from './types.js';

/**
 * The wire format of the HTTP replica protocol: what the gateway's
 * HttpReplicaTransport (http-transport.ts) and a KV server's replica API
 * (src/kv/replica-api.ts) must agree on, and the checks every replica front
 * end (HTTP, and the TCP server of src/kv/tcp-replica-server.ts) runs the
 * same way. The TCP protocol's counterpart is tcp-codec.ts.
 *
 *   GET  /internal/kv/<key>   200: body = value bytes; headers
 *                             x-flexstore-version, x-flexstore-tombstone (1|0),
 *                             x-flexstore-content-type. 404 KEY_NOT_FOUND when
 *                             the replica holds no record (a tombstone is a 200).
 *   PUT  /internal/kv/<key>   body = value bytes, same headers (version
 *                             required). 200 {"applied", "version"} once the
 *                             commit is on disk; version is the one held after.
 *   GET  /internal/keys?prefix=&after=&limit=
 *                             200 {"entries": [{key, version, tombstone}], "more"}
 *                             in JS string order (UTF-16 code units).
 *   POST /internal/hints      {"target", "keys"} → 200 {"stored"} (served by
 *                             src/kv/repair-api.ts, which KV servers use too).
 *
 * Keys travel percent-encoded (encodeURIComponent) as the rest of the path.
 * Errors are the one JSON error body of errors.ts.
 */

export const KV_PATH = '/internal/kv/';
export const KEYS_PATH = '/internal/keys';
export const HINTS_PATH = '/internal/hints';

export const HEADER_VERSION = 'x-flexstore-version';
export const HEADER_TOMBSTONE = 'x-flexstore-tombstone';
export const HEADER_CONTENT_TYPE = 'x-flexstore-content-type';

/** A value's content type when none was given; also the content type of every value body. */
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
export const JSON_CONTENT_TYPE = 'application/json';

/** Most entries in one replica list page (HTTP and TCP). */
export const MAX_LIST_LIMIT = 10_000;
export const DEFAULT_LIST_LIMIT = 1000;

/** The headers that carry a record beside its value bytes, request (PUT) and reply (GET) alike. */
export function recordHeaders(rec: ReplicaRecord): Record<string, string> {
  return {
    'content-type': DEFAULT_CONTENT_TYPE,
    [HEADER_VERSION]: rec.version,
    [HEADER_TOMBSTONE]: rec.tombstone ? '1' : '0',
    [HEADER_CONTENT_TYPE]: rec.contentType,
  };
}

/**
 * The key in a raw request URL: everything after `prefix` up to the query,
 * percent-decoded once. Read from the raw URL, never a router param, so that
 * `%2F`, `%3F` and repeated slashes mean exactly what the sender sent and a
 * key may hold any character. With maxKeyBytes (the gateway: a client's key)
 * its UTF-8 length is checked too, and every error names the limit.
 */
export function keyFromUrl(rawUrl: string, prefix: string, maxKeyBytes?: number): string {
  const limit = maxKeyBytes === undefined ? {} : { maxKeyBytes };
  const start = rawUrl.indexOf(prefix);
  if (start === -1) throw new InvalidKey('missing key', limit);
  const q = rawUrl.indexOf('?', start);
  const encoded = rawUrl.slice(start + prefix.length, q === -1 ? undefined : q);
  let key: string;
  try {
    key = decodeURIComponent(encoded);
  } catch (err) {
    throw new InvalidKey('key is not valid percent-encoded UTF-8', limit, { cause: err });
  }
  if (key.length === 0) throw new InvalidKey(`key is empty: use ${prefix}<key>`, limit);
  if (maxKeyBytes !== undefined) checkKeyBytes(key, maxKeyBytes);
  return key;
}

/** Throws InvalidKey, with these details and the limit, when key is longer than maxKeyBytes of UTF-8. */
export function checkKeyBytes(key: string, maxKeyBytes: number, details: ErrorDetails = {}): void {
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > maxKeyBytes) {
    throw new InvalidKey(`key is ${bytes} bytes; the limit is ${maxKeyBytes}`, { ...details, maxKeyBytes });
  }
}

/** limit if it is an integer from 1 to max; otherwise InvalidRequest with these details. */
export function checkLimit(limit: number, max: number, details: ErrorDetails): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new InvalidRequest(`limit must be an integer from 1 to ${max}`, details);
  }
  return limit;
}

/** version if it is one (hlc.ts); otherwise InvalidRequest naming where it came from. */
export function checkVersion(version: string | undefined, field: string): string {
  if (!isVersion(version)) {
    throw new InvalidRequest(`${field} must be a version like 0190a1b2c3d4.000000.gw-1`, { got: version ?? null });
  }
  return version;
}
