import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { codeUnitString, fuzzParams, wellFormedString } from '../test/support/fuzz.js';
import { InvalidKey } from './errors.js';
import { KV_PATH, checkKeyBytes, keyFromUrl } from './http-wire.js';

/**
 * The key parser of every HTTP front end (the gateway's /kv/<key>, a KV
 * server's /internal/kv/<key>) under random URLs and percent-encodings: a key
 * or InvalidKey, nothing else; any well-formed key within the limit comes
 * back from encodeURIComponent unchanged.
 */

const PREFIXES = ['/kv/', KV_PATH];
const limitArb = fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined });

/** Any JS string: random UTF-16 code units (lone surrogates included), or well-formed text up to U+10FFFF. */
const anyString = fc.oneof(codeUnitString(30), wellFormedString({ maxLength: 30 }));
const hex = (n: number) => n.toString(16).padStart(2, '0');
/** Pieces of a raw URL tail: percent-escapes valid or not, characters that mean something in a URL, noise. */
const urlPiece = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map((b) => `%${hex(b)}`),
  fc.integer({ min: 0, max: 255 }).map((b) => `%${hex(b).toUpperCase()}`),
  fc.constantFrom('%', '%4', '%zz', '%%', '%ED%A0%80', '%F0%9F%98%80', '%C3', '%E2%82', '?', '#', '/', '//', '&', '=', '+', ' ', '%00', '%2F', '%3F'),
  fc.string({ unit: 'grapheme-ascii', maxLength: 4 }),
  anyString,
);
const rawTail = fc.array(urlPiece, { maxLength: 12 }).map((p) => p.join(''));

/** Runs the parser: its key, or undefined for an InvalidKey that names the limit it was given; anything else fails. */
function parse(url: string, prefix: string, max: number | undefined): string | undefined {
  try {
    return keyFromUrl(url, prefix, max);
  } catch (err) {
    if (!(err instanceof InvalidKey)) {
      throw new Error(`keyFromUrl threw ${(err as Error)?.name}, not InvalidKey: ${(err as Error)?.message}`, { cause: err });
    }
    assert.equal(err.status, 400);
    if (max !== undefined) assert.equal(err.details.maxKeyBytes, max, 'the error does not name the limit');
    return undefined;
  }
}

describe('key parser fuzz', () => {
  test('random URLs and percent-encodings: a key within the limit, or InvalidKey', () => {
    fc.assert(
      fc.property(fc.constantFrom(...PREFIXES), fc.oneof(rawTail, anyString), limitArb, fc.boolean(), (prefix, tail, max, prefixed) => {
        const url = prefixed ? prefix + tail : tail;
        const key = parse(url, prefix, max);
        if (key === undefined) return;
        assert.notEqual(key, '', 'an empty key was accepted');
        if (max !== undefined) assert.ok(Buffer.byteLength(key, 'utf8') <= max, 'a key over the limit was accepted');
        // What the parser accepted, encoded the way clients do, comes back unchanged.
        let encoded: string;
        try {
          encoded = encodeURIComponent(key);
        } catch {
          // A lone surrogate given raw (not percent-encoded) in the URL: no client can encode it; nothing to compare.
          return;
        }
        assert.equal(parse(prefix + encoded, prefix, max), key);
      }),
      fuzzParams(),
    );
  });

  test('any well-formed key round-trips through encodeURIComponent, or is refused for the limit only', () => {
    const query = fc.option(fc.string({ unit: 'grapheme-ascii', maxLength: 12 }).map((q) => `?${q}`), { nil: '' });
    fc.assert(
      fc.property(
        wellFormedString({ minLength: 1, maxLength: 40 }),
        fc.constantFrom(...PREFIXES),
        limitArb,
        query,
        (key, prefix, max, q) => {
          const got = parse(prefix + encodeURIComponent(key) + q, prefix, max);
          if (max !== undefined && Buffer.byteLength(key, 'utf8') > max) assert.equal(got, undefined, 'a key over the limit was accepted');
          else assert.equal(got, key);
        },
      ),
      fuzzParams(),
    );
  });

  test('a lone surrogate cannot travel in a URL: its percent-encoding is refused', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0xd800, max: 0xdfff }), fc.constantFrom(...PREFIXES), (unit, prefix) => {
        assert.throws(() => encodeURIComponent(String.fromCharCode(unit)), URIError);
        // Its CESU-8 bytes, as a client that percent-encodes bytes would send them.
        const bytes = [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)];
        assert.equal(parse(prefix + bytes.map((b) => `%${hex(b)}`).join(''), prefix, 1024), undefined);
      }),
      fuzzParams(),
    );
  });

  test('checkKeyBytes refuses exactly the keys over the limit, keeping the details given', () => {
    fc.assert(
      fc.property(anyString, fc.integer({ min: 0, max: 100 }), fc.nat(), (key, max, item) => {
        const over = Buffer.byteLength(key, 'utf8') > max;
        try {
          checkKeyBytes(key, max, { item });
          assert.ok(!over, 'a key over the limit passed');
        } catch (err) {
          assert.ok(err instanceof InvalidKey, `threw ${(err as Error)?.name}, not InvalidKey`);
          assert.ok(over, 'a key within the limit was refused');
          assert.deepEqual(err.details, { item, maxKeyBytes: max });
        }
      }),
      fuzzParams(),
    );
  });
});
