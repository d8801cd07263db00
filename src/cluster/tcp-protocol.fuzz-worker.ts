import { parentPort } from 'node:worker_threads';
import { ProtocolError } from './errors.js';
import { FrameDecoder } from './tcp-protocol.js';

/**
 * Runs FrameDecoder cases for tcp-protocol.fuzz.test.ts in a worker thread,
 * so that a push() that never returns is caught by the test's deadline (it
 * terminates the worker) instead of stalling the test process.
 */

export interface DecodeCase {
  chunks: Uint8Array[];
  /** Passed to the constructor when set; the decoder's default otherwise. */
  maxFrameBytes?: number;
  /** stop() is called before pushing the chunk of this index (the rest is still pushed). */
  stopBefore?: number;
}

export interface DecodedFrame {
  id: number;
  op: number;
  /** The body as it was when handed on. */
  atCall: Uint8Array;
  /** The body view as it is after every chunk was pushed: the decoder must not reuse its bytes. */
  atEnd: Uint8Array;
}

export interface DecodeOutcome {
  frames: DecodedFrame[];
  /** Index of the chunk whose push threw; -1 when none did. */
  threwAt: number;
  /** What it threw. */
  error?: { protocolError: boolean; name: string; message: string; stack?: string };
}

function run(c: DecodeCase): DecodeOutcome {
  const seen: Array<{ id: number; op: number; atCall: Buffer; view: Buffer }> = [];
  const onFrame = (id: number, op: number, body: Buffer): void => {
    seen.push({ id, op, atCall: Buffer.from(body), view: body });
  };
  const decoder = c.maxFrameBytes === undefined ? new FrameDecoder(onFrame) : new FrameDecoder(onFrame, { maxFrameBytes: c.maxFrameBytes });
  const out: DecodeOutcome = { frames: [], threwAt: -1 };
  for (let i = 0; i < c.chunks.length; i++) {
    if (i === c.stopBefore) decoder.stop();
    const chunk = c.chunks[i]!;
    try {
      decoder.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      out.threwAt = i;
      out.error = { protocolError: err instanceof ProtocolError, name: e.name, message: e.message, ...(e.stack !== undefined && { stack: e.stack }) };
      break;
    }
  }
  // A connection that ends or fails is stopped: whatever the decoder holds (a deadline, say) goes with it.
  decoder.stop();
  out.frames = seen.map((f) => ({ id: f.id, op: f.op, atCall: f.atCall, atEnd: Buffer.from(f.view) }));
  return out;
}

parentPort?.on('message', (c: DecodeCase) => parentPort!.postMessage(run(c)));
// Loaded: the test's deadlines start only now, so a slow start-up is not taken for a hang.
parentPort?.postMessage('ready');
