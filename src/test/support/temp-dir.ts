import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/**
 * A maker of fresh temp dirs named `${prefix}XXXXXX`, every one removed when
 * the tests around the call end: call it at a test file's top level (removed
 * after the file) or inside a describe (removed after that suite). The dirs
 * are made synchronously, so `Storage.open(tempDir())` reads as one step.
 */
export function tempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}
