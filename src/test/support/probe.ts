import { Agent, request, type Dispatcher } from 'undici';
import { AUTH_HEADER, RequestSigner } from '../../cluster/cluster-auth.js';
import { waitFor, type ManagedProcess } from './process.js';

/**
 * Probes of running servers over HTTP, shared by the process cluster of the
 * integration and fault tests and by the benchmark's cluster.
 */

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  json: any;
}

/** What a probe of an https:// URL trusts and presents: a CA, and a client pair for mutual TLS. */
export interface ProbeTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

let defaultTls: ProbeTls | undefined;
const agents = new WeakMap<ProbeTls, Dispatcher>();

/**
 * The TLS every https:// probe uses unless it passes its own: set by a
 * TestCluster started with TLS, so the helpers built on http() (fault
 * workload, checker, waits) reach it unchanged. Plain http:// is unaffected.
 */
export function setProbeTls(tls: ProbeTls | undefined): void {
  defaultTls = tls;
}

let signer: RequestSigner | undefined;
/** What members call: KV servers' internal API, and registration with the registry. */
const MEMBER_PATHS = /^\/(internal\/|register$|heartbeat$)/;

/**
 * Signs every probe of a member's path (/internal/*, /register, /heartbeat)
 * with this cluster secret from now on (undefined: stop), as a member would:
 * the fault checker reads replicas directly, and in a closed cluster those
 * reads need a signature. Probes of the client API are never signed.
 */
export function setProbeSecret(secret: string | undefined): void {
  signer = secret ? new RequestSigner(Buffer.from(secret.split(',')[0]!, 'utf8')) : undefined;
}

function signed(method: string, url: string, headers: Record<string, string> | undefined, body: string | Buffer | undefined) {
  const u = new URL(url);
  if (!signer || !MEMBER_PATHS.test(u.pathname)) return headers;
  const bytes = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
  return { ...headers, [AUTH_HEADER]: signer.sign({ method, path: u.pathname + u.search, headers, body: bytes }) };
}

function dispatcherFor(url: string, tls: ProbeTls | false | undefined): Dispatcher | undefined {
  const t = tls === false ? {} : (tls ?? defaultTls);
  if (!t || !url.startsWith('https:')) return undefined;
  let agent = agents.get(t);
  if (agent === undefined) {
    agent = new Agent({ connect: { ...t } });
    agents.set(t, agent);
  }
  return agent;
}

/** One HTTP exchange; never throws for an HTTP status, only for a transport failure. */
export async function http(
  method: string,
  url: string,
  opts: {
    body?: string | Buffer;
    headers?: Record<string, string>;
    timeoutMs?: number;
    /** For https:// URLs; default: setProbeTls's. false: Node's public roots only, no client pair. */
    tls?: ProbeTls | false;
  } = {},
): Promise<HttpResult> {
  const dispatcher = dispatcherFor(url, opts.tls);
  const res = await request(url, {
    method: method as any,
    ...(dispatcher && { dispatcher }),
    body: opts.body,
    headers: signed(method, url, opts.headers, opts.body),
    headersTimeout: opts.timeoutMs ?? 10_000,
    bodyTimeout: opts.timeoutMs ?? 10_000,
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  const text = body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers as HttpResult['headers'], body, text, json };
}

export function kvUrl(gateway: string, key: string, query = ''): string {
  return `${gateway}/kv/${encodeURIComponent(key)}${query ? `?${query}` : ''}`;
}

/**
 * Up and active: heartbeating, and neither joining nor leaving (a member
 * still joining pulls its ranges; testing or measuring then would see that).
 * `phase` is absent from views of registries that predate it.
 */
export function isUpAndActive(m: { state: string; phase?: string }): boolean {
  return m.state === 'up' && (m.phase ?? 'active') === 'active';
}

/**
 * Waits until a process just started answers `url` (any status below 500,
 * or 503: up but not ready is still up), or fails with its output if it
 * exits first.
 */
export async function waitHealthy(
  proc: ManagedProcess,
  url: string,
  { timeoutMs = 15_000, intervalMs = 50 } = {},
): Promise<void> {
  let exited = false;
  await waitFor(`${proc.name} at ${url}`, async () => {
    if (!proc.running) exited = true;
    if (exited) return true;
    const res = await http('GET', url, { timeoutMs: 1000 });
    return res.status < 500 || res.status === 503;
  }, { timeoutMs, intervalMs });
  if (exited) throw new Error(`${proc.name} exited during start-up:\n${proc.logs()}`);
}
