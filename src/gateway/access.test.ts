import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createHttpServer } from '../cluster/http-server.js';
import {
  checkBatchKeys,
  installClientAccess,
  keyAllowed,
  listForToken,
  listPrefixes,
  listUnder,
  parseBearer,
  roleAllows,
  routeNeed,
  type ListFn,
} from './access.js';
import { SecurityConfigError } from '../cluster/security.js';
import { TokenStore, loadTokenStore } from './token-store.js';
import { parseTokenFile, sha256Hex, type TokenEntry } from './tokens.js';

test('roles: each allows what the one before does', () => {
  assert.ok(roleAllows('read', 'read'));
  assert.ok(!roleAllows('read', 'readwrite'));
  assert.ok(roleAllows('readwrite', 'read') && roleAllows('readwrite', 'readwrite'));
  assert.ok(roleAllows('admin', 'readwrite') && roleAllows('admin', 'admin'));
  assert.ok(!roleAllows('readwrite', 'admin'));
});

test('which route needs which role', () => {
  const cases: Array<[string, string | undefined, boolean, string | null]> = [
    ['GET', '/kv/*', false, 'read'],
    ['HEAD', '/kv/*', false, 'read'],
    ['PUT', '/kv/*', false, 'readwrite'],
    ['DELETE', '/kv/*', false, 'readwrite'],
    ['PATCH', '/kv/*', false, 'read'],
    ['GET', '/kv', false, 'read'],
    ['POST', '/batch', false, 'readwrite'],
    ['GET', '/batch', true, 'read'],
    ['GET', '/metrics', false, 'read'],
    ['GET', '/cluster', false, 'read'],
    ['GET', '/metrics', true, null],
    ['GET', '/cluster', true, null],
    ['PUT', '/kv/*', true, 'readwrite'],
    ['GET', '/health', false, null],
    ['GET', undefined, false, null],
  ];
  for (const [method, route, pub, need] of cases) assert.equal(routeNeed(method, route, pub), need, `${method} ${route} public=${pub}`);
});

test('Bearer header: the token, or missing / malformed', () => {
  assert.deepEqual(parseBearer(undefined), { problem: 'missing' });
  assert.deepEqual(parseBearer(''), { problem: 'missing' });
  assert.deepEqual(parseBearer('Bearer fs_abc-DEF_123'), { token: 'fs_abc-DEF_123' });
  assert.deepEqual(parseBearer('bearer  abc+/x=='), { token: 'abc+/x==' });
  assert.deepEqual(parseBearer('Bearer abc '), { token: 'abc' });
  for (const bad of ['Bearer', 'Bearer ', 'Basic dXNlcjpwdw==', 'Bearer a b', 'Bearer a=b', 'Bearerabc', 'Bearer é']) {
    assert.deepEqual(parseBearer(bad), { problem: 'malformed' }, bad);
  }
});

test('key prefixes: none means every key', () => {
  assert.ok(keyAllowed(null, 'anything'));
  assert.ok(keyAllowed(['app/', 'shared/'], 'shared/x'));
  assert.ok(!keyAllowed(['app/'], 'app'));
  assert.ok(!keyAllowed(['app/'], 'other/app/x'));
});

function entry(name: string, role: TokenEntry['role'], prefixes?: string[]): TokenEntry {
  return parseTokenFile(JSON.stringify({ tokens: [{ name, sha256: sha256Hex(name), role, ...(prefixes && { prefixes }) }] }))[0]!;
}

test('a batch item outside the prefixes refuses the batch, naming the item and key', () => {
  assert.doesNotThrow(() => checkBatchKeys(null, ['x']));
  assert.doesNotThrow(() => checkBatchKeys(entry('all', 'readwrite'), ['x', 'y']));
  assert.throws(
    () => checkBatchKeys(entry('app', 'readwrite', ['app/']), ['app/1', 'app/2', 'other/3', 'other/4']),
    (err: any) => err.code === 'FORBIDDEN' && err.status === 403 && err.details.item === 2 && err.details.key === 'other/3',
  );
});

// ---- listing under token prefixes, against a brute-force model ----

// A small alphabet, so that prefixes of one another and shared stems are common.
const str = (maxLength: number) => fc.string({ unit: fc.constantFrom('a', 'b', '/', 'z', '\u00e9', '\ud83d\ude00'), maxLength });

