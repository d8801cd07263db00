import { Pool } from 'undici';
import { certificateProblem, clientCertificateRefused } from '../cluster/tls.js';
import type { Consistency } from '../cluster/types.js';

export type { Consistency } from '../cluster/types.js';

/**
 * FlexStore client: talks to one gateway over HTTP with pooled keep-alive
 * connections.
 *
 * Semantics come from the gateway: a write is acknowledged once the
 * consistency level's number of replicas hold it durably; a read returns the
 * newest version among the replicas that answered. A timeout or a lost
 * connection during a write is an ambiguous outcome: the write may already be
 * on some replicas and can surface on later reads. Retrying the same put is
 * safe in the sense that the newest version wins.
 */

export const DEFAULT_GATEWAY = 'http://localhost:5000';
export const DEFAULT_TIMEOUT_MS = 10_000;

export interface FlexStoreClientOptions {
  /** Gateway base URL; a path prefix (for a reverse proxy) is kept. Default http://localhost:5000. */
  gateway?: string;
  /** Deadline for a whole request, response body included. Default 10000 ms. */
  timeoutMs?: number;
  /** Consistency for /kv requests that name none. Default: the gateway's own default. */
  consistency?: Consistency;
  /** Most connections kept open to the gateway. Default 32. */
  connections?: number;
  /**
   * PEM CA bundle an https:// gateway's certificate is verified against
   * (e.g. the ca.crt of `flexstore certs`). Default: Node's public roots.
   */
  ca?: string | Buffer;
  /** PEM client certificate and key, for a gateway that requires one (TLS_CLIENT_AUTH=require). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /**
   * Client token, sent as `Authorization: Bearer <token>` on every request
   * (a gateway with AUTH_TOKENS_FILE refuses /kv and /batch without one).
   * Default: the FLEXSTORE_TOKEN environment variable; '' sends none.
   */
  token?: string;
}

export interface ReadOptions {
  consistency?: Consistency;
}

export interface WriteOptions {
  /** Stored with the value and returned by get. Default text/plain for strings, application/octet-stream for bytes. */
  contentType?: string;
  consistency?: Consistency;
}

export interface PutResult {
  key: string;
  /** The version the gateway stamped (also the ETag); versions compare as plain strings. */
  version: string;
}

export interface BatchPutItem {
  key: string;
  value: string | Uint8Array;
  /** Default text/plain for strings, application/octet-stream for bytes, as for put. */
  contentType?: string;
}

/** One item's outcome: written with its version, or the error a put of it alone would have thrown. */
export type BatchPutResult = { key: string; ok: true; version: string } | { key: string; ok: false; error: FlexStoreRequestError };

/** Items per POST /batch request; longer lists are sent as several batches. */
export const BATCH_ITEMS = 1000;

export interface GetResult {
  value: Buffer;
  contentType: string;
  version: string;
}

export interface ListOptions {
  prefix?: string;
  /** Page size; the gateway may cap it. */
  limit?: number;
  /** Start after this key (the `next` of the previous page). */
  after?: string;
  consistency?: Consistency;
}

export interface ListResult {
  keys: string[];
  /** Pass as `after` to get the next page; null on the last page. */
  next: string | null;
}

export interface HealthResult {
  /** True for a 2xx answer. */
  ok: boolean;
  status: number;
  body: unknown;
}

