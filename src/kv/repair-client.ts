import { ReplicaUnreachable } from '../cluster/errors.js';
import { HINTS_PATH } from '../cluster/http-wire.js';
import type { ClusterSecurity } from '../cluster/security.js';
import { PeerHttp, answerError } from '../cluster/peer-http.js';
import {
  FETCH_BYTE_BUDGET,
  MAX_BATCH_KEYS,
  MSGPACK,
  SYNC_APPLY_PATH,
  SYNC_DIGESTS_PATH,
  SYNC_ENTRIES_PATH,
  SYNC_FETCH_PATH,
  SYNC_RANGE_PATH,
  decodeBody,
  entryList,
  hashToHex,
  objectBody,
  packr,
  rawList,
  recordList,
  type EntriesPage,
  type RawPage,
  type RepairRecord,
} from './repair-wire.js';

/**
 * Client of a peer KV server's repair API (repair-api.ts), for anti-entropy
 * and hint delivery. Calls go through peer-http.ts with a few connections per
 * peer: enough to keep several batches in flight without competing with
 * gateway traffic for the peer's sockets. Every call has a deadline, and
 * close() aborts the calls in flight; a failure rejects with
 * ReplicaUnreachable (a request the peer refuses, with its error's class). A
 * timed-out apply may still have been applied: applies are last-writer-wins,
 * so sending it again is safe.
 */

export interface RepairClientOptions {
  /** Deadline of one call. Default 10000 ms (a page of a large range can take a while to read). */
  timeoutMs?: number;
  /** Connections per peer. Default 4. */
  connections?: number;
  /** Cluster secrets and TLS of this process (security.ts). Default: open, plain HTTP. */
  security?: ClusterSecurity;
}

/** Ranges per digests request; larger lists are split. */
const DIGEST_CHUNK = 4096;

export class RepairClient {
  private readonly http: PeerHttp;

  constructor(opts: RepairClientOptions = {}) {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    this.http = new PeerHttp({
      name: 'repair client',
      timeoutMs,
      connections: opts.connections ?? 4,
      connectTimeoutMs: Math.min(timeoutMs, 5000),
      ...(opts.security && { security: opts.security }),
    });
  }

