import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FlexStoreError } from '../cluster/errors.js';
import { codeUnitString, fuzzParams, wellFormedString } from '../test/support/fuzz.js';
import { MAX_BATCH_ITEMS, parseBatch, type BatchItem, type BatchLimits } from './batch.js';

/**
 * The `POST /batch` body parser under random bytes, random JSON and mutated
 * valid bodies: the items, or a FlexStoreError of status 400 or 413, nothing
 * else. An error naming an item names the first bad one: the items before it
 * parse, the item alone fails the same way. Valid bodies round-trip.
 */

/** Tight limits that generated keys and values cross, or the gateway's defaults that they never reach. */
const limitsArb: fc.Arbitrary<BatchLimits> = fc.oneof(
  fc.record({ maxKeyBytes: fc.integer({ min: 1, max: 48 }), maxValueBytes: fc.integer({ min: 0, max: 48 }) }),
  fc.constant({ maxKeyBytes: 1024, maxValueBytes: 1024 * 1024 }),
);

/** Keys: any string, lone surrogates included (JSON carries them escaped). */
const keyArb = fc.oneof(codeUnitString(16), wellFormedString({ maxLength: 16 }));
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));

interface ItemSpec {
  key: string;
  value: { text: string } | { bytes: Buffer };
  contentType?: string;
}
const itemSpecArb: fc.Arbitrary<ItemSpec> = fc.record(
  {
    key: keyArb,
    value: fc.oneof(
      codeUnitString(24).map((text) => ({ text })),
      bytes(36).map((b) => ({ bytes: b })),
    ),
    contentType: wellFormedString({ minLength: 1, maxLength: 24 }),
  },
  { requiredKeys: ['key', 'value'] },
);

function itemJson(spec: ItemSpec): Record<string, unknown> {
  return {
    key: spec.key,
    ...('text' in spec.value ? { value: spec.value.text } : { valueBase64: spec.value.bytes.toString('base64') }),
    ...(spec.contentType !== undefined && { contentType: spec.contentType }),
  };
}

function expectedItem(spec: ItemSpec): BatchItem {
  return {
    key: spec.key,
    value: 'text' in spec.value ? Buffer.from(spec.value.text, 'utf8') : spec.value.bytes,
    contentType: spec.contentType ?? 'application/octet-stream',
  };
}

function fits(spec: ItemSpec, limits: BatchLimits): boolean {
  return (
    spec.key !== '' &&
    Buffer.byteLength(spec.key, 'utf8') <= limits.maxKeyBytes &&
    expectedItem(spec).value.length <= limits.maxValueBytes
  );
}

type Item = Record<string, unknown>;
/** An item to mutate further: an earlier mutation may have left something else. */
const asItem = (x: unknown): Item => (typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Item) : {});

/** A change that may break an item: a field removed, of the wrong type, out of bounds, or both value fields. */
const itemMutationArb: fc.Arbitrary<(item: Item) => unknown> = fc.oneof(
  fc.constantFrom('key', 'value', 'valueBase64', 'contentType').map((f) => (item: Item) => {
    const { [f]: _dropped, ...rest } = item;
    return rest;
  }),
  fc
    .tuple(fc.constantFrom('key', 'value', 'valueBase64', 'contentType'), fc.jsonValue({ maxDepth: 2 }))
    .map(([f, v]) => (item: Item) => ({ ...item, [f]: v })),
  fc.constantFrom(
    (item: Item) => ({ ...item, key: '' }),
    (item: Item) => ({ ...item, key: 'k'.repeat(200) }),
    (item: Item) => ({ ...item, contentType: '' }),
    (item: Item) => ({ ...item, contentType: 'c'.repeat(1025) }),
    (item: Item) => ({ ...item, value: 'v'.repeat(100) }),
    (item: Item) => ({ ...item, valueBase64: 'QUJD' }),
    (item: Item) => ({ ...item, valueBase64: 'not base64!' }),
    (item: Item) => ({ ...item, valueBase64: 'QUJ' }),
    (item: Item) => ({ ...item, valueBase64: Buffer.alloc(100).toString('base64') }),
    () => null,
    () => [],
    () => 'item',
  ),
);

/** A body of valid items with some of them mutated, and the document around them perhaps broken too. */
const mutatedBodyArb = fc
  .tuple(
    fc.array(itemSpecArb, { minLength: 1, maxLength: 6 }),
    fc.array(fc.tuple(fc.nat(), itemMutationArb), { maxLength: 3 }),
    fc.constantFrom('as is', 'empty items', 'too many items', 'items not an array', 'a bare array', 'extra fields'),
  )
  .map(([specs, mutations, doc]) => {
    let items: unknown[] = specs.map(itemJson);
    for (const [at, m] of mutations) items[at % items.length] = m(asItem(items[at % items.length]));
    if (doc === 'empty items') items = [];
    if (doc === 'too many items') items = Array.from({ length: MAX_BATCH_ITEMS + 1 }, (_, i) => items[i % items.length]);
    const document =
      doc === 'items not an array'
        ? { items: { 0: items[0] } }
        : doc === 'a bare array'
          ? items
          : doc === 'extra fields'
            ? { consistency: 'all', items, more: [1, 2] }
            : { items };
    return Buffer.from(JSON.stringify(document), 'utf8');
  });

