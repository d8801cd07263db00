import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { HybridClock } from '../cluster/hlc.js';
import { HttpReplicaTransport } from '../cluster/http-transport.js';
import type { ReplicaRecord } from '../cluster/types.js';
import { InProcessCluster, stamped, waitFor } from '../test/support/index.js';
import type { RunningKvServer } from './server.js';
import { RepairClient } from './repair-client.js';

/**
 * Hinted hand-off between real KV servers: while B is down, A takes writes
 * and hints for B; when B comes back on the same data dir and port, A
 * delivers the writes. B runs without anti-entropy on its return, so only
 * hint delivery can have brought it the keys.
 */

const transport = new HttpReplicaTransport({ timeoutMs: 5000 });
const sync = new RepairClient({ timeoutMs: 5000 });
const clock = new HybridClock('hinttest');
let cluster: InProcessCluster;
let a: RunningKvServer;
let b: RunningKvServer | null = null;

async function metric(url: string, name: string): Promise<number> {
  const text = await (await request(`${url}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

before(async () => {
  cluster = await InProcessCluster.start({
    label: 'hints',
    registry: { downAfterMs: 500, sweepIntervalMs: 100 },
    kv: { heartbeatIntervalMs: 100, replicationFactor: 2 },
  });
  // A never runs anti-entropy; B does only for its first start, to join.
  a = await cluster.startKv('a', { antiEntropyIntervalMs: 0 });
  b = await cluster.startKv('b', { antiEntropyIntervalMs: 3_600_000 });
});

after(async () => {
  await cluster?.close();
  await Promise.all([transport.close(), sync.close()]);
});

test('hints stored while a replica is down are delivered when it returns', async () => {
  await cluster.waitForActive(2, 20_000);
  const bId = b!.id;
  const bPort = b!.port;
  await cluster.stopKv('b');
  b = null;
  await waitFor('B marked down', async () => (await cluster.view()).members.find((m) => m.id === bId)?.state === 'down');

  // The writes B missed: taken by A, each hinted for B, as a gateway would.
  const written = new Map<string, ReplicaRecord>();
  for (let i = 0; i < 300; i++) {
    const r = stamped(clock, `missed ${i}`, i % 50 === 0);
    written.set(`hinted/${i}`, r);
    await transport.put(a.url, `hinted/${i}`, r);
  }
  const keys = [...written.keys()];
  // JSON and MessagePack bodies are both accepted.
  const res = await request(`${a.url}/internal/hints`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ target: bId, keys: keys.slice(0, 100) }),
  });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(await res.body.json(), { stored: 100 });
  assert.equal(await sync.hints(a.url, bId, keys.slice(100)), 200);
  assert.equal(a.progress().hintsPending, 300);
  assert.equal(await metric(a.url, 'flexstore_hints_stored_total'), 300);

  // Nothing is delivered while B is down: two more rounds of A's delivery
  // loop complete (so at least one looked at B's hints from start to end)
  // and every hint is still pending.
  const rounds = await metric(a.url, 'flexstore_hint_delivery_rounds_total');
  await waitFor('two more delivery rounds', async () => (await metric(a.url, 'flexstore_hint_delivery_rounds_total')) >= rounds + 2);
  assert.equal(a.progress().hintsPending, 300);

  b = await cluster.startKv('b', { port: bPort, antiEntropyIntervalMs: 0 });
  assert.equal(b.id, bId);
  await waitFor('A delivered every hint', () => a.progress().hintsPending === 0, { timeoutMs: 20_000 });
  for (const [key, r] of written) {
    const got = await transport.get(b.url, key);
    assert.equal(got?.version, r.version, key);
    assert.equal(got?.tombstone, r.tombstone, key);
  }
  assert.equal(b.progress().keysMovedTotal, 0, 'B pulled nothing itself: the hints did it');
  assert.equal(await metric(a.url, 'flexstore_hints_delivered_total'), 300);
  assert.equal(await metric(a.url, 'flexstore_hints_pending'), 0);
});

test('hints for a server that is not a member are dropped', async () => {
  await sync.hints(a.url, 'kv-gone', ['hinted/1']);
  await waitFor('hints for a non-member dropped', () => a.progress().hintsPending === 0);
});
