import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Member } from '../cluster/types.js';
import { atLeast, callQuorum } from './quorum.js';

const m = (id: string): Member => ({ id, url: `http://${id}`, state: 'up', lastHeartbeat: 0, registeredAt: 0 });
const members = ['a', 'b', 'c', 'd'].map(m);

function outcomes(plan: Record<string, 'ok' | 'fail'>, calls: string[] = []) {
  return (x: Member) => {
    calls.push(x.id);
    return plan[x.id] === 'ok' ? Promise.resolve(x.id) : Promise.reject(new Error(`${x.id} down`));
  };
}

test('reads: launches `initial`, replaces each failure with the next candidate', async () => {
  const calls: string[] = [];
  const res = await callQuorum(members, atLeast(2), 2, outcomes({ a: 'fail', b: 'ok', c: 'ok', d: 'ok' }, calls));
  assert.deepEqual(res.ok.map((r) => r.value).sort(), ['b', 'c']);
  assert.deepEqual(calls, ['a', 'b', 'c']);
});

test('gives up only when candidates run out, reporting every answer', async () => {
  const res = await callQuorum(members, atLeast(3), 4, outcomes({ a: 'fail', b: 'ok', c: 'fail', d: 'ok' }));
  assert.equal(res.ok.length, 2);
  assert.equal(res.failed.length, 2);
  const all = await res.settled;
  assert.equal(all.ok.length + all.failed.length, 4);
});

test('a custom predicate: a quorum in each of two replica sets', async () => {
  const inA = new Set(['a', 'b', 'c']);
  const inB = new Set(['b', 'c', 'd']);
  const pred = (ok: ReadonlyArray<{ member: Member }>) =>
    ok.filter((r) => inA.has(r.member.id)).length >= 2 && ok.filter((r) => inB.has(r.member.id)).length >= 2;
  const res = await callQuorum(members, pred, 4, outcomes({ a: 'ok', b: 'fail', c: 'ok', d: 'ok' }));
  assert.ok(pred(res.ok));
  const bad = await callQuorum(members, pred, 4, outcomes({ a: 'ok', b: 'ok', c: 'fail', d: 'fail' }));
  assert.equal(pred(bad.ok), false);
});

test('settled resolves after slow calls finish, even when the quorum came first', async () => {
  let release!: () => void;
  const slow = new Promise<string>((r) => (release = () => r('slow')));
  const res = await callQuorum(members.slice(0, 3), atLeast(2), 3, (x) => (x.id === 'c' ? slow : Promise.resolve(x.id)));
  assert.equal(res.ok.length, 2);
  release();
  const all = await res.settled;
  assert.equal(all.ok.length, 3);
});
