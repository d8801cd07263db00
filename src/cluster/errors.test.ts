import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FlexStoreError,
  InvalidKey,
  InvalidRequest,
  KeyNotFound,
  ProtocolError,
  ReplicaUnreachable,
  Unavailable,
  errorTable,
  normalizeError,
  peerError,
  toErrorBody,
} from './errors.js';

test('error bodies lead with success, error and code; details follow and never override them', () => {
  const body = toErrorBody(new KeyNotFound('mykey'));
  assert.deepEqual(Object.keys(body), ['success', 'error', 'code', 'key']);
  assert.deepEqual(body, { success: false, error: 'key not found: "mykey"', code: 'KEY_NOT_FOUND', key: 'mykey' });
  const clash = toErrorBody(new InvalidKey('bad key', { code: 'OTHER', success: true, maxKeyBytes: 1024 }));
  assert.deepEqual(clash, { success: false, error: 'bad key', code: 'INVALID_KEY', maxKeyBytes: 1024 });
});

test('a peer error whose code blames the request comes back as its own class', () => {
  const err = peerError('http://kv-1', 'PUT answered 400: INVALID_KEY key is empty', 'INVALID_KEY', { maxKeyBytes: 1024 });
  assert.ok(err instanceof InvalidKey);
  assert.equal(err.message, 'http://kv-1: PUT answered 400: INVALID_KEY key is empty');
  assert.deepEqual(err.details, { maxKeyBytes: 1024 });
  const missing = peerError('http://kv-1', 'GET answered 404: KEY_NOT_FOUND key not found: "k"', 'KEY_NOT_FOUND', { key: 'k' });
  assert.ok(missing instanceof KeyNotFound);
  assert.deepEqual(toErrorBody(missing as KeyNotFound).key, 'k');
});

test("a peer's own failure, a route it lacks or no code at all make it unreachable, the peer's error as cause", () => {
  for (const code of ['INTERNAL', 'UNAVAILABLE', 'NOT_FOUND', 'METHOD_NOT_ALLOWED', 'UNAUTHORIZED', 'NO_SUCH_CODE', undefined]) {
    const err = peerError('http://kv-1', `GET answered ERROR: ${code} boom`, code);
    assert.ok(err instanceof ReplicaUnreachable, String(code));
    assert.equal(err.message, `http://kv-1: GET answered ERROR: ${code} boom`);
    const known = code !== undefined && code !== 'NO_SUCH_CODE';
    assert.equal((err.cause instanceof FlexStoreError ? err.cause.code : undefined), known ? code : undefined);
  }
  assert.ok(peerError('http://kv-1', 'x', 'UNAVAILABLE').cause instanceof Unavailable);
});

test('every code has a status and remakes its own class', () => {
  for (const [code, { status, make }] of Object.entries(errorTable)) {
    const err = make('m', { required: 2, answered: 1 });
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    assert.equal(err.message, 'm');
  }
});

test('a ProtocolError is answered as INVALID_REQUEST', () => {
  const err = normalizeError(new ProtocolError('GET body truncated'));
  assert.ok(err instanceof InvalidRequest);
  assert.equal(err.message, 'GET body truncated');
});
