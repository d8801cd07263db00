import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { asBinary, open, type Database, type RootDatabase } from 'lmdb';
import { InvalidKey, InvalidRequest } from '../cluster/errors.js';
import { isVersion } from '../cluster/hlc.js';
import type { ListEntry, ListPage, PutResult } from '../cluster/transport.js';
import type { ReplicaRecord } from '../cluster/types.js';

/**
 * One KV server's records in a single LMDB environment (`<dataDir>/flexstore.mdb`).
 *
 * Semantics:
 * - `put` is last-writer-wins by version: the record is stored only when its
 *   version is greater than the held one (plain string comparison of fixed-width
 *   HLC versions). The comparison and the write happen in one LMDB write
 *   transaction, so a concurrent older write can never replace a newer one.
 * - `put` resolves only once the transaction is flushed to disk: an
 *   acknowledged write survives kill -9 and power loss. The version reported
 *   for a write that was not applied is durable too: every commit is synced
 *   before the next one starts.
 * - `list` returns keys in JS string order (UTF-16 code units, what `<` does),
 *   the order every replica and the gateway's merge agree on. See keyCodec.
 * - Deletes are tombstone records; nothing is ever removed, so a key once
 *   listed stays listed.
 */

/** Bumped whenever the on-disk key or record encoding changes. */
const LAYOUT = { format: 1, keyOrder: 'utf16' } as const;
const RECORD_FORMAT = 1;
const HEADER_BYTES = 5;
const FLAG_TOMBSTONE = 1;
const MAX_CONTENT_TYPE_BYTES = 0xffff;
const EMPTY = Buffer.alloc(0);
const SURROGATE = /[\uD800-\uDFFF]/;

export interface ListOptions {
  /** Only keys starting with this; '' for all. */
  prefix?: string;
  /** Exclusive lower bound; '' for the start. */
  after?: string;
  /** Most entries to return. */
  limit: number;
}

/**
 * Keys are written in a CESU-8-style encoding: every UTF-16 code unit is
 * encoded as if it were a code point (1–3 bytes; a surrogate pair takes 6).
 * LMDB compares keys bytewise, and this encoding makes that order equal to JS
 * string order, which plain UTF-8 does not (UTF-8 sorts U+10000.. after
 * U+E000..U+FFFF, UTF-16 sorts them before). lmdb-js's default ordered-binary
 * keys are UTF-8 plus escapes and disagree with `<` in the same place.
 * For keys without surrogates the bytes are exactly UTF-8.
 */
const keyCodec = {
  writeKey(key: string | Uint8Array, target: Buffer, start: number): number {
    if (typeof key !== 'string') {
      target.set(key, start);
      return start + key.length;
    }
    if (!SURROGATE.test(key)) {
      if (start + key.length * 3 > target.length && start + Buffer.byteLength(key) > target.length) {
        // lmdb-js retries with a fresh buffer on RangeError.
        throw new RangeError('key does not fit in the key buffer');
      }
      return start + target.write(key, start, 'utf8');
    }
    if (start + key.length * 3 > target.length && start + encodedKeyBytes(key) > target.length) {
      throw new RangeError('key does not fit in the key buffer');
    }
    let p = start;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      if (c < 0x80) target[p++] = c;
      else if (c < 0x800) {
        target[p++] = 0xc0 | (c >> 6);
        target[p++] = 0x80 | (c & 0x3f);
      } else {
        target[p++] = 0xe0 | (c >> 12);
        target[p++] = 0x80 | ((c >> 6) & 0x3f);
        target[p++] = 0x80 | (c & 0x3f);
      }
    }
    return p;
  },

  readKey(source: Uint8Array, start: number, end: number): string {
    const buf = Buffer.isBuffer(source) ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    // A surrogate encodes as ED A0..BF; UTF-8 never contains that, so without it
    // the fast native decoder is exact.
    let i = buf.indexOf(0xed, start);
    while (i !== -1 && i < end - 1 && buf[i + 1]! < 0xa0) i = buf.indexOf(0xed, i + 1);
    if (i === -1 || i >= end - 1) return buf.toString('utf8', start, end);
    let out = '';
    for (let p = start; p < end; ) {
      const b = buf[p]!;
      if (b < 0x80) {
        out += String.fromCharCode(b);
        p += 1;
      } else if (b < 0xe0) {
        out += String.fromCharCode(((b & 0x1f) << 6) | (buf[p + 1]! & 0x3f));
        p += 2;
      } else {
        out += String.fromCharCode(((b & 0x0f) << 12) | ((buf[p + 1]! & 0x3f) << 6) | (buf[p + 2]! & 0x3f));
        p += 3;
      }
    }
    return out;
  },
};

/** Encoded size of a key under keyCodec. */
function encodedKeyBytes(key: string): number {
  if (!SURROGATE.test(key)) return Buffer.byteLength(key);
  let n = 0;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
  }
  return n;
}

/**
 * Records are hand-packed rather than msgpack: the value bytes go in verbatim
 * after a small header, and `list` and the version check read only the header.
 *
 *   [format u8][flags u8][version length u8][content-type length u16 BE]
 *   [version ascii][content type utf8][value bytes]
 */
function encodeRecord(rec: ReplicaRecord): Buffer {
  const vlen = rec.version.length;
  const ctlen = Buffer.byteLength(rec.contentType);
  const value = rec.tombstone ? EMPTY : rec.value;
  const out = Buffer.allocUnsafe(HEADER_BYTES + vlen + ctlen + value.length);
  out[0] = RECORD_FORMAT;
  out[1] = rec.tombstone ? FLAG_TOMBSTONE : 0;
  out[2] = vlen;
  out.writeUInt16BE(ctlen, 3);
  out.write(rec.version, HEADER_BYTES, 'latin1');
  out.write(rec.contentType, HEADER_BYTES + vlen, 'utf8');
  out.set(value, HEADER_BYTES + vlen + ctlen);
  return out;
}

