import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../test/support/process.js';
import { ChildService, fetchJson, waitUntil } from './child.js';

/** The etcd binary on PATH (Debian: etcd-server), or undefined. */
export function findEtcd(envPath = process.env.PATH ?? ''): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'etcd');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * A 3-member etcd cluster on loopback with data in a temp dir: the
 * replicated, fsyncing store FlexStore is compared with. Load goes to the
 * leader's client URL (its v3 JSON gateway), the counterpart of FlexStore's
 * single gateway: a follower would add a forwarding hop to every write.
 */
export class EtcdCluster {
  readonly members: Array<{ name: string; clientUrl: string; svc: ChildService }> = [];
  leaderUrl = '';

  private constructor(readonly dir: string) {}

  static async start(binary: string, size = 3): Promise<EtcdCluster> {
    const dir = await mkdtemp(path.join(tmpdir(), 'flexstore-bench-etcd-'));
    const c = new EtcdCluster(dir);
    try {
      const specs = [];
      for (let i = 0; i < size; i++) {
        specs.push({ name: `m${i}`, client: await freePort(), peer: await freePort() });
      }
      const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peer}`).join(',');
      for (const s of specs) {
        const clientUrl = `http://127.0.0.1:${s.client}`;
        const svc = new ChildService(`etcd ${s.name}`, binary, [
          '--name', s.name,
          '--data-dir', path.join(dir, s.name),
          '--listen-client-urls', clientUrl,
          '--advertise-client-urls', clientUrl,
          '--listen-peer-urls', `http://127.0.0.1:${s.peer}`,
          '--initial-advertise-peer-urls', `http://127.0.0.1:${s.peer}`,
          '--initial-cluster', initialCluster,
          '--initial-cluster-token', 'flexstore-bench',
          '--initial-cluster-state', 'new',
          '--logger', 'zap',
          '--log-level', 'warn',
        ]);
        c.members.push({ name: s.name, clientUrl, svc });
      }
      for (const m of c.members) {
        await waitUntil(`${m.svc.name} healthy`, async () => {
          if (!m.svc.running) throw new Error(`${m.svc.name} exited:\n${m.svc.logs()}`);
          const res = await fetchJson('GET', `${m.clientUrl}/health`);
          return res.status === 200 && res.json?.health === 'true';
        });
      }
      c.leaderUrl = await waitUntil('an etcd leader', async () => {
        for (const m of c.members) {
          const res = await fetchJson('POST', `${m.clientUrl}/v3/maintenance/status`, {});
          const self = res.json?.header?.member_id;
          if (self !== undefined && self === res.json?.leader) return m.clientUrl;
        }
        return undefined;
      });
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.svc.stop(3000)));
    await rm(this.dir, { recursive: true, force: true });
  }

  pids(): number[] {
    return this.members.map((m) => m.svc.pid);
  }
}
