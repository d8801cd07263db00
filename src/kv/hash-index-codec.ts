import { hash } from 'node:crypto';
import { encodedKeyBytes, keyCodec } from './record-codec.js';

/**
 * Byte layout of the hash index (see hash-index.ts) and the digest arithmetic.
 *
 *   key   = hash64(key), 8 bytes big-endian, then the key's bytes (keyCodec)
 *   value = empty (layout format 3; format 2 kept the version here, and such
 *           values are ignored)
 *
 * The entry hash is a 64-bit hash of (key, version); a range's digest is the
 * XOR of its entries' entry hashes, so two replicas holding the same versions
 * of the same keys in a range have the same digest whatever order they
 * received them in, and a write changes a digest by XORing the old entry hash
 * out and the new one in.
 */

const HASH_MAX = (1n << 64n) - 1n;

export interface HashScanOptions {
  /** Start strictly after this key's (hash, key) position. */
  after?: string;
  /** Stop after this key's (hash, key) position (inclusive). */
  until?: string;
}

/** The first 8 bytes of MD5(UTF-8 key): hash64(key) of src/cluster/hash.ts as bytes. */
export function keyHashBytes(key: string): Buffer {
  return hash('md5', key, 'buffer').subarray(0, 8);
}

/** The index key of key, whose hash64 bytes are keyHash: one allocation. */
export function indexKeyOf(key: string, keyHash: Buffer): Buffer {
  const out = Buffer.allocUnsafe(8 + encodedKeyBytes(key));
  keyHash.copy(out, 0, 0, 8);
  keyCodec.writeKey(key, out, 8);
  return out;
}

/** An 8-byte range bound: every index key whose hash is `h` sorts at or after it. */
export function hashBound(h: bigint): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64BE(h);
  return out;
}

/**
 * Entry hash of (key, version): 64 bits from the key's placement hash (the
 * index key's first 8 bytes, already uniform) and the version's characters.
 * Each half hashes the version murmur3-style seeded with one half of the key
 * hash, then mixes in the other half, so the result is not "f(key) XOR
 * g(version)": swapping versions between two keys changes the digest. Not
 * cryptographic; it only has to make accidental digest collisions unlikely,
 * and it costs about a tenth of an MD5, which matters on every put.
 */
export function entryHash(version: string, keyHash: Uint8Array): Digest {
  const a = ((keyHash[0]! << 24) | (keyHash[1]! << 16) | (keyHash[2]! << 8) | keyHash[3]!) >>> 0;
  const b = ((keyHash[4]! << 24) | (keyHash[5]! << 16) | (keyHash[6]! << 8) | keyHash[7]!) >>> 0;
  let h1 = a;
  let h2 = (b ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < version.length; i++) {
    const c = version.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0xcc9e2d51);
    h1 = Math.imul((h1 << 15) | (h1 >>> 17), 0x1b873593);
    h2 = Math.imul(h2 ^ c, 0x85ebca6b);
    h2 = Math.imul((h2 << 13) | (h2 >>> 19), 0xc2b2ae35);
  }
  return { hi: fmix32(h1 ^ Math.imul(b, 0x27d4eb2f) ^ version.length), lo: fmix32(h2 ^ Math.imul(a, 0x165667b1)) };
}

/** murmur3's 32-bit finaliser. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 64-bit digest as two unsigned 32-bit halves (cheaper than BigInt to XOR). */
export interface Digest {
  hi: number;
  lo: number;
}

export function digestHex(d: Digest): string {
  return d.hi.toString(16).padStart(8, '0') + d.lo.toString(16).padStart(8, '0');
}

/**
 * Range digests cached per fixed bucket of the hash space: the XOR of the
 * entry hashes of every key whose hash starts with the bucket's 16 bits.
 * 65,536 buckets take 512 KiB whatever the key count. A range's digest is the
 * XOR of the buckets it covers whole plus a scan of the (at most two) buckets
 * it covers in part, so with K keys a range costs about 2·K/65536 index reads
 * instead of all its keys.
 *
 * The cache lives in memory only: it is rebuilt by one full index scan when
 * the storage opens and updated after each index commit with the XOR delta
 * that transaction computed.
 */
export class DigestBuckets {
  static readonly BITS = 16;
  static readonly COUNT = 1 << DigestBuckets.BITS;
  private static readonly SHIFT = BigInt(64 - DigestBuckets.BITS);
  private static readonly SPAN = 1n << DigestBuckets.SHIFT;
  private readonly xor = new Uint32Array(2 * DigestBuckets.COUNT);

  static bucketOf(h: bigint): number {
    return Number(h >> DigestBuckets.SHIFT);
  }

  /** Bucket of an index key, from its first two bytes. */
  static bucketOfIndexKey(key: Uint8Array): number {
    return (key[0]! << 8) | key[1]!;
  }

  /** XORs one entry hash in or out (the same operation). */
  toggle(bucket: number, hi: number, lo: number): void {
    this.xor[2 * bucket] = (this.xor[2 * bucket]! ^ hi) >>> 0;
    this.xor[2 * bucket + 1] = (this.xor[2 * bucket + 1]! ^ lo) >>> 0;
  }

  clear(): void {
    this.xor.fill(0);
  }

  /**
   * Digest of [start, end] (inclusive): whole buckets from the cache, the
   * partial ones through `scan`, which must XOR the entries in [from, to].
   */
  range(start: bigint, end: bigint, scan: (from: bigint, to: bigint) => Digest): Digest {
    const { SPAN } = DigestBuckets;
    const first = DigestBuckets.bucketOf(start);
    const last = DigestBuckets.bucketOf(end);
    if (first === last) {
      const whole = start === BigInt(first) * SPAN && end === BigInt(first) * SPAN + SPAN - 1n;
      return whole ? this.bucket(first) : scan(start, end);
    }
    const acc: Digest = { hi: 0, lo: 0 };
    const add = (d: Digest) => {
      acc.hi = (acc.hi ^ d.hi) >>> 0;
      acc.lo = (acc.lo ^ d.lo) >>> 0;
    };
    const firstEnd = BigInt(first) * SPAN + SPAN - 1n;
    add(start === BigInt(first) * SPAN ? this.bucket(first) : scan(start, firstEnd));
    for (let b = first + 1; b < last; b++) add(this.bucket(b));
    const lastStart = BigInt(last) * SPAN;
    add(end === lastStart + SPAN - 1n ? this.bucket(last) : scan(lastStart, end));
    return acc;
  }

  private bucket(b: number): Digest {
    return { hi: this.xor[2 * b]!, lo: this.xor[2 * b + 1]! };
  }
}

/**
 * lmdb-js range options for the index entries whose hash is in [start, end],
 * narrowed by opts.after (exclusive) and opts.until (inclusive).
 */
export function indexRange(start: bigint, end: bigint, opts: HashScanOptions) {
  let from = hashBound(start);
  let exclusiveStart = false;
  if (opts.after !== undefined) {
    const a = indexKeyOf(opts.after, keyHashBytes(opts.after));
    if (Buffer.compare(a, from) >= 0) {
      from = a;
      exclusiveStart = true;
    }
  }
  let to: Buffer | undefined = end < HASH_MAX ? hashBound(end + 1n) : undefined;
  let inclusiveEnd = false;
  if (opts.until !== undefined) {
    const u = indexKeyOf(opts.until, keyHashBytes(opts.until));
    if (to === undefined || Buffer.compare(u, to) < 0) {
      to = u;
      inclusiveEnd = true;
    }
  }
  return to === undefined ? { start: from, exclusiveStart } : { start: from, exclusiveStart, end: to, inclusiveEnd };
}
