import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { ensureClusterSecret } from './cluster-secret-file.js';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { DevConfig } from './commands.js';

/**
 * `flexstore dev`: a whole cluster on one machine. Every server is a child
 * process running this same CLI, so dev exercises exactly what production
 * runs, and a crash in one server cannot take the others down with it.
 * It is a closed cluster like any other: the secret is made on first start
 * in <data dir>/cluster-secret and reused after.
 */

const BIN = fileURLToPath(new URL('../../bin/flexstore.js', import.meta.url));
const READY_TIMEOUT_MS = 30_000;
const KILL_AFTER_MS = 5_000;
const POLL_INTERVAL_MS = 100;

/** Per-instance identity must never be shared by the children, whatever the parent's environment says. */
const PER_INSTANCE_ENV = ['PORT', 'ADVERTISE_URL', 'NODE_ID', 'GATEWAY_ID'];

interface ChildSpec {
  name: string;
  args: string[];
  healthUrl: string;
  /** The gateway answers 503 until it knows members; any answer means it is listening. */
  acceptAnyStatus: boolean;
  url: string;
  dataDir?: string;
}

interface Child {
  spec: ChildSpec;
  proc: ChildProcess;
  exited: Promise<void>;
  exitInfo?: { code: number | null; signal: NodeJS.Signals | null };
}

/** Runs until a signal or a child's death; resolves to the exit code. */
export async function runDev(config: DevConfig, env: NodeJS.ProcessEnv): Promise<number> {
  const local = (port: number) => `http://127.0.0.1:${port}`;
  const registryUrl = local(config.registryPort);
  // A secret given in the environment passes through to the children; else
  // the cluster keeps its own in the data dir.
  const given = env.CLUSTER_SECRET !== undefined || env.CLUSTER_SECRET_FILE !== undefined;
  const secretArgs = given ? [] : ['--cluster-secret-file', ensureClusterSecret(config.dataDir)];
  const common = ['--log-level', config.logLevel, ...secretArgs];

  const registry: ChildSpec = {
    name: 'registry',
    args: [
      'registry',
      '--port', String(config.registryPort),
      '--data-dir', join(config.dataDir, 'registry'),
      '--replication-factor', String(config.replicationFactor),
      ...common,
    ],
    healthUrl: `${registryUrl}/health`,
    acceptAnyStatus: false,
    url: registryUrl,
    dataDir: join(config.dataDir, 'registry'),
  };
  const kvs: ChildSpec[] = config.kvPorts.map((port) => ({
    name: `kv-${port}`,
    args: [
      'kv',
      '--port', String(port),
      '--data-dir', join(config.dataDir, `kv-${port}`),
      '--registry-url', registryUrl,
      '--replication-factor', String(config.replicationFactor),
      ...common,
    ],
    healthUrl: `${local(port)}/health-check`,
    acceptAnyStatus: false,
    url: local(port),
    dataDir: join(config.dataDir, `kv-${port}`),
  }));
  const gateway: ChildSpec = {
    name: 'gateway',
    args: [
      'gateway',
      '--port', String(config.gatewayPort),
      '--registry-url', registryUrl,
      '--replication-factor', String(config.replicationFactor),
      ...common,
    ],
    healthUrl: `${local(config.gatewayPort)}/health`,
    acceptAnyStatus: true,
    url: local(config.gatewayPort),
  };

  const childEnv: NodeJS.ProcessEnv = { ...env };
  for (const name of PER_INSTANCE_ENV) delete childEnv[name];

  const width = Math.max(...[registry, ...kvs, gateway].map((s) => s.name.length));
  const children: Child[] = [];
  let stopping = false;
  let ready = false;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  const stopAll = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await Promise.all(children.map(stopChild));
    resolveDone(code);
  };

  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopping) log(`dev: ${signal} received, stopping the cluster`);
    void stopAll(0);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const start = (spec: ChildSpec): Child => {
    // A signal during start-up must not be followed by more children that nobody stops.
    if (stopping) throw new Error('stopping');
    if (spec.dataDir) mkdirSync(spec.dataDir, { recursive: true });
    const proc = spawn(process.execPath, [BIN, ...spec.args], {
      env: childEnv,
      // The IPC channel lets a child notice when dev itself dies without a chance to stop it (see main.ts).
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let markExited!: () => void;
    const child: Child = { spec, proc, exited: new Promise<void>((r) => (markExited = r)) };
    const onGone = (why: string, code: number | null, signal: NodeJS.Signals | null) => {
      if (child.exitInfo) return;
      child.exitInfo = { code, signal };
      markExited();
      if (stopping) return;
      if (!ready) {
        log(`dev: ${spec.name} ${why}; stopping the cluster`);
        void stopAll(1);
        return;
      }
      // Once the cluster is up, losing a server is something to watch, not a
      // reason to stop the others: that is what replication is for.
      log(`dev: ${spec.name} ${why}; the rest of the cluster keeps running`);
      log(`dev: to start it again: npx flexstore ${spec.args.join(' ')}`);
    };
    // 'close' rather than 'exit': it comes after the child's last output has been read and forwarded.
    proc.once('close', (code, signal) =>
      onGone(`exited unexpectedly (${signal ? `signal ${signal}` : `code ${code}`})`, code, signal),
    );
    proc.once('error', (err) => onGone(`could not be started: ${err.message}`, null, null));
    forward(proc.stdout!, process.stdout, spec.name.padEnd(width));
    forward(proc.stderr!, process.stderr, spec.name.padEnd(width));
    children.push(child);
    return child;
  };

  const startup = (async () => {
    // Registry first: the others register with it and would only log retries until it is up.
    await waitReady(start(registry));
    await Promise.all(kvs.map((s) => waitReady(start(s))));
    await waitReady(start(gateway));
  })();

  startup.then(
    () => {
      if (stopping) return;
      ready = true;
      printSummary(registry, kvs, gateway, config);
    },
    (err: unknown) => {
      if (stopping) return;
      log(`dev: ${err instanceof Error ? err.message : String(err)}; stopping the cluster`);
      void stopAll(1);
    },
  );

  const code = await done;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  return code;

  async function waitReady(child: Child): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!stopping) {
      if (child.exitInfo) throw new Error(`${child.spec.name} exited before it was ready`);
      if (await answers(child.spec)) return;
      if (Date.now() > deadline) throw new Error(`${child.spec.name} did not answer ${child.spec.healthUrl} within ${READY_TIMEOUT_MS / 1000} s`);
      await delay(POLL_INTERVAL_MS);
    }
  }
}

