import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import type { RegistryConfig } from '../registry/config.js';
import { startRegistry } from '../registry/server.js';
import { RegistryError } from './errors.js';
import { Heartbeater, MembershipWatcher, RegistryClient } from './registry-client.js';
import type { MemberView, RunningServer } from './types.js';
import { tempDirs } from '../test/support/index.js';

const tempDir = tempDirs('flexstore-registry-client-');

// The registry checks a new member's <url>/health before it joins: one loopback
// server answers for every member url of this file (they differ by path).
const healthy = createServer((_req, res) => res.writeHead(200).end('{}'));
await new Promise<void>((resolve) => healthy.listen(0, '127.0.0.1', resolve));
after(() => new Promise<void>((resolve) => healthy.close(() => resolve())));
const M = (n: number): string => `http://127.0.0.1:${(healthy.address() as AddressInfo).port}/kv${n}`;

const FAST: Partial<RegistryConfig> = { host: '127.0.0.1', downAfterMs: 300, sweepIntervalMs: 50, logLevel: 'silent' };

async function registry(cfg: Partial<RegistryConfig> = {}): Promise<RunningServer> {
  const reg = await startRegistry({ port: 0, dataDir: tempDir(), ...FAST, ...cfg });
  after(() => reg.close());
  return reg;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function client(url: string): RegistryClient {
  const c = new RegistryClient(url, { timeoutMs: 1000 });
  after(() => c.close());
  return c;
}

const stateOf = (v: MemberView, id: string) => v.members.find((m) => m.id === id)?.state;

function recordingLog() {
  const lines: Array<{ level: 'info' | 'warn'; msg: string }> = [];
  const log = {
    info: (o: object | string, m?: string) => lines.push({ level: 'info', msg: m ?? String(o) }),
    warn: (o: object | string, m?: string) => lines.push({ level: 'warn', msg: m ?? String(o) }),
  };
  return { lines, log };
}

describe('RegistryClient', () => {
  it('register, nodes and deregister', async () => {
    const reg = await registry();
    const c = client(reg.url);
    const { index } = await c.register({ id: 'kv-1', node_url: M(1) });
    assert.equal(index, 1);
    const view = await c.nodes();
    assert.deepEqual(view.nodes, [M(1)]);
    await c.deregister({ id: 'kv-1' });
    assert.deepEqual((await c.nodes()).members, []);
  });

  it('non-2xx answers reject with the status and the server message', async () => {
    const reg = await registry();
    const c = client(reg.url);
    await assert.rejects(c.register({ id: 'bad id', node_url: 'http://h:1' }), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.status, 400);
      assert.equal(err.code, 'INVALID_REQUEST');
      assert.match(err.message, /"id" must be/);
      return true;
    });
    await assert.rejects(c.deregister({ node_url: 'http://nobody:1' }), { status: 404 });
  });

  it('an unreachable registry rejects without a status', async () => {
    const reg = await registry();
    await reg.close();
    const c = client(reg.url);
    await assert.rejects(c.nodes(), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.status, undefined);
      assert.match(err.message, /unreachable/);
      return true;
    });
  });
});

describe('Heartbeater', () => {
  it('keeps a member up; when it stops the member goes down within downAfterMs + sweep', async () => {
    const reg = await registry();
    const c = client(reg.url);
    const hb = new Heartbeater({ registryUrl: reg.url, id: 'kv-1', url: M(1), intervalMs: 50 });
    after(() => hb.stop());
    hb.start();
    await waitFor('registration', () => hb.registered);
    await waitFor('kv-1 up', async () => stateOf(await c.nodes(), 'kv-1') === 'up');

    // Heartbeats keep it up for several downAfterMs periods, measured on the
    // registry's own clock (the lastHeartbeat it records), not on ours.
    const { downAfterMs, sweepIntervalMs } = FAST as { downAfterMs: number; sweepIntervalMs: number };
    const first = await c.nodes();
    const index = first.index;
    const firstBeat = first.members.find((m) => m.id === 'kv-1')!.lastHeartbeat;
    await waitFor(
      'three downAfterMs periods of heartbeats',
      async () => {
        const m = (await c.nodes()).members.find((x) => x.id === 'kv-1')!;
        assert.equal(m.state, 'up');
        return m.lastHeartbeat - firstBeat >= 3 * downAfterMs;
      },
      20 * downAfterMs,
    );
    assert.equal((await c.nodes()).index, index, 'heartbeats alone do not move the index');

    await hb.stop();
    const lastBeat = (await c.nodes()).members.find((m) => m.id === 'kv-1')!.lastHeartbeat;
    await waitFor('kv-1 down', async () => stateOf(await c.nodes(), 'kv-1') === 'down', 20 * downAfterMs);
    const silentFor = Date.now() - lastBeat;
    // Not before downAfterMs of silence; and within one more sweep of it, plus
    // another downAfterMs of allowance for late timers and this poll on a
    // loaded machine. A registry that missed the expiry would take far longer.
    assert.ok(silentFor > downAfterMs, `went down after ${silentFor} ms of silence`);
    assert.ok(silentFor < 2 * downAfterMs + sweepIntervalMs, `went down after ${silentFor} ms of silence`);
    assert.deepEqual((await c.nodes()).nodes, []);
  });

  it('warns once while the registry is away and says so when it is back', async () => {
    const reg = await registry();
    const port = reg.port;
    const dataDir = tempDir();
    await reg.close();
    const { lines, log } = recordingLog();
    // report() runs at the start of every beat, so it counts them.
    let beats = 0;
    const report = () => (beats++, {});
    const hb = new Heartbeater({ registryUrl: reg.url, id: 'kv-1', url: M(1), intervalMs: 30, log, report });
    after(() => hb.stop());
    hb.start();
    await waitFor('a warning', () => lines.some((l) => l.level === 'warn'));
    // The next beat starts only after the previous one has ended: once beat
    // 5 has started, four failed beats have had their chance to warn again.
    await waitFor('four failed beats', () => beats >= 5);
    assert.equal(lines.filter((l) => l.level === 'warn').length, 1);
    assert.equal(hb.registered, false);

    await registry({ port, dataDir });
    await waitFor('re-registration', () => hb.registered);
    assert.equal(lines.at(-1)?.level, 'info');
    assert.equal(lines.filter((l) => l.level === 'warn').length, 1);
  });
});

