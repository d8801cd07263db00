import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { defaultRegistryConfig } from '../../registry/config.js';
import { startRegistry } from '../../registry/server.js';
import { FlexProcess, freePort, http, type HttpResult, kvUrl, TestCluster, waitFor, runCli } from '../support/index.js';

/**
 * The README's promises that no other test checks, each against real
 * processes over loopback HTTP: the gateway's settings (DEFAULT_CONSISTENCY,
 * MAX_KEY_BYTES, MAX_VALUE_BYTES) by their effect, the Allow header of a 405,
 * listing bounds, the per-replica outcome of QUORUM_NOT_MET, the metrics the
 * README names, /health and NO_MEMBERS without KV servers, forced
 * deregistration, the registry's 409 and the cap on a watch's `wait`.
 *
 * One cluster serves the whole file; the tests run in order and the later
 * ones kill its KV servers one by one.
 */

function assertErrorShape(res: HttpResult, status: number, code: string): void {
  assert.equal(res.status, status, res.text);
  assert.match(String(res.headers['content-type']), /application\/json/);
  assert.equal(res.json?.success, false, res.text);
  assert.equal(res.json.code, code, res.text);
  assert.equal(typeof res.json.error, 'string');
  assert.ok(res.json.error.length > 0);
}

/** Sum of the samples of a Prometheus metric whose labels include `labels`; undefined when there is none. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total = (total ?? 0) + Number(m[3]);
  }
  return total;
}

/** A version newer than any the cluster's gateways have issued so far (hlc.ts format). */
function freshVersion(suffix: string): string {
  return `${(Date.now() + 1000).toString(16).padStart(12, '0')}.000000.${suffix}`;
}

const procs: FlexProcess[] = [];

