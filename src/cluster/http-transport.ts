import { Pool, type Dispatcher } from 'undici';
import { isVersion } from './hlc.js';
import {
  ReplicaUnreachable,
  type CallOptions,
  type ListEntry,
  type ListPage,
  type ListQuery,
  type PutResult,
  type ReplicaTransport,
} from './transport.js';
import type { ReplicaRecord } from './types.js';

/**
 * ReplicaTransport over the KV servers' internal HTTP API (src/kv/replica-api.ts).
 *
 * One keep-alive undici Pool per node URL, created on first use. Every call
 * has an overall deadline (an AbortSignal) on top of the pool's header and
 * body timeouts, so a replica that accepts connections but never answers (a
 * paused process, a full disk) fails the call instead of holding it. A call
 * that times out may still have been applied by the replica; the coordinator
 * treats it as a missing ack and read repair settles the replica later.
 */

const KV_PATH = '/internal/kv/';
const KEYS_PATH = '/internal/keys';
const HINTS_PATH = '/internal/hints';
const H_VERSION = 'x-flexstore-version';
const H_TOMBSTONE = 'x-flexstore-tombstone';
const H_CONTENT_TYPE = 'x-flexstore-content-type';
const MAX_ERROR_TEXT = 500;

export interface HttpReplicaTransportOptions {
  /** Default deadline of one call, connect to last body byte. Default 2000 ms. */
  timeoutMs?: number;
  /** Most open connections per node. Default 32. */
  connections?: number;
  /** How long an idle connection stays open when the server sends no hint. Default 30000 ms. */
  keepAliveTimeoutMs?: number;
}

interface Target {
  pool: Pool;
  /** Path prefix of the node URL without a trailing slash; usually ''. */
  base: string;
}

export class HttpReplicaTransport implements ReplicaTransport {
  private readonly timeoutMs: number;
  private readonly connections: number;
  private readonly keepAliveTimeoutMs: number;
  private readonly targets = new Map<string, Target>();
  private closed = false;

  constructor(opts: HttpReplicaTransportOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.connections = opts.connections ?? 32;
    this.keepAliveTimeoutMs = opts.keepAliveTimeoutMs ?? 30_000;
  }

  async get(nodeUrl: string, key: string, opts?: CallOptions): Promise<ReplicaRecord | null> {
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    const { res, signal } = await this.send(nodeUrl, 'GET', KV_PATH + encodeURIComponent(key), timeoutMs);
    try {
      const status = res.statusCode;
      if (status === 200) {
        const h = res.headers;
        const version = h[H_VERSION];
        const tombstone = h[H_TOMBSTONE];
        const contentType = h[H_CONTENT_TYPE];
        // Read the body before judging the headers so the socket goes back to the pool.
        const value = Buffer.from(await res.body.arrayBuffer());
        if (!isVersion(version) || (tombstone !== '0' && tombstone !== '1')) {
          throw new ReplicaUnreachable(nodeUrl, `GET answered 200 without valid ${H_VERSION}/${H_TOMBSTONE} headers`);
        }
        return {
          value,
          version,
          tombstone: tombstone === '1',
          contentType: typeof contentType === 'string' ? contentType : 'application/octet-stream',
        };
      }
      const err = await errorOf(res);
      // Only the replica's own "no record" counts as absent: a 404 for the
      // route itself means this is not a (compatible) KV server.
      if (status === 404 && err.code === 'KEY_NOT_FOUND') return null;
      throw new ReplicaUnreachable(nodeUrl, `GET answered ${status}: ${err.text}`);
    } catch (err) {
      throw asUnreachable(nodeUrl, 'GET', err, signal, timeoutMs);
    }
  }

  async put(nodeUrl: string, key: string, rec: ReplicaRecord, opts?: CallOptions): Promise<PutResult> {
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    const headers = [
      'content-type', 'application/octet-stream',
      H_VERSION, rec.version,
      H_TOMBSTONE, rec.tombstone ? '1' : '0',
      H_CONTENT_TYPE, rec.contentType,
    ];
    const { res, signal } = await this.send(nodeUrl, 'PUT', KV_PATH + encodeURIComponent(key), timeoutMs, headers, rec.value);
    try {
      if (res.statusCode !== 200) {
        throw new ReplicaUnreachable(nodeUrl, `PUT answered ${res.statusCode}: ${(await errorOf(res)).text}`);
      }
      const body = (await res.body.json()) as Partial<PutResult> | null;
      if (typeof body?.applied !== 'boolean' || !isVersion(body.version)) {
        throw new ReplicaUnreachable(nodeUrl, 'PUT answered 200 without {applied, version}');
      }
      return { applied: body.applied, version: body.version };
    } catch (err) {
      throw asUnreachable(nodeUrl, 'PUT', err, signal, timeoutMs);
    }
  }

