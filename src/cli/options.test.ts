import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultGatewayConfig } from '../gateway/config.js';
import { defaultKvConfig } from '../kv/config.js';
import { defaultRegistryConfig } from '../registry/config.js';
import {
  clientSettingsFrom,
  commands,
  devConfigFrom,
  gatewayConfigFrom,
  kvConfigFrom,
  registryConfigFrom,
} from './commands.js';
import { UsageError, formatCommandHelp, parseCommand, parseHttpUrl } from './options.js';

const noEnv = {};

function usageError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'), 'usage errors are one line');
    return true;
  });
}

describe('defaults', () => {
  it('registry defaults equal defaultRegistryConfig', () => {
    const { values } = parseCommand(commands.registry, [], noEnv);
    assert.deepEqual(registryConfigFrom(values), defaultRegistryConfig);
  });

  it('kv defaults: data dir follows the port, advertise URL and node id are left to the server', () => {
    const config = kvConfigFrom(parseCommand(commands.kv, ['--port', '8002'], noEnv).values);
    assert.equal(config.port, 8002);
    assert.equal(config.dataDir, './data/kv-8002');
    assert.equal(config.registryUrl, 'http://localhost:8000');
    assert.equal(config.heartbeatIntervalMs, defaultKvConfig.heartbeatIntervalMs);
    assert.equal(config.advertiseUrl, undefined);
    assert.equal(config.nodeId, undefined);
    assert.equal('advertiseUrl' in config, false);
  });

  it('kv with no flags equals defaultKvConfig', () => {
    assert.deepEqual(kvConfigFrom(parseCommand(commands.kv, [], noEnv).values), defaultKvConfig);
  });

  it('gateway defaults equal defaultGatewayConfig', () => {
    assert.deepEqual(gatewayConfigFrom(parseCommand(commands.gateway, [], noEnv).values), defaultGatewayConfig);
  });

  it('dev defaults', () => {
    assert.deepEqual(devConfigFrom(parseCommand(commands.dev, [], noEnv).values), {
      registryPort: 8000,
      gatewayPort: 5000,
      kvPorts: [8001, 8002, 8003],
      dataDir: './data',
      replicationFactor: 3,
      logLevel: 'info',
    });
  });

  it('client defaults', () => {
    assert.deepEqual(clientSettingsFrom(parseCommand(commands.status, [], noEnv).values), {
      gateway: 'http://localhost:5000',
      timeoutMs: 10_000,
      json: false,
    });
  });
});

describe('precedence', () => {
  it('environment over default', () => {
    const config = registryConfigFrom(parseCommand(commands.registry, [], { PORT: '9000', DATA_DIR: '/data', LOG_LEVEL: 'warn' }).values);
    assert.equal(config.port, 9000);
    assert.equal(config.dataDir, '/data');
    assert.equal(config.logLevel, 'warn');
  });

  it('flag over environment', () => {
    const config = gatewayConfigFrom(
      parseCommand(commands.gateway, ['--port=7000', '--consistency', 'all'], { PORT: '9000', DEFAULT_CONSISTENCY: 'one', REPLICATION_FACTOR: '5' }).values,
    );
    assert.equal(config.port, 7000);
    assert.equal(config.defaultConsistency, 'all');
    assert.equal(config.replicationFactor, 5);
  });

  it('an empty environment variable counts as unset', () => {
    const config = kvConfigFrom(parseCommand(commands.kv, [], { PORT: '', NODE_ID: '' }).values);
    assert.equal(config.port, 8001);
    assert.equal(config.nodeId, undefined);
  });

  it('a bad environment value is not reached when a flag overrides it', () => {
    const config = registryConfigFrom(parseCommand(commands.registry, ['--port', '1'], { PORT: 'abc' }).values);
    assert.equal(config.port, 1);
  });

  it('kv reads the long env names', () => {
    const config = kvConfigFrom(
      parseCommand(commands.kv, [], {
        HEARTBEAT_INTERVAL_MS: '250',
        ADVERTISE_URL: 'http://kv1:8001/',
        NODE_ID: 'kv1',
        REGISTRY_URL: 'http://registry:8000',
        ADVERTISE_TCP_PORT: '9101',
      }).values,
    );
    assert.equal(config.heartbeatIntervalMs, 250);
    assert.equal(config.advertiseUrl, 'http://kv1:8001');
    assert.equal(config.advertiseTcpPort, 9101);
    assert.equal(config.nodeId, 'kv1');
    assert.equal(config.registryUrl, 'http://registry:8000');
  });

  it('client gateway from FLEXSTORE_GATEWAY, consistency from the flag only', () => {
    const parsed = parseCommand(commands.get, ['k', '--consistency', 'one', '--json'], { FLEXSTORE_GATEWAY: 'https://kv.example:8443' });
    assert.deepEqual(clientSettingsFrom(parsed.values), { gateway: 'https://kv.example:8443', timeoutMs: 10_000, consistency: 'one', json: true });
    assert.deepEqual(parsed.positionals, ['k']);
  });
});

