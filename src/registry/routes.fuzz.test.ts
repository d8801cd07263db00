import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { MemberUnreachable, errorTable, type ErrorCode } from '../cluster/errors.js';
import { createHttpServer } from '../cluster/http-server.js';
import { codeUnitString, fuzzParams, wellFormedString } from '../test/support/fuzz.js';
import { ProbeBusy } from './health-probe.js';
import { MEMBER_ID_PATTERN } from './member-id.js';
import { MemberTable } from './members.js';
import { registerRegistryRoutes, registryProtection } from './routes.js';

/**
 * The registry's HTTP API under random request sequences: random JSON,
 * mutated registrations and random bytes posted to /register, /heartbeat and
 * /deregister, random query strings on GET /nodes, from a few source
 * addresses, with and without the admin token. Every answer has a documented
 * status and, when it is an error, the one error shape with the status of its
 * code; the member table stays consistent (GET /nodes and /health answer and
 * agree, the index never goes back).
 *
 * Nothing is dialled: the health probe is a stub that refuses some ports (422)
 * and reports itself busy for others (503), and checks it is only ever asked
 * about an http(s) URL.
 */

const ADMIN_TOKEN = 'fuzz-admin-token';
const MAX_MEMBERS = 3;
const MAX_JOINING = 2;
/** As in server.ts. */
const BODY_LIMIT = 16 * 1024;
const ADDRESSES = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
const DOCUMENTED = new Set([400, 401, 404, 409, 413, 422, 429, 503]);
/**
 * A url as the URL parser prints it, trailing slashes aside: the one spelling
 * of its address. Spellings the registry knowingly keeps apart (HTTP://, an
 * explicit default port; routes.ts names the gap) are not generated.
 */
const canonical = (u: string): boolean => URL.canParse(u) && new URL(u).href.replace(/\/+$/, '') === u;

interface Registry {
  app: FastifyInstance;
  table: MemberTable;
  probed: string[];
}

async function startRegistry(): Promise<Registry> {
  const app = createHttpServer({
    logLevel: 'silent',
    bodyLimit: BODY_LIMIT,
    component: 'registry-fuzz',
    protect: registryProtection,
    adminToken: ADMIN_TOKEN,
  });
  const table = new MemberTable({ downAfterMs: 60_000, maxMembers: MAX_MEMBERS, maxJoining: MAX_JOINING });
  const probed: string[] = [];
  const probe = async (url: string): Promise<void> => {
    probed.push(url);
    const port = /:(\d+)$/.exec(url)?.[1] ?? '';
    if (port.endsWith('3')) throw new MemberUnreachable(`${url}/health did not answer`, { url });
    if (port.endsWith('5')) throw new ProbeBusy('too many health checks in flight');
  };
  // A short watch bound: a query that lands on the current index waits this long, not the default 30 s.
  registerRegistryRoutes(app, {
    table,
    config: { maxWaitSeconds: 0.05 },
    persist: async () => {},
    probe,
    limits: { ratePerSec: 1, burst: 4 },
  });
  await app.ready();
  return { app, table, probed };
}

// ---- request bodies ----

/** A JSON number literal written as is: 1e400 parses to Infinity, -0 to -0. */
class Raw {
  constructor(readonly text: string) {}
}

function jsonText(v: unknown): string {
  if (v instanceof Raw) return v.text;
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : jsonText(x))).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const parts = Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .map(([k, x]) => `${JSON.stringify(k)}:${jsonText(x)}`);
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

const numberish = fc.oneof(
  fc.integer({ min: -5, max: 70_000 }),
  fc.double(),
  fc.constantFrom(new Raw('1e400'), new Raw('-1e400'), new Raw('-0'), new Raw('1e308'), new Raw('9000.000'), new Raw('0.1e1')),
  fc.constantFrom('9000', null, true, [], {}),
);
/** Loopback urls from a small pool, so that requests meet the members earlier ones made (ports ending in 3 and 5: see the probe). */
const often = <T>(common: T, ...rare: T[]) => fc.oneof({ weight: 4, arbitrary: fc.constant(common) }, fc.constantFrom(...rare));
const portUrl = fc
  .tuple(often('http', 'https'), often('127.0.0.1', 'localhost', '[::1]'), fc.integer({ min: 8000, max: 8006 }), often('', '/', '//', '/x'))
  .map(([scheme, host, port, tail]) => `${scheme}://${host}:${port}${tail}`);
