import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createHttpServer } from '../cluster/http-server.js';
import { MemberTable } from './members.js';
import { registerRegistryRoutes } from './routes.js';

/** Members' clocks as the registry learns them from heartbeats (clock skew in a gateway's /cluster). */

test('a heartbeat with clock_ms is kept as the clock offset; /nodes carries the registry clock; the index does not move', async () => {
  const app = createHttpServer({ logLevel: 'silent', bodyLimit: 64 * 1024, component: 'registry-test' });
  const table = new MemberTable({ downAfterMs: 1000 });
  // No url is dialled: the health check of a new member is a stub.
  registerRegistryRoutes(app, { table, config: { maxWaitSeconds: 5 }, persist: async () => {}, probe: async () => {} });
  after(() => app.close());

  const beat = (body: object) => app.inject({ method: 'POST', url: '/heartbeat', payload: { node_url: 'http://127.0.0.1:8001', id: 'kv-1', ...body } });
  assert.equal((await beat({ clock_ms: Date.now() - 60_000 })).statusCode, 200);
  const index = table.index;
  const t0 = Date.now();
  const nodes = (await app.inject({ method: 'GET', url: '/nodes' })).json();
  assert.ok(nodes.clockMs >= t0 && nodes.clockMs <= Date.now(), 'the registry clock as it answered');
  const offset = nodes.members[0].clockOffsetMs;
  assert.ok(offset <= -60_000 && offset > -61_000, String(offset));

  await beat({ clock_ms: Date.now() + 5000 });
  const later = (await app.inject({ method: 'GET', url: '/nodes' })).json();
  assert.ok(later.members[0].clockOffsetMs > 4000 && later.members[0].clockOffsetMs <= 5000);
  assert.equal(table.index, index, 'a clock report is not a view change');

  // Malformed or missing: the last offset stays.
  await beat({ clock_ms: 'soon' });
  await beat({});
  assert.equal((await app.inject({ method: 'GET', url: '/nodes' })).json().members[0].clockOffsetMs, later.members[0].clockOffsetMs);
});
