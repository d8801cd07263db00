import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AUTH_HEADER, RequestSigner } from '../../cluster/cluster-auth.js';
import { encodePut } from '../../cluster/tcp-codec.js';
import { proveMember } from '../../cluster/tcp-handshake.js';
import { record } from '../support/records.js';
import { assertAllRead, freePort, http, kvUrl, runCli, testClusters, waitFor, type Entries, type TestCluster } from '../support/index.js';

/**
 * A closed cluster (docs/security.md): every probe of issue 11 that needs no
 * credential now fails with 401 UNAUTHORIZED (TCP: the connection is closed),
 * applies nothing, and the cluster keeps serving; the secret rotates under
 * load without losing an acknowledged write. Every address is 127.0.0.1.
 */

const SECRET = 'closed-cluster-secret-0123456789';
const ADMIN = 'admin-token-for-the-test';
const FORGED = 'ffffffffffff.000000.zzzz';

const json = { 'content-type': 'application/json' };

async function members(c: TestCluster): Promise<Array<{ id: string; url: string; state: string; tcpPort?: number }>> {
  return (await http('GET', `${c.registryUrl}/nodes`)).json.members;
}

function assertRefused(res: { status: number; json: any; text: string }, what: string): void {
  assert.equal(res.status, 401, `${what}: ${res.text}`);
  assert.equal(res.json?.code, 'UNAUTHORIZED', what);
  assert.equal(res.json?.success, false, what);
}