const nodeUrlArb = fc.oneof(
  { weight: 6, arbitrary: portUrl },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '',
      'http://',
      'http:///',
      'http:/127.0.0.1:8001/',
      '127.0.0.1:8001',
      'ftp://127.0.0.1:8001',
      'http://user:pw@127.0.0.1:8001',
      'http://127.0.0.1:8001/?q=1#f',
      'http://127.0.0.1:99999',
      'http://%zz:8001',
      ` http://127.0.0.1:8001 `,
    ),
  },
  { weight: 1, arbitrary: codeUnitString(24) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) },
);
const idArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('kv-1', 'kv-2', 'kv-3', 'kv-4', 'kv-5', 'kv-6', 'kv-7', 'http___127_0_0_1_8001') },
  { weight: 1, arbitrary: fc.constantFrom('', 'x'.repeat(64), 'x'.repeat(65), 'a/b', 'a b', '__proto__') },
  { weight: 1, arbitrary: codeUnitString(12) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) },
);
const transferArb = fc.oneof(
  fc.record(
    {
      syncedEpoch: numberish,
      rangesTotal: numberish,
      rangesDone: numberish,
      keysMoved: numberish,
      keysMovedTotal: numberish,
      hintsPending: numberish,
    },
    { requiredKeys: ['syncedEpoch'] },
  ),
  fc.jsonValue({ maxDepth: 2 }),
);
/** What a KV server sends: well-formed fields, as it would send them. */
const sensibleArb = fc.record(
  {
    node_url: portUrl,
    id: fc.constantFrom('kv-1', 'kv-2', 'kv-3', 'kv-4', 'kv-5'),
    tcp_port: fc.integer({ min: 1, max: 65535 }),
    transfer: fc.record({
      syncedEpoch: fc.nat(20),
      rangesTotal: fc.nat(10),
      rangesDone: fc.nat(10),
      keysMoved: fc.nat(),
      keysMovedTotal: fc.nat(),
    }),
    clock_ms: fc.integer({ min: 0, max: 2 ** 45 }),
    force: fc.boolean(),
  },
  { requiredKeys: ['node_url'] },
);
/** Any field perhaps missing, malformed or out of range, and perhaps a stray field. */
const wildArb = fc
  .record(
    {
      node_url: nodeUrlArb,
      id: idArb,
      tcp_port: numberish,
      transfer: transferArb,
      clock_ms: numberish,
      force: fc.oneof(fc.boolean(), fc.jsonValue({ maxDepth: 1 })),
      extra: fc.tuple(fc.constantFrom('nodeUrl', 'ID', '__proto__', 'constructor', 'x'), fc.jsonValue({ maxDepth: 2 })),
    },
    { requiredKeys: [] },
  )
  .map(({ extra, ...fields }) => (extra ? { ...fields, [extra[0]]: extra[1] } : fields));
/** Mostly what a KV server (or an operator, for /deregister) sends, with one field gone wild now and then. */
const registrationArb = fc.oneof(
  { weight: 3, arbitrary: sensibleArb },
  {
    weight: 2,
    arbitrary: fc
      .tuple(sensibleArb, wildArb, fc.constantFrom('node_url', 'id', 'tcp_port', 'transfer', 'clock_ms', 'force'))
      .map(([ok, wild, f]) => ({ ...ok, [f]: (wild as Record<string, unknown>)[f] })),
  },
  { weight: 2, arbitrary: wildArb },
);

const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
/** A deregistration names a member by id or url (both must then match), perhaps forced. */
const deregistrationArb = fc.oneof(
  fc.record({ id: sensibleArb.map((r) => r.id), force: fc.boolean() }, { requiredKeys: ['id'] }),
  fc.record({ node_url: portUrl, force: fc.boolean() }, { requiredKeys: ['node_url'] }),
  registrationArb,
);
const bodyArb = (kind: 'registration' | 'deregistration') =>
  fc.oneof(
    { weight: 8, arbitrary: (kind === 'registration' ? registrationArb : deregistrationArb).map((r) => Buffer.from(jsonText(r), 'utf8')) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v), 'utf8')) },
    { weight: 1, arbitrary: bytes(64) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        Buffer.alloc(0),
        Buffer.from('{"node_url":'),
        Buffer.from(JSON.stringify({ node_url: `http://127.0.0.1:8001/${'a'.repeat(BODY_LIMIT)}` })),
        Buffer.from('\ufeff{"node_url":"http://127.0.0.1:8001"}'),
        Buffer.from('{"node_url":"http://127.0.0.1:8001","node_url":"http://127.0.0.1:8002"}'),
      ),
    },
  );

// ---- requests ----

type Command =
  | {
      kind: 'post';
      path: '/register' | '/heartbeat' | '/deregister';
      method: 'POST' | 'DELETE';
      body: Buffer;
      contentType: string | undefined;
      auth: 'admin' | 'wrong' | 'none';
      ip: string;
      query: string;
    }
  | { kind: 'nodes'; query: string };

