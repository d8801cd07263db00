import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QuorumNotMet, VersionFromFuture } from '../cluster/errors.js';
import { HybridClock, formatVersion, parseVersion } from '../cluster/hlc.js';
import type { ReplicaTransport } from '../cluster/transport.js';
import type { Member, MemberView, ReplicaRecord } from '../cluster/types.js';
import { clockReport } from './clock-skew.js';
import { ClusterView } from './cluster-view.js';
import { Coordinator } from './coordinator.js';
import { GatewayMetrics } from './metrics.js';

const NOW = 1_700_000_000_000;
const members: Member[] = [1, 2, 3].map((i) => ({ id: `kv-${i}`, url: `http://kv-${i}.test`, state: 'up', lastHeartbeat: 0, registeredAt: 0 }));
const rec = (version: string, value = 'v'): ReplicaRecord => ({ value: Buffer.from(value), version, tombstone: false, contentType: 'text/plain' });

/** Replicas in memory: gets answer `held[url]`; puts are recorded and applied last-writer-wins, or fail with `refusePut`. */
function fakeReplicas(held: Record<string, ReplicaRecord | null>, refusePut?: (url: string) => Error) {
  const puts: Array<{ url: string; version: string }> = [];
  const transport: ReplicaTransport = {
    get: async (url) => held[url] ?? null,
    put: async (url, _key, r) => {
      if (refusePut) throw refusePut(url);
      puts.push({ url, version: r.version });
      const cur = held[url];
      if (!cur || cur.version < r.version) held[url] = r;
      return { applied: true, version: r.version };
    },
    list: async () => ({ entries: [], more: false }),
    storeHints: async () => {},
    close: async () => {},
  };
  return { transport, puts };
}

async function metricValue(metrics: GatewayMetrics, name: string): Promise<number> {
  const m = (await metrics.registry.getSingleMetric(name)!.get()).values[0];
  return m?.value ?? NaN;
}

function setup(transport: ReplicaTransport) {
  const view = new ClusterView(16, 3, 60_000);
  view.update({ nodes: members.map((m) => m.url), members, index: 1 });
  const clock = new HybridClock('gw-test', () => NOW, { maxSkewMs: 10_000 });
  const metrics = new GatewayMetrics();
  return { coord: new Coordinator(view, transport, clock, metrics, { log: { debug() {} } }), metrics };
}

test('a read that returns a version from the future is answered, never adopted, never read-repaired', async () => {
  const forged = rec('ffffffffffff.ffffff.zzzz', 'forged');
  const { transport, puts } = fakeReplicas({ 'http://kv-1.test': forged, 'http://kv-2.test': null, 'http://kv-3.test': null });
  const { coord, metrics } = setup(transport);
  const read = await coord.get('k', 'all');
  assert.equal(read.record?.version, forged.version);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(puts, [], 'no read repair of a future version');
  assert.equal(await metricValue(metrics, 'flexstore_versions_refused_total'), 1);
  // The clock was not moved: a PUT stamps the gateway's own time and succeeds.
  const w = await coord.put('k', Buffer.from('new'), 'text/plain', 'quorum');
  assert.deepEqual(parseVersion(w.version), { wall: NOW, counter: 0 });
  // And DELETE (a read, then a tombstone write) works too.
  assert.ok(await coord.delete('k', 'quorum'));
});

test('a version ahead within MAX_CLOCK_SKEW is adopted and repaired as before', async () => {
  const near = rec(formatVersion({ wall: NOW + 5000, counter: 7 }, 'gw-other'));
  const { transport, puts } = fakeReplicas({ 'http://kv-1.test': near, 'http://kv-2.test': null, 'http://kv-3.test': null });
  const { coord, metrics } = setup(transport);
  await coord.get('k', 'all');
  await new Promise((r) => setImmediate(r));
  assert.equal(puts.length, 2, 'the two stale replicas are repaired');
  assert.equal(await metricValue(metrics, 'flexstore_versions_refused_total'), 0);
  const w = await coord.put('k2', Buffer.from('x'), 'text/plain', 'quorum');
  assert.deepEqual(parseVersion(w.version), { wall: NOW + 5000, counter: 8 });
});

test('a write every replica refuses as from the future fails with QUORUM_NOT_MET naming the code per replica', async () => {
  const { transport } = fakeReplicas({}, (url) => new VersionFromFuture(`${url}: PUT answered 409: VERSION_FROM_FUTURE version is 60000 ms ahead`));
  const { coord } = setup(transport);
  await assert.rejects(coord.put('k', Buffer.from('v'), 'text/plain', 'quorum'), (err: unknown) => {
    assert.ok(err instanceof QuorumNotMet);
    const replicas = err.details.replicas as Array<{ ok: boolean; code?: string; error: string }>;
    assert.equal(replicas.length, 3);
    for (const r of replicas) {
      assert.equal(r.ok, false);
      assert.equal(r.code, 'VERSION_FROM_FUTURE');
      assert.match(r.error, /ahead/);
    }
    return true;
  });
});

const view = (offsets: Array<[string, number | undefined, 'up' | 'down']>): MemberView => ({
  nodes: [],
  index: 1,
  members: offsets.map(([id, clockOffsetMs, state]) => ({
    id,
    url: `http://${id}.test`,
    state,
    lastHeartbeat: 0,
    registeredAt: 0,
    ...(clockOffsetMs !== undefined && { clockOffsetMs }),
  })),
});

test('clock report: a spread over half of MAX_CLOCK_SKEW names the two clocks furthest apart', () => {
  const calm = clockReport(view([['a', 3, 'up'], ['b', -2, 'up']]), 'gw', 1, 10_000);
  assert.deepEqual(calm, { maxClockSkewMs: 10_000, gatewayOffsetMs: 1, spreadMs: 5, warning: null, offsets: { a: 3, b: -2 } });

  const skewed = clockReport(view([['a', 2, 'up'], ['slow', -60_000, 'up'], ['gone', 90_000, 'down'], ['quiet', undefined, 'up']]), 'gw', 0, 10_000);
  assert.equal(skewed.spreadMs, 60_002);
  assert.deepEqual(skewed.offsets, { a: 2, slow: -60_000 });
  assert.match(skewed.warning!, /clock skew of 60\.0 s between member a and member slow/);

  // The gateway's own clock counts as one of the pair.
  const gwAhead = clockReport(view([['a', 0, 'up']]), 'gw-fast', 6000, 10_000);
  assert.match(gwAhead.warning!, /gateway gw-fast and member a/);
  // Exactly half is not yet a warning; nothing known, no spread.
  assert.equal(clockReport(view([['a', 0, 'up'], ['b', 5000, 'up']]), 'gw', null, 10_000).warning, null);
  assert.deepEqual(clockReport(null, 'gw', null, 10_000).spreadMs, 0);
});
