import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Server, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCerts } from '../cli/certs-command.js';
import { tempDirs } from '../test/support/temp-dir.js';
import { OPEN_CLUSTER, SecurityConfigError, loadClusterSecurity, type ClusterSecurity } from './security.js';
import { certificateProblem, serverTlsOptions, tcpConnect, tcpListen, undiciConnectOptions } from './tls.js';

const tempDir = tempDirs('flexstore-tls-unit-');

describe('TLS helpers', () => {
  let dir: string;
  let other: string;
  let sec: ClusterSecurity;
  let otherSec: ClusterSecurity;
  const files = (d: string) => ({ tlsCert: path.join(d, 'server.crt'), tlsKey: path.join(d, 'server.key'), tlsCa: path.join(d, 'ca.crt') });

  before(async () => {
    dir = tempDir();
    other = tempDir();
    await createCerts({ out: dir, hosts: [] });
    await createCerts({ out: other, hosts: [] });
    sec = loadClusterSecurity(files(dir));
    otherSec = loadClusterSecurity(files(other));
  });

  test('an open cluster gets plain options', () => {
    assert.equal(serverTlsOptions(OPEN_CLUSTER), undefined);
    assert.deepEqual(undiciConnectOptions(OPEN_CLUSTER), {});
    const plain = tcpConnect('127.0.0.1', 1, OPEN_CLUSTER);
    plain.socket.on('error', () => {});
    plain.socket.destroy();
    assert.equal(plain.readyEvent, 'connect');
  });

  test('server options ask for client certificates only with clientAuth require', () => {
    assert.equal(serverTlsOptions(sec)!.requestCert, false);
    const mutual = loadClusterSecurity({ ...files(dir), tlsClientAuth: 'require' });
    assert.equal(serverTlsOptions(mutual)!.requestCert, true);
    assert.equal(serverTlsOptions(mutual)!.rejectUnauthorized, true);
  });

  test('client options leave out a pair the CLI does not have', () => {
    const caOnly: ClusterSecurity = { secrets: [], tls: { ca: sec.tls!.ca, cert: Buffer.alloc(0), key: Buffer.alloc(0), clientAuth: 'none' } };
    assert.deepEqual(Object.keys(undiciConnectOptions(caOnly)), ['ca']);
    assert.deepEqual(Object.keys(undiciConnectOptions(sec)).sort(), ['ca', 'cert', 'key']);
  });

  /** Starts tcpListen on loopback, echoing every byte; closed after the suite. */
  const servers: Server[] = [];
  after(() => servers.forEach((s) => s.close()));
  async function echo(s: ClusterSecurity): Promise<number> {
    const server = tcpListen(s, (socket: Socket) => {
      socket.on('error', () => {});
      socket.pipe(socket);
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  }

  /** Connects, sends "ping" once ready, and resolves to the echo or the error. */
  function roundTrip(port: number, s: ClusterSecurity): Promise<{ echo?: string; error?: unknown }> {
    return new Promise((resolve) => {
      const { socket, readyEvent } = tcpConnect('127.0.0.1', port, s);
      let got = '';
      socket.once(readyEvent, () => socket.write('ping'));
      socket.on('data', (d) => {
        got += d;
        if (got === 'ping') {
          socket.destroy();
          resolve({ echo: got });
        }
      });
      socket.on('error', (error) => resolve({ error }));
      socket.on('close', () => resolve({ error: new Error('closed before the echo') }));
    });
  }

  test('a TLS replica connection verifies the server against the CA', async () => {
    const port = await echo(sec);
    assert.deepEqual(await roundTrip(port, sec), { echo: 'ping' });
    const refused = await roundTrip(port, otherSec);
    assert.ok(certificateProblem(refused.error), `a certificate error, got ${String(refused.error)}`);
  });

  test('mutual TLS: a client without a certificate is refused, one with the pair served', async () => {
    const port = await echo(loadClusterSecurity({ ...files(dir), tlsClientAuth: 'require' }));
    assert.deepEqual(await roundTrip(port, sec), { echo: 'ping' });
    const wrongPair: ClusterSecurity = { secrets: [], tls: { ...otherSec.tls!, ca: sec.tls!.ca } };
    assert.ok((await roundTrip(port, wrongPair)).error, 'a client whose certificate another CA signed is refused');
    // No certificate at all: the server ends the handshake.
    const bare = await new Promise<unknown>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: sec.tls!.ca }, () => socket.write('ping'));
      socket.on('data', () => resolve('echoed'));
      socket.on('error', (err) => resolve(err));
      socket.on('close', () => resolve('closed'));
    });
    assert.notEqual(bare, 'echoed');
  });

  test('bad material fails at load with one line naming the option and the file', () => {
    const mismatch = { ...files(dir), tlsKey: path.join(other, 'server.key') };
    assert.throws(() => loadClusterSecurity(mismatch), (err: Error) => {
      assert.ok(err instanceof SecurityConfigError);
      assert.match(err.message, /^--tls-key .*server\.key does not match the certificate in --tls-cert /);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    assert.throws(() => loadClusterSecurity({ ...files(dir), tlsCert: path.join(dir, 'ca.key') }), /--tls-cert .*ca\.key: not a PEM certificate/);
    assert.throws(() => loadClusterSecurity({ ...files(dir), tlsKey: path.join(dir, 'server.crt') }), /--tls-key .*server\.crt: not a PEM private key/);
    assert.throws(() => loadClusterSecurity({ ...files(dir), tlsCa: path.join(dir, 'server.key') }), /--tls-ca .*server\.key: no PEM certificate/);
    assert.throws(() => loadClusterSecurity({ ...files(dir), tlsCa: path.join(dir, 'missing.crt') }), /--tls-ca .*missing\.crt: cannot read \(ENOENT\)/);
    assert.equal(readFileSync(files(dir).tlsCa, 'utf8').includes('BEGIN CERTIFICATE'), true);
  });
});
