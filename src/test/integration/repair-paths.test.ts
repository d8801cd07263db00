import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HybridClock } from '../../cluster/hlc.js';
import { HttpReplicaTransport } from '../../cluster/http-transport.js';
import { TestCluster, http, kvUrl, waitFor } from '../support/index.js';

/**
 * Each repair path on its own, with anti-entropy off on every KV server (the
 * fault suite's convergence deadline outlasts an anti-entropy pass, so there
 * it would cover for a broken hint or read repair):
 *
 * - read repair: a replica left stale behind the gateway's back is brought
 *   up to date by a GET that reads it, and the gateway counts the repair;
 * - hinted hand-off: writes a down replica missed reach it when it returns,
 *   left as hints by the gateway that took them;
 * - `consistency=all` with a replica down fails with 503 and says so.
 */

const transport = new HttpReplicaTransport({ timeoutMs: 5000 });
let cluster: TestCluster;

async function replicaVersion(i: number, key: string): Promise<string | null> {
  const res = await http('GET', `${cluster.kvUrl(i)}/internal/kv/${encodeURIComponent(key)}`, { timeoutMs: 2000 });
  return res.status === 200 ? String(res.headers['x-flexstore-version']) : null;
}

async function counter(url: string, name: string): Promise<number> {
  const res = await http('GET', `${url}/metrics`);
  let sum = 0;
  for (const line of res.text.split('\n')) if (line.startsWith(name) && !line.startsWith('#')) sum += Number(line.split(' ').pop());
  return sum;
}

describe('repair paths, each alone (anti-entropy off)', () => {
  before(async () => {
    // Joining needs an anti-entropy pass, so the servers join with it on and
    // are then restarted, one at a time, with it off.
    cluster = await TestCluster.start();
    for (let i = 0; i < 3; i++) {
      await cluster.killKv(i);
      cluster.kvs[i]!.options.args = ['--anti-entropy-ms', '0'];
      await cluster.startKv(i);
      await cluster.waitForUp(3);
    }
  });
  after(async () => {
    await transport.close();
    await cluster?.stop();
  });

  test('a GET repairs a stale replica it read, and flexstore_read_repairs_total rises', async () => {
    const key = 'repair/read';
    const put = await http('PUT', kvUrl(cluster.gatewayUrl, key), { body: 'old', headers: { 'content-type': 'text/plain' } });
    assert.equal(put.status, 201);
    await waitFor('the first write on all three replicas', async () => (await Promise.all([0, 1, 2].map((i) => replicaVersion(i, key)))).every((v) => v === put.json.version));
    // A newer version on kv0 and kv1 only, written past the gateway: kv2 is now stale.
    const clock = new HybridClock('readrepair');
    clock.observe(put.json.version);
    const rec = { value: Buffer.from('new'), version: clock.next(), tombstone: false, contentType: 'text/plain' };
    for (const i of [0, 1]) assert.equal((await transport.put(cluster.kvUrl(i), key, rec)).applied, true);
    assert.equal(await replicaVersion(2, key), put.json.version);

    const before = await counter(cluster.gatewayUrl, 'flexstore_read_repairs_total');
    const get = await http('GET', kvUrl(cluster.gatewayUrl, key, 'consistency=all'));
    assert.equal(get.status, 200);
    assert.equal(get.text, 'new');
    await waitFor('kv2 repaired by the read', async () => (await replicaVersion(2, key)) === rec.version, { timeoutMs: 10_000 });
    assert.ok((await counter(cluster.gatewayUrl, 'flexstore_read_repairs_total')) > before, 'the repair was counted');
  });

  test('consistency=all with one replica down answers 503 QUORUM_NOT_MET, required 3', async () => {
    await cluster.killKv(2);
    await cluster.waitForState(2, 'down');
    const res = await http('GET', kvUrl(cluster.gatewayUrl, 'repair/read', 'consistency=all'));
    assert.equal(res.status, 503);
    assert.equal(res.json.code, 'QUORUM_NOT_MET');
    assert.equal(res.json.required, 3);
    assert.equal(res.json.answered, 2);
  });

  test('writes a down replica missed reach it through hints when it returns', async () => {
    // kv2 is down (previous test).
    const keys = Array.from({ length: 20 }, (_, i) => `repair/hinted/${i}`);
    const versions = new Map<string, string>();
    for (const key of keys) {
      const res = await http('PUT', kvUrl(cluster.gatewayUrl, key), { body: key, headers: { 'content-type': 'text/plain' } });
      assert.equal(res.status, 201, res.text);
      versions.set(key, res.json.version);
    }
    await waitFor(
      'the gateway to store hints on the replicas that took the writes',
      async () => (await counter(cluster.gatewayUrl, 'flexstore_hints_total{outcome="stored"}')) >= keys.length,
      { timeoutMs: 5000 },
    );
    await cluster.startKv(2);
    await cluster.waitForUp(3);
    await waitFor(
      'kv2 to hold every write it missed',
      async () => {
        for (const key of keys) if ((await replicaVersion(2, key)) !== versions.get(key)) return false;
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
  });
});
