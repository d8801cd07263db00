import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTokenFile, sha256Hex } from '../gateway/tokens.js';
import { UsageError } from './options.js';
import { newToken, tokenEntry } from './token-command.js';

test('a new token: fs_ and 32 random bytes in base64url, a new one each time', () => {
  const a = newToken();
  assert.match(a, /^fs_[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(a.slice(3), 'base64url').length, 32);
  assert.notEqual(newToken(), a);
});

test('its entry is what the gateway parses: the hash, the role, the prefixes when given', () => {
  const token = newToken();
  const entry = tokenEntry(token, 'app', 'readwrite', ['app/', 'shared/']);
  assert.deepEqual(entry, { name: 'app', sha256: sha256Hex(token), role: 'readwrite', prefixes: ['app/', 'shared/'] });
  const [parsed] = parseTokenFile(JSON.stringify({ tokens: [entry] }));
  assert.deepEqual(parsed!.prefixes, ['app/', 'shared/']);
  assert.equal('prefixes' in tokenEntry(token, 'all', 'read', []), false, 'no prefixes: every key');
  assert.throws(() => tokenEntry(token, 'x'.repeat(129), 'read', []), (err: unknown) => err instanceof UsageError && /--name/.test(err.message));
});
