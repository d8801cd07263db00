import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { codeUnitString, fuzzParams, wellFormedString } from '../test/support/fuzz.js';
import { TOKEN_ROLES, TokenFileError, findToken, parseTokenFile, sha256Hex, type TokenEntry } from './tokens.js';

/**
 * The client token file parser under random JSON, random text and mutations
 * of valid files: entries or TokenFileError, nothing else; what it accepts
 * obeys the file's rules. Valid files round-trip: the entries are what was
 * written, and each token finds its own entry.
 */

interface Spec {
  name: string;
  token: string;
  upper: boolean;
  role: (typeof TOKEN_ROLES)[number];
  prefixes?: string[];
}

const nameArb = fc.oneof(wellFormedString({ minLength: 1, maxLength: 20 }), codeUnitString(20)).filter((n) => n.trim() !== '' && n.length <= 128);
const specArb: fc.Arbitrary<Spec> = fc.record(
  {
    name: nameArb,
    token: fc.oneof(fc.string({ minLength: 1, maxLength: 24 }), codeUnitString(24)),
    upper: fc.boolean(),
    role: fc.constantFrom(...TOKEN_ROLES),
    prefixes: fc.array(fc.oneof(fc.constantFrom('', 'app/', 'a'), codeUnitString(10)), { minLength: 1, maxLength: 4 }),
  },
  { requiredKeys: ['name', 'token', 'upper', 'role'] },
);
/** Entries with distinct names and hashes, as a valid file needs (tokens differing only in lone surrogates hash alike). */
const specsArb = fc
  .uniqueArray(specArb, { maxLength: 6, selector: (s) => s.name })
  .filter((specs) => new Set(specs.map((s) => sha256Hex(s.token))).size === specs.length);

function entryJson(s: Spec): Record<string, unknown> {
  const hex = sha256Hex(s.token);
  return { name: s.name, sha256: s.upper ? hex.toUpperCase() : hex, role: s.role, ...(s.prefixes !== undefined && { prefixes: s.prefixes }) };
}
const fileOf = (entries: unknown[]): string => JSON.stringify({ tokens: entries }, null, 2);

type Entry = Record<string, unknown>;
const asEntry = (x: unknown): Entry => (typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Entry) : {});
const FIELDS = ['name', 'sha256', 'role', 'prefixes'];

/** Changes a file's entry may suffer: a field dropped, misspelt, of another type or value; the entry replaced. */
const entryMutationArb: fc.Arbitrary<(e: Entry, others: Entry[]) => unknown> = fc.oneof(
  fc.constantFrom(...FIELDS).map((f) => (e: Entry) => {
    const { [f]: _dropped, ...rest } = e;
    return rest;
  }),
  fc.tuple(fc.constantFrom(...FIELDS), fc.jsonValue({ maxDepth: 2 })).map(([f, v]) => (e: Entry) => ({ ...e, [f]: v })),
  fc.constantFrom(
    (e: Entry) => ({ ...e, prefix: ['app/'] }),
    (e: Entry) => ({ ...e, ['__proto__']: 1 }),
    (e: Entry) => ({ ...e, name: ' ' }),
    (e: Entry) => ({ ...e, name: 'n'.repeat(129) }),
    (e: Entry) => ({ ...e, prefixes: [] }),
    (e: Entry) => ({ ...e, prefixes: ['p'.repeat(4097)] }),
    (e: Entry) => ({ ...e, prefixes: [1] }),
    (e: Entry) => ({ ...e, role: 'Admin' }),
    (e: Entry) => ({ ...e, sha256: String(e.sha256 ?? '').slice(1) }),
    (e: Entry) => ({ ...e, sha256: `${String(e.sha256 ?? '').slice(1)}g` }),
    (e: Entry, others: Entry[]) => ({ ...e, name: others[0]?.name }),
    (e: Entry, others: Entry[]) => ({ ...e, sha256: String(others[0]?.sha256 ?? '').toUpperCase() }),
    () => null,
    () => ['name'],
  ),
);

