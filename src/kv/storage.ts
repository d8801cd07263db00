import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { asBinary, open, type Database, type RootDatabase } from 'lmdb';
import { InvalidKey, InvalidRequest, VersionFromFuture } from '../cluster/errors.js';
import { DEFAULT_MAX_CLOCK_SKEW_MS, isVersion, parseVersion, versionAheadMs } from '../cluster/hlc.js';
import type { ListEntry, ListPage, PutResult } from '../cluster/transport.js';
import type { ReplicaRecord } from '../cluster/types.js';
import { defaultKvConfig } from './config.js';
import type { HashScanOptions } from './hash-index-codec.js';
import { HashIndex, type DigestDelta, type IndexWrite, type Migration } from './hash-index.js';
import { HINT_KEY_OVERHEAD, HintStore } from './hint-store.js';
import { openLayout } from './storage-layout.js';
import { PeriodicSync } from './periodic-sync.js';
import { StorageHealth, installCommitFailureFilter, settleCommitError, type StorageState, type WritePath } from './storage-health.js';
import { RecordCodec, encodeRecord, encodedKeyBytes, keyCodec, recordHeader } from './record-codec.js';

export type { HashScanOptions } from './hash-index-codec.js';

/**
 * One KV server's records in a single LMDB environment (`<dataDir>/flexstore.mdb`).
 *
 * Semantics:
 * - `put` and `putMany` are last-writer-wins by version: a record is stored
 *   only when its version is greater than the held one (plain string
 *   comparison of fixed-width HLC versions). The comparison and the write
 *   happen in one LMDB write transaction, so a concurrent older write can never
 *   replace a newer one.
 * - They resolve only once the transaction is committed, and with sync
 *   'commit' (the default) flushed to disk: an acknowledged write survives
 *   kill -9 and power loss. The version reported for a write that was not
 *   applied is durable too: every commit is synced before the next one
 *   starts. With sync 'interval' see StorageOptions.
 * - Every record write also writes its hash-index entry (hash-index.ts) in
 *   the same transaction; ring ranges are scanned and digested through it.
 * - `list` returns keys in JS string order (UTF-16 code units, what `<` does),
 *   the order every replica and the gateway's merge agree on. See keyCodec.
 * - Deletes are tombstone records. Only `purgeTombstones` removes records, and
 *   only tombstones older than the cluster's grace (see anti-entropy.ts).
 * - Every write path refuses a version more than maxClockSkewMs ahead of this
 *   server's clock (hlc.ts): `put` rejects with VersionFromFuture; the batch
 *   paths (`putMany`, `insertMany`, `insertRaw`), which carry records from
 *   peers, leave such records out, apply the rest and say how many they
 *   refused. A peer holding one such record must not stop a whole range from
 *   repairing. Each refusal is reported to onVersionRefused with its source.
 *   Known gap: a record stored before this check existed keeps its version.
 * - Every commit goes through `health` (storage-health.ts): once a commit
 *   fails because the disk is full (or an I/O error, or LMDB's map is full),
 *   every write path rejects with StorageFull, without trying to commit,
 *   until a probe commit succeeds; reads go on. A failed commit changes
 *   nothing already committed.
 */

const MAX_CONTENT_TYPE_BYTES = 0xffff;
/** Records a purge examines per read before yielding to the event loop. */
const PURGE_SCAN_CHUNK = 10_000;
/** The meta key the storage probe writes and removes, and the size of its value: a commit that needs some room. */
const PROBE_KEY = 'storage-probe';
const PROBE_BYTES = 64 * 1024;

/**
 * How commits reach the disk.
 * - 'commit': every commit is fsynced before its writes resolve. An
 *   acknowledged write survives kill -9 of the process and power loss of the
 *   machine.
 * - 'interval': a commit is handed to the OS (written to the page cache)
 *   before its writes resolve, and the environment is fsynced every
 *   syncIntervalMs. An acknowledged write survives kill -9 of the process
 *   (the OS still holds it); a power loss or kernel crash can lose the
 *   writes of the last interval, and, because LMDB without per-commit sync
 *   relies on the OS writing pages in order, can leave the data dir
 *   unreadable (docs/operations.md says how to refill it from peers). The
 *   fsyncs it saves are the largest single cost of a replica write.
 */
