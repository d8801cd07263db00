import assert from 'node:assert/strict';
import { test } from 'node:test';
import { listenUrl } from './listen-url.js';

test('a wildcard bind is reached through loopback', () => {
  for (const host of [undefined, '', '0.0.0.0', '::', '[::]']) assert.equal(listenUrl(host, 5000), 'http://127.0.0.1:5000');
});

test('a named or IPv4 host is used as it is', () => {
  assert.equal(listenUrl('127.0.0.1', 8000), 'http://127.0.0.1:8000');
  assert.equal(listenUrl('kv1.internal', 8001), 'http://kv1.internal:8001');
});

test('an IPv6 literal gets brackets, once', () => {
  assert.equal(listenUrl('::1', 5000), 'http://[::1]:5000');
  assert.equal(listenUrl('[::1]', 5000), 'http://[::1]:5000');
  assert.equal(listenUrl('fe80::1', 1), 'http://[fe80::1]:1');
});

test('a server serving TLS is reached by https', () => {
  assert.equal(listenUrl('0.0.0.0', 5000, 'https'), 'https://127.0.0.1:5000');
  assert.equal(listenUrl('::1', 5000, 'https'), 'https://[::1]:5000');
});
