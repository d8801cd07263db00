/**
 * Tables and number formats shared by the comparison and scale reports,
 * for the terminal and for Markdown.
 */

/** Rounded to two decimals: ratios and milliseconds in reports and stored results. */
export const r2 = (n: number) => Math.round(n * 100) / 100;

export const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

export const fmtMs = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '–');

/**
 * Column alignment: the first `left` columns (or those whose index is listed)
 * left-aligned, the rest, numbers, right-aligned.
 */
export type Align = number | readonly number[];

function isLeft(align: Align, i: number): boolean {
  return typeof align === 'number' ? i < align : align.includes(i);
}

/** Plain-text table. */
export function textTable(headers: string[], rows: string[][], align: Align = 1): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (isLeft(align, i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Markdown table. */
export function markdownTable(headers: string[], rows: string[][], align: Align = 1): string {
  const esc = (s: string) => s.replaceAll('|', '\\|');
  const marks = headers.map((_, i) => (isLeft(align, i) ? '---' : '---:'));
  return [headers, marks, ...rows].map((r) => `| ${r.map(esc).join(' | ')} |`).join('\n');
}
