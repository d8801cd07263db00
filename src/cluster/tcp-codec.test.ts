import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readCodeUnits } from './code-units.js';
import { decodeList, decodePut } from './tcp-codec.js';

/** Cases the fuzz tests (tcp-codec.fuzz.test.ts) found, kept as plain tests. */
describe('replica protocol bodies: malformed strings', () => {
  test('a PUT key ending in a cut-short surrogate does not take bits from the value', () => {
    // Key bytes ED A0 (an encoded surrogate missing its last byte), then the value.
    const put = (value: number[]): Buffer => Buffer.from([0, 0, 0, 0, 0, 0, 0, 2, 0xed, 0xa0, ...value]);
    assert.equal(decodePut(put([1])).key, decodePut(put([])).key);
    assert.equal(decodePut(put([0x80])).key, '\ufffd');
    assert.deepEqual([...decodePut(put([1])).rec.value], [1]);
  });

  test('a LIST prefix cut short does not reach into `after`', () => {
    // An encoded lone surrogate, then the first byte of a 2-byte unit, then `after` = "\x80".
    const body = Buffer.from([0, 0, 0, 1, 0, 0, 0, 4, 0xed, 0xa0, 0x80, 0xc3, 0x80]);
    assert.deepEqual(decodeList(body), { limit: 1, prefix: '\ud800\ufffd', after: '\ufffd' });
  });

  test('readCodeUnits stops at end, whatever the bytes after it', () => {
    const buf = Buffer.from([0xed, 0xa0, 0x80, 0xe2, 0x82, 0xac]);
    assert.equal(readCodeUnits(buf, 0, 6), '\ud800\u20ac');
    assert.equal(readCodeUnits(buf, 0, 5), '\ud800\ufffd');
    assert.equal(readCodeUnits(buf, 0, 4), '\ud800\ufffd');
    assert.equal(readCodeUnits(buf, 0, 3), '\ud800');
  });
});
