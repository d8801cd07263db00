import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { RefusalReason } from './cluster-auth.js';

/**
 * The challenge–response that opens every replica-protocol connection
 * (tcp-protocol.ts), before any frame is read. Both ends prove the cluster
 * secret without sending it:
 *
 *   server → HELLO  "FXH1" [mode u8: 0 open, 1 closed] [3 zero bytes] [server nonce, 16 bytes]
 *   client → AUTH   "FXA1" [client nonce, 16] [HMAC(secret, "flexstore-tcp-client" 0 sn cn), 32]
 *   server → "FXOK" [HMAC(secret, "flexstore-tcp-server" 0 sn cn), 32], with the secret the client used
 *         or "FXNO" [the refusal reason, ASCII, zero-padded to 32], then it closes
 *
 * The client signs with its first secret; the server checks it against all
 * of its secrets (two during a rotation) and answers with the one that
 * matched, so any two processes that share a secret connect, whatever order
 * each holds them in. Both nonces are fresh
 * per connection, so a recorded handshake cannot be replayed, and the two
 * domain strings keep one side's answer from serving as the other's.
 *
 * Without secrets on either side the handshake still happens, with zero MACs
 * (the server's mode byte says it is open): both agree in one round trip.
 * A server with a secret refuses a client without one ('missing'). A client
 * with a secret refuses a server without one: it cannot tell an open
 * replica from a rogue one, and would hand it the cluster's data.
 *
 * Known gap: the handshake authenticates the two ends when the connection
 * opens, not each frame; without TLS an on-path attacker could relay a
 * handshake or inject into the stream. TLS closes that.
 */

const HELLO = Buffer.from('FXH1');
const AUTH = Buffer.from('FXA1');
const OK = Buffer.from('FXOK');
const NO = Buffer.from('FXNO');
const NONCE_BYTES = 16;
const MAC_BYTES = 32;
export const HELLO_BYTES = 4 + 4 + NONCE_BYTES;
export const AUTH_BYTES = 4 + NONCE_BYTES + MAC_BYTES;
export const RESULT_BYTES = 4 + MAC_BYTES;
/** How long a server waits for AUTH by default; a connection that says nothing is closed (a KV server waits at most its FRAME_TIMEOUT_MS). */
export const HANDSHAKE_TIMEOUT_MS = 5000;
const ZERO_MAC = Buffer.alloc(MAC_BYTES);

/** The handshake failed; `reason` is what a server counts (flexstore_auth_refused_total). */
export class HandshakeError extends Error {
  constructor(
    message: string,
    readonly reason: RefusalReason,
    /** The peer did not send its part before the deadline (rather than sending a wrong one). */
    readonly timedOut = false,
  ) {
    super(message);
    this.name = 'HandshakeError';
  }
}

function mac(secret: Buffer, side: 'client' | 'server', serverNonce: Buffer, clientNonce: Buffer): Buffer {
  return createHmac('sha256', secret).update(`flexstore-tcp-${side}\0`).update(serverNonce).update(clientNonce).digest();
}

/** The secret given is a MAC of, or undefined. Every secret is tried, so the time does not say which matched. */
function matchingSecret(secrets: readonly Buffer[], side: 'client' | 'server', sn: Buffer, cn: Buffer, given: Buffer): Buffer | undefined {
  let found: Buffer | undefined;
  for (const s of secrets) if (timingSafeEqual(mac(s, side, sn, cn), given) && found === undefined) found = s;
  return found;
}

/**
 * Server side, on a freshly accepted socket. Resolves once the client proved
 * a secret (or at once after AUTH when this server has none), with the
 * socket paused and any bytes after AUTH put back for the frame reader, and
 * with the secret the client proved (undefined when open): the server drops
 * the connection once a reload no longer holds it.
 * Rejects with HandshakeError after answering FXNO and closing the socket.
 */
