import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { createHttpServer } from '../cluster/http-server.js';
import type { RequestAuth } from '../cluster/security.js';
import { freePort } from '../test/support/index.js';
import { healthProbe } from './health-probe.js';
import { MemberTable } from './members.js';
import { RateLimiter } from './rate-limit.js';
import { registerRegistryRoutes } from './routes.js';

/**
 * The registry's guards at the HTTP layer: the per-address rate limit (and who
 * is exempt from it), the health check of a new url, and id↔url binding as the
 * routes apply it. `x-test-auth` stands in for the cluster-auth hook of
 * createHttpServer: it sets req.clusterAuth before any handler runs.
 */
function makeApp(opts: { rate?: number; burst?: number; probe?: (url: string) => Promise<void> } = {}) {
  const app = createHttpServer({ logLevel: 'silent', bodyLimit: 16 * 1024, component: 'registry-test' });
  app.addHook('onRequest', async (req) => {
    const h = req.headers['x-test-auth'];
    req.clusterAuth = (h === 'member' || h === 'admin' ? h : null) as RequestAuth;
  });
  const table = new MemberTable({ downAfterMs: 1000 });
  const probed: string[] = [];
  const probe = opts.probe ?? (async (url: string) => void probed.push(url));
  registerRegistryRoutes(app, {
    table,
    config: { maxWaitSeconds: 1 },
    persist: async () => {},
    limits: { ratePerSec: opts.rate ?? 1, burst: opts.burst ?? 3 },
    probe,
  });
  after(() => app.close());
  const register = (body: object, auth?: RequestAuth) =>
    app.inject({ method: 'POST', url: '/register', payload: body, headers: auth ? { 'x-test-auth': auth } : {} });
  return { app, table, probed, register };
}

async function loopbackServer(status: number): Promise<string> {
  const server = createServer((_req, res) => res.writeHead(status).end('{}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('RateLimiter', () => {
  it('allows the burst, then one call per 1/rate, and says how long to wait', () => {
    const l = new RateLimiter({ ratePerSec: 10, burst: 2 });
    assert.equal(l.take('a', 0), 0);
    assert.equal(l.take('a', 0), 0);
    assert.equal(l.take('a', 0), 100);
    assert.equal(l.take('b', 0), 0, 'addresses have their own buckets');
    assert.equal(l.take('a', 100), 0);
    assert.ok(l.take('a', 100) > 0);
  });

  it('keeps at most maxAddresses buckets, dropping the least recently used', () => {
    const l = new RateLimiter({ ratePerSec: 1, burst: 1, maxAddresses: 3 });
    for (const a of ['a', 'b', 'c']) l.take(a, 0);
    l.take('a', 0);
    l.take('d', 0);
    assert.equal(l.size, 3);
    assert.ok(l.take('a', 0) > 0, 'a was used recently: its empty bucket is kept');
    assert.equal(l.take('b', 0), 0, 'b was dropped: a full bucket again');
  });

  it('rate 0 turns it off', () => {
    const l = new RateLimiter({ ratePerSec: 0, burst: 0 });
    for (let i = 0; i < 100; i++) assert.equal(l.take('a', 0), 0);
    assert.equal(l.size, 0);
  });
});

describe('registry rate limit', () => {
  it('unauthenticated registrations beyond the burst get 429 RATE_LIMITED with Retry-After, before any table work', async () => {
    const { register, probed, table } = makeApp({ rate: 1, burst: 3 });
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await register({ node_url: `http://127.0.0.1:1/${i}`, id: `bad${i}` })).statusCode);
    assert.deepEqual(codes, [200, 200, 200, 429, 429, 429]);
    const res = await register({ node_url: 'http://127.0.0.1:1/x', id: 'badx' });
    assert.equal(res.json().code, 'RATE_LIMITED');
    assert.equal(res.json().success, false);
    assert.ok(Number(res.headers['retry-after']) >= 1);
    assert.equal(probed.length, 3, 'refused calls dial nothing');
    assert.equal(table.size, 3);
  });

  it('heartbeats of a known member at its own url are never limited; at another url they are', async () => {
    const { register } = makeApp({ rate: 1, burst: 1 });
    assert.equal((await register({ node_url: 'http://127.0.0.1:7001', id: 'real' })).statusCode, 200);
    for (let i = 0; i < 20; i++) {
      assert.equal((await register({ node_url: 'http://127.0.0.1:7001/', id: 'real' })).statusCode, 200, `beat ${i}`);
    }
    const moved = await register({ node_url: 'http://127.0.0.1:7002', id: 'real' });
    assert.equal(moved.statusCode, 429);
  });

  it('authenticated calls (member or admin) are not limited', async () => {
    const { register, app } = makeApp({ rate: 1, burst: 1 });
    for (let i = 0; i < 5; i++) assert.equal((await register({ node_url: `http://127.0.0.1:1/${i}`, id: `m${i}` }, 'member')).statusCode, 200);
    for (let i = 0; i < 3; i++) {
      const res = await app.inject({ method: 'DELETE', url: '/deregister', payload: { id: `m${i}`, force: true }, headers: { 'x-test-auth': 'admin' } });
      assert.equal(res.statusCode, 200);
    }
  });

  it('GET /nodes and /health are never limited', async () => {
    const { register, app } = makeApp({ rate: 1, burst: 1 });
    await register({ node_url: 'http://127.0.0.1:1/a', id: 'a' });
    assert.equal((await register({ node_url: 'http://127.0.0.1:1/b', id: 'b' })).statusCode, 429);
    for (let i = 0; i < 10; i++) {
      assert.equal((await app.inject({ method: 'GET', url: '/nodes' })).statusCode, 200);
      assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    }
  });
});