/**
 * lmdb-js hands the decoder its shared read buffer (it is overwritten by the
 * next read), so decode copies what it keeps. In header-only mode the value is
 * skipped entirely; lists and the version check inside the write transaction
 * use it so they never copy values they do not need.
 */
class RecordCodec {
  headerOnly = false;

  encode(_rec: unknown): never {
    // Every put passes pre-encoded bytes through asBinary.
    throw new Error('records must be written with asBinary(encodeRecord(rec))');
  }

  decode(source: Uint8Array): ReplicaRecord {
    const size = source.length;
    const buf = Buffer.isBuffer(source) ? source : Buffer.from(source.buffer, source.byteOffset, size);
    if (buf[0] !== RECORD_FORMAT || size < HEADER_BYTES) {
      throw new Error(`unknown record format ${buf[0]} (${size} bytes)`);
    }
    const tombstone = (buf[1]! & FLAG_TOMBSTONE) !== 0;
    const vend = HEADER_BYTES + buf[2]!;
    const ctend = vend + ((buf[3]! << 8) | buf[4]!);
    const version = buf.toString('latin1', HEADER_BYTES, vend);
    if (this.headerOnly) return { value: EMPTY, version, tombstone, contentType: '' };
    const contentType = buf.toString('utf8', vend, ctend);
    let value = EMPTY;
    if (size > ctend) {
      value = Buffer.allocUnsafe(size - ctend);
      buf.copy(value, 0, ctend, size);
    }
    return { value, version, tombstone, contentType };
  }
}

export class Storage {
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly root: RootDatabase,
    private readonly records: Database<ReplicaRecord, string>,
    private readonly codec: RecordCodec,
    /** Largest encoded key LMDB accepts (1978 bytes with the default page size). */
    readonly maxKeyBytes: number,
  ) {}

  /** Opens (creating if needed) the environment in dir. Synchronous. */
  static open(dir: string): Storage {
    mkdirSync(dir, { recursive: true });
    // overlappingSync off: every commit is fsynced before its promise
    // resolves, so a resolved put is on disk with no second promise to track.
    // Measured no slower than overlapping flushes here (batches grow while
    // the fsync runs). Never noSync/noMetaSync: acknowledged writes must
    // survive a crash.
    const root = open({ path: join(dir, 'flexstore.mdb'), maxDbs: 4, overlappingSync: false });
    try {
      const meta = root.openDB<unknown, string>({ name: 'meta' });
      const codec = new RecordCodec();
      // keyEncoder is missing from lmdb-js's DatabaseOptions typings.
      const recordOptions = { name: 'records', keyEncoder: keyCodec, encoder: codec };
      const records = root.openDB<ReplicaRecord, string>(recordOptions as { name: string });
      const layout = meta.get('layout') as typeof LAYOUT | undefined;
      if (!layout) {
        meta.putSync('layout', LAYOUT);
      } else if (layout.format !== LAYOUT.format || layout.keyOrder !== LAYOUT.keyOrder) {
        throw new Error(
          `${dir} holds storage layout ${JSON.stringify(layout)}; this FlexStore reads ${JSON.stringify(LAYOUT)}`,
        );
      }
      const maxKeyBytes = (records as unknown as { maxKeySize: number }).maxKeySize;
      return new Storage(root, records, codec, maxKeyBytes);
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

  /**
   * Stores rec if rec.version is newer than the held version; resolves after
   * the commit is on disk with the version held afterwards.
   */
  async put(key: string, rec: ReplicaRecord): Promise<PutResult> {
    this.checkKey(key);
    if (!isVersion(rec.version)) throw new InvalidRequest(`invalid version ${JSON.stringify(rec.version)}`);
    if (Buffer.byteLength(rec.contentType) > MAX_CONTENT_TYPE_BYTES) {
      throw new InvalidRequest('content type is longer than 65535 bytes');
    }
    // asBinary bypasses the codec's encode: the bytes are ready and no
    // encoding work happens inside the write lock.
    const encoded = asBinary(encodeRecord(rec)) as unknown as ReplicaRecord;
    const version = rec.version;
    // The callback runs inside the batch's write transaction, serialised with
    // every other write, so read-compare-write is atomic. It resolves after the
    // (synced) commit, including for a write that was not applied.
    return this.records.transaction((): PutResult => {
      const held = this.headerOf(key);
      if (held && held.version >= version) return { applied: false, version: held.version };
      void this.records.put(key, encoded);
      return { applied: true, version };
    });
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
    this.codec.headerOnly = true;
    try {
      for (const { key, value } of this.records.getRange(range)) {
        if (!key.startsWith(prefix)) break;
        if (entries.length === limit) {
          more = true;
          break;
        }
        entries.push({ key, version: value.version, tombstone: value.tombstone });
      }
    } finally {
      this.codec.headerOnly = false;
    }
    return { entries, more };
  }

  /** Number of keys held, tombstones included. */
  count(): number {
    return (this.records.getStats() as { entryCount: number }).entryCount;
  }

  /** Waits for in-flight writes, then closes the environment. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.root.close();
    return this.closing;
  }

  private headerOf(key: string): ReplicaRecord | undefined {
    this.codec.headerOnly = true;
    try {
      return this.records.get(key);
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
