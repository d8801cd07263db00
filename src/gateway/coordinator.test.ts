import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidKey, ReplicaUnreachable, StorageFull, peerError } from '../cluster/errors.js';
import { HybridClock } from '../cluster/hlc.js';
import type { ReplicaTransport } from '../cluster/transport.js';
import type { Member } from '../cluster/types.js';
import { ClusterView } from './cluster-view.js';
import { Coordinator } from './coordinator.js';
import { GatewayMetrics } from './metrics.js';

const members: Member[] = [1, 2, 3].map((i) => ({
  id: `kv-${i}`,
  url: `http://kv-${i}.test`,
  state: 'up',
  lastHeartbeat: 0,
  registeredAt: 0,
}));

/** A transport whose every replica fails each call with fail(url). */
function failingTransport(fail: (url: string) => Error): ReplicaTransport {
  return {
    get: async (url) => Promise.reject(fail(url)),
    put: async (url) => Promise.reject(fail(url)),
    list: async (url) => Promise.reject(fail(url)),
    storeHints: async (url) => Promise.reject(fail(url)),
    close: async () => {},
  };
}

function coordinator(transport: ReplicaTransport): { view: ClusterView; coord: Coordinator } {
  const view = new ClusterView(16, 3, 60_000);
  view.update({ nodes: members.map((m) => m.url), members, index: 1 });
  const coord = new Coordinator(view, transport, new HybridClock('gw-test'), new GatewayMetrics(), { log: { debug() {} } });
  return { view, coord };
}

test('a replica that refuses the request (4xx) fails the quorum but is not suspected', async () => {
  const { view, coord } = coordinator(failingTransport((url) => new InvalidKey(`${url}: PUT answered 400: INVALID_KEY too long`)));
  await assert.rejects(coord.put('k', Buffer.from('v'), 'text/plain', 'quorum'), /needs 2 replica/);
  for (const m of members) assert.equal(view.isSuspect(m.url), false, m.id);
});

test('an unreachable replica is suspected', async () => {
  const { view, coord } = coordinator(failingTransport((url) => new ReplicaUnreachable(url, 'PUT failed: ECONNREFUSED')));
  await assert.rejects(coord.put('k', Buffer.from('v'), 'text/plain', 'quorum'), /needs 2 replica/);
  for (const m of members) assert.equal(view.isSuspect(m.url), true, m.id);
});

test('a replica whose storage is full fails the write but is not suspected: the others make the quorum', async () => {
  const fullUrl = members[0]!.url;
  // As a transport raises it from a 507 STORAGE_FULL answer (errors.ts peerError).
  const refusal = peerError(fullUrl, 'PUT answered 507: STORAGE_FULL storage cannot commit (ENOSPC)', 'STORAGE_FULL');
  assert.ok(refusal instanceof ReplicaUnreachable && refusal.cause instanceof StorageFull);
  const transport: ReplicaTransport = {
    ...partlyDeadTransport(new Set()),
    put: async (url, _key, rec) => (url === fullUrl ? Promise.reject(refusal) : { applied: true, version: rec.version }),
  };
  const { view, coord } = coordinator(transport);
  const res = await coord.put('k', Buffer.from('v'), 'text/plain', 'quorum');
  assert.ok(!res.replicas.includes(members[0]!.id));
  await assert.rejects(coord.put('k', Buffer.from('v'), 'text/plain', 'all'), (err: unknown) => {
    const replicas = (err as { details: { replicas: Array<{ id: string; ok: boolean; code?: string }> } }).details.replicas;
    assert.deepEqual(replicas.filter((r) => !r.ok).map((r) => [r.id, r.code]), [[members[0]!.id, 'STORAGE_FULL']]);
    return true;
  });
  await new Promise((r) => setImmediate(r));
  for (const m of members) assert.equal(view.isSuspect(m.url), false, m.id);
});

/** Succeeds on every replica but those in `dead`, which are unreachable. */
function partlyDeadTransport(dead: Set<string>): ReplicaTransport {
  const fail = (url: string) => Promise.reject(new ReplicaUnreachable(url, 'ECONNREFUSED'));
  return {
    get: async (url) => (dead.has(url) ? fail(url) : null),
    put: async (url, _key, rec) => (dead.has(url) ? fail(url) : { applied: true, version: rec.version }),
    list: async (url) => (dead.has(url) ? fail(url) : { entries: [], more: false }),
    storeHints: async () => {},
    close: async () => {},
  };
}

test('writes during a join do not wait for joiners that are down; they do wait for joiners that are up', async () => {
  const joiners: Member[] = [4, 5].map((i) => ({
    id: `kv-${i}`,
    url: `http://kv-${i}.test`,
    state: 'down',
    phase: 'joining',
    lastHeartbeat: 0,
    registeredAt: 0,
  }));
  const dead = new Set(joiners.map((m) => m.url));
  const run = async (state: 'up' | 'down') => {
    const view = new ClusterView(16, 3, 60_000);
    const all = [...members, ...joiners.map((m) => ({ ...m, state }))];
    view.update({ nodes: [], members: all, index: 1, epoch: 5 });
    const coord = new Coordinator(view, partlyDeadTransport(dead), new HybridClock('gw-test'), new GatewayMetrics(), { log: { debug() {} } });
    let failed = 0;
    let movingKeys = 0;
    for (let i = 0; i < 200; i++) {
      const key = `k${i}`;
      const { target } = view.writeLists(key);
      if (target.some((m) => dead.has(m.url))) movingKeys++;
      await coord.put(key, Buffer.from('v'), 'text/plain', 'quorum').catch(() => failed++);
    }
    return { failed, movingKeys };
  };
  const down = await run('down');
  assert.ok(down.movingKeys > 20, 'the joiners take over part of the keys');
  assert.equal(down.failed, 0, 'joiners known to be down are not waited for');
  // Known to be up but not answering (the gateway has not heard yet): those writes fail, as before.
  const up = await run('up');
  assert.ok(up.failed > 0);
});

test('a pending member takes no writes and no listing', async () => {
  const pending: Member = { id: 'kv-9', url: 'http://kv-9.test', state: 'up', phase: 'pending', lastHeartbeat: 0, registeredAt: 0 };
  const view = new ClusterView(16, 3, 60_000);
  view.update({ nodes: [], members: [...members, pending], index: 1 });
  const coord = new Coordinator(view, partlyDeadTransport(new Set([pending.url])), new HybridClock('gw-test'), new GatewayMetrics(), { log: { debug() {} } });
  for (let i = 0; i < 50; i++) {
    const res = await coord.put(`k${i}`, Buffer.from('v'), 'text/plain', 'all');
    assert.ok(!res.replicas.includes('kv-9'));
  }
  assert.deepEqual(await coord.list('', '', 10), { keys: [], next: null });
});
