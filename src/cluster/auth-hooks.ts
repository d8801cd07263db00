import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  AUTH_HEADER,
  REFUSAL_REASONS,
  REFUSAL_TEXT,
  RequestVerifier,
  tokenEquals,
  type ParsedSignature,
  type RefusalReason,
} from './cluster-auth.js';
import { Unauthorized, toErrorBody } from './errors.js';
import type { ClusterSecurity } from './security.js';

/**
 * The credential check of every FlexStore HTTP server (createHttpServer
 * installs it). Each request is classed by `protect`:
 *
 *   open    anyone (health, metrics, GET /nodes); a valid signature still sets clusterAuth
 *   member  a valid cluster signature (cluster-auth.ts)
 *   admin   the admin token (Authorization: Bearer) or a valid cluster signature
 *
 * Without a secret nothing needs a signature (an open cluster); without a
 * secret and an admin token nothing needs anything.
 *
 * Two hooks, so that a request without a credential costs no body read:
 * onRequest refuses a missing, malformed or stale header at once;
 * preValidation, which runs after the body is parsed and before any handler,
 * checks the MAC over the raw body bytes (req.rawBody, or req.body when the
 * server's parser keeps the body a Buffer, as the KV server's does) and the
 * replay window. A refusal answers 401 UNAUTHORIZED and no handler runs.
 */

export type AuthLevel = 'open' | 'member' | 'admin';

export interface ClusterAuthOptions {
  security?: ClusterSecurity;
  protect?: (method: string, url: string) => AuthLevel;
  adminToken?: string;
  onAuthRefused?: (reason: RefusalReason) => void;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The request body's bytes as received, for a server whose parser turns
     * the body into something else (the registry parses JSON); the signature
     * covers these bytes.
     */
    rawBody: Buffer | undefined;
    /** @internal The signature onRequest parsed, checked in preValidation. */
    clusterSig: ParsedSignature | null;
    /** @internal The level protect() gave the request. */
    authLevel: AuthLevel;
  }
}

export function installClusterAuth(app: FastifyInstance, opts: ClusterAuthOptions): void {
  // Open or closed is decided here, once; a reload changes which secrets a closed one accepts.
  const security = opts.security;
  const verifier = security !== undefined && security.secrets.length > 0 ? new RequestVerifier(security) : undefined;
  const adminToken = opts.adminToken === '' ? undefined : opts.adminToken;
  const protect = opts.protect;
  app.decorateRequest('clusterAuth', null);
  app.decorateRequest('rawBody', undefined);
  app.decorateRequest('clusterSig', null);
  app.decorateRequest('authLevel', 'open');
  if (verifier === undefined && adminToken === undefined) return;

  const refuse = (reply: FastifyReply, reason: RefusalReason): FastifyReply => {
    opts.onAuthRefused?.(reason);
    const err = new Unauthorized(REFUSAL_TEXT[reason]);
    return reply.code(401).header('content-type', 'application/json; charset=utf-8').send(toErrorBody(err));
  };

  app.addHook('onRequest', (req, reply, done) => {
    req.clusterAuth = null;
    const level = protect?.(req.method, req.url) ?? 'open';
    req.authLevel = level;
    if (level === 'admin' && adminToken !== undefined) {
      const given = bearer(req);
      if (given !== undefined && tokenEquals(given, adminToken)) {
        req.clusterAuth = 'admin';
        return done();
      }
    }
    const header = req.headers[AUTH_HEADER];
    if (verifier !== undefined && header !== undefined) {
      const sig = verifier.parse(header);
      if (typeof sig === 'object') {
        req.clusterSig = sig;
        return done();
      }
      if (level !== 'open') return void refuse(reply, sig);
      return done();
    }
    if (level === 'open') return done();
    if (level === 'member') return verifier === undefined ? done() : void refuse(reply, 'missing');
    // admin, neither credential
    if (adminToken !== undefined) return void refuse(reply, 'bad_token');
    return verifier === undefined ? done() : void refuse(reply, 'missing');
  });

  if (verifier === undefined) return;
  app.addHook('preValidation', (req, reply, done) => {
    const sig = req.clusterSig;
    if (sig === null) return done();
    const body = req.rawBody ?? (Buffer.isBuffer(req.body) ? req.body : undefined);
    // A parsed body without its bytes cannot be checked: fail closed.
    const why =
      body === undefined && req.body !== undefined && req.body !== null
        ? 'bad_signature'
        : verifier.verify(sig, { method: req.method, path: req.url, headers: req.headers, body });
    if (why === null) {
      req.clusterAuth = 'member';
      return done();
    }
    if (req.authLevel === 'open') return done();
    return void refuse(reply, why);
  });
}

function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/** Refusals by reason, for a server without a Prometheus registry (the registry shows them in /health). */
export class RefusalCounts {
  readonly byReason: Record<RefusalReason, number> = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<
    RefusalReason,
    number
  >;

  readonly inc = (reason: RefusalReason): void => {
    this.byReason[reason]++;
  };

  get total(): number {
    return Object.values(this.byReason).reduce((a, b) => a + b, 0);
  }
}
