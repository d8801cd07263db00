import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import type { MemberView, RunningServer } from '../../cluster/types.js';
import type { KvConfig } from '../../kv/config.js';
import { startKvServer, type RunningKvServer } from '../../kv/server.js';
import type { RegistryConfig } from '../../registry/config.js';
import { startRegistry } from '../../registry/server.js';
import { isUpAndActive } from './probe.js';
import { waitFor } from './process.js';

export interface InProcessClusterOptions {
  /** Names the temp dir (`flexstore-${label}-XXXXXX`), so a leftover one says which test left it. */
  label: string;
  /** Registry settings over loopback, port 0 and silent logs. */
  registry?: Partial<RegistryConfig>;
  /** Settings every KV server starts with; startKv's own override them. */
  kv?: Partial<KvConfig>;
}

/**
 * A registry and KV servers in this process, on loopback port 0, for tests
 * that drive servers directly (their replica and repair APIs) rather than
 * through a gateway; much faster to start than the process cluster
 * (cluster.ts), but a crash here is a close(), not a kill -9. Data lives in
 * one temp dir that close() removes after every server has stopped.
 */
export class InProcessCluster {
  private readonly servers = new Map<string, RunningKvServer>();

  private constructor(
    readonly root: string,
    readonly registry: RunningServer,
    private readonly kvDefaults: Partial<KvConfig>,
  ) {}

  static async start(opts: InProcessClusterOptions): Promise<InProcessCluster> {
    const root = mkdtempSync(join(tmpdir(), `flexstore-${opts.label}-`));
    try {
      const registry = await startRegistry({
        port: 0,
        host: '127.0.0.1',
        dataDir: join(root, 'registry'),
        logLevel: 'silent',
        ...opts.registry,
      });
      return new InProcessCluster(root, registry, opts.kv ?? {});
    } catch (err) {
      rmSync(root, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Starts the KV server `name`. Its data dir is named after it, so starting
   * a name again after stopKv is a restart on the same data (and node id).
   */
  async startKv(name: string, config: Partial<KvConfig> = {}): Promise<RunningKvServer> {
    const kv = await startKvServer({
      port: 0,
      host: '127.0.0.1',
      registryUrl: this.registry.url,
      logLevel: 'silent',
      ...this.kvDefaults,
      ...config,
      dataDir: join(this.root, name),
    });
    this.servers.set(name, kv);
    return kv;
  }

  /** Closes the KV server `name`: a clean stop, after which the registry marks it down. */
  async stopKv(name: string): Promise<void> {
    await this.servers.get(name)?.close();
    this.servers.delete(name);
  }

  /** The registry's member view (GET /nodes). */
  async view(): Promise<MemberView> {
    return (await (await request(`${this.registry.url}/nodes`)).body.json()) as MemberView;
  }

  /** Waits until the registry lists exactly `count` members, every one up and active. */
  async waitForActive(count: number, timeoutMs = 20_000): Promise<void> {
    await waitFor(`${count} active members`, async () => {
      const v = await this.view();
      return v.members.length === count && v.members.every(isUpAndActive);
    }, { timeoutMs });
  }

  async close(): Promise<void> {
    await Promise.all([...this.servers.values()].map((kv) => kv.close()));
    this.servers.clear();
    await this.registry.close();
    rmSync(this.root, { recursive: true, force: true });
  }
}
