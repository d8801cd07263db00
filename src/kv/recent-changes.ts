import { DigestBuckets, type Digest } from './hash-index-codec.js';

/**
 * The digest changes committed in the last `windowMs`, so that anti-entropy
 * can compare what two replicas held `windowMs` ago instead of what they hold
 * now: settled digest = current digest XOR the recent changes in the range.
 *
 * Why: under a steady stream of writes, a replica's current digests always
 * differ from its peers' in the buckets of the writes still in flight (the
 * third replica's copy lags the quorum's by milliseconds, and the two sides'
 * digests are taken moments apart). A routine pass then lists and compares
 * those buckets only to find nothing to move; at 1M keys under a bulk load
 * that kept passes running 4–12 s back to back and cost 20–45% of the load
 * rate (docs/benchmarks.md). A write younger than the window is left to the
 * next pass after it settles; one a replica really missed still differs then.
 *
 * Passes that acquire ranges (a join or a leave) compare current digests
 * (window 0): a membership change must not complete without the latest
 * writes.
 *
 * Memory is bounded by the write rate, not the key count: one small object
 * per change for windowMs.
 */

interface Change {
  t: number;
  bucket: number;
  /** The key's 8-byte placement hash; read as a number only for a partial bucket's digest. */
  keyHash: Buffer;
  hi: number;
  lo: number;
}

export class RecentChanges {
  /** Changes in commit order; those before `head` have expired. */
  private queue: Change[] = [];
  private head = 0;
  /** Per bucket: the XOR of its unexpired changes, and the changes themselves in commit order. */
  private readonly xor = new DigestBuckets();
  private readonly byBucket = new Map<number, Change[]>();

  constructor(
    /** How long a change is held back from settled digests. 0 keeps nothing. */
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records changes committed now (digest deltas of one transaction; keyHash is the key's 8-byte placement hash). */
  add(changes: Iterable<{ bucket: number; keyHash: Buffer; hi: number; lo: number }>): void {
    if (this.windowMs <= 0) return;
    const t = this.now();
    for (const { bucket, keyHash, hi, lo } of changes) {
      const c: Change = { t, bucket, keyHash, hi, lo };
      this.queue.push(c);
      this.xor.toggle(bucket, hi, lo);
      let list = this.byBucket.get(bucket);
      if (!list) this.byBucket.set(bucket, (list = []));
      list.push(c);
    }
    this.expire(t);
  }

  /** XOR of the unexpired changes whose hash is in [start, end]. */
  range(start: bigint, end: bigint): Digest {
    this.expire(this.now());
    if (this.head === this.queue.length) return { hi: 0, lo: 0 };
    return this.xor.range(start, end, (from, to) => {
      let hi = 0;
      let lo = 0;
      for (const c of this.byBucket.get(DigestBuckets.bucketOf(from)) ?? []) {
        const hash = c.keyHash.readBigUInt64BE(0);
        if (hash < from || hash > to) continue;
        hi ^= c.hi;
        lo ^= c.lo;
      }
      return { hi: hi >>> 0, lo: lo >>> 0 };
    });
  }

  /** Unexpired changes held (for tests and metrics). */
  get size(): number {
    return this.queue.length - this.head;
  }

  private expire(now: number): void {
    const before = now - this.windowMs;
    while (this.head < this.queue.length && this.queue[this.head]!.t <= before) {
      const c = this.queue[this.head++]!;
      this.xor.toggle(c.bucket, c.hi, c.lo);
      const list = this.byBucket.get(c.bucket)!;
      list.shift();
      if (list.length === 0) this.byBucket.delete(c.bucket);
    }
    // Compact once the expired prefix is most of the array.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}