describe('a closed cluster', () => {
  const clusters = testClusters();
  let c: TestCluster;
  let rogue: Server;
  let roguePort: number;

  before(async () => {
    c = await clusters({ kvCount: 4, secret: SECRET, registryArgs: ['--admin-token', ADMIN] });
    // A rogue "member": a server of the test that answers every health check.
    roguePort = await freePort();
    rogue = createHttpServer((_req, res) => res.end('{"status":"ok"}'));
    await new Promise<void>((resolve) => rogue.listen(roguePort, '127.0.0.1', resolve));
    const res = await http('PUT', kvUrl(c.gatewayUrl, 'victim'), { body: 'real' });
    assert.equal(res.status, 201, res.text);
  });
  after(() => new Promise<void>((resolve) => rogue?.close(() => resolve())));

  async function stillServes(): Promise<void> {
    const res = await http('GET', kvUrl(c.gatewayUrl, 'victim'));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, 'real');
  }

  test('a rogue registration and a heartbeat claiming a synced epoch are refused', async () => {
    const rogueUrl = `http://127.0.0.1:${roguePort}`;
    for (const p of ['/register', '/heartbeat']) {
      assertRefused(
        await http('POST', `${c.registryUrl}${p}`, { body: JSON.stringify({ node_url: rogueUrl, id: 'rogue1' }), headers: json }),
        p,
      );
    }
    const real = (await members(c))[0]!;
    assertRefused(
      await http('POST', `${c.registryUrl}/heartbeat`, {
        body: JSON.stringify({ node_url: real.url, id: real.id, transfer: { syncedEpoch: 1e9, rangesTotal: 0, rangesDone: 0, keysMoved: 0, keysMovedTotal: 0 } }),
        headers: json,
      }),
      'heartbeat of a real member',
    );
    // A signature header that is not a valid one is no better than none.
    assertRefused(
      await http('POST', `${c.registryUrl}/register`, {
        body: JSON.stringify({ node_url: rogueUrl, id: 'rogue1' }),
        headers: { ...json, 'x-flexstore-auth': `1.${Date.now()}.AAAAAAAAAAAAAAAA.1.${'A'.repeat(43)}` },
      }),
      'forged signature',
    );
    const all = await members(c);
    assert.ok(!all.some((m) => m.id === 'rogue1' || m.url === rogueUrl), 'the rogue is not a member');
    const health = (await http('GET', `${c.registryUrl}/health`)).json;
    assert.ok(health.authRefused.missing >= 3, JSON.stringify(health));
    assert.ok(health.authRefused.bad_signature >= 1, JSON.stringify(health));
    await stillServes();
  });

  test('deregistration needs the admin token or the cluster secret', async () => {
    const target = (await members(c)).find((m) => m.url !== c.memberUrl(3))!;
    for (const force of [false, true]) {
      assertRefused(
        await http('DELETE', `${c.registryUrl}/deregister`, { body: JSON.stringify({ id: target.id, force }), headers: json }),
        `deregister force=${force}`,
      );
      assertRefused(
        await http('POST', `${c.registryUrl}/deregister`, {
          body: JSON.stringify({ id: target.id, force }),
          headers: { ...json, authorization: 'Bearer wrong-token' },
        }),
        `deregister with a wrong token, force=${force}`,
      );
    }
    const cli = await runCli(['node', 'remove', target.id, '--registry-url', c.registryUrl]);
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stderr, /401.*--admin-token/);
    assert.ok((await members(c)).some((m) => m.id === target.id && m.state === 'up'), 'the member stays');
    await stillServes();

    // The spare member goes, with the admin token.
    const ok = await runCli(['node', 'remove', c.memberUrl(3), '--registry-url', c.registryUrl, '--admin-token', ADMIN, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(JSON.parse(ok.stdout).phase, /^(leaving|removed)$/);
    await stillServes();
  });

  test('forged replica writes over HTTP and TCP apply nothing', async () => {
    const kv = c.kvUrl(0);
    assertRefused(
      await http('PUT', `${kv}/internal/kv/victim`, { body: 'forged', headers: { 'x-flexstore-version': FORGED } }),
      'PUT /internal/kv',
    );
    const tcpPort = (await members(c)).find((m) => m.url === kv)!.tcpPort!;
    const sock = connect({ host: '127.0.0.1', port: tcpPort });
    sock.on('error', () => {});
    sock.resume();
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    sock.write(encodePut(1, 'victim', record(FORGED, 'forged')));
    await closed;
    await stillServes();
    // And a later write still wins, as it should.
    assert.equal((await http('PUT', kvUrl(c.gatewayUrl, 'victim'), { body: 'real' })).status, 201);
    await stillServes();
    const metrics = (await http('GET', `${kv}/metrics`)).text;
    assert.match(metrics, /flexstore_auth_refused_total\{reason="missing"\} [1-9]/);
    assert.match(metrics, /flexstore_auth_refused_total\{reason="malformed"\} [1-9]/);
  });

  test('internal reads and tombstone pushes are refused with no data in the answer', async () => {
    const kv = c.kvUrl(1);
    const full = { start: '0000000000000000', end: 'ffffffffffffffff', limit: 1000 };
    const probes: Array<[string, string, string?]> = [
      ['GET', '/internal/keys'],
      ['GET', '/internal/kv/victim'],
      ['POST', '/internal/sync/range', JSON.stringify(full)],
      ['POST', '/internal/sync/entries', JSON.stringify(full)],
      ['POST', '/internal/sync/fetch', JSON.stringify({ keys: ['victim'] })],
      ['POST', '/internal/sync/apply', JSON.stringify({ records: [{ key: 'victim', value: '', version: FORGED, tombstone: true, contentType: 'x' }] })],
      ['POST', '/internal/hints', JSON.stringify({ target: 'x', keys: ['victim'] })],
      ['GET', '/internal/sync/status'],
      ['GET', '/%69nternal/keys'],
    ];
    for (const [method, p, body] of probes) {
      const res = await http(method, `${kv}${p}`, { ...(body && { body, headers: json }) });
      assertRefused(res, `${method} ${p}`);
      assert.doesNotMatch(res.text, /victim|real/, `${p} leaks data`);
    }
    await stillServes();
    // Health and metrics stay open.
    assert.equal((await http('GET', `${kv}/health`)).status, 200);
  });

  test('a KV server with the wrong secret never becomes a member', async () => {
    const before = (await http('GET', `${c.registryUrl}/health`)).json.authRefused.bad_signature;
    const i = await c.addKv({ args: ['--cluster-secret', 'the-wrong-secret-0123456789'] });
    const url = c.kvUrl(i);
    await waitFor('the registry to refuse its heartbeats', async () => {
      const h = (await http('GET', `${c.registryUrl}/health`)).json;
      return h.authRefused.bad_signature >= before + 2;
    });
    assert.ok(!(await members(c)).some((m) => m.url === url), 'not a member');
    await c.kvs[i]!.proc.kill();
  });
});

