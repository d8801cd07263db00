import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { BIN, TestCluster, http, testClusters, kvUrl, waitFor, assertAllRead, putAll } from '../support/index.js';

/** Writes entries with `concurrency` requests in flight; every one must be acknowledged. */
const entries = (prefix: string, n: number): Array<[string, string]> =>
  Array.from({ length: n }, (_, i) => [`${prefix}/${i}`, `${prefix}-${i}`]);

async function keyCount(url: string): Promise<number> {
  const res = await http('GET', `${url}/health-check`);
  return Number(res.json?.keys ?? -1);
}

async function members(c: TestCluster): Promise<Array<{ id: string; url: string; state: string; phase?: string; lastHeartbeat: number }>> {
  return (await http('GET', `${c.registryUrl}/nodes`)).json.members;
}

describe('self-healing', () => {
  const startCluster = testClusters();

  test('a returning server catches up on 5,000 missed writes by itself, and serves them alone', async () => {
    const c = await startCluster();
    const gw = c.gatewayUrl;
    await c.killKv(2);
    await c.waitForState(2, 'down');
    const missed = entries('missed', 5_000);
    await putAll(gw, missed, { concurrency: 64 });

    const restartedAt = Date.now();
    await c.startKv(2);
    await waitFor('the returning server holds every key', async () => (await keyCount(c.kvUrl(2))) >= missed.length, {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    const caughtUpMs = Date.now() - restartedAt;
    console.log(`# caught up on ${missed.length} missed writes ${caughtUpMs} ms after restart`);

    // Black-box proof: with the other replicas gone, it alone answers every key.
    await c.killKv(0);
    await c.killKv(1);
    await assertAllRead(gw, missed, { query: 'consistency=one' });
  });

  test('a joining server under load: no acknowledged write lost, no request failed', async () => {
    const c = await startCluster({ kvArgs: ['--anti-entropy-ms', '2000'] });
    const gw = c.gatewayUrl;
    const before = entries('pre-join', 3000);
    await putAll(gw, before);

    const acked: Array<[string, string]> = [];
    const failures: string[] = [];
    let stop = false;
    let n = 0;
    const writer = async () => {
      while (!stop) {
        const k = `during-join/${n++}`;
        const res = await http('PUT', kvUrl(gw, k), { body: `v-${k}` });
        if (res.status === 201) acked.push([k, `v-${k}`]);
        else failures.push(`${k}: ${res.status} ${res.text}`);
        const r = await http('GET', kvUrl(gw, before[n % before.length]![0]));
        if (r.status !== 200) failures.push(`read ${before[n % before.length]![0]}: ${r.status} ${r.text}`);
      }
    };
    const writers = Array.from({ length: 8 }, writer);
    const joinedAt = Date.now();
    const idx = await c.addKv();
    await waitFor('the new server is active', async () => {
      const m = (await members(c)).find((x) => x.url === c.kvUrl(idx));
      return m?.phase === 'active';
    }, { timeoutMs: 60_000, intervalMs: 200 });
    console.log(`# join of a 4th server completed in ${Date.now() - joinedAt} ms`);
    // Keep writing a moment under the new placement too.
    await waitFor('writes after the join', () => acked.length > 200, { timeoutMs: 20_000 });
    stop = true;
    await Promise.all(writers);

    assert.deepEqual(failures, []);
    await c.waitForUp(4);
    await assertAllRead(gw, [...before, ...acked]);
    assert.ok((await keyCount(c.kvUrl(idx))) > before.length / 2, 'the new server holds its share');
  });

  test('decommission with `flexstore node remove`: data moves out, then one more can die', async () => {
    const c = await startCluster({ kvCount: 4, kvArgs: ['--anti-entropy-ms', '2000'] });
    const gw = c.gatewayUrl;
    const data = entries('leave', 2000);
    await putAll(gw, data);

    const out = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, 'node', 'remove', c.kvUrl(3), '--registry-url', c.registryUrl]);
      let stdout = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.on('exit', (code) => resolve({ code, stdout }));
    });
    assert.equal(out.code, 0, out.stdout);
    assert.match(out.stdout, /leaving|removed/);

    await waitFor('the leaving server drops out of /nodes', async () => !(await members(c)).some((m) => m.url === c.kvUrl(3)), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    await c.killKv(3);
    await c.killKv(0);
    await c.waitForState(0, 'down');
    await assertAllRead(gw, data);
  });

  test('DOWN_REMOVE_AFTER: a dead server is removed and its copies re-replicated', async () => {
    const c = await startCluster({
      kvCount: 4,
      registryArgs: ['--down-remove-after', '2s'],
      kvArgs: ['--anti-entropy-ms', '2000'],
    });
    const data = entries('replace', 1500);
    await putAll(c.gatewayUrl, data);
    await c.killKv(3);
    await waitFor('the dead server is removed', async () => !(await members(c)).some((m) => m.url === c.kvUrl(3)), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    // Three survivors and N=3: each must now hold every key.
    for (const i of [0, 1, 2]) {
      await waitFor(`survivor ${i} holds every key`, async () => (await keyCount(c.kvUrl(i))) >= data.length, {
        timeoutMs: 30_000,
        intervalMs: 200,
      });
    }
    await c.killKv(0);
    await c.waitForState(0, 'down');
    await assertAllRead(c.gatewayUrl, data);
  });

  test('deletes stay deleted: tombstones are purged after the grace, and a server down longer is refused', async () => {
    const c = await startCluster({
      registryArgs: ['--tombstone-grace', '3s'],
      kvArgs: ['--anti-entropy-ms', '1000'],
    });
    const gw = c.gatewayUrl;
    await putAll(gw, [['doomed', 'x'], ['kept', 'y']]);
    // kv2 goes down holding the live value, and misses the delete.
    await c.killKv(2);
    await c.waitForState(2, 'down');
    assert.equal((await http('DELETE', kvUrl(gw, 'doomed'))).status, 200);
    const internal = (i: number) => http('GET', `${c.kvUrl(i)}/internal/kv/doomed`);
    assert.equal((await internal(0)).headers['x-flexstore-tombstone'], '1');

    await waitFor('tombstones purged on the live replicas', async () => {
      const [a, b] = await Promise.all([internal(0), internal(1)]);
      return a.status === 404 && b.status === 404;
    }, { timeoutMs: 30_000, intervalMs: 250 });
    assert.equal((await http('GET', kvUrl(gw, 'doomed'))).status, 404);

    // kv2 still holds the deleted value; it was down longer than the grace,
    // so it must not rejoin with that data.
    await waitFor('grace passed while down', async () => {
      const m = (await members(c)).find((x) => x.url === c.kvUrl(2));
      return m !== undefined && Date.now() - m.lastHeartbeat > 3500;
    }, { timeoutMs: 10_000, intervalMs: 200 });
    const slot = c.kvs[2]!;
    await c.startKv(2).catch(() => {});
    const exit = await Promise.race([slot.proc.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
    assert.notEqual(exit, 'still running', 'a server down past the grace must stop');
    assert.equal((exit as { code: number | null }).code, 1, 'and say so with a failing exit code');
    assert.match(slot.proc.logs(), /tombstone grace/);
    assert.equal((await http('GET', kvUrl(gw, 'kept'))).text, 'y');
  });
});
