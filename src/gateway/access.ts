import type { FastifyInstance, FastifyReply } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { Forbidden, Unauthorized, type FlexStoreError } from '../cluster/errors.js';
import { sendError } from '../cluster/http-server.js';
import { keyFromUrl } from '../cluster/http-wire.js';
import type { TokenStore } from './token-store.js';
import { findToken, type TokenEntry, type TokenRole } from './tokens.js';

/**
 * Client access to a gateway with a token file (token-store.ts): which
 * route needs which role, the Bearer check every such request passes before
 * its handler, and the key-prefix rules single-key requests, batches
 * (batch.ts) and listings (routes.ts) apply.
 *
 *   /kv/<key>  GET, HEAD           read, and the key under the token's prefixes
 *              PUT, DELETE         readwrite
 *   /kv        GET (list)          read; only keys under the token's prefixes are listed
 *   /batch     POST                readwrite, and every item's key under the prefixes
 *   /metrics, /cluster             read, unless --metrics-public
 *   /health, unknown routes        open
 *
 * Any other method on a token route needs a valid token too, then gets its 405.
 * Routes are told apart by the route fastify matched, not the raw URL: the
 * router decodes the path, so `/%6Bv/x` is a /kv/* request too. Its key is
 * read from the raw URL exactly as the handler reads it (keyFromUrl); a URL
 * that yields no key is answered here with the handler's 400.
 *
 * A refusal answers 401 UNAUTHORIZED (missing, malformed or unknown token,
 * with `WWW-Authenticate: Bearer`) or 403 FORBIDDEN (role or prefix, the body
 * names the key), counted in flexstore_client_auth_refused_total{reason}.
 * Neither the token nor its hash appears in an answer or a log line.
 */

declare module 'fastify' {
  interface FastifyRequest {
    /** The token the request presented; null when the gateway has no token file (or the route is open). */
    clientToken: TokenEntry | null;
  }
}

const RANK: Readonly<Record<TokenRole, number>> = { read: 0, readwrite: 1, admin: 2 };

/** Whether a token of role `has` may do what `needs` allows. */
export function roleAllows(has: TokenRole, needs: TokenRole): boolean {
  return RANK[has] >= RANK[needs];
}

const TOKEN_ROUTES = new Set(['/kv/*', '/kv', '/batch']);
const OPERATOR_ROUTES = new Set(['/metrics', '/cluster']);

/** The role a request needs, by the route it matched (fastify's pattern); null: open. */
export function routeNeed(method: string, route: string | undefined, metricsPublic: boolean): TokenRole | null {
  if (route === undefined) return null;
  if (TOKEN_ROUTES.has(route)) return method === 'PUT' || method === 'DELETE' || method === 'POST' ? 'readwrite' : 'read';
  if (OPERATOR_ROUTES.has(route)) return metricsPublic ? null : 'read';
  return null;
}

/** RFC 6750's b64token: what a Bearer credential may hold (`token create` makes base64url). */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The token of an Authorization header: the token, or why there is none. */
export function parseBearer(header: string | undefined): { token: string } | { problem: 'missing' | 'malformed' } {
  if (header === undefined || header === '') return { problem: 'missing' };
  const m = BEARER.exec(header);
  return m ? { token: m[1]! } : { problem: 'malformed' };
}

/** Whether the token's prefixes (null: every key) cover key. */
export function keyAllowed(prefixes: readonly string[] | null, key: string): boolean {
  return prefixes === null || prefixes.some((p) => key.startsWith(p));
}

/** Throws 403 naming the first item whose key the token may not write; nothing of the batch is written then. */
export function checkBatchKeys(token: TokenEntry | null, keys: readonly string[]): void {
  if (token === null || token.prefixes === null) return;
  const item = keys.findIndex((k) => !keyAllowed(token.prefixes, k));
  if (item === -1) return;
  const key = keys[item]!;
  throw new Forbidden(`batch item ${item}: key ${JSON.stringify(key)} is outside the prefixes of token ${JSON.stringify(token.name)}`, {
    item,
    key,
    token: token.name,
    prefixes: token.prefixes,
  });
}

// ---- listing under a token's prefixes ----

export interface ListPage {
  keys: string[];
  next: string | null;
}

/** One listing of the coordinator: live keys with the prefix after `after`, at most limit. */
export type ListFn = (prefix: string, after: string, limit: number) => Promise<ListPage>;

/**
 * The prefixes to list for a request prefix under a token's prefixes (null:
 * every key): the request prefix intersected with each token prefix (the
 * longer of the two when one extends the other, nothing otherwise), without
 * those another one covers, in JS string order. Their key ranges are disjoint
 * and in the same order: of two prefixes where neither extends the other,
 * every key of the smaller sorts before every key of the larger, because
 * they differ at a position both have.
 */
export function listPrefixes(request: string, token: readonly string[] | null): string[] {
  if (token === null) return [request];
  const hits = new Set<string>();
  for (const t of token) {
    if (t.startsWith(request)) hits.add(t);
    else if (request.startsWith(t)) hits.add(request);
  }
  // Sorted, a prefix comes right before everything that extends it (all in
  // between extend it too), so comparing with the last one kept is enough.
  const out: string[] = [];
  for (const p of [...hits].sort()) if (out.length === 0 || !p.startsWith(out[out.length - 1]!)) out.push(p);
  return out;
}

