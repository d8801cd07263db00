import { KeyNotFound, ReplicaUnreachable } from './errors.js';
import { isVersion } from './hlc.js';
import {
  DEFAULT_CONTENT_TYPE,
  HEADER_CONTENT_TYPE,
  HEADER_TOMBSTONE,
  HEADER_VERSION,
  HINTS_PATH,
  JSON_CONTENT_TYPE,
  KEYS_PATH,
  KV_PATH,
  recordHeaders,
} from './http-wire.js';
import type { ClusterSecurity } from './security.js';
import { PeerHttp, answerError, jsonBody } from './peer-http.js';
import type { CallOptions, ListEntry, ListPage, ListQuery, PutResult, ReplicaTransport } from './transport.js';
import type { ReplicaRecord } from './types.js';

/**
 * ReplicaTransport over the KV servers' internal HTTP API (wire format:
 * http-wire.ts), with pooled connections and a deadline per call
 * (peer-http.ts). A call that times out may still have been applied by the
 * replica; the coordinator treats it as a missing ack and read repair settles
 * the replica later.
 */

export interface HttpReplicaTransportOptions {
  /** Default deadline of one call, connect to last body byte. Default 2000 ms. */
  timeoutMs?: number;
  /** Most open connections per node. Default 32. */
  connections?: number;
  /** How long an idle connection stays open when the server sends no hint. Default 30000 ms. */
  keepAliveTimeoutMs?: number;
  /** Cluster secrets and TLS of this process (security.ts). Default: open, plain HTTP. */
  security?: ClusterSecurity;
}

export class HttpReplicaTransport implements ReplicaTransport {
  private readonly http: PeerHttp;

  constructor(opts: HttpReplicaTransportOptions = {}) {
    this.http = new PeerHttp({
      name: 'transport',
      timeoutMs: opts.timeoutMs ?? 2000,
      connections: opts.connections ?? 32,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 30_000,
      ...(opts.security && { security: opts.security }),
    });
  }

  async get(nodeUrl: string, key: string, opts?: CallOptions): Promise<ReplicaRecord | null> {
    const res = await this.http.request(nodeUrl, {
      op: 'GET',
      method: 'GET',
      path: KV_PATH + encodeURIComponent(key),
      timeoutMs: opts?.timeoutMs,
    });
    if (res.status !== 200) {
      const err = answerError(nodeUrl, 'GET', res);
      // Only the replica's own "no record" counts as absent: a 404 for the
      // route itself means this is not a (compatible) KV server.
      if (res.status === 404 && err instanceof KeyNotFound) return null;
      throw err;
    }
    const h = res.headers;
    const version = h[HEADER_VERSION];
    const tombstone = h[HEADER_TOMBSTONE];
    const contentType = h[HEADER_CONTENT_TYPE];
    if (!isVersion(version) || (tombstone !== '0' && tombstone !== '1')) {
      throw new ReplicaUnreachable(nodeUrl, `GET answered 200 without valid ${HEADER_VERSION}/${HEADER_TOMBSTONE} headers`);
    }
    return {
      value: res.body,
      version,
      tombstone: tombstone === '1',
      contentType: typeof contentType === 'string' ? contentType : DEFAULT_CONTENT_TYPE,
    };
  }

  async put(nodeUrl: string, key: string, rec: ReplicaRecord, opts?: CallOptions): Promise<PutResult> {
    const res = await this.http.request(nodeUrl, {
      op: 'PUT',
      method: 'PUT',
      path: KV_PATH + encodeURIComponent(key),
      headers: recordHeaders(rec),
      body: rec.value,
      timeoutMs: opts?.timeoutMs,
    });
    if (res.status !== 200) throw answerError(nodeUrl, 'PUT', res);
    const body = jsonBody(nodeUrl, 'PUT', res) as Partial<PutResult> | null;
    if (typeof body?.applied !== 'boolean' || !isVersion(body.version)) {
      throw new ReplicaUnreachable(nodeUrl, 'PUT answered 200 without {applied, version}');
    }
    return { applied: body.applied, version: body.version };
  }

  async list(nodeUrl: string, query: ListQuery, opts?: CallOptions): Promise<ListPage> {
    const path =
      `${KEYS_PATH}?prefix=${encodeURIComponent(query.prefix)}` +
      `&after=${encodeURIComponent(query.after)}&limit=${query.limit}`;
    const res = await this.http.request(nodeUrl, { op: 'list', method: 'GET', path, timeoutMs: opts?.timeoutMs });
    if (res.status !== 200) throw answerError(nodeUrl, 'list', res);
    const body = jsonBody(nodeUrl, 'list', res) as { entries?: unknown; more?: unknown } | null;
    if (!Array.isArray(body?.entries) || typeof body.more !== 'boolean' || !body.entries.every(isListEntry)) {
      throw new ReplicaUnreachable(nodeUrl, 'list answered 200 without {entries, more}');
    }
    return { entries: body.entries as ListEntry[], more: body.more };
  }

  async storeHints(nodeUrl: string, targetId: string, keys: string[], opts?: CallOptions): Promise<void> {
    const res = await this.http.request(nodeUrl, {
      op: 'hints',
      method: 'POST',
      path: HINTS_PATH,
      headers: { 'content-type': JSON_CONTENT_TYPE },
      body: Buffer.from(JSON.stringify({ target: targetId, keys })),
      timeoutMs: opts?.timeoutMs,
    });
    if (res.status !== 200) throw answerError(nodeUrl, 'hints', res);
  }

  /** Closes every pool; requests in flight finish or hit their deadline first. Idempotent. */
  close(): Promise<void> {
    return this.http.close();
  }
}

function isListEntry(e: unknown): boolean {
  const x = e as ListEntry | null;
  return typeof x?.key === 'string' && typeof x.version === 'string' && typeof x.tombstone === 'boolean';
}
