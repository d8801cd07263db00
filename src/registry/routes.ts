import type { ClusterSecurity } from '../cluster/security.js';
import type { AuthLevel, RefusalCounts } from '../cluster/auth-hooks.js';
import { pathOf } from '../cluster/http-server.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InternalError, InvalidRequest, RateLimited, RouteNotFound, Unavailable, toErrorBody } from '../cluster/errors.js';
import { rejectOtherMethods } from '../cluster/http-server.js';
import type { MemberView, TransferProgress } from '../cluster/types.js';
import type { RegistryConfig } from './config.js';
import { ProbeBusy, healthProbe, type HealthProbe } from './health-probe.js';
import { MEMBER_ID_PATTERN } from './member-id.js';
import type { MemberTable } from './members.js';
import { RateLimiter } from './rate-limit.js';

/**
 * The registry's HTTP API.
 *
 *   POST /register, POST /heartbeat   {"node_url", "id"?, "tcp_port"?, "transfer"?, "clock_ms"?, "storage"?} → {"success", "id", "node_url", "index"}
 *                                     clock_ms: the member's clock; kept as clockOffsetMs (its clock minus ours)
 *                                     storage: "ok" or "full" (its storage cannot commit); a change moves the index
 *                                     409 CONFLICT for a removed member or one down past the tombstone grace
 *                                     409 MEMBER_BOUND for an id at another url, or another id at a member's url
 *                                     422 MEMBER_UNREACHABLE when a new url does not answer GET <url>/health
 *                                     503 TOO_MANY_MEMBERS beyond MAX_MEMBERS
 *   GET  /nodes[?index=n&wait=s]      → MemberView (with clockMs: this registry's clock as it answers);
 *                                     blocks while index <= n, up to wait seconds
 *   DELETE|POST /deregister           {"node_url"} or {"id"}, "force"? → {"success", "id", "index", "phase"}
 *                                     an active member starts leaving; it is removed once its ranges moved
 *   GET  /health                      → {"status", "members", "up", "index", "authRefused": {reason: count}}
 *
 * Credentials (registryProtection; checked only when the registry has a
 * cluster secret or an admin token): register and heartbeat need a cluster
 * signature, deregister the admin token or a cluster signature; GET /nodes
 * and GET /health are open. A refusal is 401 UNAUTHORIZED, counted in
 * /health's authRefused (the registry has no /metrics).
 *
 * Every successful answer carries X-FlexStore-Index, the table's index after
 * the request; error answers need not.
 *
 * Register, heartbeat and deregister calls that are not authenticated
 * (clusterAuth is neither 'member' nor 'admin') are rate-limited per source
 * address, except a heartbeat of a known member at its own url: over the
 * limit, 429 RATE_LIMITED with Retry-After, decided before any table work.
 * GET /nodes and GET /health are never limited (gateways and operators read them).
 */

export const INDEX_HEADER = 'x-flexstore-index';

export interface RegistryRouteDeps {
  table: MemberTable;
  config: Pick<RegistryConfig, 'maxWaitSeconds'>;
  /**
   * Writes the current member list to disk. Called without awaiting on joins
   * (a lost join is re-taught by the next heartbeat) and awaited on
   * deregistration (a lost removal would bring a decommissioned member back).
   */
  persist(): Promise<void>;
  /** Cluster secrets (security.ts): members prove one on register and heartbeat. Default: open. */
  security?: ClusterSecurity;
  /** Unauthenticated calls per second and burst per source address (0 = no limit). Default: no limit. */
  limits?: { ratePerSec: number; burst: number };
  /** Health check of a new url; default: GET <url>/health (health-probe.ts). Tests inject one. */
  probe?: HealthProbe;
  /** Requests refused for their credential, shown in /health. */
  refusals?: RefusalCounts;
}

/**
 * The credential each registry request needs (auth-hooks.ts). What is open
 * is listed; everything else, unknown paths included, needs a signature.
 */
