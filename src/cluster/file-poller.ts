import { statSync, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';

/**
 * Calls onChange when a file changes, found by polling its stat (inode, size,
 * modification and change times) every intervalMs rather than by fs.watch:
 * a poll sees a file replaced by rename (an editor, `mv`, a Kubernetes secret
 * volume) as well as one written in place, on every platform and file
 * system. The timer does not keep the process alive. Used by the cluster
 * secret file (secret-reloader.ts) and the client token file
 * (gateway/token-store.ts).
 *
 * The baseline is the file as it is when the poller starts; a caller that
 * loaded the file earlier compares the content itself, so a change made
 * while the process was starting is not missed.
 */
export interface FilePoller {
  /** Stops polling; idempotent. */
  close(): void;
}

export function pollFile(file: string, intervalMs: number, onChange: () => void): FilePoller {
  let closed = false;
  let seen = statKey(file);
  let polling = false;
  const timer = setInterval(() => {
    if (polling || closed) return;
    polling = true;
    stat(file)
      .then(keyOf, () => 'missing')
      .then((key) => {
        if (closed || key === seen) return;
        seen = key;
        onChange();
      })
      .finally(() => (polling = false));
  }, intervalMs);
  timer.unref();
  return {
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}

/** What tells one version of the file from the next. */
function keyOf(st: Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

function statKey(file: string): string {
  try {
    return keyOf(statSync(file));
  } catch {
    return 'missing';
  }
}