describe('registry id↔url binding over HTTP', () => {
  it('409 MEMBER_BOUND for a known id at another url or another id at a known url; authenticated with the member down, allowed', async () => {
    const { register, table } = makeApp({ rate: 0 });
    await register({ node_url: 'http://127.0.0.1:7001', id: 'real' });
    const diverted = await register({ node_url: 'http://127.0.0.1:7999', id: 'real' });
    assert.equal(diverted.statusCode, 409);
    assert.equal(diverted.json().code, 'MEMBER_BOUND');
    const stolen = await register({ node_url: 'http://127.0.0.1:7001', id: 'rogue' });
    assert.equal(stolen.statusCode, 409);
    assert.equal(stolen.json().code, 'MEMBER_BOUND');
    assert.equal((await register({ node_url: 'http://127.0.0.1:7001', id: 'rogue' }, 'member')).statusCode, 409, 'the member is up');
    assert.deepEqual(table.view().members.map((m) => [m.id, m.url]), [['real', 'http://127.0.0.1:7001']]);
    table.sweep(Date.now() + 5000);
    assert.equal((await register({ node_url: 'http://127.0.0.1:7999', id: 'real' })).statusCode, 409, 'down but not authenticated');
    assert.equal((await register({ node_url: 'http://127.0.0.1:7999', id: 'real' }, 'member')).statusCode, 200);
    assert.deepEqual(table.view().members.map((m) => [m.id, m.url, m.state]), [['real', 'http://127.0.0.1:7999', 'up']]);
  });
});

describe('health check of a new url', () => {
  it('a url whose /health answers 2xx joins; a closed port or a 500 is refused with 422 MEMBER_UNREACHABLE', async () => {
    const probe = healthProbe(undefined, { timeoutMs: 1000 });
    after(() => probe.close());
    const { register, table } = makeApp({ rate: 0, probe });
    const good = await loopbackServer(200);
    const sick = await loopbackServer(500);
    const closed = `http://127.0.0.1:${await freePort()}`;
    assert.equal((await register({ node_url: good, id: 'good' })).statusCode, 200);
    for (const [url, id] of [[closed, 'closed'], [sick, 'sick']] as const) {
      const res = await register({ node_url: url, id });
      assert.equal(res.statusCode, 422, id);
      assert.equal(res.json().code, 'MEMBER_UNREACHABLE');
      assert.match(res.json().error, /health/);
    }
    assert.deepEqual(table.view().members.map((m) => m.id), ['good']);
  });

  it('a heartbeat of a known member dials nothing', async () => {
    const { register, probed } = makeApp({ rate: 0 });
    await register({ node_url: 'http://127.0.0.1:7001', id: 'a' });
    for (let i = 0; i < 5; i++) await register({ node_url: 'http://127.0.0.1:7001', id: 'a' });
    assert.deepEqual(probed, ['http://127.0.0.1:7001']);
  });

  it('too many checks at once: 503 with Retry-After instead of more sockets', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const probe = healthProbe(undefined, { timeoutMs: 1000, maxInFlight: 1 });
    after(() => probe.close());
    // A member whose health answer is held back keeps the one probe slot busy.
    let arrived!: () => void;
    const dialled = new Promise<void>((r) => (arrived = r));
    const slow = createServer((_req, res) => {
      arrived();
      void gate.then(() => res.writeHead(200).end('{}'));
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    after(() => new Promise<void>((resolve) => slow.close(() => resolve())));
    const slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
    const { register } = makeApp({ rate: 0, probe });
    const first = register({ node_url: slowUrl, id: 'slow' });
    await dialled;
    const busy = await register({ node_url: await loopbackServer(200), id: 'other' });
    assert.equal(busy.statusCode, 503);
    assert.equal(busy.headers['retry-after'], '1');
    release();
    assert.equal((await first).statusCode, 200);
  });
});
