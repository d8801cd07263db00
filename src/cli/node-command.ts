import { RegistryError } from '../cluster/errors.js';
import { RegistryClient } from '../cluster/registry-client.js';
import { UsageError, type ParsedCommand } from './options.js';
import { clientSecurity } from './client-tls.js';

/**
 * `flexstore node remove ID|URL`: decommissions a member through the
 * registry. An active member starts leaving and is dropped from the ring once
 * its ranges have moved; `--force` drops it at once (for a member whose data
 * is gone). Returns the exit code.
 */
export async function runNodeCommand(parsed: ParsedCommand): Promise<number> {
  const [action, target] = parsed.positionals as [string, string];
  if (action !== 'remove') throw new UsageError(`flexstore node: unknown action ${JSON.stringify(action)}; expected remove`);
  const registryUrl = String(parsed.values['registry-url']);
  const json = parsed.values.json === true;
  const force = parsed.values.force === true;
  const q = /^https?:\/\//.test(target) ? { node_url: target.replace(/\/+$/, '') } : { id: target };
  const client = new RegistryClient(registryUrl, { security: clientSecurity(parsed.values) });
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
    process.stderr.write(`error: ${(err as Error).message}${status}\n`);
    return 1;
  } finally {
    await client.close();
  }
}