export function registryProtection(method: string, url: string): AuthLevel {
  const path = pathOf(url);
  if ((path === '/nodes' || path === '/health') && (method === 'GET' || method === 'HEAD')) return 'open';
  if (path === '/deregister') return 'admin';
  return 'member';
}

export interface RegistryRoutes {
  /** Resolves when every blocked GET /nodes has sent its answer. */
  watchesSettled(): Promise<void>;
  /** Releases the health probe's connections. */
  close(): Promise<void>;
}

export function registerRegistryRoutes(app: FastifyInstance, deps: RegistryRouteDeps): RegistryRoutes {
  const { table } = deps;
  const openWatches = new Set<Promise<void>>();

  // `curl -d` sends form-urlencoded by default; every body here is JSON, whatever it is labelled.
  // The raw bytes stay on the request: a cluster signature covers them
  // (auth-hooks.ts). fastify's own JSON parser would drop them, so this one
  // parser serves every content type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
    req.rawBody = body as Buffer;
    try {
      done(null, (body as Buffer).length === 0 ? undefined : JSON.parse((body as Buffer).toString('utf8')));
    } catch (err) {
      done(new InvalidRequest('request body is not valid JSON', {}, { cause: err }), undefined);
    }
  });

  const defaultProbe = deps.probe ? undefined : healthProbe(deps.security);
  const probe: HealthProbe = deps.probe ?? defaultProbe!;
  const limiter = new RateLimiter(deps.limits ?? { ratePerSec: 0, burst: 0 });

  /** preHandler of every state-changing route: the body is parsed, nothing else has run. */
  const limit = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!limiter.enabled || authenticated(req) || isKnownHeartbeat(req)) return;
    const waitMs = limiter.take(req.ip, Date.now());
    if (waitMs === 0) return;
    // Answered here rather than thrown: under a flood this is the hot path, and the error handler's work is wasted on it.
    const err = new RateLimited(`too many unauthenticated registry calls from ${req.ip}; retry later`, { retryAfterMs: waitMs });
    return reply
      .code(err.status)
      .header('retry-after', String(Math.max(1, Math.ceil(waitMs / 1000))))
      .header('content-type', 'application/json; charset=utf-8')
      .send(toErrorBody(err));
  };
  const isKnownHeartbeat = (req: FastifyRequest): boolean => {
    if (req.method !== 'POST' || (req.url !== '/register' && req.url !== '/heartbeat')) return false;
    const b = req.body as Record<string, unknown> | undefined;
    if (typeof b !== 'object' || b === null || typeof b.node_url !== 'string') return false;
    if (b.id !== undefined && typeof b.id !== 'string') return false;
    return table.isKnownAt(b.id as string | undefined, b.node_url.replace(/\/+$/, ''));
  };

  const register = async (req: FastifyRequest, reply: FastifyReply) => {
    const body = bodyObject(req.body);
    const url = nodeUrl(body.node_url, true)!;
    const id = memberId(body.id);
    const transfer = transferProgress(body.transfer);
    const tcpPort = optionalPort(body.tcp_port);
    const storage = storageState(body.storage);
    const now = Date.now();
    const clockMs = body.clock_ms;
    const clockOffsetMs = typeof clockMs === 'number' && Number.isFinite(clockMs) ? Math.round(clockMs - now) : undefined;
    const r = {
      url,
      ...(id !== undefined && { id }),
      ...(transfer && { transfer }),
      ...(tcpPort !== undefined && { tcpPort }),
      ...(clockOffsetMs !== undefined && { clockOffsetMs }),
      ...(storage !== undefined && { storage }),
      authenticated: req.clusterAuth === 'member',
    };
    if (table.admit(r, now) === 'new-url') {
      try {
        await probe(url);
      } catch (err) {
        if (!(err instanceof ProbeBusy)) throw err;
        reply.header('retry-after', '1');
        throw new Unavailable('the registry is checking other new members; retry the registration', {}, { cause: err });
      }
    }
    const result = table.register(r, Date.now());
    reply.header(INDEX_HEADER, String(table.index));
    return { success: true, id: result.member.id, node_url: result.member.url, index: table.index };
  };
  app.post('/register', { preHandler: limit }, register);
  app.post('/heartbeat', { preHandler: limit }, register);

  const deregister = async (req: FastifyRequest, reply: FastifyReply) => {
    const body = bodyObject(req.body);
    const url = nodeUrl(body.node_url, false);
    const id = memberId(body.id);
    if (url === undefined && id === undefined) throw new InvalidRequest('give "node_url" or "id" of the member to remove');
    const q = { ...(id !== undefined && { id }), ...(url !== undefined && { url }) };
    const force = body.force === true || (req.query as Record<string, unknown>)?.force === 'true';
    const removed = table.remove(q, { force });
    if (!removed) {
      const what = [id !== undefined && `id ${JSON.stringify(id)}`, url !== undefined && `node_url ${url}`]
        .filter(Boolean)
        .join(' and ');
      throw new RouteNotFound(`no member with ${what}`, q);
    }
    reply.header(INDEX_HEADER, String(table.index));
    const removedId = removed.member.id;
    try {
      await deps.persist();
    } catch (err) {
      // The removal is in effect until the registry restarts, and then it is lost.
      throw new InternalError(
        `member ${removedId} was deregistered but the member file could not be written; retry the deregistration`,
        { id: removedId },
        { cause: err },
      );
    }
    return {
      success: true,
      id: removedId,
      index: table.index,
      phase: removed.removedNow ? 'removed' : 'leaving',
    };
  };
  app.delete('/deregister', { preHandler: limit }, deregister);
  app.post('/deregister', { preHandler: limit }, deregister);

  app.get('/nodes', async (req, reply) => {
    const { index, waitSeconds } = watchQuery(req.query, deps.config.maxWaitSeconds);
    // An index above the current one was issued by an earlier incarnation of
    // the registry; answer at once so the watcher resyncs instead of waiting
    // for a number this incarnation may never reach.
    if (index !== undefined && index === table.index && waitSeconds > 0) {
      const ac = new AbortController();
      const onClose = (): void => ac.abort();
      reply.raw.once('close', onClose);
      // 'finish' once the answer is handed to the socket, 'close' if the client left first.
      const settled = new Promise<void>((resolve) => {
        reply.raw.once('finish', resolve);
        reply.raw.once('close', resolve);
      });
      openWatches.add(settled);
      void settled.then(() => openWatches.delete(settled));
      try {
        await table.waitForChange(index, waitSeconds * 1000, ac.signal);
      } finally {
        reply.raw.off('close', onClose);
      }
    }
    const view: MemberView = { ...table.view(), clockMs: Date.now() };
    reply.header(INDEX_HEADER, String(view.index));
    return view;
  });

  app.get('/health', async (_req, reply) => {
    reply.header(INDEX_HEADER, String(table.index));
    return {
      status: 'ok',
      members: table.size,
      up: table.upCount,
      index: table.index,
      ...(deps.refusals && { authRefused: deps.refusals.byReason }),
    };
  });

  rejectOtherMethods(app, '/register', ['POST']);
  rejectOtherMethods(app, '/heartbeat', ['POST']);
  rejectOtherMethods(app, '/deregister', ['DELETE', 'POST']);
  rejectOtherMethods(app, '/nodes', ['GET']);
  rejectOtherMethods(app, '/health', ['GET']);

  return {
    async watchesSettled() {
      await Promise.all([...openWatches]);
    },
    async close() {
      await defaultProbe?.close();
    },
  };
}

