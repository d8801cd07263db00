import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Request signing between members of a closed cluster.
 *
 * A member proves it holds a cluster secret without sending it: each
 * internal HTTP request carries one header,
 *
 *   x-flexstore-auth: 1.<time ms>.<sender>.<counter>.<mac>
 *
 * where mac = base64url(HMAC-SHA256(secret, "flexstore-http-v1" \n method \n
 * path+query \n time \n sender \n counter \n hex SHA-256 of the body \n the
 * signed headers)). The signed headers are content-type and every
 * x-flexstore-* header but this one, as "name:value\n" sorted by name: the
 * version and tombstone flag of a replica write are covered, so a captured
 * signature cannot carry another body, path or version.
 *
 * The nonce is <sender>.<counter>: a random id drawn once per process and a
 * counter it increments per request. Unique is all a nonce needs to be; the
 * counter makes the replay cache a small window per sender instead of a set of
 * every nonce seen (ReplayGuard).
 *
 * Signing uses the first secret; verification accepts any of them (two during
 * a rotation). Both read the secrets at each request, so a reload of the
 * secret file takes effect at the next one. A signature is accepted within ±SIGNATURE_WINDOW_MS of the
 * verifier's clock, once.
 *
 * Known gap: without TLS the request is readable on the wire, and only what
 * is listed above is covered (other headers are not).
 */

export const AUTH_HEADER = 'x-flexstore-auth';
/** How far a signature's time may be from the verifier's clock, either way. */
export const SIGNATURE_WINDOW_MS = 60_000;
/** Why a request or connection was refused; the label of flexstore_auth_refused_total. */
export type RefusalReason = 'missing' | 'malformed' | 'stale' | 'bad_signature' | 'replayed' | 'bad_token';
export const REFUSAL_REASONS: readonly RefusalReason[] = ['missing', 'malformed', 'stale', 'bad_signature', 'replayed', 'bad_token'];

/** The short text a refused caller gets; it says which check failed, never more. */
export const REFUSAL_TEXT: Readonly<Record<RefusalReason, string>> = {
  missing: 'missing cluster signature',
  malformed: 'malformed cluster signature',
  stale: 'stale cluster signature timestamp',
  bad_signature: 'bad cluster signature',
  replayed: 'replayed cluster signature',
  bad_token: 'missing or bad admin token',
};

const VERSION = '1';
const DOMAIN = 'flexstore-http-v1';
const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');
const SENDER_RE = /^[A-Za-z0-9_-]{16}$/;
const MAC_RE = /^[A-Za-z0-9_-]{43}$/;

export interface SignInput {
  method: string;
  /** Path and query exactly as sent on the request line. */
  path: string;
  /** Header names in any case; only content-type and x-flexstore-* are signed. */
  headers?: Readonly<Record<string, string | string[] | number | undefined>> | undefined;
  body?: Uint8Array | undefined;
}

export interface ParsedSignature {
  time: number;
  sender: string;
  counter: number;
  mac: Buffer;
}

/**
 * Where signers and verifiers read the secrets, at each request: a
 * ClusterSecurity, whose secrets a reload may replace (security.ts).
 */
export interface SecretSource {
  readonly secrets: readonly Buffer[];
}

/** Signs requests with the source's current first secret. One per process (its sender id is the process's). */
export class RequestSigner {
  private readonly sender = randomBytes(12).toString('base64url');
  private counter = 0;
  private readonly source: SecretSource;

  constructor(secret: Buffer | SecretSource) {
    this.source = Buffer.isBuffer(secret) ? { secrets: [secret] } : secret;
  }

  /** The value of the x-flexstore-auth header for req. */
  sign(req: SignInput, now = Date.now()): string {
    const counter = ++this.counter;
    const mac = computeMac(this.source.secrets[0]!, req, now, this.sender, counter, bodyHash(req.body));
    return `${VERSION}.${now}.${this.sender}.${counter}.${mac.toString('base64url')}`;
  }
}

/**
 * A signer for a process's secrets, or undefined in an open cluster (no
 * secret at start-up; a reload never gives one to an open process).
 */
export function signerFor(source: SecretSource | readonly Buffer[]): RequestSigner | undefined {
  const src: SecretSource = isSource(source) ? source : { secrets: source };
  return src.secrets.length > 0 ? new RequestSigner(src) : undefined;
}

function isSource(s: SecretSource | readonly Buffer[]): s is SecretSource {
  return !Array.isArray(s);
}

/** The header's fields, or undefined when it is not one this release writes. */
export function parseSignature(header: string): ParsedSignature | undefined {
  const parts = header.split('.');
  if (parts.length !== 5 || parts[0] !== VERSION) return undefined;
  const [, t, sender, c, mac] = parts as [string, string, string, string, string];
  if (!/^\d{1,15}$/.test(t) || !/^\d{1,15}$/.test(c) || !SENDER_RE.test(sender) || !MAC_RE.test(mac)) return undefined;
  const counter = Number(c);
  if (counter < 1) return undefined;
  return { time: Number(t), sender, counter, mac: Buffer.from(mac, 'base64url') };
}

/**
 * Checks signatures against every secret and refuses replays. One per
 * listener: the replay window is per verifier.
 */
export class RequestVerifier {
  private readonly replay = new ReplayGuard();
  private readonly source: SecretSource;

  /** secrets: a fixed list, or a source read at each verify (a reload may replace its secrets). */
  constructor(secrets: SecretSource | readonly Buffer[]) {
    this.source = isSource(secrets) ? secrets : { secrets };
  }

