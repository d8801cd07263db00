import { pollFile } from './file-poller.js';
import type { Logger } from './logger.js';
import { SecurityConfigError, readSecretFile, type LiveClusterSecurity } from './security.js';

/**
 * Rotation without restarts: a process whose secrets came from
 * --cluster-secret-file re-reads the file when it changes and from then on
 * signs with its new first secret and accepts every secret in it
 * (LiveClusterSecurity.replaceSecrets). A file that does not load (unreadable,
 * empty, a secret too short, three secrets) leaves the previous secrets in
 * force and logs one error line; a reload that does logs one info line with
 * how many secrets are now held. Neither line ever holds a secret.
 *
 * The file is polled (file-poller.ts: a stat every SECRET_POLL_MS) rather than watched with
 * fs.watch: a poll sees a file replaced by rename (how an editor, `mv`, or a
 * Kubernetes secret volume updates it) as well as one written in place, on
 * every platform and file system. The poll does not keep the process alive.
 *
 * Only a configured file is watched: an open cluster (no secret at start-up)
 * stays open, and a closed one cannot be opened by emptying the file.
 */

/** How often the file is stat'ed. A rotation step waits for every process to reload, so about a second is plenty. */
export const SECRET_POLL_MS = 1000;

export type ReloadOutcome = 'ok' | 'failed';

export interface SecretReloaderOptions {
  log: Pick<Logger, 'info' | 'error'>;
  /** Called after each reload attempt (the KV server counts them in flexstore_secret_reloads_total). */
  onReload?: (outcome: ReloadOutcome) => void;
  intervalMs?: number;
}

export interface SecretReloader {
  /** Reads the file now, as a change would. */
  reload(): ReloadOutcome;
  /** Stops watching; idempotent. */
  close(): void;
}

/** Watches security.secretFile, or does nothing (returns undefined) when the secrets did not come from a file. */
export function watchSecretFile(security: LiveClusterSecurity, opts: SecretReloaderOptions): SecretReloader | undefined {
  const file = security.secretFile;
  if (file === undefined || security.secrets.length === 0) return undefined;

  const reload = (): ReloadOutcome => {
    let next: Buffer[];
    try {
      next = readSecretFile(file);
    } catch (err) {
      // SecurityConfigError messages name the file and what is wrong, never a secret.
      const why = err instanceof SecurityConfigError ? err.message : `--cluster-secret-file ${file}: ${(err as Error).message}`;
      opts.log.error({ file, held: security.secrets.length }, `cluster secret file not reloaded, the previous secrets stay in force: ${why}`);
      opts.onReload?.('failed');
      return 'failed';
    }
    security.replaceSecrets(next);
    opts.log.info({ file, secrets: next.length }, `cluster secret file reloaded: ${next.length} secret(s) held, signing with the first`);
    opts.onReload?.('ok');
    return 'ok';
  };

  // Compared with what was loaded at start-up, so a change made while the
  // process was starting is not missed.
  const poller = pollFile(file, opts.intervalMs ?? SECRET_POLL_MS, reload);
  if (!sameSecrets(tryRead(file), security.secrets)) reload();

  return {
    reload,
    close: () => poller.close(),
  };
}

function tryRead(file: string): Buffer[] | undefined {
  try {
    return readSecretFile(file);
  } catch {
    return undefined;
  }
}

function sameSecrets(a: readonly Buffer[] | undefined, b: readonly Buffer[]): boolean {
  return a === undefined || (a.length === b.length && a.every((s, i) => s.equals(b[i]!)));
}