/**
 * One page over the ranges of `prefixes` (disjoint, in order, as
 * listPrefixes gives them), listed one after the other: keys after `after`,
 * at most limit, and a `next` cursor to pass as `after` (null once every
 * range is done). A range wholly at or before `after` is skipped without a
 * call; a short page from the coordinator (its rounds ran out) ends the page
 * with its cursor, as the coordinator's own listing does. A page that fills
 * up exactly at the end of a range returns its last key as the cursor when
 * ranges remain, even if they turn out empty.
 */
export async function listUnder(prefixes: readonly string[], after: string, limit: number, list: ListFn): Promise<ListPage> {
  const keys: string[] = [];
  for (let i = 0; i < prefixes.length; i++) {
    const p = prefixes[i]!;
    // after > p without extending it: they differ at a position of p, and every key of p sorts before after.
    if (after > p && !after.startsWith(p)) continue;
    const page = await list(p, after, limit - keys.length);
    keys.push(...page.keys);
    if (page.next !== null) return { keys, next: page.next };
    if (keys.length >= limit) return { keys, next: i < prefixes.length - 1 ? keys[keys.length - 1]! : null };
  }
  return { keys, next: null };
}

/** GET /kv for a token (null: no token file, or a token of every key): one coordinator listing, or one per range. */
export function listForToken(token: TokenEntry | null, prefix: string, after: string, limit: number, list: ListFn): Promise<ListPage> {
  if (token === null || token.prefixes === null) return list(prefix, after, limit);
  return listUnder(listPrefixes(prefix, token.prefixes), after, limit, list);
}

// ---- the request hook ----

export type RefusalReason = 'missing' | 'malformed' | 'unknown' | 'role' | 'prefix';

export interface ClientAccessOptions {
  /** The token file's store; undefined: no token file, every route open. */
  tokens: TokenStore | undefined;
  metricsPublic: boolean;
  maxKeyBytes: number;
  /** Where flexstore_client_auth_refused_total is registered. */
  registry?: Registry;
}

const CHALLENGE = 'Bearer realm="flexstore"';

export function installClientAccess(app: FastifyInstance, opts: ClientAccessOptions): void {
  app.decorateRequest('clientToken', null);
  const store = opts.tokens;
  if (store === undefined) return;
  const refused = new Counter({
    name: 'flexstore_client_auth_refused_total',
    help: 'Client requests refused for their token: missing, malformed, unknown (401); role, prefix (403)',
    labelNames: ['reason'],
    registers: opts.registry ? [opts.registry] : [],
  });
  for (const reason of ['missing', 'malformed', 'unknown', 'role', 'prefix']) refused.inc({ reason }, 0);

  const unauthorized = (reply: FastifyReply, reason: RefusalReason, message: string): void => {
    refused.inc({ reason });
    // RFC 6750: a credential that was given but is no good is an invalid_token.
    reply.header('www-authenticate', reason === 'missing' ? CHALLENGE : `${CHALLENGE}, error="invalid_token"`);
    sendError(reply, new Unauthorized(message));
  };
  const forbidden = (reply: FastifyReply, reason: RefusalReason, err: FlexStoreError): void => {
    refused.inc({ reason });
    sendError(reply, err);
  };

  app.addHook('onRequest', (req, reply, done) => {
    const need = routeNeed(req.method, req.routeOptions.url, opts.metricsPublic);
    if (need === null) return done();
    const bearer = parseBearer(req.headers.authorization);
    if ('problem' in bearer) {
      return bearer.problem === 'missing'
        ? unauthorized(reply, 'missing', 'missing client token: send Authorization: Bearer <token>')
        : unauthorized(reply, 'malformed', 'malformed Authorization header: expected Bearer <token>');
    }
    const token = findToken(store.entries, bearer.token);
    if (token === undefined) return unauthorized(reply, 'unknown', 'unknown client token');
    req.clientToken = token;
    let key: string | undefined;
    let badKey: unknown;
    if (req.routeOptions.url === '/kv/*') {
      try {
        key = keyFromUrl(req.raw.url!, '/kv/', opts.maxKeyBytes);
      } catch (err) {
        badKey = err;
      }
    }
    if (!roleAllows(token.role, need)) {
      const what = need === 'readwrite' ? 'write or delete' : 'read';
      return forbidden(
        reply,
        'role',
        new Forbidden(`token ${JSON.stringify(token.name)} has role ${token.role}, which may not ${what}${key === undefined ? '' : ` key ${JSON.stringify(key)}`}`, {
          ...(key !== undefined && { key }),
          token: token.name,
          role: token.role,
          needs: need,
        }),
      );
    }
    // The handler would refuse such a key with the same 400; answering here
    // keeps every key a handler sees checked against the prefixes.
    if (badKey !== undefined) return void sendError(reply, badKey);
    if (key !== undefined && !keyAllowed(token.prefixes, key)) {
      return forbidden(
        reply,
        'prefix',
        new Forbidden(`key ${JSON.stringify(key)} is outside the prefixes of token ${JSON.stringify(token.name)}`, {
          key,
          token: token.name,
          prefixes: token.prefixes,
        }),
      );
    }
    done();
  });

  // The batch check runs in its handler (the items are in the body); its refusals are counted here.
  app.addHook('onError', (_req, _reply, err, done) => {
    if (err instanceof Forbidden) refused.inc({ reason: 'prefix' });
    done();
  });
}
