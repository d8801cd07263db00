import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { http, kvUrl, testClusters, waitFor, ackedAcrossFault, assertAllRead, putAll } from '../support/index.js';

const entries = (prefix: string, n: number): Array<[string, string]> =>
  Array.from({ length: n }, (_, i) => [`${prefix}/${i}`, `${prefix}-value-${i}`]);

describe('failures', () => {
  const startCluster = testClusters();

  test('kill -9 of any one KV server: acknowledged keys still read, writes go on, it comes back', async () => {
    const c = await startCluster();
    const gw = c.gatewayUrl;
    const before = entries('one-down', 150);
    await putAll(gw, before);

    for (let i = 0; i < 3; i++) {
      await c.killKv(i);
      await assertAllRead(gw, before);
      const during = entries(`while-${i}-down`, 40);
      await putAll(gw, during);
      await assertAllRead(gw, during);

      await c.waitForState(i, 'down');
      await c.startKv(i);
      await c.waitForState(i, 'up');
      await c.waitForUp(3);
      // It serves again: reads that need all three replicas succeed.
      const all = await http('GET', kvUrl(gw, before[0]![0], 'consistency=all'));
      assert.equal(all.status, 200, all.text);
      assert.equal(all.text, before[0]![1]);
      assert.equal((await http('GET', `${c.kvUrl(i)}/health-check`)).status, 200);
    }
  });

  test('kill -9 of all KV servers mid-stream loses no acknowledged write', async () => {
    const c = await startCluster();
    const gw = c.gatewayUrl;
    const acked = await ackedAcrossFault(gw, 200, () => Promise.all([0, 1, 2].map((i) => c.killKv(i))));

    for (let i = 0; i < 3; i++) await c.startKv(i);
    await c.waitForUp(3);
    await assertAllRead(gw, acked);
  });

  test('registry killed: data path goes on; restarted, it lists every member again', async () => {
    const c = await startCluster();
    const gw = c.gatewayUrl;
    const before = entries('reg', 50);
    await putAll(gw, before);

    await c.registry.kill();
    const during = entries('reg-down', 50);
    await putAll(gw, during);
    await assertAllRead(gw, [...before, ...during]);
    // A gateway started while the registry is away still answers (503 until it has a view).
    await c.startRegistry();
    await waitFor('registry lists all members up', async () => {
      const res = await http('GET', `${c.registryUrl}/nodes`);
      return res.json?.nodes?.length === 3;
    }, { timeoutMs: 10_000 });
    await c.waitForUp(3);
    await assertAllRead(gw, [...before, ...during]);
  });

  test('a second and a restarted gateway find every key', async () => {
    const c = await startCluster();
    const data = entries('gw', 100);
    await putAll(c.gatewayUrl, data);

    const second = await c.addGateway();
    await c.waitForUp(3, second);
    await assertAllRead(second, data, { query: 'consistency=one' });

    await c.gateways[0]!.proc.kill();
    const again = await c.addGateway();
    await c.waitForUp(3, again);
    await assertAllRead(again, data);
    const fromSecond = entries('gw2', 20);
    await putAll(second, fromSecond);
    await assertAllRead(again, fromSecond);
  });

  test('quorum cannot be met: 503 that says how many answered, nothing claimed', async () => {
    const c = await startCluster();
    const gw = c.gatewayUrl;
    await putAll(gw, [['q/1', 'one']]);
    await c.killKv(0);
    await c.killKv(1);
    const put = await http('PUT', kvUrl(gw, 'q/2'), { body: 'two' });
    assert.equal(put.status, 503, put.text);
    assert.equal(put.json.success, false);
    assert.equal(put.json.code, 'QUORUM_NOT_MET');
    assert.equal(put.json.required, 2);
    assert.equal(put.json.answered, 1);
    const get = await http('GET', kvUrl(gw, 'q/1'));
    assert.equal(get.status, 503);
    assert.equal(get.json.answered, 1);
    // One replica is enough when the client asks for it.
    const one = await http('GET', kvUrl(gw, 'q/1', 'consistency=one'));
    assert.equal(one.status, 200);
    assert.equal(one.text, 'one');

    // A batch reports each item as its own PUT would have been answered.
    const body = JSON.stringify({ items: [{ key: 'q/3', value: 'three' }, { key: 'q/4', value: 'four' }] });
    const batch = await http('POST', `${gw}/batch`, { body });
    assert.equal(batch.status, 200, batch.text);
    assert.equal(batch.json.success, false);
    assert.equal(batch.json.failed, 2);
    for (const r of batch.json.results) {
      assert.deepEqual([r.success, r.status, r.code, r.required, r.answered], [false, 503, 'QUORUM_NOT_MET', 2, 1]);
    }
    const batchOne = await http('POST', `${gw}/batch?consistency=one`, { body });
    assert.deepEqual([batchOne.json.success, batchOne.json.failed], [true, 0], batchOne.text);
    assert.equal((await http('GET', kvUrl(gw, 'q/4', 'consistency=one'))).text, 'four');
  });
});
