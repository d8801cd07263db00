import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { RegistryError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import type { Member, MemberView } from './types.js';
import { OPEN_CLUSTER, type ClusterSecurity } from './security.js';
import { certificateProblem, undiciConnectOptions } from './tls.js';
import { AUTH_HEADER, signerFor, type RequestSigner } from './cluster-auth.js';

/**
 * How KV servers and gateways talk to the registry.
 *
 * - RegistryClient: one call per endpoint; non-2xx answers and unreachable
 *   registries both reject with a RegistryError.
 * - Heartbeater (KV servers): registers at once and every interval after,
 *   forever. Registration is the heartbeat, so a restarted registry re-learns
 *   every member within one interval.
 * - MembershipWatcher (gateways): long-polls GET /nodes and emits 'change'.
 *   While the registry is away it keeps serving the last view it saw.
 */

const DEFAULT_TIMEOUT_MS = 2000;

export class RegistryClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly agent: Agent;
  private readonly security: ClusterSecurity;
  /** Signs every call when this process holds a cluster secret (cluster-auth.ts). */
  private readonly signer: RequestSigner | undefined;
  private readonly adminToken: string | undefined;

  /** adminToken: sent as `Authorization: Bearer` on every call (the CLI's `node remove`). */
  constructor(baseUrl: string, opts: { timeoutMs?: number; security?: ClusterSecurity; adminToken?: string } = {}) {
    this.security = opts.security ?? OPEN_CLUSTER;
    this.signer = signerFor(this.security);
    this.adminToken = opts.adminToken;
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.agent = new Agent({ connect: { timeout: this.timeoutMs, ...undiciConnectOptions(this.security) }, keepAliveTimeout: 10_000 });
  }

  /** Registers or heartbeats; resolves with the registry's index after the call. */
  async register(body: { id: string; node_url: string; [extra: string]: unknown }): Promise<{ index: number }> {
    const res = await this.call('POST', '/register', { body });
    return { index: numberField(res, 'index') };
  }

  /** Removes a member for good (decommission). Rejects with status 404 when unknown. */
  async deregister(q: { node_url?: string; id?: string; force?: boolean }): Promise<{ id: string; phase: string }> {
    const res = await this.call('DELETE', '/deregister', { body: q });
    return { id: String(res.id), phase: String(res.phase ?? 'removed') };
  }

  /**
   * The registry's view. With `index`, the registry holds the answer until its
   * index differs from it or `waitSeconds` pass (it caps the wait itself).
   */
  async nodes(opts: { index?: number; waitSeconds?: number; signal?: AbortSignal } = {}): Promise<MemberView> {
    const params = new URLSearchParams();
    if (opts.index !== undefined) params.set('index', String(opts.index));
    if (opts.waitSeconds !== undefined) params.set('wait', String(opts.waitSeconds));
    const qs = params.size > 0 ? `?${params}` : '';
    const blockMs = opts.index !== undefined ? (opts.waitSeconds ?? 0) * 1000 : 0;
    const res = await this.call('GET', `/nodes${qs}`, { extraMs: blockMs, signal: opts.signal });
    return parseView(res);
  }

  /** Closes pooled connections; calls still in flight are aborted. */
  async close(): Promise<void> {
    await this.agent.destroy();
  }

  private async call(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    opts: { body?: object; extraMs?: number; signal?: AbortSignal | undefined },
  ): Promise<Record<string, unknown>> {
    const limitMs = this.timeoutMs + (opts.extraMs ?? 0);
    const timeout = AbortSignal.timeout(limitMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let status: number;
    let text: string;
    try {
      const url = new URL(`${this.baseUrl}${path}`);
      const body = opts.body && Buffer.from(JSON.stringify(opts.body));
      const headers: Record<string, string> = body ? { 'content-type': 'application/json' } : {};
      if (this.adminToken !== undefined) headers.authorization = `Bearer ${this.adminToken}`;
      if (this.signer) headers[AUTH_HEADER] = this.signer.sign({ method, path: url.pathname + url.search, headers, body });
      const res = await request(url, {
        method,
        dispatcher: this.agent,
        signal,
        headersTimeout: limitMs,
        bodyTimeout: limitMs,
        headers,
        ...(body && { body }),
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      const cert = certificateProblem(err);
      const why = timeout.aborted
        ? `timed out after ${limitMs} ms`
        : cert
          ? `its TLS certificate is not trusted (${cert}); check --tls-ca / --ca`
          : (err as Error).message;
      throw new RegistryError(`registry ${this.baseUrl} unreachable: ${method} ${path}: ${why}`, undefined, undefined, {
        cause: err,
      });
    }
    let data: unknown;
    try {
      data = text === '' ? {} : JSON.parse(text);
    } catch (err) {
      throw new RegistryError(`registry answered ${status} with a body that is not JSON`, status, undefined, { cause: err });
    }
    const obj = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
    if (status < 200 || status >= 300) {
      const msg = typeof obj.error === 'string' ? obj.error : `HTTP ${status}`;
      const code = typeof obj.code === 'string' ? obj.code : undefined;
      throw new RegistryError(`registry ${method} ${path} failed with ${status}: ${msg}`, status, code);
    }
    return obj;
  }
}

function numberField(obj: Record<string, unknown>, name: string): number {
  const v = obj[name];
  if (typeof v !== 'number') throw new RegistryError(`registry answer lacks a numeric "${name}"`);
  return v;
}

function parseView(obj: Record<string, unknown>): MemberView {
  const index = numberField(obj, 'index');
  if (!Array.isArray(obj.nodes) || !Array.isArray(obj.members)) {
    throw new RegistryError('registry answer lacks "nodes" and "members" arrays');
  }
  const view: MemberView = { nodes: obj.nodes as string[], members: obj.members as Member[], index };
  if (typeof obj.epoch === 'number') view.epoch = obj.epoch;
  if (typeof obj.tombstoneGraceMs === 'number') view.tombstoneGraceMs = obj.tombstoneGraceMs;
  if (typeof obj.clockMs === 'number') view.clockMs = obj.clockMs;
  return view;
}

/** Two views differ for a watcher when index, epoch, ids, urls, states, phases, ports or storage states differ (heartbeat times do not count). */
function sameView(a: MemberView, b: MemberView): boolean {
  if (a.index !== b.index || a.epoch !== b.epoch || a.members.length !== b.members.length) return false;
  return a.members.every((m, i) => {
    const o = b.members[i]!;
    return m.id === o.id && m.url === o.url && m.state === o.state && m.phase === o.phase && m.tcpPort === o.tcpPort && m.storage === o.storage;
  });
}

export interface HeartbeaterOptions {
  registryUrl: string;
  /** This KV server's stable id. */
  id: string;
  /** The URL other processes reach this KV server by. */
  url: string;
  intervalMs: number;
  log?: Pick<Logger, 'info' | 'warn'>;
  /** Extra fields merged into every heartbeat body (e.g. transfer progress). */
  report?: () => Record<string, unknown>;
  /**
   * Called once when the registry refuses this member for good (409 CONFLICT:
   * it was removed, or was down longer than the tombstone grace). The beat loop stops;
   * the owner must stop serving, since its data may resurrect deleted keys.
   */
  onRejected?: (err: RegistryError) => void;
  /** Cluster secrets and TLS of this process (security.ts). Default: open, plain HTTP. */
  security?: ClusterSecurity;
}

/**
 * Registers with the registry now and every intervalMs after the previous
 * attempt ends. An unreachable registry is logged once at warn and its return
 * once at info; the loop never throws and never gives up. Its timer is unref'd:
 * the heartbeat alone does not keep a process alive, the KV server's own HTTP
 * server does. stop() does not deregister — a stopped server is down, not gone.
 */
export class Heartbeater {
  private readonly client: RegistryClient;
  private readonly log: Pick<Logger, 'info' | 'warn'>;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private running = false;
  private stopped = false;
  private reachable: boolean | null = null;
  private ok = false;

  constructor(private readonly opts: HeartbeaterOptions) {
    this.client = new RegistryClient(opts.registryUrl, { timeoutMs: Math.max(1000, opts.intervalMs), ...(opts.security && { security: opts.security }) });
    this.log = opts.log ?? silentLogger;
  }

  /** True while the last attempt succeeded. */
  get registered(): boolean {
    return this.ok;
  }

  /** Starts the loop; a stopped Heartbeater cannot be started again. */
  start(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    this.tick();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // Destroying the client first aborts a beat stuck on a slow registry.
    await this.client.close();
    await this.inFlight;
  }

  private tick(): void {
    this.inFlight = this.beat().finally(() => {
      this.inFlight = null;
      if (!this.running) return;
      this.timer = setTimeout(() => this.tick(), this.opts.intervalMs);
      this.timer.unref();
    });
  }

  private async beat(): Promise<void> {
    const fields = { registry: this.opts.registryUrl, id: this.opts.id, url: this.opts.url };
    try {
      const { index } = await this.client.register({
        ...this.opts.report?.(),
        id: this.opts.id,
        node_url: this.opts.url,
      });
      this.ok = true;
      if (this.reachable !== true) {
        const msg = this.reachable === null ? 'registered with the registry' : 'reached the registry again';
        this.log.info({ ...fields, index }, msg);
      }
      this.reachable = true;
    } catch (err) {
      this.ok = false;
      if (!this.running) return;
      // MEMBER_BOUND may pass (an authenticated registration once the old url is down): keep beating.
      if (err instanceof RegistryError && err.status === 409 && err.code !== 'MEMBER_BOUND') {
        this.running = false;
        this.log.warn({ ...fields, err: err.message }, 'the registry refused this member');
        this.opts.onRejected?.(err);
        return;
      }
      if (this.reachable !== false) {
        this.log.warn({ ...fields, err: (err as Error).message }, 'cannot register with the registry; retrying every beat');
      }
      this.reachable = false;
    }
  }
}

export interface MembershipWatcherOptions {
  registryUrl: string;
  /** Seconds each long poll may block at the registry. Default 30. */
  waitSeconds?: number;
  /** How long start() waits for a first view before resolving without one. Default 5000 ms. */
  initialTimeoutMs?: number;
  log?: Pick<Logger, 'info' | 'warn'>;
  /** Cluster secrets and TLS of this process (security.ts). Default: open, plain HTTP. */
  security?: ClusterSecurity;
  /** This process's clock, compared with the registry's on every answer. Default Date.now. */
  now?: () => number;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 2000;

/**
 * Follows the registry's member view by long-polling GET /nodes?index=&wait=
 * and emits 'change' (with the new MemberView) whenever it differs from the
 * last one. On errors it keeps the last view, backs off 100 ms doubling to
 * 2 s, and retries until stop().
 *
 * After an error the next poll does not block: a restarted registry may count
 * from a lower index, and waiting for the old number could take forever. Any
 * lower index, or the same index with different members, is a change.
 */
export class MembershipWatcher extends EventEmitter {
  private readonly client: RegistryClient;
  private readonly log: Pick<Logger, 'info' | 'warn'>;
  private readonly waitSeconds: number;
  private readonly initialTimeoutMs: number;
  private current: MemberView | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private firstView: (() => void) | null = null;
  private readonly now: () => number;
  private offsetMs: number | null = null;

  constructor(opts: MembershipWatcherOptions) {
    super();
    this.now = opts.now ?? Date.now;
    this.client = new RegistryClient(opts.registryUrl, { ...(opts.security && { security: opts.security }) });
    this.log = opts.log ?? silentLogger;
    this.waitSeconds = opts.waitSeconds ?? 30;
    this.initialTimeoutMs = opts.initialTimeoutMs ?? 5000;
  }

  /** The last view received, or null before the first one. */
  get view(): MemberView | null {
    return this.current;
  }

  /**
   * This process's clock minus the registry's when the last answer arrived
   * (a few ms high: the answer's travel time), or null before one carried
   * the registry's clock. Comparable with each Member.clockOffsetMs.
   */
  get registryClockOffsetMs(): number | null {
    return this.offsetMs;
  }

  /**
   * Starts watching. Resolves after the first view arrives or after
   * initialTimeoutMs, whichever is first; it never rejects, so a gateway can
   * start while the registry is down (view stays null until it answers).
   */
  async start(): Promise<void> {
    if (this.loop || this.abort.signal.aborted) return;
    const first = new Promise<void>((resolve) => (this.firstView = resolve));
    this.loop = this.run();
    await Promise.race([first, delay(this.initialTimeoutMs, undefined, { ref: false, signal: this.abort.signal }).catch(() => {})]);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.firstView?.();
    await this.loop;
    await this.client.close();
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let since: number | null = null;
    let backoffMs = BACKOFF_MIN_MS;
    let failing = false;
    while (!signal.aborted) {
      try {
        const view: MemberView =
          since === null
            ? await this.client.nodes({ signal })
            : await this.client.nodes({ index: since, waitSeconds: this.waitSeconds, signal });
        if (failing) this.log.info({ registry: this.client.baseUrl, index: view.index }, 'registry reachable again');
        failing = false;
        backoffMs = BACKOFF_MIN_MS;
        since = view.index;
        this.accept(view);
      } catch (err) {
        if (signal.aborted) break;
        if (!failing) {
          this.log.warn(
            { registry: this.client.baseUrl, err: (err as Error).message },
            'cannot reach the registry; keeping the last member view',
          );
        }
        failing = true;
        since = null;
        await delay(backoffMs, undefined, { signal }).catch(() => {});
        backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
      }
    }
  }

  private accept(view: MemberView): void {
    const prev = this.current;
    this.current = view;
    if (view.clockMs !== undefined) this.offsetMs = this.now() - view.clockMs;
    if (this.firstView) {
      this.firstView();
      this.firstView = null;
    }
    if (prev && sameView(prev, view)) return;
    try {
      this.emit('change', view);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "a 'change' listener threw; the watch continues");
    }
  }
}
