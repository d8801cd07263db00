import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidRequest } from '../cluster/errors.js';
import { rejectOtherMethods } from '../cluster/http-server.js';
import { HINTS_PATH, checkLimit } from '../cluster/http-wire.js';
import type { TransferProgress } from '../cluster/types.js';
import type { KvMetrics } from './metrics.js';
import type { Storage } from './storage.js';
import {
  FETCH_BYTE_BUDGET,
  MAX_BATCH_KEYS,
  MAX_DIGEST_RANGES,
  MAX_ENTRIES_LIMIT,
  MSGPACK,
  SYNC_APPLY_PATH,
  SYNC_DIGESTS_PATH,
  SYNC_ENTRIES_PATH,
  SYNC_FETCH_PATH,
  SYNC_RANGE_PATH,
  SYNC_STATUS_PATH,
  decodeBody,
  hexToHash,
  objectBody,
  packr,
  parseRange,
  recordList,
  stringList,
  type RepairEntry,
  type RepairRecord,
} from './repair-wire.js';

/**
 * The internal API KV servers use to repair each other (anti-entropy, range
 * hand-off, hinted hand-off). Like the replica API it exposes raw records and
 * applies writes only by last-writer-wins, so a peer can never replace a
 * newer version with an older one.
 *
 *   POST /internal/sync/digests  {ranges: [[startHex, endHex], ...]}
 *                                → {digests: [hex16, ...]} in request order; a digest
 *                                is the XOR of the range's entry hashes (hash-index-codec.ts)
 *   POST /internal/sync/entries  {start, end, after?, limit}
 *                                → {entries: [{key, version, tombstone}], more}: the range's
 *                                keys in (hash, key) order, strictly after the key `after`
 *   POST /internal/sync/fetch    {keys} → {records: [{key, value, version, tombstone,
 *                                contentType}], next?}: the records it holds, in key order
 *                                of the request; `next` (an index into keys) when the
 *                                answer reached 4 MiB of values and the rest must be asked again
 *   POST /internal/sync/range    {start, end, after?, limit} → {raw: [[key, bytes]], more}:
 *                                the range's records as stored (record-codec.ts), in
 *                                (hash, key) order strictly after the key `after`; a page
 *                                ends at `limit` records or about 4 MiB. For a replica that
 *                                holds nothing in the range: one request per page instead
 *                                of entries + fetch, and no re-encoding; MessagePack only
 *   POST /internal/sync/apply    {records} → {applied, refused}: one LWW transaction,
 *                                durable before the answer; records whose version is
 *                                more than MAX_CLOCK_SKEW ahead of this server's clock
 *                                are not applied and are counted in refused; MessagePack only
 *   POST /internal/hints         {target, keys} → {stored}: durable hints that target
 *                                missed these keys (the gateway's hinted hand-off)
 *   GET  /internal/sync/status   → TransferProgress as JSON
 *
 * Request bodies may be MessagePack or JSON (by content-type); answers use
 * the request's encoding, except fetch, which always answers MessagePack.
 * In a closed cluster every route here needs a cluster signature, checked
 * before any handler runs (src/cluster/auth-hooks.ts); without TLS the
 * records still cross the network readable.
 */

export interface RepairApiOptions {
  storage: Storage;
  metrics: KvMetrics;
  progress: () => TransferProgress;
}

