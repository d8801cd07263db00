import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { UsageError, type ParsedCommand } from './options.js';

/**
 * `flexstore certs --out DIR --hosts a,b,...`: a private CA and one
 * certificate pair for a local or compose cluster, made with the openssl CLI:
 *
 *   DIR/ca.crt, DIR/ca.key          the CA (P-256, 10 years)
 *   DIR/server.crt, DIR/server.key  signed by it, valid for every host given
 *                                   plus localhost, 127.0.0.1 and ::1; usable
 *                                   as server and as client certificate
 *                                   (extendedKeyUsage serverAuth, clientAuth)
 *
 * Every component of the cluster can use the one pair (TLS_CERT, TLS_KEY,
 * TLS_CA). Keys are written mode 0600.
 *
 * An existing DIR/ca.key is reused to issue the new pair, so adding a host
 * means rerunning the command without redistributing the CA; --force makes a
 * new CA instead (every member then needs the new ca.crt). Known gap: there is
 * no revocation; a leaked key is retired by making a new CA.
 */

const run = promisify(execFile);

/** Always in the certificate: what a local cluster and its health checks dial. */
export const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'] as const;
export const DEFAULT_DAYS = 825;
const CA_DAYS = 3650;

export interface CertsOptions {
  out: string;
  hosts: string[];
  /** Make a new CA even if DIR/ca.key exists. */
  force?: boolean;
  /** Validity of the server certificate. Default 825 days. */
  days?: number;
}

export interface CertsResult {
  dir: string;
  /** Hosts the server certificate is valid for, defaults included. */
  hosts: string[];
  /** True when an existing CA signed the new pair. */
  reusedCa: boolean;
  files: { caCert: string; caKey: string; cert: string; key: string };
}

/** A host name (DNS name, wildcard allowed as the first label) or an IP literal. */
const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/;

export function parseHosts(list: string): string[] {
  const hosts = list
    .split(',')
    .map((h) => h.trim().replace(/^\[(.*)\]$/, '$1'))
    .filter((h) => h !== '');
  for (const h of hosts) {
    if (isIP(h) === 0 && !DNS_NAME.test(h)) throw new UsageError(`--hosts: ${JSON.stringify(h)} is neither a DNS name nor an IP address`);
  }
  return hosts;
}

export async function createCerts(opts: CertsOptions): Promise<CertsResult> {
  const dir = path.resolve(opts.out);
  const hosts = [...new Set([...opts.hosts, ...DEFAULT_HOSTS])];
  const files = {
    caCert: path.join(dir, 'ca.crt'),
    caKey: path.join(dir, 'ca.key'),
    cert: path.join(dir, 'server.crt'),
    key: path.join(dir, 'server.key'),
  };
  await mkdir(dir, { recursive: true });
  const haveCaKey = existsSync(files.caKey);
  if (!haveCaKey && existsSync(files.caCert) && !opts.force) {
    throw new UsageError(`${files.caCert} exists without ${files.caKey}; cannot issue from it (--force makes a new CA)`);
  }
  const reusedCa = haveCaKey && !opts.force;

  // Built in a private dir beside the result and moved in at the end: a
  // failure leaves the old files as they were.
  const work = await mkdtemp(path.join(dir, '.certs-'));
  try {
    const w = (name: string) => path.join(work, name);
    if (!reusedCa) {
      await openssl(
        'req', '-x509', '-new', '-nodes',
        '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-keyout', w('ca.key'), '-out', w('ca.crt'),
        '-days', String(CA_DAYS), '-subj', '/CN=FlexStore cluster CA',
        '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      );
    }
    const caCert = reusedCa ? files.caCert : w('ca.crt');
    const caKey = reusedCa ? files.caKey : w('ca.key');
    await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', w('server.key'));
    await openssl('req', '-new', '-key', w('server.key'), '-subj', '/CN=flexstore', '-out', w('server.csr'));
    const san = hosts.map((h) => (isIP(h) === 0 ? `DNS:${h}` : `IP:${h}`)).join(',');
    await writeFile(
      w('ext.cnf'),
      [
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature, keyEncipherment',
        'extendedKeyUsage = serverAuth, clientAuth',
        `subjectAltName = ${san}`,
        '',
      ].join('\n'),
    );
    await openssl(
      'x509', '-req', '-in', w('server.csr'),
      '-CA', caCert, '-CAkey', caKey,
      // A random serial: pairs issued by one CA must not share one, and no .srl file is left behind.
      '-set_serial', `0x${randomSerial()}`,
      '-days', String(opts.days ?? DEFAULT_DAYS), '-sha256',
      '-extfile', w('ext.cnf'), '-out', w('server.crt'),
    );
    await chmod(w('server.key'), 0o600);
    if (!reusedCa) {
      await chmod(w('ca.key'), 0o600);
      await rename(w('ca.key'), files.caKey);
      await rename(w('ca.crt'), files.caCert);
    }
    await rename(w('server.key'), files.key);
    await rename(w('server.crt'), files.cert);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { dir, hosts, reusedCa, files };
}

function randomSerial(): string {
  // 16 bytes with the top bit clear: a positive serial of at most 20 octets (RFC 5280).
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0]! &= 0x7f;
  return Buffer.from(b).toString('hex');
}

async function openssl(...args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new CertsError('the certs command needs the openssl command (e.g. apt-get install openssl)');
    const why = (e.stderr ?? e.message).trim().split('\n')[0];
    throw new CertsError(`openssl ${args[0]} failed: ${why}`);
  }
}

export class CertsError extends Error {
  override readonly name = 'CertsError';
}

/** Runs the command; resolves to the exit code. */
export async function runCertsCommand(parsed: ParsedCommand): Promise<number> {
  const out = parsed.values.out;
  const hostList = parsed.values.hosts;
  if (typeof out !== 'string' || out === '') throw new UsageError('flexstore certs: --out DIR is required');
  const hosts = parseHosts(typeof hostList === 'string' ? hostList : '');
  let res: CertsResult;
  try {
    res = await createCerts({
      out,
      hosts,
      force: parsed.values.force === true,
      ...(typeof parsed.values.days === 'number' && { days: parsed.values.days }),
    });
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`flexstore certs: ${err.message}`);
    if (err instanceof CertsError) {
      process.stderr.write(`flexstore certs: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  const rel = (f: string) => {
    const r = path.relative(process.cwd(), f);
    return r === '' || r.startsWith('..') ? f : r;
  };
  process.stdout.write(
    [
      res.reusedCa ? `reused the CA in ${rel(res.files.caCert)} (--force makes a new one)` : `new CA: ${rel(res.files.caCert)}, ${rel(res.files.caKey)}`,
      `server and client pair: ${rel(res.files.cert)}, ${rel(res.files.key)}`,
      `valid for: ${res.hosts.join(', ')}`,
      `use on every component: TLS_CERT=${rel(res.files.cert)} TLS_KEY=${rel(res.files.key)} TLS_CA=${rel(res.files.caCert)}`,
      `and for the CLI: FLEXSTORE_CA=${rel(res.files.caCert)}`,
      '',
    ].join('\n'),
  );
  return 0;
}
