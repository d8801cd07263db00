import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { codeUnitString, fuzzParams, wellFormedString } from '../test/support/fuzz.js';
import { InvalidKey, ProtocolError, errorTable, type ErrorCode } from './errors.js';
import { formatVersion } from './hlc.js';
import {
  decodeError,
  decodeHints,
  decodeKey,
  decodeList,
  decodeListReply,
  decodePut,
  decodePutReply,
  decodeRecordReply,
  encodeError,
  encodeGet,
  encodeHints,
  encodeList,
  encodeListReply,
  encodePut,
  encodePutReply,
  encodeRecordReply,
} from './tcp-codec.js';
import { FRAME_HEADER_BYTES } from './tcp-protocol.js';

/**
 * The replica protocol's body decoders under random and mutated bodies: each
 * answers a value or throws ProtocolError (a RangeError or TypeError from a
 * read past the end is a bug); a field decodes from its own bytes only; and
 * every encoder's body decodes back to what was encoded, for any key,
 * lone surrogates included.
 */

const body = (frame: Buffer): Buffer => frame.subarray(FRAME_HEADER_BYTES);
// fc.record builds null-prototype objects; deepEqual wants plain ones.
const plain = <T extends object>(o: T): T => ({ ...o });
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
/**
 * Bytes that reach the decoder of strings with lone surrogates (an encoded
 * surrogate starts ED A0..BF), mixed with lead bytes cut short and noise:
 * plain random bytes almost never do.
 */
const unitBytes = fc
  .array(
    fc.oneof(
      fc.integer({ min: 0, max: 255 }).map((b) => [b]),
      fc.constantFrom([0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xed, 0xa0], [0xe0], [0xe2, 0x82], [0xc3], [0xf0, 0x9f, 0x98], [0x80]),
    ),
    { maxLength: 8 },
  )
  .map((parts) => Buffer.from(parts.flat()));

/** Any JS string: random UTF-16 code units (lone surrogates included), or well-formed text up to U+10FFFF. */
const anyString = fc.oneof(
  codeUnitString(40),
  wellFormedString({ maxLength: 40 }),
  fc.array(fc.constantFrom('\ud800', '\udfff', '\ud83d\ude00', '\u00e9', '\uffff', 'a', '\u0000'), { maxLength: 12 }).map((a) => a.join('')),
);
/** Versions travel as latin1: any string of code units up to 0xff, up to 255 of them. */
const versionArb = fc.oneof(
  fc.record({ wall: fc.integer({ min: 0, max: 2 ** 47 }), counter: fc.integer({ min: 0, max: 0xffffff }) }).map((ts) => formatVersion(ts, 'gw-1')),
  fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 255 }),
);
/** Content types travel as UTF-8: well-formed strings. */
const contentTypeArb = wellFormedString({ maxLength: 40 });
const recordArb = fc
  .record({ value: bytes(64), version: versionArb, tombstone: fc.boolean(), contentType: contentTypeArb })
  .map(plain);
const entryArb = fc.record({ key: anyString, version: versionArb, tombstone: fc.boolean() }).map(plain);

/** Runs a decoder: its value, or undefined for a ProtocolError; anything else it throws fails the property. */
function decodeOrRefuse<T>(decode: (b: Buffer) => T, b: Buffer): T | undefined {
  try {
    return decode(b);
  } catch (err) {
    if (err instanceof ProtocolError) return undefined;
    throw new Error(`decoder threw ${(err as Error)?.name}, not ProtocolError: ${(err as Error)?.message}`, { cause: err });
  }
}

type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; data: Buffer }
  | { kind: 'delete'; at: number; n: number }
  | { kind: 'u8' | 'u16' | 'u32'; at: number; value: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), data: bytes(8) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  // Length and count fields overwritten: tiny, just past the body, or huge.
  fc.record({
    kind: fc.constantFrom('u8' as const, 'u16' as const, 'u32' as const),
    at: fc.nat(),
    value: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 300 }), u32, fc.constant(0xffffffff)),
  }),
);