describe('safe start-up', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'flexstore-closed-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('a public bind without a secret refuses to start: one line, exit code 2', async () => {
    for (const component of ['kv', 'registry', 'gateway']) {
      const dataDir = component === 'gateway' ? [] : ['--data-dir', path.join(dir, component)];
      const res = await runCli([component, '--host', '0.0.0.0', '--port', '0', ...dataDir]);
      assert.equal(res.code, 2, `${component}: ${res.stderr}`);
      const lines = res.stderr.trim().split('\n');
      assert.equal(lines.length, 1, res.stderr);
      assert.match(lines[0]!, /refusing to listen on 0\.0\.0\.0 without a cluster secret: set CLUSTER_SECRET_FILE.*--insecure/);
      assert.equal(res.stdout, '', 'nothing listened');
    }
  });

  test('a bad secret file is one line and exit code 2', async () => {
    const short = path.join(dir, 'short');
    await writeFile(short, 'tooshort\n');
    for (const [file, why] of [[short, /shorter than 16 bytes/], [path.join(dir, 'absent'), /cannot read \(ENOENT\)/]] as const) {
      const res = await runCli(['kv', '--port', '0', '--data-dir', path.join(dir, 'kv'), '--cluster-secret-file', file]);
      assert.equal(res.code, 2, res.stderr);
      assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
      assert.match(res.stderr, why);
    }
  });
});

