import fc, { type Parameters } from 'fast-check';

/**
 * How hard the property-based fuzz tests (`*.fuzz.test.ts`) push.
 *
 * FUZZ_RUNS sets the number of generated cases of each property; the default
 * keeps the whole fuzz set well inside the unit suite's time (`npm test`
 * runs it too). `npm run fuzz` (scripts/fuzz.mjs) runs only the fuzz tests
 * with FUZZ_LONG_FACTOR times as many.
 *
 * A failing property prints its seed, path and shrunk counterexample (fast-check's
 * report, with the failing assertion in its message). FUZZ_SEED and FUZZ_PATH
 * replay it; the path belongs to that one property, so run it alone:
 *
 *   FUZZ_SEED=<seed> FUZZ_PATH=<path> node --test --test-name-pattern '<test name>' dist/<file>.fuzz.test.js
 */

export const DEFAULT_FUZZ_RUNS = 100;
export const FUZZ_LONG_FACTOR = 20;
const BASE_BUDGET_MS = 10_000;

function positiveInt(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^[1-9]\d*$/.test(raw)) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function seedOf(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^-?\d+$/.test(raw)) throw new Error(`FUZZ_SEED must be an integer, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** Cases per property: FUZZ_RUNS, or DEFAULT_FUZZ_RUNS. */
export const FUZZ_RUNS = positiveInt('FUZZ_RUNS', process.env.FUZZ_RUNS) ?? DEFAULT_FUZZ_RUNS;

const seed = seedOf(process.env.FUZZ_SEED);
const path = process.env.FUZZ_PATH || undefined;

/**
 * fast-check parameters of one property: FUZZ_RUNS × scale cases (at least
 * one), and the replay seed and path when given. scale lets a costly property
 * (a request through a server) run fewer cases than a cheap one.
 *
 * Each property also gets a time budget of BASE_BUDGET_MS plus msPerRun per
 * case, far above what its cases take: past it the property fails
 * (interrupted), and a failure found before it is reported with the
 * counterexample shrunk so far. Without it, shrinking a case that hangs (each
 * attempt costing a full deadline) could run for many minutes.
 */
export function fuzzParams<T>(opts: { scale?: number; msPerRun?: number } = {}): Parameters<T> {
  const numRuns = Math.max(1, Math.round(FUZZ_RUNS * (opts.scale ?? 1)));
  return {
    numRuns,
    // node's test reporters print an error's message, not its cause: the failing assertion goes in the message.
    includeErrorInReport: true,
    interruptAfterTimeLimit: BASE_BUDGET_MS + numRuns * (opts.msPerRun ?? 10),
    markInterruptAsFailure: true,
    ...(seed !== undefined && { seed }),
    ...(path !== undefined && { path }),
  };
}

/** Any JS string, lone surrogates included: random UTF-16 code units. */
export function codeUnitString(maxLength: number): fc.Arbitrary<string> {
  return fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength }).map((c) => String.fromCharCode(...c));
}

/**
 * A well-formed string (no lone surrogate) of code points up to U+10FFFF,
 * biased towards ASCII. Built here rather than with fc.string's 'binary'
 * unit, whose first use costs seconds of set-up.
 */
export function wellFormedString(opts: { minLength?: number; maxLength: number }): fc.Arbitrary<string> {
  const codePoint = fc.oneof(
    { weight: 2, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xd7ff }) },
    { weight: 1, arbitrary: fc.integer({ min: 0xe000, max: 0x10ffff }) },
  );
  return fc.array(codePoint, opts).map((cps) => String.fromCodePoint(...cps));
}
