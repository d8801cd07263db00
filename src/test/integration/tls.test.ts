import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FlexStoreClient, FlexStoreConnectionError } from '../../client/index.js';
import { encodeGet } from '../../cluster/tcp-codec.js';
import { FlexProcess, TestCluster, freePort, http, kvUrl, runCli, tlsProbe, waitFor } from '../support/index.js';

/**
 * A cluster with TLS on every link, made with `flexstore certs`: clients
 * reach the gateway over HTTPS only when they trust the CA, members talk to
 * each other only over TLS, mutual TLS refuses a client without a
 * certificate, bad material stops a server at start-up with one line and
 * exit 2, and a member whose certificate another CA signed gets no traffic.
 */

let root: string;
let certs: string;
let otherCa: string;

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'flexstore-tls-'));
  certs = path.join(root, 'certs');
  otherCa = path.join(root, 'other-ca');
  for (const out of [certs, otherCa]) {
    const res = await runCli(['certs', '--out', out, '--hosts', '127.0.0.1']);
    assert.equal(res.code, 0, res.stderr);
  }
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Lines FlexStore wrote to stderr, without Node's own warnings. */
function ownLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l !== '' && !/^\(node:\d+\)|^\(Use `node --trace/.test(l));
}

/** The TCP replica port of member i, as the registry advertises it. */
async function replicaPort(c: TestCluster, i: number): Promise<number> {
  const res = await http('GET', `${c.registryUrl}/nodes`);
  const m = (res.json.members as Array<{ url: string; tcpPort?: number }>).find((x) => x.url === c.memberUrl(i));
  assert.ok(m?.tcpPort, `member ${c.memberUrl(i)} advertises a replica port`);
  return m.tcpPort;
}

describe('a cluster over TLS', () => {
  let c: TestCluster;
  before(async () => {
    c = await TestCluster.start({ kvCount: 3, tls: { dir: certs } });
  });
  after(async () => {
    await c?.stop();
  });

  test('every URL is https and the gateway serves PUT, GET, DELETE and list to a client that trusts the CA', async () => {
    assert.match(c.gatewayUrl, /^https:/);
    const nodes = await http('GET', `${c.registryUrl}/nodes`);
    assert.deepEqual([...nodes.json.nodes].sort(), [c.kvUrl(0), c.kvUrl(1), c.kvUrl(2)].sort());
    for (const url of nodes.json.nodes as string[]) assert.match(url, /^https:\/\/127\.0\.0\.1:/);

    const client = new FlexStoreClient({ gateway: c.gatewayUrl, ca: tlsProbe(certs).ca });
    try {
      const put = await client.put('tls/a', 'one');
      await client.put('tls/b', 'two');
      const got = await client.get('tls/a');
      assert.equal(got?.value.toString(), 'one');
      assert.equal(got?.version, put.version);
      assert.deepEqual((await client.list({ prefix: 'tls/' })).keys, ['tls/a', 'tls/b']);
      assert.equal(await client.delete('tls/a'), true);
      assert.equal(await client.get('tls/a'), null);
    } finally {
      await client.close();
    }
    // Every write reached N=3 replicas over the TLS replica transport.
    const res = await http('PUT', kvUrl(c.gatewayUrl, 'tls/c', 'consistency=all'), { body: 'three' });
    assert.equal(res.status, 201, res.text);
    assert.equal(String(res.headers['x-flexstore-replicas']).split(',').length, 3);
  });

  test('a client that does not trust the CA gets a TLS error, and the CLI says to pass --ca', async () => {
    await assert.rejects(http('GET', kvUrl(c.gatewayUrl, 'tls/b'), { tls: false }), (err: Error & { code?: string }) => {
      assert.match(String(err.code), /SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/);
      return true;
    });
    const client = new FlexStoreClient({ gateway: c.gatewayUrl });
    try {
      await assert.rejects(client.get('tls/b'), (err: unknown) => {
        assert.ok(err instanceof FlexStoreConnectionError);
        assert.match(err.message, /certificate of gateway .* is not trusted.*--ca/);
        return true;
      });
    } finally {
      await client.close();
    }
    const refused = await runCli(['get', 'tls/b', '--gateway', c.gatewayUrl]);
    assert.equal(refused.code, 1);
    assert.deepEqual(ownLines(refused.stderr).length, 1, refused.stderr);
    assert.match(refused.stderr, /not trusted.*--ca/);

    const ok = await runCli(['get', 'tls/b', '--gateway', c.gatewayUrl, '--ca', path.join(certs, 'ca.crt')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'two');
    const status = await runCli(['status', '--gateway', c.gatewayUrl, '--ca', path.join(certs, 'ca.crt'), '--json']);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).members.length, 3);
  });

  test('members speak only TLS: plain HTTP to a KV server and a plain frame to its replica port get no answer', async () => {
    const port = c.kvs[0]!.port;
    await assert.rejects(http('GET', `http://127.0.0.1:${port}/internal/kv/tls%2Fb`, { timeoutMs: 3000 }));
    const tcpPort = await replicaPort(c, 0);
    const outcome = await new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: tcpPort });
      let got = 0;
      s.on('connect', () => s.write(encodeGet(1, 'tls/b')));
      s.on('data', (d) => (got += d.length));
      s.on('error', () => {});
      s.on('close', () => resolve(got === 0 ? 'closed without a reply' : `answered ${got} bytes`));
      s.setTimeout(5000, () => {
        s.destroy();
        resolve('still open after 5 s');
      });
    });
    // A TLS server answers plain bytes at most with a TLS alert, never with a frame; it closes the connection.
    assert.match(outcome, /closed/);
    // The same key read over TLS from that replica: it is there.
    const rec = await http('GET', `${c.kvUrl(0)}/internal/kv/tls%2Fb`);
    assert.equal(rec.status, 200, rec.text);
  });
});

