import { http } from '../test/support/probe.js';
import { ManagedProcess, waitFor } from '../test/support/process.js';

/**
 * A process the bench started (a baseline, an etcd member): the test
 * suite's launcher (output kept, killed if the bench exits first) plus
 * reading what it prints on stdout line by line, for a service that reports
 * its port that way.
 */
export class ChildService extends ManagedProcess {
  private stdoutBuf = '';
  private readonly lineWaiters: Array<(line: string) => void> = [];

  constructor(name: string, command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
    super(name, command, args, opts);
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.stdoutBuf += chunk.toString();
      this.deliverLines();
      // Lines nobody asked for are only kept in the log.
      if (this.lineWaiters.length === 0 && this.stdoutBuf.length > 65_536) this.stdoutBuf = '';
    });
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
}

/** The bench's pace of waiting: a machine under load answers slower than one running tests, so longer and less often. */
export const BENCH_WAIT: Readonly<{ timeoutMs: number; intervalMs: number }> = { timeoutMs: 20_000, intervalMs: 100 };

/** The test suite's waitFor at the bench's pace. */
export function waitUntil<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = BENCH_WAIT.timeoutMs): Promise<T> {
  return waitFor(what, probe, { timeoutMs, intervalMs: BENCH_WAIT.intervalMs });
}

/** One small HTTP exchange for set-up and probes (not for load). */
export async function fetchJson(
  method: 'GET' | 'POST' | 'PUT',
  url: string,
  body?: unknown,
  timeoutMs = 2000,
): Promise<{ status: number; json: any }> {
  const res = await http(method, url, {
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
    timeoutMs,
  });
  return { status: res.status, json: res.json };
}
