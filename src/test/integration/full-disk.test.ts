import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestCluster, http, kvUrl, runCli, version, waitFor } from '../support/index.js';

/**
 * A full disk under a real cluster: three KV servers (N=3, quorum writes),
 * one of them with its data dir on a small tmpfs this test mounts. A ballast
 * file leaves it little room; 100 KB writes through the gateway fill it.
 * The full server must stay up, refuse writes (507 STORAGE_FULL) while the
 * gateway still acknowledges every write at quorum, serve reads, and report
 * `storage: "full"` (registry, gateway /cluster and /metrics, its own
 * /metrics, `flexstore status`). Deleting the ballast must bring it back by
 * itself within a few probe intervals, and every acknowledged write must
 * then be on every replica, byte for byte.
 *
 * A last case drives every storage write path (replica put, peer apply,
 * streamed inserts, hints, the tombstone purge) into a full tmpfs, in a
 * child process (full-disk-storage.ts). Mounting needs root (the tests run as root); where it is not
 * allowed every case is skipped, saying why.
 */

const VALUE_BYTES = 100_000;
/** What the ballast leaves free on the KV server's tmpfs: room for a handful of writes. */
const ROOM_BYTES = 1024 * 1024;
const PROBE_MS = 500;
/** Drives a Storage into a full disk in a process of its own (see the script for why). */
const STORAGE_SCRIPT = fileURLToPath(new URL('./full-disk-storage.js', import.meta.url));

function mountTmpfs(dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
}

function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    // Not mounted (mounting failed, or already gone).
  }
}

/** Fills the file system of dir but for `room` bytes. */
function writeBallast(file: string, room: number): void {
  const { bavail, bsize } = statfsSync(path.dirname(file));
  writeFileSync(file, Buffer.alloc(Math.max(0, bavail * bsize - room)));
}

function mountError(): string | null {
  const probe = path.join(tmpdir(), `flexstore-mount-probe-${process.pid}`);
  try {
    mountTmpfs(probe, '1m');
    return null;
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    return (e.stderr?.toString().trim() || e.message).split('\n')[0]!;
  } finally {
    unmount(probe);
    rmSync(probe, { recursive: true, force: true });
  }
}

const cannotMount = mountError();