export type SyncMode = 'commit' | 'interval';

export interface StorageOptions {
  /** Default 'commit'. */
  sync?: SyncMode;
  /** With sync 'interval': time between fsyncs of the environment. Default 100 ms. */
  syncIntervalMs?: number;
  /** With sync 'interval': told of a failed periodic fsync (the next tick tries again). Default: ignored. */
  onSyncError?: (err: Error) => void;
  /** How long a change stays out of settled digests (see recent-changes.ts). Default 0. */
  settleWindowMs?: number;
  /** This server's clock, in epoch ms. Default Date.now. */
  now?: () => number;
  /** How far ahead of now() a version may be and still be stored (MAX_CLOCK_SKEW). Default 10 s. */
  maxClockSkewMs?: number;
  /** Told of every version refused as from the future, with the path it came by. Default: ignored. */
  onVersionRefused?: (source: WriteSource, count: number) => void;
  /** While the storage cannot commit, time between probe commits (STORAGE_PROBE_MS). Default 5 s. */
  storageProbeMs?: number;
  /** Told when the storage turns full (with the error code that made it so) and ok again. Default: ignored. */
  onStorageState?: (state: StorageState, cause?: string) => void;
  /** Told of every write refused with StorageFull, by path (a WriteSource, 'hints' or 'purge'). Default: ignored. */
  onWriteRefused?: (path: WritePath) => void;
}

/**
 * The path a write came by, for counting refusals: a gateway's replica write
 * (and its read repair) over HTTP or TCP, a peer's apply (anti-entropy push
 * or hint delivery), records this server pulled from a peer (fetch), or a
 * range streamed from a peer.
 */
export type WriteSource = 'replica_http' | 'replica_tcp' | 'sync_apply' | 'sync_pull' | 'sync_stream';
export const WRITE_SOURCES: readonly WriteSource[] = ['replica_http', 'replica_tcp', 'sync_apply', 'sync_pull', 'sync_stream'];

/** What a batch write did: records applied, and records refused as from the future (not written). */
export interface BatchResult {
  applied: number;
  refused: number;
}

export interface ListOptions {
  /** Only keys starting with this; '' for all. */
  prefix?: string;
  /** Exclusive lower bound; '' for the start. */
  after?: string;
  /** Most entries to return. */
  limit: number;
}

/** One hash-index entry: a record's key, version and placement hash. */
export interface HashEntry {
  key: string;
  version: string;
  tombstone: boolean;
  hash: bigint;
}

/** A write prepared outside the write lock: every byte is ready. */
interface PreparedWrite {
  key: string;
  version: string;
  record: ReplicaRecord;
  index: IndexWrite;
}

export class Storage {
  readonly hints: HintStore;
  /** Whether commits are taken; see storage-health.ts. */
  readonly health: StorageHealth;
  /** Largest encoded key accepted: LMDB's key limit less a hint key's prefix (1913 bytes by default). */
  readonly maxKeyBytes: number;
  private readonly hashIndex: HashIndex;
  private closing: Promise<void> | null = null;
  /** With sync 'interval': the timer fsyncing the environment. */
  private periodic: PeriodicSync | null = null;
  private readonly now: () => number;
  private readonly maxClockSkewMs: number;
  private readonly onVersionRefused: (source: WriteSource, count: number) => void;

