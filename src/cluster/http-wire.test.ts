import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidKey } from './errors.js';
import { keyFromUrl } from './http-wire.js';

describe('keyFromUrl', () => {
  test('percent-decodes the rest of the path once, up to the query', () => {
    assert.equal(keyFromUrl('/kv/a%2Fb%3Fc?x=1', '/kv/'), 'a/b?c');
    assert.equal(keyFromUrl('/kv/%F0%9F%98%80', '/kv/', 4), '\u{1f600}');
  });

  test('every refusal names the limit it was given, a missing prefix included', () => {
    for (const url of ['/other/k', '/kv/', '/kv/%zz', '/kv/%ED%A0%80', '/kv/abcde']) {
      assert.throws(
        () => keyFromUrl(url, '/kv/', 4),
        (err: unknown) => err instanceof InvalidKey && err.details.maxKeyBytes === 4,
        url,
      );
    }
  });
});
