import { RegistryError } from '../cluster/errors.js';
import { RegistryClient } from '../cluster/registry-client.js';
import { UsageError, type ParsedCommand } from './options.js';
import { clientSecurity } from './client-tls.js';
import { SecurityConfigError, loadClusterSecurity } from '../cluster/security.js';

/**
 * `flexstore node remove ID|URL`: decommissions a member through the
 * registry. An active member starts leaving and is dropped from the ring once
 * its ranges have moved; `--force` drops it at once (for a member whose data
 * is gone). A registry with an admin token or a cluster secret wants one of
 * them: --admin-token, or the cluster secret (the call is then signed).
 * Returns the exit code.
 */
export async function runNodeCommand(parsed: ParsedCommand): Promise<number> {
  const [action, target] = parsed.positionals as [string, string];
  if (action !== 'remove') throw new UsageError(`flexstore node: unknown action ${JSON.stringify(action)}; expected remove`);
  const registryUrl = String(parsed.values['registry-url']);
  const json = parsed.values.json === true;
  const force = parsed.values.force === true;
  const q = /^https?:\/\//.test(target) ? { node_url: target.replace(/\/+$/, '') } : { id: target };
  const adminToken = typeof parsed.values['admin-token'] === 'string' ? parsed.values['admin-token'] : undefined;
  let security;
  try {
    security = loadClusterSecurity({
      ...(typeof parsed.values['cluster-secret'] === 'string' && { clusterSecret: parsed.values['cluster-secret'] }),
      ...(typeof parsed.values['cluster-secret-file'] === 'string' && { clusterSecretFile: parsed.values['cluster-secret-file'] }),
    });
  } catch (err) {
    if (err instanceof SecurityConfigError) throw new UsageError(`flexstore node: ${err.message}`);
    throw err;
  }
  // The CLI signs with the secret (when given) and trusts --ca for an https registry.
  const tls = clientSecurity(parsed.values).tls;
  const client = new RegistryClient(registryUrl, { security: { secrets: security.secrets, ...(tls && { tls }) }, ...(adminToken !== undefined && { adminToken }) });
  try {
    const res = await client.deregister({ ...q, ...(force && { force: true }) });
    if (json) process.stdout.write(`${JSON.stringify(res)}\n`);
    else if (res.phase === 'leaving') {
      process.stdout.write(
        `${res.id} is leaving: its ranges are moving to their new owners; it drops out of the ring when they are done ` +
          `(watch 'flexstore status')\n`,
      );
    } else process.stdout.write(`${res.id} removed from the ring\n`);
    return 0;
  } catch (err) {
    const status = err instanceof RegistryError && err.status !== undefined ? ` (${err.status})` : '';
    const hint =
      err instanceof RegistryError && err.status === 401
        ? '; give --admin-token (FLEXSTORE_ADMIN_TOKEN) or the cluster secret (--cluster-secret-file)'
        : '';
    process.stderr.write(`error: ${(err as Error).message}${status}${hint}\n`);
    return 1;
  } finally {
    await client.close();
  }
}