  private constructor(
    private readonly root: RootDatabase,
    private readonly records: Database<ReplicaRecord, string>,
    private readonly meta: Database<unknown, string>,
    dbs: { index: Database<Buffer, Buffer>; hints: Database<Buffer, Buffer> },
    private readonly codec: RecordCodec,
    /** The one-time migration open() ran, for the caller to log; null when none. */
    readonly migration: Migration | null,
    opts: StorageOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.maxClockSkewMs = opts.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
    this.onVersionRefused = opts.onVersionRefused ?? (() => {});
    const settleWindowMs = opts.settleWindowMs ?? 0;
    this.maxKeyBytes = (records as unknown as { maxKeySize: number }).maxKeySize - HINT_KEY_OVERHEAD;
    this.hashIndex = new HashIndex(dbs.index, { header: (key) => this.headerOf(key) }, (visit) => this.eachHeader(visit), settleWindowMs);
    this.health = new StorageHealth({
      probe: () => this.probeCommit(),
      probeMs: opts.storageProbeMs ?? defaultKvConfig.storageProbeMs,
      ...(opts.onStorageState && { onChange: opts.onStorageState }),
      ...(opts.onWriteRefused && { onRefused: opts.onWriteRefused }),
    });
    this.hints = new HintStore(dbs.hints, (key) => this.headerOf(key)?.version, this.maxKeyBytes, (write) => this.health.commit('hints', write));
  }

  /** Opens (creating if needed) the environment in dir, migrating an older layout. Synchronous. */
  static open(dir: string, opts: StorageOptions = {}): Storage {
    const sync = opts.sync ?? 'commit';
    const syncIntervalMs = opts.syncIntervalMs ?? defaultKvConfig.syncIntervalMs;
    if (sync !== 'commit' && sync !== 'interval') throw new Error(`sync must be commit or interval, got ${JSON.stringify(sync)}`);
    if (!(Number.isInteger(syncIntervalMs) && syncIntervalMs >= 1)) throw new Error(`syncIntervalMs must be a positive integer, got ${syncIntervalMs}`);
    mkdirSync(dir, { recursive: true });
    installCommitFailureFilter();
    // overlappingSync off: with sync 'commit' every commit is fsynced before
    // its promise resolves, so a resolved put is on disk with no second
    // promise to track (and overlapping the fsync with the next commit was
    // measured to save nothing: the fsync's kernel CPU is the cost).
    // noSync only for 'interval', whose timer does the fsyncs.
    // useWritemap off (lmdb-js's default, spelled out): through a writable
    // map a full disk is a SIGBUS that kills the process; with plain writes
    // it is a failed commit (storage-health.ts).
    const root = open({ path: join(dir, 'flexstore.mdb'), maxDbs: 8, overlappingSync: false, noSync: sync === 'interval', useWritemap: false });
    try {
      const meta = root.openDB<unknown, string>({ name: 'meta' });
      const codec = new RecordCodec();
      // keyEncoder and encoder objects are missing from lmdb-js's DatabaseOptions typings.
      const recordOptions = { name: 'records', keyEncoder: keyCodec, encoder: codec };
      const records = root.openDB<ReplicaRecord, string>(recordOptions as { name: string });
      const index = root.openDB<Buffer, Buffer>({ name: 'hash-index', keyEncoding: 'binary', encoding: 'binary' });
      const hints = root.openDB<Buffer, Buffer>({ name: 'hints', keyEncoding: 'binary', encoding: 'binary' });
      const migration = openLayout(dir, meta, () => HashIndex.build(root, records, index));
      const storage = new Storage(root, records, meta, { index, hints }, codec, migration, opts);
      if (sync === 'interval') {
        // A failed fsync (EIO, ENOSPC on delayed allocation) means the disk is not taking writes either.
        storage.periodic = new PeriodicSync(() => storage.syncEnv(), syncIntervalMs, (err) => {
          void storage.health.observe(err);
          opts.onSyncError?.(err);
        });
      }
      return storage;
    } catch (err) {
      void root.close();
      throw err;
    }
  }

  /** The replica's record, tombstones included; null when it holds none. Reads the latest commit. */
  get(key: string): ReplicaRecord | null {
    this.checkKey(key);
    return this.records.get(key) ?? null;
  }