function mutate(original: Buffer, mutations: readonly Mutation[]): Buffer {
  let s = Buffer.from(original);
  for (const m of mutations) {
    const at = m.at % (s.length + 1);
    switch (m.kind) {
      case 'flip':
        if (at < s.length) s[at]! ^= m.xor;
        break;
      case 'truncate':
        s = s.subarray(0, at);
        break;
      case 'insert':
        s = Buffer.concat([s.subarray(0, at), m.data, s.subarray(at)]);
        break;
      case 'delete':
        s = Buffer.concat([s.subarray(0, at), s.subarray(at + m.n)]);
        break;
      default: {
        const size = m.kind === 'u8' ? 1 : m.kind === 'u16' ? 2 : 4;
        if (at + size <= s.length) s.writeUIntBE(m.value % 2 ** (8 * size), at, size);
      }
    }
  }
  return Buffer.from(s);
}

interface Decoder {
  name: string;
  decode: (b: Buffer) => unknown;
  /** A valid body of this kind. */
  valid: fc.Arbitrary<Buffer>;
}

const decoders: Decoder[] = [
  { name: 'decodeKey', decode: decodeKey, valid: anyString.map((k) => body(encodeGet(1, k))) },
  { name: 'decodePut', decode: decodePut, valid: fc.tuple(anyString, recordArb).map(([k, r]) => body(encodePut(1, k, r))) },
  {
    name: 'decodeList',
    decode: decodeList,
    valid: fc.record({ prefix: anyString, after: anyString, limit: u32 }).map((q) => body(encodeList(1, q))),
  },
  {
    name: 'decodeHints',
    decode: decodeHints,
    valid: fc.tuple(anyString, fc.array(anyString, { maxLength: 6 })).map(([t, ks]) => body(encodeHints(1, t, ks))),
  },
  { name: 'decodeRecordReply', decode: decodeRecordReply, valid: recordArb.map((r) => body(encodeRecordReply(1, r))) },
  {
    name: 'decodePutReply',
    decode: decodePutReply,
    valid: fc.tuple(fc.boolean(), versionArb).map(([applied, version]) => body(encodePutReply(1, { applied, version }))),
  },
  {
    name: 'decodeListReply',
    decode: decodeListReply,
    valid: fc.tuple(fc.array(entryArb, { maxLength: 6 }), fc.boolean()).map(([entries, more]) => body(encodeListReply(1, { entries, more }))),
  },
  {
    name: 'decodeError',
    decode: decodeError,
    valid: fc.oneof(anyString.map((m) => new InvalidKey(m)), anyString.map((m) => new Error(m))).map((e) => body(encodeError(1, e))),
  },
];

