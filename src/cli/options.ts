import { parseArgs } from 'node:util';
import { defaultText, parseRaw, type OptionKind, type OptionRow, type Rows } from '../cluster/option-spec.js';

export { parseHttpUrl } from '../cluster/option-spec.js';

/**
 * A small generic command-line parser over option rows (cluster/option-spec.ts):
 * the rows drive parsing, validation and --help, so a default shown in help
 * is the default applied. Precedence: flag, then environment, then default.
 *
 * Functions here are pure (argv and env are passed in) so they can be tested
 * without touching the real process.
 */

/** A row as the command line sees it: its default as the text a user would type. */
export interface CliOption {
  /** The field of the typed config this option sets. */
  field: string;
  /** Long flag without the dashes, e.g. `data-dir`. Also the key in parsed values. */
  flag: string;
  env?: string;
  kind: OptionKind;
  /** Absent: the option is unset unless given (a derived default is shown as defaultText). */
  default?: string;
  defaultText?: string;
  valueName?: string;
  help: string;
  row: OptionRow<any>;
  /** The flag may be repeated: its value is the list of every one given (flag only, never the environment). */
  multiple?: boolean;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** Positional arguments as shown in usage, e.g. `KEY VALUE`. */
  args?: string;
  /** [min, max] positional arguments. */
  positionals: [number, number];
  options: CliOption[];
  notes?: string[];
}

export type OptionValues = Record<string, unknown>;

export interface ParsedCommand {
  help: boolean;
  /** Typed values by flag. */
  values: OptionValues;
  positionals: string[];
  /** Flags given on the command line or through the environment (not defaulted). */
  explicit: ReadonlySet<string>;
}

/** A mistake in how the CLI was invoked: reported in one line, exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The command-line options of some rows (those with a flag), in row order. */
export function cliOptions(rows: Rows, overrides: Readonly<Record<string, Partial<OptionRow<any>>>> = {}): CliOption[] {
  const out: CliOption[] = [];
  for (const [field, base] of Object.entries(rows)) {
    const row: OptionRow<any> = { ...base, ...overrides[field] };
    if (row.flag === undefined) continue;
    const o: CliOption = { field, flag: row.flag, kind: row.kind, help: row.doc, row };
    if (row.env !== undefined) o.env = row.env;
    if (row.valueName !== undefined) o.valueName = row.valueName;
    if (row.defaultText !== undefined) o.defaultText = row.defaultText;
    else if (defaultText(row) !== undefined) o.default = defaultText(row)!;
    out.push(o);
  }
  return out;
}

type Source = { kind: 'flag' | 'env'; label: string };

/**
 * Parses one command's argv (everything after the command name) against its
 * options, then fills each from the flag, the environment or the default.
 * Throws UsageError on anything it cannot accept. With --help, returns at once
 * without validating the rest, so help always works.
 */