  /** get() for each key, in order. */
  getMany(keys: readonly string[]): Array<ReplicaRecord | null> {
    for (const key of keys) this.checkKey(key);
    // Synchronous reads in one event turn share lmdb-js's read transaction: one snapshot.
    return keys.map((key) => this.records.get(key) ?? null);
  }

  /**
   * Stores rec if rec.version is newer than the held version; resolves after
   * the commit is on disk with the version held afterwards. Rejects with
   * VersionFromFuture, writing nothing, for a version from the future.
   */
  async put(key: string, rec: ReplicaRecord, source: WriteSource = 'replica_http'): Promise<PutResult> {
    const w = this.prepare(key, rec);
    const ahead = this.aheadBeyondSkew(w.version);
    if (ahead !== undefined) {
      this.onVersionRefused(source, 1);
      throw new VersionFromFuture(
        `version ${w.version} is ${ahead} ms ahead of this server's clock; at most ${this.maxClockSkewMs} ms (MAX_CLOCK_SKEW) is accepted`,
        { version: w.version, aheadMs: ahead, maxClockSkewMs: this.maxClockSkewMs },
      );
    }
    // The callback runs inside the batch's write transaction, serialised with
    // every other write, so read-compare-write is atomic. It resolves after the
    // (synced) commit, including for a write that was not applied.
    const { applied, version, delta } = await this.health.commit(source, () => this.records.transaction(() => this.writeInTxn(w)));
    if (delta) this.hashIndex.committed([delta]);
    return { applied, version };
  }

  /**
   * put() for many records in one transaction, each last-writer-wins on its
   * own (a second record for one key is compared with the first). Resolves
   * after the commit is on disk with how many were applied. Every record is
   * validated before anything is written: one bad record rejects the batch.
   * Records from the future are left out and counted as refused.
   */
  async putMany(items: ReadonlyArray<{ key: string; rec: ReplicaRecord }>, source: WriteSource = 'sync_apply'): Promise<BatchResult> {
    const { admitted: writes, refused } = this.admit(items.map(({ key, rec }) => this.prepare(key, rec)), source);
    if (writes.length === 0) return { applied: 0, refused };
    return { applied: await this.health.commit(source, () => this.writePrepared(writes)), refused };
  }

  /** Last-writer-wins writes in one transaction; resolves with how many were applied. */
  private async writePrepared(writes: readonly PreparedWrite[]): Promise<number> {
    const deltas = await this.records.transaction(() => {
      const out: DigestDelta[] = [];
      for (const w of writes) {
        const { delta } = this.writeInTxn(w);
        if (delta) out.push(delta);
      }
      return out;
    });
    this.hashIndex.committed(deltas);
    return deltas.length;
  }

  /**
   * putMany() for records that are most likely new here (a range streamed to
   * a replica that held nothing in it). Each record is inserted only if its
   * key has no record at commit time, a condition lmdb-js checks on its write
   * thread, so the B-tree work leaves the event loop (a write transaction
   * callback runs on it). Records whose key did appear meanwhile (a client
   * write that landed during the transfer) go through putMany's
   * last-writer-wins. Resolves after the commits are on disk.
   */
  async insertMany(items: ReadonlyArray<{ key: string; rec: ReplicaRecord }>, source: WriteSource = 'sync_stream'): Promise<BatchResult> {
    const { admitted, refused } = this.admit(items.map(({ key, rec }) => this.prepare(key, rec)), source);
    return { applied: await this.insertPrepared(admitted, source), refused };
  }