/** Byte-level damage to a body. */
const textMutationArb: fc.Arbitrary<(b: Buffer) => Buffer> = fc.oneof(
  fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }).map(({ at, xor }) => (b: Buffer) => {
    const c = Buffer.from(b);
    if (c.length > 0) c[at % c.length]! ^= xor;
    return c;
  }),
  fc.nat().map((at) => (b: Buffer) => b.subarray(0, at % (b.length + 1))),
  fc.tuple(fc.nat(), bytes(6)).map(([at, ins]) => (b: Buffer) => {
    const i = at % (b.length + 1);
    return Buffer.concat([b.subarray(0, i), ins, b.subarray(i)]);
  }),
);

const bodyArb: fc.Arbitrary<unknown> = fc.oneof(
  bytes(200),
  fc.json({ maxDepth: 3 }).map((t) => Buffer.from(t, 'utf8')),
  fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify({ items: v }) ?? '', 'utf8')),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { minLength: 1, maxLength: 4 }).map((items) => Buffer.from(JSON.stringify({ items }), 'utf8')),
  mutatedBodyArb,
  fc.tuple(mutatedBodyArb, fc.array(textMutationArb, { minLength: 1, maxLength: 3 })).map(([b, ms]) => ms.reduce((acc: Buffer, m) => m(acc), b)),
  // Text, as the route hands the body over (read as UTF-8 text, batch.ts readText).
  fc.oneof(bytes(200), mutatedBodyArb).map((b) => b.toString('utf8')),
  // Neither text nor bytes: the route's parser failed to run, or someone calls parseBatch directly.
  fc.constantFrom(undefined, null, { items: [{ key: 'a', value: 'b' }] }),
);

/** Runs parseBatch: its items, or the FlexStoreError (400 or 413) it threw; anything else fails. */
function parse(body: unknown, limits: BatchLimits): { items: BatchItem[] } | { error: FlexStoreError } {
  try {
    return { items: parseBatch(body, limits) };
  } catch (err) {
    if (!(err instanceof FlexStoreError)) {
      throw new Error(`parseBatch threw ${(err as Error)?.name}, not a FlexStoreError: ${(err as Error)?.message}`, { cause: err });
    }
    assert.ok(err.status === 400 || err.status === 413, `parseBatch answered ${err.status} ${err.code}`);
    return { error: err };
  }
}

const bodyOf = (items: unknown[]): Buffer => Buffer.from(JSON.stringify({ items }), 'utf8');

describe('batch parser fuzz', () => {
  test('random bytes, random JSON and mutated bodies: items, or a 400 or 413 naming the first bad item', () => {
    fc.assert(
      fc.property(bodyArb, limitsArb, (body, limits) => {
        const r = parse(body, limits);
        if ('items' in r) {
          assert.ok(r.items.length >= 1 && r.items.length <= MAX_BATCH_ITEMS);
          for (const it of r.items) {
            const keyOk = typeof it.key === 'string' && it.key !== '' && Buffer.byteLength(it.key) <= limits.maxKeyBytes;
            assert.ok(keyOk, `bad key accepted: ${JSON.stringify(it.key)}`);
            assert.ok(Buffer.isBuffer(it.value) && it.value.length <= limits.maxValueBytes, 'a value over the limit was accepted');
            assert.ok(typeof it.contentType === 'string' && it.contentType !== '' && it.contentType.length <= 1024);
          }
          return;
        }
        const item = r.error.details.item;
        if (item === undefined) return;
        // The error names an item: the items before it are fine, the item alone fails the same way.
        assert.ok(Buffer.isBuffer(body) || typeof body === 'string', 'an item was named in a body that is no JSON text');
        const items = (JSON.parse(body.toString('utf8')) as { items: unknown[] }).items;
        assert.ok(typeof item === 'number' && item >= 0 && item < items.length, `item ${String(item)} is not an index`);
        if (item > 0) assert.ok('items' in parse(bodyOf(items.slice(0, item)), limits), `an item before item ${item} is bad`);
        const alone = parse(bodyOf([items[item]]), limits);
        assert.ok('error' in alone, `item ${item} is fine on its own`);
        assert.equal(alone.error.code, r.error.code);
        assert.equal(alone.error.message, r.error.message);
      }),
      fuzzParams(),
    );
  });

  test('valid bodies round-trip: every item, in order, as sent', () => {
    fc.assert(
      fc.property(fc.array(itemSpecArb, { minLength: 1, maxLength: 8 }), limitsArb, (specs, limits) => {
        const r = parse(bodyOf(specs.map(itemJson)), limits);
        if (specs.every((s) => fits(s, limits))) {
          assert.ok('items' in r, `a valid body was refused: ${'error' in r ? r.error.message : ''}`);
          assert.deepEqual(r.items, specs.map(expectedItem));
        } else {
          assert.ok('error' in r, 'a body with an item over a limit was accepted');
          const first = specs.findIndex((s) => !fits(s, limits));
          assert.equal(r.error.details.item, first);
          // A key over the limit is a bad request; a value over it, with a good key, is too large.
          const s = specs[first]!;
          const keyBad = s.key === '' || Buffer.byteLength(s.key, 'utf8') > limits.maxKeyBytes;
          assert.equal(r.error.status, keyBad ? 400 : 413);
        }
      }),
      fuzzParams(),
    );
  });
});
