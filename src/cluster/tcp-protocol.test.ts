import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { Storage } from '../kv/storage.js';
import { startTcpReplicaServer } from '../kv/tcp-replica-server.js';
import { formatVersion } from './hlc.js';
import {
  decodeHints,
  decodeList,
  decodeListReply,
  decodePut,
  decodeRecordReply,
  encodeHints,
  encodeList,
  encodeListReply,
  encodePut,
  encodeRecordReply,
} from './tcp-codec.js';
import { PayloadTooLarge, ProtocolError, ReplicaUnreachable } from './errors.js';
import { FrameDecoder, InflightBudget, MAX_FRAME_BYTES, Op } from './tcp-protocol.js';
import { TcpReplicaTransport } from './tcp-transport.js';
import { proveMember } from './tcp-handshake.js';
import type { ReplicaRecord } from './types.js';
import { record, tempDirs, version } from '../test/support/index.js';

interface Frame {
  id: number;
  op: number;
  body: Buffer;
}

function encode(f: Frame): Buffer {
  const head = Buffer.alloc(9);
  head.writeUInt32BE(5 + f.body.length, 0);
  head.writeUInt32BE(f.id, 4);
  head[8] = f.op;
  return Buffer.concat([head, f.body]);
}

function decodeAll(chunks: Buffer[], max?: number): Frame[] {
  const out: Frame[] = [];
  // Copy each body: a real consumer finishes with it before the next chunk, a test keeps it.
  const d = new FrameDecoder((id, op, body) => out.push({ id, op, body: Buffer.from(body) }), { maxFrameBytes: max });
  for (const c of chunks) d.push(c);
  return out;
}

// fc.record builds null-prototype objects; deepEqual wants plain ones.
const plain = <T extends object>(o: T): T => ({ ...o });
const frameArb = fc
  .record({
    id: fc.integer({ min: 0, max: 0xffffffff }),
    op: fc.integer({ min: 0, max: 255 }),
    body: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  })
  .map(plain);
/** Any JS string, lone surrogates included. */
const anyString = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 }).map((c) => String.fromCharCode(...c));
const versionArb = fc
  .record({ wall: fc.integer({ min: 0, max: 2 ** 40 }), counter: fc.integer({ min: 0, max: 0xffffff }) })
  .map((ts) => formatVersion(ts, 'gw-1'));

