import { type Database, type RootDatabase } from 'lmdb';
import type { ReplicaRecord } from '../cluster/types.js';
import {
  DigestBuckets,
  digestHex,
  entryHash,
  indexKeyOf,
  indexRange,
  keyHashBytes,
  type Digest,
  type HashScanOptions,
} from './hash-index-codec.js';
import { keyCodec } from './record-codec.js';
import { RecentChanges } from './recent-changes.js';

/**
 * The hash index: every record's key in placement-hash order (hash64(key) ‖
 * key, layout in hash-index-codec.ts), so anti-entropy can scan and digest a
 * ring range without reading the whole store.
 *
 * Entries carry no value: a key's version and tombstone flag are read from
 * its record (the authority) as a scan goes. So an entry is written only when
 * its key is first stored and removed only when the record is purged, in the
 * same LMDB transaction as the record; overwriting a key touches the records
 * B-tree alone. Storing the version in the entry (layout format 2) meant a
 * second B-tree leaf rewritten at a random place on every put: dropping it
 * raised the cluster's PUT throughput by 10-30% (three replicas each write
 * less per commit; docs/benchmarks.md), at the cost of one record lookup per
 * entry in scans, which are rare and paged.
 *
 * The per-bucket digest cache is updated with each transaction's XOR delta
 * after the commit, and rebuilt from the records when the storage opens.
 */

/** What a scan needs of a record: its header. */
export interface RecordHeaders {
  header(key: string): Pick<ReplicaRecord, 'version' | 'tombstone'> | undefined;
}

/** The value of every index entry. */
const EMPTY = Buffer.alloc(0);

/**
 * Most partial-bucket digests kept (see HashIndex.partials). A pass asks for
 * about two per arc it shares with a peer (the arcs' edges), a few thousand.
 */
const MAX_CACHED_PARTIALS = 16_384;

/** Records indexed per write transaction while building the index. */
const BUILD_CHUNK = 10_000;

/** What a one-time index build did, for the caller to log. */
export interface Migration {
  fromFormat: number;
  entries: number;
  ms: number;
}

/** A digest change computed inside a write transaction, applied after its commit. */
export interface DigestDelta {
  bucket: number;
  /** The key's placement hash as 8 bytes (for settled digests of partial buckets; read only when a settle window is kept). */
  keyHash: Buffer;
  hi: number;
  lo: number;
}

/** A record write's index entry, prepared outside the write lock. */
export interface IndexWrite {
  indexKey: Buffer;
  keyHash: Buffer;
  entry: Digest;
}

export class HashIndex {
  private readonly buckets = new DigestBuckets();
  /**
   * Digests of partial buckets (a range's edges) by their start, each with
   * the bucket's change count when it was scanned. An arc's edges are the
   * same every pass, and scanning one reads and hashes every record in it
   * (about 15 at 1M keys): at 1M keys a full set of arc digests cost
   * 90-170 ms per peer and side, every pass, with nothing written. A change
   * to the bucket (committed()) makes its entries stale.
   */
  private readonly partials = new Map<bigint, { to: bigint; changes: number; digest: Digest }>();
  private readonly changes = new Uint32Array(DigestBuckets.COUNT);
  private readonly recent: RecentChanges;

  constructor(
    private readonly index: Database<Buffer, Buffer>,
    private readonly records: RecordHeaders,
    /** Every record's key and header, for the digest cache's rebuild at open. */
    eachRecord: (visit: (key: string, version: string) => void) => void,
    /** How long a change stays out of settled digests (recent-changes.ts). Default 0: they equal current ones. */
    settleWindowMs = 0,
  ) {
    this.recent = new RecentChanges(settleWindowMs);
    eachRecord((key, version) => {
      const keyHash = keyHashBytes(key);
      const { hi, lo } = entryHash(version, keyHash);
      this.buckets.toggle(DigestBuckets.bucketOfIndexKey(keyHash), hi, lo);
    });
  }

  /** Everything the write transaction will store for (key, version), computed up front. */
  static prepare(key: string, version: string): IndexWrite {
    const keyHash = keyHashBytes(key);
    return { indexKey: indexKeyOf(key, keyHash), keyHash, entry: entryHash(version, keyHash) };
  }

  /**
   * Inside the write transaction that stores the record: adds the key's
   * entry if the record is new (heldVersion undefined), and returns the
   * digest change from heldVersion's entry hash to the new one.
   */
  write(w: IndexWrite, heldVersion: string | undefined): DigestDelta {
    let { hi, lo } = w.entry;
    if (heldVersion === undefined) {
      void this.index.put(w.indexKey, EMPTY);
    } else {
      const old = entryHash(heldVersion, w.keyHash);
      hi ^= old.hi;
      lo ^= old.lo;
    }
    return { bucket: DigestBuckets.bucketOfIndexKey(w.indexKey), keyHash: w.keyHash, hi: hi >>> 0, lo: lo >>> 0 };
  }