test('listPrefixes: disjoint, ordered, and covering exactly the keys the request and the token both allow', () => {
  fc.assert(
    fc.property(str(3), fc.option(fc.array(str(3), { minLength: 1, maxLength: 5 }), { nil: null }), fc.array(str(5), { maxLength: 40 }), (req, tok, keys) => {
      const ps = listPrefixes(req, tok);
      for (let i = 1; i < ps.length; i++) {
        assert.ok(ps[i - 1]! < ps[i]!, 'in order');
        assert.ok(!ps[i]!.startsWith(ps[i - 1]!), 'none extends another');
      }
      const sorted = [...new Set(keys)].sort();
      for (const k of sorted) {
        const want = k.startsWith(req) && keyAllowed(tok, k);
        assert.equal(ps.some((p) => k.startsWith(p)), want, `key ${JSON.stringify(k)}`);
      }
      // Ranges in order: every key of an earlier prefix sorts before every key of a later one.
      const rangeOf = (k: string) => ps.findIndex((p) => k.startsWith(p));
      const ranks = sorted.map(rangeOf).filter((r) => r !== -1);
      for (let i = 1; i < ranks.length; i++) assert.ok(ranks[i - 1]! <= ranks[i]!);
    }),
    { numRuns: 500 },
  );
});

/**
 * A coordinator over a fixed set of keys, some of them deleted: like the
 * real one it scans at most `budget` records per call, so a page can come
 * back short with a cursor past deleted keys, or even empty with one.
 */
function modelLister(live: Set<string>, deleted: Set<string>, budget: number): { list: ListFn; calls: number } {
  const all = [...new Set([...live, ...deleted])].sort();
  const model = {
    calls: 0,
    list: async (prefix: string, after: string, limit: number) => {
      model.calls++;
      assert.ok(limit >= 1, 'never asked for an empty page');
      const range = all.filter((k) => k.startsWith(prefix) && k > after);
      const keys: string[] = [];
      let scanned = 0;
      for (const k of range) {
        if (scanned === budget) return { keys, next: range[scanned - 1]! };
        scanned++;
        if (!live.has(k)) continue;
        keys.push(k);
        if (keys.length === limit) return { keys, next: scanned < range.length ? k : null };
      }
      return { keys, next: null };
    },
  };
  return model;
}

/** Keys that often fall under the token's prefixes: a prefix and a suffix, or any string. */
const records = (tok: readonly string[]) =>
  fc.array(
    fc.tuple(fc.nat(), fc.boolean(), str(3), fc.boolean()).map(([i, under, rest, deleted]) => ({
      key: under ? tok[i % tok.length]! + rest : rest,
      deleted,
    })),
    { maxLength: 40 },
  );

test('listUnder: paging through every range gives exactly the allowed keys after the cursor, in order', async () => {
  const input = fc
    .array(str(3), { minLength: 1, maxLength: 4 })
    .chain((tok) =>
      fc.record({
        tok: fc.constant(tok),
        req: fc.oneof(fc.constant(''), str(2)),
        records: records(tok),
        start: fc.oneof(fc.constant(''), str(4)),
        limit: fc.integer({ min: 1, max: 6 }),
        budget: fc.integer({ min: 1, max: 8 }),
      }),
    );
  await fc.assert(
    fc.asyncProperty(input, async ({ tok, req, records, start, limit, budget }) => {
      const live = new Set(records.filter((r) => !r.deleted).map((r) => r.key));
      const deleted = new Set(records.filter((r) => r.deleted && !live.has(r.key)).map((r) => r.key));
      const want = [...live].filter((k) => k.startsWith(req) && keyAllowed(tok, k) && k > start).sort();
      const model = modelLister(live, deleted, budget);
      const prefixes = listPrefixes(req, tok);
      const got: string[] = [];
      let after = start;
      for (let page = 0; ; page++) {
        assert.ok(page < 200, 'paging ends');
        const res = await listUnder(prefixes, after, limit, model.list);
        assert.ok(res.keys.length <= limit, 'at most limit keys');
        for (const k of res.keys) assert.ok(k > after, 'after the cursor');
        got.push(...res.keys);
        if (res.next === null) break;
        assert.ok(res.next > after, 'the cursor moves forward');
        after = res.next;
      }
      assert.deepEqual(got, want);
    }),
    { numRuns: 500 },
  );
});

test('listUnder skips a range that lies wholly before the cursor without asking', async () => {
  const model = modelLister(new Set(['a/1', 'b/1', 'c/1']), new Set(), 100);
  const res = await listUnder(['a/', 'b/', 'c/'], 'b/1', 10, model.list);
  assert.deepEqual(res, { keys: ['c/1'], next: null });
  assert.equal(model.calls, 2, 'b/ (holds the cursor) and c/; not a/');
});