describe('FrameDecoder', () => {
  test('frames split at any points and coalesced in any way decode to the frames sent', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, cuts) => {
        const stream = Buffer.concat(frames.map(encode));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let prev = 0;
        for (const p of [...points, stream.length]) {
          chunks.push(stream.subarray(prev, p));
          prev = p;
        }
        assert.deepEqual(decodeAll(chunks), frames);
      }),
      { numRuns: 500 },
    );
  });

  test('a stream split at every byte boundary, and fed a byte at a time, decodes the same', () => {
    const frames: Frame[] = [
      { id: 1, op: Op.GET, body: Buffer.from('key') },
      { id: 0xffffffff, op: Op.OK, body: Buffer.alloc(0) },
      { id: 7, op: Op.PUT, body: Buffer.from(Array.from({ length: 40 }, (_, i) => i)) },
    ];
    const stream = Buffer.concat(frames.map(encode));
    for (let i = 0; i <= stream.length; i++) {
      assert.deepEqual(decodeAll([stream.subarray(0, i), stream.subarray(i)]), frames, `split at ${i}`);
    }
    const bytes = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
    assert.deepEqual(decodeAll(bytes), frames);
  });

  test('an oversize or undersize length is a protocol error before anything is buffered', () => {
    const big = Buffer.alloc(4);
    big.writeUInt32BE(1025, 0);
    assert.throws(() => decodeAll([big], 1024), ProtocolError);
    assert.throws(() => decodeAll([big.subarray(0, 2), big.subarray(2)], 1024), /exceeds the 1024-byte limit/);
    const huge = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0]);
    assert.throws(() => decodeAll([huge]), new RegExp(`exceeds the ${MAX_FRAME_BYTES}-byte limit`));
    assert.throws(() => decodeAll([Buffer.from([0, 0, 0, 4, 0, 0, 0, 0])]), /shorter than its header/);
  });

  test('large frames (kept as chunks until whole) split at any points decode to the frames sent', () => {
    const big = (id: number, n: number): Frame => ({ id, op: Op.PUT, body: Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + id) & 0xff)) });
    const frames = [big(1, 200_000), { id: 2, op: Op.GET, body: Buffer.from('k') }, big(3, 70_000), big(4, 65_531)];
    const stream = Buffer.concat(frames.map(encode));
    // Every split point near each frame boundary, and the stream in reads of various sizes.
    const bounds = frames.reduce<number[]>((acc, f) => [...acc, acc.at(-1)! + 9 + f.body.length], [0]);
    for (const b of bounds) {
      for (let i = Math.max(0, b - 12); i <= Math.min(stream.length, b + 12); i++) {
        assert.deepEqual(decodeAll([stream.subarray(0, i), stream.subarray(i)]), frames, `split at ${i}`);
      }
    }
    for (const size of [1000, 4096, 65_536, 100_003]) {
      const chunks: Buffer[] = [];
      for (let off = 0; off < stream.length; off += size) chunks.push(stream.subarray(off, off + size));
      assert.deepEqual(decodeAll(chunks), frames, `reads of ${size}`);
    }
  });

  test('memory follows the bytes received, not the length declared; stop() drops them', () => {
    const budget = new InflightBudget(1 << 30);
    const d = new FrameDecoder(() => assert.fail('no frame is whole'), { budget });
    assert.equal(d.frameStartedAt, 0);
    // A small frame that arrives split is held in a buffer of its size from its header on.
    d.push(Buffer.from([0, 0, 0x10, 0, 0, 0, 0, 1]));
    assert.equal(d.held, 0x1000);
    assert.ok(d.frameStartedAt > 0, 'a frame in progress has a start time');
    d.stop();
    assert.equal(d.held, 0);
    assert.equal(budget.bytes, 0);

    const e = new FrameDecoder(() => assert.fail('no frame is whole'), { budget });
    const head = Buffer.alloc(9);
    head.writeUInt32BE(60 * 1024 * 1024, 0);
    e.push(head);
    e.push(Buffer.alloc(100_000));
    // A 60 MiB frame declared: what is held is the two reads.
    assert.equal(e.held, 9 + 100_000);
    assert.equal(budget.bytes, 9 + 100_000);
    e.stop();
    assert.equal(e.held, 0);
    assert.equal(budget.bytes, 0);
    assert.equal(e.frameStartedAt, 0);
    e.push(Buffer.alloc(50_000));
    assert.equal(e.held, 0, 'nothing is kept after stop()');
  });

  test('a frame over maxFrameBytes is read and dropped, never held, and reported with its id; the next frames decode', () => {
    const out: Frame[] = [];
    const oversize: Array<[number, number, number]> = [];
    const budget = new InflightBudget(1 << 30);
    const d = new FrameDecoder((id, op, body) => out.push({ id, op, body: Buffer.from(body) }), {
      maxFrameBytes: 1024,
      budget,
      onOversize: (id, op, len) => oversize.push([id, op, len]),
    });
    const frames = [{ id: 9, op: Op.PUT, body: Buffer.alloc(5000, 1) }, { id: 10, op: Op.GET, body: Buffer.from('key') }];
    const stream = Buffer.concat(frames.map(encode));
    for (let i = 0; i < stream.length; i += 700) {
      d.push(stream.subarray(i, i + 700));
      assert.equal(budget.bytes, 0);
    }
    assert.deepEqual(oversize, [[9, Op.PUT, 5005]]);
    assert.deepEqual(out, [frames[1]]);
    // Past MAX_FRAME_BYTES a frame is still a protocol error.
    const huge = Buffer.alloc(9);
    huge.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
    assert.throws(() => d.push(huge), /exceeds the \d+-byte limit/);
  });

  test('a shared budget pauses the reader that takes it past its limit and resumes it once bytes free', () => {
    const budget = new InflightBudget(150_000);
    const events: string[] = [];
    const got: number[] = [];
    const reader = (name: string) =>
      new FrameDecoder((id) => got.push(id), {
        budget,
        pause: () => events.push(`${name} paused`),
        resume: () => events.push(`${name} resumed`),
      });
    const frame = (id: number) => encode({ id, op: Op.PUT, body: Buffer.alloc(100_000, id) });
    const a = reader('a');
    const b = reader('b');
    const c = reader('c');
    const fa = frame(1);
    const fb = frame(2);
    const fc2 = frame(3);
    a.push(fa.subarray(0, 80_000));
    b.push(fb.subarray(0, 60_000));
    assert.equal(events.length, 0);
    c.push(fc2.subarray(0, 20_000));
    // 160,000 held: the reader that went past pauses, the others keep going.
    assert.deepEqual(events, ['c paused']);
    assert.equal(budget.paused, 1);
    a.push(fa.subarray(80_000, 90_000));
    assert.deepEqual(events, ['c paused', 'a paused']);
    // b finishes its frame: its bytes free, and the first reader paused resumes;
    // the 40,000 bytes of room left are less than a read, so a still waits.
    b.push(fb.subarray(60_000));
    assert.deepEqual(got, [2]);
    assert.deepEqual(events, ['c paused', 'a paused', 'c resumed']);
    c.push(fc2.subarray(20_000, 90_000));
    assert.deepEqual(events.slice(3), ['c paused']);
    // A reader stopped while paused gives its bytes back and wakes the next.
    c.stop();
    assert.deepEqual(events.slice(4), ['a resumed']);
    assert.equal(budget.paused, 0);
    a.push(fa.subarray(90_000));
    assert.deepEqual(got, [2, 1]);
    assert.equal(budget.bytes, 0);
    assert.equal(budget.paused, 0);
    // Alone, a frame larger than the whole budget still arrives: nobody else holds bytes to wait for.
    const big = encode({ id: 4, op: Op.PUT, body: Buffer.alloc(400_000) });
    const d = reader('d');
    for (let i = 0; i < big.length; i += 65_536) d.push(big.subarray(i, i + 65_536));
    assert.deepEqual(got, [2, 1, 4]);
    assert.ok(!events.includes('d paused'));
  });
});