/** Proved the cluster secret or the admin credential (set by createHttpServer's auth hook; absent in an open cluster). */
function authenticated(req: FastifyRequest): boolean {
  return req.clusterAuth === 'member' || req.clusterAuth === 'admin';
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidRequest('request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

/**
 * Validates node_url and strips trailing slashes, so that http://h:1/ and
 * http://h:1 are one member. The rest is kept as sent: it is the address the
 * KV server chose to be reached at.
 *
 * The URL parser repairs much of what it is given (`http:/h:1`, ` http://h:1 `,
 * `http:\\h:1` all read as http://h:1), but the table compares urls as written:
 * a repaired spelling would be a second member at the same address, past the
 * id↔url binding. So the url must be written out in full, as
 * WELL_FORMED_URL says. No credentials (GET /nodes is open and would publish
 * them), no query or fragment (paths are appended to the url). Known gap:
 * spellings the parser normalizes but does not repair (HTTP://, an explicit
 * default port, IPv6 written longhand) still count as distinct urls.
 */
const WELL_FORMED_URL = /^https?:\/\/[^\x00-\x20\x7f/\\?#@]+(?:\/[^\x00-\x20\x7f\\?#]*)?$/i;

function nodeUrl(value: unknown, required: boolean): string | undefined {
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value === '') throw new InvalidRequest('"node_url" must be an http(s) URL string');
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch (err) {
    throw new InvalidRequest(`"node_url" is not a URL: ${JSON.stringify(value)}`, {}, { cause: err });
  }
  if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.hostname === '') {
    throw new InvalidRequest(`"node_url" must be an http(s) URL, got ${JSON.stringify(value)}`);
  }
  if (!WELL_FORMED_URL.test(value)) {
    throw new InvalidRequest(
      `"node_url" must be written out as scheme://host[:port][/path], without spaces, credentials, query or fragment; got ${JSON.stringify(value)}`,
    );
  }
  return value.replace(/\/+$/, '');
}

/** The transfer progress a KV server reports in its heartbeat; ignored when malformed. */
function transferProgress(value: unknown): TransferProgress | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : 0);
  // JSON's 1e400 parses to Infinity: kept, it would read as synced to every future epoch and reach GET /nodes as null.
  if (typeof v.syncedEpoch !== 'number' || !Number.isFinite(v.syncedEpoch)) return undefined;
  const out: TransferProgress = {
    syncedEpoch: v.syncedEpoch,
    rangesTotal: num(v.rangesTotal),
    rangesDone: num(v.rangesDone),
    keysMoved: num(v.keysMoved),
    keysMovedTotal: num(v.keysMovedTotal),
  };
  if (v.hintsPending !== undefined) out.hintsPending = num(v.hintsPending);
  return out;
}

