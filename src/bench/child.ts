import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'undici';
import { waitFor } from '../test/support/process.js';

const live = new Set<ChildProcess>();
// An interrupted run must not leave servers holding ports and CPU behind.
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** A process the bench started (a baseline, an etcd member), with its output kept for diagnosis. */
export class ChildService {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  private readonly output: string[] = [];
  private stdoutBuf = '';
  private readonly lineWaiters: Array<(line: string) => void> = [];

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
  ) {
    this.child = spawn(command, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.child);
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.keep(chunk);
      this.stdoutBuf += chunk.toString();
      this.deliverLines();
      // Lines nobody asked for are only kept in the log.
      if (this.lineWaiters.length === 0 && this.stdoutBuf.length > 65_536) this.stdoutBuf = '';
    });
    this.child.stderr!.on('data', (chunk: Buffer) => this.keep(chunk));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', () => {
        live.delete(this.child);
        resolve();
      });
      this.child.on('error', (err) => {
        this.output.push(`spawn error: ${err.message}\n`);
        live.delete(this.child);
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  logs(): string {
    return this.output.join('');
  }

  /** The next line the process prints on stdout; rejects if it exits first or takes longer than timeoutMs. */
  async nextLine(timeoutMs = 15_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} printed nothing within ${timeoutMs} ms:\n${this.logs()}`)), timeoutMs);
      void this.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited during start-up:\n${this.logs()}`));
      });
      this.lineWaiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
      this.deliverLines();
    });
  }

  private deliverLines(): void {
    let nl;
    while (this.lineWaiters.length > 0 && (nl = this.stdoutBuf.indexOf('\n')) !== -1) {
      const line = this.stdoutBuf.slice(0, nl);
      this.stdoutBuf = this.stdoutBuf.slice(nl + 1);
      this.lineWaiters.shift()!(line);
    }
  }

  /** SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private keep(chunk: Buffer): void {
    this.output.push(chunk.toString());
    if (this.output.length > 400) this.output.splice(0, 100);
  }
}

/** Polls probe until it returns a value other than undefined/false, or times out (the test suite's waitFor). */
export function waitUntil<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  return waitFor(what, probe, { timeoutMs, intervalMs: 100 });
}

/** One small HTTP exchange for set-up and probes (not for load). */
export async function fetchJson(
  method: 'GET' | 'POST' | 'PUT',
  url: string,
  body?: unknown,
  timeoutMs = 2000,
): Promise<{ status: number; json: any }> {
  const res = await request(url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, json };
}