describe('frame bodies', () => {
  test('records, puts, lists and hints round-trip any key, including lone surrogates', () => {
    const recArb = fc
      .record({
        value: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
        version: versionArb,
        tombstone: fc.boolean(),
        contentType: fc.string({ maxLength: 30 }),
      })
      .map(plain);
    fc.assert(
      fc.property(anyString, recArb, (key, rec: ReplicaRecord) => {
        assert.deepEqual(decodeRecordReply(encodeRecordReply(1, rec).subarray(9)), rec);
        const put = decodePut(encodePut(2, key, rec).subarray(9));
        assert.deepEqual({ key: put.key, rec: { ...put.rec, value: Buffer.from(put.rec.value) } }, { key, rec });
      }),
    );
    fc.assert(
      fc.property(anyString, anyString, fc.integer({ min: 0, max: 0xffffffff }), (prefix, after, limit) => {
        assert.deepEqual(decodeList(encodeList(3, { prefix, after, limit }).subarray(9)), { prefix, after, limit });
      }),
    );
    const entryArb = fc.record({ key: anyString, version: versionArb, tombstone: fc.boolean() }).map(plain);
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 10 }), fc.boolean(), (entries, more) => {
        assert.deepEqual(decodeListReply(encodeListReply(4, { entries, more }).subarray(9)), { entries, more });
      }),
    );
    fc.assert(
      fc.property(anyString, fc.array(anyString, { maxLength: 10 }), (target, keys) => {
        assert.deepEqual(decodeHints(encodeHints(5, target, keys).subarray(9)), { target, keys });
      }),
    );
  });

  test('a truncated body is a protocol error', () => {
    const put = encodePut(1, 'k', { value: Buffer.from('v'), version: 'x'.repeat(30), tombstone: false, contentType: 'c' });
    assert.throws(() => decodePut(put.subarray(9, 20)), ProtocolError);
    assert.throws(() => decodeListReply(Buffer.from([0, 0, 0, 0, 9])), ProtocolError);
  });
});