describe('MembershipWatcher', () => {
  it('wakes up quickly on a change', async () => {
    const reg = await registry();
    const c = client(reg.url);
    const waitSeconds = 30;
    const w = new MembershipWatcher({ registryUrl: reg.url, waitSeconds });
    after(() => w.stop());
    const views: MemberView[] = [];
    w.on('change', (v: MemberView) => views.push(v));
    await w.start();
    assert.equal(w.view?.index, 0);
    await waitFor('the first view', () => views.length === 1);

    const start = Date.now();
    await c.register({ id: 'kv-1', node_url: M(1) });
    // Its long poll would otherwise end only after waitSeconds: seeing the
    // change in a fraction of that means the registry woke the poll.
    const wokenWithinMs = (waitSeconds * 1000) / 4;
    await waitFor('the watcher to see kv-1', () => w.view?.nodes.includes(M(1)) === true, wokenWithinMs);
    assert.ok(Date.now() - start < wokenWithinMs, `took ${Date.now() - start} ms`);
    assert.equal(views.length, 2);

    await c.deregister({ node_url: M(1) });
    await waitFor('the watcher to see the removal', () => w.view?.members.length === 0);
    assert.equal(views.length, 3);
  });

  it('start resolves after initialTimeoutMs while the registry is down', async () => {
    const reg = await registry();
    await reg.close();
    const w = new MembershipWatcher({ registryUrl: reg.url, initialTimeoutMs: 200 });
    after(() => w.stop());
    const start = Date.now();
    await w.start();
    assert.ok(Date.now() - start >= 190);
    assert.equal(w.view, null);
  });

  it('survives a registry restart on the same data dir and port', async () => {
    const dataDir = tempDir();
    const first = await startRegistry({ port: 0, dataDir, ...FAST });
    after(() => first.close());
    const port = first.port;
    const { lines, log } = recordingLog();
    // Every member reports every epoch synced, so joins complete at once and a flap is no membership change.
    const synced = { transfer: { syncedEpoch: Number.MAX_SAFE_INTEGER } };
    const hbs = ['kv-1', 'kv-2'].map(
      (id, i) => new Heartbeater({ registryUrl: first.url, id, url: M(1 + i), intervalMs: 50, report: () => synced }),
    );
    for (const hb of hbs) {
      after(() => hb.stop());
      hb.start();
    }
    const w = new MembershipWatcher({ registryUrl: first.url, waitSeconds: 30, log });
    after(() => w.stop());
    await w.start();
    await waitFor('both members up', () => w.view?.nodes.length === 2);

    // A member that flaps moves the index without a write to the member file,
    // so the restarted registry counts from below what the watcher last saw.
    const c1 = client(first.url);
    for (let i = 0; i < 3; i++) {
      await c1.register({ id: 'kv-x', node_url: M(9), ...synced });
      await waitFor('kv-x up', () => w.view !== null && stateOf(w.view, 'kv-x') === 'up');
      await waitFor('kv-x down', () => w.view !== null && stateOf(w.view, 'kv-x') === 'down');
    }
    const lastIndex = w.view!.index;

    await first.close();
    await waitFor('the watcher to notice', () => lines.some((l) => l.level === 'warn'));
    assert.equal(w.view?.nodes.length, 2, 'the last view is kept while the registry is away');

    const second = await startRegistry({ port, dataDir, ...FAST });
    after(() => second.close());
    await waitFor('the members again', () => w.view?.nodes.length === 2 && w.view.index !== lastIndex, 5000);
    assert.deepEqual(w.view!.members.map((m) => [m.id, m.state]), [
      ['kv-1', 'up'],
      ['kv-2', 'up'],
      ['kv-x', 'down'],
    ]);
    assert.ok(w.view!.index < lastIndex, `index ${w.view!.index} should restart below ${lastIndex}`);
    assert.equal(lines.at(-1)?.level, 'info');

    // The watch keeps following the new incarnation, whatever its index.
    const c = client(second.url);
    await hbs[1]!.stop();
    await c.deregister({ id: 'kv-2' });
    await waitFor('the removal', () => w.view?.members.length === 2, 2000);
  });
});
