import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { fuzzParams } from '../test/support/fuzz.js';
import { MAX_FRAME_BYTES } from './tcp-protocol.js';
import type { DecodeCase, DecodeOutcome } from './tcp-protocol.fuzz-worker.js';

/**
 * FrameDecoder under random and mutated byte streams. Only its public
 * behaviour is checked (constructor(onFrame, maxFrameBytes?), push, stop),
 * against a reference decoding of the whole stream at once:
 *
 * - push() hands on frames or throws ProtocolError, nothing else, and returns
 *   within DEADLINE_MS (each case runs in a worker thread that is terminated
 *   past it, so a hang fails the case instead of the test process);
 * - the frames handed on are, in order, a prefix of the reference's; without
 *   an error they are all of them; a complete header with a length below the
 *   header's or above maxFrameBytes must end in an error;
 * - bodies handed on keep their bytes while later chunks arrive;
 * - after stop() nothing is handed on and push() does not throw.
 */

/** A case's deadline; once one case hung, later ones (fast-check shrinking it) get SHRINK_DEADLINE_MS. */
const DEADLINE_MS = 2000;
const SHRINK_DEADLINE_MS = 500;
const WORKER_URL = new URL('./tcp-protocol.fuzz-worker.js', import.meta.url);

/** How long a new worker may take to load the decoder. */
const START_DEADLINE_MS = 10_000;

class DecoderRunner {
  private worker: { w: Worker; ready: Promise<void> } | null = null;
  private deadlineMs = DEADLINE_MS;
  /** Settles when the case before has: one case at a time, even when fast-check abandons one past its time budget. */
  private previous: Promise<unknown> = Promise.resolve();

  run(c: DecodeCase): Promise<DecodeOutcome> {
    const result = this.previous.then(() => this.runNow(c));
    this.previous = result.catch(() => {});
    return result;
  }

