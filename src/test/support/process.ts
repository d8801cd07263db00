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

/** One FlexStore process started through the CLI, with its output kept for diagnosis. */
export class FlexProcess {
  readonly child: ChildProcess;
  private readonly output: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    readonly args: string[],
    env: Record<string, string> = {},
  ) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this.child);
    const keep = (chunk: Buffer) => {
      this.output.push(chunk.toString());
      if (this.output.length > 400) this.output.splice(0, 100);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        live.delete(this.child);
        resolve({ code, signal });
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
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
}