describe('validation', () => {
  it('ports are integers from 0 to 65535', () => {
    for (const ok of ['0', '1', '65535']) {
      assert.equal(registryConfigFrom(parseCommand(commands.registry, ['--port', ok], noEnv).values).port, Number(ok));
    }
    for (const bad of ['abc', '-1', '65536', '1.5', '', ' ', '0x10', '1e3']) {
      usageError(() => parseCommand(commands.registry, [`--port=${bad}`], noEnv), /--port/);
    }
  });

  it('an advertised replica port is one gateways can dial; unset, the bound port is advertised', () => {
    assert.equal(kvConfigFrom(parseCommand(commands.kv, ['--advertise-tcp-port', '9101'], noEnv).values).advertiseTcpPort, 9101);
    assert.equal(kvConfigFrom(parseCommand(commands.kv, [], noEnv).values).advertiseTcpPort, undefined);
    usageError(() => kvConfigFrom(parseCommand(commands.kv, ['--advertise-tcp-port', '0'], noEnv).values), /--advertise-tcp-port/);
  });

  it('names the environment variable when the bad value came from there', () => {
    usageError(() => parseCommand(commands.gateway, [], { PORT: 'x' }), /PORT "x" \(from the environment\)/);
  });

  it('replication factor and durations are at least 1', () => {
    usageError(() => parseCommand(commands.gateway, ['--replication-factor', '0'], noEnv), /--replication-factor "0".*at least 1/);
    usageError(() => parseCommand(commands.dev, [], { REPLICATION_FACTOR: 'three' }), /REPLICATION_FACTOR/);
    usageError(() => parseCommand(commands.registry, ['--down-after-ms', '0'], noEnv), /--down-after-ms/);
    usageError(() => parseCommand(commands.kv, [], { HEARTBEAT_INTERVAL_MS: '1.5' }), /HEARTBEAT_INTERVAL_MS/);
  });

  it('URLs must be http or https', () => {
    usageError(() => parseCommand(commands.kv, ['--registry-url', 'ftp://x'], noEnv), /--registry-url/);
    usageError(() => parseCommand(commands.gateway, [], { REGISTRY_URL: 'localhost:8000' }), /REGISTRY_URL/);
    usageError(() => parseCommand(commands.put, ['k', 'v', '--gateway', 'nope'], noEnv), /--gateway/);
    assert.equal(parseHttpUrl('http://a:1/'), 'http://a:1');
    assert.equal(parseHttpUrl('https://a/prefix/'), 'https://a/prefix');
    assert.equal(parseHttpUrl('http://a?x=1'), undefined);
  });

  it('log level is one of the pino levels', () => {
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
      assert.equal(registryConfigFrom(parseCommand(commands.registry, ['--log-level', level], noEnv).values).logLevel, level);
    }
    usageError(() => parseCommand(commands.kv, [], { LOG_LEVEL: 'verbose' }), /LOG_LEVEL "verbose".*fatal, error/);
  });

  it('consistency is one, quorum or all', () => {
    usageError(() => parseCommand(commands.gateway, ['--consistency', 'two'], noEnv), /one, quorum, all/);
    usageError(() => parseCommand(commands.get, ['k', '--consistency', 'QUORUM'], noEnv), /--consistency/);
  });

  it('kv sync is commit or interval, with a positive interval', () => {
    const config = kvConfigFrom(parseCommand(commands.kv, ['--sync', 'interval'], { SYNC_INTERVAL_MS: '250' }).values);
    assert.equal(config.sync, 'interval');
    assert.equal(config.syncIntervalMs, 250);
    usageError(() => parseCommand(commands.kv, [], { SYNC: 'never' }), /SYNC "never".*commit, interval/);
    usageError(() => parseCommand(commands.kv, ['--sync-interval-ms', '0'], noEnv), /--sync-interval-ms/);
  });

  it('gateway id uses the charset of version suffixes', () => {
    assert.equal(gatewayConfigFrom(parseCommand(commands.gateway, ['--gateway-id', 'gw_1-a'], noEnv).values).gatewayId, 'gw_1-a');
    usageError(() => parseCommand(commands.gateway, ['--gateway-id', 'gw.1'], noEnv), /--gateway-id/);
  });

  it('unknown options, missing values and stray arguments', () => {
    usageError(() => parseCommand(commands.registry, ['--prot', '1'], noEnv), /unknown option --prot/);
    usageError(() => parseCommand(commands.registry, ['--port'], noEnv), /--port needs a value/);
    usageError(() => parseCommand(commands.ls, ['--limit', '-5'], noEnv), /--limit needs a value/);
    usageError(() => parseCommand(commands.registry, ['extra'], noEnv), /unexpected argument "extra"/);
    usageError(() => parseCommand(commands.put, ['only-key'], noEnv), /missing argument; expected KEY VALUE/);
    usageError(() => parseCommand(commands.get, ['a', 'b'], noEnv), /unexpected argument "b"/);
    usageError(() => parseCommand(commands.status, ['--json=yes'], noEnv), /--json does not take a value/);
  });

  it("'-' is a value and '--' ends the options", () => {
    assert.deepEqual(parseCommand(commands.put, ['k', '-'], noEnv).positionals, ['k', '-']);
    assert.deepEqual(parseCommand(commands.get, ['--', '--weird-key'], noEnv).positionals, ['--weird-key']);
  });

  it('dev ports must be fixed and distinct', () => {
    usageError(() => devConfigFrom(parseCommand(commands.dev, ['--kv-ports', '8001,8001'], noEnv).values), /8001 is used twice/);
    usageError(() => devConfigFrom(parseCommand(commands.dev, ['--gateway-port', '8000'], noEnv).values), /8000 is used twice/);
    usageError(() => devConfigFrom(parseCommand(commands.dev, ['--registry-port', '0'], noEnv).values), /fixed ports/);
    usageError(() => parseCommand(commands.dev, ['--kv-ports', '8001,,8002'], noEnv), /--kv-ports/);
    assert.deepEqual(devConfigFrom(parseCommand(commands.dev, ['--kv-ports', '9001, 9002'], noEnv).values).kvPorts, [9001, 9002]);
  });
});