  /**
   * insertMany() for records in their stored encoding, as another replica's
   * storage holds them (scanHashRangeRaw): stored as they are, with no
   * decoding or re-encoding. Each is checked (recordHeader) before anything
   * is written: one malformed record rejects the batch. Records for which
   * `skip` (given each header) returns true are left out, and so are records
   * from the future (counted as refused).
   */
  async insertRaw(
    items: ReadonlyArray<{ key: string; bytes: Buffer }>,
    skip?: (header: { version: string; tombstone: boolean }) => boolean,
    source: WriteSource = 'sync_stream',
  ): Promise<BatchResult> {
    const writes: PreparedWrite[] = [];
    for (const { key, bytes } of items) {
      this.checkKey(key);
      let header: { version: string; tombstone: boolean };
      try {
        header = recordHeader(bytes);
      } catch (err) {
        throw new InvalidRequest(`record of ${JSON.stringify(key.slice(0, 64))}: ${(err as Error).message}`);
      }
      if (skip?.(header)) continue;
      const record = asBinary(bytes) as unknown as ReplicaRecord;
      writes.push({ key, version: header.version, record, index: HashIndex.prepare(key, header.version) });
    }
    const { admitted, refused } = this.admit(writes, source);
    return { applied: await this.insertPrepared(admitted, source), refused };
  }

  /** The writes whose versions are not from the future; the others are counted as refused. */
  private admit(writes: PreparedWrite[], source: WriteSource): { admitted: PreparedWrite[]; refused: number } {
    const admitted = writes.filter((w) => this.aheadBeyondSkew(w.version) === undefined);
    const refused = writes.length - admitted.length;
    if (refused > 0) this.onVersionRefused(source, refused);
    return { admitted, refused };
  }

  /** How far ahead of this server's clock the version is, when that is more than the skew allowed; else undefined. */
  private aheadBeyondSkew(version: string): number | undefined {
    const ahead = versionAheadMs(version, this.now());
    return ahead !== undefined && ahead > this.maxClockSkewMs ? ahead : undefined;
  }

  private async insertPrepared(writes: PreparedWrite[], source: WriteSource): Promise<number> {
    if (writes.length === 0) return 0;
    return this.health.commit(source, () => this.insertPreparedNow(writes));
  }

  private async insertPreparedNow(writes: PreparedWrite[]): Promise<number> {
    const deltas: Array<DigestDelta | undefined> = new Array(writes.length);
    // Settled one by one: when a commit fails (a full disk) the inserts of
    // commits that did succeed must still reach the digest cache.
    const inserted = await Promise.allSettled(
      writes.map((w, i) =>
        this.records.ifNoExists(w.key, () => {
          void this.records.put(w.key, w.record);
          deltas[i] = this.hashIndex.insert(w.index);
        }),
      ),
    );
    const done: DigestDelta[] = [];
    const rest: PreparedWrite[] = [];
    let failure: PromiseRejectedResult | undefined;
    inserted.forEach((r, i) => {
      if (r.status === 'rejected') {
        failure ??= r;
        settleCommitError(r.reason);
      } else if (r.value) {
        done.push(deltas[i]!);
      } else {
        rest.push(writes[i]!);
      }
    });
    this.hashIndex.committed(done);
    if (failure) throw failure.reason;
    let applied = done.length;
    if (rest.length > 0) applied += await this.writePrepared(rest);
    return applied;
  }

  /** Keys in JS string order with their versions, tombstones included. */
  list(opts: ListOptions): ListPage {
    const prefix = opts.prefix ?? '';
    const after = opts.after ?? '';
    const limit = opts.limit;
    if (!(limit >= 1)) return { entries: [], more: false };
    if (after && encodedKeyBytes(after) > this.maxKeyBytes) throw new InvalidKey('after is longer than any key');
    if (prefix && encodedKeyBytes(prefix) > this.maxKeyBytes) return { entries: [], more: false };
    // '\u0000' encodes as the single byte 0, below every key (LMDB has no empty key).
    const range =
      after && after >= prefix
        ? { start: after, exclusiveStart: true }
        : { start: prefix || '\u0000' };
    const entries: ListEntry[] = [];
    let more = false;
    this.headersOnly(() => {
      for (const { key, value } of this.records.getRange(range)) {
        if (!key.startsWith(prefix)) break;
        if (entries.length === limit) {
          more = true;
          break;
        }
        entries.push({ key, version: value.version, tombstone: value.tombstone });
      }
    });
    return { entries, more };
  }

