import Fastify, { LogController, type FastifyInstance, type FastifyReply, type HTTPMethods } from 'fastify';
import { STATUS_CODES, maxHeaderSize, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import {
  HeadersTooLarge,
  InvalidRequest,
  MethodNotAllowed,
  PayloadTooLarge,
  RequestTimeout,
  RouteNotFound,
  normalizeError,
  toErrorBody,
  type FlexStoreError,
} from './errors.js';
import type { Logger } from './logger.js';
import { maxConnections as maxConnectionsRow, requestTimeoutMs as requestTimeoutRow } from './shared-options.js';
import type { ClusterSecurity } from './security.js';
import { serverTlsOptions } from './tls.js';
import { installClusterAuth, type AuthLevel } from './auth-hooks.js';
import type { RefusalReason } from './cluster-auth.js';

/**
 * The fastify setup every FlexStore server shares: pino JSON logs, the one
 * error shape for every failure (including fastify's own and Node's parser
 * errors), JSON 404 for unknown routes and 405 for a known route with the
 * wrong method, and the resource bounds of docs/security.md (Limits): a
 * deadline for each request to arrive, a cap on connections, short idle
 * keep-alive.
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
  /** REQUEST_TIMEOUT_MS: the headers and body of a request must all arrive within it. Default: the option's. */
  requestTimeoutMs?: number;
  /** MAX_CONNECTIONS: connections past it are closed as soon as they are accepted. Default: the option's. */
  maxConnections?: number;
}

/**
 * How long an idle keep-alive connection is kept (Node's own default).
 * Clients are told in the Keep-Alive header and close before it (undici
 * does); an idle connection holds one of MAX_CONNECTIONS, so it is kept short.
 * Fastify's 72 s suits servers behind load balancers with 60 s idle timeouts;
 * a proxy in front of a FlexStore server should idle out first.
 */
const KEEP_ALIVE_TIMEOUT_MS = 5000;

/**
 * Node checks request and header deadlines only every connectionsCheckingInterval
 * (30 s by default), so a stalled request would live up to 30 s past its
 * deadline. The check runs every tenth of the timeout (at most every second)
 * and the deadline given to Node is one interval earlier: a stalled request
 * is answered 408 between 0.9 × REQUEST_TIMEOUT_MS and REQUEST_TIMEOUT_MS
 * after its first byte, never later.
 */
export function requestDeadlines(requestTimeoutMs: number): { checkEveryMs: number; nodeTimeoutMs: number } {
  const checkEveryMs = Math.max(10, Math.min(1000, Math.floor(requestTimeoutMs / 10)));
  return { checkEveryMs, nodeTimeoutMs: Math.max(1, requestTimeoutMs - checkEveryMs) };
}

export function createHttpServer(opts: HttpServerOptions): FastifyInstance {
  const requestTimeoutMs = opts.requestTimeoutMs ?? requestTimeoutRow.default!;
  const { checkEveryMs, nodeTimeoutMs } = requestDeadlines(requestTimeoutMs);
  // Read by http.createServer (fastify's `http` option) and https.createServer
  // (its `https` object) alike; the check interval can only be set here.
  // Headers and body share one deadline, counted from the request's first byte.
  const serverOptions = { requestTimeout: nodeTimeoutMs, headersTimeout: nodeTimeoutMs, connectionsCheckingInterval: checkEveryMs };
  // HTTPS when the process has TLS material; the instance is typed as the
  // plain one because handlers never touch the raw server.
  const tls = serverTlsOptions(opts.security);
  let clientErrorLog: Pick<Logger, 'debug'> | undefined;
  const app = Fastify({
    // A TLS handshake gets the same deadline (Node's default is 120 s).
    ...((tls ? { https: { ...tls, ...serverOptions, handshakeTimeout: requestTimeoutMs } } : { http: serverOptions }) as object),
    // Fastify sets server.requestTimeout from its own option (0 when absent: no timeout at all).
    requestTimeout: nodeTimeoutMs,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    // Errors Node raises before a request exists (bad request line, headers
    // too large, deadline passed) get the JSON error shape too.
    clientErrorHandler: (err, socket) => answerClientError(err, socket, clientErrorLog),
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

  clientErrorLog = app.log;
  limitConnections(app, opts.maxConnections ?? maxConnectionsRow.default!);
  installClusterAuth(app, opts);
  return app;
}

/** What a client sees for an error Node's parser or its deadlines raised. */
function clientErrorOf(err: NodeJS.ErrnoException & { reason?: string }): FlexStoreError | undefined {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new RequestTimeout('the request headers and body did not all arrive in time; the connection is closed');
    case 'HPE_HEADER_OVERFLOW':
      // Node's limit (16 KiB unless --max-http-header-size says otherwise).
      return new HeadersTooLarge(`the request line and headers are larger than ${maxHeaderSize} bytes; keys travel in the URL, so a key must be shorter than that`, {
        maxHeaderBytes: maxHeaderSize,
      });
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new PayloadTooLarge('chunk extensions are too large');
  }
  // Every other parser error (HPE_*): a malformed request line, header or chunk.
  if (err.code?.startsWith('HPE_')) return new InvalidRequest(`malformed HTTP request: ${err.reason ?? err.message}`);
  // A socket error (reset, broken pipe): nobody to answer.
  return undefined;
}

/**
 * Answers a client error in the JSON error shape and closes the connection,
 * as Node's own handler does with its bare status line: nothing is written
 * when the socket cannot take it or a response on it has already started
 * (a second status line would corrupt it).
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket, log?: Pick<Logger, 'debug'>): void {
  const fe = socket.destroyed ? undefined : clientErrorOf(err);
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (fe && socket.writable && !inFlight?.headersSent) {
    const body = JSON.stringify(toErrorBody(fe));
    socket.write(
      `HTTP/1.1 ${fe.status} ${STATUS_CODES[fe.status]}\r\n` +
        'content-type: application/json; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(body)}\r\n` +
        'connection: close\r\n\r\n' +
        body,
    );
  }
  if (fe) log?.debug({ code: fe.code, cause: err.code }, 'client error');
  socket.destroy();
}

/** How often, at most, the server logs that MAX_CONNECTIONS turned connections away. */
const DROP_LOG_EVERY_MS = 60_000;

/**
 * MAX_CONNECTIONS: Node closes a connection accepted past it at once,
 * before reading a byte. Logged at most once a minute with the count since.
 */
function limitConnections(app: FastifyInstance, max: number): void {
  app.server.maxConnections = max;
  let dropped = 0;
  let lastLog = 0;
  app.server.on('drop', () => {
    dropped++;
    const now = Date.now();
    if (now - lastLog < DROP_LOG_EVERY_MS) return;
    app.log.warn({ dropped, maxConnections: max }, 'connections closed on arrival: MAX_CONNECTIONS are open');
    lastLog = now;
    dropped = 0;
  });
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