/** A query value: the current index (or one off it), a number of some other shape, or junk. */
const queryValue = fc.oneof(
  fc.constantFrom('{index}', '{index+1}', '{index-1}'),
  fc.constantFrom('0', '1', '007', '-1', '1.5', '1e3', '', '0.01', '9007199254740993', '99999999999999999999', 'NaN', 'true'),
  wellFormedString({ maxLength: 6 }).map(encodeURIComponent),
  fc.constantFrom('%zz', '%', '%00', '%E2%82'),
);
const queryArb = fc.oneof(
  fc
    .array(fc.tuple(fc.constantFrom('index', 'wait', 'force', 'index[]', 'x', '__proto__'), queryValue), { maxLength: 3 })
    .map((pairs) => (pairs.length === 0 ? '' : `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`)),
  fc.string({ unit: 'grapheme-ascii', maxLength: 12 }).map((q) => `?${q}`),
);

const pathAndBody = fc
  .constantFrom('/register' as const, '/heartbeat' as const, '/deregister' as const)
  .chain((path) => fc.record({ path: fc.constant(path), body: bodyArb(path === '/deregister' ? 'deregistration' : 'registration') }));
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        pathAndBody,
        fc.record({
          method: fc.constantFrom('POST' as const, 'DELETE' as const),
          contentType: fc.constantFrom(
            undefined,
            'application/json',
            'application/json; charset=utf-8',
            'text/plain',
            'application/x-www-form-urlencoded',
            'application/octet-stream',
            'x/y; boundary=1',
          ),
          auth: fc.oneof({ weight: 3, arbitrary: fc.constant('admin' as const) }, fc.constantFrom('wrong' as const, 'none' as const)),
          ip: fc.constantFrom(...ADDRESSES),
          query: fc.oneof(fc.constant(''), queryArb),
        }),
      )
      .map(([pb, rest]) => ({ kind: 'post' as const, ...pb, ...rest })),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('nodes' as const), query: queryArb }) },
);

function fillIndex(query: string, index: number): string {
  return query.replaceAll('{index}', String(index)).replaceAll('{index+1}', String(index + 1)).replaceAll('{index-1}', String(index - 1));
}

// ---- checks ----

interface Answer {
  status: number;
  body: unknown;
  /** The X-FlexStore-Index header. */
  index: unknown;
}

function checkAnswer(res: { statusCode: number; headers: Record<string, unknown>; body: string }, what: string): Answer {
  const status = res.statusCode;
  assert.ok((status >= 200 && status < 300) || DOCUMENTED.has(status), `${what} answered an undocumented ${status}: ${res.body}`);
  const type = String(res.headers['content-type']);
  assert.match(type, /^application\/json/, `${what} answered ${status} with content type ${type}`);
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    assert.fail(`${what} answered ${status} with a body that is not JSON: ${res.body}`);
  }
  if (status >= 400) {
    const b = body as { success?: unknown; error?: unknown; code?: unknown };
    assert.equal(b.success, false, `${what}: error body without success false: ${res.body}`);
    assert.equal(typeof b.error, 'string', `${what}: error body without an error message: ${res.body}`);
    assert.equal(typeof b.code, 'string', `${what}: error body without a code: ${res.body}`);
    assert.ok(Object.hasOwn(errorTable, b.code as string), `${what}: unknown code ${String(b.code)}`);
    assert.equal(errorTable[b.code as ErrorCode].status, status, `${what}: code ${String(b.code)} answered with ${status}`);
  }
  return { status, body, index: res.headers['x-flexstore-index'] };
}

const finite = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x);