  /**
   * Calls visit for each record whose hash is in [start, end] (inclusive), in
   * (hash, key) order, until visit returns false. Synchronous, one snapshot.
   */
  scanHashRange(start: bigint, end: bigint, visit: (e: HashEntry) => boolean | void, opts: HashScanOptions = {}): void {
    this.hashIndex.scan(start, end, (key, hash, h) => visit({ key, version: h.version, tombstone: h.tombstone, hash }), opts);
  }

  /**
   * Calls visit with each record whose key's hash is in [start, end], in its
   * stored encoding (a copy: see record-codec.ts), in (hash, key) order,
   * until visit returns false. Synchronous, one snapshot.
   */
  scanHashRangeRaw(start: bigint, end: bigint, visit: (key: string, bytes: Buffer) => boolean | void, opts: HashScanOptions = {}): void {
    this.hashIndex.scanKeys(start, end, (key) => {
      const bytes = this.records.getBinary(key);
      if (bytes === undefined) return;
      return visit(key, bytes);
    }, opts);
  }

  /** Up to limit entries of scanHashRange; `more` when the range holds others after them. */
  hashRangePage(start: bigint, end: bigint, limit: number, opts: HashScanOptions = {}): { entries: HashEntry[]; more: boolean } {
    const entries: HashEntry[] = [];
    let more = false;
    this.scanHashRange(start, end, (e) => {
      if (entries.length === limit) {
        more = true;
        return false;
      }
      entries.push(e);
    }, opts);
    return { entries, more };
  }

  /**
   * Digest of each [start, end] range: the XOR of the entry hashes of the
   * records whose hash is in it, as 16 hex digits. Equal on two replicas that
   * hold the same versions of the same keys there. With `settled`, of what
   * was held a settle window ago (StorageOptions.settleWindowMs).
   */
  digests(ranges: ReadonlyArray<readonly [bigint, bigint]>, settled = false): string[] {
    return ranges.map(([start, end]) => this.hashIndex.digest(start, end, settled));
  }

  /**
   * Removes every tombstone whose version's wall time is before olderThanWallMs,
   * in batches; a key written again since it was seen is left alone.
   * Resolves with how many were removed.
   */
  async purgeTombstones(olderThanWallMs: number): Promise<number> {
    let removed = 0;
    let after: string | undefined;
    do {
      const { found, next } = this.tombstonesBefore(olderThanWallMs, after);
      after = next;
      if (found.length === 0) continue;
      const deltas = await this.health.commit('purge', () =>
        this.records.transaction(() => {
          const out: DigestDelta[] = [];
          for (const c of found) {
            // The record is the authority: a key written again since the scan is kept.
            const held = this.headerOf(c.key);
            if (!held?.tombstone || held.version !== c.version) continue;
            void this.records.remove(c.key);
            out.push(this.hashIndex.remove(c.key, held.version));
          }
          return out;
        }),
      );
      this.hashIndex.committed(deltas);
      removed += deltas.length;
    } while (after !== undefined);
    return removed;
  }

  /**
   * Up to PURGE_SCAN_CHUNK records from `after` (exclusive) on, in key order
   * (sequential pages, headers only), returning the tombstones among them
   * older than wallMs and the key to continue from (undefined at the end).
   */
  private tombstonesBefore(wallMs: number, after: string | undefined): { found: Array<{ key: string; version: string }>; next?: string } {
    const found: Array<{ key: string; version: string }> = [];
    let last: string | undefined;
    let seen = 0;
    const range = after === undefined ? { limit: PURGE_SCAN_CHUNK } : { start: after, exclusiveStart: true, limit: PURGE_SCAN_CHUNK };
    this.headersOnly(() => {
      for (const { key, value } of this.records.getRange(range)) {
        seen++;
        last = key;
        if (value.tombstone && (parseVersion(value.version)?.wall ?? Infinity) < wallMs) found.push({ key, version: value.version });
      }
    });
    return seen === PURGE_SCAN_CHUNK ? { found, next: last! } : { found };
  }