export function registerRepairApi(app: FastifyInstance, opts: RepairApiOptions): void {
  const { storage, metrics } = opts;

  app.post(SYNC_DIGESTS_PATH, async (req, reply) => {
    const { data, msgpack } = decode(req);
    const body = objectBody(data);
    if (!Array.isArray(body.ranges)) throw new InvalidRequest('ranges must be an array of [startHex, endHex]');
    if (body.ranges.length > MAX_DIGEST_RANGES) {
      throw new InvalidRequest(`at most ${MAX_DIGEST_RANGES} ranges per request`, { got: body.ranges.length });
    }
    const ranges = body.ranges.map((r, i) => parseRange(r, `ranges[${i}]`));
    // settled: true asks for digests of what was held a settle window ago
    // (recent-changes.ts); a peer that predates it ignores it and answers
    // current digests, which only costs the requester some needless listing.
    if (body.settled !== undefined && typeof body.settled !== 'boolean') throw new InvalidRequest('settled must be a boolean');
    return send(reply, { digests: storage.digests(ranges, body.settled === true) }, msgpack);
  });

  app.post(SYNC_ENTRIES_PATH, async (req, reply) => {
    const { data, msgpack } = decode(req);
    const { start, end, limit, after } = rangeQuery(objectBody(data));
    const page = storage.hashRangePage(start, end, limit, after === undefined ? {} : { after });
    const entries: RepairEntry[] = page.entries.map((e) => ({ key: e.key, version: e.version, tombstone: e.tombstone }));
    return send(reply, { entries, more: page.more }, msgpack);
  });

  app.post(SYNC_FETCH_PATH, async (req, reply) => {
    const body = objectBody(decode(req).data);
    const keys = stringList(body.keys, 'keys', MAX_BATCH_KEYS);
    const records: RepairRecord[] = [];
    let bytes = 0;
    let next: number | undefined;
    // Read key by key so an answer never holds much more than the budget.
    for (let i = 0; i < keys.length; i++) {
      // Always at least one record per answer, however large, so fetching progresses.
      if (bytes >= FETCH_BYTE_BUDGET && records.length > 0) {
        next = i;
        break;
      }
      const rec = storage.get(keys[i]!);
      if (!rec) continue;
      records.push({ key: keys[i]!, ...rec });
      bytes += rec.value.length;
    }
    metrics.streamed('out', records.length);
    return send(reply, next === undefined ? { records } : { records, next }, true);
  });

  app.post(SYNC_RANGE_PATH, async (req, reply) => {
    const body = objectBody(decode(req).data);
    const { start, end, limit, after } = rangeQuery(body);
    const raw: Array<[string, Buffer]> = [];
    let bytes = 0;
    let more = false;
    // One synchronous scan: the index and the records are read from one snapshot.
    storage.scanHashRangeRaw(start, end, (key, rec) => {
      // Always at least one record per answer, however large, so paging progresses.
      if (raw.length === limit || (bytes >= FETCH_BYTE_BUDGET && raw.length > 0)) {
        more = true;
        return false;
      }
      raw.push([key, rec]);
      bytes += rec.length;
    }, after === undefined ? {} : { after });
    metrics.streamed('out', raw.length);
    return send(reply, { raw, more }, true);
  });

  app.post(SYNC_APPLY_PATH, async (req, reply) => {
    const { data, msgpack } = decode(req);
    if (!msgpack) throw new InvalidRequest(`apply takes ${MSGPACK} bodies (values are bytes)`);
    const records = recordList(objectBody(data).records, 'records', MAX_BATCH_KEYS);
    // Records from the future are left out (storage.ts); the answer says how many.
    const { applied, refused } = await storage.putMany(records.map((r) => ({ key: r.key, rec: r })), 'sync_apply');
    metrics.streamed('in', records.length);
    return send(reply, { applied, refused }, msgpack);
  });

  app.post(HINTS_PATH, async (req, reply) => {
    const { data, msgpack } = decode(req);
    const body = objectBody(data);
    if (typeof body.target !== 'string') throw new InvalidRequest('target must be a member id');
    const keys = stringList(body.keys, 'keys', MAX_BATCH_KEYS);
    const stored = await storage.hints.add(body.target, keys);
    metrics.hintsStored.inc(stored);
    return send(reply, { stored }, msgpack);
  });

  app.get(SYNC_STATUS_PATH, async (_req, reply) => reply.code(200).send(opts.progress()));

  for (const path of [SYNC_DIGESTS_PATH, SYNC_ENTRIES_PATH, SYNC_FETCH_PATH, SYNC_RANGE_PATH, SYNC_APPLY_PATH, HINTS_PATH]) {
    rejectOtherMethods(app, path, ['POST']);
  }
  rejectOtherMethods(app, SYNC_STATUS_PATH, ['GET']);
}

/** {start, end, limit, after?} of an entries or range request. */
function rangeQuery(body: Record<string, unknown>): { start: bigint; end: bigint; limit: number; after?: string } {
  const start = hexToHash(body.start, 'start');
  const end = hexToHash(body.end, 'end');
  if (start > end) throw new InvalidRequest('start is after end');
  const limit = checkLimit(typeof body.limit === 'number' ? body.limit : NaN, MAX_ENTRIES_LIMIT, { got: body.limit ?? null });
  const after = body.after ?? undefined;
  if (after !== undefined && (typeof after !== 'string' || after === '')) {
    throw new InvalidRequest('after must be a non-empty key');
  }
  return after === undefined ? { start, end, limit } : { start, end, limit, after };
}

function decode(req: FastifyRequest): { data: unknown; msgpack: boolean } {
  const ct = req.headers['content-type'];
  return decodeBody(Array.isArray(ct) ? ct[0] : ct, req.body);
}

function send(reply: FastifyReply, body: object, msgpack: boolean): FastifyReply {
  if (!msgpack) return reply.code(200).send(body);
  return reply.code(200).header('content-type', MSGPACK).send(packr.pack(body));
}
