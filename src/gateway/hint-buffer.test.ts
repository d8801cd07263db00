import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ReplicaTransport } from '../cluster/transport.js';
import { HintBuffer } from './hint-buffer.js';

/** A transport that only records the hint requests it is asked to send. */
function recorder(): { transport: ReplicaTransport; sent: Array<{ holder: string; target: string; keys: string[] }> } {
  const sent: Array<{ holder: string; target: string; keys: string[] }> = [];
  const unused = () => Promise.reject(new Error('not used'));
  const transport: ReplicaTransport = {
    get: unused,
    put: unused,
    list: unused,
    close: async () => {},
    storeHints: async (holder, target, keys) => void sent.push({ holder, target, keys }),
  };
  return { transport, sent };
}

test('hints for one target are cut into requests a KV server accepts; every key is sent once', async () => {
  const { transport, sent } = recorder();
  let flushed = 0;
  const hints = new HintBuffer({ transport, flushMs: 60_000, onFlushed: (n, ok) => void (flushed += ok ? n : 0) });
  // 3,000 keys of 2,000 characters: about 18 MB in one request, past a KV server's 16 MiB body limit.
  const keys = Array.from({ length: 3000 }, (_, i) => `${String(i).padStart(6, '0')}${'k'.repeat(1994)}`);
  for (const key of keys) hints.add('http://holder', 'target', key);
  hints.add('http://holder', 'other', 'short');
  await hints.flush();

  const forTarget = sent.filter((s) => s.target === 'target');
  assert.ok(forTarget.length > 1, 'one request for all the keys');
  for (const s of forTarget) {
    const bytes = s.keys.reduce((n, k) => n + Buffer.byteLength(k) + 4, 0);
    assert.ok(bytes <= 4 * 1024 * 1024, `a request of ${bytes} bytes of keys`);
  }
  assert.deepEqual(forTarget.flatMap((s) => s.keys).sort(), [...keys].sort());
  assert.deepEqual(sent.filter((s) => s.target === 'other').map((s) => s.keys), [['short']]);
  assert.equal(flushed, keys.length + 1);
});