test('listForToken: a token of every key lists through one call, as without tokens', async () => {
  const model = modelLister(new Set(['a', 'b']), new Set(), 100);
  assert.deepEqual(await listForToken(null, '', '', 10, model.list), { keys: ['a', 'b'], next: null });
  assert.deepEqual(await listForToken(entry('t', 'read'), '', '', 10, model.list), { keys: ['a', 'b'], next: null });
  assert.equal(model.calls, 2);
  assert.deepEqual(await listForToken(entry('t', 'read', ['z']), '', '', 10, model.list), { keys: [], next: null });
});

// ---- the hook, in process ----

test('the request hook: 401 with a challenge, 403 naming the key, open routes stay open', async () => {
  const tokens = { reader: 'fs_reader-token', app: 'fs_app-token' };
  const store = new TokenStore(
    '/dev/null',
    parseTokenFile(
      JSON.stringify({
        tokens: [
          { name: 'reader', sha256: sha256Hex(tokens.reader), role: 'read' },
          { name: 'app', sha256: sha256Hex(tokens.app), role: 'readwrite', prefixes: ['app/'] },
        ],
      }),
    ),
  );
  const app = createHttpServer({ logLevel: 'silent', bodyLimit: 1024, component: 'test' });
  installClientAccess(app, { tokens: store, metricsPublic: false, maxKeyBytes: 1024 });
  const seen: string[] = [];
  const handler = async (req: { clientToken: TokenEntry | null; method: string }) => {
    seen.push(`${req.method} ${req.clientToken?.name ?? 'none'}`);
    return { ok: true };
  };
  app.get('/kv/*', handler);
  app.put('/kv/*', handler);
  app.get('/health', handler);
  app.get('/metrics', handler);
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  try {
    let res = await app.inject({ method: 'GET', url: '/kv/app/x' });
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, 'UNAUTHORIZED');
    assert.match(String(res.headers['www-authenticate']), /^Bearer /);
    res = await app.inject({ method: 'GET', url: '/kv/app/x', headers: bearer('fs_not-a-token') });
    assert.equal(res.statusCode, 401);
    assert.match(String(res.headers['www-authenticate']), /invalid_token/);
    assert.ok(!res.body.includes('fs_not-a-token'));
    res = await app.inject({ method: 'GET', url: '/kv/app/x', headers: { authorization: 'Basic abc' } });
    assert.equal(res.statusCode, 401);

    res = await app.inject({ method: 'PUT', url: '/kv/app/x', headers: bearer(tokens.reader), payload: 'v' });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().code, 'FORBIDDEN');
    assert.equal(res.json().key, 'app/x');
    res = await app.inject({ method: 'GET', url: '/kv/other%2Fy', headers: bearer(tokens.app) });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().key, 'other/y');
    // The router decodes `/%6Bv/` to the /kv/* route; the key the handler would read is refused before it runs.
    res = await app.inject({ method: 'GET', url: '/%6Bv/app%2Fx', headers: bearer(tokens.app) });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'INVALID_KEY');
    assert.equal((await app.inject({ method: 'GET', url: '/%6Bv/app%2Fx' })).statusCode, 401);

    res = await app.inject({ method: 'GET', url: '/kv/app%2Fx', headers: bearer(tokens.app) });
    assert.equal(res.statusCode, 200);
    res = await app.inject({ method: 'GET', url: '/kv/anything', headers: bearer(tokens.reader) });
    assert.equal(res.statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/metrics', headers: bearer(tokens.app) })).statusCode, 200);
    assert.deepEqual(seen, ['GET app', 'GET reader', 'GET none', 'GET app']);
  } finally {
    await app.close();
  }
});

test('a token file that does not load at start-up is a SecurityConfigError naming the option and the file', () => {
  assert.throws(
    () => loadTokenStore('/nonexistent/tokens.json'),
    (err: unknown) => err instanceof SecurityConfigError && /^--auth-tokens-file \/nonexistent\/tokens\.json: cannot read \(ENOENT\)$/.test(err.message),
  );
});

test('a token file error never quotes a token pasted into the file', () => {
  const token = 'fs_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG';
  for (const text of [`{"tokens": [${token}]}`, `{"tokens": [{"${token}": 1}]}`, `{"${token}": []}`, `{"tokens": [{"name": "x", "sha256": "${token}", "role": "read"}]}`]) {
    assert.throws(
      () => parseTokenFile(text),
      (err: Error) => err.name === 'TokenFileError' && !err.message.includes(token.slice(0, 6)),
      text,
    );
  }
});