  /** The peer's digest of each [start, end] range, in order; with `settled`, of what it held a settle window ago. */
  async digests(url: string, ranges: ReadonlyArray<readonly [bigint, bigint]>, settled = false): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < ranges.length; i += DIGEST_CHUNK) {
      const chunk = ranges.slice(i, i + DIGEST_CHUNK);
      const body = await this.call(url, SYNC_DIGESTS_PATH, {
        ranges: chunk.map(([s, e]) => [hashToHex(s), hashToHex(e)]),
        ...(settled && { settled: true }),
      });
      const digests = body.digests;
      if (!Array.isArray(digests) || digests.length !== chunk.length || !digests.every((d) => typeof d === 'string')) {
        throw new ReplicaUnreachable(url, 'digests answered without one digest per range');
      }
      out.push(...(digests as string[]));
    }
    return out;
  }

  /** One page of the peer's entries in [start, end], strictly after the key `after`. */
  async entries(url: string, q: { start: bigint; end: bigint; after?: string; limit: number }): Promise<EntriesPage> {
    const body = await this.call(url, SYNC_ENTRIES_PATH, {
      start: hashToHex(q.start),
      end: hashToHex(q.end),
      ...(q.after !== undefined && { after: q.after }),
      limit: q.limit,
    });
    if (typeof body.more !== 'boolean') throw new ReplicaUnreachable(url, 'entries answered without "more"');
    return { entries: this.checked(url, () => entryList(body.entries, 'entries')), more: body.more };
  }

  /**
   * One page of the peer's records in [start, end], as stored (bytes, not
   * checked here: Storage.insertRaw checks each), strictly after the key
   * `after`. Resolves null when the peer predates the range endpoint (it
   * answers 404): the caller compares entries instead.
   */
  async range(url: string, q: { start: bigint; end: bigint; after?: string; limit: number }): Promise<RawPage | null> {
    const body = await this.call(url, SYNC_RANGE_PATH, {
      start: hashToHex(q.start),
      end: hashToHex(q.end),
      ...(q.after !== undefined && { after: q.after }),
      limit: q.limit,
    }, true);
    if (body === null) return null;
    if (typeof body.more !== 'boolean') throw new ReplicaUnreachable(url, 'range answered without "more"');
    return { raw: this.checked(url, () => rawList(body.raw, 'raw', q.limit)), more: body.more };
  }

  /**
   * The peer's records for keys (those it holds), one answer at a time: the
   * peer ends an answer after about 4 MiB of values, so onPage sees bounded
   * batches however large the values. Resolves with how many records came.
   */
  async fetchPages(url: string, keys: readonly string[], onPage: (records: RepairRecord[]) => Promise<void>): Promise<number> {
    let count = 0;
    for (let from = 0; from < keys.length; ) {
      const ask = keys.slice(from, from + MAX_BATCH_KEYS);
      const body = await this.call(url, SYNC_FETCH_PATH, { keys: ask });
      const records = this.checked(url, () => recordList(body.records, 'records', ask.length));
      if (records.length > 0) await onPage(records);
      count += records.length;
      const next = body.next;
      if (next === undefined) from += ask.length;
      else if (typeof next === 'number' && Number.isInteger(next) && next > 0 && next <= ask.length) from += next;
      else throw new ReplicaUnreachable(url, `fetch answered an invalid next ${JSON.stringify(next)}`);
    }
    return count;
  }

  /** fetchPages gathered into one array: for batches known to be small. */
  async fetch(url: string, keys: readonly string[]): Promise<RepairRecord[]> {
    const out: RepairRecord[] = [];
    await this.fetchPages(url, keys, async (records) => {
      out.push(...records);
    });
    return out;
  }

  /**
   * Sends records to the peer (last-writer-wins there); resolves with how many
   * it applied. Split into requests of at most 4 MiB of values (and
   * MAX_BATCH_KEYS records), well under a KV server's body limit; a record
   * larger than that goes alone.
   */
  async apply(url: string, records: readonly RepairRecord[]): Promise<number> {
    let applied = 0;
    for (let from = 0; from < records.length; ) {
      let to = from;
      let bytes = 0;
      while (to < records.length && to - from < MAX_BATCH_KEYS && (to === from || bytes + records[to]!.value.length <= FETCH_BYTE_BUDGET)) {
        bytes += records[to]!.value.length;
        to++;
      }
      const body = await this.call(url, SYNC_APPLY_PATH, { records: records.slice(from, to) });
      if (typeof body.applied !== 'number') throw new ReplicaUnreachable(url, 'apply answered without "applied"');
      applied += body.applied;
      from = to;
    }
    return applied;
  }

  /** Asks the peer to keep hints that target missed keys. */
  async hints(url: string, target: string, keys: readonly string[]): Promise<number> {
    const body = await this.call(url, HINTS_PATH, { target, keys });
    if (typeof body.stored !== 'number') throw new ReplicaUnreachable(url, 'hints answered without "stored"');
    return body.stored;
  }

  /** Aborts calls in flight (a shutdown does not wait out a hung peer) and closes every pool. Idempotent. */
  close(): Promise<void> {
    return this.http.close({ abort: true });
  }

  private checked<T>(url: string, parse: () => T): T {
    try {
      return parse();
    } catch (err) {
      throw new ReplicaUnreachable(url, `answered a malformed body: ${(err as Error).message}`, { cause: err });
    }
  }

  private async call(url: string, path: string, body: object): Promise<Record<string, unknown>>;
  private async call(url: string, path: string, body: object, nullOn404: true): Promise<Record<string, unknown> | null>;
  private async call(url: string, path: string, body: object, nullOn404 = false): Promise<Record<string, unknown> | null> {
    const res = await this.http.request(url, {
      op: path,
      method: 'POST',
      path,
      headers: { 'content-type': MSGPACK, accept: MSGPACK },
      body: packr.pack(body),
    });
    if (res.status === 404 && nullOn404) return null;
    if (res.status !== 200) throw answerError(url, path, res);
    const ct = res.headers['content-type'];
    return this.checked(url, () => objectBody(decodeBody(Array.isArray(ct) ? ct[0] : ct, res.body).data));
  }
}
