import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RequestSigner, RequestVerifier, signerFor } from './cluster-auth.js';
import { watchSecretFile, type ReloadOutcome } from './secret-reloader.js';
import { loadClusterSecurity } from './security.js';

const A = 'a'.repeat(24);
const B = 'b'.repeat(24);
const dir = mkdtempSync(join(tmpdir(), 'flexstore-reload-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function fakeLog() {
  const lines: { level: 'info' | 'error'; obj: object; msg: string }[] = [];
  return {
    lines,
    info: (obj: object, msg = '') => void lines.push({ level: 'info', obj, msg }),
    error: (obj: object, msg = '') => void lines.push({ level: 'error', obj, msg }),
  };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const req = { method: 'GET', path: '/internal/keys' };

describe('secret reloader', () => {
  it('a changed file replaces the secrets: signers sign with the new first one, verifiers accept every one', async () => {
    const file = join(dir, 'change');
    writeFileSync(file, `${A}\n`);
    const security = loadClusterSecurity({ clusterSecretFile: file });
    const log = fakeLog();
    const outcomes: ReloadOutcome[] = [];
    const reloader = watchSecretFile(security, { log, onReload: (o) => outcomes.push(o), intervalMs: 20 })!;
    try {
      const signer = signerFor(security)!;
      const verifier = new RequestVerifier(security);
      const onlyA = new RequestSigner(Buffer.from(A));
      const onlyB = new RequestSigner(Buffer.from(B));
      const check = (s: RequestSigner) => {
        const v = verifier.parse(s.sign(req));
        assert.equal(typeof v, 'object');
        return verifier.verify(v as Exclude<typeof v, string>, req);
      };
      assert.equal(check(onlyB), 'bad_signature');

      writeFileSync(file, `${B}\n${A}\n`);
      await until(() => outcomes.length === 1);
      assert.deepEqual(outcomes, ['ok']);
      assert.deepEqual(security.secrets.map(String), [B, A]);
      // Signs with B now: a verifier holding only B accepts it.
      const bOnly = new RequestVerifier([Buffer.from(B)]);
      const sig = bOnly.parse(signer.sign(req));
      assert.equal(bOnly.verify(sig as Exclude<typeof sig, string>, req), null);
      assert.equal(check(onlyA), null);
      assert.equal(check(onlyB), null);

      // Replaced by rename, as `mv` or a secret volume does.
      writeFileSync(join(dir, 'change.tmp'), `${B}\n`);
      renameSync(join(dir, 'change.tmp'), file);
      await until(() => outcomes.length === 2);
      assert.deepEqual(security.secrets.map(String), [B]);
      assert.equal(check(onlyA), 'bad_signature');

      const info = log.lines.filter((l) => l.level === 'info');
      assert.equal(info.length, 2);
      assert.match(info[0]!.msg, /2 secret\(s\) held/);
      assert.match(info[1]!.msg, /1 secret\(s\) held/);
      for (const l of log.lines) assert.ok(!JSON.stringify(l).includes(A) && !JSON.stringify(l).includes(B), 'no secret in a log line');
    } finally {
      reloader.close();
    }
  });

  for (const [name, content] of [
    ['empty', ''],
    ['too short', 'short\n'],
    ['three secrets', `${A}\n${B}\n${'c'.repeat(24)}\n`],
  ] as const) {
    it(`a file that does not load (${name}) keeps the previous secrets and logs one error line`, async () => {
      const file = join(dir, `bad-${name.replace(/ /g, '-')}`);
      writeFileSync(file, `${A}\n`);
      const security = loadClusterSecurity({ clusterSecretFile: file });
      const log = fakeLog();
      const outcomes: ReloadOutcome[] = [];
      const reloader = watchSecretFile(security, { log, onReload: (o) => outcomes.push(o), intervalMs: 20 })!;
      try {
        writeFileSync(file, content);
        await until(() => outcomes.length === 1);
        assert.deepEqual(outcomes, ['failed']);
        assert.deepEqual(security.secrets.map(String), [A]);
        assert.equal(log.lines.length, 1);
        assert.equal(log.lines[0]!.level, 'error');
        assert.match(log.lines[0]!.msg, /previous secrets stay in force/);
        for (const l of log.lines) assert.ok(!JSON.stringify(l).includes(A) && !JSON.stringify(l).includes(B));
      } finally {
        reloader.close();
      }
    });
  }

  it('an unreadable (removed) file keeps the previous secrets', async () => {
    const file = join(dir, 'removed');
    writeFileSync(file, `${A}\n`);
    const security = loadClusterSecurity({ clusterSecretFile: file });
    const log = fakeLog();
    const reloader = watchSecretFile(security, { log, intervalMs: 20 })!;
    try {
      rmSync(file);
      await until(() => log.lines.length === 1);
      assert.equal(log.lines[0]!.level, 'error');
      assert.match(log.lines[0]!.msg, /cannot read \(ENOENT\)/);
      assert.deepEqual(security.secrets.map(String), [A]);
    } finally {
      reloader.close();
    }
  });

  it('a change made between start-up and the watch is not missed', () => {
    const file = join(dir, 'early');
    writeFileSync(file, `${A}\n`);
    const security = loadClusterSecurity({ clusterSecretFile: file });
    writeFileSync(file, `${A}\n${B}\n`);
    const log = fakeLog();
    const reloader = watchSecretFile(security, { log, intervalMs: 20 })!;
    reloader.close();
    assert.deepEqual(security.secrets.map(String), [A, B]);
    assert.equal(log.lines.length, 1);
  });

  it('close stops watching', async () => {
    const file = join(dir, 'closed');
    writeFileSync(file, `${A}\n`);
    const security = loadClusterSecurity({ clusterSecretFile: file });
    const log = fakeLog();
    const reloader = watchSecretFile(security, { log, intervalMs: 20 })!;
    reloader.close();
    reloader.close();
    writeFileSync(file, `${B}\n`);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(security.secrets.map(String), [A]);
    assert.equal(log.lines.length, 0);
  });

  it('watches nothing without a secret file: a value secret, or an open cluster', () => {
    assert.equal(watchSecretFile(loadClusterSecurity({ clusterSecret: A }), { log: fakeLog() }), undefined);
    assert.equal(watchSecretFile(loadClusterSecurity({}), { log: fakeLog() }), undefined);
  });
});
