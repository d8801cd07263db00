/**
 * One row per configuration option: its flag, environment variable, kind,
 * default, doc line and check. A component's config.ts lists its rows once;
 * from them come the typed config, the default object, validateConfig, the
 * CLI tables and --help, and the README's configuration table. This module
 * knows nothing of argv or the environment: the CLI reads those (cli/options.ts).
 */

export type OptionKind =
  | 'port' // integer min..65535 (min 0 unless given)
  | 'ports' // comma-separated list of ports
  | 'int' // integer >= min (1 unless given)
  | 'count' // like int; digit groups may be separated by _ (10_000)
  | 'counts' // comma-separated counts
  | 'seconds' // a number of seconds > 0, fractions allowed
  | 'duration' // 500ms, 30s, 10m, 2h, 10d; a bare number is seconds; typed value in ms
  | 'url' // http(s) URL without query or fragment, trailing slash removed
  | 'string' // non-empty
  | 'id' // the charset a version suffix allows (see cluster/hlc.ts)
  | 'enum' // one of `choices`
  | 'enums' // comma-separated subset of `choices`, returned in the order of `choices`
  | 'boolean'; // a flag without value; read from the environment (true/false) only when the row names a variable

export interface OptionRow<V = unknown, Required extends boolean = boolean> {
  /** Long flag without the dashes. Absent: the option is set only by code embedding the component. */
  readonly flag?: string;
  readonly env?: string;
  readonly kind: OptionKind;
  readonly choices?: readonly string[];
  /** Lower bound of numeric kinds. */
  readonly min?: number;
  /** Absent: the field is optional, unset unless given. */
  readonly default?: V;
  /**
   * Shown instead of the default when the default depends on something else
   * (another option, the bound port). The CLI leaves such an option unset and
   * the component derives it.
   */
  readonly defaultText?: string;
  /** Placeholder in help, e.g. `<port>`. */
  readonly valueName?: string;
  /** One line, shown in --help and the README. */
  readonly doc: string;
  /** A rule beyond the kind's, e.g. one relating two fields: returns why the value is refused. */
  readonly check?: (value: V, config: Readonly<Record<string, unknown>>) => string | undefined;
  /** Type-level marker only: whether the field has a default. */
  readonly required?: Required;
}

type Init<V> = Omit<OptionRow<V>, 'kind' | 'required' | 'choices'>;

/** With a default the field is required in the typed config; without, optional. */
interface Builder<V> {
  (init: Init<V> & { default: V }): OptionRow<V, true>;
  (init: Init<V>): OptionRow<V, false>;
}
// The choices alone decide the type; a default or a check must fit it.
type Value<C extends string, Many extends boolean> = NoInfer<Many extends true ? C[] : C>;
interface ChoiceBuilder<Many extends boolean> {
  <C extends string>(choices: readonly C[], init: Init<Value<C, Many>> & { default: Value<C, Many> }): OptionRow<Value<C, Many>, true>;
  <C extends string>(choices: readonly C[], init: Init<Value<C, Many>>): OptionRow<Value<C, Many>, false>;
}

function row<V>(kind: OptionKind): Builder<V> {
  return ((init: Init<V>) => ({ ...init, kind })) as Builder<V>;
}

function choice<Many extends boolean>(kind: 'enum' | 'enums'): ChoiceBuilder<Many> {
  return ((choices: readonly string[], init: Init<unknown>) => ({ ...init, kind, choices })) as ChoiceBuilder<Many>;
}

/** Row builders: each fixes the TypeScript type of its field. */
export const opt = {
  port: row<number>('port'),
  ports: row<number[]>('ports'),
  int: row<number>('int'),
  count: row<number>('count'),
  counts: row<number[]>('counts'),
  seconds: row<number>('seconds'),
  duration: row<number>('duration'),
  url: row<string>('url'),
  string: row<string>('string'),
  id: row<string>('id'),
  boolean: row<boolean>('boolean'),
  enum: choice<false>('enum'),
  enums: choice<true>('enums'),
};

