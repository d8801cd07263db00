import { isVersion } from '../cluster/hlc.js';
import { codeUnitBytes, readCodeUnits, writeCodeUnits } from '../cluster/code-units.js';
import type { ReplicaRecord } from '../cluster/types.js';

/**
 * The byte encodings of one KV server's LMDB environment: how keys and records
 * are laid out on disk. Changing either changes the storage layout (see
 * LAYOUT in storage.ts) and needs a migration.
 */

export const RECORD_FORMAT = 1;
const HEADER_BYTES = 5;
const FLAG_TOMBSTONE = 1;
export const EMPTY = Buffer.alloc(0);

/**
 * Keys are written in a CESU-8-style encoding: every UTF-16 code unit is
 * encoded as if it were a code point (1–3 bytes; a surrogate pair takes 6).
 * LMDB compares keys bytewise, and this encoding makes that order equal to JS
 * string order, which plain UTF-8 does not (UTF-8 sorts U+10000.. after
 * U+E000..U+FFFF, UTF-16 sorts them before). lmdb-js's default ordered-binary
 * keys are UTF-8 plus escapes and disagree with `<` in the same place.
 * For keys without surrogates the bytes are exactly UTF-8.
 */
export const keyCodec = {
  writeKey(key: string | Uint8Array, target: Buffer, start: number): number {
    if (typeof key !== 'string') {
      target.set(key, start);
      return start + key.length;
    }
    if (start + key.length * 3 > target.length && start + encodedKeyBytes(key) > target.length) {
      // lmdb-js retries with a fresh buffer on RangeError.
      throw new RangeError('key does not fit in the key buffer');
    }
    return writeCodeUnits(target, key, start);
  },

  readKey(source: Uint8Array, start: number, end: number): string {
    const buf = Buffer.isBuffer(source) ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    return readCodeUnits(buf, start, end);
  },
};

/** Encoded size of a key under keyCodec. */
export function encodedKeyBytes(key: string): number {
  return codeUnitBytes(key);
}

/**
 * Records are hand-packed rather than msgpack: the value bytes go in verbatim
 * after a small header, and `list` and the version check read only the header.
 *
 *   [format u8][flags u8][version length u8][content-type length u16 BE]
 *   [version ascii][content type utf8][value bytes]
 */
export function encodeRecord(rec: ReplicaRecord): Buffer {
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
 * The header of a record in its stored encoding, checked: the format byte,
 * the lengths within the buffer and the version's shape. Throws on bytes that
 * are not a record. For records copied between replicas as stored bytes.
 */
export function recordHeader(buf: Buffer): { version: string; tombstone: boolean } {
  const size = buf.length;
  if (size < HEADER_BYTES || buf[0] !== RECORD_FORMAT) throw new Error(`not a stored record (format ${buf[0]}, ${size} bytes)`);
  const vend = HEADER_BYTES + buf[2]!;
  const ctend = vend + ((buf[3]! << 8) | buf[4]!);
  if (ctend > size) throw new Error(`stored record of ${size} bytes is shorter than its header says (${ctend})`);
  const tombstone = (buf[1]! & FLAG_TOMBSTONE) !== 0;
  if (tombstone && size > ctend) throw new Error('stored tombstone carries a value');
  const version = buf.toString('latin1', HEADER_BYTES, vend);
  if (!isVersion(version)) throw new Error(`stored record has an invalid version ${JSON.stringify(version)}`);
  return { version, tombstone };
}

/**
 * lmdb-js hands the decoder its shared read buffer (it is overwritten by the
 * next read), so decode copies what it keeps. In header-only mode the value is
 * skipped entirely; lists and the version check inside the write transaction
 * use it so they never copy values they do not need.
 */
export class RecordCodec {
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

/** The key's bytes under keyCodec: what LMDB stores and compares. */
export function encodeKey(key: string): Buffer {
  const out = Buffer.allocUnsafe(encodedKeyBytes(key));
  keyCodec.writeKey(key, out, 0);
  return out;
}
