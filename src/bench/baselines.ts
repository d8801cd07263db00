import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChildService } from './child.js';

/** bench/baselines in the repository (this file runs from dist/bench). */
export const BASELINES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/baselines');

/** A baseline server running as its own process. */
export interface Baseline {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

async function startScript(name: string, script: string, args: string[]): Promise<Baseline> {
  const svc = new ChildService(name, process.execPath, [path.join(BASELINES_DIR, script), ...args], {
    cwd: BASELINES_DIR,
  });
  let port: number;
  try {
    port = (JSON.parse(await svc.nextLine()) as { port: number }).port;
  } catch (err) {
    await svc.stop();
    throw err;
  }
  return { url: `http://127.0.0.1:${port}`, pid: svc.pid, stop: () => svc.stop() };
}

/** The bare node:http server: answers `bodyBytes` bytes with 200 to anything. */
export function startBareServer(bodyBytes: number): Promise<Baseline> {
  return startScript('bare node:http server', 'node-server.mjs', ['0', String(bodyBytes)]);
}

/** The one-hop proxy: forwards everything to `upstream` over a keep-alive undici Pool. */
export function startBareProxy(upstream: string, poolConnections = 32): Promise<Baseline> {
  return startScript('bare proxy', 'proxy.mjs', ['0', upstream, String(poolConnections)]);
}
