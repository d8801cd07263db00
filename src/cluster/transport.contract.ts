import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ReplicaUnreachable } from './errors.js';
import { formatVersion } from './hlc.js';
import type { ReplicaTransport } from './transport.js';
import type { ReplicaRecord } from './types.js';

/**
 * Behaviour every ReplicaTransport must have, whatever carries the bytes.
 * A transport's test file calls this with a setup that starts one real
 * replica (nodeUrl) and names an address nothing listens on (deadUrl).
 */

export interface ContractFixture {
  transport: ReplicaTransport;
  nodeUrl: string;
  deadUrl: string;
  /** The transport's call timeout, as configured. */
  timeoutMs: number;
  cleanup(): Promise<void>;
}

/** JS string order, the order every replica lists keys in. */
function jsSorted(keys: string[]): string[] {
  return [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export function replicaTransportContract(name: string, setup: () => Promise<ContractFixture>): void {
  describe(`ReplicaTransport contract: ${name}`, () => {
    let fx: ContractFixture;
    // Each run gets fresh keys and versions, so a fixture may reuse a replica.
    const run = randomBytes(4).toString('hex');
    const wall = Date.now();
    const v = (offset: number, counter = 0) => formatVersion({ wall: wall + offset, counter }, 'contract');
    const key = (k: string) => `contract-${run}/${k}`;
    const rec = (version: string, value: Buffer | string, extra: Partial<ReplicaRecord> = {}): ReplicaRecord => ({
      value: typeof value === 'string' ? Buffer.from(value) : value,
      version,
      tombstone: false,
      contentType: 'application/octet-stream',
      ...extra,
    });

    before(async () => {
      fx = await setup();
    });
    after(async () => {
      await fx?.cleanup();
    });

    test('put then get round-trips every byte value and the content type', async () => {
      const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256));
      const r = rec(v(1), bytes, { contentType: 'application/json; charset=utf-8' });
      assert.deepEqual(await fx.transport.put(fx.nodeUrl, key('bin'), r), { applied: true, version: v(1) });
      assert.deepEqual(await fx.transport.get(fx.nodeUrl, key('bin')), r);
    });

    test('round-trips an empty value and a 1 MiB value', async () => {
      const empty = rec(v(1), Buffer.alloc(0), { contentType: 'text/plain' });
      await fx.transport.put(fx.nodeUrl, key('empty'), empty);
      assert.deepEqual(await fx.transport.get(fx.nodeUrl, key('empty')), empty);

      const big = rec(v(1), randomBytes(1024 * 1024));
      await fx.transport.put(fx.nodeUrl, key('big'), big);
      const got = await fx.transport.get(fx.nodeUrl, key('big'));
      assert.ok(got && got.value.equals(big.value), '1 MiB value differs');
      assert.equal(got.version, big.version);
    });

    test('keys with reserved and non-ASCII characters round-trip', async () => {
      const odd = ['a/b/../c', 'q?x=1&y=2', 'hash#frag', '100%', 'sp ace+plus', 'é日本\u{1f600}', '\u0000nul', '%2F'];
      for (const [i, k] of odd.entries()) {
        await fx.transport.put(fx.nodeUrl, key(k), rec(v(1, i), k));
      }
      for (const k of odd) {
        assert.equal((await fx.transport.get(fx.nodeUrl, key(k)))?.value.toString(), k, JSON.stringify(k));
      }
    });

    test('a tombstone is a record with an empty value', async () => {
      await fx.transport.put(fx.nodeUrl, key('tomb'), rec(v(1), 'alive'));
      const tomb = rec(v(2), Buffer.alloc(0), { tombstone: true });
      assert.deepEqual(await fx.transport.put(fx.nodeUrl, key('tomb'), tomb), { applied: true, version: v(2) });
      assert.deepEqual(await fx.transport.get(fx.nodeUrl, key('tomb')), tomb);
    });

    test('an older or equal version is not applied and the held version is returned', async () => {
      await fx.transport.put(fx.nodeUrl, key('lww'), rec(v(5), 'new'));
      assert.deepEqual(await fx.transport.put(fx.nodeUrl, key('lww'), rec(v(4), 'old')), {
        applied: false,
        version: v(5),
      });
      assert.deepEqual(await fx.transport.put(fx.nodeUrl, key('lww'), rec(v(5), 'same')), {
        applied: false,
        version: v(5),
      });
      assert.equal((await fx.transport.get(fx.nodeUrl, key('lww')))?.value.toString(), 'new');
    });

    test('concurrent puts of many versions of one key leave the newest', async () => {
      const versions = Array.from({ length: 50 }, (_, i) => v(100 + i));
      const order = shuffle(versions);
      const results = await Promise.all(order.map((ver) => fx.transport.put(fx.nodeUrl, key('race'), rec(ver, ver))));
      const newest = versions.at(-1)!;
      assert.deepEqual(results[order.indexOf(newest)], { applied: true, version: newest });
      for (const r of results) assert.ok(r.version <= newest);
      const got = await fx.transport.get(fx.nodeUrl, key('race'));
      assert.equal(got?.version, newest);
      assert.equal(got?.value.toString(), newest);
    });

    test('get of an unknown key resolves null', async () => {
      assert.equal(await fx.transport.get(fx.nodeUrl, key('never-written')), null);
    });

    test('list returns keys in JS string order, filtered by prefix, paged by after/limit/more', async () => {
      const prefix = key('list/');
      const names = ['a', 'a\u0000', 'ab', 'a/b', 'B', 'b', 'é', '\uffff', '\u{1f600}', '\u{10000}x', '日本', '日本語'];
      await Promise.all(
        names.map((n, i) => fx.transport.put(fx.nodeUrl, prefix + n, rec(v(1, i), n, { tombstone: n === 'b' }))),
      );
      await fx.transport.put(fx.nodeUrl, key('list0'), rec(v(1), 'outside the prefix'));
      await fx.transport.put(fx.nodeUrl, key('lisu'), rec(v(1), 'outside the prefix'));
      const expected = jsSorted(names).map((n) => prefix + n);

      const all = await fx.transport.list(fx.nodeUrl, { prefix, after: '', limit: 1000 });
      assert.equal(all.more, false);
      assert.deepEqual(
        all.entries.map((e) => e.key),
        expected,
      );
      for (const e of all.entries) {
        const i = names.indexOf(e.key.slice(prefix.length));
        assert.deepEqual(e, { key: e.key, version: v(1, i), tombstone: names[i] === 'b' });
      }

      const paged: string[] = [];
      let afterKey = '';
      for (let pages = 0; pages < 100; pages++) {
        const page = await fx.transport.list(fx.nodeUrl, { prefix, after: afterKey, limit: 5 });
        assert.ok(page.entries.length <= 5);
        paged.push(...page.entries.map((e) => e.key));
        if (!page.more) break;
        afterKey = page.entries.at(-1)!.key;
      }
      assert.deepEqual(paged, expected);

      const exact = await fx.transport.list(fx.nodeUrl, { prefix, after: '', limit: expected.length });
      assert.equal(exact.more, false);
      const short = await fx.transport.list(fx.nodeUrl, { prefix, after: '', limit: expected.length - 1 });
      assert.equal(short.more, true);
      const sub = await fx.transport.list(fx.nodeUrl, { prefix: prefix + '日本', after: '', limit: 10 });
      assert.deepEqual(sub.entries.map((e) => e.key), [prefix + '日本', prefix + '日本語']);
      const tail = await fx.transport.list(fx.nodeUrl, { prefix, after: prefix + 'b', limit: 10 });
      assert.deepEqual(tail.entries.map((e) => e.key), expected.slice(expected.indexOf(prefix + 'b') + 1));
    });

    test('calls to an unreachable node reject promptly with ReplicaUnreachable', async () => {
      const started = Date.now();
      // Refused, not timed out: the error says why, and no call waited out its timeout.
      const refused = (err: unknown) => err instanceof ReplicaUnreachable && !/timed out/.test(err.message);
      await Promise.all([
        assert.rejects(fx.transport.get(fx.deadUrl, key('x')), refused),
        assert.rejects(fx.transport.put(fx.deadUrl, key('x'), rec(v(1), 'x')), refused),
        assert.rejects(fx.transport.list(fx.deadUrl, { prefix: '', after: '', limit: 10 }), refused),
      ]);
      assert.ok(Date.now() - started < fx.timeoutMs, `took ${Date.now() - started} ms, call timeout ${fx.timeoutMs} ms`);
      // The live node is unaffected by failures elsewhere.
      assert.equal(await fx.transport.get(fx.nodeUrl, key('never-written')), null);
    });
  });
}
