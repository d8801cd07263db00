import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { runLoad } from './load.js';

/** runLoad against a local server that answers 200 to everything but /gone (404). */
describe('runLoad', () => {
  let server: Server;
  let url: string;
  before(async () => {
    server = createServer((req, res) => {
      res.writeHead(req.url === '/gone' ? 404 : 200);
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('times a run that runs out of work by its last answer, not by autocannon\'s next one-second tick', async () => {
    const work = 300;
    let i = 0;
    const m = await runLoad({
      url,
      connections: 4,
      durationSec: 10,
      label: 'test',
      progress: false,
      next: () => {
        const n = i++;
        // Past the work: sent (autocannon cannot skip a slot), answered 200 or 404, left out of the counts.
        if (n >= work) return { spec: { method: 'GET', path: n % 2 ? '/gone' : '/x' }, overflow: true, exhausted: n === work };
        return { spec: { method: 'GET', path: '/x' } };
      },
    });
    assert.equal(m.exhausted, true);
    assert.equal(m.requests, work);
    assert.equal(m.non2xx, 0, 'overflow answers are not counted as failures');
    // 300 local requests take a few tens of milliseconds; autocannon's own
    // duration would say at least one second.
    assert.ok(m.durationSec < 1, `duration ${m.durationSec} s`);
    assert.ok(m.rps > work, `rate ${m.rps} req/s`);
  });
});
