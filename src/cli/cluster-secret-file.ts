import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Name of the secret file `flexstore dev` keeps in its data dir. */
export const SECRET_FILE_NAME = 'cluster-secret';

/**
 * The path of <dataDir>/cluster-secret, creating it on first use: 32 random
 * bytes, base64url, one line, mode 0600 (only its owner may read it).
 * An existing file is kept as it is (a rotation may have put two lines in
 * it); one others may read is narrowed to 0600.
 */
export function ensureClusterSecret(dataDir: string): string {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, SECRET_FILE_NAME);
  try {
    // 'wx': never overwrite a secret a cluster already uses, even if two dev runs race.
    writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  }
  return file;
}