/** A gateway started through the CLI with settings given as environment variables, as an operator would. */
async function startGateway(name: string, registryUrl: string, env: Record<string, string>): Promise<string> {
  const port = await freePort();
  const proc = new FlexProcess(
    name,
    ['gateway', '--port', String(port), '--host', '127.0.0.1', '--registry-url', registryUrl, '--replication-factor', '3'],
    env,
  );
  procs.push(proc);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${name} at ${url}`, async () => !proc.running || (await http('GET', `${url}/cluster`, { timeoutMs: 1000 })).status === 200, {
    timeoutMs: 20_000,
  });
  if (!proc.running) throw new Error(`${name} exited during start-up:\n${proc.logs()}`);
  return url;
}

describe('README promises', () => {
  let c: TestCluster;
  let gw: string;
  /** DEFAULT_CONSISTENCY=all, MAX_KEY_BYTES=16, MAX_VALUE_BYTES=100. */
  let gwAll: string;
  /** DEFAULT_CONSISTENCY=one. */
  let gwOne: string;
  /** A gateway whose registry never answers. */
  let gwNoRegistry: Promise<string>;
  /** KV server id by its index in c.kvs. */
  const ids: string[] = [];

  before(async () => {
    // This gateway waits for its first view (5 s) before it serves: start it alongside the cluster.
    gwNoRegistry = freePort().then((p) => startGateway('gateway-no-registry', `http://127.0.0.1:${p}`, {}));
    gwNoRegistry.catch(() => {});
    c = await TestCluster.start({ kvCount: 3, replicationFactor: 3 });
    gw = c.gatewayUrl;
    [gwAll, gwOne] = await Promise.all([
      startGateway('gateway-all', c.registryUrl, { DEFAULT_CONSISTENCY: 'all', MAX_KEY_BYTES: '16', MAX_VALUE_BYTES: '100' }),
      startGateway('gateway-one', c.registryUrl, { DEFAULT_CONSISTENCY: 'one' }),
    ]);
    await c.waitForUp(3, gwAll);
    await c.waitForUp(3, gwOne);
    for (let i = 0; i < 3; i++) ids.push((await http('GET', `${c.kvUrl(i)}/health-check`)).json.id);
  });

  after(async () => {
    await Promise.allSettled([gwNoRegistry]);
    await Promise.all(procs.map((p) => p.kill()));
    await c?.stop();
  });

  test('gateway 405s carry an Allow header listing exactly the methods the route serves', async () => {
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
    const routes: Array<[string, string[]]> = [
      ['/kv/allow-probe', ['GET', 'HEAD', 'PUT', 'DELETE']],
      ['/kv', ['GET', 'HEAD']],
      ['/batch', ['POST']],
      ['/health', ['GET', 'HEAD']],
      ['/cluster', ['GET', 'HEAD']],
      ['/metrics', ['GET', 'HEAD']],
    ];
    for (const [route, served] of routes) {
      let allow: string[] | undefined;
      for (const method of methods) {
        const res = await http(method, `${gw}${route}`, method === 'PUT' || method === 'POST' || method === 'PATCH' ? { body: '{}' } : {});
        const what = `${method} ${route}`;
        if (!served.includes(method)) {
          assert.equal(res.status, 405, what);
          if (method !== 'HEAD') assertErrorShape(res, 405, 'METHOD_NOT_ALLOWED');
          const header = res.headers.allow;
          assert.equal(typeof header, 'string', `${what}: Allow header`);
          const listed = String(header).split(',').map((m) => m.trim()).sort();
          assert.deepEqual(listed, [...served].sort(), what);
          allow ??= listed;
          assert.deepEqual(listed, allow, `${what}: one Allow per route`);
        } else {
          assert.notEqual(res.status, 405, what);
        }
      }
      assert.ok(allow, `${route} rejected some method`);
    }
  });

  test('listing: limit defaults to 100, accepts 1 to 1000, rejects anything else', async () => {
    const keys = Array.from({ length: 150 }, (_, i) => `lim/${String(i).padStart(3, '0')}`);
    const load = await http('POST', `${gw}/batch`, { body: JSON.stringify({ items: keys.map((key) => ({ key, value: key })) }) });
    assert.deepEqual([load.status, load.json?.failed], [200, 0], load.text);

    const first = await http('GET', `${gw}/kv?prefix=lim/`);
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(first.json.keys, keys.slice(0, 100));
    assert.equal(first.json.next, keys[99]);
    const rest = await http('GET', `${gw}/kv?${new URLSearchParams({ prefix: 'lim/', after: first.json.next })}`);
    assert.deepEqual([rest.json.keys, rest.json.next], [keys.slice(100), null]);

    const one = await http('GET', `${gw}/kv?prefix=lim/&limit=1`);
    assert.deepEqual([one.status, one.json.keys, one.json.next], [200, [keys[0]], keys[0]]);
    const max = await http('GET', `${gw}/kv?prefix=lim/&limit=1000`);
    assert.deepEqual([max.status, max.json.keys, max.json.next], [200, keys, null]);

    for (const bad of ['1001', '0', '-1', '1.5', '', '1e2']) {
      const res = await http('GET', `${gw}/kv?prefix=lim/&limit=${bad}`);
      assertErrorShape(res, 400, 'INVALID_REQUEST');
      assert.equal(res.json.parameter, 'limit', bad);
    }
  });

  test('MAX_KEY_BYTES: keys over the limit in UTF-8 bytes are 400 INVALID_KEY, on reads and writes', async () => {
    // 16 bytes is the limit of gwAll; the default gateway's is 1024.
    const ok16 = 'k'.repeat(16);
    const accented16 = 'é'.repeat(8); // 8 characters, 16 bytes
    const over17 = 'k'.repeat(17);
    const accented17 = 'é'.repeat(8) + 'x'; // 9 characters, 17 bytes
    for (const key of [ok16, accented16]) {
      const put = await http('PUT', kvUrl(gwAll, key), { body: 'v' });
      assert.equal(put.status, 201, `${key}: ${put.text}`);
      assert.equal((await http('GET', kvUrl(gwAll, key))).text, 'v');
    }
    for (const key of [over17, accented17]) {
      for (const method of ['PUT', 'GET', 'DELETE']) {
        const res = await http(method, kvUrl(gwAll, key), method === 'PUT' ? { body: 'v' } : {});
        assertErrorShape(res, 400, 'INVALID_KEY');
        assert.match(res.json.error, /17 bytes; the limit is 16/);
      }
      assert.equal((await http('GET', kvUrl(gw, key))).status, 404, 'nothing was stored');
    }
    const batch = await http('POST', `${gwAll}/batch`, { body: JSON.stringify({ items: [{ key: ok16, value: 'x' }, { key: over17, value: 'x' }] }) });
    assertErrorShape(batch, 400, 'INVALID_KEY');
    assert.equal(batch.json.item, 1);
    // The same key through a gateway with the default limit: it is the setting, not the key.
    assert.equal((await http('PUT', kvUrl(gw, over17), { body: 'v' })).status, 201);
  });

  test('MAX_VALUE_BYTES: a larger value is 413 PAYLOAD_TOO_LARGE and nothing is stored', async () => {
    const at = Buffer.alloc(100, 1);
    const over = Buffer.alloc(101, 2);
    assert.equal((await http('PUT', kvUrl(gwAll, 'val/at-limit'), { body: at })).status, 201);
    assert.deepEqual((await http('GET', kvUrl(gw, 'val/at-limit'))).body, at);

    assertErrorShape(await http('PUT', kvUrl(gwAll, 'val/over'), { body: over }), 413, 'PAYLOAD_TOO_LARGE');
    assertErrorShape(await http('GET', kvUrl(gw, 'val/over')), 404, 'KEY_NOT_FOUND');

    const batch = await http('POST', `${gwAll}/batch`, {
      body: JSON.stringify({ items: [{ key: 'val/b0', value: 'x' }, { key: 'val/b1', valueBase64: over.toString('base64') }] }),
    });
    assertErrorShape(batch, 413, 'PAYLOAD_TOO_LARGE');
    assert.equal(batch.json.item, 1);
    assertErrorShape(await http('GET', kvUrl(gw, 'val/b0')), 404, 'KEY_NOT_FOUND');

    // The default gateway (1 MiB) takes the same value.
    assert.equal((await http('PUT', kvUrl(gw, 'val/over'), { body: over })).status, 201);
  });

  test('read repair: a replica that lacks the newest version is sent it, and flexstore_read_repairs_total counts it', async () => {
    const version = freshVersion('repairtest');
    const direct = await http('PUT', `${c.kvUrl(2)}/internal/kv/${encodeURIComponent('rr/key')}`, {
      body: 'newest',
      headers: { 'x-flexstore-version': version, 'x-flexstore-content-type': 'text/plain' },
    });
    assert.equal(direct.status, 200, direct.text);
    assert.equal((await http('GET', `${c.kvUrl(0)}/internal/kv/rr%2Fkey`)).status, 404);

    const get = await http('GET', kvUrl(gw, 'rr/key', 'consistency=all'));
    assert.deepEqual([get.status, get.text, get.headers.etag], [200, 'newest', `"${version}"`]);
    for (const i of [0, 1]) {
      await waitFor(`kv${i} repaired`, async () => {
        const res = await http('GET', `${c.kvUrl(i)}/internal/kv/rr%2Fkey`);
        return res.status === 200 && res.headers['x-flexstore-version'] === version && res.text === 'newest';
      }, { timeoutMs: 5000 });
    }
    await waitFor('read repairs counted', async () => {
      const metrics = await http('GET', `${gw}/metrics`);
      return (sample(metrics.text, 'flexstore_read_repairs_total', { outcome: 'ok' }) ?? 0) >= 2;
    }, { timeoutMs: 5000 });
  });

  test('DEFAULT_CONSISTENCY decides the level of a request that names none; QUORUM_NOT_MET gives each replica its outcome', async () => {
    const cluster = await http('GET', `${gwAll}/cluster`);
    assert.equal(cluster.json.defaultConsistency, 'all');
    assert.equal((await http('PUT', kvUrl(gw, 'dc/k', 'consistency=all'), { body: 'v' })).status, 201);

    await c.killKv(0);
    // all: every replica must answer.
    const get = await http('GET', kvUrl(gwAll, 'dc/k'));
    assertErrorShape(get, 503, 'QUORUM_NOT_MET');
    assert.deepEqual([get.json.required, get.json.answered], [3, 2], get.text);
    const outcomes = get.json.replicas as Array<{ id: string; ok: boolean; error?: string }>;
    assert.ok(Array.isArray(outcomes), get.text);
    assert.deepEqual(outcomes.map((r) => r.id).sort(), [...ids].sort(), 'one outcome per replica');
    for (const r of outcomes) {
      assert.equal(r.ok, r.id !== ids[0], `${r.id}: ${JSON.stringify(r)}`);
      if (!r.ok) assert.ok(typeof r.error === 'string' && r.error.length > 0, JSON.stringify(r));
    }
    const put = await http('PUT', kvUrl(gwAll, 'dc/w'), { body: 'w' });
    assertErrorShape(put, 503, 'QUORUM_NOT_MET');
    assert.deepEqual([put.json.required, put.json.answered], [3, 2], put.text);
    assert.equal(put.json.replicas.find((r: { id: string }) => r.id === ids[0])?.ok, false, put.text);
    // A level named in the request wins over the default.
    const named = await http('GET', kvUrl(gwAll, 'dc/k', 'consistency=quorum'));
    assert.deepEqual([named.status, named.text], [200, 'v']);
    // The default gateway (quorum) serves the same read.
    const quorum = await http('GET', kvUrl(gw, 'dc/k'));
    assert.deepEqual([quorum.status, quorum.text], [200, 'v']);

    await c.killKv(1);
    const quorumFails = await http('GET', kvUrl(gw, 'dc/k'));
    assertErrorShape(quorumFails, 503, 'QUORUM_NOT_MET');
    assert.deepEqual([quorumFails.json.required, quorumFails.json.answered], [2, 1], quorumFails.text);
    // one: a single replica is enough.
    const one = await http('GET', kvUrl(gwOne, 'dc/k'));
    assert.deepEqual([one.status, one.text], [200, 'v'], one.text);
    assert.equal(one.headers['x-flexstore-replicas'], ids[2]);
    const onePut = await http('PUT', kvUrl(gwOne, 'dc/one'), { body: 'o' });
    assert.equal(onePut.status, 201, onePut.text);
  });

  test('the metrics the README names are exported, and count what happened', async () => {
    await c.waitForState(0, 'down');
    await c.waitForState(1, 'down');
    const scrape = async () => (await http('GET', `${gwAll}/metrics`)).text;
    // gwOne's write reached only kv2: its hints for the dead replicas are
    // flushed to kv2 in the background.
    await waitFor('hints stored', async () => {
      const one = (await http('GET', `${gwOne}/metrics`)).text;
      return (sample(one, 'flexstore_hints_total', { outcome: 'stored' }) ?? 0) >= 1;
    }, { timeoutMs: 10_000 });
    await waitFor('the gateway sees two members down', async () => sample(await scrape(), 'flexstore_members', { state: 'down' }) === 2);
    const text = await scrape();
    const at = (name: string, labels: Record<string, string> = {}) => sample(text, name, labels) ?? 0;
    assert.ok(at('flexstore_http_requests_total', { route: '/kv/*', method: 'GET', status: '503' }) >= 1);
    assert.ok(at('flexstore_http_request_duration_seconds_count', { route: '/kv/*', method: 'PUT', status: '201' }) >= 1);
    assert.ok(at('flexstore_replica_requests_total', { op: 'get', outcome: 'ok' }) >= 1);
    assert.ok(at('flexstore_replica_requests_total', { op: 'get', outcome: 'error' }) >= 1);
    assert.ok(at('flexstore_replica_errors_total', { node: ids[0]! }) >= 1, 'errors by node');
    assert.equal(at('flexstore_replica_errors_total', { node: ids[2]! }), 0, 'no errors from the live replica');
    assert.ok(at('flexstore_quorum_failures_total', { op: 'read' }) >= 1);
    assert.ok(at('flexstore_quorum_failures_total', { op: 'write' }) >= 1);
    assert.equal(at('flexstore_members', { state: 'up' }), 1);
    assert.ok(at('flexstore_gateway_process_cpu_user_seconds_total') > 0, 'Node process metrics');
    assert.ok(at('flexstore_gateway_nodejs_heap_size_used_bytes') > 0, 'Node process metrics');
    assert.notEqual(sample(await (await http('GET', `${gw}/metrics`)).text, 'flexstore_read_repairs_total'), undefined);

    const kv = (await http('GET', `${c.kvUrl(2)}/metrics`)).text;
    const keys = (await http('GET', `${c.kvUrl(2)}/health-check`)).json.keys;
    assert.equal(sample(kv, 'flexstore_kv_keys'), keys);
    assert.ok(keys > 150);
    for (const direction of ['in', 'out']) assert.notEqual(sample(kv, 'flexstore_sync_keys_streamed_total', { direction }), undefined);
    for (const outcome of ['complete', 'partial', 'aborted']) assert.notEqual(sample(kv, 'flexstore_sync_passes_total', { outcome }), undefined);
    // The failed writes left hints on the live server for the two dead ones.
    assert.ok((sample(kv, 'flexstore_hints_stored_total') ?? 0) >= 1, 'hints stored');
    assert.ok((sample(kv, 'flexstore_hints_pending') ?? 0) >= 1, 'hints pending while their targets are down');
    assert.equal(sample(kv, 'flexstore_hints_delivered_total'), 0);
    assert.equal(sample(kv, 'flexstore_tombstones_purged_total'), 0);
    assert.ok((sample(kv, 'flexstore_kv_process_cpu_user_seconds_total') ?? 0) > 0, 'Node process metrics');
  });

  test('forced deregistration removes a member at once; the registry then refuses it with 409 over HTTP', async () => {
    const before = await http('GET', `${c.registryUrl}/nodes`);
    const index = before.json.index as number;
    // A watch asking for 600 s is accepted (capped, not refused) and answered by the change.
    const watch = http('GET', `${c.registryUrl}/nodes?index=${index}&wait=600`, { timeoutMs: 20_000 });

    const res = await http('DELETE', `${c.registryUrl}/deregister`, {
      body: JSON.stringify({ node_url: c.memberUrl(0), force: true }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(
      [res.json.success, res.json.id, res.json.phase, typeof res.json.index],
      [true, ids[0], 'removed', 'number'],
    );
    const woken = await watch;
    assert.equal(woken.status, 200, woken.text);
    assert.ok(woken.json.index > index, 'the watch answered with a newer view');
    assert.ok(!woken.json.members.some((m: { id: string }) => m.id === ids[0]), 'gone from the view at once');

    const again = await http('POST', `${c.registryUrl}/register`, {
      body: JSON.stringify({ node_url: c.memberUrl(0), id: ids[0] }),
      headers: { 'content-type': 'application/json' },
    });
    assertErrorShape(again, 409, 'CONFLICT');
    assert.equal(again.json.id, ids[0]);
    assertErrorShape(
      await http('DELETE', `${c.registryUrl}/deregister`, {
        body: JSON.stringify({ id: ids[0], force: true }),
        headers: { 'content-type': 'application/json' },
      }),
      404,
      'NOT_FOUND',
    );

    // The same through the CLI, by id.
    const cli = await runCli(['node', 'remove', ids[1]!, '--force', '--registry-url', c.registryUrl]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, `${ids[1]} removed from the ring\n`);
    const nodes = await http('GET', `${c.registryUrl}/nodes`);
    assert.deepEqual(nodes.json.members.map((m: { id: string }) => m.id), [ids[2]]);
    assertErrorShape(
      await http('POST', `${c.registryUrl}/heartbeat`, {
        body: JSON.stringify({ node_url: c.memberUrl(1), id: ids[1] }),
        headers: { 'content-type': 'application/json' },
      }),
      409,
      'CONFLICT',
    );
    await waitFor('the gateway drops the removed members', async () => (await http('GET', `${gw}/cluster`)).json.members.length === 1);
  });

  test('gateway /health is 503 once no KV server is up', async () => {
    assert.equal((await http('GET', `${gw}/health`)).status, 200);
    await c.killKv(2);
    await c.waitForState(2, 'down');
    const health = await waitFor('gateway /health 503', async () => {
      const res = await http('GET', `${gw}/health`);
      return res.status === 503 ? res : undefined;
    });
    assertErrorShape(health, 503, 'UNAVAILABLE');
    assert.deepEqual([health.json.members, health.json.up], [1, 0]);
  });

  test('with every KV server removed: gateway /health 503, every data request 503 NO_MEMBERS', async () => {
    const res = await http('DELETE', `${c.registryUrl}/deregister`, {
      body: JSON.stringify({ id: ids[2], force: true }),
      headers: { 'content-type': 'application/json' },
    });
    assert.deepEqual([res.status, res.json?.phase], [200, 'removed'], res.text);
    const reg = await http('GET', `${c.registryUrl}/health`);
    assert.deepEqual([reg.status, reg.json.status, reg.json.members, reg.json.up], [200, 'ok', 0, 0]);
    await waitFor('the gateway knows no members', async () => (await http('GET', `${gw}/cluster`)).json.members.length === 0);

    const health = await http('GET', `${gw}/health`);
    assertErrorShape(health, 503, 'UNAVAILABLE');
    assert.deepEqual([health.json.members, health.json.up], [0, 0]);
    for (const [method, url] of [
      ['GET', kvUrl(gw, 'k')],
      ['PUT', kvUrl(gw, 'k')],
      ['DELETE', kvUrl(gw, 'k')],
      ['GET', `${gw}/kv?prefix=a`],
    ] as const) {
      assertErrorShape(await http(method, url, method === 'PUT' ? { body: 'v' } : {}), 503, 'NO_MEMBERS');
    }
    const batch = await http('POST', `${gw}/batch`, { body: JSON.stringify({ items: [{ key: 'a', value: 'x' }] }) });
    assert.equal(batch.status, 200, batch.text);
    assert.deepEqual([batch.json.success, batch.json.failed], [false, 1]);
    const item = batch.json.results[0];
    assert.deepEqual([item.key, item.success, item.status, item.code], ['a', false, 503, 'NO_MEMBERS']);
  });

  test('a gateway that has never reached its registry: /health 503, requests 503 NO_MEMBERS', async () => {
    const url = await gwNoRegistry;
    const health = await http('GET', `${url}/health`);
    assertErrorShape(health, 503, 'UNAVAILABLE');
    assert.deepEqual([health.json.members, health.json.up], [0, 0]);
    assertErrorShape(await http('GET', kvUrl(url, 'k')), 503, 'NO_MEMBERS');
    assertErrorShape(await http('PUT', kvUrl(url, 'k'), { body: 'v' }), 503, 'NO_MEMBERS');
    assertErrorShape(await http('GET', `${url}/kv`), 503, 'NO_MEMBERS');
  });
});

describe('README promises: the cap on a watch', () => {
  test('GET /nodes?wait= is capped: the default cap is 60 s, and a longer wait ends at the cap', async () => {
    // The cap is not a CLI option; a registry embedded with a 1 s cap shows
    // that a longer wait is clamped rather than refused or honoured.
    assert.equal(defaultRegistryConfig.maxWaitSeconds, 60);
    const dir = await mkdtemp(path.join(tmpdir(), 'flexstore-watch-'));
    const registry = await startRegistry({ port: 0, host: '127.0.0.1', dataDir: dir, maxWaitSeconds: 1, logLevel: 'silent' });
    try {
      const index = (await http('GET', `${registry.url}/nodes`)).json.index as number;
      const started = Date.now();
      const res = await http('GET', `${registry.url}/nodes?index=${index}&wait=600`, { timeoutMs: 10_000 });
      const took = Date.now() - started;
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.index, index, 'nothing changed: the current view');
      assert.ok(took >= 900, `answered after ${took} ms, before the cap`);
      assert.ok(took < 5000, `answered after ${took} ms, long past the 1 s cap`);
    } finally {
      await registry.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
