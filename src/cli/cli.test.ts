import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FlexStoreClient, FlexStoreConnectionError, FlexStoreRequestError } from '../client/index.js';

/**
 * The flexstore command as users run it: `node bin/flexstore.js ...` in a
 * child process. Client commands and the client library they use run against
 * a small in-process fake gateway that speaks the gateway's HTTP API; server
 * commands run only when their modules are built.
 */

const BIN = fileURLToPath(new URL('../../bin/flexstore.js', import.meta.url));
const DIST = fileURLToPath(new URL('..', import.meta.url));
const RUN_TIMEOUT_MS = 20_000;

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

const live = new Set<ChildProcess>();

function spawnCli(args: string[], env: Record<string, string | undefined> = {}): ChildProcess {
  // A clean environment so a developer's PORT or FLEXSTORE_GATEWAY cannot change what is tested.
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

function run(args: string[], opts: { env?: Record<string, string | undefined>; input?: Buffer | string } = {}): Promise<RunResult> {
  const child = spawnCli(args, opts.env);
  return collect(child, opts.input);
}

function collect(child: ChildProcess, input?: Buffer | string): Promise<RunResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => out.push(c));
  child.stderr!.on('data', (c: Buffer) => err.push(c));
  child.stdin!.end(input);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`flexstore ${child.spawnargs.slice(2).join(' ')} did not finish within ${RUN_TIMEOUT_MS} ms`));
    }, RUN_TIMEOUT_MS);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** Lines of stderr that FlexStore wrote, without runtime deprecation warnings. */
function ownLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => l !== '' && !/^\(node:\d+\)|^\(Use `node --trace/.test(l));
}

async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function portIsFree(port: number): Promise<boolean> {
  const srv = createNetServer();
  return new Promise((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

after(() => {
  for (const child of live) child.kill('SIGKILL');
});

describe('usage', () => {
  it('--help exits 0 and lists the commands and options', async () => {
    const res = await run(['--help']);
    assert.equal(res.code, 0);
    const text = res.stdout.toString();
    for (const word of ['registry', 'kv', 'gateway', 'dev', 'put', 'get', 'del', 'ls', 'status', '--help', '--version']) {
      assert.ok(text.includes(word), `top-level help mentions ${word}`);
    }
  });

  it('kv --help shows each option with its environment variable and default', async () => {
    const res = await run(['kv', '--help']);
    assert.equal(res.code, 0);
    const text = res.stdout.toString();
    assert.match(text, /--port <port>\s+PORT\s+.*\(default: 8001\)/);
    assert.match(text, /--registry-url <url>\s+REGISTRY_URL\s+.*\(default: http:\/\/localhost:8000\)/);
    assert.match(text, /--data-dir <dir>\s+DATA_DIR\s+.*\(default: \.\/data\/kv-<port>\)/);
    assert.match(text, /--heartbeat-ms <ms>\s+HEARTBEAT_INTERVAL_MS\s+.*\(default: 1000\)/);
    assert.match(text, /--log-level <level>\s+LOG_LEVEL\s+.*\(default: info\)/);
  });

  it('-h works on every command', async () => {
    for (const command of ['registry', 'gateway', 'dev', 'put', 'get', 'del', 'ls', 'status']) {
      const res = await run([command, '-h']);
      assert.equal(res.code, 0, `${command} -h`);
      assert.match(res.stdout.toString(), new RegExp(`^Usage: flexstore ${command}`));
    }
  });

  it('an unknown option exits 2 with one line on stderr', async () => {
    for (const args of [['--nope'], ['registry', '--nope'], ['get', 'k', '-x']]) {
      const res = await run(args);
      assert.equal(res.code, 2, args.join(' '));
      assert.equal(res.stdout.length, 0);
      const lines = ownLines(res.stderr);
      assert.equal(lines.length, 1, res.stderr);
      assert.match(lines[0]!, /unknown option/);
    }
  });

  it('an unknown command or none at all exits 2', async () => {
    assert.equal((await run(['frobnicate'])).code, 2);
    assert.equal((await run([])).code, 2);
  });

  it('registry --port abc exits 2 naming the option', async () => {
    const res = await run(['registry', '--port', 'abc']);
    assert.equal(res.code, 2);
    assert.deepEqual(ownLines(res.stderr), ['flexstore registry: invalid --port "abc": expected a port, an integer from 0 to 65535']);
  });

  it('a bad environment value exits 2 naming the variable', async () => {
    const res = await run(['gateway'], { env: { REPLICATION_FACTOR: '0' } });
    assert.equal(res.code, 2);
    assert.match(ownLines(res.stderr)[0]!, /REPLICATION_FACTOR "0" \(from the environment\)/);
  });

  it('--version prints the package version', async () => {
    const res = await run(['--version']);
    assert.equal(res.code, 0);
    assert.match(res.stdout.toString(), /^\d+\.\d+\.\d+/);
  });
});

// ---------------------------------------------------------------------------
// Client commands against a fake gateway

interface Stored {
  value: Buffer;
  contentType: string;
  version: string;
}

class FakeGateway {
  readonly data = new Map<string, Stored>();
  readonly requests: string[] = [];
  /** When set, every /kv request fails with this error. */
  failWith: { status: number; code: string; error: string } | undefined;
  private server: Server | undefined;
  private counter = 0;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url!, 'http://x');
    this.requests.push(`${req.method} ${req.url}`);
    const json = (status: number, obj: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(obj));
    };
    const raw = req.url!.split('?')[0]!;
    if (raw === '/health') return json(503, { status: 'degraded' });
    if (raw === '/cluster') {
      return json(200, {
        members: [
          { id: 'node-a', url: 'http://127.0.0.1:8001', state: 'up', ownership: 0.3412 },
          {
            id: 'node-b',
            url: 'http://127.0.0.1:8002',
            state: 'down',
            phase: 'leaving',
            ownership: 0.6588,
            transfer: { syncedEpoch: 3, rangesTotal: 40, rangesDone: 12, keysMoved: 5310, keysMovedTotal: 9000, hintsPending: 3 },
          },
        ],
        index: 4,
      });
    }
    if (this.failWith && raw.startsWith('/kv')) {
      return json(this.failWith.status, { success: false, error: this.failWith.error, code: this.failWith.code });
    }
    if (raw === '/kv' && req.method === 'GET') {
      const prefix = url.searchParams.get('prefix') ?? '';
      const afterKey = url.searchParams.get('after');
      // A small page size so paging is always exercised.
      const limit = Math.min(Number(url.searchParams.get('limit') ?? 2), 2);
      const keys = [...this.data.keys()].filter((k) => k.startsWith(prefix) && (afterKey === null || k > afterKey)).sort();
      const page = keys.slice(0, limit);
      return json(200, { keys: page, next: keys.length > limit ? page[page.length - 1]! : null });
    }
    if (raw.startsWith('/kv/')) {
      const key = decodeURIComponent(raw.slice('/kv/'.length));
      const missing = () => json(404, { success: false, error: `key not found: ${JSON.stringify(key)}`, code: 'KEY_NOT_FOUND', key });
      if (req.method === 'PUT') {
        const version = `00000000000${++this.counter}.000000.fake`;
        this.data.set(key, { value: body, contentType: req.headers['content-type'] ?? '', version });
        return json(201, { success: true, key, version }, { etag: `"${version}"` });
      }
      const rec = this.data.get(key);
      if (!rec) return missing();
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': rec.contentType, etag: `"${rec.version}"` }).end(rec.value);
        return;
      }
      if (req.method === 'DELETE') {
        this.data.delete(key);
        return json(200, { success: true, key });
      }
    }
    json(404, { success: false, error: 'no route', code: 'NOT_FOUND' });
  }
}

describe('client commands', () => {
  const gw = new FakeGateway();
  let env: Record<string, string>;
  before(async () => {
    await gw.start();
    env = { FLEXSTORE_GATEWAY: gw.url };
  });
  after(() => gw.stop());

  it('put then get round-trips a string value', async () => {
    const put = await run(['put', 'greeting', 'hello world'], { env });
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stdout.toString(), /^stored "greeting" version \S+\n$/);
    assert.equal(gw.data.get('greeting')?.contentType, 'text/plain; charset=utf-8');

    const get = await run(['get', 'greeting'], { env });
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout.toString(), 'hello world');
  });

  it("put KEY - stores stdin's bytes unchanged, get writes them back raw", async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 254, 10, 13, 0x80]);
    const put = await run(['put', 'bin', '-', '--content-type', 'application/x-test'], { env, input: bytes });
    assert.equal(put.code, 0, put.stderr);
    assert.deepEqual(gw.data.get('bin')?.value, bytes);
    assert.equal(gw.data.get('bin')?.contentType, 'application/x-test');

    const get = await run(['get', 'bin'], { env });
    assert.deepEqual(get.stdout, bytes);

    const json = await run(['get', 'bin', '--json'], { env });
    const parsed = JSON.parse(json.stdout.toString());
    assert.equal(parsed.encoding, 'base64');
    assert.deepEqual(Buffer.from(parsed.value, 'base64'), bytes);
    assert.equal(parsed.contentType, 'application/x-test');
  });

  it('keys are percent-encoded as one path segment', async () => {
    const key = 'users/42 ü?#%';
    const put = await run(['put', '--gateway', gw.url, '--', key, 'v'], {});
    assert.equal(put.code, 0, put.stderr);
    assert.ok(gw.data.has(key));
    assert.ok(gw.requests.includes(`PUT /kv/${encodeURIComponent(key)}`), gw.requests.join('\n'));
  });

  it('--consistency is sent as a query parameter', async () => {
    const res = await run(['get', 'greeting', '--consistency', 'all'], { env });
    assert.equal(res.code, 0);
    assert.ok(gw.requests.includes('GET /kv/greeting?consistency=all'), gw.requests.join('\n'));
  });

  it('get of a missing key exits 1 with the error line', async () => {
    const res = await run(['get', 'nope'], { env });
    assert.equal(res.code, 1);
    assert.equal(res.stdout.length, 0);
    assert.deepEqual(ownLines(res.stderr), ['error: key not found: "nope" (KEY_NOT_FOUND)']);
  });

  it('del removes a key; deleting it again exits 1', async () => {
    await run(['put', 'tmp', 'x'], { env });
    const del = await run(['del', 'tmp'], { env });
    assert.equal(del.code, 0, del.stderr);
    assert.equal(gw.data.has('tmp'), false);
    const again = await run(['del', 'tmp'], { env });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /\(KEY_NOT_FOUND\)/);
  });

  it('ls follows next pages and honours --limit', async () => {
    for (const k of ['p/1', 'p/2', 'p/3', 'p/4', 'p/5', 'q/1']) gw.data.set(k, { value: Buffer.from(k), contentType: 'text/plain', version: 'v' });
    const all = await run(['ls', 'p/'], { env });
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stdout.toString(), 'p/1\np/2\np/3\np/4\np/5\n');

    const limited = await run(['ls', 'p/', '--limit', '3', '--json'], { env });
    assert.deepEqual(JSON.parse(limited.stdout.toString()), ['p/1', 'p/2', 'p/3']);
  });

  it('status prints a table of members with ownership in percent', async () => {
    const res = await run(['status'], { env });
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.toString().trimEnd().split('\n');
    assert.match(lines[0]!, /^ID\s+URL\s+STATE\s+PHASE\s+OWNERSHIP\s+TRANSFER$/);
    assert.match(lines[1]!, /^node-a\s+http:\/\/127\.0\.0\.1:8001\s+up\s+active\s+34\.1%\s+-$/);
    assert.match(lines[2]!, /^node-b\s+http:\/\/127\.0\.0\.1:8002\s+down\s+leaving\s+65\.9%\s+12\/40 ranges, 5,310 keys, hints 3$/);
  });

  it("a gateway error prints 'error: <message> (<code>)' and exits 1", async () => {
    gw.failWith = { status: 503, code: 'QUORUM_NOT_MET', error: 'put needs 2 replica(s) but only 1 answered' };
    try {
      const res = await run(['put', 'k', 'v'], { env });
      assert.equal(res.code, 1);
      assert.deepEqual(ownLines(res.stderr), ['error: put needs 2 replica(s) but only 1 answered (QUORUM_NOT_MET)']);
    } finally {
      gw.failWith = undefined;
    }
  });

  it('a 404 that is not KEY_NOT_FOUND (a wrong gateway URL) is an error, not a missing key', async () => {
    const res = await run(['get', 'greeting', '--gateway', `${gw.url}/not-a-gateway`]);
    assert.equal(res.code, 1);
    assert.deepEqual(ownLines(res.stderr), ['error: no route (NOT_FOUND)']);
  });

  it('an unreachable gateway exits 1 with one line', async () => {
    const port = await freePort();
    const res = await run(['get', 'k', '--gateway', `http://127.0.0.1:${port}`]);
    assert.equal(res.code, 1);
    const lines = ownLines(res.stderr);
    assert.equal(lines.length, 1, res.stderr);
    assert.match(lines[0]!, /^error: cannot reach gateway .*\(ECONNREFUSED\)$/);
  });
});

