import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * What one process needs to take part in a closed cluster: the cluster
 * secrets it proves membership with (cluster-auth), and the TLS material of
 * its listeners and of every client it uses. Loaded once at start-up from
 * the component's config (loadClusterSecurity) and handed to every server and
 * client it builds; nothing below the entry points reads files or the
 * environment.
 */

export type TlsClientAuth = 'none' | 'require';

export interface TlsMaterial {
  /** PEM certificate chain this process presents, as server and as client. */
  cert: Buffer;
  /** PEM private key of cert. */
  key: Buffer;
  /** PEM CA bundle peers are verified against. */
  ca: Buffer;
  /** 'require': listeners refuse a client without a certificate signed by ca (mutual TLS). */
  clientAuth: TlsClientAuth;
}

export interface ClusterSecurity {
  /**
   * Cluster secrets, the first one current: requests are signed with it and
   * verified against every one (two during a rotation). Empty: this process
   * neither signs nor checks (an open cluster). Read it at each use, not once:
   * with a secret file it changes when the file does (secret-reloader.ts).
   */
  readonly secrets: readonly Buffer[];
  /** The --cluster-secret-file the secrets came from, when they did; the reloader watches it. */
  readonly secretFile?: string;
  /** TLS for every listener and client of this process; absent: plain TCP. */
  readonly tls?: TlsMaterial;
}

/** No secret, no TLS: every internal call is accepted. */
export const OPEN_CLUSTER: ClusterSecurity = Object.freeze({ secrets: Object.freeze([]) });

/** The security fields of a component's config (rows in shared-options.ts). */
export interface SecurityConfig {
  clusterSecret?: string;
  clusterSecretFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsClientAuth?: TlsClientAuth;
}

/** Shortest secret accepted: 16 bytes is 128 bits of key when it is random. */
export const MIN_SECRET_BYTES = 16;
/** A rotation holds the new and the previous secret; more would only widen what an old leak opens. */
export const MAX_SECRETS = 2;

/** A start-up problem with secrets or certificates; the message is one line for the operator. */
export class SecurityConfigError extends Error {
  override readonly name = 'SecurityConfigError';
}

/**
 * Reads the secret and the TLS files named by cfg. Throws
 * SecurityConfigError with a one-line message naming the option and the file
 * on anything missing, unreadable or malformed.
 */
export function loadClusterSecurity(cfg: SecurityConfig): LiveClusterSecurity {
  const secrets = loadSecrets(cfg);
  const tls = loadTls(cfg);
  return new LiveClusterSecurity(secrets, tls, cfg.clusterSecretFile);
}

/**
 * A process's security whose secrets can be replaced while it runs: every
 * signer and verifier reads `secrets` at each use, so the next request after
 * replaceSecrets signs with the new first secret and accepts every new one.
 * A TCP connection is authenticated when it opens; one already open stays
 * open across a replacement.
 */
export class LiveClusterSecurity implements ClusterSecurity {
  #secrets: readonly Buffer[];

  constructor(
    secrets: readonly Buffer[],
    readonly tls?: TlsMaterial,
    readonly secretFile?: string,
  ) {
    this.#secrets = Object.freeze([...secrets]);
  }

  get secrets(): readonly Buffer[] {
    return this.#secrets;
  }