  /**
   * For a conditional insert (Storage.insertMany): stores the entry of a key
   * with no record yet, and returns the digest change to apply if the insert
   * commits.
   */
  insert(w: IndexWrite): DigestDelta {
    void this.index.put(w.indexKey, EMPTY);
    return { bucket: DigestBuckets.bucketOfIndexKey(w.indexKey), keyHash: w.keyHash, hi: w.entry.hi >>> 0, lo: w.entry.lo >>> 0 };
  }

  /** Inside the write transaction that removes key's record (of heldVersion). */
  remove(key: string, heldVersion: string): DigestDelta {
    const keyHash = keyHashBytes(key);
    const ikey = indexKeyOf(key, keyHash);
    void this.index.remove(ikey);
    const { hi, lo } = entryHash(heldVersion, keyHash);
    return { bucket: DigestBuckets.bucketOfIndexKey(ikey), keyHash, hi, lo };
  }

  /** After the commit of the transaction that produced the deltas. */
  committed(deltas: readonly DigestDelta[]): void {
    for (const d of deltas) {
      this.buckets.toggle(d.bucket, d.hi, d.lo);
      this.changes[d.bucket] = (this.changes[d.bucket]! + 1) >>> 0;
    }
    this.recent.add(deltas);
  }

  /**
   * Calls visit for each indexed key whose hash is in [start, end], in
   * (hash, key) order, until it returns false. The index key's bytes are
   * passed too (its first 8 are the key's hash).
   */
  scanKeys(start: bigint, end: bigint, visit: (key: string, indexKey: Buffer) => boolean | void, opts: HashScanOptions = {}): void {
    for (const key of this.index.getKeys(indexRange(start, end, opts)) as Iterable<Buffer>) {
      if (visit(keyCodec.readKey(key, 8, key.length), key) === false) return;
    }
  }

  /**
   * scanKeys with each key's version and tombstone flag, read from its
   * record. An entry without a record (never written so: record and entry
   * share every transaction) is skipped.
   */
  scan(start: bigint, end: bigint, visit: (key: string, hash: bigint, h: { version: string; tombstone: boolean }) => boolean | void, opts: HashScanOptions = {}): void {
    this.scanKeys(start, end, (key, ikey) => {
      const h = this.records.header(key);
      if (h === undefined) return;
      return visit(key, ikey.readBigUInt64BE(0), h);
    }, opts);
  }

  /**
   * Digest of [start, end] as 16 hex digits: of what is stored now, or with
   * `settled` of what was stored a settle window ago (the changes committed
   * since XORed back out).
   */
  digest(start: bigint, end: bigint, settled = false): string {
    const d = this.buckets.range(start, end, (from, to) => this.partialDigest(from, to));
    if (settled) {
      const r = this.recent.range(start, end);
      d.hi = (d.hi ^ r.hi) >>> 0;
      d.lo = (d.lo ^ r.lo) >>> 0;
    }
    return digestHex(d);
  }

  /**
   * Builds the index from the records of a format-1 data dir, in synchronous
   * chunks (the server is not serving yet), clearing any partial index a
   * crashed build left. About one MD5 and one index write per record.
   */
  static build(
    root: RootDatabase,
    records: Database<ReplicaRecord, string>,
    index: Database<Buffer, Buffer>,
  ): Migration {
    const t0 = performance.now();
    index.clearSync();
    let entries = 0;
    let after: string | undefined;
    for (;;) {
      const chunk: Buffer[] = [];
      const range = after === undefined ? { limit: BUILD_CHUNK } : { start: after, exclusiveStart: true, limit: BUILD_CHUNK };
      for (const key of records.getKeys(range) as Iterable<string>) {
        chunk.push(indexKeyOf(key, keyHashBytes(key)));
        after = key;
      }
      if (chunk.length === 0) break;
      root.transactionSync(() => {
        for (const k of chunk) index.putSync(k, EMPTY);
      });
      entries += chunk.length;
      if (chunk.length < BUILD_CHUNK) break;
    }
    return { fromFormat: 1, entries, ms: Math.round(performance.now() - t0) };
  }

  /** scanDigest of [from, to] (within one bucket), from the cache while the bucket is unchanged. */
  private partialDigest(from: bigint, to: bigint): Digest {
    const changes = this.changes[DigestBuckets.bucketOf(from)]!;
    const hit = this.partials.get(from);
    if (hit && hit.to === to && hit.changes === changes) return { ...hit.digest };
    const digest = this.scanDigest(from, to);
    if (this.partials.size >= MAX_CACHED_PARTIALS) this.partials.clear();
    this.partials.set(from, { to, changes, digest: { ...digest } });
    return digest;
  }

  private scanDigest(from: bigint, to: bigint): Digest {
    let hi = 0;
    let lo = 0;
    this.scanKeys(from, to, (key, ikey) => {
      const h = this.records.header(key);
      if (h === undefined) return;
      const e = entryHash(h.version, ikey);
      hi ^= e.hi;
      lo ^= e.lo;
    });
    return { hi: hi >>> 0, lo: lo >>> 0 };
  }
}