describe('TCP replica server and transport across a crash', () => {
  const children = new Set<ChildProcess>();
  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });
  // Registered after the kill above, so the dirs go once their servers have.
  const tempDir = tempDirs('flexstore-tcp-protocol-');

  /** A KV replica in its own process, so it can be killed like a real one. */
  async function startReplica(dataDir: string, port: number): Promise<{ child: ChildProcess; port: number }> {
    const storageUrl = new URL('../kv/storage.js', import.meta.url).href;
    const serverUrl = new URL('../kv/tcp-replica-server.js', import.meta.url).href;
    const script = `
      const { Storage } = await import(${JSON.stringify(storageUrl)});
      const { startTcpReplicaServer } = await import(${JSON.stringify(serverUrl)});
      const storage = Storage.open(${JSON.stringify(dataDir)});
      const s = await startTcpReplicaServer({ storage, host: '127.0.0.1', port: ${port} });
      console.log(s.port);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.add(child);
    child.on('exit', () => children.delete(child));
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()));
      child.once('exit', (code) => reject(new Error(`replica exited with ${code} during start-up`)));
    });
    return { child, port: Number(line) };
  }

  test('a killed server fails pending calls at once; calls reconnect after it restarts', async () => {
    const dir = tempDir();
    let replica = await startReplica(dir, 0);
    const port = replica.port;
    const nodeUrl = 'http://127.0.0.1:1';
    const callTimeoutMs = 10_000;
    const transport = new TcpReplicaTransport({ timeoutMs: callTimeoutMs, resolvePort: () => port });
    const rec = (i: number): ReplicaRecord => record(version(Date.now(), i, 'crash'), `value-${i}`);
    try {
      const acked: number[] = [];
      const errors: unknown[] = [];
      let next = 0;
      let killedAt = 0;
      // 64 writers in a loop until the replica dies under them.
      const writers = Array.from({ length: 64 }, async () => {
        for (;;) {
          const i = next++;
          try {
            await transport.put(nodeUrl, `k${i}`, rec(i));
            acked.push(i);
          } catch (err) {
            errors.push(err);
            return;
          }
        }
      });
      while (acked.length < 200) await new Promise((r) => setTimeout(r, 5));
      replica.child.kill('SIGKILL');
      killedAt = Date.now();
      await Promise.all(writers);
      const settledIn = Date.now() - killedAt;
      // The lost connection failed them, not their deadlines: no call says it
      // timed out, and all settled in well under the call timeout (a call
      // failed by its deadline takes nearly all of it).
      assert.ok(settledIn < callTimeoutMs / 2, `pending calls took ${settledIn} ms to fail`);
      assert.equal(errors.length, 64);
      for (const err of errors) assert.ok(err instanceof ReplicaUnreachable, String(err));
      for (const err of errors) assert.doesNotMatch((err as Error).message, /timed out/);
      assert.ok(
        errors.some((e) => /connection lost/.test((e as Error).message)),
        'no call was failed by the lost connection',
      );

      await assert.rejects(transport.get(nodeUrl, 'k0'), ReplicaUnreachable);
      replica = await startReplica(dir, port);
      const started = Date.now();
      let first: ReplicaRecord | null = null;
      for (;;) {
        try {
          first = await transport.get(nodeUrl, `k${acked[0]}`);
          break;
        } catch (err) {
          assert.ok(err instanceof ReplicaUnreachable);
          assert.ok(Date.now() - started < 5000, 'no reconnect within 5 s');
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      assert.equal(first?.value.toString(), `value-${acked[0]}`);
      // Every acknowledged write survived the kill.
      const got = await Promise.all(acked.map((i) => transport.get(nodeUrl, `k${i}`)));
      got.forEach((r, j) => assert.equal(r?.value.toString(), `value-${acked[j]}`));
    } finally {
      await transport.close();
      replica.child.kill('SIGKILL');
    }
  });

  test('an oversize frame closes only the connection that sent it', async () => {
    const dir = tempDir();
    const storage = Storage.open(dir);
    const warnings: object[] = [];
    const server = await startTcpReplicaServer({
      storage,
      host: '127.0.0.1',
      port: 0,
      log: { warn: (o) => void warnings.push(o) },
    });
    const transport = new TcpReplicaTransport({ resolvePort: () => server.port });
    try {
      assert.equal(await transport.get('http://127.0.0.1:7001', 'absent'), null);
      const bad = connect({ host: '127.0.0.1', port: server.port });
      const closed = new Promise<void>((resolve) => bad.on('close', () => resolve()));
      bad.on('error', () => {});
      await new Promise((resolve) => bad.once('connect', resolve));
      await proveMember(bad, [], 2000);
      bad.resume();
      bad.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, Op.GET]));
      await closed;
      assert.equal(warnings.length, 1);
      assert.equal(await transport.get('http://127.0.0.1:7001', 'absent'), null);
    } finally {
      await transport.close();
      await server.close();
      await storage.close();
    }
  });

  test('a frame over the server\'s limit fails only its request, PAYLOAD_TOO_LARGE, and keeps the connection', async () => {
    const storage = Storage.open(tempDir());
    const server = await startTcpReplicaServer({ storage, host: '127.0.0.1', port: 0, maxFrameBytes: 4096, maxInflightBytes: 1 << 20 });
    const transport = new TcpReplicaTransport({ resolvePort: () => server.port });
    const node = 'http://127.0.0.1:7001';
    try {
      const v = version(Date.now());
      await assert.rejects(transport.put(node, 'big', record(v, Buffer.alloc(10_000))), PayloadTooLarge);
      assert.deepEqual(await transport.put(node, 'small', record(v, 'ok')), { applied: true, version: v });
      assert.equal((await transport.get(node, 'small'))?.value.toString(), 'ok');
      assert.equal(await transport.get(node, 'big'), null);
      assert.equal(server.connections(), 1, 'the same connection served every call');
      assert.equal(server.inflightBytes(), 0);
    } finally {
      await transport.close();
      await server.close();
      await storage.close();
    }
  });
});