  /**
   * Only the reloader calls this. An open cluster stays open and a closed
   * one closed: signers and verifiers are built, or not, at start-up.
   */
  replaceSecrets(next: readonly Buffer[]): void {
    if (next.length === 0 || this.#secrets.length === 0) throw new Error('the secrets of an open cluster cannot be replaced, nor replaced by none');
    this.#secrets = Object.freeze([...next]);
  }
}

function loadSecrets(cfg: SecurityConfig): Buffer[] {
  if (cfg.clusterSecret !== undefined && cfg.clusterSecretFile !== undefined) {
    throw new SecurityConfigError('give --cluster-secret or --cluster-secret-file, not both');
  }
  let raw: string[];
  let from: string;
  if (cfg.clusterSecret !== undefined) {
    // Two secrets during a rotation: "current,previous".
    raw = cfg.clusterSecret.split(',');
    from = '--cluster-secret';
  } else if (cfg.clusterSecretFile !== undefined) {
    return readSecretFile(cfg.clusterSecretFile);
  } else {
    return [];
  }
  return checkSecrets(raw, from);
}

/**
 * The secrets of a --cluster-secret-file: one per line, the current first;
 * blank lines and # comments are skipped. Throws SecurityConfigError (one
 * line, never the secret) on a file that is unreadable, empty or malformed.
 */
export function readSecretFile(file: string): Buffer[] {
  const raw = readText(file, '--cluster-secret-file')
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  return checkSecrets(raw, `--cluster-secret-file ${file}`);
}

function checkSecrets(raw: string[], from: string): Buffer[] {
  const secrets = raw.map((s) => s.trim());
  if (secrets.length === 0 || secrets.some((s) => s === '')) throw new SecurityConfigError(`${from}: empty secret`);
  if (secrets.length > MAX_SECRETS) {
    throw new SecurityConfigError(`${from}: ${secrets.length} secrets; at most ${MAX_SECRETS} (the current one, then the previous one during a rotation)`);
  }
  for (const s of secrets) {
    if (Buffer.byteLength(s) < MIN_SECRET_BYTES) {
      throw new SecurityConfigError(`${from}: a secret is shorter than ${MIN_SECRET_BYTES} bytes; generate one with: openssl rand -base64 32`);
    }
  }
  return secrets.map((s) => Buffer.from(s, 'utf8'));
}

function loadTls(cfg: SecurityConfig): TlsMaterial | undefined {
  const given = [cfg.tlsCert, cfg.tlsKey, cfg.tlsCa].filter((v) => v !== undefined).length;
  if (given === 0) {
    if (cfg.tlsClientAuth === 'require') throw new SecurityConfigError('--tls-client-auth require needs --tls-cert, --tls-key and --tls-ca');
    return undefined;
  }
  if (given !== 3) throw new SecurityConfigError('TLS needs all three of --tls-cert, --tls-key and --tls-ca');
  const material = {
    cert: Buffer.from(readText(cfg.tlsCert!, '--tls-cert')),
    key: Buffer.from(readText(cfg.tlsKey!, '--tls-key')),
    ca: Buffer.from(readText(cfg.tlsCa!, '--tls-ca')),
    clientAuth: cfg.tlsClientAuth ?? 'none',
  };
  checkTlsMaterial(material, { cert: cfg.tlsCert!, key: cfg.tlsKey!, ca: cfg.tlsCa! });
  return material;
}

/**
 * Fails start-up, not the first handshake, on material that cannot work: a
 * file that is not PEM, a key that is not the certificate's, an expired
 * certificate. Whether the certificate chains to the CA is left to the peers:
 * a member may legitimately trust a CA bundle that did not sign its own pair.
 */
export function checkTlsMaterial(m: Pick<TlsMaterial, 'cert' | 'key' | 'ca'>, files: { cert: string; key: string; ca: string }): void {
  const cert = parse(() => new X509Certificate(m.cert), `--tls-cert ${files.cert}: not a PEM certificate`);
  const key: KeyObject = parse(() => createPrivateKey(m.key), `--tls-key ${files.key}: not a PEM private key`);
  if (!cert.checkPrivateKey(key)) {
    throw new SecurityConfigError(`--tls-key ${files.key} does not match the certificate in --tls-cert ${files.cert}`);
  }
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() < Date.now()) {
    throw new SecurityConfigError(`--tls-cert ${files.cert}: certificate expired on ${notAfter.toISOString()}`);
  }
  // A bundle: every PEM block must be a certificate.
  const blocks = m.ca.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new SecurityConfigError(`--tls-ca ${files.ca}: no PEM certificate in it`);
  for (const b of blocks) parse(() => new X509Certificate(b), `--tls-ca ${files.ca}: a certificate in it does not parse`);
}

function parse<T>(make: () => T, message: string): T {
  try {
    return make();
  } catch (err) {
    throw new SecurityConfigError(message, { cause: err });
  }
}

function readText(file: string, option: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SecurityConfigError(`${option} ${file}: cannot read (${code ?? (err as Error).message})`);
  }
}

/**
 * Who a request proved to be, set by the cluster-auth check of
 * createHttpServer before any handler runs: 'member' for a valid cluster
 * signature, 'admin' for the admin token, null for neither (always null in
 * an open cluster). Handlers that change state read it; the registry also
 * rate-limits by it.
 */
export type RequestAuth = 'member' | 'admin' | null;

declare module 'fastify' {
  interface FastifyRequest {
    clusterAuth: RequestAuth;
  }
}