describe('secret rotation', () => {
  const clusters = testClusters();

  test('rewriting the secret file of every process A → A,B → B,A → B under load, with no restart, loses no acknowledged write', { timeout: 90_000 }, async (t) => {
    const A = 'rotation-secret-A-0123456789';
    const B = 'rotation-secret-B-0123456789';
    const name = (content: string) => content.trim().split('\n').map((x) => (x === A ? 'A' : 'B')).join(',');
    // Registry and gateways say they reloaded only in an info line; KV servers count reloads in a metric.
    const c = await clusters({
      kvCount: 3,
      gateways: 2,
      secret: A,
      secretFile: true,
      registryArgs: ['--log-level', 'info'],
      extraGatewayArgs: ['--log-level', 'info'],
    });
    const pids = new Map(c.processNames().map((n) => [n, c.process(n).pid]));
    const gws = c.gateways.map((g) => `http://127.0.0.1:${g.port}`);
    const acked: Entries = [];
    let failed = 0;
    let stop = false;
    let n = 0;
    const writer = async (w: number) => {
      while (!stop) {
        const k = `rot/${n++}`;
        try {
          const res = await http('PUT', kvUrl(gws[w % gws.length]!, k), { body: `v-${k}`, timeoutMs: 5000 });
          if (res.status === 201) acked.push([k, `v-${k}`]);
          else failed++;
        } catch {
          failed++;
        }
        // A steady load, not a flood: every acknowledged write is read back at the end.
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const kvReloads = async (i: number, outcome: 'ok' | 'failed'): Promise<number> => {
      const m = (await http('GET', `${c.kvUrl(i)}/metrics`)).text;
      return Number(new RegExp(`flexstore_secret_reloads_total\\{outcome="${outcome}"\\} (\\d+)`).exec(m)?.[1] ?? NaN);
    };
    const reloaded = async (proc: string, times: number): Promise<boolean> =>
      proc.startsWith('kv')
        ? (await kvReloads(Number(proc.slice(2)), 'ok')) >= times
        : (c.process(proc).logs().match(/cluster secret file reloaded/g) ?? []).length >= times;

    const tcpPort = (await members(c)).find((m) => m.url === c.memberUrl(0))!.tcpPort!;
    let oldConn: Socket | undefined;
    const writers = Array.from({ length: 4 }, (_, w) => writer(w));
    try {
      await waitFor('writes before the rotation', () => acked.length >= 100);
      const steps = [`${A}\n${B}\n`, `${B}\n${A}\n`, `${B}\n`];
      for (const [s, content] of steps.entries()) {
        // A replica connection opened with A before the last step: that step must close it.
        if (s === 2) oldConn = await handshake(tcpPort, A, true);
        // One process at a time, each reloaded before the next is touched, so
        // that for a while some processes hold the new file and the others the
        // previous one while the load runs. Senders first (gateways, KV
        // servers, then the registry): a step that skipped its predecessor
        // would be refused here, not hidden by the order.
        for (const proc of c.processNames().reverse()) {
          c.rewriteSecret(proc, content);
          await waitFor(`${proc} reloaded ${name(content)}`, () => reloaded(proc, s + 1));
        }
        const at = acked.length;
        await waitFor(`writes after the step to ${name(content)}`, () => acked.length >= at + 40);
        t.diagnostic(`step ${name(content)} reached every process after ${acked.length} acknowledged writes, ${failed} not`);
      }
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    assert.ok(acked.length >= 220, `only ${acked.length} writes acknowledged (${failed} not)`);
    await assertAllRead(gws[0]!, acked);
    for (const [proc, pid] of pids) assert.equal(c.process(proc).pid, pid, `${proc} was not restarted`);
    // Nothing was refused for a secret along the way: each step overlapped with the last.
    for (let i = 0; i < c.kvs.length; i++) {
      const m = (await http('GET', `${c.kvUrl(i)}/metrics`)).text;
      assert.match(m, /flexstore_auth_refused_total\{reason="bad_signature"\} 0\b/, `kv${i}`);
      assert.equal(await kvReloads(i, 'failed'), 0, `kv${i}`);
    }
    assert.equal((await http('GET', `${c.registryUrl}/health`)).json.authRefused.bad_signature, 0);

    // A is gone everywhere: over HTTP (a KV server, the registry) and on a new replica connection.
    const signedGet = (secret: string, url: string) => {
      const u = new URL(url);
      const header = new RequestSigner(Buffer.from(secret)).sign({ method: 'GET', path: u.pathname + u.search });
      return http('GET', url, { headers: { [AUTH_HEADER]: header } });
    };
    const keysUrl = `${c.kvUrl(0)}/internal/keys`;
    assertRefused(await signedGet(A, keysUrl), 'a KV server, signed with A');
    assert.equal((await signedGet(B, keysUrl)).status, 200, 'a KV server, signed with B');
    const register = (secret: string) => {
      const body = JSON.stringify({ node_url: 'http://127.0.0.1:9', id: 'rotation-probe' });
      const headers = { ...json, [AUTH_HEADER]: new RequestSigner(Buffer.from(secret)).sign({ method: 'POST', path: '/register', headers: json, body: Buffer.from(body) }) };
      return http('POST', `${c.registryUrl}/register`, { body, headers });
    };
    assertRefused(await register(A), 'the registry, signed with A');
    await assert.rejects(handshake(tcpPort, A), /refused/);
    (await handshake(tcpPort, B, true)).destroy();
    // The connection opened with A before the last step applies nothing more.
    let closed = false;
    oldConn!.once('close', () => (closed = true));
    const version = `${Date.now().toString(16).padStart(12, '0')}.000000.rotation`;
    oldConn!.write(encodePut(1, 'rot-old-conn', record(version, 'via A')));
    await waitFor('the connection opened with A closed', () => closed);
    assert.equal((await signedGet(B, `${c.kvUrl(0)}/internal/kv/rot-old-conn`)).status, 404, 'nothing applied over the old connection');

    // A file that does not load keeps the secrets in force: B still works, A still does not.
    c.rewriteSecret('kv0', 'too-short\n');
    await waitFor('kv0 counted a failed reload', async () => (await kvReloads(0, 'failed')) === 1);
    assertRefused(await signedGet(A, keysUrl), 'kv0 after a bad file, signed with A');
    assert.equal((await signedGet(B, keysUrl)).status, 200, 'kv0 after a bad file, signed with B');
  });
});

/** Opens a replica-protocol connection to 127.0.0.1:port proving secret (rejects when refused); keep: the open socket, else closed. */
async function handshake(port: number, secret: string, keep = false): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  try {
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    await proveMember(socket, [Buffer.from(secret)], 5000);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  if (keep) socket.resume();
  else socket.destroy();
  return socket;
}
