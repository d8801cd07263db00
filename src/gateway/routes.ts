import type { FastifyInstance, FastifyReply } from 'fastify';
import { InvalidRequest, KeyNotFound, Unavailable } from '../cluster/errors.js';
import { rejectOtherMethods } from '../cluster/http-server.js';
import { checkLimit, keyFromUrl } from '../cluster/http-wire.js';
import type { Consistency } from '../cluster/types.js';
import { listForToken } from './access.js';
import { registerBatchRoute } from './batch.js';
import type { GatewayConfig } from './config.js';
import type { ClockReport } from './clock-skew.js';
import type { ClusterView } from './cluster-view.js';
import type { Coordinator } from './coordinator.js';
import type { GatewayMetrics } from './metrics.js';

const CONSISTENCY = new Set<Consistency>(['one', 'quorum', 'all']);
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const MAX_LIST_LIMIT = 1000;

export interface RouteDeps {
  config: GatewayConfig;
  gatewayId: string;
  view: ClusterView;
  coordinator: Coordinator;
  metrics: GatewayMetrics;
  /** Clock skew between members (clock-skew.ts), for /cluster. Default: none known. */
  clocks?: () => ClockReport;
}

function consistencyOf(query: unknown, fallback: Consistency): Consistency {
  const c = (query as Record<string, unknown>).consistency;
  if (c === undefined) return fallback;
  if (typeof c !== 'string' || !CONSISTENCY.has(c as Consistency)) {
    throw new InvalidRequest('consistency must be one of one, quorum, all', { parameter: 'consistency' });
  }
  return c as Consistency;
}

/**
 * Response schemas: fastify compiles them into serializers (fast-json-stringify),
 * cheaper than JSON.stringify on the write path. Only the success statuses
 * have one; errors keep the shared error body of src/cluster/errors.ts.
 */
const WRITE_REPLY = {
  type: 'object',
  properties: { success: { type: 'boolean' }, key: { type: 'string' }, version: { type: 'string' } },
  required: ['success', 'key', 'version'],
} as const;
const LIST_REPLY = {
  type: 'object',
  properties: { keys: { type: 'array', items: { type: 'string' } }, next: { type: ['string', 'null'] } },
  required: ['keys', 'next'],
} as const;

function etag(version: string): string {
  return `"${version}"`;
}

