import type { IncomingHttpHeaders } from 'node:http';
import { Pool } from 'undici';
import type { ClusterSecurity } from './security.js';
import { undiciConnectOptions } from './tls.js';
import { AUTH_HEADER, signerFor, type RequestSigner } from './cluster-auth.js';
import { MAX_ERROR_TEXT, ReplicaUnreachable, peerError, type ErrorDetails, type FlexStoreError } from './errors.js';

/**
 * Pooled HTTP calls from one FlexStore process to its peers' internal APIs:
 * the gateway's replica calls (http-transport.ts) and a KV server's repair
 * calls (src/kv/repair-client.ts).
 *
 * One keep-alive undici Pool per peer origin, created on first use, one
 * request per connection at a time (a slow PUT never delays a GET queued
 * behind it). Every call has an overall deadline (an AbortSignal) on top of
 * the pool's header and body timeouts, so a peer that accepts connections but
 * never answers (a paused process, a full disk) fails the call instead of
 * holding it. Anything that keeps a call from getting a whole answer rejects
 * with ReplicaUnreachable. A call that timed out may still have been applied
 * by the peer; every write FlexStore sends is last-writer-wins, so the caller
 * may count it as missing and send it again.
 */

export interface PeerHttpOptions {
  /** Default deadline of one call, connect to last body byte. */
  timeoutMs: number;
  /** Most open connections per peer. */
  connections: number;
  /** How long an idle connection stays open when the peer sends no hint. Default 30000 ms. */
  keepAliveTimeoutMs?: number;
  /** Deadline of opening a connection. Default timeoutMs. */
  connectTimeoutMs?: number;
  /** What the caller is called in "… is closed" failures, e.g. 'transport'. */
  name: string;
  /** Cluster secrets and TLS of this process (security.ts). Default: open, plain HTTP. */
  security?: ClusterSecurity;
}

export interface PeerRequest {
  /** Names the call in failures: "<op> failed: …", "<op> answered 500: …". */
  op: string;
  method: 'GET' | 'PUT' | 'POST';
  /** Path and query, appended to the node URL's own path. */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Overrides the default deadline. */
  timeoutMs?: number;
}

/** A whole answer, of any status. */
export interface PeerResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export class PeerHttp {
  private readonly pools = new Map<string, Pool>();
  /** Aborts calls in flight when close() is asked to. */
  private readonly closing = new AbortController();
  private closed = false;
  /** Signs every call when this process holds a cluster secret (cluster-auth.ts). */
  private readonly signer: RequestSigner | undefined;

  constructor(private readonly opts: PeerHttpOptions) {
    this.signer = signerFor(opts.security ?? []);
  }

  /** Sends req to the node at nodeUrl and reads the whole answer. */
  async request(nodeUrl: string, req: PeerRequest): Promise<PeerResponse> {
    const timeoutMs = req.timeoutMs ?? this.opts.timeoutMs;
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      const { pool, base } = this.pool(nodeUrl);
      const path = base + req.path;
      const headers = this.signer
        ? { ...req.headers, [AUTH_HEADER]: this.signer.sign({ method: req.method, path, headers: req.headers, body: req.body }) }
        : req.headers;
      const res = await pool.request({
        path,
        method: req.method,
        headers,
        body: req.body,
        signal: AbortSignal.any([deadline, this.closing.signal]),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
    } catch (err) {
      if (err instanceof ReplicaUnreachable) throw err;
      const e = err as { code?: string; message?: string } | undefined;
      const why = deadline.aborted
        ? `timed out after ${timeoutMs} ms`
        : this.closing.signal.aborted
          ? `${this.opts.name} is closed`
          : e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_BODY_TIMEOUT' || e?.code === 'UND_ERR_CONNECT_TIMEOUT'
            ? `timed out after ${timeoutMs} ms (${e.code})`
            : `${e?.code ? `${e.code} ` : ''}${e?.message ?? String(err)}`;
      throw new ReplicaUnreachable(nodeUrl, `${req.op} failed: ${why}`, { cause: err });
    }
  }

  /**
   * Closes every pool. By default calls in flight finish or hit their
   * deadline first; with abort they fail at once (a shutdown need not wait
   * out a hung peer). Idempotent.
   */
  async close(opts: { abort?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (opts.abort) this.closing.abort();
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => {})));
  }

  private pool(nodeUrl: string): { pool: Pool; base: string } {
    if (this.closed) throw new ReplicaUnreachable(nodeUrl, `${this.opts.name} is closed`);
    let url: URL;
    try {
      url = new URL(nodeUrl);
    } catch (err) {
      throw new ReplicaUnreachable(nodeUrl, 'not a valid node URL', { cause: err });
    }
    let pool = this.pools.get(url.origin);
    if (pool === undefined) {
      const { timeoutMs } = this.opts;
      pool = new Pool(url.origin, {
        connections: this.opts.connections,
        pipelining: 1,
        keepAliveTimeout: this.opts.keepAliveTimeoutMs ?? 30_000,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        connect: { timeout: this.opts.connectTimeoutMs ?? timeoutMs, ...undiciConnectOptions(this.opts.security) },
      });
      this.pools.set(url.origin, pool);
    }
    return { pool, base: url.pathname.replace(/\/+$/, '') };
  }
}

/**
 * The error a peer's non-2xx answer stands for (errors.ts peerError): the
 * class of its error code when the code blames the request, else
 * ReplicaUnreachable. The message keeps the start of the peer's error.
 */
export function answerError(nodeUrl: string, op: string, res: PeerResponse): FlexStoreError | ReplicaUnreachable {
  const text = res.body.toString('utf8');
  let code: string | undefined;
  let summary = text;
  const details: ErrorDetails = {};
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    if (typeof body.code === 'string') code = body.code;
    const msg = typeof body.error === 'string' ? body.error : text;
    summary = code ? `${code} ${msg}` : msg;
    for (const [k, v] of Object.entries(body)) if (k !== 'success' && k !== 'error' && k !== 'code') details[k] = v;
  } catch {
    // Not a FlexStore error body (a proxy's page, say): the text alone.
  }
  return peerError(nodeUrl, `${op} answered ${res.status}: ${summary.slice(0, MAX_ERROR_TEXT)}`, code, details);
}

/** A 200 answer's JSON body; a body that does not parse means the peer does not speak the protocol. */
export function jsonBody(nodeUrl: string, op: string, res: PeerResponse): unknown {
  try {
    return JSON.parse(res.body.toString('utf8'));
  } catch (err) {
    throw new ReplicaUnreachable(nodeUrl, `${op} answered ${res.status} with a body that is not JSON`, { cause: err });
  }
}
