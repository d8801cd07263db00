import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidKey, InvalidRequest, KeyNotFound } from '../cluster/errors.js';
import { isVersion } from '../cluster/hlc.js';
import { rejectOtherMethods } from '../cluster/http-server.js';
import type { Storage } from './storage.js';

/**
 * The internal replica API a KV server offers to gateways. It exposes the
 * replica's raw records, tombstones and versions included; it does no
 * placement, quorum or clock work. Clients cannot write around versioning
 * through it: every write carries a version and only a newer one applies.
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
 *   GET  /health, /health-check[?gc=1]
 *                             200 {"status": "ok", "id", "keys", "memory": {rss,
 *                             heapUsed, heapTotal, external, arrayBuffers}} (bytes).
 *                             gc=1 collects garbage first when the process runs
 *                             with --expose-gc (the scale benchmark reads the live
 *                             heap so); otherwise it is ignored.
 *
 * Keys travel percent-encoded (encodeURIComponent) as the rest of the path.
 */

export const KV_PATH = '/internal/kv/';
export const KEYS_PATH = '/internal/keys';
export const HEADER_VERSION = 'x-flexstore-version';
export const HEADER_TOMBSTONE = 'x-flexstore-tombstone';
export const HEADER_CONTENT_TYPE = 'x-flexstore-content-type';
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
export const MAX_LIST_LIMIT = 10_000;
export const DEFAULT_LIST_LIMIT = 1000;

const EMPTY = Buffer.alloc(0);

export interface ReplicaApiOptions {
  storage: Storage;
  nodeId: string;
}

export function registerReplicaApi(app: FastifyInstance, opts: ReplicaApiOptions): void {
  const { storage, nodeId } = opts;

  // Values are opaque bytes whatever their content type, and this server has
  // no JSON-bodied routes, so one raw parser serves every request (a request
  // with no content-type too).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.get(`${KV_PATH}*`, async (req, reply) => {
    const key = keyFromUrl(req);
    const rec = storage.get(key);
    if (!rec) throw new KeyNotFound(key);
    reply
      .code(200)
      .header('content-type', 'application/octet-stream')
      .header(HEADER_VERSION, rec.version)
      .header(HEADER_TOMBSTONE, rec.tombstone ? '1' : '0')
      .header(HEADER_CONTENT_TYPE, rec.contentType);
    return reply.send(rec.value);
  });

  app.put(`${KV_PATH}*`, async (req, reply) => {
    const key = keyFromUrl(req);
    const version = singleHeader(req, HEADER_VERSION);
    if (!isVersion(version)) {
      throw new InvalidRequest(`${HEADER_VERSION} must be a version like 0190a1b2c3d4.000000.gw-1`, {
        got: version ?? null,
      });
    }
    const tombstoneHeader = singleHeader(req, HEADER_TOMBSTONE) ?? '0';
    if (tombstoneHeader !== '0' && tombstoneHeader !== '1') {
      throw new InvalidRequest(`${HEADER_TOMBSTONE} must be 1 or 0`, { got: tombstoneHeader });
    }
    const contentType = singleHeader(req, HEADER_CONTENT_TYPE) ?? DEFAULT_CONTENT_TYPE;
    const value = Buffer.isBuffer(req.body) ? req.body : EMPTY;
    const result = await storage.put(key, { value, version, tombstone: tombstoneHeader === '1', contentType });
    return reply.code(200).send(result);
  });

  app.get(KEYS_PATH, async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const prefix = stringParam(q, 'prefix') ?? '';
    const after = stringParam(q, 'after') ?? '';
    const limitText = stringParam(q, 'limit');
    const limit = limitText === undefined || limitText === '' ? DEFAULT_LIST_LIMIT : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new InvalidRequest(`limit must be an integer from 1 to ${MAX_LIST_LIMIT}`, { got: limitText });
    }
    return reply.code(200).send(storage.list({ prefix, after, limit }));
  });

  const health = async (req: FastifyRequest, reply: FastifyReply) => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc && (req.query as Record<string, unknown>).gc === '1') gc();
    const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
    const memory = { rss, heapUsed, heapTotal, external, arrayBuffers };
    return reply.code(200).send({ status: 'ok', id: nodeId, keys: storage.count(), memory });
  };
  app.get('/health', health);
  app.get('/health-check', health);

  rejectOtherMethods(app, `${KV_PATH}*`, ['GET', 'PUT']);
  rejectOtherMethods(app, KEYS_PATH, ['GET']);
  rejectOtherMethods(app, '/health', ['GET']);
  rejectOtherMethods(app, '/health-check', ['GET']);
}

/**
 * The key is everything after the prefix in the raw URL, so keys may hold any
 * character (slashes, '?', '#', '%') once percent-encoded; the router's own
 * decoding is never trusted with them.
 */
export function keyFromUrl(req: FastifyRequest): string {
  const url = req.raw.url ?? '';
  const start = url.indexOf(KV_PATH);
  if (start === -1) throw new InvalidKey('missing key');
  const q = url.indexOf('?', start);
  const encoded = url.slice(start + KV_PATH.length, q === -1 ? undefined : q);
  let key: string;
  try {
    key = decodeURIComponent(encoded);
  } catch (err) {
    throw new InvalidKey('key is not valid percent-encoded UTF-8', { raw: encoded.slice(0, 200) }, { cause: err });
  }
  if (key.length === 0) throw new InvalidKey('key must not be empty');
  return key;
}

function singleHeader(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  if (Array.isArray(v)) throw new InvalidRequest(`${name} given more than once`);
  return v;
}

function stringParam(q: Record<string, unknown>, name: string): string | undefined {
  const v = q[name];
  if (v === undefined || typeof v === 'string') return v;
  throw new InvalidRequest(`query parameter ${name} given more than once`);
}
