import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidRequest, KeyNotFound } from '../cluster/errors.js';
import { rejectOtherMethods } from '../cluster/http-server.js';
import {
  DEFAULT_CONTENT_TYPE,
  DEFAULT_LIST_LIMIT,
  HEADER_CONTENT_TYPE,
  HEADER_TOMBSTONE,
  HEADER_VERSION,
  KEYS_PATH,
  KV_PATH,
  MAX_LIST_LIMIT,
  checkLimit,
  checkVersion,
  keyFromUrl,
  recordHeaders,
} from '../cluster/http-wire.js';
import type { Storage } from './storage.js';

/**
 * The internal replica API a KV server offers to gateways (its wire format:
 * src/cluster/http-wire.ts). It exposes the replica's raw records, tombstones
 * and versions included; it does no placement, quorum or clock work. Clients
 * cannot write around versioning through it: every write carries a version
 * and only a newer one applies, and none more than MAX_CLOCK_SKEW ahead of
 * this server's clock (409 VERSION_FROM_FUTURE; storage.ts). While the storage
 * cannot commit, every write is answered 507 STORAGE_FULL and reads go on
 * (storage-health.ts). Beside the protocol's routes it serves:
 *
 *   GET  /health, /health-check[?gc=1]
 *                             200 {"status": "ok", "id", "keys", "storage": "ok"|"full",
 *                             "memory": {rss, heapUsed, heapTotal, external,
 *                             arrayBuffers}} (bytes). storage "full": the storage
 *                             cannot commit; writes are refused with 507
 *                             STORAGE_FULL, reads are served (storage-health.ts).
 *                             gc=1 collects garbage first when the process runs
 *                             with --expose-gc (the scale benchmark reads the live
 *                             heap so); otherwise it is ignored.
 */

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
    const key = keyFromUrl(req.raw.url ?? '', KV_PATH);
    const rec = storage.get(key);
    if (!rec) throw new KeyNotFound(key);
    return reply.code(200).headers(recordHeaders(rec)).send(rec.value);
  });

  app.put(`${KV_PATH}*`, async (req, reply) => {
    const key = keyFromUrl(req.raw.url ?? '', KV_PATH);
    const version = checkVersion(singleHeader(req, HEADER_VERSION), HEADER_VERSION);
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
    const limit = checkLimit(
      limitText === undefined || limitText === '' ? DEFAULT_LIST_LIMIT : Number(limitText),
      MAX_LIST_LIMIT,
      { got: limitText },
    );
    return reply.code(200).send(storage.list({ prefix, after, limit }));
  });

  const health = async (req: FastifyRequest, reply: FastifyReply) => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc && (req.query as Record<string, unknown>).gc === '1') gc();
    const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
    const memory = { rss, heapUsed, heapTotal, external, arrayBuffers };
    const full = storage.health.state === 'full';
    const state = full ? { storage: 'full', storageFullSince: storage.health.since, storageError: storage.health.fullCause } : { storage: 'ok' };
    return reply.code(200).send({ status: 'ok', id: nodeId, keys: storage.count(), ...state, memory });
  };
  app.get('/health', health);
  app.get('/health-check', health);

  rejectOtherMethods(app, `${KV_PATH}*`, ['GET', 'PUT']);
  rejectOtherMethods(app, KEYS_PATH, ['GET']);
  rejectOtherMethods(app, '/health', ['GET']);
  rejectOtherMethods(app, '/health-check', ['GET']);
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