/** A KV server's storage state; absent from servers that predate it (taken as ok). */
function storageState(value: unknown): 'ok' | 'full' | undefined {
  if (value === undefined || value === null) return undefined;
  if (value !== 'ok' && value !== 'full') throw new InvalidRequest('"storage" must be "ok" or "full"');
  return value;
}

function optionalPort(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new InvalidRequest('"tcp_port" must be an integer from 1 to 65535');
  }
  return value;
}

function memberId(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !MEMBER_ID_PATTERN.test(value)) {
    throw new InvalidRequest('"id" must be 1 to 64 characters from [A-Za-z0-9_-]');
  }
  return value;
}

/**
 * index: a non-negative integer; wait: non-negative seconds, capped at
 * maxWaitSeconds and defaulting to it when only index is given. Without index
 * there is nothing to wait for and the answer is immediate.
 */
function watchQuery(query: unknown, maxWaitSeconds: number): { index?: number; waitSeconds: number } {
  const q = (query ?? {}) as Record<string, unknown>;
  const index = q.index === undefined ? undefined : parseIndex(q.index);
  let waitSeconds = maxWaitSeconds;
  if (q.wait !== undefined) {
    if (typeof q.wait !== 'string' || !/^\d+(\.\d+)?$/.test(q.wait)) {
      throw new InvalidRequest('"wait" must be a non-negative number of seconds');
    }
    waitSeconds = Math.min(Number(q.wait), maxWaitSeconds);
  }
  return index === undefined ? { waitSeconds: 0 } : { index, waitSeconds };
}

function parseIndex(v: unknown): number {
  if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new InvalidRequest('"index" must be a non-negative integer');
  }
  return Number(v);
}