describe('mutual TLS', () => {
  let c: TestCluster;
  before(async () => {
    c = await TestCluster.start({ kvCount: 2, replicationFactor: 2, tls: { dir: certs, clientAuth: 'require' } });
  });
  after(async () => {
    await c?.stop();
  });

  test('members and clients with the pair are served; a client without a certificate is refused', async () => {
    const put = await http('PUT', kvUrl(c.gatewayUrl, 'm/1'), { body: 'x' });
    assert.equal(put.status, 201, put.text);
    assert.equal(String(put.headers['x-flexstore-replicas']).split(',').length, 2);
    const { ca } = tlsProbe(certs);
    await assert.rejects(http('GET', `${c.kvUrl(0)}/internal/kv/m%2F1`, { tls: { ca }, timeoutMs: 3000 }));
    await assert.rejects(http('GET', kvUrl(c.gatewayUrl, 'm/1'), { tls: { ca }, timeoutMs: 3000 }));
    const withPair = await http('GET', `${c.kvUrl(0)}/internal/kv/m%2F1`);
    assert.equal(withPair.status, 200, withPair.text);

    const noPair = await runCli(['get', 'm/1', '--gateway', c.gatewayUrl, '--ca', path.join(certs, 'ca.crt')]);
    assert.equal(noPair.code, 1);
    assert.match(noPair.stderr, /if it requires client certificates.*--cert and --key/);
    const cli = await runCli([
      'get', 'm/1', '--gateway', c.gatewayUrl, '--ca', path.join(certs, 'ca.crt'),
      '--cert', path.join(certs, 'server.crt'), '--key', path.join(certs, 'server.key'),
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, 'x');
  });
});

describe('bad certificates', () => {
  const startKv = async (tlsArgs: string[]) =>
    runCli(['kv', '--port', String(await freePort()), '--host', '127.0.0.1', '--data-dir', path.join(root, `kv-${Date.now()}`), ...tlsArgs]);

  test('a key that does not match the certificate: one line naming --tls-key, exit 2', async () => {
    const res = await startKv([
      '--tls-cert', path.join(certs, 'server.crt'),
      '--tls-key', path.join(otherCa, 'server.key'),
      '--tls-ca', path.join(certs, 'ca.crt'),
    ]);
    assert.equal(res.code, 2, res.stderr);
    const lines = ownLines(res.stderr);
    assert.equal(lines.length, 1, res.stderr);
    assert.match(lines[0]!, /--tls-key .*other-ca\/server\.key does not match the certificate/);
  });

  test('a missing CA file: one line naming --tls-ca, exit 2', async () => {
    const res = await startKv([
      '--tls-cert', path.join(certs, 'server.crt'),
      '--tls-key', path.join(certs, 'server.key'),
      '--tls-ca', path.join(root, 'nope.crt'),
    ]);
    assert.equal(res.code, 2, res.stderr);
    const lines = ownLines(res.stderr);
    assert.equal(lines.length, 1, res.stderr);
    assert.match(lines[0]!, /--tls-ca .*nope\.crt: cannot read \(ENOENT\)/);
  });

  test('a certificate file that is not PEM: one line naming --tls-cert, exit 2', async () => {
    const res = await startKv([
      '--tls-cert', path.join(certs, 'ca.key'),
      '--tls-key', path.join(certs, 'server.key'),
      '--tls-ca', path.join(certs, 'ca.crt'),
    ]);
    assert.equal(res.code, 2, res.stderr);
    assert.match(ownLines(res.stderr)[0]!, /--tls-cert .*ca\.key: not a PEM certificate/);
  });
});

describe('a member whose certificate another CA signed', () => {
  let c: TestCluster;
  let rogue: FlexProcess | undefined;
  before(async () => {
    c = await TestCluster.start({ kvCount: 3, tls: { dir: certs } });
  });
  after(async () => {
    await rogue?.kill();
    await c?.stop();
  });

  test('is refused by the registry (its health check fails verification) and never takes traffic', async () => {
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    rogue = new FlexProcess('rogue', [
      'kv',
      '--port', String(port),
      '--host', '127.0.0.1',
      '--node-id', 'rogue',
      '--registry-url', c.registryUrl,
      '--data-dir', path.join(c.dir, 'rogue'),
      '--heartbeat-ms', '200',
      '--tls-cert', path.join(otherCa, 'server.crt'),
      '--tls-key', path.join(otherCa, 'server.key'),
      '--tls-ca', path.join(certs, 'ca.crt'),
    ]);
    const trustRogue = { ca: tlsProbe(otherCa).ca };
    // Probed with its own CA: the cluster's (the probes' default) rejects it, as the registry does.
    await waitFor('the rogue member answers', async () => {
      if (!rogue!.running) throw new Error(`exited:\n${rogue!.logs()}`);
      return (await http('GET', `${url}/health-check`, { tls: trustRogue, timeoutMs: 1000 })).status < 500;
    });
    // The registry dials a new member's /health before it joins; that call
    // verifies the member's certificate against the cluster CA and fails.
    await waitFor('the registry refuses the rogue registration', () => /MEMBER_UNREACHABLE|answer.*health/i.test(rogue!.logs()));
    const nodes = await http('GET', `${c.registryUrl}/nodes`);
    assert.ok(!(nodes.json?.members ?? []).some((m: { id: string }) => m.id === 'rogue'), nodes.text);

    for (let i = 0; i < 20; i++) {
      const key = `r/${i}`;
      // consistency=all needs every owner: all three are the honest members.
      const all = await http('PUT', kvUrl(c.gatewayUrl, key, 'consistency=all'), { body: String(i) });
      assert.equal(all.status, 201, all.text);
      assert.ok(!String(all.headers['x-flexstore-replicas']).split(',').includes('rogue'));
      const get = await http('GET', kvUrl(c.gatewayUrl, key));
      assert.equal(get.text, String(i));
    }
  });
});

describe('docker-compose.tls.yml', () => {
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

  test('merged over docker-compose.yml, every service serves TLS with the certificates of flexstore certs', async (t) => {
    let config: string;
    try {
      ({ stdout: config } = await promisify(execFile)('docker-compose', ['-f', 'docker-compose.yml', '-f', 'docker-compose.tls.yml', 'config'], { cwd: repo }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return t.skip('docker-compose is not installed (.ci/run installs it)');
      throw err;
    }
    const services = new Map<string, string>();
    const body = config.slice(config.search(/^services:$/m));
    for (const m of body.matchAll(/^ {2}(\w+):\n((?: {4}.*\n|\n)*)/gm)) services.set(m[1]!, m[2]!);
    // cluster-secret is the one-shot service that writes the cluster secret (docker-compose.yml); it serves nothing.
    services.delete('cluster-secret');
    assert.deepEqual([...services.keys()].sort(), ['gateway', 'kv1', 'kv2', 'kv3', 'registry']);
    for (const [name, text] of services) {
      assert.match(text, /TLS_CERT: \/certs\/server\.crt/, name);
      assert.match(text, /TLS_KEY: \/certs\/server\.key/, name);
      assert.match(text, /TLS_CA: \/certs\/ca\.crt/, name);
      assert.match(text, /data\/certs:\/certs:ro/, name);
      assert.doesNotMatch(text, /http:\/\//, `${name} still names a plain http:// URL`);
      // YAML may quote the line, doubling its quotes.
      assert.match(text, /fetch\('{1,2}https:\/\/localhost:\d+\//, `${name}'s healthcheck uses https`);
    }
    for (const kv of ['kv1', 'kv2', 'kv3']) assert.match(services.get(kv)!, new RegExp(`ADVERTISE_URL: https://${kv}:8001`));
  });
});