  /** The header's fields, or the refusal reason for a missing, malformed or stale one. */
  parse(header: string | string[] | undefined, now = Date.now()): ParsedSignature | RefusalReason {
    if (header === undefined || header === '') return 'missing';
    if (typeof header !== 'string') return 'malformed';
    const sig = parseSignature(header);
    if (sig === undefined) return 'malformed';
    if (Math.abs(now - sig.time) > SIGNATURE_WINDOW_MS) return 'stale';
    return sig;
  }

  /** null when sig signs req with one of the secrets and was not seen before; else why not. */
  verify(sig: ParsedSignature, req: SignInput, now = Date.now()): RefusalReason | null {
    const hash = bodyHash(req.body);
    let ok = false;
    for (const secret of this.source.secrets) {
      const mac = computeMac(secret, req, sig.time, sig.sender, sig.counter, hash);
      // Both 32 bytes (MAC_RE fixes the header's length). Stopping at a match
      // tells a caller only which secret it used, which it knows.
      if (timingSafeEqual(mac, sig.mac)) {
        ok = true;
        break;
      }
    }
    if (!ok) return 'bad_signature';
    // Only a valid signature may move a sender's window; a forged one must not.
    return this.replay.accept(sig.sender, sig.counter, now) ? null : 'replayed';
  }
}

function bodyHash(body: Uint8Array | undefined): string {
  return body === undefined || body.length === 0 ? EMPTY_SHA256 : createHash('sha256').update(body).digest('hex');
}

function computeMac(secret: Buffer, req: SignInput, time: number, sender: string, counter: number, hash: string): Buffer {
  const h = createHmac('sha256', secret);
  h.update(`${DOMAIN}\n${req.method.toUpperCase()}\n${req.path}\n${time}\n${sender}\n${counter}\n${hash}\n`);
  h.update(signedHeaders(req.headers));
  return h.digest();
}

/** content-type and x-flexstore-* (but the auth header) as sorted "name:value\n" lines. */
export function signedHeaders(headers: SignInput['headers']): string {
  if (headers === undefined) return '';
  const lines: string[] = [];
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    const lower = name.toLowerCase();
    if (lower === AUTH_HEADER) continue;
    if (lower === 'content-type' || lower.startsWith('x-flexstore-')) lines.push(`${lower}:${String(v)}\n`);
  }
  if (lines.length > 1) lines.sort();
  return lines.join('');
}

/** Sender windows kept at most; beyond it the least recently seen idle ones go first. */
const MAX_SENDERS = 4096;
/** Counters a sender's window remembers below its highest: later arrivals of older requests still pass once. */
export const REPLAY_WINDOW = 65_536;

/**
 * The replay cache: per sender, the highest counter accepted and a bitmap of
 * the REPLAY_WINDOW counters below it (the anti-replay window of IPsec).
 * A counter below the window is refused: 65,536 later requests of one sender
 * would have to overtake it, far beyond any request deadline. Senders idle
 * longer than the signature window are forgotten, as their old signatures
 * are stale anyway; the table is bounded by MAX_SENDERS. Memory: 8 KiB per
 * active sender (a process that signs).
 */
export class ReplayGuard {
  private readonly senders = new Map<string, SenderWindow>();

  accept(sender: string, counter: number, now: number): boolean {
    let w = this.senders.get(sender);
    if (w === undefined) {
      if (this.senders.size >= MAX_SENDERS) this.evict(now);
      w = { high: 0, bits: new Uint8Array(REPLAY_WINDOW / 8), seen: now };
      this.senders.set(sender, w);
    } else {
      // Map order becomes recency order: evict() looks at the front.
      this.senders.delete(sender);
      this.senders.set(sender, w);
    }
    w.seen = now;
    if (counter > w.high) {
      const d = counter - w.high;
      if (d >= REPLAY_WINDOW) w.bits.fill(0);
      else for (let c = w.high + 1; c < counter; c++) clearBit(w.bits, c);
      w.high = counter;
      setBit(w.bits, counter);
      return true;
    }
    if (counter <= w.high - REPLAY_WINDOW) return false;
    if (getBit(w.bits, counter)) return false;
    setBit(w.bits, counter);
    return true;
  }

  get size(): number {
    return this.senders.size;
  }

  /** Drops idle senders from the least recently seen on; if all are active, the oldest (only members can sign, so only members can crowd the table). */
  private evict(now: number): void {
    for (const [sender, w] of this.senders) {
      if (now - w.seen <= 2 * SIGNATURE_WINDOW_MS && this.senders.size < MAX_SENDERS) return;
      this.senders.delete(sender);
    }
  }
}

interface SenderWindow {
  high: number;
  bits: Uint8Array;
  seen: number;
}

const slot = (c: number) => c % REPLAY_WINDOW;
function setBit(bits: Uint8Array, c: number): void {
  const s = slot(c);
  bits[s >> 3]! |= 1 << (s & 7);
}
function clearBit(bits: Uint8Array, c: number): void {
  const s = slot(c);
  bits[s >> 3]! &= ~(1 << (s & 7));
}
function getBit(bits: Uint8Array, c: number): boolean {
  const s = slot(c);
  return (bits[s >> 3]! & (1 << (s & 7))) !== 0;
}

/** Constant-time equality of two tokens of any length (their SHA-256 digests are compared). */
export function tokenEquals(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
