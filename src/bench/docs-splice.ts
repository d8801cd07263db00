/**
 * Splicing a generated report into docs/benchmarks.md: the generated part
 * sits between two markers, so a rerun replaces it and leaves the
 * hand-written text around it alone.
 */

export const DOCS_BEGIN = '<!-- bench:generated:begin (written by `npm run bench -- --write-docs`; edit above this line) -->';
export const DOCS_END = '<!-- bench:generated:end -->';

/**
 * docs/benchmarks.md: the hand-written part of `existing` (everything above
 * the generated block) kept as it is, the generated block replaced.
 */
export function renderDocs(existing: string | undefined, generated: string, defaultIntro: string): string {
  let intro = defaultIntro.trimEnd();
  let outro = '';
  if (existing !== undefined) {
    const b = existing.indexOf(DOCS_BEGIN);
    if (b !== -1) {
      intro = existing.slice(0, b).trimEnd();
      const e = existing.indexOf(DOCS_END, b);
      if (e !== -1) outro = existing.slice(e + DOCS_END.length).trim();
    }
  }
  return `${intro}\n\n${DOCS_BEGIN}\n\n${generated.trim()}\n\n${DOCS_END}\n${outro ? `\n${outro}\n` : ''}`;
}