describe('replica protocol bodies fuzz', () => {
  for (const d of decoders) {
    test(`${d.name}: random and mutated bodies decode or fail with ProtocolError only`, () => {
      const input = fc.oneof(
        bytes(64),
        bytes(400),
        fc.array(fc.oneof(unitBytes, bytes(4)), { maxLength: 12 }).map((parts) => Buffer.concat(parts)),
        fc.tuple(d.valid, fc.array(mutationArb, { minLength: 1, maxLength: 4 })).map(([b, ms]) => mutate(b, ms)),
      );
      fc.assert(
        fc.property(input, (b) => {
          decodeOrRefuse(d.decode, b);
        }),
        fuzzParams(),
      );
    });

    test(`${d.name}: a body decodes the same alone and as a view into a larger buffer`, () => {
      const input = fc.oneof(bytes(200), d.valid, fc.tuple(d.valid, fc.array(mutationArb, { maxLength: 3 })).map(([b, ms]) => mutate(b, ms)));
      fc.assert(
        fc.property(input, bytes(16), bytes(16), (b, before, after) => {
          // Frames reach the decoders as views of a socket chunk, with other frames' bytes around them.
          const chunk = Buffer.concat([before, b, after]);
          const view = chunk.subarray(before.length, before.length + b.length);
          const alone = decodeOrRefuse(d.decode, Buffer.from(b));
          const inChunk = decodeOrRefuse(d.decode, view);
          assert.deepEqual(normalize(inChunk), normalize(alone));
        }),
        fuzzParams(),
      );
    });
  }

  test('a field decodes from its own bytes, whatever follows it (any bytes in the field, valid or not)', () => {
    // A key or prefix is followed by another field (a value, the `after` string, the next
    // entry); however malformed its bytes, decoding it must not reach into what follows.
    const put = (key: Buffer, value: Buffer): Buffer => {
      const b = Buffer.alloc(8 + key.length);
      b.writeUInt32BE(key.length, 4);
      key.copy(b, 8);
      return Buffer.concat([b, value]);
    };
    const list = (prefix: Buffer, after: Buffer): Buffer => {
      const b = Buffer.alloc(8 + prefix.length);
      b.writeUInt32BE(prefix.length, 4);
      prefix.copy(b, 8);
      return Buffer.concat([b, after]);
    };
    const listReply = (key: Buffer, rest: Buffer): Buffer => {
      const b = Buffer.alloc(11 + key.length);
      b.writeUInt32BE(1, 1);
      b.writeUInt32BE(key.length, 7);
      key.copy(b, 11);
      return Buffer.concat([b, rest]);
    };
    fc.assert(
      fc.property(fc.oneof(unitBytes, bytes(12)), bytes(6), bytes(6), (field, next1, next2) => {
        assert.equal(decodePut(put(field, next1)).key, decodePut(put(field, next2)).key, 'PUT key');
        assert.equal(decodeList(list(field, next1)).prefix, decodeList(list(field, next2)).prefix, 'LIST prefix');
        assert.equal(decodeListReply(listReply(field, next1)).entries[0]!.key, decodeListReply(listReply(field, next2)).entries[0]!.key, 'LIST reply key');
      }),
      fuzzParams(),
    );
  });

  test('every body round-trips, for any key, lone surrogates included', () => {
    fc.assert(
      fc.property(anyString, recordArb, (key, rec) => {
        assert.equal(decodeKey(body(encodeGet(1, key))), key);
        assert.deepEqual(decodeRecordReply(body(encodeRecordReply(1, rec))), rec);
        const put = decodePut(body(encodePut(2, key, rec)));
        assert.deepEqual({ key: put.key, rec: { ...put.rec, value: Buffer.from(put.rec.value) } }, { key, rec });
      }),
      fuzzParams(),
    );
    fc.assert(
      fc.property(anyString, anyString, u32, (prefix, after, limit) => {
        assert.deepEqual(decodeList(body(encodeList(3, { prefix, after, limit }))), { prefix, after, limit });
      }),
      fuzzParams(),
    );
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 10 }), fc.boolean(), (entries, more) => {
        assert.deepEqual(decodeListReply(body(encodeListReply(4, { entries, more }))), { entries, more });
      }),
      fuzzParams(),
    );
    fc.assert(
      fc.property(anyString, fc.array(anyString, { maxLength: 10 }), (target, keys) => {
        assert.deepEqual(decodeHints(body(encodeHints(5, target, keys))), { target, keys });
      }),
      fuzzParams(),
    );
    fc.assert(
      fc.property(fc.boolean(), versionArb, (applied, version) => {
        assert.deepEqual(decodePutReply(body(encodePutReply(6, { applied, version }))), { applied, version });
      }),
      fuzzParams(),
    );
  });

  test('an ERROR body carries the code of any error and its message', () => {
    const codes = Object.keys(errorTable) as ErrorCode[];
    const messageArb = fc.oneof(anyString, wellFormedString({ minLength: 990, maxLength: 1010 }));
    fc.assert(
      fc.property(fc.constantFrom(...codes), messageArb, (code, message) => {
        const got = decodeError(body(encodeError(7, errorTable[code].make(message, {}))));
        assert.equal(got.code, code);
        // Cut to 1000 code units and sent as UTF-8: a surrogate it splits (or a lone one) arrives as U+FFFD.
        assert.equal(got.text, Buffer.from(`${code} ${message}`.slice(0, 1000), 'utf8').toString('utf8'));
      }),
      fuzzParams(),
    );
    // Not a FlexStoreError: what the HTTP API would answer for it.
    assert.equal(decodeError(body(encodeError(8, new Error('boom')))).code, 'INTERNAL');
    assert.equal(decodeError(body(encodeError(9, new ProtocolError('bad')))).code, 'INVALID_REQUEST');
  });
});

/** Buffers as hex, so that deepEqual compares bytes whatever the view's backing store. */
function normalize(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return `hex:${v.toString('hex')}`;
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return v;
}