export type Rows = Readonly<Record<string, OptionRow<any>>>;
type ValueOf<R> = R extends OptionRow<infer V, boolean> ? V : never;
type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The typed config the rows describe: a field per row, optional where the row has no default. */
export type ConfigOf<S extends Rows> = Simplify<
  { -readonly [K in keyof S as S[K] extends OptionRow<any, true> ? K : never]: ValueOf<S[K]> } & {
    -readonly [K in keyof S as S[K] extends OptionRow<any, true> ? never : K]?: ValueOf<S[K]>;
  }
>;

export interface OptionSet<S extends Rows> {
  readonly component: string;
  readonly rows: S;
  readonly defaults: Readonly<ConfigOf<S>>;
  /** Throws `invalid <component> config: <field> <why> (got <value>)` for the first field refused. */
  validate(config: ConfigOf<S>): void;
}

export function defineOptions<S extends Rows>(component: string, rows: S): OptionSet<S> {
  const defaults: Record<string, unknown> = {};
  for (const [field, r] of Object.entries(rows)) if (r.default !== undefined) defaults[field] = r.default;
  return {
    component,
    rows,
    defaults: defaults as ConfigOf<S>,
    validate(config) {
      const c = config as Record<string, unknown>;
      for (const [field, r] of Object.entries(rows)) {
        const value = c[field];
        if (value === undefined && r.default === undefined) continue;
        const why = checkValue(r, value) ?? r.check?.(value, c);
        if (why !== undefined) throw new Error(`invalid ${component} config: ${field} ${why} (got ${JSON.stringify(value)})`);
      }
    },
  };
}

// ---------------------------------------------------------------------------
// Kinds: what a typed value must be, and how a raw string (flag or env) becomes one

const isInt = (v: unknown, min: number): boolean => Number.isSafeInteger(v) && (v as number) >= min;
const isPort = (v: unknown, min = 0): boolean => isInt(v, min) && (v as number) <= 65535;

/** Why a typed value is refused by its row's kind and bounds, or undefined. */
export function checkValue(r: OptionRow<any>, v: unknown): string | undefined {
  const min = r.min ?? defaultMin(r.kind);
  switch (r.kind) {
    case 'port':
      return isPort(v, min) ? undefined : `must be a port from ${min} to 65535`;
    case 'ports':
      return Array.isArray(v) && v.length > 0 && v.every((p) => isPort(p)) ? undefined : 'must be a list of ports';
    case 'int':
    case 'count':
    case 'duration':
      return isInt(v, min) ? undefined : `must be an integer ≥ ${min}`;
    case 'counts':
      return Array.isArray(v) && v.length > 0 && v.every((n) => isInt(n, min)) ? undefined : `must be a list of integers ≥ ${min}`;
    case 'seconds':
      return typeof v === 'number' && Number.isFinite(v) && v > 0 ? undefined : 'must be a number > 0';
    case 'url':
      return typeof v === 'string' && parseHttpUrl(v) !== undefined ? undefined : 'must be an http:// or https:// URL';
    case 'string':
      return typeof v === 'string' && v.trim() !== '' ? undefined : 'must be a non-empty string';
    case 'id':
      return typeof v === 'string' && ID.test(v) ? undefined : 'must be 1 to 64 characters from A-Z a-z 0-9 _ -';
    case 'enum':
      return r.choices!.includes(v as string) ? undefined : `must be ${alternatives(r.choices!)}`;
    case 'enums':
      return Array.isArray(v) && v.length > 0 && v.every((x) => r.choices!.includes(x)) ? undefined : `must be a list of ${alternatives(r.choices!)}`;
    case 'boolean':
      return typeof v === 'boolean' ? undefined : 'must be true or false';
  }
}

function defaultMin(kind: OptionKind): number {
  return kind === 'int' || kind === 'count' || kind === 'counts' ? 1 : 0;
}

