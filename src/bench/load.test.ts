import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it, mock } from 'node:test';
import { runLoad } from './load.js';

/**
 * runLoad against a local server that answers 200 to everything but /gone
 * (404). Date is faked and only the server moves it: 1 ms for each request of
 * the work (/work), 1 s for each request past it. So a duration timed by the
 * last answer of the work is exactly 1 ms per request, and one timed by
 * anything later (autocannon's own end, at its next one-second tick) is
 * seconds longer, whatever the speed of the machine.
 */
describe('runLoad', () => {
  let server: Server;
  let url: string;
  before(async () => {
    server = createServer((req, res) => {
      mock.timers.tick(req.url === '/work' ? 1 : 1000);
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
    mock.timers.enable({ apis: ['Date'], now: 0 });
    after(() => mock.timers.reset());
    const m = await runLoad({
      url,
      // One connection: every answer of the work arrives before the first request past it is sent.
      connections: 1,
      durationSec: 10,
      label: 'test',
      progress: false,
      next: () => {
        const n = i++;
        // Past the work: sent (autocannon cannot skip a slot), answered 200 or 404, left out of the counts.
        if (n >= work) return { spec: { method: 'GET', path: n % 2 ? '/gone' : '/extra' }, overflow: true, exhausted: n === work };
        return { spec: { method: 'GET', path: '/work' } };
      },
    });
    mock.timers.reset();
    assert.equal(m.exhausted, true);
    assert.equal(m.requests, work);
    assert.equal(m.non2xx, 0, 'overflow answers are not counted as failures');
    assert.ok(i > work + 1, 'requests were sent past the work');
    assert.equal(m.durationSec, work / 1000, `duration ${m.durationSec} s`);
    assert.equal(m.rps, 1000);
  });
});