export async function acceptMember(socket: Socket, secrets: readonly Buffer[], timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<Buffer | undefined> {
  // Resets before or after a refusal must not reach the process as unhandled errors.
  socket.on('error', () => {});
  const closed = secrets.length > 0;
  const serverNonce = randomBytes(NONCE_BYTES);
  const hello = Buffer.alloc(HELLO_BYTES);
  HELLO.copy(hello, 0);
  hello[4] = closed ? 1 : 0;
  serverNonce.copy(hello, 8);
  socket.write(hello);
  const deadline = Date.now() + timeoutMs;
  const read = async (n: number): Promise<Buffer> => {
    try {
      return await readExact(socket, n, Math.max(1, deadline - Date.now()));
    } catch (err) {
      socket.destroy();
      throw new HandshakeError(`no handshake: ${(err as Error).message}`, 'missing', err instanceof ReadTimeout);
    }
  };
  const refuse = (reason: RefusalReason, message: string): never => {
    const no = Buffer.alloc(RESULT_BYTES);
    NO.copy(no, 0);
    no.write(reason, 4, 'latin1');
    socket.end(no);
    // end() waits for the peer's FIN; a rogue need not send one.
    setTimeout(() => socket.destroy(), 1000).unref();
    throw new HandshakeError(message, reason);
  };
  // The tag first, so a frame sent without a handshake is refused at once.
  if (!(await read(4)).equals(AUTH)) refuse('malformed', 'the first bytes are not a handshake');
  const auth = Buffer.concat([AUTH, await read(AUTH_BYTES - 4)]);
  const clientNonce = auth.subarray(4, 4 + NONCE_BYTES);
  const given = auth.subarray(4 + NONCE_BYTES);
  let proven: Buffer | undefined;
  if (closed) {
    if (given.equals(ZERO_MAC)) refuse('missing', 'the client has no cluster secret');
    proven = matchingSecret(secrets, 'client', serverNonce, clientNonce, given);
    if (proven === undefined) refuse('bad_signature', 'the client proved no cluster secret');
  }
  const ok = Buffer.alloc(RESULT_BYTES);
  OK.copy(ok, 0);
  // Proved with the secret the client used: one the client surely holds.
  if (proven) mac(proven, 'server', serverNonce, clientNonce).copy(ok, 4);
  socket.write(ok);
  return proven;
}

/**
 * Client side, once the socket is connected. Resolves when the server
 * proved a secret this process holds (or both are open), with the socket
 * paused. Rejects with HandshakeError (its message says what to fix); the
 * caller closes the socket.
 */
export async function proveMember(socket: Socket, secrets: readonly Buffer[], timeoutMs: number): Promise<void> {
  const hello = await readExact(socket, HELLO_BYTES, timeoutMs);
  if (!hello.subarray(0, 4).equals(HELLO)) {
    throw new HandshakeError('the replica did not open with a handshake (not a FlexStore replica port of this release?)', 'malformed');
  }
  const serverClosed = hello[4] === 1;
  const serverNonce = hello.subarray(8, 8 + NONCE_BYTES);
  if (!serverClosed && secrets.length > 0) {
    throw new HandshakeError('the replica has no cluster secret; this process has one and will not trust it', 'missing');
  }
  const clientNonce = randomBytes(NONCE_BYTES);
  const auth = Buffer.alloc(AUTH_BYTES);
  AUTH.copy(auth, 0);
  clientNonce.copy(auth, 4);
  if (secrets.length > 0) mac(secrets[0]!, 'client', serverNonce, clientNonce).copy(auth, 4 + NONCE_BYTES);
  socket.write(auth);
  const result = await readExact(socket, RESULT_BYTES, timeoutMs);
  const tag = result.subarray(0, 4);
  if (tag.equals(NO)) {
    const reason = result.toString('latin1', 4).replace(/\0+$/, '');
    throw new HandshakeError(`the replica refused this process's cluster secret (${reason || 'no reason'})`, 'bad_signature');
  }
  if (!tag.equals(OK)) throw new HandshakeError('the replica answered the handshake with something else', 'malformed');
  if (serverClosed && matchingSecret(secrets, 'server', serverNonce, clientNonce, result.subarray(4)) === undefined) {
    throw new HandshakeError('the replica did not prove the cluster secret', 'bad_signature');
  }
}

/**
 * The next n bytes of the socket. Bytes beyond them are put back
 * (unshift) and the socket is left paused, so the next reader, the frame
 * decoder, sees them first.
 */
function readExact(socket: Socket, n: number, timeoutMs: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const timer = setTimeout(() => done(new ReadTimeout(`timed out after ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      have += chunk.length;
      if (have < n) return;
      const all = chunks.length === 1 ? chunk : Buffer.concat(chunks, have);
      socket.pause();
      if (have > n) socket.unshift(all.subarray(n));
      done(null, all.subarray(0, n));
    };
    const onEnd = (): void => done(new Error('connection closed'));
    const onError = (err: Error): void => done(err);
    const done = (err: Error | null, value?: Buffer): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(value!);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}

class ReadTimeout extends Error {}
