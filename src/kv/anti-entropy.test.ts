import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { HybridClock } from '../cluster/hlc.js';
import { HttpReplicaTransport } from '../cluster/http-transport.js';
import type { ReplicaRecord } from '../cluster/types.js';
import { InProcessCluster, stamped, waitFor } from '../test/support/index.js';
import type { RunningKvServer } from './server.js';

/**
 * Anti-entropy between real KV servers in this process: a registry on port 0
 * and three KV servers (N = 3, so every server holds every key). Records are
 * written straight to one server's replica API, bypassing any gateway, and
 * the others must converge on their own.
 */

const transport = new HttpReplicaTransport({ timeoutMs: 5000 });
const clock = new HybridClock('aetest');
let cluster: InProcessCluster;
const kvs: RunningKvServer[] = [];

const record = (value: string, tombstone = false): ReplicaRecord => stamped(clock, value, tombstone);

async function health(url: string): Promise<{ keys: number; memory: { heapUsed: number; rss: number } }> {
  const res = await request(`${url}/health-check`);
  return (await res.body.json()) as { keys: number; memory: { heapUsed: number; rss: number } };
}

/** Resolves once every server answers key with exactly this version. */
async function converged(key: string, version: string, servers = kvs): Promise<void> {
  await waitFor(`${key} at ${version} on every server`, async () => {
    const got = await Promise.all(servers.map((s) => transport.get(s.url, key)));
    return got.every((r) => r?.version === version);
  }, { timeoutMs: 20_000 });
}

before(async () => {
  cluster = await InProcessCluster.start({
    label: 'ae',
    registry: { downAfterMs: 600, sweepIntervalMs: 100 },
    kv: { heartbeatIntervalMs: 100, antiEntropyIntervalMs: 300, replicationFactor: 3 },
  });
  for (let i = 0; i < 3; i++) kvs.push(await cluster.startKv(`kv${i}`));
});

after(async () => {
  await cluster?.close();
  await transport.close();
});

describe('anti-entropy', () => {
  test('servers that join pull their ranges and become active', async () => {
    await cluster.waitForActive(3, 20_000);
    const epoch = (await cluster.view()).epoch ?? 0;
    await waitFor('every server synced the epoch', () => kvs.every((k) => k.progress().syncedEpoch >= epoch));
  });

  test('records, tombstones included, written to one server reach the others', async () => {
    const written = new Map<string, ReplicaRecord>();
    for (let i = 0; i < 200; i++) {
      const r = record(`value-${i}`, i % 10 === 0);
      written.set(`ae/basic/${i}`, r);
      await transport.put(kvs[0]!.url, `ae/basic/${i}`, r);
    }
    for (const [key, r] of written) await converged(key, r.version);
    const copy = await transport.get(kvs[2]!.url, 'ae/basic/7');
    assert.deepEqual(copy, { ...written.get('ae/basic/7')!, value: Buffer.from('value-7') });
    assert.equal((await transport.get(kvs[1]!.url, 'ae/basic/10'))?.tombstone, true);
  });

  test('the newer version wins wherever it was written', async () => {
    const older = record('older');
    const newer = record('newer');
    const deleted = record('', true);
    // The newer value lands on the second server, the older one on the first.
    await transport.put(kvs[0]!.url, 'ae/lww/value', older);
    await transport.put(kvs[1]!.url, 'ae/lww/value', newer);
    // A delete on the third server is newer than the value on the first.
    const live = record('soon deleted');
    await transport.put(kvs[0]!.url, 'ae/lww/deleted', live);
    const tomb = { ...deleted, version: clock.next() };
    await transport.put(kvs[2]!.url, 'ae/lww/deleted', tomb);
    await converged('ae/lww/value', newer.version);
    await converged('ae/lww/deleted', tomb.version);
    for (const s of kvs) {
      assert.equal((await transport.get(s.url, 'ae/lww/value'))?.value.toString(), 'newer');
      assert.equal((await transport.get(s.url, 'ae/lww/deleted'))?.tombstone, true);
    }
  });

  test('5,000 keys written to one server converge on the others', async () => {
    const keys = Array.from({ length: 5000 }, (_, i) => `ae/bulk/${i}`);
    const versions = new Map<string, string>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < keys.length) {
          const key = keys[next++]!;
          const r = record(`bulk ${key} `.repeat(5));
          versions.set(key, r.version);
          await transport.put(kvs[1]!.url, key, r);
        }
      }),
    );
    const target = (await health(kvs[1]!.url)).keys;
    await waitFor('every server holds as many keys', async () => {
      const counts = await Promise.all(kvs.map((k) => health(k.url)));
      return counts.every((c) => c.keys === target);
    }, { timeoutMs: 60_000, intervalMs: 200 });
    for (const server of [kvs[0]!, kvs[2]!]) {
      for (let i = 0; i < keys.length; i += 250) {
        const got = await Promise.all(keys.slice(i, i + 250).map((k) => transport.get(server.url, k)));
        got.forEach((r, j) => assert.equal(r?.version, versions.get(keys[i + j]!), `${keys[i + j]} on ${server.url}`));
      }
    }
    const moved = kvs[0]!.progress().keysMovedTotal + kvs[2]!.progress().keysMovedTotal;
    assert.ok(moved >= 5000, `the two other servers pulled the keys (moved ${moved})`);
  });

  test('the sync status, metrics and health endpoints report the transfers', async () => {
    const status = await request(`${kvs[0]!.url}/internal/sync/status`);
    const body = (await status.body.json()) as Record<string, unknown>;
    assert.equal(typeof body.syncedEpoch, 'number');
    assert.equal(typeof body.keysMovedTotal, 'number');
    assert.equal(body.hintsPending, 0);
    const metrics = await (await request(`${kvs[0]!.url}/metrics`)).body.text();
    for (const name of [
      'flexstore_kv_keys',
      'flexstore_sync_keys_streamed_total{direction="in"}',
      'flexstore_sync_passes_total{outcome="complete"}',
      'flexstore_hints_pending',
      'flexstore_tombstones_purged_total',
      'flexstore_kv_process_cpu_user_seconds_total',
    ]) {
      assert.ok(metrics.includes(name), `metrics mention ${name}`);
    }
    const h = await health(kvs[0]!.url);
    assert.ok(h.memory.heapUsed > 0 && h.memory.rss >= h.memory.heapUsed);
  });
});