  /** Number of keys held, tombstones included. */
  count(): number {
    return (this.records.getStats() as { entryCount: number }).entryCount;
  }

  /** Waits for in-flight writes (and with sync 'interval' one last fsync), then closes the environment. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.health.close();
      if (this.periodic) {
        const inFlight = this.periodic.stop();
        this.periodic = null;
        // A commit that failed was answered to its writer; what matters here is the fsync below.
        await this.root.flushed.then(undefined, () => {});
        await inFlight;
        await this.syncEnv();
      }
      await this.root.close();
    })();
    return this.closing;
  }

  /**
   * Resolves once everything committed so far is on disk. A no-op cost with
   * sync 'commit' (it already is); with 'interval' an fsync off the event loop.
   */
  async fsync(): Promise<void> {
    if (this.periodic) await this.syncEnv();
  }

  /**
   * The storage probe: a commit of PROBE_BYTES and one that removes them
   * (with sync 'interval' an fsync too), so it succeeds only when the disk
   * has some room again, and leaves nothing behind.
   */
  private async probeCommit(): Promise<void> {
    await this.meta.put(PROBE_KEY, Buffer.alloc(PROBE_BYTES, 0x5a));
    await this.meta.remove(PROBE_KEY);
    if (this.periodic) await this.syncEnv();
  }

  private syncEnv(): Promise<void> {
    return new Promise<void>((resolve, reject) =>
      // RootDatabase.sync is missing from lmdb-js's typings; it runs mdb_env_sync on the libuv pool.
      (this.root as unknown as { sync(cb: (err?: Error) => void): void }).sync((err) => (err ? reject(err) : resolve())),
    );
  }

  private prepare(key: string, rec: ReplicaRecord): PreparedWrite {
    this.checkKey(key);
    if (!isVersion(rec.version)) throw new InvalidRequest(`invalid version ${JSON.stringify(rec.version)}`);
    if (Buffer.byteLength(rec.contentType) > MAX_CONTENT_TYPE_BYTES) {
      throw new InvalidRequest('content type is longer than 65535 bytes');
    }
    // asBinary bypasses the codec's encode: the bytes are ready and no
    // encoding work happens inside the write lock.
    const record = asBinary(encodeRecord(rec)) as unknown as ReplicaRecord;
    const index = HashIndex.prepare(key, rec.version);
    return { key, version: rec.version, record, index };
  }

  /**
   * The last-writer-wins step, inside a write transaction. The record's
   * header is the authority on the held version; the index mirrors it.
   */
  private writeInTxn(w: PreparedWrite): PutResult & { delta?: DigestDelta } {
    const held = this.headerOf(w.key);
    if (held && held.version >= w.version) return { applied: false, version: held.version };
    void this.records.put(w.key, w.record);
    const delta = this.hashIndex.write(w.index, held?.version);
    return { applied: true, version: w.version, delta };
  }

  /** Every record's key and version, in key order (the digest cache's rebuild). */
  private eachHeader(visit: (key: string, version: string) => void): void {
    this.headersOnly(() => {
      for (const { key, value } of this.records.getRange({})) visit(key, value.version);
    });
  }

  private headerOf(key: string): ReplicaRecord | undefined {
    return this.headersOnly(() => this.records.get(key));
  }

  /** Runs fn with the codec decoding record headers only: version and flags, no value bytes. */
  private headersOnly<T>(fn: () => T): T {
    this.codec.headerOnly = true;
    try {
      return fn();
    } finally {
      this.codec.headerOnly = false;
    }
  }

  private checkKey(key: string): void {
    if (typeof key !== 'string' || key.length === 0) throw new InvalidKey('key must be a non-empty string');
    if (encodedKeyBytes(key) > this.maxKeyBytes) {
      throw new InvalidKey(`key is longer than ${this.maxKeyBytes} bytes`, { key: key.slice(0, 64) });
    }
  }
}
