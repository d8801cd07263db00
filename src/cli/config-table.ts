import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { commands } from './commands.js';
import type { CliOption } from './options.js';

/**
 * The README's configuration table, generated from the option rows so that
 * it cannot drift from --help: `npm run docs:config` rewrites it, and
 * config-table.test.ts fails while the README's table differs.
 */

export const BEGIN = '<!-- config-table: generated from the option rows by `npm run docs:config`; edit the rows, not this table -->';
export const END = '<!-- /config-table -->';

const COMPONENTS = ['registry', 'kv', 'gateway', 'dev'] as const;

export const README = fileURLToPath(new URL('../../README.md', import.meta.url));

export function configTable(): string {
  const lines = ['| component | flag | env | default | meaning |', '|---|---|---|---|---|'];
  for (const name of COMPONENTS) {
    for (const o of commands[name].options) {
      lines.push(`| ${name} | \`--${o.flag}\` | ${o.env ? `\`${o.env}\`` : ''} | ${defaultCell(o)} | ${text(o.help)} |`);
    }
  }
  return lines.join('\n');
}

function defaultCell(o: CliOption): string {
  if (o.default !== undefined) return `\`${o.default}\``;
  return o.defaultText !== undefined ? text(o.defaultText) : '';
}

/** Markdown-safe: a `<placeholder>` would read as an HTML tag, a `|` as a cell border. */
function text(s: string): string {
  return s.replaceAll('|', '\\|').replace(/[^\s,]*<[^>\s]+>[^\s,]*/g, (m) => `\`${m}\``);
}

/** The README with its table replaced; throws when the markers are missing. */
export function withConfigTable(readme: string): string {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the markers ${BEGIN} … ${END}`);
  return `${readme.slice(0, start)}${BEGIN}\n${configTable()}\n${readme.slice(end)}`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  const before = readFileSync(README, 'utf8');
  const after = withConfigTable(before);
  if (after !== before) writeFileSync(README, after);
  process.stdout.write(after === before ? 'README.md: configuration table up to date\n' : 'README.md: configuration table rewritten\n');
}
