import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidKey, ReplicaUnreachable } from '../cluster/errors.js';
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
