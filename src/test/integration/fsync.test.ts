import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { HybridClock } from '../../cluster/hlc.js';
import { HttpReplicaTransport } from '../../cluster/http-transport.js';
import { BIN, FlexProcess, freePort, waitFor } from '../support/index.js';

/**
 * Durability seen from outside the process: a KV server runs under strace,
 * which records the time of every data-sync system call any of its threads
 * makes. Replica writes are sent one at a time, each timed on this side.
 *
 * - sync 'commit' (the default): every write's answer must be preceded by a
 *   data sync that began after the write was sent. An acknowledged write is
 *   then on disk, not only in the OS's cache (which survives kill -9 but not
 *   power loss, so the SIGKILL durability tests cannot tell the difference).
 * - sync 'interval': writes are answered without a sync of their own; the
 *   periodic fsync runs on its own clock.
 *
 * Both clocks are the machine's wall clock (strace -ttt and
 * performance.timeOrigin + now()), read on one machine.
 */

const SYNC_CALLS = 'fsync,fdatasync,msync,sync_file_range,syncfs';
const WRITES = 15;

function straceWorks(): string | null {
  const r = spawnSync('strace', ['-f', '-e', 'trace=fdatasync', 'true'], { encoding: 'utf8' });
  if (r.error) return `strace could not run: ${r.error.message}`;
  return r.status === 0 ? null : `strace failed: ${r.stderr.trim().split('\n').pop()}`;
}

const wallUs = () => (performance.timeOrigin + performance.now()) * 1000;

interface Traced {
  url: string;
  child: ChildProcess;
  traceFile: string;
}

async function startTracedKv(dir: string, registryUrl: string, syncArgs: string[]): Promise<Traced> {
  const port = await freePort();
  const traceFile = path.join(dir, `strace-${port}.txt`);
  // Its own process group, so that the node process strace runs is killed
  // with it (a SIGKILLed strace would leave its tracee running).
  const child = spawn(
    'strace',
    ['-f', '-ttt', '-e', `trace=${SYNC_CALLS}`, '-o', traceFile, process.execPath, BIN, 'kv',
      '--port', String(port), '--host', '127.0.0.1', '--registry-url', registryUrl,
      '--data-dir', path.join(dir, `kv-${port}`), '--replication-factor', '1', ...syncArgs],
    { stdio: 'ignore', detached: true, env: { ...process.env, LOG_LEVEL: 'warn' } },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`traced KV server on ${url}`, async () => (await fetch(`${url}/health`)).ok, { timeoutMs: 30_000 });
  return { url, child, traceFile };
}

function killGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      resolve();
    }
  });
}

/** Start times, in µs, of the sync calls strace recorded. */
async function syncTimes(traceFile: string): Promise<number[]> {
  const text = await readFile(traceFile, 'utf8');
  const times: number[] = [];
  for (const line of text.split('\n')) {
    // "<pid> <sec.usec> fdatasync(12) = 0" or "... fdatasync(12 <unfinished ...>"; skip "<... resumed>" halves.
    const m = /^\d+\s+(\d+)\.(\d{6})\s+(\w+)\(/.exec(line);
    if (m && SYNC_CALLS.split(',').includes(m[3]!)) times.push(Number(m[1]) * 1e6 + Number(m[2]));
  }
  return times;
}

/** Sends WRITES replica writes one after another; returns each one's [sent, answered] in µs. */
async function writeSequentially(url: string, label: string): Promise<Array<[number, number]>> {
  const transport = new HttpReplicaTransport({ timeoutMs: 10_000 });
  const clock = new HybridClock('fsynctest');
  const windows: Array<[number, number]> = [];
  try {
    for (let i = 0; i < WRITES; i++) {
      const rec = { value: Buffer.from(`v${i}`), version: clock.next(), tombstone: false, contentType: 'text/plain' };
      const sent = wallUs();
      const res = await transport.put(url, `${label}/${i}`, rec);
      windows.push([sent, wallUs()]);
      assert.equal(res.applied, true);
    }
  } finally {
    await transport.close();
  }
  return windows;
}

const unavailable = straceWorks();

describe('data syncs seen from outside the KV server (strace)', () => {
  let dir: string;
  let registry: FlexProcess;
  let registryUrl: string;
  const traced: Traced[] = [];

  before(async () => {
    assert.equal(unavailable, null, `${unavailable} (.ci/run installs Debian's strace)`);
    dir = await mkdtemp(path.join(tmpdir(), 'flexstore-fsync-'));
    const port = await freePort();
    registryUrl = `http://127.0.0.1:${port}`;
    registry = new FlexProcess('registry', ['registry', '--port', String(port), '--host', '127.0.0.1', '--data-dir', path.join(dir, 'registry')]);
    await waitFor('registry', async () => (await fetch(`${registryUrl}/health`)).ok);
  });

  after(async () => {
    await Promise.all(traced.map((t) => killGroup(t.child)));
    await registry?.kill();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("sync 'commit': a data sync happens between receiving each write and acknowledging it", async () => {
    const kv = await startTracedKv(dir, registryUrl, []);
    traced.push(kv);
    const windows = await writeSequentially(kv.url, 'commit');
    await killGroup(kv.child);
    const syncs = await syncTimes(kv.traceFile);
    const unsynced = windows.filter(([sent, answered]) => !syncs.some((t) => t > sent && t < answered));
    assert.equal(unsynced.length, 0, `${unsynced.length} of ${WRITES} writes were acknowledged with no data sync in between (${syncs.length} syncs seen)`);
  });

  test("sync 'interval': writes are acknowledged without a sync of their own", async () => {
    const kv = await startTracedKv(dir, registryUrl, ['--sync', 'interval', '--sync-interval-ms', '60000']);
    traced.push(kv);
    const windows = await writeSequentially(kv.url, 'interval');
    await killGroup(kv.child);
    const syncs = await syncTimes(kv.traceFile);
    const [first, last] = [windows[0]![0], windows[windows.length - 1]![1]];
    const during = syncs.filter((t) => t > first && t < last);
    // The interval is a minute: nothing should sync while the writes run.
    assert.ok(during.length < WRITES / 3, `${during.length} data syncs during ${WRITES} writes`);
  });
});