/** A GET /nodes answer: a MemberView whose parts agree with one another and with the table's rules. */
function checkView(view: Record<string, unknown>): { index: number; members: number; up: number } {
  assert.ok(Number.isSafeInteger(view.index) && (view.index as number) >= 0, `index ${String(view.index)}`);
  assert.ok(Number.isSafeInteger(view.epoch) && (view.epoch as number) >= 0, `epoch ${String(view.epoch)}`);
  assert.ok(finite(view.clockMs) && finite(view.tombstoneGraceMs));
  const members = view.members as Array<Record<string, unknown>>;
  assert.ok(Array.isArray(members) && members.length <= MAX_MEMBERS, `${String(members?.length)} members`);
  const ids = members.map((m) => m.id as string);
  assert.deepEqual(ids, [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), 'members are not sorted by id');
  assert.equal(new Set(ids).size, ids.length, 'an id is listed twice');
  const urls = members.map((m) => m.url as string);
  assert.equal(new Set(urls).size, urls.length, 'two members share a url');
  for (const m of members) {
    const where = `member ${JSON.stringify(m)}`;
    assert.ok(typeof m.id === 'string' && MEMBER_ID_PATTERN.test(m.id), `${where}: bad id`);
    assert.ok(typeof m.url === 'string' && canonical(m.url) && /^https?:/.test(m.url), `${where}: bad url`);
    assert.ok(m.state === 'up' || m.state === 'down', `${where}: bad state`);
    assert.ok(['pending', 'joining', 'active', 'leaving'].includes(m.phase as string), `${where}: bad phase`);
    assert.ok(finite(m.registeredAt) && finite(m.lastHeartbeat), `${where}: bad times`);
    if (m.tcpPort !== undefined) {
      assert.ok(Number.isInteger(m.tcpPort) && (m.tcpPort as number) >= 1 && (m.tcpPort as number) <= 65535, `${where}: bad tcpPort`);
    }
    if (m.clockOffsetMs !== undefined) assert.ok(finite(m.clockOffsetMs), `${where}: bad clockOffsetMs`);
    if (m.transfer !== undefined) {
      const t = m.transfer as Record<string, unknown>;
      for (const k of ['syncedEpoch', 'rangesTotal', 'rangesDone', 'keysMoved', 'keysMovedTotal']) {
        assert.ok(finite(t[k]), `${where}: transfer.${k} is not a number`);
      }
      if (t.hintsPending !== undefined) assert.ok(finite(t.hintsPending), `${where}: transfer.hintsPending is not a number`);
    }
  }
  assert.ok(members.filter((m) => m.phase === 'joining').length <= MAX_JOINING, 'more members joining than allowed');
  assert.deepEqual(view.nodes, members.filter((m) => m.state === 'up').map((m) => m.url), 'nodes are not the urls of the up members');
  return { index: view.index as number, members: members.length, up: (view.nodes as unknown[]).length };
}

describe('registry API fuzz', () => {
  test('random request sequences: documented answers in the one error shape, a consistent member table', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 12 }), async (commands) => {
        const { app, table, probed } = await startRegistry();
        try {
          let lastIndex = 0;
          const seeIndex = (index: number, what: string): void => {
            assert.ok(index >= lastIndex, `${what}: the index went back from ${lastIndex} to ${index}`);
            lastIndex = index;
          };
          for (const c of commands) {
            if (c.kind === 'nodes') {
              const url = `/nodes${fillIndex(c.query, table.index)}`;
              const a = checkAnswer(await app.inject({ method: 'GET', url }), `GET ${url}`);
              if (a.status === 200) {
                const { index } = checkView(a.body as Record<string, unknown>);
                seeIndex(index, `GET ${url}`);
                assert.equal(a.index, String(index), `GET ${url}: index header`);
              } else assert.equal(a.status, 400, `GET ${url} answered ${a.status}`);
              continue;
            }
            const url = `${c.path}${fillIndex(c.query, table.index)}`;
            const method = c.path === '/deregister' ? c.method : 'POST';
            const what = `${method} ${url} ${JSON.stringify(c.body.toString('utf8').slice(0, 300))}`;
            const headers: Record<string, string> = {};
            if (c.contentType !== undefined) headers['content-type'] = c.contentType;
            if (c.auth !== 'none') headers.authorization = `Bearer ${c.auth === 'admin' ? ADMIN_TOKEN : 'wrong'}`;
            const res = await app.inject({ method, url, headers, payload: c.body, remoteAddress: c.ip });
            const a = checkAnswer(res, what);
            if (a.status >= 200 && a.status < 300) {
              const b = a.body as Record<string, unknown>;
              assert.equal(b.success, true, `${what}: ${res.body}`);
              assert.ok(typeof b.id === 'string' && MEMBER_ID_PATTERN.test(b.id), `${what}: bad id in ${res.body}`);
              seeIndex(b.index as number, what);
              assert.equal(a.index, String(b.index), `${what}: index header`);
              if (c.path === '/deregister') assert.ok(b.phase === 'removed' || b.phase === 'leaving', `${what}: ${res.body}`);
              else assert.ok(typeof b.node_url === 'string', `${what}: ${res.body}`);
            }
            if (a.status === 401) assert.equal(c.path === '/deregister' && c.auth !== 'admin', true, `${what}: refused for its credential`);
          }
          // Whatever came before, the table still answers, and its two views agree.
          const nodes = checkAnswer(await app.inject({ method: 'GET', url: '/nodes' }), 'GET /nodes');
          assert.equal(nodes.status, 200);
          const view = checkView(nodes.body as Record<string, unknown>);
          seeIndex(view.index, 'GET /nodes');
          const health = checkAnswer(await app.inject({ method: 'GET', url: '/health' }), 'GET /health');
          assert.equal(health.status, 200);
          assert.deepEqual(health.body, { status: 'ok', members: view.members, up: view.up, index: view.index });
          // Only a url in its one spelling reaches the probe (and the table: checkView).
          for (const u of probed) assert.ok(canonical(u) && /^https?:/.test(u), `the probe was asked about ${u}`);
        } finally {
          await app.close();
        }
      }),
      fuzzParams({ scale: 0.5, msPerRun: 100 }),
    );
  });
});