const mutatedFileArb = fc
  .tuple(
    specsArb,
    fc.array(fc.tuple(fc.nat(), entryMutationArb), { minLength: 1, maxLength: 3 }),
    fc.constantFrom('as is', 'extra field', 'tokens not an array', 'bare array'),
  )
  .map(([specs, mutations, doc]) => {
    const entries: unknown[] = specs.map(entryJson);
    if (entries.length > 0) {
      for (const [at, m] of mutations) {
        const i = at % entries.length;
        entries[i] = m(asEntry(entries[i]), entries.filter((_, j) => j !== i).map(asEntry));
      }
    }
    if (doc === 'extra field') return JSON.stringify({ tokens: entries, version: 1 });
    if (doc === 'tokens not an array') return JSON.stringify({ tokens: { ...entries } });
    if (doc === 'bare array') return JSON.stringify(entries);
    return fileOf(entries);
  });

/** Text-level damage: a character changed, the text cut, a character inserted. */
const textDamageArb = fc.oneof(
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 0xffff })).map(([at, c]) => (t: string) => {
    const i = at % (t.length + 1);
    return t.slice(0, i) + String.fromCharCode(c) + t.slice(i + 1);
  }),
  fc.nat().map((at) => (t: string) => t.slice(0, at % (t.length + 1))),
  fc.tuple(fc.nat(), fc.constantFrom('"', ',', '{', '}', '[', ']', ':', '\\', ' ')).map(([at, c]) => (t: string) => {
    const i = at % (t.length + 1);
    return t.slice(0, i) + c + t.slice(i);
  }),
);

const textArb = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ tokens: v })),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }).map((entries) => fileOf(entries)),
  codeUnitString(60),
  mutatedFileArb,
  fc.tuple(specsArb.map((s) => fileOf(s.map(entryJson))), fc.array(textDamageArb, { minLength: 1, maxLength: 3 })).map(([t, ds]) =>
    ds.reduce((acc: string, d) => d(acc), t),
  ),
);

/** Runs the parser: its entries, or undefined for a TokenFileError; anything else fails. */
function parse(text: string): TokenEntry[] | undefined {
  try {
    return parseTokenFile(text);
  } catch (err) {
    if (err instanceof TokenFileError) return undefined;
    throw new Error(`parseTokenFile threw ${(err as Error)?.name}, not TokenFileError: ${(err as Error)?.message}`, { cause: err });
  }
}

describe('token file parser fuzz', () => {
  test('random JSON, random text and mutated files: entries that keep the rules, or TokenFileError', () => {
    fc.assert(
      fc.property(textArb, (text) => {
        const entries = parse(text);
        if (entries === undefined) return;
        assert.equal(new Set(entries.map((e) => e.name)).size, entries.length, 'a name is used twice');
        assert.equal(new Set(entries.map((e) => e.sha256.toString('hex'))).size, entries.length, 'a hash is used twice');
        for (const e of entries) {
          assert.ok(typeof e.name === 'string' && e.name.trim() !== '' && e.name.length <= 128);
          assert.equal(e.sha256.length, 32);
          assert.ok(TOKEN_ROLES.includes(e.role));
          // A prefix list that would silently mean "every key" (empty, or holding "") is null instead.
          if (e.prefixes !== null) assert.ok(e.prefixes.length > 0 && e.prefixes.every((p) => typeof p === 'string' && p !== '' && p.length <= 4096));
        }
      }),
      fuzzParams(),
    );
  });

  test('valid files round-trip: the entries written, and each token finds its own', () => {
    fc.assert(
      fc.property(specsArb, (specs) => {
        const entries = parse(fileOf(specs.map(entryJson)));
        assert.ok(entries !== undefined, 'a valid file was refused');
        assert.deepEqual(
          entries.map((e) => ({ ...e, sha256: e.sha256.toString('hex') })),
          specs.map((s) => ({
            name: s.name,
            sha256: sha256Hex(s.token),
            role: s.role,
            prefixes: s.prefixes === undefined || s.prefixes.includes('') ? null : [...new Set(s.prefixes)],
          })),
        );
        for (const s of specs) assert.equal(findToken(entries, s.token)?.name, s.name);
      }),
      fuzzParams(),
    );
  });
});