/** The gateway answered with a status the operation does not expect. */
export class FlexStoreRequestError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** The gateway's machine code (e.g. QUORUM_NOT_MET), or HTTP_<status> when the body has none. */
  readonly code: string;
  /** The parsed JSON error body, or the raw text when it is not JSON. */
  readonly body: unknown;
  constructor(message: string, status: number, code: string, body: unknown) {
    super(message);
    this.name = 'FlexStoreRequestError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/**
 * No answer from the gateway: refused, reset, DNS failure or timeout
 * (code ETIMEDOUT). For a write the outcome is unknown, see above.
 */
export class FlexStoreConnectionError extends Error {
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FlexStoreConnectionError';
    this.code = code;
  }
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

interface RequestSpec {
  method: 'GET' | 'PUT' | 'DELETE' | 'POST';
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: Uint8Array | string;
  headers?: Record<string, string>;
}

export class FlexStoreClient {
  readonly gateway: string;
  readonly timeoutMs: number;
  readonly consistency: Consistency | undefined;
  private readonly basePath: string;
  private readonly pool: Pool;
  private readonly presentsCert: boolean;
  /** The Authorization header value, or undefined; kept out of every message this client makes. */
  private readonly authorization: string | undefined;
  private closed = false;

  constructor(options: FlexStoreClientOptions = {}) {
    const url = new URL(options.gateway ?? DEFAULT_GATEWAY);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`gateway must be an http:// or https:// URL, got ${JSON.stringify(options.gateway)}`);
    }
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.gateway = url.origin + this.basePath;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(this.timeoutMs > 0)) throw new RangeError('timeoutMs must be positive');
    this.consistency = options.consistency;
    const tls = { ca: options.ca, cert: options.cert, key: options.key };
    this.presentsCert = options.cert !== undefined;
    const token = options.token ?? process.env.FLEXSTORE_TOKEN ?? '';
    // A line break would split the header: refuse it here rather than as an opaque undici error.
    if (/[\r\n]/.test(token)) throw new TypeError('token must not contain a line break');
    this.authorization = token === '' ? undefined : `Bearer ${token}`;
    this.pool = new Pool(url.origin, {
      connections: options.connections ?? 32,
      keepAliveTimeout: 10_000,
      connect: Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined)),
    });
  }

  /** Stores value under key; resolves once the write met its consistency level. */
  async put(key: string, value: string | Uint8Array, opts: WriteOptions = {}): Promise<PutResult> {
    const contentType = opts.contentType ?? (typeof value === 'string' ? 'text/plain; charset=utf-8' : 'application/octet-stream');
    const res = await this.request({
      method: 'PUT',
      path: keyPath(key),
      query: { consistency: opts.consistency ?? this.consistency },
      body: value,
      headers: { 'content-type': contentType },
    });
    if (!isOk(res.status)) throw toRequestError('PUT', key, res);
    const body = parseJson(res.body) as { key?: unknown; version?: unknown } | undefined;
    const version = typeof body?.version === 'string' ? body.version : etagVersion(res.headers.etag);
    return { key, version: version ?? '' };
  }

  /**
   * Stores many values through POST /batch, BATCH_ITEMS per request: each
   * item is a put of its own (own version, own quorum), so some can fail
   * while others succeed; the results say which, in the order given. Throws
   * only when a whole batch is refused (a malformed item: nothing of that
   * batch was written) or the gateway cannot be reached.
   */
  async putMany(items: readonly BatchPutItem[], opts: { consistency?: Consistency } = {}): Promise<BatchPutResult[]> {
    const out: BatchPutResult[] = [];
    for (let i = 0; i < items.length; i += BATCH_ITEMS) {
      const chunk = items.slice(i, i + BATCH_ITEMS).map(({ key, value, contentType }) =>
        typeof value === 'string'
          ? { key, value, contentType: contentType ?? 'text/plain; charset=utf-8' }
          : { key, valueBase64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64'), contentType: contentType ?? 'application/octet-stream' },
      );
      const res = await this.request({
        method: 'POST',
        path: '/batch',
        query: { consistency: opts.consistency ?? this.consistency },
        body: JSON.stringify({ items: chunk }),
        headers: { 'content-type': 'application/json' },
      });
      if (!isOk(res.status)) throw toRequestError('POST /batch', undefined, res);
      const body = parseJson(res.body) as { results?: Array<Record<string, unknown>> } | undefined;
      if (!Array.isArray(body?.results) || body.results.length !== chunk.length) {
        throw new FlexStoreRequestError('POST /batch answered without one result per item', res.status, 'BAD_RESPONSE', body ?? res.body.toString('utf8'));
      }
      body.results.forEach((r, j) => {
        const key = chunk[j]!.key;
        if (r.success === true && typeof r.version === 'string') out.push({ key, ok: true, version: r.version });
        else out.push({ key, ok: false, error: requestError('PUT', key, typeof r.status === 'number' ? r.status : res.status, r, r) });
      });
    }
    return out;
  }

  /** The newest value among the replicas asked, or null when the key has none. */
  async get(key: string, opts: ReadOptions = {}): Promise<GetResult | null> {
    const res = await this.request({
      method: 'GET',
      path: keyPath(key),
      query: { consistency: opts.consistency ?? this.consistency },
    });
    if (isKeyNotFound(res)) return null;
    if (!isOk(res.status)) throw toRequestError('GET', key, res);
    return {
      value: res.body,
      contentType: header(res.headers['content-type']) ?? 'application/octet-stream',
      version: etagVersion(res.headers.etag) ?? '',
    };
  }

  /** Like get, decoding the value as UTF-8. */
  async getString(key: string, opts: ReadOptions = {}): Promise<string | null> {
    const res = await this.get(key, opts);
    return res === null ? null : res.value.toString('utf8');
  }

  /** Writes a tombstone; false when the key had no live value. */
  async delete(key: string, opts: ReadOptions = {}): Promise<boolean> {
    const res = await this.request({
      method: 'DELETE',
      path: keyPath(key),
      query: { consistency: opts.consistency ?? this.consistency },
    });
    if (isKeyNotFound(res)) return false;
    if (!isOk(res.status)) throw toRequestError('DELETE', key, res);
    return true;
  }

  /** One page of keys in key order. */
  async list(opts: ListOptions = {}): Promise<ListResult> {
    const res = await this.request({
      method: 'GET',
      path: '/kv',
      query: {
        prefix: opts.prefix,
        limit: opts.limit,
        after: opts.after,
        consistency: opts.consistency ?? this.consistency,
      },
    });
    if (!isOk(res.status)) throw toRequestError('GET', undefined, res);
    const body = parseJson(res.body) as { keys?: unknown; next?: unknown } | undefined;
    if (!Array.isArray(body?.keys) || !body.keys.every((k) => typeof k === 'string')) {
      throw new FlexStoreRequestError('the gateway answered a list without a keys array', res.status, 'BAD_RESPONSE', body);
    }
    return { keys: body.keys as string[], next: typeof body.next === 'string' ? body.next : null };
  }

  /** Every key with the prefix, in key order, fetching pages as it goes. */
  async *keys(prefix?: string, opts: Omit<ListOptions, 'prefix' | 'after'> = {}): AsyncGenerator<string, void, undefined> {
    let after: string | undefined;
    for (;;) {
      const page = await this.list({ ...opts, prefix, after });
      yield* page.keys;
      // A gateway that repeats a cursor would otherwise loop forever.
      if (page.next === null || page.next === after) return;
      after = page.next;
    }
  }

  /** The gateway's view of the cluster (GET /cluster). */
  async cluster(): Promise<unknown> {
    const res = await this.request({ method: 'GET', path: '/cluster' });
    if (!isOk(res.status)) throw toRequestError('GET', undefined, res);
    return parseJson(res.body);
  }

  /** GET /health. An unhealthy answer (e.g. 503) resolves with ok=false; only no answer rejects. */
  async health(): Promise<HealthResult> {
    const res = await this.request({ method: 'GET', path: '/health' });
    return { ok: isOk(res.status), status: res.status, body: parseJson(res.body) ?? res.body.toString('utf8') };
  }

  /** Closes the pooled connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.close();
  }

  private async request(spec: RequestSpec): Promise<RawResponse> {
    const qs = new URLSearchParams();
    for (const [name, value] of Object.entries(spec.query ?? {})) {
      if (value !== undefined) qs.set(name, String(value));
    }
    const search = qs.size > 0 ? `?${qs}` : '';
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const res = await this.pool.request({
        method: spec.method,
        path: this.basePath + spec.path + search,
        headers: { accept: '*/*', ...spec.headers, ...(this.authorization !== undefined && { authorization: this.authorization }) },
        body: spec.body,
        signal,
      });
      // Always read the body: undici only reuses a connection once its response is consumed.
      const body = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, headers: res.headers, body };
    } catch (err) {
      if (signal.aborted) {
        throw new FlexStoreConnectionError(
          `${spec.method} ${spec.path} got no answer from ${this.gateway} within ${this.timeoutMs} ms`,
          'ETIMEDOUT',
          { cause: err },
        );
      }
      const { code, message } = describeNetworkError(err);
      if (certificateProblem(err) !== undefined) {
        throw new FlexStoreConnectionError(
          `the TLS certificate of gateway ${this.gateway} is not trusted (${message}); ` +
            'give the CA that signed it (the ca option; CLI: --ca or FLEXSTORE_CA)',
          code,
          { cause: err },
        );
      }
      // Under TLS 1.3 a server that refuses the client's certificate does so after the client's side of
      // the handshake, and undici often reports only the closed socket: hint at the likely cause.
      const closedOverTls = code === 'UND_ERR_SOCKET' && this.gateway.startsWith('https:') && !this.presentsCert;
      if (clientCertificateRefused(err) !== undefined || closedOverTls) {
        throw new FlexStoreConnectionError(
          `gateway ${this.gateway} closed the TLS connection (${message}); if it requires client certificates, give one signed by its CA ` +
            '(the cert and key options; CLI: --cert and --key)',
          code,
          { cause: err },
        );
      }
      throw new FlexStoreConnectionError(`cannot reach gateway ${this.gateway}: ${message}`, code, { cause: err });
    }
  }
}

