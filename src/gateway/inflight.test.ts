import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { request } from 'undici';
import { createHttpServer } from '../cluster/http-server.js';
import { waitFor } from '../test/support/process.js';
import { BurstCollector, InflightBudget, declaredBodyBytes, fullGc, installInflightLimit } from './inflight.js';

describe('InflightBudget', () => {
  it('reserves what fits under the cap and refuses what does not', () => {
    const b = new InflightBudget(100);
    assert.equal(b.tryReserve(60), true);
    assert.equal(b.tryReserve(40), true);
    assert.equal(b.bytes, 100);
    assert.equal(b.tryReserve(1), false);
    assert.equal(b.bytes, 100, 'a refusal reserves nothing');
    b.release(40);
    assert.equal(b.tryReserve(41), false);
    assert.equal(b.tryReserve(40), true);
    b.release(60);
    b.release(40);
    assert.equal(b.bytes, 0);
  });

  it('admits one body larger than the cap when nothing else is held', () => {
    const b = new InflightBudget(10);
    assert.equal(b.tryReserve(50), true);
    assert.equal(b.tryReserve(1), false);
    b.release(50);
    assert.equal(b.tryReserve(1), true);
  });

  it('takes zero-byte reservations always and never goes below zero', () => {
    const b = new InflightBudget(1);
    assert.equal(b.tryReserve(1), true);
    assert.equal(b.tryReserve(0), true);
    b.release(5);
    assert.equal(b.bytes, 0);
  });
});

describe('declaredBodyBytes', () => {
  it('is the Content-Length, the body limit for a chunked body, and 0 when nothing will be read', () => {
    assert.equal(declaredBodyBytes('PUT', { 'content-length': '123' }, 1000), 123);
    assert.equal(declaredBodyBytes('POST', { 'transfer-encoding': 'chunked' }, 1000), 1000);
    assert.equal(declaredBodyBytes('PUT', {}, 1000), 0);
    assert.equal(declaredBodyBytes('PUT', { 'content-length': '0' }, 1000), 0);
    assert.equal(declaredBodyBytes('PUT', { 'content-length': '1001' }, 1000), 0, 'refused 413 unread');
    assert.equal(declaredBodyBytes('GET', { 'content-length': '10' }, 1000), 0);
    assert.equal(declaredBodyBytes('HEAD', { 'transfer-encoding': 'chunked' }, 1000), 0);
  });
});

describe('BurstCollector', () => {
  it('collects once after a burst goes quiet, not while bodies keep coming, not after small traffic', async () => {
    let runs = 0;
    const c = new BurstCollector(() => runs++, { minBytes: 100, idleMs: 30 });
    after(() => c.close());
    c.noteAdmitted(50);
    c.noteIdle();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(runs, 0, 'below minBytes');
    c.noteAdmitted(60);
    c.noteIdle();
    c.noteAdmitted(10); // a new body before the quiet period ends
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(runs, 0, 'the burst went on');
    c.noteIdle();
    await waitFor('the collection', () => runs === 1, { timeoutMs: 2000, intervalMs: 5 });
    c.noteIdle();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(runs, 1, 'the count starts again after a collection');
  });
});

describe('fullGc', () => {
  it('gets a collector from V8 without --expose-gc, and it frees unreachable objects', async () => {
    const gc = fullGc();
    assert.equal(typeof gc, 'function');
    const ref = (() => new WeakRef({ big: Buffer.alloc(1024) }))();
    // A WeakRef keeps its target until the current job ends.
    await new Promise((r) => setImmediate(r));
    gc!();
    assert.equal(ref.deref(), undefined);
  });
});

