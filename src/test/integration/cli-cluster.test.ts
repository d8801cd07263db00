import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FlexStoreClient } from '../../client/index.js';
import { http, kvUrl, TestCluster, waitFor, runCli, ackedAcrossFault } from '../support/index.js';

/**
 * The CLI's client commands and the client library against a real cluster
 * (cli.test.ts checks them against a hand-written fake gateway), and the
 * promise of `--sync interval`: acknowledged writes survive kill -9 of every
 * KV server. The KV servers here run with --sync interval and an fsync
 * interval far longer than the test, so no periodic fsync can be what saves
 * the writes.
 */

const cli = (args: string[]) => runCli(args);

/** Lines FlexStore wrote to stderr, without Node's own warnings. */
function ownLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l !== '' && !/^\(node:\d+\)|^\(Use `node --trace/.test(l));
}

interface StatusRow {
  id: string;
  url: string;
  state: string;
  phase: string;
  ownership: string;
  transfer: string;
}

/** Parses `flexstore status`: a header and one row per member, columns at least two spaces apart. */
function statusRows(stdout: string): StatusRow[] {
  const lines = stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^ID\s+URL\s+STATE\s+PHASE\s+OWNERSHIP\s+TRANSFER$/, stdout);
  return lines.slice(1).map((line) => {
    const [id, url, state, phase, ownership, transfer, ...rest] = line.split(/ {2,}/);
    assert.equal(rest.length, 0, line);
    return { id: id!, url: url!, state: state!, phase: phase!, ownership: ownership!, transfer: transfer! };
  });
}

describe('CLI and client against a real cluster (KV servers with --sync interval)', () => {
  let c: TestCluster;
  let gw: string;
  let client: FlexStoreClient;
  /** KV server id by its index in c.kvs. */
  const ids: string[] = [];
  const listed = Array.from({ length: 230 }, (_, i) => `cli/${String(i).padStart(3, '0')}`);

  before(async () => {
    c = await TestCluster.start({
      kvCount: 3,
      kvArgs: ['--sync', 'interval', '--sync-interval-ms', '600000', '--log-level', 'info'],
    });
    gw = c.gatewayUrl;
    client = new FlexStoreClient({ gateway: gw });
    for (let i = 0; i < 3; i++) ids.push((await http('GET', `${c.kvUrl(i)}/health-check`)).json.id);
    const load = await http('POST', `${gw}/batch`, { body: JSON.stringify({ items: listed.map((key) => ({ key, value: key })) }) });
    assert.deepEqual([load.status, load.json?.failed], [200, 0], load.text);
  });

  after(async () => {
    await client?.close();
    await c?.stop();
  });

  test('the KV servers run in sync interval mode', () => {
    for (let i = 0; i < 3; i++) {
      const line = c.kvs[i]!.proc.logs().split('\n').find((l) => l.includes('kv server listening'));
      assert.ok(line, `kv${i} logged its start`);
      assert.equal(JSON.parse(line).sync, 'interval', line);
    }
  });

  test('flexstore ls lists every key of a prefix in order, following pages', async () => {
    const ls = await cli(['ls', 'cli/', '--gateway', gw]);
    assert.equal(ls.code, 0, ls.stderr);
    // 230 keys: three pages at the gateway's default of 100.
    assert.equal(ls.stdout, listed.map((k) => `${k}\n`).join(''));
    const limited = await cli(['ls', 'cli/', '--gateway', gw, '--limit', '150', '--json']);
    assert.deepEqual(JSON.parse(limited.stdout), listed.slice(0, 150));
  });

  test("client keys() yields every key of a prefix across pages; list() is one page", async () => {
    const seen: string[] = [];
    for await (const key of client.keys('cli/')) seen.push(key);
    assert.deepEqual(seen, listed);
    const small: string[] = [];
    for await (const key of client.keys('cli/', { limit: 7 })) small.push(key);
    assert.deepEqual(small, listed);
    const page = await client.list({ prefix: 'cli/' });
    assert.deepEqual([page.keys, page.next], [listed.slice(0, 100), listed[99]]);
    const none: string[] = [];
    for await (const key of client.keys('nothing-here/')) none.push(key);
    assert.deepEqual(none, []);
  });

  test('flexstore del: the key is gone for get, ls and keys(); deleting it again exits 1', async () => {
    const del = await cli(['del', 'cli/100', '--gateway', gw]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, 'deleted "cli/100"\n');
    assert.equal((await http('GET', kvUrl(gw, 'cli/100'))).status, 404);
    assert.equal(await client.get('cli/100'), null);
    const again = await cli(['del', 'cli/100', '--gateway', gw]);
    assert.deepEqual([again.code, again.stdout, ownLines(again.stderr)], [1, '', ['error: key not found: "cli/100" (KEY_NOT_FOUND)']]);

    const expected = listed.filter((k) => k !== 'cli/100');
    const ls = await cli(['ls', 'cli/', '--gateway', gw, '--json']);
    assert.deepEqual(JSON.parse(ls.stdout), expected);
    const seen: string[] = [];
    for await (const key of client.keys('cli/')) seen.push(key);
    assert.deepEqual(seen, expected);
  });

  test('flexstore status: a row per member with state, phase, address, ownership and transfer progress', async () => {
    const status = await cli(['status', '--gateway', gw]);
    assert.equal(status.code, 0, status.stderr);
    const rows = statusRows(status.stdout);
    assert.deepEqual(rows.map((r) => r.id).sort(), [...ids].sort());
    const view = (await http('GET', `${gw}/cluster`)).json;
    let total = 0;
    for (const row of rows) {
      const member = view.members.find((m: { id: string }) => m.id === row.id);
      assert.equal(row.url, c.kvUrl(ids.indexOf(row.id)));
      assert.deepEqual([row.state, row.phase], ['up', 'active']);
      assert.match(row.ownership, /^\d+\.\d%$/);
      assert.equal(row.ownership, `${(member.ownership * 100).toFixed(1)}%`);
      total += parseFloat(row.ownership);
      assert.match(row.transfer, /^\d+\/\d+ ranges, [\d,]+ keys(, hints \d+)?$/);
    }
    assert.ok(Math.abs(total - 100) < 0.2, `ownership adds up to ${total}%`);
  });

  test('--sync interval: writes acknowledged before kill -9 of every KV server are all there after restart', async () => {
    const acked = await ackedAcrossFault(gw, 200, () => Promise.all([0, 1, 2].map((i) => c.killKv(i))));

    // status shows what the registry sees: every member down.
    for (let i = 0; i < 3; i++) await c.waitForState(i, 'down');
    await waitFor('the gateway sees every member down', async () =>
      (await http('GET', `${gw}/cluster`)).json.members.every((m: { state: string }) => m.state === 'down'),
    );
    const status = await cli(['status', '--gateway', gw]);
    assert.deepEqual(
      statusRows(status.stdout).map((r) => [r.id, r.state, r.phase]).sort(),
      [...ids].sort().map((id) => [id, 'down', 'active']),
    );

    await Promise.all([0, 1, 2].map((i) => c.startKv(i)));
    await c.waitForUp(3);
    const missing: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < acked.length) {
          const [k, v] = acked[next++]!;
          const res = await http('GET', kvUrl(gw, k));
          if (res.status !== 200 || res.text !== v) missing.push(`${k}: ${res.status} ${res.text}`);
        }
      }),
    );
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} of ${acked.length} acknowledged writes lost`);
    assert.ok(acked.length >= 200);
  });
});
