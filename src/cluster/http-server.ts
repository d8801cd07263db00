import Fastify, { LogController, type FastifyInstance, type FastifyReply, type HTTPMethods } from 'fastify';
import {
  InvalidRequest,
  MethodNotAllowed,
  RouteNotFound,
  normalizeError,
  toErrorBody,
  type FlexStoreError,
} from './errors.js';
import type { ClusterSecurity } from './security.js';
import { serverTlsOptions } from './tls.js';
import { installClusterAuth, type AuthLevel } from './auth-hooks.js';
import type { RefusalReason } from './cluster-auth.js';

/**
 * The fastify setup every FlexStore server shares: pino JSON logs, the one
 * error shape for every failure (including fastify's own), JSON 404 for
 * unknown routes and 405 for a known route with the wrong method.
 */
export interface HttpServerOptions {
  /** pino level; 'silent' turns logging off. */
  logLevel: string;
  /** Largest request body fastify will read. */
  bodyLimit: number;
  /** Included in every log line as `component`. */
  component: string;
  /**
   * The error for a URL the router cannot decode (e.g. `%ZZ`); the gateway
   * reports it as a bad key. Default: InvalidRequest.
   */
  badUrlError?: (url: string) => FlexStoreError;
  /** Cluster secrets and TLS of this process (security.ts). Default: open, plain HTTP. */
  security?: ClusterSecurity;
  /** Which credential a request needs (auth-hooks.ts); checked only when a secret or admin token is set. Default: all open. */
  protect?: (method: string, url: string) => AuthLevel;
  /** The token `Authorization: Bearer` grants 'admin' with (the registry's). */
  adminToken?: string;
  /** Called for every request refused for its credential (a metric counts them). */
  onAuthRefused?: (reason: RefusalReason) => void;
}

export function createHttpServer(opts: HttpServerOptions): FastifyInstance {
  // HTTPS when the process has TLS material; the instance is typed as the
  // plain one because handlers never touch the raw server.
  const https = serverTlsOptions(opts.security);
  const app = Fastify({
    ...((https ? { https } : {}) as object),
    logger: { level: opts.logLevel, base: { component: opts.component, pid: process.pid } },
    bodyLimit: opts.bodyLimit,
    // Keys may be long and contain any byte; routes parse the raw URL themselves.
    routerOptions: { maxParamLength: 64 * 1024 },
    // One log line per request would dominate the hot path; metrics count requests.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: true,
    // Errors raised before routing (an undecodable URL) bypass the error handler.
    frameworkErrors: (err, req, reply) => {
      const url = req.url ?? '';
      const fe =
        (err as { code?: string }).code === 'FST_ERR_BAD_URL'
          ? (opts.badUrlError?.(url) ?? new InvalidRequest(`malformed URL: ${url}`))
          : normalizeError(err);
      sendError(reply, fe);
    },
  });

  app.setErrorHandler((err, req, reply) => {
    const fe = normalizeError(err);
    if (fe.status >= 500) req.log.warn({ err, code: fe.code }, fe.message);
    sendError(reply, fe);
  });

  app.setNotFoundHandler((req, reply) => {
    sendError(reply, new RouteNotFound(`no route for ${req.method} ${req.url.split('?')[0]}`));
  });

  installClusterAuth(app, opts);
  return app;
}

/** A request URL without its query. */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

export function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  const fe = normalizeError(err);
  return reply.code(fe.status).header('content-type', 'application/json; charset=utf-8').send(toErrorBody(fe));
}

const ALL_METHODS: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

/**
 * Answers 405 (with an Allow header) for every method a path does not serve.
 * Call after registering the path's real routes. HEAD is implied by GET.
 */
export function rejectOtherMethods(app: FastifyInstance, url: string, allowed: HTTPMethods[]): void {
  const allow = new Set<HTTPMethods>(allowed);
  if (allow.has('GET')) allow.add('HEAD');
  const others = ALL_METHODS.filter((m) => !allow.has(m));
  if (others.length === 0) return;
  app.route({
    method: others,
    url,
    handler: async (req, reply) => {
      reply.header('allow', [...allow].join(', '));
      throw new MethodNotAllowed(`${req.method} is not allowed on ${url}; use ${[...allow].join(', ')}`, {
        allowed: [...allow],
      });
    },
  });
}
