import { rmSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Storage } from '../../kv/storage.js';
import { record, tombstone, version } from '../support/records.js';

/**
 * The storage half of full-disk.test.ts, run as a child process by it:
 * `node full-disk-storage.js <dir on a small tmpfs>`. It drives every
 * storage write path into the full disk and prints what it saw as one JSON
 * object; the test asserts on it.
 *
 * A child process because lmdb-js rejects a promise of its own for every
 * failed commit, which only a process-wide listener can swallow
 * (storage-health.ts installCommitFailureFilter): node:test reports such a
 * rejection as a failure of whatever test runs, listener or not, so a full
 * disk cannot be exercised in the test runner's own process.
 */

const dir = process.argv[2];
if (!dir) throw new Error('usage: full-disk-storage.js <dir>');

/** The error code of a write, or 'ok'. */
async function outcome(write: () => Promise<unknown>): Promise<string> {
  try {
    await write();
    return 'ok';
  } catch (err) {
    return String((err as { code?: unknown }).code ?? (err as Error).message);
  }
}

const refused: string[] = [];
const states: string[] = [];
const storage = Storage.open(dir, {
  storageProbeMs: 100,
  onWriteRefused: (p) => refused.push(p),
  onStorageState: (s) => states.push(s),
});
const value = randomBytes(50_000);
const wall = Date.now();
// Before the disk fills: a hint to remove later, and a tombstone past any grace to purge.
await storage.hints.add('kv-other', ['k0']);
await storage.put('old-delete', tombstone(version(wall - 3_600_000)));
const ballast = path.join(dir, 'ballast');
const { bavail, bsize } = statfsSync(dir);
writeFileSync(ballast, Buffer.alloc(Math.max(0, bavail * bsize - 512 * 1024)));

const stored: string[] = [];
let fill = 'ok';
for (let i = 0; i < 100 && fill === 'ok'; i++) {
  fill = await outcome(() => storage.put(`k${i}`, record(version(wall, i), value)));
  if (fill === 'ok') stored.push(`k${i}`);
}
const stateWhenFull = storage.health.state;

const rec = record(version(wall, 500), value);
const whileFull = {
  put: await outcome(() => storage.put('x', rec, 'replica_tcp')),
  putMany: await outcome(() => storage.putMany([{ key: 'x', rec }], 'sync_apply')),
  insertMany: await outcome(() => storage.insertMany([{ key: 'x', rec }], 'sync_stream')),
  hintsAdd: await outcome(() => storage.hints.add('kv-other', ['x'])),
  hintsRemove: await outcome(() => storage.hints.remove('kv-other', [{ key: 'k0', version: null }])),
  purge: await outcome(() => storage.purgeTombstones(wall)),
};
const readWhileFull = storage.get(stored[0]!)?.value.equals(value) ?? false;
const hintsWhileFull = storage.hints.count();

const freed = Date.now();
rmSync(ballast);
while (storage.health.state !== 'ok' && Date.now() - freed < 5000) await new Promise((r) => setTimeout(r, 10));
const recoveredMs = Date.now() - freed;
const afterRecovery = {
  put: await outcome(() => storage.put('x', rec)),
  purged: await storage.purgeTombstones(wall).catch((err: Error) => err.message),
};
const lost = stored.filter((key) => !storage.get(key)?.value.equals(value));
await storage.close();

process.stdout.write(
  JSON.stringify({ fill, stored: stored.length, stateWhenFull, whileFull, refused, readWhileFull, hintsWhileFull, recoveredMs, afterRecovery, lost, states }),
);
