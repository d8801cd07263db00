import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FlexStoreClient, FlexStoreRequestError } from '../../client/index.js';
import { TestCluster, http, kvUrl, waitFor } from '../support/index.js';

/** Every error response has this shape, whatever produced it. */
function assertErrorShape(res: { status: number; json: any; headers: any }, status: number, code: string) {
  assert.equal(res.status, status, JSON.stringify(res.json));
  assert.match(String(res.headers['content-type']), /application\/json/);
  assert.equal(res.json.success, false);
  assert.equal(res.json.code, code);
  assert.equal(typeof res.json.error, 'string');
  assert.ok(res.json.error.length > 0);
}

describe('gateway API contract', () => {
  let c: TestCluster;
  let gw: string;
  before(async () => {
    c = await TestCluster.start({ kvCount: 3, replicationFactor: 3 });
    gw = c.gatewayUrl;
  });
  after(async () => {
    await c?.stop();
  });

  test('the seed curl flow', async () => {
    const put = await http('PUT', `${gw}/kv/mykey`, {
      body: 'value123',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(put.status, 201);
    assert.equal(put.json.success, true);
    assert.equal(put.json.key, 'mykey');
    assert.equal(typeof put.json.version, 'string');
    assert.equal(put.headers.etag, `"${put.json.version}"`);

    const get = await http('GET', `${gw}/kv/mykey`);
    assert.equal(get.status, 200);
    assert.equal(get.text, 'value123');
    assert.equal(get.headers.etag, `"${put.json.version}"`);

    const del = await http('DELETE', `${gw}/kv/mykey`);
    assert.equal(del.status, 200);
    assert.deepEqual({ success: del.json.success, key: del.json.key }, { success: true, key: 'mykey' });

    assertErrorShape(await http('GET', `${gw}/kv/mykey`), 404, 'KEY_NOT_FOUND');
    assertErrorShape(await http('DELETE', `${gw}/kv/mykey`), 404, 'KEY_NOT_FOUND');

    const nodes = await http('GET', `${c.registryUrl}/nodes`);
    assert.equal(nodes.status, 200);
    assert.deepEqual([...nodes.json.nodes].sort(), [c.kvUrl(0), c.kvUrl(1), c.kvUrl(2)].sort());
    assert.equal(nodes.json.members.length, 3);
    assert.equal(typeof nodes.json.index, 'number');
  });

  test('values are exact bytes with their content type; empty values allowed', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await http('PUT', kvUrl(gw, 'bin'), { body: bytes, headers: { 'content-type': 'image/x-test' } });
    const got = await http('GET', kvUrl(gw, 'bin'));
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(bytes));
    assert.equal(got.headers['content-type'], 'image/x-test');

    const json = '{"not":"parsed"}';
    await http('PUT', kvUrl(gw, 'json'), { body: json, headers: { 'content-type': 'application/json' } });
    const gj = await http('GET', kvUrl(gw, 'json'));
    assert.equal(gj.text, json);
    assert.equal(gj.headers['content-type'], 'application/json');

    const empty = await http('PUT', kvUrl(gw, 'empty'), { body: '' });
    assert.equal(empty.status, 201);
    const ge = await http('GET', kvUrl(gw, 'empty'));
    assert.equal(ge.status, 200);
    assert.equal(ge.body.length, 0);
    assert.equal(ge.headers['content-type'], 'application/octet-stream');

    const big = Buffer.alloc(1024 * 1024, 7);
    assert.equal((await http('PUT', kvUrl(gw, 'big'), { body: big })).status, 201);
    assert.ok((await http('GET', kvUrl(gw, 'big'))).body.equals(big));
  });

  test('keys: slashes, any UTF-8, percent-decoded once; limits', async () => {
    for (const key of ['a/b/c', 'a//b', 'späce & ünïcode 🙂', '?#%', 'x'.repeat(1024)]) {
      const put = await http('PUT', kvUrl(gw, key), { body: `v:${key}` });
      assert.equal(put.status, 201, key);
      assert.equal(put.json.key, key);
      const got = await http('GET', kvUrl(gw, key));
      assert.equal(got.text, `v:${key}`, key);
    }
    // Unencoded slashes in the path are part of the key.
    assert.equal((await http('GET', `${gw}/kv/a/b/c`)).text, 'v:a/b/c');
    assertErrorShape(await http('PUT', `${gw}/kv/${'x'.repeat(1025)}`, { body: 'v' }), 400, 'INVALID_KEY');
    assertErrorShape(await http('GET', `${gw}/kv/`), 400, 'INVALID_KEY');
    assertErrorShape(await http('PUT', `${gw}/kv/`, { body: 'v' }), 400, 'INVALID_KEY');
    assertErrorShape(await http('GET', `${gw}/kv/bad%ZZ`), 400, 'INVALID_KEY');
    assertErrorShape(await http('GET', `${gw}/kv/%ED%A0%80`), 400, 'INVALID_KEY');
  });

  test('a value over the limit gets 413 and nothing is stored', async () => {
    const res = await http('PUT', kvUrl(gw, 'too-big'), { body: Buffer.alloc(1024 * 1024 + 1) });
    assertErrorShape(res, 413, 'PAYLOAD_TOO_LARGE');
    assertErrorShape(await http('GET', kvUrl(gw, 'too-big')), 404, 'KEY_NOT_FOUND');
  });

  test('consistency levels and bad parameters', async () => {
    for (const level of ['one', 'quorum', 'all']) {
      const put = await http('PUT', kvUrl(gw, `c-${level}`, `consistency=${level}`), { body: level });
      assert.equal(put.status, 201);
      const replicas = String(put.headers['x-flexstore-replicas']).split(',');
      assert.ok(replicas.length >= { one: 1, quorum: 2, all: 3 }[level]!);
      if (level === 'one') {
        // W=1 and R=1 need not overlap: the read may reach a replica the write
        // has not reached yet. It must see it once the write lands everywhere.
        await waitFor('a consistency=one read to see the write', async () => {
          const get = await http('GET', kvUrl(gw, `c-${level}`, `consistency=${level}`));
          return get.status === 200 && get.text === level;
        }, { timeoutMs: 5000 });
      } else {
        const get = await http('GET', kvUrl(gw, `c-${level}`, `consistency=${level}`));
        assert.equal(get.text, level);
      }
    }
    assertErrorShape(await http('GET', kvUrl(gw, 'k', 'consistency=most')), 400, 'INVALID_REQUEST');
    assertErrorShape(await http('GET', `${gw}/kv?limit=0`), 400, 'INVALID_REQUEST');
    assertErrorShape(await http('GET', `${gw}/kv?limit=abc`), 400, 'INVALID_REQUEST');
  });

  test('routing headers: X-FlexStore-Replicas names the replicas that served', async () => {
    const put = await http('PUT', kvUrl(gw, 'routed'), { body: 'r' });
    const cluster = await http('GET', `${gw}/cluster`);
    const ids = new Set(cluster.json.members.map((m: { id: string }) => m.id));
    const served = String(put.headers['x-flexstore-replicas']).split(',');
    assert.ok(served.length >= 2);
    for (const id of served) assert.ok(ids.has(id), id);
    const get = await http('GET', kvUrl(gw, 'routed'));
    assert.ok(String(get.headers['x-flexstore-replicas']).split(',').length >= 2);
  });

  test('listing: sorted, prefixed, paginated, deletes excluded', async () => {
    const keys = Array.from({ length: 25 }, (_, i) => `list/${String(i).padStart(2, '0')}`);
    await Promise.all(keys.map((k) => http('PUT', kvUrl(gw, k), { body: k })));
    await http('DELETE', kvUrl(gw, 'list/05'));
    const expected = keys.filter((k) => k !== 'list/05');

    const seen: string[] = [];
    let after: string | null = '';
    let pages = 0;
    while (after !== null) {
      const q = new URLSearchParams({ prefix: 'list/', limit: '7', ...(after ? { after } : {}) });
      const res = await http('GET', `${gw}/kv?${q}`);
      assert.equal(res.status, 200);
      assert.ok(res.json.keys.length <= 7);
      seen.push(...res.json.keys);
      after = res.json.next;
      assert.ok(++pages < 20);
    }
    assert.deepEqual(seen, expected);

    const all = await http('GET', `${gw}/kv?prefix=list/&limit=1000`);
    assert.deepEqual(all.json.keys, expected);
    assert.equal(all.json.next, null);
  });

  test('POST /batch: each item is a PUT of its own; exact bytes and content types', async () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    const items = [
      { key: 'batch/text', value: 'héllo', contentType: 'text/plain; charset=utf-8' },
      { key: 'batch/bin', valueBase64: bytes.toString('base64') },
      { key: 'batch/twice', value: 'first' },
      { key: 'batch/twice', value: 'second' },
      { key: 'batch/empty', value: '' },
    ];
    const res = await http('POST', `${gw}/batch`, { body: JSON.stringify({ items }) });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual([res.json.success, res.json.failed, res.json.results.length], [true, 0, items.length]);
    assert.deepEqual(res.json.results.map((r: any) => [r.key, r.success]), items.map((i) => [i.key, true]));

    const text = await http('GET', kvUrl(gw, 'batch/text'));
    assert.deepEqual([text.status, text.text, text.headers['content-type']], [200, 'héllo', 'text/plain; charset=utf-8']);
    assert.equal(text.headers.etag, `"${res.json.results[0].version}"`);
    const bin = await http('GET', kvUrl(gw, 'batch/bin'));
    assert.deepEqual([bin.body, bin.headers['content-type']], [bytes, 'application/octet-stream']);
    // A key given twice: the later item has the higher version and wins.
    assert.ok(res.json.results[3].version > res.json.results[2].version);
    assert.equal((await http('GET', kvUrl(gw, 'batch/twice'))).text, 'second');
    const empty = await http('GET', kvUrl(gw, 'batch/empty'));
    assert.deepEqual([empty.status, empty.body.length], [200, 0]);
  });

  test('POST /batch: a malformed batch is rejected whole, naming the item, and writes nothing', async () => {
    const post = (body: string, query = '') => http('POST', `${gw}/batch${query}`, { body });
    const good = { key: 'batch/never', value: 'x' };
    const cases: Array<[string, number, string, RegExp]> = [
      ['not json', 400, 'INVALID_REQUEST', /JSON/],
      ['[]', 400, 'INVALID_REQUEST', /"items" array/],
      [JSON.stringify({ items: [] }), 400, 'INVALID_REQUEST', /1 to 1000/],
      [JSON.stringify({ items: Array.from({ length: 1001 }, (_, i) => ({ key: `k${i}`, value: '' })) }), 400, 'INVALID_REQUEST', /1 to 1000/],
      [JSON.stringify({ items: [good, 'x'] }), 400, 'INVALID_REQUEST', /must be an object/],
      [JSON.stringify({ items: [good, { key: '', value: 'x' }] }), 400, 'INVALID_KEY', /non-empty/],
      [JSON.stringify({ items: [good, { key: 'k'.repeat(1025), value: 'x' }] }), 400, 'INVALID_KEY', /limit is 1024/],
      [JSON.stringify({ items: [good, { key: 'k' }] }), 400, 'INVALID_REQUEST', /exactly one of/],
      [JSON.stringify({ items: [good, { key: 'k', value: 'x', valueBase64: 'eA==' }] }), 400, 'INVALID_REQUEST', /exactly one of/],
      [JSON.stringify({ items: [good, { key: 'k', value: 5 }] }), 400, 'INVALID_REQUEST', /exactly one of/],
      [JSON.stringify({ items: [good, { key: 'k', valueBase64: 'not base64!' }] }), 400, 'INVALID_REQUEST', /base64/],
      [JSON.stringify({ items: [good, { key: 'k', value: 'x', contentType: '' }] }), 400, 'INVALID_REQUEST', /contentType/],
      [JSON.stringify({ items: [good, { key: 'k', value: 'v'.repeat(1024 * 1024 + 1) }] }), 413, 'PAYLOAD_TOO_LARGE', /limit/],
    ];
    for (const [body, status, code, message] of cases) {
      const res = await post(body);
      assertErrorShape(res, status, code);
      assert.match(res.json.error, message, body.slice(0, 80));
      if (body.includes('batch/never') && !body.includes('1001')) assert.equal(res.json.item, 1, body.slice(0, 80));
    }
    assertErrorShape(await post(JSON.stringify({ items: [good] }), '?consistency=most'), 400, 'INVALID_REQUEST');
    assertErrorShape(await http('GET', `${gw}/batch`), 405, 'METHOD_NOT_ALLOWED');
    assertErrorShape(await http('GET', kvUrl(gw, 'batch/never')), 404, 'KEY_NOT_FOUND');
  });

  test('client putMany: sends 1000 items per batch, reports each item, refuses a malformed batch whole', async () => {
    const client = new FlexStoreClient({ gateway: gw, ...c.clientTls });
    try {
      const items = Array.from({ length: 1001 }, (_, i) => ({ key: `many/${i}`, value: i % 2 ? `v${i}` : new Uint8Array([i & 0xff, 7]) }));
      const results = await client.putMany(items);
      assert.deepEqual(results.map((r) => [r.key, r.ok]), items.map((i) => [i.key, true]));
      assert.equal(await client.getString('many/999'), 'v999');
      const bin = await client.get('many/1000');
      assert.deepEqual([bin?.value, bin?.contentType], [Buffer.from([1000 & 0xff, 7]), 'application/octet-stream']);
      assert.equal(bin?.version, (results[1000] as { version: string }).version);

      await assert.rejects(
        client.putMany([{ key: 'many/never', value: 'x' }, { key: '', value: 'x' }]),
        (err: unknown) => err instanceof FlexStoreRequestError && err.status === 400 && err.code === 'INVALID_KEY',
      );
      assert.equal(await client.get('many/never'), null);
    } finally {
      await client.close();
    }
  });

  test('unknown routes 404, wrong methods 405, all in the one error shape', async () => {
    assertErrorShape(await http('GET', `${gw}/nope`), 404, 'NOT_FOUND');
    assertErrorShape(await http('POST', `${gw}/kv/somekey`, { body: 'x' }), 405, 'METHOD_NOT_ALLOWED');
    assertErrorShape(await http('PATCH', `${gw}/kv/somekey`, { body: 'x' }), 405, 'METHOD_NOT_ALLOWED');
    assertErrorShape(await http('DELETE', `${gw}/health`), 405, 'METHOD_NOT_ALLOWED');
    assertErrorShape(await http('POST', `${gw}/kv`, { body: 'x' }), 405, 'METHOD_NOT_ALLOWED');
    // A closed cluster answers an unknown member path 401, not 404: it names no route to an outsider.
    const [status, code] = c.opts.secret ? [401, 'UNAUTHORIZED'] : [404, 'NOT_FOUND'];
    assertErrorShape(await http('GET', `${c.registryUrl}/nope`), status, code);
    assertErrorShape(await http('GET', `${c.kvUrl(0)}/nope`), status, code);
  });

  test('health, cluster view and metrics', async () => {
    const health = await http('GET', `${gw}/health`);
    assert.equal(health.status, 200);
    assert.equal(health.json.up, 3);

    const cluster = await http('GET', `${gw}/cluster`);
    assert.equal(cluster.json.members.length, 3);
    const share = cluster.json.members.reduce((s: number, m: { ownership: number }) => s + m.ownership, 0);
    assert.ok(Math.abs(share - 1) < 1e-6);
    for (const m of cluster.json.members) assert.equal(m.state, 'up');

    const metrics = await http('GET', `${gw}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /flexstore_http_requests_total\{route="\/kv\/\*",method="PUT",status="201"\} \d+/);
    assert.match(metrics.text, /flexstore_http_request_duration_seconds_bucket\{.*route="\/kv\/\*"/);
    assert.match(metrics.text, /flexstore_replica_requests_total\{op="put",outcome="ok"\} \d+/);

    const kvHealth = await http('GET', `${c.kvUrl(0)}/health-check`);
    assert.equal(kvHealth.status, 200);
  });

  test('a client cannot write around versioning on a KV server', async () => {
    const res = await http('PUT', `${c.kvUrl(0)}/internal/kv/sneaky`, { body: 'x' });
    assertErrorShape(res, 400, 'INVALID_REQUEST');
    const fake = await http('PUT', `${c.kvUrl(0)}/internal/kv/sneaky`, {
      body: 'x',
      headers: { 'x-flexstore-version': 'not-a-version' },
    });
    assertErrorShape(fake, 400, 'INVALID_REQUEST');
  });

  test('registry rejects bad registrations', async () => {
    const bad = [
      ['not json', { 'content-type': 'application/json' }],
      ['[]', { 'content-type': 'application/json' }],
      ['{}', { 'content-type': 'application/json' }],
      ['{"node_url":"ftp://x"}', { 'content-type': 'application/json' }],
      ['{"node_url":"not a url"}', { 'content-type': 'application/json' }],
    ] as const;
    for (const [body, headers] of bad) {
      assertErrorShape(await http('POST', `${c.registryUrl}/register`, { body, headers }), 400, 'INVALID_REQUEST');
    }
  });
});
