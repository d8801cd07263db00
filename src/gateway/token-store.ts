import { readFileSync } from 'node:fs';
import { pollFile } from '../cluster/file-poller.js';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../cluster/logger.js';
import { SecurityConfigError } from '../cluster/security.js';
import { TokenFileError, parseTokenFile, type TokenEntry } from './tokens.js';

/**
 * The client tokens of a gateway, loaded from --auth-tokens-file and re-read
 * when the file changes, the way secret-reloader.ts re-reads the cluster
 * secret file: the file is stat'ed about once a second (inode, size, mtime,
 * ctime), so a file replaced by rename (an editor, `mv`, a Kubernetes secret
 * volume) is seen as well as one written in place. A file that does not load
 * (missing, unreadable, not JSON, an entry breaking a rule) leaves the
 * previous tokens in force and logs one error line; a reload that does logs
 * one info line with how many tokens are now held. Both are counted in
 * flexstore_token_reloads_total{outcome}.
 *
 * The file holds SHA-256 hashes only, and no message built here quotes its
 * text: a token pasted into it by mistake stays out of the logs.
 *
 * Known gap: a file written in place in several steps can be read half
 * written; that read fails (old tokens stay) and the next change of size or
 * mtime loads the whole file. Replacing the file by rename avoids the error line.
 */

/** How often the file is stat'ed: adding or revoking a token takes effect within about this long. */
export const TOKEN_POLL_MS = 1000;

export type TokenReloadOutcome = 'ok' | 'failed';

/** The tokens in force; `entries` is read at each request, so a reload applies to the next one. */
export class TokenStore {
  #entries: readonly TokenEntry[];

  constructor(
    readonly file: string,
    entries: readonly TokenEntry[],
  ) {
    this.#entries = Object.freeze([...entries]);
  }

  get entries(): readonly TokenEntry[] {
    return this.#entries;
  }

  replace(entries: readonly TokenEntry[]): void {
    this.#entries = Object.freeze([...entries]);
  }
}

/** The entries of the file; throws TokenFileError naming the file and the problem, never its text. */
export function readTokenFile(file: string): TokenEntry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TokenFileError(`--auth-tokens-file ${file}: cannot read (${code ?? (err as Error).message})`);
  }
  try {
    return parseTokenFile(text);
  } catch (err) {
    if (err instanceof TokenFileError) throw new TokenFileError(`--auth-tokens-file ${file}: ${err.message}`);
    throw err;
  }
}

/**
 * The store of a gateway's start-up. A file that does not load is a
 * SecurityConfigError: the CLI reports it in one line and exits 2, like a bad
 * cluster secret.
 */
export function loadTokenStore(file: string): TokenStore {
  try {
    return new TokenStore(file, readTokenFile(file));
  } catch (err) {
    if (err instanceof TokenFileError) throw new SecurityConfigError(err.message);
    throw err;
  }
}

export interface TokenReloaderOptions {
  log: Pick<Logger, 'info' | 'error'>;
  /** Where flexstore_token_reloads_total and flexstore_client_tokens are registered. */
  registry?: Registry;
  intervalMs?: number;
}

export interface TokenReloader {
  /** Reads the file now, as a change would. */
  reload(): TokenReloadOutcome;
  /** Stops watching; idempotent. */
  close(): void;
}

export function watchTokenFile(store: TokenStore, opts: TokenReloaderOptions): TokenReloader {
  const file = store.file;
  const registers = opts.registry ? [opts.registry] : [];
  const reloads = new Counter({
    name: 'flexstore_token_reloads_total',
    help: 'Re-reads of the client token file (AUTH_TOKENS_FILE) after it changed, by outcome (ok, failed: the previous tokens stay in force)',
    labelNames: ['outcome'],
    registers,
  });
  reloads.inc({ outcome: 'ok' }, 0);
  reloads.inc({ outcome: 'failed' }, 0);
  const held = new Gauge({ name: 'flexstore_client_tokens', help: 'Client tokens in force', registers });
  held.set(store.entries.length);

  const reload = (): TokenReloadOutcome => {
    let next: TokenEntry[];
    try {
      next = readTokenFile(file);
    } catch (err) {
      const why = err instanceof TokenFileError ? err.message : `--auth-tokens-file ${file}: ${(err as Error).message}`;
      opts.log.error({ file, held: store.entries.length }, `client token file not reloaded, the previous tokens stay in force: ${why}`);
      reloads.inc({ outcome: 'failed' });
      return 'failed';
    }
    store.replace(next);
    held.set(next.length);
    opts.log.info({ file, tokens: next.length }, `client token file reloaded: ${next.length} token(s) in force`);
    reloads.inc({ outcome: 'ok' });
    return 'ok';
  };

  // Compared with what start-up loaded, so a change made while the gateway
  // was starting is not missed.
  const poller = pollFile(file, opts.intervalMs ?? TOKEN_POLL_MS, reload);
  if (!sameEntries(tryRead(file), store.entries)) reload();

  return {
    reload,
    close: () => poller.close(),
  };
}

function tryRead(file: string): TokenEntry[] | undefined {
  try {
    return readTokenFile(file);
  } catch {
    return undefined;
  }
}

/** undefined (unreadable now) counts as the same: the poll reports it when it changes. */
function sameEntries(a: readonly TokenEntry[] | undefined, b: readonly TokenEntry[]): boolean {
  return (
    a === undefined ||
    (a.length === b.length &&
      a.every((e, i) => {
        const o = b[i]!;
        return e.name === o.name && e.role === o.role && e.sha256.equals(o.sha256) && JSON.stringify(e.prefixes) === JSON.stringify(o.prefixes);
      }))
  );
}
