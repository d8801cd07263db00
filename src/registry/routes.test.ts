import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, it, mock } from 'node:test';
import { request } from 'undici';
import { createHttpServer } from '../cluster/http-server.js';
import { MemberTable } from './members.js';
import { registerRegistryRoutes } from './routes.js';
import { startRegistry } from './server.js';
import { tempDirs } from '../test/support/index.js';

function makeApp(opts: { persist?: () => Promise<void> } = {}) {
  const app = createHttpServer({ logLevel: 'silent', bodyLimit: 64 * 1024, component: 'registry-test' });
  let persisted = 0;
  const persist = opts.persist ?? (async () => void persisted++);
  // As in server.ts: the table asks for a write on every membership change.
  const table = new MemberTable({ downAfterMs: 1000, onMembershipChange: () => void persist().catch(() => {}) });
  // No url is dialled here: the health check is the stub (joins.test.ts and health-probe use real servers).
  registerRegistryRoutes(app, { table, config: { maxWaitSeconds: 5 }, persist, probe: async () => {} });
  after(() => app.close());
  return { app, table, persisted: () => persisted };
}

/** A loopback server answering 200 to everything; closed when the file's tests end. */
async function healthyServer(status = 200): Promise<string> {
  const server = createServer((_req, res) => res.writeHead(status).end('{}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const post = (url: string, payload: unknown) => ({ method: 'POST' as const, url, payload: payload as object });

describe('registry routes', () => {
  it('register answers with id, url and index and persists the join', async () => {
    const { app, persisted } = makeApp();
    const res = await app.inject(post('/register', { node_url: 'http://127.0.0.1:8001/', id: 'kv-1' }));
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { success: true, id: 'kv-1', node_url: 'http://127.0.0.1:8001', index: 1 });
    assert.equal(res.headers['x-flexstore-index'], '1');
    assert.equal(persisted(), 1);
    const beat = await app.inject(post('/heartbeat', { node_url: 'http://127.0.0.1:8001', id: 'kv-1' }));
    assert.equal(beat.json().index, 1);
    assert.equal(persisted(), 1, 'a plain heartbeat writes nothing');
  });

  it('register without id derives one from the url', async () => {
    const { app } = makeApp();
    const res = await app.inject(post('/register', { node_url: 'http://127.0.0.1:8001' }));
    assert.equal(res.json().id, 'http___127_0_0_1_8001');
  });

  it('accepts JSON labelled as something else (curl -d)', async () => {
    const { app } = makeApp();
    const res = await app.inject({
      method: 'POST',
      url: '/register',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: '{"node_url":"http://h:1","id":"a"}',
    });
    assert.equal(res.statusCode, 200);
  });

  const bad: Array<[string, { payload: string; type?: string }]> = [
    ['malformed JSON', { payload: '{"node_url":' }],
    ['malformed JSON with another type', { payload: '{"node_url":', type: 'text/plain' }],
    ['empty body', { payload: '' }],
    ['an array', { payload: '[]' }],
    ['a string', { payload: '"http://h:1"' }],
    ['missing node_url', { payload: '{"id":"a"}' }],
    ['node_url not a string', { payload: '{"node_url":5}' }],
    ['node_url not a url', { payload: '{"node_url":"h:1:2"}' }],
    ['node_url not http', { payload: '{"node_url":"ftp://h:1"}' }],
    ['id with a bad character', { payload: '{"node_url":"http://h:1","id":"a/b"}' }],
    ['id too long', { payload: JSON.stringify({ node_url: 'http://h:1', id: 'x'.repeat(65) }) }],
    ['id not a string', { payload: '{"node_url":"http://h:1","id":7}' }],
    ['storage neither ok nor full', { payload: '{"node_url":"http://h:1","storage":"broken"}' }],
    // Spellings the URL parser repairs into http://127.0.0.1:8001: each would be a second member at one address.
    ['node_url missing a slash', { payload: '{"node_url":"http:/127.0.0.1:8001/"}' }],
    ['node_url with spaces around', { payload: '{"node_url":" http://127.0.0.1:8001 "}' }],
    ['node_url with a backslash', { payload: '{"node_url":"http:\\\\127.0.0.1:8001"}' }],
    ['node_url with credentials', { payload: '{"node_url":"http://user:pw@127.0.0.1:8001"}' }],
    ['node_url with a query or fragment', { payload: '{"node_url":"http://127.0.0.1:8001/?q=1#f"}' }],
  ];
  for (const [name, { payload, type }] of bad) {
    it(`register rejects ${name} with 400`, async () => {
      const { app, table } = makeApp();
      const res = await app.inject({
        method: 'POST',
        url: '/register',
        headers: { 'content-type': type ?? 'application/json' },
        payload,
      });
      assert.equal(res.statusCode, 400, res.body);
      const body = res.json();
      assert.equal(body.success, false);
      assert.equal(body.code, 'INVALID_REQUEST');
      assert.equal(typeof body.error, 'string');
      assert.equal(table.size, 0);
    });
  }

  it('a transfer whose syncedEpoch is not finite (1e400) is ignored, not kept as Infinity', async () => {
    const { app } = makeApp();
    const res = await app.inject({
      method: 'POST',
      url: '/register',
      headers: { 'content-type': 'application/json' },
      payload: '{"node_url":"http://127.0.0.1:8000","transfer":{"syncedEpoch":1e400}}',
    });
    assert.equal(res.statusCode, 200, res.body);
    const member = (await app.inject({ method: 'GET', url: '/nodes' })).json().members[0];
    assert.equal(member.transfer, undefined);
  });

  it('GET /nodes lists up urls and all members sorted by id', async () => {
    const { app, table } = makeApp();
    await app.inject(post('/register', { node_url: 'http://h:2', id: 'b' }));
    await app.inject(post('/register', { node_url: 'http://h:1', id: 'a' }));
    await app.inject(post('/register', { node_url: 'http://h:3', id: 'c' }));
    table.register({ url: 'http://h:3', id: 'c' }, 0);
    table.sweep(Date.now() + 2000);
    table.register({ url: 'http://h:1', id: 'a' }, Date.now());
    table.register({ url: 'http://h:2', id: 'b' }, Date.now());
    const res = await app.inject({ method: 'GET', url: '/nodes' });
    const body = res.json();
    assert.deepEqual(body.nodes, ['http://h:1', 'http://h:2']);
    assert.deepEqual(body.members.map((m: { id: string; state: string }) => [m.id, m.state]), [
      ['a', 'up'],
      ['b', 'up'],
      ['c', 'down'],
    ]);
    assert.equal(body.index, table.index);
    assert.equal(res.headers['x-flexstore-index'], String(table.index));
  });

  it('GET /nodes?index blocks until the index changes', async () => {
    const { app, table } = makeApp();
    await app.inject(post('/register', { node_url: 'http://h:1', id: 'a' }));
    // With the timers faked, the watch's 5 s wait cannot run out: only a change can answer it.
    mock.timers.enable({ apis: ['setTimeout'] });
    after(() => mock.timers.reset());
    let answered = false;
    const pending = app.inject({ method: 'GET', url: '/nodes?index=1&wait=5' }).then((r) => {
      answered = true;
      return r;
    });
    const deadline = Date.now() + 2000;
    while (table.waiting === 0 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    assert.equal(table.waiting, 1);
    assert.equal(answered, false);
    await app.inject(post('/register', { node_url: 'http://h:1', id: 'a' }));
    assert.equal(answered, false, 'a plain heartbeat does not wake watchers');
    await app.inject(post('/register', { node_url: 'http://h:2', id: 'b' }));
    const res = await pending;
    mock.timers.reset();
    assert.equal(res.json().index, 2);
    assert.deepEqual(res.json().nodes, ['http://h:1', 'http://h:2']);
  });

  it('a heartbeat reporting storage full or ok again moves the index, and /nodes shows it', async () => {
    const { app, persisted } = makeApp();
    const beat = (storage?: string) =>
      app.inject(post('/heartbeat', { node_url: 'http://h:1', id: 'a', ...(storage !== undefined && { storage }) }));
    await beat('ok');
    const storageOf = async () => (await app.inject({ method: 'GET', url: '/nodes' })).json().members[0].storage;
    assert.equal(await storageOf(), 'ok');
    const written = persisted();
    const indexes = [];
    for (const s of ['full', 'full', 'ok', 'ok']) indexes.push((await beat(s)).json().index);
    assert.deepEqual(indexes, [2, 2, 3, 3], 'one bump per change of state, none for a repeat');
    assert.equal(persisted(), written, 'a storage state is reported, not persisted');
    await beat('full');
    assert.equal(await storageOf(), 'full');
    // A server that reports nothing (an older release) is taken as ok: absent.
    await beat();
    assert.equal(await storageOf(), undefined);
  });

  it('GET /nodes?index answers at once when the index is behind or ahead', async () => {
    const { app } = makeApp();
    await app.inject(post('/register', { node_url: 'http://h:1', id: 'a' }));
    // With the timers faked, a watch that waited would never be answered.
    mock.timers.enable({ apis: ['setTimeout'] });
    after(() => mock.timers.reset());
    for (const index of [0, 99]) {
      const res = await app.inject({ method: 'GET', url: `/nodes?index=${index}&wait=5` });
      assert.equal(res.statusCode, 200);
      assert.equal(res.json().index, 1);
    }
    mock.timers.reset();
  });

  it('GET /nodes?index times out after wait and returns the current view', async () => {
    const { app } = makeApp();
    const start = Date.now();
    const res = await app.inject({ method: 'GET', url: '/nodes?index=0&wait=0.2' });
    assert.ok(Date.now() - start >= 190);
    assert.equal(res.json().index, 0);
  });

  for (const qs of ['index=-1', 'index=1.5', 'index=abc', 'index=1&wait=-1', 'index=1&wait=x', 'index=1&index=2']) {
    it(`GET /nodes?${qs} is 400`, async () => {
      const { app } = makeApp();
      const res = await app.inject({ method: 'GET', url: `/nodes?${qs}` });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().code, 'INVALID_REQUEST');
    });
  }

  it('deregister by url or id (DELETE or POST); unknown is 404', async () => {
    const { app, table, persisted } = makeApp();
    await app.inject(post('/register', { node_url: 'http://h:1', id: 'a' }));
    await app.inject(post('/register', { node_url: 'http://h:2', id: 'b' }));
    // b is still joining: it leaves at once. a, the only owner, has nobody to hand off to.
    const byUrl = await app.inject({ method: 'DELETE', url: '/deregister', payload: { node_url: 'http://h:2' } });
    assert.equal(byUrl.statusCode, 200);
    assert.deepEqual(byUrl.json(), { success: true, id: 'b', index: 3, phase: 'removed' });
    const byId = await app.inject(post('/deregister', { id: 'a' }));
    assert.deepEqual(byId.json(), { success: true, id: 'a', index: 4, phase: 'removed' });
    assert.equal(table.size, 0);
    // Each join and removal asks for a write; a deregistration also waits for one.
    assert.equal(persisted(), 6);
    const missing = await app.inject({ method: 'DELETE', url: '/deregister', payload: { id: 'b' } });
    // (a removed id stays unknown to deregister)
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().code, 'NOT_FOUND');
    const neither = await app.inject(post('/deregister', {}));
    assert.equal(neither.statusCode, 400);
  });

  it('deregister reports a failed write as 500', async () => {
    const { app } = makeApp({ persist: async () => Promise.reject(new Error('disk full')) });
    await app.inject(post('/register', { node_url: 'http://h:1', id: 'a' }));
    const res = await app.inject(post('/deregister', { id: 'a' }));
    assert.equal(res.statusCode, 500);
    assert.equal(res.json().code, 'INTERNAL');
  });

  it('GET /health counts members', async () => {
    const { app } = makeApp();
    await app.inject(post('/register', { node_url: 'http://h:1', id: 'a' }));
    const res = await app.inject({ method: 'GET', url: '/health' });
    assert.deepEqual(res.json(), { status: 'ok', members: 1, up: 1, index: 1 });
  });

  for (const [method, url] of [
    ['GET', '/register'],
    ['PUT', '/heartbeat'],
    ['GET', '/deregister'],
    ['POST', '/nodes'],
    ['DELETE', '/health'],
  ] as const) {
    it(`${method} ${url} is 405`, async () => {
      const { app } = makeApp();
      const res = await app.inject({ method, url });
      assert.equal(res.statusCode, 405);
      assert.equal(res.json().code, 'METHOD_NOT_ALLOWED');
      assert.ok(res.headers.allow);
    });
  }
});

describe('startRegistry', () => {
  const tempDir = tempDirs('flexstore-registry-');

  it('persists members, reloads them down, and close answers blocked watches', async () => {
    const dataDir = tempDir();
    const reg = await startRegistry({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' });
    after(() => reg.close());
    assert.equal(reg.url, `http://127.0.0.1:${reg.port}`);
    // The registry checks a new url's /health before it joins: a tiny member on loopback answers it.
    const member = await healthyServer();
    const res = await request(`${reg.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ node_url: member, id: 'a' }),
    });
    const { index } = (await res.body.json()) as { index: number };

    const waitSeconds = 30;
    const watch = request(`${reg.url}/nodes?index=${index}&wait=${waitSeconds}`);
    const deadline = Date.now() + 2000;
    let file = '';
    while (Date.now() < deadline) {
      file = await readFile(join(dataDir, 'members.json'), 'utf8').catch(() => '');
      if (file.includes('"a"')) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.match(file, /"id": "a"/);
    // A request answered after the watch was sent means the server has read the watch too.
    await (await request(`${reg.url}/health`)).body.dump();
    const start = Date.now();
    await reg.close();
    await reg.close();
    const answer = await watch;
    assert.equal(answer.statusCode, 200);
    await answer.body.dump();
    // Left alone the watch would be answered after waitSeconds; in a fraction
    // of that, only close can have answered it.
    assert.ok(Date.now() - start < (waitSeconds * 1000) / 4, `took ${Date.now() - start} ms`);

    const again = await startRegistry({ port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' });
    after(() => again.close());
    const view = (await (await request(`${again.url}/nodes`)).body.json()) as {
      members: Array<{ id: string; state: string }>;
      nodes: string[];
      index: number;
    };
    assert.deepEqual(view.members.map((m) => [m.id, m.state]), [['a', 'down']]);
    assert.deepEqual(view.nodes, []);
    assert.ok(view.index > index);
  });

  it('a corrupt member file fails start-up', async () => {
    const dataDir = tempDir();
    await writeFile(join(dataDir, 'members.json'), 'not json');
    await assert.rejects(startRegistry({ port: 0, dataDir, logLevel: 'silent' }), /members\.json is corrupt/);
  });

  it('an invalid config fails start-up', async () => {
    await assert.rejects(startRegistry({ port: -1, dataDir: tempDir(), logLevel: 'silent' }), /invalid registry config: port/);
  });
});