function alternatives(choices: readonly string[]): string {
  const quoted = choices.map((c) => `'${c}'`);
  return quoted.length > 1 ? `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}` : quoted.join('');
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The value of a raw string, or, when it is refused, what was expected (the
 * tail of the CLI's message `invalid --flag "raw": expected ...`).
 */
export function parseRaw(r: OptionRow<any>, raw: string): { value: unknown } | { expected: string } {
  const min = r.min ?? defaultMin(r.kind);
  const ok = (value: unknown) => ({ value });
  const no = (expected: string) => ({ expected });
  switch (r.kind) {
    case 'port': {
      const n = parseInteger(raw);
      return n !== undefined && isPort(n, min) ? ok(n) : no(`expected a port, an integer from ${min} to 65535`);
    }
    case 'ports': {
      const ports = raw.split(',').map((p) => parsePort(p.trim()));
      return ports.every((p) => p !== undefined) ? ok(ports) : no('expected comma-separated ports, e.g. 8001,8002,8003');
    }
    case 'int':
    case 'count': {
      const text = r.kind === 'count' ? withoutSeparators(raw) : raw;
      // A leading minus only where the row allows negative values.
      const negative = min < 0 && text.trim().startsWith('-');
      const abs = parseInteger(negative ? text.trim().slice(1) : text);
      const n = abs === undefined ? undefined : negative ? -abs : abs;
      return n !== undefined && n >= min ? ok(n) : no(`expected an integer of at least ${min}`);
    }
    case 'counts': {
      const ns = raw.split(',').map((s) => parseInteger(withoutSeparators(s)));
      return ns.every((n) => n !== undefined && n >= min) ? ok(ns) : no(`expected comma-separated integers of at least ${min}`);
    }
    case 'seconds': {
      const s = raw.trim() === '' ? NaN : Number(raw);
      return Number.isFinite(s) && s > 0 ? ok(s) : no('expected a positive number of seconds');
    }
    case 'duration': {
      const ms = parseDuration(raw);
      return ms !== undefined && ms >= min ? ok(ms) : no('expected a duration such as 500ms, 30s, 10m, 2h or 10d');
    }
    case 'url':
      return ifDefined(parseHttpUrl(raw)) ?? no('expected an http:// or https:// URL');
    case 'string':
      return raw.trim() !== '' ? ok(raw) : no('expected a non-empty value');
    case 'id':
      return ID.test(raw) ? ok(raw) : no('expected 1 to 64 characters from A-Z a-z 0-9 _ -');
    case 'enum':
      return r.choices!.includes(raw) ? ok(raw) : no(`expected one of ${r.choices!.join(', ')}`);
    case 'enums': {
      const items = raw.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
      if (items.length === 0 || items.some((i) => !r.choices!.includes(i))) return no(`expected a comma list of ${r.choices!.join(', ')}`);
      // Canonical order, whatever order the list was given in.
      return ok(r.choices!.filter((c) => items.includes(c)));
    }
    case 'boolean':
      return no('no value');
  }
}

function ifDefined(value: unknown): { value: unknown } | undefined {
  return value === undefined ? undefined : { value };
}

function withoutSeparators(raw: string): string {
  return /^\d+(_\d+)*$/.test(raw.trim()) ? raw.replaceAll('_', '') : raw;
}

export function parseInteger(raw: string): number | undefined {
  if (!/^\d+$/.test(raw.trim())) return undefined;
  const n = Number(raw.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

export function parsePort(raw: string): number | undefined {
  const n = parseInteger(raw);
  return n !== undefined && n <= 65535 ? n : undefined;
}

const DURATION_UNITS: ReadonlyArray<[string, number]> = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]];

/** Milliseconds of `500ms`, `30s`, `10m`, `2h`, `10d`; a bare number is seconds. */
export function parseDuration(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim());
  if (!m) return undefined;
  const unit = DURATION_UNITS.find(([u]) => u === (m[2] ?? 's'))![1];
  const ms = Number(m[1]) * unit;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** The inverse of parseDuration in the largest whole unit: 864000000 → `10d`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  const [unit, size] = DURATION_UNITS.find(([, size]) => ms % size === 0)!;
  return `${ms / size}${unit}`;
}

/** Accepts http(s) URLs only; drops a trailing slash so callers can append paths. */
export function parseHttpUrl(raw: string): string | undefined {
  let u: URL;
  try {
    u = new URL(raw.trim());
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.search || u.hash) return undefined;
  return u.href.replace(/\/+$/, '');
}

/** The default as a user would type it (`10d`, `8001,8002`), or the row's defaultText. */
export function defaultText(r: OptionRow<any>): string | undefined {
  if (r.defaultText !== undefined) return r.defaultText;
  const d: unknown = r.default;
  if (d === undefined || r.kind === 'boolean') return undefined;
  if (r.kind === 'duration') return formatDuration(d as number);
  return Array.isArray(d) ? d.join(',') : String(d);
}
