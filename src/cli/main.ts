import { readFileSync } from 'node:fs';
import { SecurityConfigError } from '../cluster/security.js';
import type { RunningServer } from '../cluster/types.js';
import { isClientCommand, runClientCommand } from './client-commands.js';
import {
  commands,
  devConfigFrom,
  gatewayConfigFrom,
  isCommandName,
  kvConfigFrom,
  registryConfigFrom,
  type CommandName,
} from './commands.js';
import { UsageError, formatCommandHelp, formatRows, parseCommand } from './options.js';

/**
 * The flexstore command. This file and its helpers in src/cli are the only
 * code that reads argv and the environment; servers get typed configs.
 *
 * Exit codes: 0 success, 1 runtime failure (gateway error, start-up failure),
 * 2 usage error (a bad flag, or a bad cluster secret, TLS file or unsafe bind).
 */

/** Longest a server may take to close after a signal before it is abandoned. */
const CLOSE_TIMEOUT_MS = 10_000;

function topLevelHelp(): string {
  const rows = (Object.values(commands) as Array<(typeof commands)[CommandName]>).map((c) => [
    `${c.name}${c.args ? ` ${c.args}` : ''}`,
    c.summary,
  ]);
  rows.push(['bench', 'Start a cluster and baselines on free ports and measure them (see bench --help).']);
  return [
    'FlexStore: a sharded, replicated, durable key-value store.',
    '',
    'Usage: flexstore <command> [options]',
    '',
    'Commands:',
    ...formatRows(rows),
    '',
    'Options:',
    ...formatRows([
      ['-h, --help', 'Show this help; after a command, that command\'s options and defaults'],
      ['-v, --version', 'Print the version'],
    ]),
    '',
    'Every option can be given as a flag or, for most, an environment variable;',
    'flags win over the environment, which wins over defaults.',
    "Run 'flexstore <command> --help' for a command's options.",
    '',
  ].join('\n');
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined) throw new UsageError("flexstore: missing command (see 'flexstore --help')");
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(topLevelHelp());
    return;
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(version() + '\n');
    return;
  }
  if (command === 'bench') {
    // The bench parses its own options (see `flexstore bench --help`).
    const { runBench } = await import('../bench/main.js');
    process.exitCode = await runBench(rest);
    return;
  }
  if (!isCommandName(command)) {
    throw new UsageError(
      command.startsWith('-')
        ? `flexstore: unknown option ${command} (see 'flexstore --help')`
        : `flexstore: unknown command ${JSON.stringify(command)} (see 'flexstore --help')`,
    );
  }

  const spec = commands[command];
  let parsed;
  try {
    parsed = parseCommand(spec, rest, env);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`flexstore ${command}: ${err.message}`);
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(formatCommandHelp(spec));
    return;
  }

  switch (command) {
    case 'registry': {
      const config = registryConfigFrom(parsed.values);
      return runServer('registry', async () => {
        const { startRegistry } = await import('../registry/server.js');
        return startRegistry(config);
      });
    }
    case 'kv': {
      const config = kvConfigFrom(parsed.values);
      return runServer('kv', async () => {
        const { startKvServer } = await import('../kv/server.js');
        return startKvServer(config);
      });
    }
    case 'gateway': {
      const config = gatewayConfigFrom(parsed.values);
      return runServer('gateway', async () => {
        const { startGateway } = await import('../gateway/server.js');
        return startGateway(config);
      });
    }
    case 'dev': {
      let config;
      try {
        config = devConfigFrom(parsed.values);
      } catch (err) {
        if (err instanceof UsageError) throw new UsageError(`flexstore dev: ${err.message}`);
        throw err;
      }
      const { runDev } = await import('./dev.js');
      const code = await runDev(config, env);
      process.exit(code);
    }
    case 'certs': {
      const { runCertsCommand } = await import('./certs-command.js');
      process.exitCode = await runCertsCommand(parsed);
      return;
    }
    case 'token': {
      const { runTokenCommand } = await import('./token-command.js');
      process.exitCode = await runTokenCommand(parsed);
      return;
    }
    case 'node': {
      const { runNodeCommand } = await import('./node-command.js');
      process.exitCode = await runNodeCommand(parsed);
      return;
    }
    default:
      if (!isClientCommand(command)) throw new Error(`no handler for ${command}`);
      process.exitCode = await runClientCommand(command, parsed);
  }
}

/**
 * Starts a server and keeps it until SIGINT/SIGTERM (or the parent `flexstore
 * dev` going away), then closes it and exits 0. Server modules are imported
 * lazily so client commands and --help do not load LMDB or fastify.
 */
async function runServer(name: string, start: () => Promise<RunningServer & { id?: string }>): Promise<void> {
  let server: (RunningServer & { id?: string }) | undefined;
  let stopRequested = false;
  let closing = false;

  const stop = async (): Promise<void> => {
    stopRequested = true;
    // A second signal is normal (Ctrl-C reaches a whole process group, then dev sends SIGTERM): keep closing.
    if (!server || closing) return;
    closing = true;
    const timer = setTimeout(() => {
      process.stderr.write(`flexstore ${name}: did not close within ${CLOSE_TIMEOUT_MS / 1000} s; exiting\n`);
      process.exit(1);
    }, CLOSE_TIMEOUT_MS);
    timer.unref();
    try {
      await server.close();
    } catch (err) {
      process.stderr.write(`flexstore ${name}: error while closing: ${oneLine(err)}\n`);
      process.exit(1);
    }
    process.exit(0);
  };

  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  if (process.send !== undefined) {
    // Started by `flexstore dev` with an IPC channel: if dev dies (even by SIGKILL) the channel
    // closes, and this server stops instead of lingering on its port. unref: the channel alone must
    // not keep the process alive.
    process.once('disconnect', () => void stop());
    process.channel?.unref();
  }

  try {
    server = await start();
  } catch (err) {
    process.stderr.write(`flexstore ${name}: cannot start: ${oneLine(err)}\n`);
    // A secret, certificate or bind the operator must fix is a usage error, like a bad flag.
    process.exit(err instanceof SecurityConfigError ? 2 : 1);
  }
  const id = server.id ? ` (id ${server.id})` : '';
  process.stdout.write(`flexstore ${name} listening on ${server.url}${id}\n`);
  void server.failed?.then((err) => {
    process.stderr.write(`flexstore ${name}: stopped: ${oneLine(err)}\n`);
    process.exit(1);
  });
  if (stopRequested) await stop();
}

function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.trim() || String(err);
}

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // The reader went away (`flexstore ls | head`): stop quietly like other Unix tools.
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

main(process.argv.slice(2), process.env).catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`${err.message}\n`);
    process.exitCode = err.exitCode;
    return;
  }
  process.stderr.write(`flexstore: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
