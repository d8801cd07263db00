import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VersionFromFuture } from '../../cluster/errors.js';
import { parseVersion } from '../../cluster/hlc.js';
import { TcpReplicaTransport } from '../../cluster/tcp-transport.js';
import { http, kvUrl, record, runCli, testClusters, waitFor, type TestCluster } from '../support/index.js';

/**
 * Versions from the future, with real processes on loopback: forged versions
 * sent straight to a KV server, a gateway whose clock runs 60 s ahead, a KV
 * server whose clock runs 60 s behind, and a version at the very end of the
 * clock planted in a KV server's storage (by running that server with its
 * clock pushed to the end, then restarting it normally). Clocks are skewed
 * with --clock-offset-ms, the testing-only shift of a process's clock.
 */

const FORGED = 'ffffffffffff.000000.zzzz';
const END_OF_TIME = 'ffffffffffff.ffffff.zzzz';

async function refused(url: string, path: string): Promise<number> {
  const text = (await http('GET', `${url}/metrics`)).text;
  const m = new RegExp(`^flexstore_versions_refused_total\\{path="${path}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function internalStatus(c: TestCluster, i: number, key: string): Promise<number> {
  return (await http('GET', `${c.kvUrl(i)}/internal/kv/${encodeURIComponent(key)}`)).status;
}

/** Restarts KV server i with these extra flags (kill -9, same port and data dir). */
async function restartKv(c: TestCluster, i: number, args: string[]): Promise<void> {
  await c.killKv(i);
  c.kvs[i]!.options.args = args;
  await c.startKv(i);
  await c.waitForUp(c.kvs.length);
}

describe('versions from the future', () => {
  const startCluster = testClusters();

  test('are refused on every path, never shadow later writes, and skew is reported', async () => {
    const c = await startCluster();
    const gw = c.gatewayUrl;

    // (a) A forged version straight to a KV server: over HTTP, then as a TCP frame.
    const forged = await http('PUT', `${c.kvUrl(0)}/internal/kv/victim`, { body: 'forged', headers: { 'x-flexstore-version': FORGED } });
    assert.equal(forged.status, 409, forged.text);
    assert.equal(forged.json.code, 'VERSION_FROM_FUTURE');
    assert.equal(await internalStatus(c, 0, 'victim'), 404, 'nothing applied');

    const nodes = (await http('GET', `${c.registryUrl}/nodes`)).json;
    const tcpPort = nodes.members.find((m: { url: string }) => m.url === c.kvUrl(0)).tcpPort as number;
    const tcp = new TcpReplicaTransport({ resolvePort: () => tcpPort, timeoutMs: 5000 });
    try {
      await assert.rejects(tcp.put(c.kvUrl(0), 'victim', record(FORGED, 'forged over tcp')), VersionFromFuture);
      assert.equal(await tcp.get(c.kvUrl(0), 'victim'), null, 'nothing applied');
    } finally {
      await tcp.close();
    }
    assert.equal(await refused(c.kvUrl(0), 'replica_http'), 1);
    assert.equal(await refused(c.kvUrl(0), 'replica_tcp'), 1);
    // Later client writes are not shadowed.
    assert.equal((await http('PUT', kvUrl(gw, 'victim'), { body: 'real' })).status, 201);
    assert.equal((await http('GET', kvUrl(gw, 'victim', 'consistency=all'))).text, 'real');

    // (b) A gateway whose clock runs 60 s ahead: every replica refuses its
    // writes, the client gets 503 naming VERSION_FROM_FUTURE per replica, and
    // nothing is applied anywhere.
    const fast = await c.addGateway(['--clock-offset-ms=60000']);
    await c.waitForUp(3, fast);
    const early = await http('PUT', kvUrl(fast, 'ahead'), { body: 'from the future' });
    assert.equal(early.status, 503, early.text);
    assert.equal(early.json.code, 'QUORUM_NOT_MET');
    assert.equal(early.json.replicas.length, 3);
    for (const r of early.json.replicas) {
      assert.equal(r.ok, false);
      assert.equal(r.code, 'VERSION_FROM_FUTURE', JSON.stringify(r));
    }
    for (let i = 0; i < 3; i++) assert.equal(await internalStatus(c, i, 'ahead'), 404, `kv${i} applied nothing`);
    assert.equal((await http('DELETE', kvUrl(fast, 'victim'))).status, 503, 'its deletes too');
    // A normal gateway's writes go on; the fast one reads them (its clock is not the readers' problem).
    assert.equal((await http('PUT', kvUrl(gw, 'ahead'), { body: 'now' })).status, 201);
    assert.equal((await http('GET', kvUrl(gw, 'ahead', 'consistency=all'))).text, 'now');
    assert.equal((await http('GET', kvUrl(fast, 'ahead'))).text, 'now');
    const fastView = (await http('GET', `${fast}/cluster`)).json;
    assert.ok(fastView.clock.gatewayOffsetMs > 55_000, JSON.stringify(fastView.clock));
    assert.match(fastView.clockSkewWarning, /clock skew of 6\d\.\d s between gateway/);

    // (d) The end of the clock planted in kv1's storage: run kv1 with its
    // clock at the end, write there, restart it with a true clock.
    const endOffset = 0xffffffffffff - Date.now();
    await restartKv(c, 1, [`--clock-offset-ms=${endOffset}`]);
    const planted = await http('PUT', `${c.kvUrl(1)}/internal/kv/planted`, { body: 'planted', headers: { 'x-flexstore-version': END_OF_TIME } });
    assert.equal(planted.status, 200, planted.text);
    await restartKv(c, 1, []);
    const read = await http('GET', kvUrl(gw, 'planted', 'consistency=all'));
    assert.equal(read.status, 200, 'the value the replicas hold is answered');
    assert.equal(read.headers.etag, `"${END_OF_TIME}"`);
    assert.ok((await refused(gw, 'read')) >= 1, 'the gateway counted it');
    for (const i of [0, 2]) assert.equal(await internalStatus(c, i, 'planted'), 404, `not read-repaired onto kv${i}`);
    // The gateway's clock did not adopt it: PUT and DELETE still succeed, stamped now.
    const put = await http('PUT', kvUrl(gw, 'after-planted'), { body: 'x' });
    assert.equal(put.status, 201, put.text);
    assert.ok(Math.abs(parseVersion(put.json.version)!.wall - Date.now()) < 5000, put.json.version);
    assert.equal((await http('PUT', kvUrl(gw, 'planted'), { body: 'overwrite' })).status, 201);
    assert.equal((await http('DELETE', kvUrl(gw, 'planted'))).status, 200);
    assert.equal((await http('DELETE', kvUrl(gw, 'after-planted'))).status, 200);

    // (c) A KV server whose clock runs 60 s behind refuses the others'
    // current writes: they succeed on the other two (W = 2), it holds none
    // of them, counts each refusal, and the skew is reported.
    await restartKv(c, 2, ['--clock-offset-ms=-60000']);
    const kv2 = (await http('GET', `${c.kvUrl(2)}/health`)).json.id as string;
    const before = await refused(c.kvUrl(2), 'replica_tcp');
    const late = await http('PUT', kvUrl(gw, 'while-behind'), { body: 'v' });
    assert.equal(late.status, 201, late.text);
    assert.equal(await internalStatus(c, 2, 'while-behind'), 404);
    assert.equal(await internalStatus(c, 0, 'while-behind'), 200);
    await waitFor('kv2 counted the refusal', async () => (await refused(c.kvUrl(2), 'replica_tcp')) > before);
    const all = await http('PUT', kvUrl(gw, 'while-behind', 'consistency=all'), { body: 'v2' });
    assert.equal(all.status, 503);
    assert.deepEqual(all.json.replicas.filter((r: { ok: boolean }) => !r.ok).map((r: { id: string; code: string }) => [r.id, r.code]), [[kv2, 'VERSION_FROM_FUTURE']]);

    // (e) /cluster and `flexstore status` report the skewed member.
    await waitFor('the gateway reports the skew', async () => {
      const view = (await http('GET', `${gw}/cluster`)).json;
      return typeof view.clockSkewWarning === 'string' && view.clockSkewWarning.includes(kv2);
    });
    const view = (await http('GET', `${gw}/cluster`)).json;
    const offset = view.members.find((m: { id: string }) => m.id === kv2).clockOffsetMs as number;
    assert.ok(offset < -55_000 && offset > -65_000, String(offset));
    assert.ok(view.clock.spreadMs > 55_000);
    const status = await runCli(['status', '--gateway', gw]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^warning: clock skew of 6\\d\\.\\d s between .*member ${kv2}`, 'm'));

    // Back on time, it takes writes again and the warning goes.
    await restartKv(c, 2, []);
    const again = await http('PUT', kvUrl(gw, 'while-behind', 'consistency=all'), { body: 'v3' });
    assert.equal(again.status, 201, again.text);
    await waitFor('the warning clears', async () => (await http('GET', `${gw}/cluster`)).json.clockSkewWarning === null);
  });
});
