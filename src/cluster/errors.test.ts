import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidKey, KeyNotFound, toErrorBody } from './errors.js';

test('error bodies lead with success, error and code; details follow and never override them', () => {
  const body = toErrorBody(new KeyNotFound('mykey'));
  assert.deepEqual(Object.keys(body), ['success', 'error', 'code', 'key']);
  assert.deepEqual(body, { success: false, error: 'key not found: "mykey"', code: 'KEY_NOT_FOUND', key: 'mykey' });
  const clash = toErrorBody(new InvalidKey('bad key', { code: 'OTHER', success: true, maxKeyBytes: 1024 }));
  assert.deepEqual(clash, { success: false, error: 'bad key', code: 'INVALID_KEY', maxKeyBytes: 1024 });
});