async function answers(spec: ChildSpec): Promise<boolean> {
  try {
    const res = await fetch(spec.healthUrl, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return spec.acceptAnyStatus || res.ok;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL if the child has not exited after KILL_AFTER_MS. */
async function stopChild(child: Child): Promise<void> {
  if (child.exitInfo) return;
  if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGTERM');
  const timer = setTimeout(() => {
    log(`dev: ${child.spec.name} did not stop within ${KILL_AFTER_MS / 1000} s; killing it`);
    child.proc.kill('SIGKILL');
  }, KILL_AFTER_MS);
  await child.exited;
  clearTimeout(timer);
}

function forward(from: NodeJS.ReadableStream, to: NodeJS.WritableStream, prefix: string): void {
  const lines = createInterface({ input: from, crlfDelay: Infinity });
  lines.on('line', (line) => to.write(`${prefix} | ${line}\n`));
}

function printSummary(registry: ChildSpec, kvs: ChildSpec[], gateway: ChildSpec, config: DevConfig): void {
  const g = `http://localhost:${config.gatewayPort}`;
  const rows = [registry, ...kvs, gateway].map((s) => [s.name, s.url, s.dataDir ? `data ${s.dataDir}` : `replication factor ${config.replicationFactor}`]);
  const w0 = Math.max(...rows.map((r) => r[0]!.length));
  const w1 = Math.max(...rows.map((r) => r[1]!.length));
  const lines = [
    '',
    'FlexStore dev cluster is up:',
    ...rows.map(([a, b, c]) => `  ${a!.padEnd(w0)}  ${b!.padEnd(w1)}  ${c}`),
    '',
    'Try:',
    `  curl -X PUT ${g}/kv/hello -d 'world'`,
    `  curl ${g}/kv/hello`,
    `  curl '${g}/kv?prefix=he'`,
    `  curl -X DELETE ${g}/kv/hello`,
    `  curl ${g}/cluster`,
    `  npx flexstore status --gateway ${g}`,
    '',
    'Ctrl-C stops every server; data stays in ' + config.dataDir + '.',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
