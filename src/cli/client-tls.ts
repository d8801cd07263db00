import { readFileSync } from 'node:fs';
import { OPEN_CLUSTER, type ClusterSecurity } from '../cluster/security.js';
import { UsageError, type OptionValues } from './options.js';

/**
 * The CLI's TLS trust for https:// gateways and registries: --ca /
 * FLEXSTORE_CA, and --cert / --key (FLEXSTORE_CERT / FLEXSTORE_KEY) for a
 * server that requires client certificates. A file that cannot be read is a
 * usage error (exit 2) naming the option.
 */
export function readClientTls(values: OptionValues): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const out: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  for (const name of ['ca', 'cert', 'key'] as const) {
    const file = values[name];
    if (typeof file !== 'string' || file === '') continue;
    try {
      out[name] = readFileSync(file);
    } catch (err) {
      throw new UsageError(`--${name} ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  if ((out.cert === undefined) !== (out.key === undefined)) throw new UsageError('--cert and --key go together');
  return out;
}

/** The same trust as a ClusterSecurity for the registry client (no cluster secret: the CLI is not a member). */
export function clientSecurity(values: OptionValues): ClusterSecurity {
  const t = readClientTls(values);
  if (t.ca === undefined && t.cert === undefined) return OPEN_CLUSTER;
  return {
    secrets: [],
    tls: { ca: t.ca ?? Buffer.alloc(0), cert: t.cert ?? Buffer.alloc(0), key: t.key ?? Buffer.alloc(0), clientAuth: 'none' },
  };
}
