import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  REPLAY_WINDOW,
  ReplayGuard,
  RequestSigner,
  RequestVerifier,
  SIGNATURE_WINDOW_MS,
  parseSignature,
  signedHeaders,
  tokenEquals,
  type SignInput,
} from './cluster-auth.js';

const A = Buffer.from('secret-A-0123456789abcdef');
const B = Buffer.from('secret-B-0123456789abcdef');

const put = (over: Partial<SignInput> = {}): SignInput => ({
  method: 'PUT',
  path: '/internal/kv/victim',
  headers: { 'x-flexstore-version': '000000000001.000000.g', 'content-type': 'text/plain' },
  body: Buffer.from('value'),
  ...over,
});

function check(verifier: RequestVerifier, header: string, req: SignInput, now = Date.now()) {
  const sig = verifier.parse(header, now);
  if (typeof sig === 'string') return sig;
  return verifier.verify(sig, req, now);
}

describe('cluster request signatures', () => {
  test('a signature with the first secret verifies against any secret, once', () => {
    const signer = new RequestSigner(A);
    const h = signer.sign(put());
    assert.equal(check(new RequestVerifier([A]), h, put()), null);
    assert.equal(check(new RequestVerifier([B, A]), h, put()), null);
    const v = new RequestVerifier([A, B]);
    assert.equal(check(v, h, put()), null);
    assert.equal(check(v, h, put()), 'replayed');
    assert.equal(check(new RequestVerifier([B]), h, put()), 'bad_signature');
  });

  test('the MAC covers method, path and query, body, version and content type', () => {
    const signer = new RequestSigner(A);
    const cases: Array<[string, Partial<SignInput>]> = [
      ['method', { method: 'GET' }],
      ['path', { path: '/internal/kv/other' }],
      ['query', { path: '/internal/kv/victim?x=1' }],
      ['body', { body: Buffer.from('valuf') }],
      ['no body', { body: undefined }],
      ['version header', { headers: { 'x-flexstore-version': 'ffffffffffff.000000.zzzz', 'content-type': 'text/plain' } }],
      ['tombstone header added', { headers: { ...put().headers, 'x-flexstore-tombstone': '1' } }],
      ['content type', { headers: { 'x-flexstore-version': '000000000001.000000.g', 'content-type': 'application/json' } }],
    ];
    for (const [what, change] of cases) {
      const h = signer.sign(put());
      assert.equal(check(new RequestVerifier([A]), h, put(change)), 'bad_signature', what);
    }
    // Other headers, and header-name case, are not part of it.
    const h = signer.sign(put());
    const other = put({ headers: { 'X-FlexStore-Version': '000000000001.000000.g', 'Content-Type': 'text/plain', 'user-agent': 'x' } });
    assert.equal(check(new RequestVerifier([A]), h, other), null);
  });

  test('missing, malformed and stale headers are refused before any MAC is computed', () => {
    const v = new RequestVerifier([A]);
    assert.equal(v.parse(undefined), 'missing');
    assert.equal(v.parse(''), 'missing');
    assert.equal(v.parse(['a', 'b']), 'malformed');
    const good = new RequestSigner(A).sign(put());
    for (const bad of ['x', good.replace(/^1\./, '2.'), `${good}.x`, good.slice(0, -1), good.replace(/\.(\d+)\./, '.-1.')]) {
      assert.equal(v.parse(bad), 'malformed', bad);
    }
    const now = Date.now();
    const old = new RequestSigner(A).sign(put(), now - SIGNATURE_WINDOW_MS - 1);
    const future = new RequestSigner(A).sign(put(), now + SIGNATURE_WINDOW_MS + 1);
    assert.equal(v.parse(old, now), 'stale');
    assert.equal(v.parse(future, now), 'stale');
    assert.equal(typeof v.parse(new RequestSigner(A).sign(put(), now - SIGNATURE_WINDOW_MS + 1000), now), 'object');
  });

  test('the header is one short token', () => {
    const h = new RequestSigner(A).sign(put(), 1_700_000_000_000);
    assert.match(h, /^1\.1700000000000\.[A-Za-z0-9_-]{16}\.1\.[A-Za-z0-9_-]{43}$/);
    assert.equal(parseSignature(h)?.counter, 1);
  });

  test('signed headers are sorted lower-case name:value lines of content-type and x-flexstore-*', () => {
    assert.equal(
      signedHeaders({ 'X-FlexStore-Version': 'v', host: 'h', 'content-type': 'c', 'x-flexstore-auth': 'ignored', 'x-flexstore-a': '1' }),
      'content-type:c\nx-flexstore-a:1\nx-flexstore-version:v\n',
    );
  });

  test('a forged signature cannot move the replay window', () => {
    const signer = new RequestSigner(A);
    const first = signer.sign(put());
    const sender = parseSignature(first)!.sender;
    const v = new RequestVerifier([A]);
    // A forged counter far ahead, under the real sender id: refused, and the real one still passes.
    const forged = `1.${Date.now()}.${sender}.${10 * REPLAY_WINDOW}.${'A'.repeat(43)}`;
    assert.equal(check(v, forged, put()), 'bad_signature');
    assert.equal(check(v, first, put()), null);
  });
});

describe('ReplayGuard', () => {
  test('accepts each counter once, in any order within the window; refuses below it', () => {
    const g = new ReplayGuard();
    const now = Date.now();
    for (const c of [5, 3, 4, 1, 2, 10, 7]) assert.equal(g.accept('s', c, now), true, `first ${c}`);
    for (const c of [5, 3, 1, 10, 7]) assert.equal(g.accept('s', c, now), false, `again ${c}`);
    assert.equal(g.accept('s', 6, now), true);
    assert.equal(g.accept('s', 10 + REPLAY_WINDOW, now), true);
    assert.equal(g.accept('s', 10, now), false, 'below the window');
    assert.equal(g.accept('s', 11, now), true, 'inside the window, not seen');
    assert.equal(g.accept('other', 1, now), true, 'senders are independent');
  });

  test('a large jump clears the slots it passes over', () => {
    const g = new ReplayGuard();
    const now = Date.now();
    g.accept('s', 1, now);
    g.accept('s', 1 + REPLAY_WINDOW - 1, now);
    // Counter 1 + REPLAY_WINDOW shares a slot with 1: it is new.
    assert.equal(g.accept('s', 1 + REPLAY_WINDOW, now), true);
    assert.equal(g.accept('s', 1 + REPLAY_WINDOW, now), false);
  });
});

test('tokenEquals compares whole tokens of any length', () => {
  assert.equal(tokenEquals('abc', 'abc'), true);
  assert.equal(tokenEquals('abc', 'abcd'), false);
  assert.equal(tokenEquals('', 'x'), false);
});