/** Sum of a metric's samples (every label set) in a Prometheus text answer. */
function metric(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}${labels} `) || (labels === '' && line.startsWith(`${name}{`))) sum += Number(line.split(' ').pop());
  }
  return sum;
}

describe('a KV server whose disk fills up', () => {
  let dir: string;
  let mnt: string;
  let ballast: string;
  let c: TestCluster;
  let full: number;
  let fullId: string;
  let fullPid: number;
  /** Every write the gateway acknowledged: key → value. */
  const acked = new Map<string, Buffer>();
  /** Keys written while the full server refused writes. */
  const whileFull: string[] = [];

  const kvMember = (i: number) => `${c.kvUrl(i)}/internal/kv/`;
  const clusterMember = async () => {
    const res = await http('GET', `${c.gatewayUrl}/cluster`);
    return (res.json.members as Array<{ id: string; storage: string; suspect: boolean }>).find((m) => m.id === fullId)!;
  };
  const put = async (key: string) => {
    const value = randomBytes(VALUE_BYTES);
    const res = await http('PUT', kvUrl(c.gatewayUrl, key), { body: value, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(res.status, 201, `PUT ${key}: ${res.text}`);
    acked.set(key, value);
    return res;
  };

  before(async () => {
    if (cannotMount) return;
    dir = await mkdtemp(path.join(tmpdir(), 'flexstore-full-disk-'));
    mnt = path.join(dir, 'kv-full');
    mountTmpfs(mnt, '8m');
    ballast = path.join(mnt, 'ballast');
    // One cluster start: the last KV server's data dir is the tmpfs (its later --data-dir wins).
    c = await TestCluster.start({ kvCount: 3, kvOptions: [{}, {}, { args: ['--data-dir', mnt, '--storage-probe-ms', String(PROBE_MS)] }] });
    full = 2;
    fullId = (await http('GET', `${c.kvUrl(full)}/health`)).json.id;
    fullPid = c.kvs[full]!.proc.pid;
  });

  after(async () => {
    await c?.stop();
    if (mnt) unmount(mnt);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('refuses writes once full while the cluster keeps acknowledging them, and keeps serving reads', async (t) => {
    if (cannotMount) return t.skip(`cannot mount tmpfs here: ${cannotMount}`);
    writeBallast(ballast, ROOM_BYTES);
    let i = 0;
    for (; (await http('GET', `${c.kvUrl(full)}/health`)).json.storage !== 'full'; i++) {
      assert.ok(i < 60, `no STORAGE_FULL after ${i} writes of ${VALUE_BYTES} bytes into ${ROOM_BYTES} bytes of room`);
      await put(`filling/${String(i).padStart(3, '0')}`);
    }
    assert.ok(i >= 2, `full after ${i} writes: the ballast left too little room to see any write land`);

    const kvMetrics = (await http('GET', `${c.kvUrl(full)}/metrics`)).text;
    assert.equal(metric(kvMetrics, 'flexstore_storage_full'), 1);
    const refusedBefore = metric(kvMetrics, 'flexstore_storage_writes_refused_total');

    for (let j = 0; j < 4; j++) {
      const key = `while-full/${j}`;
      const res = await put(key);
      whileFull.push(key);
      assert.ok(!String(res.headers['x-flexstore-replicas']).split(',').includes(fullId), `the full server took ${key}`);
    }
    await waitFor('the full server counts the writes it refused', async () =>
      metric((await http('GET', `${c.kvUrl(full)}/metrics`)).text, 'flexstore_storage_writes_refused_total') >= refusedBefore + whileFull.length,
    );
    // The gateway saw the refusals (its error counter) and still does not
    // take the server for a failed one: it serves reads.
    await waitFor('the gateway counts the refusals', async () =>
      metric((await http('GET', `${c.gatewayUrl}/metrics`)).text, 'flexstore_replica_errors_total', `{op="put",node="${fullId}"}`) >= whileFull.length,
    );
    assert.equal((await clusterMember()).suspect, false, 'a full server is not suspect');

    // Refused directly too, and nothing of the refused write is stored.
    const direct = await http('PUT', `${kvMember(full)}direct`, {
      body: 'x',
      headers: { 'x-flexstore-version': version(Date.now()), 'content-type': 'text/plain' },
    });
    assert.equal(direct.status, 507, direct.text);
    assert.equal(direct.json.code, 'STORAGE_FULL');
    assert.equal((await http('GET', `${kvMember(full)}direct`)).status, 404);

    // Reads: what it holds it serves, and it never got the later writes.
    const first = (await http('GET', `${kvMember(full)}${encodeURIComponent('filling/000')}`));
    assert.equal(first.status, 200);
    assert.ok(first.body.equals(acked.get('filling/000')!));
    assert.equal((await http('GET', `${kvMember(full)}${encodeURIComponent(whileFull[0]!)}`)).status, 404);
    const health = (await http('GET', `${c.kvUrl(full)}/health`)).json;
    assert.equal(health.storage, 'full');

    // Seen from outside: registry, gateway /cluster and /metrics, the CLI.
    await waitFor('the registry reports the storage full', async () => {
      const nodes = (await http('GET', `${c.registryUrl}/nodes`)).json;
      return nodes.members.find((m: { id: string }) => m.id === fullId)?.storage === 'full';
    });
    await waitFor('/cluster shows the storage full', async () => (await clusterMember()).storage === 'full');
    const gwMetrics = (await http('GET', `${c.gatewayUrl}/metrics`)).text;
    assert.equal(metric(gwMetrics, 'flexstore_members', '{state="storage_full"}'), 1);
    assert.equal(metric(gwMetrics, 'flexstore_members', '{state="up"}'), 3);
    const status = await runCli(['status', '--gateway', c.gatewayUrl]);
    assert.equal(status.code, 0, status.stderr);
    const row = status.stdout.split('\n').find((l) => l.startsWith(fullId));
    assert.match(row ?? '', /up, storage full/, status.stdout);
    assert.match(status.stdout, new RegExp(`warning: storage full on ${fullId}`));

    assert.ok(c.kvs[full]!.proc.running, `the KV server exited:\n${c.kvs[full]!.proc.logs()}`);
  });

  test('takes writes again by itself once space is freed, and catches up: nothing acknowledged is lost', async (t) => {
    if (cannotMount) return t.skip(`cannot mount tmpfs here: ${cannotMount}`);
    const freed = Date.now();
    rmSync(ballast);
    await waitFor('the server takes writes again', async () => (await http('GET', `${c.kvUrl(full)}/health`)).json.storage === 'ok', {
      timeoutMs: 10 * PROBE_MS,
    });
    const recoveredMs = Date.now() - freed;
    assert.ok(recoveredMs < 6 * PROBE_MS, `took ${recoveredMs} ms to notice the free space (probe every ${PROBE_MS} ms)`);
    await waitFor('/cluster shows the storage ok', async () => (await clusterMember()).storage === 'ok');
    assert.equal(metric((await http('GET', `${c.kvUrl(full)}/metrics`)).text, 'flexstore_storage_full'), 0);
    assert.equal(metric((await http('GET', `${c.gatewayUrl}/metrics`)).text, 'flexstore_members', '{state="storage_full"}'), 0);

    // The writes it refused (those while full, and the one whose commit
    // failed) arrive by hinted hand-off or anti-entropy.
    await waitFor('every acknowledged write reaches the recovered server', async () => {
      for (const key of acked.keys()) {
        const res = await http('GET', `${kvMember(full)}${encodeURIComponent(key)}`);
        if (res.status !== 200) return false;
      }
      return true;
    });

    // A write at consistency=all needs every replica, the recovered one too.
    const res = await http('PUT', kvUrl(c.gatewayUrl, 'after-recovery', 'consistency=all'), { body: 'back' });
    assert.equal(res.status, 201, res.text);
    assert.ok(String(res.headers['x-flexstore-replicas']).split(',').includes(fullId));

    // Every acknowledged write, on every replica, byte for byte.
    for (const [key, value] of acked) {
      for (let i = 0; i < c.kvs.length; i++) {
        const got = await http('GET', `${kvMember(i)}${encodeURIComponent(key)}`);
        assert.equal(got.status, 200, `${key} on kv${i}: ${got.text.slice(0, 200)}`);
        assert.ok(got.body.equals(value), `${key} on kv${i} differs from what was acknowledged`);
      }
    }
    assert.ok(c.kvs[full]!.proc.running && c.kvs[full]!.proc.pid === fullPid, 'the KV server was restarted or exited');
  });

  test('every storage write path on a full disk: refused up front, counted, nothing committed lost', async (t) => {
    if (cannotMount) return t.skip(`cannot mount tmpfs here: ${cannotMount}`);
    const sdir = path.join(dir, 'storage');
    mountTmpfs(sdir, '2m');
    let out: string;
    try {
      // lmdb-js prints each failed commit's error on stderr: kept out of the test's output.
      out = execFileSync(process.execPath, [STORAGE_SCRIPT, sdir], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
    } finally {
      unmount(sdir);
    }
    const r = JSON.parse(out);
    assert.equal(r.fill, 'STORAGE_FULL', out);
    assert.ok(r.stored >= 2, `full after ${r.stored} writes`);
    assert.equal(r.stateWhenFull, 'full');
    assert.deepEqual(r.whileFull, {
      put: 'STORAGE_FULL',
      putMany: 'STORAGE_FULL',
      insertMany: 'STORAGE_FULL',
      hintsAdd: 'STORAGE_FULL',
      hintsRemove: 'STORAGE_FULL',
      purge: 'STORAGE_FULL',
    });
    // The first refusal is the write whose commit failed; the others never reached LMDB.
    assert.deepEqual(r.refused, ['replica_http', 'replica_tcp', 'sync_apply', 'sync_stream', 'hints', 'hints', 'purge']);
    assert.equal(r.readWhileFull, true, 'reads go on');
    assert.equal(r.hintsWhileFull, 1);
    assert.ok(r.recoveredMs < 1000, `${r.recoveredMs} ms to notice the free space (probe every 100 ms)`);
    assert.deepEqual(r.afterRecovery, { put: 'ok', purged: 1 });
    assert.deepEqual(r.lost, [], 'records committed before the disk filled are intact');
    assert.deepEqual(r.states, ['full', 'ok']);
  });
});