describe('token create options', () => {
  it('--prefix repeats; the token comes from --token or FLEXSTORE_TOKEN', () => {
    const parsed = parseCommand(commands.token, ['create', '--name', 'app', '--role', 'read', '--prefix', 'a/', '--prefix', 'b/'], noEnv);
    assert.deepEqual(parsed.values.prefix, ['a/', 'b/']);
    assert.deepEqual(parseCommand(commands.token, ['create', '--name', 'app', '--role', 'read'], noEnv).values.prefix, []);
    usageError(() => parseCommand(commands.token, ['create', '--role', 'owner'], noEnv), /--role/);
    usageError(() => parseCommand(commands.token, ['create', '--prefix', ' '], noEnv), /--prefix/);
    assert.equal(clientSettingsFrom(parseCommand(commands.get, ['k'], { FLEXSTORE_TOKEN: 'fs_x' }).values).token, 'fs_x');
    assert.equal(clientSettingsFrom(parseCommand(commands.get, ['k', '--token', 'fs_y'], { FLEXSTORE_TOKEN: 'fs_x' }).values).token, 'fs_y');
    assert.equal(clientSettingsFrom(parseCommand(commands.get, ['k'], noEnv).values).token, undefined);
  });
});

describe('help', () => {
  it('--help and -h win over everything else', () => {
    assert.equal(parseCommand(commands.registry, ['--port', 'abc', '--help'], noEnv).help, true);
    assert.equal(parseCommand(commands.put, ['-h'], noEnv).help, true);
  });

  it('every option, its environment variable and its default appear in help', () => {
    for (const spec of Object.values(commands)) {
      const help = formatCommandHelp(spec);
      for (const o of spec.options) {
        assert.ok(help.includes(`--${o.flag}`), `${spec.name} help lists --${o.flag}`);
        if (o.env) assert.ok(help.includes(o.env), `${spec.name} help lists ${o.env}`);
        const def = o.default ?? o.defaultText;
        if (def !== undefined) assert.ok(help.includes(`(default: ${def})`), `${spec.name} help shows the default of --${o.flag}`);
      }
    }
  });
});
