import assert from 'node:assert/strict';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { newToken } from '../../cli/token-command.js';
import { FlexStoreClient } from '../../client/index.js';
import { sha256Hex } from '../../gateway/tokens.js';
import { freePort, http, kvUrl, runCli, testClusters, waitFor, type CliResult, type HttpResult, type TestCluster } from '../support/index.js';

/**
 * Client tokens on a real gateway (docs/security.md, "Client tokens"): one
 * registry, one KV server, a gateway with AUTH_TOKENS_FILE and a second one
 * on the same file with --metrics-public. Refusals, prefixes in batches and
 * listings, reloads without a restart, the CLI end to end, and no token in
 * any process's output. Every address is 127.0.0.1.
 */

const T = {
  admin: newToken(),
  app: newToken(),
  reader: newToken(),
  late: newToken(),
  /** Never in the file. */
  stranger: newToken(),
};

const ENTRIES = [
  { name: 'admin', sha256: sha256Hex(T.admin), role: 'admin' },
  { name: 'app', sha256: sha256Hex(T.app), role: 'readwrite', prefixes: ['app/', 'shared/'] },
  { name: 'reader', sha256: sha256Hex(T.reader), role: 'read' },
];

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const json = { 'content-type': 'application/json' };

function assertRefused(res: HttpResult, status: 401 | 403, what: string): void {
  assert.equal(res.status, status, `${what}: ${res.text}`);
  assert.equal(res.json?.code, status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN', what);
  assert.equal(res.json?.success, false, what);
  if (status === 401) assert.match(String(res.headers['www-authenticate']), /^Bearer\b/, what);
}

/** `flexstore ...` with exactly the FLEXSTORE_TOKEN given (none inherited). */
/** The CLI with FLEXSTORE_TOKEN only when a test gives it. */
function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const base = { ...process.env };
  delete base.FLEXSTORE_TOKEN;
  return runCli(args, { timeoutMs: 15_000, env: { ...base, ...env } });
}

