/**
 * One row per fault case, printed as a table when the suite ends. Rows are
 * recorded whether a case passes or fails, so a red run still shows how far
 * each case got.
 */
export interface SummaryRow {
  fault: string;
  operations: number;
  acknowledged: number;
  /** Writes that got a 5xx or no answer: they may or may not have landed. */
  indeterminate: number;
  /** Keys whose final quorum read is not an allowed value. Must be 0. */
  lost: number;
  /** Quorum reads older than a write acknowledged before they were sent. Must be 0. */
  staleReads: number;
  /**
   * Keys whose N replicas did not all hold their newest acknowledged write at
   * the first check after the heal (after a join or leave completed, for those).
   */
  shortAtHeal: number | null;
  /**
   * From the last fault healed until every write acknowledged by then was on
   * all N replicas; null if that, or the same for every later write, did not
   * happen within the deadline.
   */
  convergeMs: number | null;
  /** When convergeMs is null: why (keys short, membership still changing, the case aborted, …). */
  note?: string;
}

const rows: SummaryRow[] = [];

export function recordRow(row: SummaryRow): void {
  rows.push(row);
}

export function formatSummary(list: readonly SummaryRow[] = rows): string {
  const head = ['fault', 'operations', 'acknowledged', 'indeterminate', 'lost', 'stale reads', 'short at heal', 'time to converge'];
  const body = list.map((r) => [
    r.fault,
    String(r.operations),
    String(r.acknowledged),
    String(r.indeterminate),
    String(r.lost),
    String(r.staleReads),
    r.shortAtHeal === null ? '-' : String(r.shortAtHeal),
    r.convergeMs === null ? (r.note ?? 'not converged') : `${(r.convergeMs / 1000).toFixed(1)} s`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  // Numbers right-aligned so that rows compare at a glance.
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`;
  return [line(head), rule, ...body.map(line)].join('\n');
}

export function printSummary(): void {
  if (rows.length === 0) return;
  console.log(
    '\nFault-injection summary. short at heal: keys whose N replicas did not all hold their newest\n' +
      'acknowledged write at the first check after the last fault healed; time to converge: from the\n' +
      'heal until every write acknowledged by then was on all N replicas (checked back to back, so\n' +
      'within one check of a few hundred ms).\n' +
      `${formatSummary()}\n`,
  );
}