export function parseCommand(spec: CommandSpec, argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedCommand {
  const parseOptions: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const o of spec.options) {
    parseOptions[o.flag] = { type: o.kind === 'boolean' ? 'boolean' : 'string', ...(o.multiple && { multiple: true }) };
  }

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options: parseOptions, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  const given = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const explicit = new Set<string>();
  if (given.help) return { help: true, values: {}, positionals: parsed.positionals, explicit };

  const [min, max] = spec.positionals;
  const n = parsed.positionals.length;
  if (n < min || n > max) {
    const expected = spec.args ? `expected ${spec.args}` : 'expected no arguments';
    const extra = n > max ? `unexpected argument ${JSON.stringify(parsed.positionals[max])}` : `missing argument`;
    throw new UsageError(`${extra}; ${expected}`);
  }

  const values: OptionValues = {};
  for (const o of spec.options) {
    const flagValue = given[o.flag];
    if (o.multiple) {
      const list = Array.isArray(flagValue) ? flagValue : [];
      values[o.flag] = list.map((raw) => {
        const result = parseRaw(o.row, raw);
        if ('expected' in result) throw new UsageError(`invalid --${o.flag} ${JSON.stringify(raw)}: ${result.expected}`);
        return result.value;
      });
      if (list.length > 0) explicit.add(o.flag);
      continue;
    }
    if (o.kind === 'boolean') {
      // A boolean row is read from the environment only when it names a variable (METRICS_PUBLIC=true).
      const envRaw = o.env ? env[o.env] : undefined;
      if (flagValue === true) {
        values[o.flag] = true;
        explicit.add(o.flag);
      } else if (envRaw !== undefined && envRaw !== '') {
        const b = parseBooleanEnv(envRaw);
        if (b === undefined) throw new UsageError(`invalid ${o.env} ${JSON.stringify(envRaw)} (from the environment): expected true or false`);
        values[o.flag] = b;
        explicit.add(o.flag);
      } else {
        values[o.flag] = false;
      }
      continue;
    }
    const envValue = o.env ? env[o.env] : undefined;
    let raw: string;
    let source: Source;
    if (typeof flagValue === 'string') {
      raw = flagValue;
      source = { kind: 'flag', label: `--${o.flag}` };
    } else if (o.env && envValue !== undefined && envValue !== '') {
      // An empty variable counts as unset: compose files and shells often export NAME= to mean "no value".
      raw = envValue;
      source = { kind: 'env', label: o.env };
    } else {
      // A derived default (defaultText) stays unset: the component derives it.
      values[o.flag] = o.default === undefined ? undefined : structuredClone(o.row.default);
      continue;
    }
    explicit.add(o.flag);
    const result = parseRaw(o.row, raw);
    if ('expected' in result) {
      const from = source.kind === 'env' ? ' (from the environment)' : '';
      throw new UsageError(`invalid ${source.label} ${JSON.stringify(raw)}${from}: ${result.expected}`);
    }
    values[o.flag] = result.value;
  }
  return { help: false, values, positionals: parsed.positionals, explicit };
}

function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = String(e?.message ?? err);
  const optionName = /'(-{1,2}[^' ]+)/.exec(message)?.[1];
  switch (e?.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${optionName ?? message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(message)) return `option ${optionName} does not take a value`;
      if (/ambiguous/.test(message)) return `option ${optionName} needs a value (write ${optionName}=<value> for a value starting with '-')`;
      return `option ${optionName ?? ''} needs a value`.replace('  ', ' ');
    default:
      return message.split('\n')[0]!;
  }
}

/**
 * The typed config of parsed values: the rows' defaults, overridden by every
 * option that has a value. Fields the CLI leaves unset keep their default or
 * stay absent.
 */
export function configFrom<T extends object>(defaults: Readonly<T>, options: readonly CliOption[], values: OptionValues): T {
  const config: Record<string, unknown> = { ...defaults };
  for (const o of options) if (values[o.flag] !== undefined) config[o.field] = values[o.flag];
  return config as T;
}

// ---------------------------------------------------------------------------
// Help

export function formatCommandHelp(spec: CommandSpec): string {
  const usage = `Usage: flexstore ${spec.name} [options]${spec.args ? ` ${spec.args}` : ''}`;
  const withEnv = spec.options.some((o) => o.env !== undefined);
  const rows: string[][] = spec.options.map((o) => {
    const flag = `--${o.flag}${o.valueName ? ` ${o.valueName}` : ''}`;
    const def = o.default ?? o.defaultText;
    const help = def !== undefined && o.kind !== 'boolean' ? `${o.help} (default: ${def})` : o.help;
    return withEnv ? [flag, o.env ?? '', help] : [flag, help];
  });
  rows.push(withEnv ? ['-h, --help', '', 'Show this help'] : ['-h, --help', 'Show this help']);
  const heading = withEnv ? 'Options (flag, environment variable, meaning):' : 'Options:';
  const lines = [usage, '', spec.summary, '', heading, ...formatRows(rows)];
  if (withEnv) lines.push('', 'Flags win over environment variables, which win over defaults.');
  if (spec.notes) lines.push(...(withEnv ? [] : ['']), ...spec.notes);
  return lines.join('\n') + '\n';
}

export function formatRows(rows: ReadonlyArray<readonly string[]>): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    ('  ' + row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]! + 2))).join('')).trimEnd(),
  );
}

/** true/false, 1/0, yes/no (any case); undefined for anything else. */
export function parseBooleanEnv(raw: string): boolean | undefined {
  const v = raw.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  return undefined;
}