describe('client tokens on the gateway', () => {
  const start = testClusters();
  let c: TestCluster;
  let file: string;
  let gw: string;
  let pub: string;
  /** Everything the CLI printed, checked for tokens at the end with the processes' logs. */
  const cliOutput: string[] = [];
  /** The token `flexstore token create` made; the gateways' logs must not hold it. */
  let cliToken = '';
  const logsOf = (url: string) => c.gateways.find((g) => url.endsWith(`:${g.port}`))!.proc.logs();

  /** Replaces the token file by a rename, as an operator would. */
  const writeTokens = (content: string) => {
    writeFileSync(`${file}.tmp`, content);
    renameSync(`${file}.tmp`, file);
  };
  const tokensFile = (entries: object[]) => JSON.stringify({ tokens: entries }, null, 2);

  before(async () => {
    c = await start({ kvCount: 1, replicationFactor: 1, gateways: 0 });
    file = path.join(c.dir, 'tokens.json');
    writeTokens(tokensFile(ENTRIES));
    [gw, pub] = await Promise.all([
      c.addGateway(['--auth-tokens-file', file, '--log-level', 'info']),
      c.addGateway(['--auth-tokens-file', file, '--metrics-public']),
    ]);
    await waitFor('both gateways see the KV server', async () => {
      for (const url of [gw, pub]) {
        const res = await http('GET', `${url}/health`);
        if (res.status !== 200) return false;
      }
      return true;
    });
  });

  test('no token, a malformed header or an unknown token: 401 with a Bearer challenge, nothing written', async () => {
    const requests: Array<[string, string, string | undefined]> = [
      ['GET', kvUrl(gw, 'app/x'), undefined],
      ['PUT', kvUrl(gw, 'app/x'), 'v'],
      ['DELETE', kvUrl(gw, 'app/x'), undefined],
      ['GET', `${gw}/kv?prefix=app/`, undefined],
      ['POST', `${gw}/batch`, JSON.stringify({ items: [{ key: 'app/x', value: 'v' }] })],
    ];
    const headers: Array<Record<string, string>> = [{}, { authorization: 'Basic YWRtaW46YWRtaW4=' }, { authorization: 'Bearer' }, bearer(T.stranger)];
    for (const [method, url, body] of requests) {
      for (const h of headers) {
        const res = await http(method, url, { headers: { ...json, ...h }, ...(body !== undefined && { body }) });
        assertRefused(res, 401, `${method} ${url} ${JSON.stringify(Object.keys(h))}`);
        assert.ok(!res.text.includes(T.stranger));
      }
    }
    assert.equal((await http('GET', kvUrl(gw, 'app/x'), { headers: bearer(T.admin) })).json?.code, 'KEY_NOT_FOUND');
  });

  test('a role or a prefix that does not allow it: 403 naming the key', async () => {
    let res = await http('PUT', kvUrl(gw, 'app/r'), { body: 'v', headers: bearer(T.reader) });
    assertRefused(res, 403, 'reader PUT');
    assert.equal(res.json.key, 'app/r');
    assertRefused(await http('DELETE', kvUrl(gw, 'app/r'), { headers: bearer(T.reader) }), 403, 'reader DELETE');
    res = await http('PUT', kvUrl(gw, 'other/x'), { body: 'v', headers: bearer(T.app) });
    assertRefused(res, 403, 'app PUT outside its prefixes');
    assert.equal(res.json.key, 'other/x');
    assertRefused(await http('GET', kvUrl(gw, 'other/x'), { headers: bearer(T.app) }), 403, 'app GET outside its prefixes');
    assert.equal((await http('GET', kvUrl(gw, 'other/x'), { headers: bearer(T.admin) })).json?.code, 'KEY_NOT_FOUND', 'nothing written');

    assert.equal((await http('PUT', kvUrl(gw, 'app/1'), { body: 'one', headers: bearer(T.app) })).status, 201);
    assert.equal((await http('PUT', kvUrl(gw, 'shared/1'), { body: 's', headers: bearer(T.app) })).status, 201);
    res = await http('GET', kvUrl(gw, 'app/1'), { headers: bearer(T.reader) });
    assert.deepEqual([res.status, res.text], [200, 'one']);
    assert.equal((await http('DELETE', kvUrl(gw, 'shared/1'), { headers: bearer(T.admin) })).status, 200);
  });

  test('a batch with one item outside the prefixes fails whole with 403 before anything is written', async () => {
    const items = ['app/b0', 'shared/b1', 'other/b2', 'app/b3'].map((key) => ({ key, value: key }));
    let res = await http('POST', `${gw}/batch`, { body: JSON.stringify({ items }), headers: { ...json, ...bearer(T.app) } });
    assertRefused(res, 403, 'batch');
    assert.deepEqual([res.json.item, res.json.key], [2, 'other/b2']);
    for (const { key } of items) {
      assert.equal((await http('GET', kvUrl(gw, key), { headers: bearer(T.admin) })).status, 404, `${key} not written`);
    }
    assertRefused(await http('POST', `${gw}/batch`, { body: JSON.stringify({ items: [items[0]] }), headers: { ...json, ...bearer(T.reader) } }), 403, 'reader batch');
    res = await http('POST', `${gw}/batch`, { body: JSON.stringify({ items: [items[0], items[1]] }), headers: { ...json, ...bearer(T.app) } });
    assert.deepEqual([res.status, res.json?.failed], [200, 0], res.text);
  });

  test('a listing holds only keys under the token prefixes, page by page', async () => {
    const keys = ['ap', 'app', 'app/a', 'app/b/1', 'app/b/2', 'app/c', 'apple', 'other/o', 'shared', 'shared/s1', 'shared/s2', 'zz'];
    const load = await http('POST', `${gw}/batch`, {
      body: JSON.stringify({ items: keys.map((key) => ({ key, value: key })) }),
      headers: { ...json, ...bearer(T.admin) },
    });
    assert.deepEqual([load.status, load.json?.failed], [200, 0], load.text);
    const admin = new FlexStoreClient({ gateway: gw, token: T.admin });
    const app = new FlexStoreClient({ gateway: gw, token: T.app });
    try {
      const all: string[] = [];
      for await (const k of admin.keys()) all.push(k);
      assert.ok(all.includes('other/o') && all.includes('zz'), 'the admin token lists every key');
      for (const prefix of ['', 'ap', 'app/', 'app/b', 'shared/s2', 'other/', 'sh']) {
        const want = all.filter((k) => k.startsWith(prefix) && (k.startsWith('app/') || k.startsWith('shared/')));
        for (const limit of [1, 2, 100]) {
          const got: string[] = [];
          let after: string | undefined;
          for (let page = 0; page < 50; page++) {
            const res = await app.list({ prefix, after, limit });
            assert.ok(res.keys.length <= limit);
            got.push(...res.keys);
            if (res.next === null) break;
            after = res.next;
          }
          assert.deepEqual(got, want, `prefix ${JSON.stringify(prefix)} limit ${limit}`);
        }
      }
      // A page that fills up at the end of app/ names its last key as the cursor: shared/ is still to come.
      const under = all.filter((k) => k.startsWith('app/'));
      const after = under[under.length - 3]!;
      const res = await http('GET', `${gw}/kv?after=${encodeURIComponent(after)}&limit=2`, { headers: bearer(T.app) });
      assert.deepEqual(res.json, { keys: under.slice(-2), next: under[under.length - 1] });
    } finally {
      await Promise.all([admin.close(), app.close()]);
    }
  });

  test('/health stays open; /metrics and /cluster need a token unless --metrics-public', async () => {
    assert.equal((await http('GET', `${gw}/health`)).status, 200);
    for (const route of ['/metrics', '/cluster']) {
      assertRefused(await http('GET', `${gw}${route}`), 401, route);
      assertRefused(await http('GET', `${gw}${route}`, { headers: bearer(T.stranger) }), 401, `${route} unknown token`);
      assert.equal((await http('GET', `${gw}${route}`, { headers: bearer(T.reader) })).status, 200, route);
      assert.equal((await http('GET', `${pub}${route}`)).status, 200, `${route} public`);
    }
    assertRefused(await http('GET', kvUrl(pub, 'app/1')), 401, 'the public gateway still guards /kv');
    assert.equal((await http('GET', kvUrl(pub, 'app/1'), { headers: bearer(T.reader) })).text, 'one');
  });

  test('the file is re-read without a restart; a bad one keeps the previous tokens and logs an error', async () => {
    const late = { name: 'late', sha256: sha256Hex(T.late), role: 'readwrite', prefixes: ['late/'] };
    assertRefused(await http('PUT', kvUrl(gw, 'late/1'), { body: 'v', headers: bearer(T.late) }), 401, 'before the reload');
    writeTokens(tokensFile([...ENTRIES, late]));
    const t0 = Date.now();
    await waitFor('the new token works', async () => (await http('PUT', kvUrl(gw, 'late/1'), { body: 'v', headers: bearer(T.late) })).status === 201, {
      timeoutMs: 5000,
    });
    const reloadMs = Date.now() - t0;
    assert.ok(reloadMs < 3000, `took ${reloadMs} ms`);

    // Not JSON, and with a token pasted into it: the error line must not quote it.
    writeTokens(`{"tokens": [${T.stranger}]}`);
    const failed = async (url: string, token: string, n: number) => {
      const text = (await http('GET', `${url}/metrics`, { headers: bearer(token) })).text;
      return Number(/flexstore_token_reloads_total\{outcome="failed"\} (\d+)/.exec(text)?.[1] ?? 0) >= n;
    };
    await waitFor('the failed reload is counted', () => failed(gw, T.admin, 1), { timeoutMs: 5000 });
    await waitFor('the error is logged', () => /client token file not reloaded, the previous tokens stay in force/.test(logsOf(gw)), {
      timeoutMs: 2000,
    });
    assert.ok(await failed(pub, T.reader, 1), 'the public gateway refused the file too');
    assert.equal((await http('PUT', kvUrl(gw, 'late/2'), { body: 'v', headers: bearer(T.late) })).status, 201, 'the previous tokens stay in force');
    assert.equal((await http('GET', kvUrl(gw, 'app/1'), { headers: bearer(T.app) })).status, 200);
    assertRefused(await http('GET', kvUrl(gw, 'app/1'), { headers: bearer(T.stranger) }), 401, 'still unknown');

    // A missing file, the same.
    rmSync(file);
    await waitFor('the missing file is counted', () => failed(gw, T.admin, 2), { timeoutMs: 5000 });
    assert.equal((await http('PUT', kvUrl(gw, 'late/3'), { body: 'v', headers: bearer(T.late) })).status, 201, 'still in force');

    writeTokens(tokensFile(ENTRIES));
    await waitFor('late is revoked', async () => (await http('GET', kvUrl(gw, 'late/1'), { headers: bearer(T.late) })).status === 401, { timeoutMs: 5000 });
  });

  test('flexstore token create, then the CLI with --token and FLEXSTORE_TOKEN', async () => {
    const made = await cli(['token', 'create', '--name', 'cli', '--role', 'readwrite', '--prefix', 'cli/']);
    cliOutput.push(made.stdout, made.stderr);
    assert.equal(made.code, 0, made.stderr);
    // The token and the entry are the two indented lines.
    const [token, entryLine] = made.stdout.split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim()) as [string, string];
    assert.match(token, /^fs_[A-Za-z0-9_-]{43}$/);
    cliToken = token;
    const entry = JSON.parse(entryLine);
    assert.deepEqual(entry, { name: 'cli', sha256: sha256Hex(token), role: 'readwrite', prefixes: ['cli/'] });

    writeTokens(tokensFile([...ENTRIES, entry]));
    await waitFor('the CLI token is in force', async () => (await http('GET', kvUrl(gw, 'cli/none'), { headers: bearer(token) })).status === 404, {
      timeoutMs: 5000,
    });
    assert.equal((await http('PUT', kvUrl(gw, 'cli/seed'), { body: 'hello', headers: bearer(T.admin) })).status, 201);
    const env = { FLEXSTORE_TOKEN: token };
    // One round of processes, none depending on another's outcome: each costs a Node start.
    const [put, get, ls, anonymous] = await Promise.all([
      cli(['put', 'cli/k', 'v', '--gateway', gw, '--token', token]),
      cli(['get', 'cli/seed', '--gateway', gw], env),
      cli(['ls', '--gateway', gw], env),
      cli(['get', 'cli/seed', '--gateway', gw]),
    ]);
    cliOutput.push(...[put, get, ls, anonymous].flatMap((r) => [r.stdout, r.stderr]));
    assert.equal(put.code, 0, put.stderr);
    assert.equal((await http('GET', kvUrl(gw, 'cli/k'), { headers: bearer(T.admin) })).text, 'v');
    assert.deepEqual([get.code, get.stdout], [0, 'hello'], get.stderr);
    // cli/k may or may not be written yet; nothing outside cli/ is listed.
    assert.equal(ls.code, 0, ls.stderr);
    const listed = ls.stdout.split('\n').filter(Boolean);
    assert.ok(listed.includes('cli/seed') && listed.every((k) => k.startsWith('cli/')), ls.stdout);
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.stderr, /UNAUTHORIZED.*FLEXSTORE_TOKEN/);

    // The client library falls back to FLEXSTORE_TOKEN too.
    process.env.FLEXSTORE_TOKEN = token;
    const client = new FlexStoreClient({ gateway: gw });
    delete process.env.FLEXSTORE_TOKEN;
    try {
      assert.equal(await client.getString('cli/seed'), 'hello');
    } finally {
      await client.close();
    }
  });

  test('a bad token file stops the gateway at start-up: exit 2, one line', async () => {
    // A token pasted where its hash belongs: the message must not quote it.
    const bad = path.join(c.dir, 'bad-tokens.json');
    writeFileSync(bad, `{"tokens": [{"name": "x", "sha256": "${T.stranger}", "role": "read"}]}`);
    const port = String(await freePort());
    const r = await cli(['gateway', '--port', port, '--host', '127.0.0.1', '--registry-url', c.registryUrl, '--auth-tokens-file', bad]);
    cliOutput.push(r.stdout, r.stderr);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('(node:'));
    assert.deepEqual(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^flexstore gateway: cannot start: --auth-tokens-file .*bad-tokens\.json: tokens\[0\]\.sha256 must be 64 hex digits/);
  });

  test('no token reaches a log or an error message', () => {
    const logs = c.logs();
    const output = logs + cliOutput.join('');
    assert.match(logs, /client token file not reloaded/, 'the logs checked are the real ones');
    assert.ok(cliToken !== '' && !logs.includes(cliToken), 'the token of token create appears in a log');
    for (const [name, token] of Object.entries(T)) {
      assert.ok(!output.includes(token), `token ${name} appears in the output`);
      assert.ok(!output.includes(sha256Hex(token)), `the hash of token ${name} appears in the output`);
    }
  });
});