/** The gateway percent-decodes everything after /kv/, so the whole key is one encoded segment (slashes included). */
function keyPath(key: string): string {
  if (typeof key !== 'string' || key === '') throw new TypeError('key must be a non-empty string');
  return `/kv/${encodeURIComponent(key)}`;
}

function isOk(status: number): boolean {
  return status >= 200 && status < 300;
}

/**
 * Only the gateway's own KEY_NOT_FOUND means "no such key": any other 404 (an
 * unknown route, a proxy in front of the wrong host) is an error, not a
 * silently missing value.
 */
function isKeyNotFound(res: RawResponse): boolean {
  if (res.status !== 404) return false;
  return (parseJson(res.body) as { code?: unknown } | undefined)?.code === 'KEY_NOT_FOUND';
}

function toRequestError(method: string, key: string | undefined, res: RawResponse): FlexStoreRequestError {
  const json = parseJson(res.body) as { error?: unknown; code?: unknown } | undefined;
  return requestError(method, key, res.status, json, json ?? res.body.toString('utf8'));
}

/** The error for a gateway error body (json, when it is one) answered with status. */
function requestError(
  method: string,
  key: string | undefined,
  status: number,
  json: { error?: unknown; code?: unknown } | undefined,
  body: unknown,
): FlexStoreRequestError {
  const code = typeof json?.code === 'string' ? json.code : `HTTP_${status}`;
  const message =
    typeof json?.error === 'string'
      ? json.error
      : `${method}${key === undefined ? '' : ` ${JSON.stringify(key)}`} failed with HTTP ${status}`;
  return new FlexStoreRequestError(message, status, code, body);
}

function parseJson(buf: Buffer): unknown {
  if (buf.length === 0) return undefined;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** ETag `"v"` or `W/"v"` → v. */
function etagVersion(value: string | string[] | undefined): string | undefined {
  const raw = header(value);
  if (raw === undefined) return undefined;
  return raw.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

function describeNetworkError(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown; errors?: unknown[] };
  // With several addresses (localhost → ::1 and 127.0.0.1) Node reports an AggregateError with an empty message.
  const first = Array.isArray(e?.errors) ? (e.errors[0] as { code?: unknown; message?: unknown } | undefined) : undefined;
  const code = typeof e?.code === 'string' ? e.code : typeof first?.code === 'string' ? first.code : 'ECONNECTION';
  const message =
    typeof e?.message === 'string' && e.message !== ''
      ? e.message
      : typeof first?.message === 'string' && first.message !== ''
        ? first.message
        : code;
  return { code, message };
}