  private start(): { w: Worker; ready: Promise<void> } {
    const w = new Worker(WORKER_URL);
    let timer: NodeJS.Timeout | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the decoder worker did not start within ${START_DEADLINE_MS} ms`)), START_DEADLINE_MS);
      w.once('message', () => resolve());
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`the decoder worker exited with code ${code} while starting`)));
    }).finally(() => clearTimeout(timer));
    return { w, ready };
  }

  private async runNow(c: DecodeCase): Promise<DecodeOutcome> {
    const current = (this.worker ??= this.start());
    try {
      await current.ready;
    } catch (err) {
      this.worker = null;
      void current.w.terminate();
      throw err;
    }
    const worker = current.w;
    return new Promise((resolve, reject) => {
      const deadlineMs = this.deadlineMs;
      const fail = (err: Error): void => {
        cleanup();
        if (this.worker === current) this.worker = null;
        // Gone before the next case starts: a spinning thread would slow it down on a small machine.
        void worker.terminate().finally(() => reject(err));
      };
      const timer = setTimeout(() => {
        this.deadlineMs = SHRINK_DEADLINE_MS;
        fail(new Error(`FrameDecoder.push did not return within ${deadlineMs} ms`));
      }, deadlineMs);
      const onMessage = (o: DecodeOutcome): void => {
        cleanup();
        resolve(o);
      };
      const onError = (err: Error): void => fail(err);
      const onExit = (code: number): void => fail(new Error(`the decoder worker exited with code ${code}`));
      const cleanup = (): void => {
        clearTimeout(timer);
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
      };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      worker.postMessage(c);
    });
  }

  async close(): Promise<void> {
    const current = this.worker;
    this.worker = null;
    await current?.w.terminate();
  }
}

interface Frame {
  id: number;
  op: number;
  body: Buffer;
}

function encode(frames: readonly Frame[]): Buffer {
  return Buffer.concat(
    frames.map((f) => {
      const head = Buffer.alloc(9);
      head.writeUInt32BE(5 + f.body.length, 0);
      head.writeUInt32BE(f.id, 4);
      head[8] = f.op;
      return Buffer.concat([head, f.body]);
    }),
  );
}

/** The frames of a whole stream, up to its first bad length (bad) or its incomplete tail. */
function reference(stream: Buffer, max: number): { frames: Frame[]; bad: boolean } {
  const frames: Frame[] = [];
  let off = 0;
  while (stream.length - off >= 4) {
    const len = stream.readUInt32BE(off);
    if (len < 5 || len > max) return { frames, bad: true };
    if (stream.length - off - 4 < len) break;
    frames.push({ id: stream.readUInt32BE(off + 4), op: stream[off + 8]!, body: stream.subarray(off + 9, off + 4 + len) });
    off += 4 + len;
  }
  return { frames, bad: false };
}

/** The stream cut at these points (taken modulo its length; repeats and order do not matter). */
function cut(stream: Buffer, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, stream.length]) {
    // Each chunk its own copy: a decoder may keep views of a chunk, and the worker gets only what is posted.
    chunks.push(Uint8Array.from(stream.subarray(prev, p)));
    prev = p;
  }
  return chunks;
}

function describeFrames(frames: readonly { id: number; op: number; body: Uint8Array }[]): string[] {
  return frames.map((f) => `${f.id}/${f.op}/${Buffer.from(f.body).toString('hex')}`);
}

/** The checks every case shares; `strict`: the stream has no bad length, so no error is allowed either. */
function checkOutcome(out: DecodeOutcome, stream: Buffer, max: number, strict = false): void {
  if (out.error) {
    assert.ok(out.error.protocolError, `push threw ${out.error.name}: ${out.error.message}\n${out.error.stack ?? ''}`);
  }
  const ref = reference(stream, max);
  const got = describeFrames(out.frames.map((f) => ({ ...f, body: f.atCall })));
  const kept = describeFrames(out.frames.map((f) => ({ ...f, body: f.atEnd })));
  assert.deepEqual(kept, got, 'a body handed on changed while later chunks were pushed');
  const want = describeFrames(ref.frames);
  assert.deepEqual(got, want.slice(0, got.length), 'the frames handed on are not those of the stream, in order');
  if (ref.bad) assert.notEqual(out.threwAt, -1, 'a bad frame length was accepted');
  if (!out.error) assert.equal(got.length, want.length, 'complete frames were not handed on');
  if (strict) assert.equal(out.error, undefined, `a valid stream was refused: ${out.error?.message}`);
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const frameArb = fc.record({
  id: u32,
  op: fc.integer({ min: 0, max: 255 }),
  body: fc.oneof({ weight: 4, arbitrary: bytes(64) }, { weight: 1, arbitrary: bytes(3000) }),
});
const framesArb = fc.array(frameArb, { maxLength: 8 });
const cutsArb = fc.oneof(fc.array(fc.nat(), { maxLength: 16 }), fc.constant([...Array(400).keys()]));
/**
 * Each property runs twice: with the decoder's default limit (undefined here;
 * no test frame comes near it) and with a small configured one that random
 * lengths do cross.
 */
const LIMITS = {
  default: fc.constant(undefined),
  configured: fc.integer({ min: 5, max: 4000 }),
} satisfies Record<string, fc.Arbitrary<number | undefined>>;


/** A length field worth trying: too short, around a limit, huge, or anything. */
const lengthArb = (max: number) =>
  fc.oneof(
    fc.integer({ min: 0, max: 4 }),
    fc.integer({ min: Math.max(0, max - 2), max: max + 2 }),
    fc.integer({ min: MAX_FRAME_BYTES - 2, max: MAX_FRAME_BYTES + 2 }),
    fc.constant(0xffffffff),
    u32,
  );

/** Random bytes whose length fields are mostly plausible, so that decoding gets past the first one. */
const noiseStreamArb = fc
  .array(fc.tuple(fc.integer({ min: 0, max: 600 }), bytes(600)), { maxLength: 8 })
  .map((segs) =>
    Buffer.concat(
      segs.map(([len, rest]) => {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(len, 0);
        return Buffer.concat([head, rest]);
      }),
    ),
  );

type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; data: Buffer }
  | { kind: 'delete'; at: number; n: number }
  | { kind: 'length'; frame: number; len: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), data: bytes(12) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 12 }) }),
  fc.record({ kind: fc.constant('length' as const), frame: fc.nat(), len: lengthArb(4000) }),
);

/** Applies mutations to an encoded stream; `length` rewrites the length field of one of the original frames. */
function mutate(frames: readonly Frame[], mutations: readonly Mutation[]): Buffer {
  const stream = Buffer.from(encode(frames));
  const starts: number[] = [];
  let o = 0;
  for (const f of frames) {
    starts.push(o);
    o += 9 + f.body.length;
  }
  let s = stream;
  for (const m of mutations) {
    const at = m.kind === 'length' ? 0 : m.at % (s.length + 1);
    switch (m.kind) {
      case 'flip':
        if (at < s.length) s[at]! ^= m.xor;
        break;
      case 'truncate':
        s = s.subarray(0, at);
        break;
      case 'insert':
        s = Buffer.concat([s.subarray(0, at), m.data, s.subarray(at)]);
        break;
      case 'delete':
        s = Buffer.concat([s.subarray(0, at), s.subarray(at + m.n)]);
        break;
      case 'length': {
        const start = starts.length === 0 ? undefined : starts[m.frame % starts.length]!;
        if (start !== undefined && start + 4 <= s.length) s.writeUInt32BE(m.len, start);
        break;
      }
    }
  }
  return Buffer.from(s);
}

describe('FrameDecoder fuzz', () => {
  const runner = new DecoderRunner();
  after(() => runner.close());

  test('counterexample: a whole frame above a configured limit in one chunk is refused', async () => {
    const stream = encode([{ id: 1, op: 2, body: Buffer.alloc(2000) }]);
    const out = await runner.run({ chunks: [stream], maxFrameBytes: 1024 });
    assert.equal(out.frames.length, 0, 'the oversize frame was handed on');
    assert.ok(out.error?.protocolError, 'no ProtocolError for a frame above the limit');
  });

  for (const [limit, maxArb] of Object.entries(LIMITS) as Array<[string, fc.Arbitrary<number | undefined>]>) {
    test(`random byte streams cut into random chunks: reference frames or a ProtocolError, ${limit} limit`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(bytes(600), noiseStreamArb), cutsArb, maxArb, async (stream, cuts, max) => {
          const out = await runner.run({ chunks: cut(stream, cuts), ...(max !== undefined && { maxFrameBytes: max }) });
          checkOutcome(out, stream, max ?? MAX_FRAME_BYTES);
        }),
        fuzzParams({ msPerRun: 50 }),
      );
    });

    test(`a valid stream cut anywhere decodes to the frames sent, ${limit} limit`, async () => {
      await fc.assert(
        fc.asyncProperty(framesArb, cutsArb, async (frames, cuts) => {
          const stream = encode(frames);
          // Configured: exactly the largest frame, which must be accepted.
          const exactLimit = limit === 'configured';
          const largest = Math.max(5, ...frames.map((f) => 5 + f.body.length));
          const max = exactLimit ? largest : MAX_FRAME_BYTES;
          const out = await runner.run({ chunks: cut(stream, cuts), ...(exactLimit && { maxFrameBytes: max }) });
          checkOutcome(out, stream, max, true);
          assert.deepEqual(
            describeFrames(out.frames.map((f) => ({ ...f, body: f.atCall }))),
            describeFrames(frames),
          );
        }),
        fuzzParams({ msPerRun: 50 }),
      );
    });

    test(`mutated valid streams (flipped, truncated, inserted, deleted bytes, changed lengths): frames or a ProtocolError, ${limit} limit`, async () => {
      await fc.assert(
        fc.asyncProperty(framesArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), cutsArb, maxArb, async (frames, mutations, cuts, max) => {
          const stream = mutate(frames, mutations);
          const out = await runner.run({ chunks: cut(stream, cuts), ...(max !== undefined && { maxFrameBytes: max }) });
          checkOutcome(out, stream, max ?? MAX_FRAME_BYTES);
        }),
        fuzzParams({ msPerRun: 50 }),
      );
    });

    test(`a declared length beyond the limit or below the header fails with the chunk that completes its header, ${limit} limit`, async () => {
      const caseArb = maxArb.chain((max) =>
        fc.record({
          max: fc.constant(max),
          len: fc.oneof(fc.integer({ min: 0, max: 4 }), fc.integer({ min: (max ?? MAX_FRAME_BYTES) + 1, max: 0xffffffff })),
          frames: framesArb.map((fs) => fs.filter((f) => max === undefined || 5 + f.body.length <= max)),
          tail: bytes(64),
          cuts: cutsArb,
        }),
      );
      await fc.assert(
        fc.asyncProperty(caseArb, async ({ max, len, frames, tail, cuts }) => {
          const head = Buffer.alloc(4);
          head.writeUInt32BE(len, 0);
          const valid = encode(frames);
          const stream = Buffer.concat([valid, head, tail]);
          const chunks = cut(stream, cuts);
          const out = await runner.run({ chunks, ...(max !== undefined && { maxFrameBytes: max }) });
          checkOutcome(out, stream, max ?? MAX_FRAME_BYTES);
          assert.equal(out.frames.length, frames.length, 'the valid frames before the bad header were not all handed on');
          // Nothing to wait for once the header is in: the error comes with the chunk that completes it.
          let seen = 0;
          const completing = chunks.findIndex((c) => (seen += c.length) >= valid.length + 4);
          assert.equal(out.threwAt, completing, 'the bad length was not refused with the chunk that completed its header');
        }),
        fuzzParams({ msPerRun: 50 }),
      );
    });

    test(`after stop() nothing is handed on and push() does not throw, ${limit} limit`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(framesArb.map(encode), noiseStreamArb), cutsArb, fc.nat(), maxArb, async (stream, cuts, at, max) => {
          const chunks = cut(stream, cuts);
          const stopBefore = at % (chunks.length + 1);
          const out = await runner.run({ chunks, stopBefore, ...(max !== undefined && { maxFrameBytes: max }) });
          const before = Buffer.concat(chunks.slice(0, stopBefore));
          if (out.error) assert.ok(out.threwAt < stopBefore, `push threw after stop(): ${out.error.message}`);
          // Up to the stop the decoder saw `before` only: its frames are checked against that.
          checkOutcome(out, before, max ?? MAX_FRAME_BYTES);
        }),
        fuzzParams({ msPerRun: 50 }),
      );
    });
  }
});