export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { config, coordinator, view, metrics } = deps;

  // Values are opaque bytes whatever their content type: never parse them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: config.maxValueBytes }, (_req, body, done) =>
    done(null, body),
  );

  // A callback hook, not an async one: no promise per request.
  app.addHook('onResponse', (req, reply, done) => {
    metrics.observeRequest(req.routeOptions.url ?? 'unmatched', req.method, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  const replicasHeader = (reply: FastifyReply, ids: string[]) => reply.header('x-flexstore-replicas', ids.join(','));

  app.get('/kv/*', async (req, reply) => {
    const key = keyFromUrl(req.raw.url!, '/kv/', config.maxKeyBytes);
    const res = await coordinator.get(key, consistencyOf(req.query, config.defaultConsistency));
    replicasHeader(reply, res.replicas);
    const rec = res.record;
    if (!rec || rec.tombstone) throw new KeyNotFound(key);
    return reply
      .header('etag', etag(rec.version))
      .header('content-type', rec.contentType)
      .send(rec.value);
  });

  app.put('/kv/*', { schema: { response: { 201: WRITE_REPLY } } }, async (req, reply) => {
    const key = keyFromUrl(req.raw.url!, '/kv/', config.maxKeyBytes);
    const consistency = consistencyOf(req.query, config.defaultConsistency);
    const body = req.body;
    const value = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
    const contentType = req.headers['content-type'] || DEFAULT_CONTENT_TYPE;
    const res = await coordinator.put(key, value, contentType, consistency);
    replicasHeader(reply, res.replicas);
    return reply
      .code(201)
      .header('etag', etag(res.version))
      .send({ success: true, key, version: res.version });
  });

  app.delete('/kv/*', { schema: { response: { 200: WRITE_REPLY } } }, async (req, reply) => {
    const key = keyFromUrl(req.raw.url!, '/kv/', config.maxKeyBytes);
    const res = await coordinator.delete(key, consistencyOf(req.query, config.defaultConsistency));
    if (!res) throw new KeyNotFound(key);
    replicasHeader(reply, res.replicas);
    return reply.header('etag', etag(res.version)).send({ success: true, key, version: res.version });
  });
  rejectOtherMethods(app, '/kv/*', ['GET', 'PUT', 'DELETE']);

  app.get('/kv', { schema: { response: { 200: LIST_REPLY } } }, async (req) => {
    const q = req.query as Record<string, unknown>;
    consistencyOf(req.query, config.defaultConsistency);
    const prefix = stringParam(q, 'prefix', '');
    const after = stringParam(q, 'after', '');
    const limitRaw = stringParam(q, 'limit', '100');
    // Digits only: Number() alone would take '1e2' and ' 5'.
    const limit = checkLimit(/^\d+$/.test(limitRaw) ? Number(limitRaw) : NaN, MAX_LIST_LIMIT, { parameter: 'limit' });
    return listForToken(req.clientToken, prefix, after, limit, (p, a, l) => coordinator.list(p, a, l));
  });
  // `/kv/` alone names no key.
  rejectOtherMethods(app, '/kv', ['GET']);

  registerBatchRoute(app, {
    coordinator,
    limits: { maxKeyBytes: config.maxKeyBytes, maxValueBytes: config.maxValueBytes },
    consistencyOf: (query) => consistencyOf(query, config.defaultConsistency),
  });

  app.get('/health', async (_req, reply) => {
    const members = view.allMembers();
    const up = members.filter((m) => m.state === 'up').length;
    if (up === 0) {
      throw new Unavailable(
        view.hasView ? 'no KV server is up' : 'the gateway has no member view yet (registry unreachable)',
        { members: members.length, up },
      );
    }
    return reply.send({ status: 'ok', gateway: deps.gatewayId, members: members.length, up });
  });
  rejectOtherMethods(app, '/health', ['GET']);

  app.get('/cluster', async () => {
    const ownership = view.ownership();
    const now = Date.now();
    const clock = deps.clocks?.() ?? null;
    return {
      gateway: deps.gatewayId,
      registryUrl: config.registryUrl,
      index: view.index,
      epoch: view.epoch,
      replicationFactor: config.replicationFactor,
      defaultConsistency: config.defaultConsistency,
      vnodes: view.vnodeCount,
      changing: view.changing,
      pendingAcquirers: view.pendingAcquirers(),
      members: view.allMembers().map((m) => ({
        id: m.id,
        url: m.url,
        state: m.state,
        phase: m.phase ?? 'active',
        storage: m.storage ?? 'ok',
        suspect: view.isSuspect(m.url, now),
        lastHeartbeat: m.lastHeartbeat,
        ownership: ownership[m.id] ?? 0,
        transfer: m.transfer ?? null,
        clockOffsetMs: clock?.offsets[m.id] ?? null,
      })),
      clock: clock && { maxClockSkewMs: clock.maxClockSkewMs, gatewayOffsetMs: clock.gatewayOffsetMs, spreadMs: clock.spreadMs },
      clockSkewWarning: clock?.warning ?? null,
    };
  });
  rejectOtherMethods(app, '/cluster', ['GET']);

  app.get('/metrics', async (_req, reply) => {
    const states: Record<string, number> = { up: 0, down: 0, pending: 0, joining: 0, leaving: 0, storage_full: 0 };
    for (const m of view.allMembers()) {
      states[m.state]!++;
      if (m.phase === 'pending' || m.phase === 'joining' || m.phase === 'leaving') states[m.phase]!++;
      if (m.storage === 'full') states.storage_full!++;
    }
    for (const [state, n] of Object.entries(states)) metrics.members.set({ state }, n);
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  rejectOtherMethods(app, '/metrics', ['GET']);
}

function stringParam(q: Record<string, unknown>, name: string, fallback: string): string {
  const v = q[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'string') throw new InvalidRequest(`${name} must be given once`, { parameter: name });
  return v;
}