describe('FlexStoreClient', () => {
  const gw = new FakeGateway();
  let client: FlexStoreClient;
  before(async () => {
    await gw.start();
    client = new FlexStoreClient({ gateway: gw.url, consistency: 'one' });
  });
  after(async () => {
    await client.close();
    await gw.stop();
  });

  it('put, get, getString and delete', async () => {
    const put = await client.put('a/b', 'v1');
    assert.equal(put.key, 'a/b');
    assert.match(put.version, /fake$/);
    const got = await client.get('a/b');
    assert.equal(got?.value.toString(), 'v1');
    assert.equal(got?.contentType, 'text/plain; charset=utf-8');
    assert.equal(got?.version, put.version);
    assert.equal(await client.getString('a/b'), 'v1');
    assert.ok(gw.requests.includes('GET /kv/a%2Fb?consistency=one'), 'client default consistency is sent');
    assert.equal(await client.delete('a/b', { consistency: 'all' }), true);
    assert.ok(gw.requests.includes('DELETE /kv/a%2Fb?consistency=all'), 'per-call consistency wins');
    assert.equal(await client.get('a/b'), null);
    assert.equal(await client.delete('a/b'), false);
  });

  it('bytes keep their content type', async () => {
    await client.put('bytes', new Uint8Array([1, 2, 3]));
    const got = await client.get('bytes');
    assert.deepEqual([...got!.value], [1, 2, 3]);
    assert.equal(got!.contentType, 'application/octet-stream');
  });

  it('list returns one page; keys() follows every page', async () => {
    for (const k of ['x1', 'x2', 'x3', 'x4', 'x5']) await client.put(k, k);
    const page = await client.list({ prefix: 'x' });
    assert.deepEqual(page, { keys: ['x1', 'x2'], next: 'x2' });
    const all: string[] = [];
    for await (const k of client.keys('x')) all.push(k);
    assert.deepEqual(all, ['x1', 'x2', 'x3', 'x4', 'x5']);
  });

  it('errors carry status, code, message and body', async () => {
    gw.failWith = { status: 413, code: 'PAYLOAD_TOO_LARGE', error: 'value is larger than 1048576 bytes' };
    try {
      await assert.rejects(client.put('k', 'v'), (err: unknown) => {
        assert.ok(err instanceof FlexStoreRequestError);
        assert.equal(err.status, 413);
        assert.equal(err.code, 'PAYLOAD_TOO_LARGE');
        assert.equal(err.message, 'value is larger than 1048576 bytes');
        assert.deepEqual(err.body, { success: false, error: 'value is larger than 1048576 bytes', code: 'PAYLOAD_TOO_LARGE' });
        return true;
      });
    } finally {
      gw.failWith = undefined;
    }
  });

  it('health reports an unhealthy answer without throwing; cluster returns the view', async () => {
    assert.deepEqual(await client.health(), { ok: false, status: 503, body: { status: 'degraded' } });
    const view = (await client.cluster()) as { members: unknown[] };
    assert.equal(view.members.length, 2);
  });

  it('a gateway URL with a path prefix keeps the prefix', async () => {
    const prefixed = new FlexStoreClient({ gateway: `${gw.url}/prefix/` });
    try {
      await assert.rejects(prefixed.get('k'), (err: unknown) => err instanceof FlexStoreRequestError && err.code === 'NOT_FOUND');
      assert.ok(gw.requests.includes('GET /prefix/kv/k'), gw.requests.join('\n'));
    } finally {
      await prefixed.close();
    }
  });

  it('no answer rejects with FlexStoreConnectionError', async () => {
    const port = await freePort();
    const dead = new FlexStoreClient({ gateway: `http://127.0.0.1:${port}` });
    try {
      await assert.rejects(dead.get('k'), (err: unknown) => err instanceof FlexStoreConnectionError && err.code === 'ECONNREFUSED');
    } finally {
      await dead.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Server commands (run once the server modules are built)


/** Collects a child's output as text while it runs. */
function watch(child: ChildProcess): { stdout: () => string; stderr: () => string; exited: Promise<number | null>; checkAlive: () => void } {
  let out = '';
  let err = '';
  let gone = false;
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((r) =>
    child.once('close', (code) => {
      gone = true;
      r(code);
    }),
  );
  const checkAlive = () => {
    if (gone) throw new Error(`flexstore ${child.spawnargs.slice(2).join(' ')} exited early:\n${err}`);
  };
  return { stdout: () => out, stderr: () => err, exited, checkAlive };
}

async function exitWithin(exited: Promise<number | null>, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms`)), ms)));
  try {
    return await Promise.race([exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('registry server', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'flexstore-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints one listening line, serves /health, and exits 0 on SIGTERM leaving the port free', async () => {
    const child = spawnCli(['registry', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(dir, 'reg'), '--log-level', 'silent']);
    const io = watch(child);
    const url = await waitFor('the listening line', () => {
      io.checkAlive();
      return /flexstore registry listening on (\S+)/.exec(io.stdout())?.[1];
    });
    const res = await fetch(`${url}/health`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    child.kill('SIGTERM');
    assert.equal(await exitWithin(io.exited, 10_000), 0, io.stderr());
    assert.ok(await portIsFree(Number(new URL(url).port)));
  });

  it('a port in use exits 1 with a one-line error', async () => {
    const blocker = createNetServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    try {
      const port = (blocker.address() as AddressInfo).port;
      const res = await run(['registry', '--port', String(port), '--host', '127.0.0.1', '--data-dir', join(dir, 'reg2'), '--log-level', 'silent']);
      assert.equal(res.code, 1);
      const lines = ownLines(res.stderr);
      assert.equal(lines.length, 1, res.stderr);
      assert.match(lines[0]!, /^flexstore registry: cannot start: .*EADDRINUSE/);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });
});

/** The pid of a process whose argv contains `args` in order (read from /proc; Linux only). */
function pidOf(args: string[]): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const at = argv.indexOf(args[0]!);
    if (at !== -1 && args.every((a, i) => argv[at + i] === a)) return Number(entry);
  }
  return undefined;
}

describe('dev cluster', () => {
  it('starts every server, serves put/get through the gateway, and stops cleanly on SIGTERM', { timeout: 90_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flexstore-dev-'));
    const ports = { registry: await freePort(), gateway: await freePort(), kv: [await freePort(), await freePort(), await freePort()] };
    const args = [
      'dev',
      '--registry-port', String(ports.registry),
      '--gateway-port', String(ports.gateway),
      '--kv-ports', ports.kv.join(','),
      '--data-dir', dir,
      '--log-level', 'warn',
    ];
    try {
      const child = spawnCli(args);
      const io = watch(child);
      await waitFor(
        'the summary',
        () => {
          io.checkAlive();
          return io.stdout().includes('FlexStore dev cluster is up') ? true : undefined;
        },
        60_000,
      );
      const env = { FLEXSTORE_GATEWAY: `http://127.0.0.1:${ports.gateway}` };
      // Membership reaches the gateway asynchronously; a write succeeds once it knows a quorum.
      await waitFor('a successful put', async () => ((await run(['put', 'dev-key', 'dev-value'], { env })).code === 0 ? true : undefined), 20_000);
      assert.equal((await run(['get', 'dev-key'], { env })).stdout.toString(), 'dev-value');

      // A KV server killed with SIGKILL: dev says so and the rest keeps serving.
      const kvPid = pidOf(['kv', '--port', String(ports.kv[1])]);
      assert.ok(kvPid, 'found the KV child');
      process.kill(kvPid, 'SIGKILL');
      await waitFor('the report', () => (io.stderr().includes('keeps running') ? true : undefined), 10_000);
      io.checkAlive();
      assert.equal((await run(['get', 'dev-key'], { env })).stdout.toString(), 'dev-value');

      child.kill('SIGTERM');
      assert.equal(await exitWithin(io.exited, 20_000), 0, io.stderr());
      for (const port of [ports.registry, ports.gateway, ...ports.kv]) assert.ok(await portIsFree(port), `port ${port} is free`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
