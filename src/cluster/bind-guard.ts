import { isIP } from 'node:net';
import { SecurityConfigError, type ClusterSecurity } from './security.js';

/**
 * Protected mode (after Redis's): a server that would be reachable from
 * other hosts without a cluster secret refuses to start, since anyone who
 * reaches its port could then join the cluster, read every key and change
 * membership. --insecure overrides it, for a network the operator closes by
 * other means.
 *
 * Loopback is 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and `localhost`.
 * Any other name is assumed to be reachable: what it resolves to can change.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const v = isIP(h);
  if (v === 4) return h.startsWith('127.');
  if (v === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

/**
 * Throws SecurityConfigError (one line; the CLI exits 2 with it) when
 * `host` is not loopback, `security` holds no secret and `insecure` is not
 * set. Called before anything binds.
 */
export function checkBind(cfg: { host: string; insecure?: boolean }, security: ClusterSecurity): void {
  if (cfg.insecure === true || security.secrets.length > 0 || isLoopbackHost(cfg.host)) return;
  throw new SecurityConfigError(
    `refusing to listen on ${cfg.host} without a cluster secret: set CLUSTER_SECRET_FILE or --cluster-secret-file ` +
      '(see docs/security.md), bind --host 127.0.0.1, or pass --insecure',
  );
}
