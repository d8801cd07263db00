import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Pool } from 'undici';
import { TestCluster, assertAllRead, freePort, http, kvUrl, putAll, testClusters, waitFor } from '../support/index.js';

/**
 * Joins that cannot wedge the cluster and a registry that stays responsive
 * (docs/security.md, Registry limits and joins), with real processes on
 * loopback. Every url registered here is 127.0.0.1: a closed port of this
 * machine or a server of this cluster.
 */

type MemberRow = { id: string; url: string; state: string; phase: string };

async function members(c: TestCluster): Promise<MemberRow[]> {
  return (await http('GET', `${c.registryUrl}/nodes`)).json.members;
}

const register = (c: TestCluster, body: object) =>
  http('POST', `${c.registryUrl}/register`, { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

/** PUTs one key after another until stop() and counts the answers. */
function writeLoop(gw: string, prefix: string) {
  let running = true;
  const acked: Array<[string, string]> = [];
  const failures: string[] = [];
  const done = (async () => {
    for (let i = 0; running; i++) {
      const key = `${prefix}/${i}`;
      const res = await http('PUT', kvUrl(gw, key), { body: `v${i}` }).catch((err: Error) => ({ status: 0, text: err.message }));
      if (res.status === 201 || res.status === 200) acked.push([key, `v${i}`]);
      else failures.push(`${key}: ${res.status} ${res.text}`);
    }
  })();
  return {
    acked,
    failures,
    async stop() {
      running = false;
      await done;
    },
  };
}

describe('joins and registry limits', () => {
  const startCluster = testClusters();

  test('a url nobody serves never joins, bound ids and urls are refused, and a decommission is not stuck', async () => {
    const c = await startCluster({ kvCount: 4, kvArgs: ['--anti-entropy-ms', '1000'] });
    const data: Array<[string, string]> = Array.from({ length: 200 }, (_, i) => [`k/${i}`, `v${i}`]);
    await putAll(c.gatewayUrl, data);

    const dead = `http://127.0.0.1:${await freePort()}`;
    const ghost = await register(c, { node_url: dead, id: 'ghost' });
    assert.equal(ghost.status, 422);
    assert.equal(ghost.json.code, 'MEMBER_UNREACHABLE');

    const real = (await members(c))[0]!;
    const diverted = await register(c, { node_url: dead, id: real.id });
    assert.equal(diverted.status, 409);
    assert.equal(diverted.json.code, 'MEMBER_BOUND');
    const stolen = await register(c, { node_url: real.url, id: 'impostor' });
    assert.equal(stolen.status, 409);
    assert.equal(stolen.json.code, 'MEMBER_BOUND');
    const after = await members(c);
    assert.equal(after.length, 4);
    assert.ok(after.every((m) => m.state === 'up' && m.phase === 'active'));
    assert.ok(after.some((m) => m.id === real.id && m.url === real.url));

    assert.equal((await c.decommission(3)).status, 200);
    await waitFor('the decommission to complete', async () => !(await members(c)).some((m) => m.url === c.memberUrl(3)), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    await assertAllRead(c.gatewayUrl, data);
  });

  test('a joiner killed -9 mid-join: writes keep succeeding, JOIN_TIMEOUT aborts the join, a decommission then completes', async () => {
    const c = await startCluster({ kvCount: 4, registryArgs: ['--join-timeout', '3s'], kvArgs: ['--anti-entropy-ms', '1000'] });
    const gw = c.gatewayUrl;
    // Without anti-entropy the joiner never finishes a pass: it stays joining until it dies.
    const j = await c.addKv({ args: ['--anti-entropy-ms', '0'] });
    await waitFor('the gateway to see the joiner', async () => {
      const res = await http('GET', `${gw}/cluster`);
      return res.json?.members?.some((m: MemberRow) => m.url === c.memberUrl(j) && m.phase === 'joining' && m.state === 'up');
    });
    const writes = writeLoop(gw, 'during');
    await waitFor('some writes through the join', () => writes.acked.length >= 50);

    await c.killKv(j);
    assert.equal((await c.decommission(3)).status, 200);
    await c.waitForState(j, 'down');
    // Down but not yet past the timeout: the decommission waits behind the join.
    const stuck = await members(c);
    assert.equal(stuck.find((m) => m.url === c.memberUrl(3))?.phase, 'leaving');
    const beforeTimeout = writes.acked.length;
    await waitFor('more writes while the joiner is down', () => writes.acked.length >= beforeTimeout + 50);

    await waitFor('the join to be aborted', async () => !(await members(c)).some((m) => m.url === c.memberUrl(j)), {
      timeoutMs: 15_000,
      intervalMs: 100,
    });
    await waitFor('the decommission to complete', async () => !(await members(c)).some((m) => m.url === c.memberUrl(3)), {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    const afterAbort = writes.acked.length;
    await waitFor('writes after the abort', () => writes.acked.length >= afterAbort + 50);
    await writes.stop();
    assert.deepEqual(writes.failures, [], 'no write failed');
    const left = await members(c);
    assert.equal(left.length, 3);
    assert.ok(left.every((m) => m.state === 'up' && m.phase === 'active'));
    await assertAllRead(gw, writes.acked);
  });

  test('a flood of bad registrations: 429s, GET /nodes keeps answering, no member flaps, writes succeed', async () => {
    // The product's DOWN_AFTER (3 s), not the test clusters' 1 s: on two busy cores a heartbeat can
    // miss 1 s by itself, so only at the product's setting does a flap mean the flood starved it.
    const c = await startCluster({ downAfterMs: 3000 });
    const closedPort = await freePort();
    const pool = new Pool(c.registryUrl, { connections: 32 });
    const statuses = new Map<number, number>();
    let flooding = true;
    // About 1,000 bad registrations a second for one second, in bounded batches.
    const floodStart = Date.now();
    let floodSeconds = 0;
    const flood = (async () => {
      for (let batch = 0; batch < 10; batch++) {
        const start = Date.now();
        await Promise.all(
          Array.from({ length: 100 }, async (_, i) => {
            const res = await pool.request({
              method: 'POST',
              path: '/register',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ node_url: `http://127.0.0.1:${closedPort}/${batch}-${i}`, id: `bad-${batch}-${i}` }),
            });
            await res.body.dump();
            statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          }),
        );
        const left = 100 - (Date.now() - start);
        if (left > 0) await new Promise((r) => setTimeout(r, left));
      }
      floodSeconds = (Date.now() - floodStart) / 1000;
      flooding = false;
    })();
    const latencies: number[] = [];
    let flaps = 0;
    let putsOk = 0;
    let putsFailed = 0;
    for (let i = 0; flooding; i++) {
      const t0 = performance.now();
      const res = await http('GET', `${c.registryUrl}/nodes`);
      latencies.push(performance.now() - t0);
      assert.equal(res.status, 200);
      if ((res.json.members as MemberRow[]).some((m) => m.state !== 'up')) flaps++;
      const put = await http('PUT', kvUrl(c.gatewayUrl, `flood/${i}`), { body: 'x' });
      if (put.status === 201) putsOk++;
      else putsFailed++;
    }
    await flood;
    await pool.close();
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? 0;
    console.log(`# flood answers ${JSON.stringify(Object.fromEntries(statuses))} in ${floodSeconds} s; GET /nodes p99 ${p99.toFixed(1)} ms over ${latencies.length}; PUTs ${putsOk} ok ${putsFailed} failed`);
    // The registry's defaults: a burst of 40, then 20 a second (a slow machine stretches the flood's second).
    const admitted = 1000 - (statuses.get(429) ?? 0);
    assert.ok(admitted <= 40 + 20 * (floodSeconds + 1), `${admitted} got past the limit in ${floodSeconds} s`);
    assert.equal(statuses.get(200) ?? 0, 0, 'none joined');
    assert.equal(flaps, 0, 'no member went down');
    assert.equal(putsFailed, 0);
    assert.ok(putsOk > 0);
    const view = await members(c);
    assert.equal(view.length, 3);
    assert.ok(view.every((m) => m.state === 'up'));
  });
});
