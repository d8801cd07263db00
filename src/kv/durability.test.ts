import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Storage, type SyncMode } from './storage.js';

/**
 * Crash test with a real process: a writer acknowledges puts on stdout, gets
 * SIGKILLed mid-stream, and every acknowledged put must be there on reopen.
 * Several rounds on one data dir also check that LMDB reopens cleanly after
 * each crash (stale lock file, half-written batch). Run for both sync modes:
 * 'interval' acknowledges before any fsync, so what it promises (surviving
 * the death of the process, not of the machine) is exactly what this checks.
 * A power loss cannot be simulated here.
 */

const storageModule = fileURLToPath(new URL('./storage.js', import.meta.url));
const WRITERS = 8;
const ACKS_BEFORE_KILL = 400;
const ROUNDS = 3;

// The writer: WRITERS concurrent loops of awaited puts; a key is printed only
// after its put resolved.
const writerScript = `
import { Storage } from ${JSON.stringify(storageModule)};
const [dir, round, sync] = process.argv.slice(-3);
const storage = Storage.open(dir, { sync, syncIntervalMs: 1000 });
const wall = Date.now();
let n = 0;
async function writer() {
  for (;;) {
    const i = n++;
    const key = 'r' + round + '-' + i;
    const version = wall.toString(16).padStart(12, '0') + '.' + (i % 0xffffff).toString(16).padStart(6, '0') + '.w' + round;
    await storage.put(key, { value: Buffer.from(key), version, tombstone: false, contentType: 'text/plain' });
    process.stdout.write(key + '\\n');
  }
}
for (let w = 0; w < ${WRITERS}; w++) writer();
`;

const children = new Set<ChildProcess>();
const dirs: string[] = [];
after(() => {
  for (const child of children) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function crashWriter(dir: string, round: number, sync: SyncMode): Promise<string[]> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', writerScript, '--', dir, String(round), sync], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  );

  const deadline = Date.now() + 20_000;
  while (countLines(stdout) < ACKS_BEFORE_KILL) {
    if (child.exitCode !== null) assert.fail(`writer exited early (${child.exitCode}): ${stderr}`);
    if (Date.now() > deadline) assert.fail(`writer acknowledged only ${countLines(stdout)} puts in 20 s: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  children.delete(child);
  // A line cut off by the kill was never fully acknowledged; ignore it.
  const lines = stdout.split('\n');
  lines.pop();
  return lines;
}

function countLines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

for (const sync of ['commit', 'interval'] as const) {
  test(`every acknowledged put survives SIGKILL of the writer (sync ${sync})`, { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flexstore-durability-'));
    dirs.push(dir);
    const acknowledged: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const acked = await crashWriter(dir, round, sync);
      // crashWriter kills only after ACKS_BEFORE_KILL lines; what can go wrong
      // is the lines: each must name a distinct key of this round's writer.
      assert.deepEqual(acked.filter((k) => !new RegExp(`^r${round}-\\d+$`).test(k)), []);
      assert.equal(new Set(acked).size, acked.length);
      acknowledged.push(...acked);

      const storage = Storage.open(dir, { sync });
      try {
        const missing = acknowledged.filter((key) => storage.get(key)?.value.toString() !== key);
        assert.deepEqual(missing.slice(0, 10), [], `${missing.length} of ${acknowledged.length} acknowledged puts lost`);
        assert.ok(storage.count() >= acknowledged.length);
      } finally {
        await storage.close();
      }
    }
  });
}
