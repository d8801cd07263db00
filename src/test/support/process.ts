import { readFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Absolute path of the CLI shim every test process is started through. */
export const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/flexstore.js');

const live = new Set<ChildProcess>();
// A failing test must never leave servers behind on the machine.
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * A port nothing listens on, for a server a test starts. Chosen at random
 * below the kernel's ephemeral range rather than by binding port 0: the
 * processes under test bind port 0 themselves (a KV server's replica TCP
 * port), and the kernel may hand them the very port given out here before
 * the server it was meant for binds it. Never the same port twice per process.
 */
export async function freePort(): Promise<number> {
  const [low, high] = FREE_PORT_RANGE;
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (handedOut.has(port) || !(await canBind(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port found in ${low}-${high}`);
}

const handedOut = new Set<number>();

/** [low, high): below the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, else 32768). */
const FREE_PORT_RANGE: readonly [number, number] = (() => {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // Not Linux: keep the IANA default.
  }
  return [Math.max(1024, ephemeralLow - 12_000), ephemeralLow];
})();

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    // The unspecified address: taken on any interface means taken.
    srv.listen(port, '0.0.0.0', () => srv.close(() => resolve(true)));
  });
}

/** Polls probe until it returns a value other than undefined/false (its errors count as not yet), or times out. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 15_000, intervalMs = 50 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: last error ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** How a child process ended: its exit code or the signal that ended it (both null if it never started). */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * A child process with its output kept for diagnosis: the processes a test
 * or a benchmark starts (FlexStore servers, baselines, etcd members). Every
 * one is killed if this process exits first.
 */
export class ManagedProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<ProcessExit>;
  private readonly output: string[] = [];

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
  ) {
    this.child = spawn(command, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.child);
    this.child.stdout!.on('data', (chunk: Buffer) => this.keep(chunk));
    this.child.stderr!.on('data', (chunk: Buffer) => this.keep(chunk));
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        live.delete(this.child);
        resolve({ code, signal });
      });
      // A command that cannot be started (not installed) ends here, not in 'exit'.
      this.child.on('error', (err) => {
        this.output.push(`spawn error: ${err.message}\n`);
        live.delete(this.child);
        resolve({ code: null, signal: null });
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

  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child.kill(sig);
  }

  /** SIGKILL and wait until the OS has reaped the process. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, falling back to SIGKILL after graceMs. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  // Only the most recent output is kept: a long run must not grow without bound.
  private keep(chunk: Buffer): void {
    this.output.push(chunk.toString());
    if (this.output.length > 400) this.output.splice(0, 100);
  }
}

/**
 * One FlexStore process started through the CLI shim, as an operator would
 * start it. `env` is added to this process's environment (LOG_LEVEL is warn
 * unless it says otherwise); `nodeFlags` go to Node.js itself (--cpu-prof,
 * --expose-gc).
 */
export class FlexProcess extends ManagedProcess {
  constructor(
    name: string,
    readonly args: string[],
    env: Record<string, string> = {},
    nodeFlags: string[] = [],
  ) {
    super(name, process.execPath, [...nodeFlags, BIN, ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env } });
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one `flexstore` CLI command to its end (SIGKILLed past timeoutMs, which rejects). */
export function runCli(
  args: string[],
  { timeoutMs = 20_000, env }: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(env && { env }) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`flexstore ${args.join(' ')} did not finish in ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