/** A server with the limit on PUT /hold, whose handler waits until release() is called. */
async function heldServer(maxBytes: number) {
  const app = createHttpServer({ logLevel: 'silent', bodyLimit: 1024 * 1024, component: 'inflight-test', requestTimeoutMs: 10_000 });
  const budget = new InflightBudget(maxBytes);
  let refused = 0;
  installInflightLimit(app, { budget, onRefused: () => refused++ });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  const waiting: Array<() => void> = [];
  let handled = 0;
  app.put('/hold', async (req) => {
    handled++;
    await new Promise<void>((resolve) => waiting.push(resolve));
    return { bytes: (req.body as Buffer).length };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  after(() => app.close());
  const port = (app.server.address() as AddressInfo).port;
  return {
    budget,
    url: `http://127.0.0.1:${port}/hold`,
    port,
    refused: () => refused,
    handled: () => handled,
    releaseAll: () => waiting.splice(0).forEach((f) => f()),
  };
}

function rawSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

function closed(s: Socket): Promise<void> {
  return s.destroyed ? Promise.resolve() : new Promise((resolve) => s.once('close', () => resolve()));
}

describe('installInflightLimit', () => {
  it('reserves a body before reading it and refuses what does not fit with 503 OVERLOADED, Retry-After and Connection: close', async () => {
    const srv = await heldServer(1500);
    const first = request(srv.url, { method: 'PUT', body: Buffer.alloc(1000) });
    await waitFor('the first body held', () => srv.handled() === 1 && srv.budget.bytes === 1000);

    const refused = await request(srv.url, { method: 'PUT', body: Buffer.alloc(1000) });
    const body = (await refused.body.json()) as Record<string, unknown>;
    assert.equal(refused.statusCode, 503);
    assert.equal(body.code, 'OVERLOADED');
    assert.equal(body.success, false);
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(refused.headers.connection, 'close');
    assert.equal(srv.refused(), 1);
    assert.equal(srv.handled(), 1, 'the refused request never reached its handler');
    assert.equal(srv.budget.bytes, 1000);

    // A body that fits is still admitted beside the held one.
    const small = request(srv.url, { method: 'PUT', body: Buffer.alloc(400) });
    await waitFor('the small body held', () => srv.handled() === 2 && srv.budget.bytes === 1400);
    srv.releaseAll();
    assert.equal((await first).statusCode, 200);
    assert.equal((await small).statusCode, 200);
    await waitFor('every reservation released', () => srv.budget.bytes === 0);
  });

  it('releases the reservation of a client that goes away before its body is read', async () => {
    const srv = await heldServer(10_000);
    const s = await rawSocket(srv.port);
    s.write('PUT /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n' + 'a'.repeat(100));
    await waitFor('the body reserved', () => srv.budget.bytes === 5000);
    s.destroy();
    await waitFor('the reservation released', () => srv.budget.bytes === 0);
    assert.equal(srv.handled(), 0);
  });

  it('releases the reservation of a client that goes away while its request is handled', async () => {
    const srv = await heldServer(10_000);
    const s = await rawSocket(srv.port);
    s.write('PUT /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n' + 'a'.repeat(300));
    await waitFor('the handler running', () => srv.handled() === 1 && srv.budget.bytes === 300);
    s.destroy();
    await waitFor('the reservation released', () => srv.budget.bytes === 0);
    srv.releaseAll();
  });

  it('releases pipelined requests whose responses never started when the connection goes', async () => {
    const srv = await heldServer(10_000);
    const s = await rawSocket(srv.port);
    const put = (n: number) => `PUT /hold HTTP/1.1\r\nHost: x\r\nContent-Length: ${n}\r\n\r\n${'a'.repeat(n)}`;
    s.write(put(100) + put(200) + put(300));
    await waitFor('three requests held', () => srv.handled() === 3 && srv.budget.bytes === 600);
    s.destroy();
    await closed(s);
    await waitFor('every reservation released', () => srv.budget.bytes === 0);
    srv.releaseAll();
  });

  it('reserves the body limit for a chunked body and releases it once answered', async () => {
    const srv = await heldServer(4 * 1024 * 1024);
    const s = await rawSocket(srv.port);
    s.write('PUT /hold HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    await waitFor('the handler running', () => srv.handled() === 1);
    assert.equal(srv.budget.bytes, 1024 * 1024);
    let answer = '';
    s.on('data', (d) => (answer += d));
    srv.releaseAll();
    await waitFor('the answer', () => answer.includes('"bytes":5'));
    await waitFor('the reservation released', () => srv.budget.bytes === 0);
    s.destroy();
  });

  it('keeps a keep-alive connection usable and its reservations balanced over many requests', async () => {
    const srv = await heldServer(10_000);
    for (let i = 0; i < 15; i++) {
      const res = request(srv.url, { method: 'PUT', body: Buffer.alloc(100) });
      await waitFor('held', () => srv.handled() === i + 1);
      srv.releaseAll();
      assert.equal((await res).statusCode, 200);
      await (await res).body.text();
    }
    await waitFor('every reservation released', () => srv.budget.bytes === 0);
  });
});
