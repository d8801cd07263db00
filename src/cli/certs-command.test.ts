import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runCli } from '../test/support/process.js';
import { tempDirs } from '../test/support/temp-dir.js';
import { createCerts, parseHosts } from './certs-command.js';
import { UsageError } from './options.js';

const tempDir = tempDirs('flexstore-certs-');
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const cert = (file: string) => new X509Certificate(readFileSync(file));

test('a CA and a server/client pair valid for every host given, signed by the CA, keys mode 0600', async () => {
  const out = path.join(tempDir(), 'certs');
  const res = await createCerts({ out, hosts: ['kv1', 'registry', '10.0.0.5', '::2'] });
  assert.equal(res.reusedCa, false);
  const ca = cert(res.files.caCert);
  const server = cert(res.files.cert);
  assert.equal(ca.ca, true);
  assert.equal(server.ca, false);
  assert.ok(server.verify(ca.publicKey), 'server.crt is signed by ca.crt');
  assert.ok(server.checkIssued(ca));
  for (const h of ['kv1', 'registry', 'localhost']) assert.equal(server.checkHost(h), h, h);
  for (const ip of ['10.0.0.5', '127.0.0.1', '::2', '::1']) assert.ok(server.checkIP(ip), ip);
  assert.equal(server.checkHost('kv9'), undefined);
  assert.equal(server.checkIP('10.0.0.6'), undefined);
  assert.deepEqual([...(server.keyUsage ?? [])].sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
  assert.ok(server.checkPrivateKey(createPrivateKey(readFileSync(res.files.key))));
  for (const key of [res.files.key, res.files.caKey]) assert.equal(statSync(key).mode & 0o777, 0o600, key);
  assert.ok(new Date(server.validTo).getTime() > Date.now() + 800 * 86_400_000);
});

test('a second run reuses the CA to issue a new pair; --force makes a new CA', async () => {
  const out = tempDir();
  const first = await createCerts({ out, hosts: ['a'] });
  const caBefore = readFileSync(first.files.caCert, 'utf8');
  const second = await createCerts({ out, hosts: ['a', 'b'] });
  assert.equal(second.reusedCa, true);
  assert.equal(readFileSync(second.files.caCert, 'utf8'), caBefore);
  const server = cert(second.files.cert);
  assert.ok(server.verify(cert(second.files.caCert).publicKey));
  assert.equal(server.checkHost('b'), 'b');

  const forced = await createCerts({ out, hosts: ['a'], force: true });
  assert.equal(forced.reusedCa, false);
  assert.notEqual(readFileSync(forced.files.caCert, 'utf8'), caBefore);
  assert.ok(cert(forced.files.cert).verify(cert(forced.files.caCert).publicKey));
});

test('a CA certificate without its key is not overwritten silently', async () => {
  const out = tempDir();
  writeFileSync(path.join(out, 'ca.crt'), 'someone else\'s CA');
  await assert.rejects(createCerts({ out, hosts: [] }), (err) => err instanceof UsageError && /ca\.key/.test(err.message));
  assert.equal(readFileSync(path.join(out, 'ca.crt'), 'utf8'), 'someone else\'s CA');
});

test('hosts are DNS names or IP addresses, nothing else', () => {
  assert.deepEqual(parseHosts('kv1, registry ,10.0.0.1,[::1],*.flex.local,'), ['kv1', 'registry', '10.0.0.1', '::1', '*.flex.local']);
  for (const bad of ['a b', 'x;y', 'a,DNS:evil', 'under_score', 'x\nsubjectAltName=foo']) {
    assert.throws(() => parseHosts(bad), UsageError, bad);
  }
});

test('flexstore certs: --out is required (exit 2); with it the command prints how to use the files', async () => {
  const missing = await runCli(['certs', '--hosts', 'kv1']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--out DIR is required/);
  const bad = await runCli(['certs', '--out', tempDir(), '--hosts', 'a b']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--hosts: "a b" is neither/);
  const out = tempDir();
  const ok = await runCli(['certs', '--out', out, '--hosts', 'kv1']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /valid for: kv1, localhost, 127\.0\.0\.1, ::1/);
  assert.match(ok.stdout, /TLS_CERT=.*server\.crt TLS_KEY=.*server\.key TLS_CA=.*ca\.crt/);
});
