import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HASH_SPACE_MAX, Placement, keyHash } from './placement.js';
import type { Member } from './types.js';

const member = (id: string, phase?: Member['phase']): Member => ({
  id,
  url: `http://${id}`,
  state: 'up',
  lastHeartbeat: 0,
  registeredAt: 0,
  ...(phase ? { phase } : {}),
});

function arcFor(p: Placement, h: bigint) {
  return p.arcs().find((a) => a.start <= h && h <= a.end)!;
}

test('arcs cover the hash space exactly once and agree with the rings', () => {
  const p = new Placement([member('a'), member('b'), member('c'), member('d', 'joining')], 3, 16);
  const arcs = p.arcs();
  assert.equal(arcs[0]!.start, 0n);
  assert.equal(arcs[arcs.length - 1]!.end, HASH_SPACE_MAX);
  for (let i = 1; i < arcs.length; i++) assert.equal(arcs[i]!.start, arcs[i - 1]!.end + 1n);
  for (let i = 0; i < 500; i++) {
    const key = `k${i}`;
    const arc = arcFor(p, keyHash(key));
    assert.deepEqual(arc.read, p.readList(key));
    assert.deepEqual(arc.target, p.targetList(key));
  }
});

test('a joining member reads nowhere, is a write target, and is the only acquirer', () => {
  const p = new Placement([member('a'), member('b'), member('c'), member('d', 'joining')], 3, 32);
  assert.ok(p.changing);
  assert.deepEqual([...p.acquirers()], ['d']);
  let targets = 0;
  for (let i = 0; i < 300; i++) {
    const key = `k${i}`;
    assert.ok(!p.readList(key).includes('d'));
    if (p.targetList(key).includes('d')) targets++;
  }
  assert.ok(targets > 150, `d is a target of ${targets}/300 keys`);
});

test('a leaving member keeps reading; its ranges are acquired by the others', () => {
  const p = new Placement([member('a'), member('b'), member('c'), member('d', 'leaving')], 3, 32);
  const acq = p.acquirers();
  assert.ok(!acq.has('d'));
  assert.ok(acq.size > 0);
  for (let i = 0; i < 300; i++) assert.ok(!p.targetList(`k${i}`).includes('d'));
});

test('no change, no acquirers, read = target', () => {
  const p = new Placement([member('a'), member('b'), member('c')], 3, 32);
  assert.equal(p.changing, false);
  assert.equal(p.acquirers().size, 0);
  for (const arc of p.arcs()) assert.deepEqual(arc.read, arc.target);
});

test('lists() hashes once and agrees with readList/targetList, during a change and outside one', () => {
  for (const phase of [undefined, 'joining', 'leaving'] as const) {
    const p = new Placement([member('a'), member('b'), member('c'), member('d', phase)], 3, 16);
    for (let i = 0; i < 200; i++) {
      const key = `k${i}`;
      const { read, target } = p.lists(key);
      assert.deepEqual(read, p.readList(key));
      assert.deepEqual(target, p.targetList(key));
    }
  }
});

test('a pending member is in neither ring, acquires nothing and is no change', () => {
  const p = new Placement([member('a'), member('b'), member('c'), member('p', 'pending')], 3, 32);
  assert.equal(p.changing, false);
  assert.equal(p.acquirers().size, 0);
  for (let i = 0; i < 300; i++) {
    assert.ok(!p.readList(`k${i}`).includes('p'));
    assert.ok(!p.targetList(`k${i}`).includes('p'));
  }
  const q = new Placement([member('a'), member('b'), member('c'), member('p', 'pending'), member('d', 'joining')], 3, 32);
  assert.deepEqual([...q.acquirers()], ['d']);
});
