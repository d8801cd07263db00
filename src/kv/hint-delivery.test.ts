import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { HybridClock } from '../cluster/hlc.js';
import { HttpReplicaTransport } from '../cluster/http-transport.js';
import type { MemberView, ReplicaRecord, RunningServer } from '../cluster/types.js';
import type { KvConfig } from './config.js';
import { startRegistry } from '../registry/server.js';
import { waitFor } from '../test/support/process.js';
import { startKvServer, type RunningKvServer } from './server.js';
import { RepairClient } from './repair-client.js';

/**
 * Hinted hand-off between real KV servers: while B is down, A takes writes
 * and hints for B; when B comes back on the same data dir and port, A
 * delivers the writes. B runs without anti-entropy on its return, so only
 * hint delivery can have brought it the keys.
 */

const root = mkdtempSync(join(tmpdir(), 'flexstore-hints-'));
const transport = new HttpReplicaTransport({ timeoutMs: 5000 });
const sync = new RepairClient({ timeoutMs: 5000 });
const clock = new HybridClock('hinttest');
let registry: RunningServer;
let a: RunningKvServer;
let b: RunningKvServer | null = null;

const base = (): Partial<KvConfig> => ({
  host: '127.0.0.1',
  registryUrl: registry.url,
  heartbeatIntervalMs: 100,
  replicationFactor: 2,
  logLevel: 'silent',
});

async function view(): Promise<MemberView> {
  return (await (await request(`${registry.url}/nodes`)).body.json()) as MemberView;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await request(`${url}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

before(async () => {
  registry = await startRegistry({
    port: 0,
    host: '127.0.0.1',
    dataDir: join(root, 'registry'),
    downAfterMs: 500,
    sweepIntervalMs: 100,
    logLevel: 'silent',
  });
  // A never runs anti-entropy; B does only for its first start, to join.
  a = await startKvServer({ ...base(), port: 0, dataDir: join(root, 'a'), antiEntropyIntervalMs: 0 });
  b = await startKvServer({ ...base(), port: 0, dataDir: join(root, 'b'), antiEntropyIntervalMs: 3_600_000 });
});

after(async () => {
  await b?.close();
  await a?.close();
  await registry?.close();
  await Promise.all([transport.close(), sync.close()]);
  rmSync(root, { recursive: true, force: true });
});

test('hints stored while a replica is down are delivered when it returns', async () => {
  await waitFor('both members active', async () => {
    const v = await view();
    return v.members.length === 2 && v.members.every((m) => m.state === 'up' && (m.phase ?? 'active') === 'active');
  }, { timeoutMs: 20_000 });
  const bId = b!.id;
  const bPort = b!.port;
  await b!.close();
  b = null;
  await waitFor('B marked down', async () => (await view()).members.find((m) => m.id === bId)?.state === 'down');

  // The writes B missed: taken by A, each hinted for B, as a gateway would.
  const written = new Map<string, ReplicaRecord>();
  for (let i = 0; i < 300; i++) {
    const r: ReplicaRecord = {
      value: Buffer.from(`missed ${i}`),
      version: clock.next(),
      tombstone: i % 50 === 0,
      contentType: 'text/plain',
    };
    if (r.tombstone) r.value = Buffer.alloc(0);
    written.set(`hinted/${i}`, r);
    await transport.put(a.url, `hinted/${i}`, r);
  }
  const keys = [...written.keys()];
  // JSON and MessagePack bodies are both accepted.
  const res = await request(`${a.url}/internal/hints`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ target: bId, keys: keys.slice(0, 100) }),
  });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(await res.body.json(), { stored: 100 });
  assert.equal(await sync.hints(a.url, bId, keys.slice(100)), 200);
  assert.equal(a.progress().hintsPending, 300);
  assert.equal(await metric(a.url, 'flexstore_hints_stored_total'), 300);

  // Nothing is delivered while B is down: two more rounds of A's delivery
  // loop complete (so at least one looked at B's hints from start to end)
  // and every hint is still pending.
  const rounds = await metric(a.url, 'flexstore_hint_delivery_rounds_total');
  await waitFor('two more delivery rounds', async () => (await metric(a.url, 'flexstore_hint_delivery_rounds_total')) >= rounds + 2);
  assert.equal(a.progress().hintsPending, 300);

  b = await startKvServer({ ...base(), port: bPort, dataDir: join(root, 'b'), antiEntropyIntervalMs: 0 });
  assert.equal(b.id, bId);
  await waitFor('A delivered every hint', () => a.progress().hintsPending === 0, { timeoutMs: 20_000 });
  for (const [key, r] of written) {
    const got = await transport.get(b.url, key);
    assert.equal(got?.version, r.version, key);
    assert.equal(got?.tombstone, r.tombstone, key);
  }
  assert.equal(b.progress().keysMovedTotal, 0, 'B pulled nothing itself: the hints did it');
  assert.equal(await metric(a.url, 'flexstore_hints_delivered_total'), 300);
  assert.equal(await metric(a.url, 'flexstore_hints_pending'), 0);
});

test('hints for a server that is not a member are dropped', async () => {
  await sync.hints(a.url, 'kv-gone', ['hinted/1']);
  await waitFor('hints for a non-member dropped', () => a.progress().hintsPending === 0);
});
