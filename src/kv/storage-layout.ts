import type { Database } from 'lmdb';
import type { Migration } from './hash-index.js';

/**
 * Bumped whenever the on-disk layout changes. Format 1 had no hash index and
 * no hints; opening a format-1 dir builds the index once (HashIndex.build).
 * Format 2 index entries held the version; format 3 reads versions from the
 * records and ignores whatever an entry holds, so a format-2 dir is taken as
 * is (its layout is bumped so that an older FlexStore refuses it rather than
 * trust versions no longer kept up to date).
 */
export const LAYOUT = { format: 3, keyOrder: 'utf16' } as const;

/**
 * Checks the layout recorded in a data dir's meta database against LAYOUT:
 * stamps a new dir, refuses one it cannot read (a newer format or another key
 * order), and upgrades an older one, running `buildIndex` for format 1.
 * Returns the migration that ran, for the caller to log, or null.
 */
export function openLayout(dir: string, meta: Database<unknown, string>, buildIndex: () => Migration): Migration | null {
  const layout = meta.get('layout') as { format: number; keyOrder: string } | undefined;
  if (!layout) {
    meta.putSync('layout', LAYOUT);
    return null;
  }
  if (layout.keyOrder !== LAYOUT.keyOrder || !(layout.format >= 1 && layout.format <= LAYOUT.format)) {
    throw new Error(`${dir} holds storage layout ${JSON.stringify(layout)}; this FlexStore reads ${JSON.stringify(LAYOUT)}`);
  }
  let migration: Migration | null = null;
  // The layout is bumped only after the whole index is written, so a crash
  // mid-migration simply starts it again.
  if (layout.format === 1) migration = buildIndex();
  if (layout.format < LAYOUT.format) meta.putSync('layout', LAYOUT);
  return migration;
}
