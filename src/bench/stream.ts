import { HybridClock } from '../cluster/hlc.js';
import { RepairClient } from '../kv/repair-client.js';
import type { RepairRecord } from '../kv/repair-wire.js';
import type { Cleanup } from './compare.js';
import type { SyncMode } from '../kv/storage.js';
import { BenchCluster } from './cluster.js';
import { fetchJson, waitUntil } from './child.js';

/**
 * Streaming between KV servers: how fast a joining server takes over the
 * ranges it acquires (the same range transfer that rebalancing, hand-off on
 * decommission and repair use).
 *
 * A one-server cluster with N=2 is loaded with `keys` records, straight
 * through the first server's repair API (the transfer under test is between
 * KV servers; loading through the gateway would take minutes). A second
 * server then starts: with N=2 it acquires every key. The figure is the
 * joiner's own account of its sync pass (keys pulled ÷ pass time, logged by
 * src/kv/anti-entropy.ts), plus the end-to-end time from its process start
 * until the registry lists it active.
 */

/** The streaming target of the benchmark issue. */
export const STREAM_TARGET_KEYS_PER_SEC = 50_000;

export interface StreamResult {
  /** Records loaded into the first server. */
  keys: number;
  valueSize: number;
  /** How fast they were loaded through the repair API. */
  loadKeysPerSec: number;
  /** Keys the joiner pulled in its pass, and how long the pass took. */
  keysMoved: number;
  passMs: number;
  keysPerSec: number;
  /** Joiner process start → listed active by the gateway. */
  joinSec: number;
}

const LOAD_BATCH = 2000;
const LOAD_IN_FLIGHT = 4;

export async function runStreamBench(
  opts: { keys: number; valueSize: number; sync: SyncMode; log: (line: string) => void },
  cleanups: Cleanup[],
): Promise<StreamResult> {
  const { log } = opts;
  log(`Streaming: starting 1 registry, 1 KV server, 1 gateway (N=2); loading ${opts.keys.toLocaleString('en-US')} keys`);
  const cluster = await BenchCluster.start({ kvCount: 1, replicationFactor: 2, consistency: 'one', sync: opts.sync });
  cleanups.push(() => cluster.stop());
  const client = new RepairClient({ timeoutMs: 60_000 });
  cleanups.push(() => client.close());

  const clock = new HybridClock('bench');
  const value = Buffer.alloc(opts.valueSize, 'v');
  const source = cluster.kvUrl(0);
  const loadStart = Date.now();
  let next = 0;
  const loader = async () => {
    while (next < opts.keys) {
      const from = next;
      next = Math.min(opts.keys, next + LOAD_BATCH);
      const batch: RepairRecord[] = [];
      for (let i = from; i < next; i++) {
        batch.push({ key: `stream-${i}`, value, version: clock.next(), tombstone: false, contentType: 'application/octet-stream' });
      }
      await client.apply(source, batch);
    }
  };
  await Promise.all(Array.from({ length: LOAD_IN_FLIGHT }, loader));
  const loadKeysPerSec = Math.round(opts.keys / ((Date.now() - loadStart) / 1000));
  log(`Streaming: loaded ${opts.keys.toLocaleString('en-US')} keys (${loadKeysPerSec.toLocaleString('en-US')} keys/s); starting a second KV server`);

  const joinStart = Date.now();
  const joiner = await cluster.addKv('info');
  // The pass that moved the data; earlier passes (before the joiner was a member) move nothing.
  const pass = await waitUntil(
    'the joining server to finish a sync pass that moved keys',
    async () => {
      for (const line of joiner.proc.logs().split('\n')) {
        if (!line.includes('anti-entropy pass done')) continue;
        try {
          const o = JSON.parse(line) as { keysMoved?: number; ms?: number };
          if ((o.keysMoved ?? 0) > 0 && typeof o.ms === 'number') return { keysMoved: o.keysMoved!, ms: o.ms };
        } catch {
          // A partial line: the next poll sees it whole.
        }
      }
      return undefined;
    },
    120_000,
  );
  await waitUntil(
    'the joining server to be listed active',
    async () => {
      const res = await fetchJson('GET', `${cluster.gatewayUrl}/cluster`);
      const members = (res.json?.members ?? []) as Array<{ state: string; phase?: string }>;
      return members.length === 2 && members.every((m) => m.state === 'up' && (m.phase ?? 'active') === 'active');
    },
    120_000,
  );
  const joinSec = (Date.now() - joinStart) / 1000;
  const result: StreamResult = {
    keys: opts.keys,
    valueSize: opts.valueSize,
    loadKeysPerSec,
    keysMoved: pass.keysMoved,
    passMs: pass.ms,
    keysPerSec: Math.round(pass.keysMoved / (Math.max(1, pass.ms) / 1000)),
    joinSec: Math.round(joinSec * 10) / 10,
  };
  log(
    `Streaming: the joiner pulled ${result.keysMoved.toLocaleString('en-US')} keys in ${(result.passMs / 1000).toFixed(1)} s ` +
      `(${result.keysPerSec.toLocaleString('en-US')} keys/s); active ${result.joinSec} s after its start`,
  );
  await client.close();
  await cluster.stop();
  return result;
}