  async list(nodeUrl: string, query: ListQuery, opts?: CallOptions): Promise<ListPage> {
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    const path =
      `${KEYS_PATH}?prefix=${encodeURIComponent(query.prefix)}` +
      `&after=${encodeURIComponent(query.after)}&limit=${query.limit}`;
    const { res, signal } = await this.send(nodeUrl, 'GET', path, timeoutMs);
    try {
      if (res.statusCode !== 200) {
        throw new ReplicaUnreachable(nodeUrl, `list answered ${res.statusCode}: ${(await errorOf(res)).text}`);
      }
      const body = (await res.body.json()) as { entries?: unknown; more?: unknown } | null;
      if (!Array.isArray(body?.entries) || typeof body.more !== 'boolean' || !body.entries.every(isListEntry)) {
        throw new ReplicaUnreachable(nodeUrl, 'list answered 200 without {entries, more}');
      }
      return { entries: body.entries as ListEntry[], more: body.more };
    } catch (err) {
      throw asUnreachable(nodeUrl, 'list', err, signal, timeoutMs);
    }
  }

  async storeHints(nodeUrl: string, targetId: string, keys: string[], opts?: CallOptions): Promise<void> {
    const timeoutMs = opts?.timeoutMs ?? this.timeoutMs;
    const body = Buffer.from(JSON.stringify({ target: targetId, keys }));
    const { res, signal } = await this.send(nodeUrl, 'POST', HINTS_PATH, timeoutMs, ['content-type', 'application/json'], body);
    try {
      if (res.statusCode !== 200) {
        throw new ReplicaUnreachable(nodeUrl, `hints answered ${res.statusCode}: ${(await errorOf(res)).text}`);
      }
      await res.body.dump();
    } catch (err) {
      throw asUnreachable(nodeUrl, 'hints', err, signal, timeoutMs);
    }
  }

  /** Closes every pool; requests in flight finish or hit their deadline first. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.targets.values()].map((t) => t.pool);
    this.targets.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => {})));
  }

  private async send(
    nodeUrl: string,
    method: 'GET' | 'PUT' | 'POST',
    path: string,
    timeoutMs: number,
    headers?: string[],
    body?: Buffer,
  ): Promise<{ res: Dispatcher.ResponseData; signal: AbortSignal }> {
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const target = this.target(nodeUrl);
      const res = await target.pool.request({
        path: target.base + path,
        method,
        headers,
        body,
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      return { res, signal };
    } catch (err) {
      throw asUnreachable(nodeUrl, method, err, signal, timeoutMs);
    }
  }

  private target(nodeUrl: string): Target {
    let t = this.targets.get(nodeUrl);
    if (t !== undefined) return t;
    if (this.closed) throw new ReplicaUnreachable(nodeUrl, 'transport is closed');
    let url: URL;
    try {
      url = new URL(nodeUrl);
    } catch (err) {
      throw new ReplicaUnreachable(nodeUrl, 'not a valid node URL', { cause: err });
    }
    const pool = new Pool(url.origin, {
      connections: this.connections,
      // One request per connection at a time: a slow PUT never delays a GET queued behind it.
      pipelining: 1,
      keepAliveTimeout: this.keepAliveTimeoutMs,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connect: { timeout: this.timeoutMs },
    });
    t = { pool, base: url.pathname.replace(/\/+$/, '') };
    this.targets.set(nodeUrl, t);
    return t;
  }
}

/** Reads (and so releases) an error response: the FlexStore error code and a short text. */
async function errorOf(res: Dispatcher.ResponseData): Promise<{ code?: string; text: string }> {
  const text = await res.body.text();
  try {
    const body = JSON.parse(text) as { code?: unknown; error?: unknown };
    const code = typeof body.code === 'string' ? body.code : undefined;
    const msg = typeof body.error === 'string' ? body.error : text;
    return { code, text: (code ? `${code} ${msg}` : msg).slice(0, MAX_ERROR_TEXT) };
  } catch {
    return { text: text.slice(0, MAX_ERROR_TEXT) };
  }
}

function asUnreachable(
  nodeUrl: string,
  op: string,
  err: unknown,
  signal: AbortSignal,
  timeoutMs: number,
): ReplicaUnreachable {
  if (err instanceof ReplicaUnreachable) return err;
  const e = err as { code?: string; message?: string };
  const why = signal.aborted
    ? `timed out after ${timeoutMs} ms`
    : e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_BODY_TIMEOUT' || e?.code === 'UND_ERR_CONNECT_TIMEOUT'
      ? `timed out after ${timeoutMs} ms (${e.code})`
      : `${e?.code ? `${e.code} ` : ''}${e?.message ?? String(err)}`;
  return new ReplicaUnreachable(nodeUrl, `${op} failed: ${why}`, { cause: err });
}

function isListEntry(e: unknown): boolean {
  const x = e as ListEntry | null;
  return typeof x?.key === 'string' && typeof x.version === 'string' && typeof x.tombstone === 'boolean';
}
