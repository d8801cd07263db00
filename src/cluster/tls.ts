import { isIP, type Socket } from 'node:net';
import { connect as netConnect, createServer as netCreateServer, type Server } from 'node:net';
import { connect as tlsConnect, createServer as tlsCreateServer, type TLSSocket } from 'node:tls';
import type { ClusterSecurity } from './security.js';

/**
 * TLS on every link of a FlexStore process, from the material security.ts
 * loaded: HTTPS listeners (http-server.ts), the TLS replica port
 * (src/kv/tcp-replica-server.ts), and the clients that reach them (undici
 * pools and agents, the TCP replica transport). One CA verifies both
 * directions; each process presents the same certificate as server and as
 * client, so mutual TLS needs nothing more than `clientAuth: 'require'`.
 *
 * Without TLS material every helper returns what plain HTTP/TCP needs, so
 * call sites do not branch.
 */

/** A handshake that has not finished by then is dropped: a silent client must not hold a socket. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** The `https` options of a fastify/node HTTPS server; undefined without TLS (plain HTTP). */
export function serverTlsOptions(sec: ClusterSecurity | undefined):
  | { cert: Buffer; key: Buffer; ca: Buffer; requestCert: boolean; rejectUnauthorized: boolean; handshakeTimeout: number }
  | undefined {
  const t = sec?.tls;
  if (!t) return undefined;
  const require = t.clientAuth === 'require';
  return {
    cert: t.cert,
    key: t.key,
    ca: t.ca,
    // Without clientAuth a client may still present a certificate; it is not asked for.
    requestCert: require,
    rejectUnauthorized: require,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  };
}

/**
 * The TLS part of an undici `connect` option: verify the peer against the
 * cluster CA and present this process's certificate (for mutual TLS). Empty
 * without TLS. undici sets the SNI/servername from the URL's host itself.
 */
export function undiciConnectOptions(sec: ClusterSecurity | undefined): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const t = sec?.tls;
  if (!t) return {};
  // The CLI may hold a CA without a pair of its own: empty fields are left out, not sent as empty PEM.
  const out: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  if (t.ca.length > 0) out.ca = t.ca;
  if (t.cert.length > 0 && t.key.length > 0) Object.assign(out, { cert: t.cert, key: t.key });
  return out;
}

/** The scheme of this process's HTTP listener and the URLs it advertises. */
export function httpScheme(sec: ClusterSecurity | undefined): 'http' | 'https' {
  return sec?.tls ? 'https' : 'http';
}

export interface TcpClientSocket {
  socket: Socket;
  /** The event after which the socket carries frames: 'secureConnect' with TLS (handshake and verification done), else 'connect'. */
  readyEvent: 'connect' | 'secureConnect';
}

/**
 * A client connection to a replica port, TLS when sec has TLS material. The
 * server's certificate must name `host` (an IP literal is matched against
 * the certificate's IP addresses). Frames written before readyEvent are
 * queued by the socket.
 */
export function tcpConnect(host: string, port: number, sec: ClusterSecurity | undefined): TcpClientSocket {
  const t = sec?.tls;
  let socket: Socket;
  if (t) {
    socket = tlsConnect({
      host,
      port,
      ca: t.ca,
      cert: t.cert,
      key: t.key,
      // SNI must not carry an IP address (RFC 6066); verification still checks it against the IP SANs.
      ...(isIP(host) === 0 && { servername: host }),
    });
  } else {
    socket = netConnect({ host, port });
  }
  socket.setNoDelay(true);
  socket.setKeepAlive(true, 30_000);
  return { socket, readyEvent: t ? 'secureConnect' : 'connect' };
}

/**
 * A listener for the replica protocol: TLS when sec has TLS material (the
 * listener sees a connection only after its handshake, and with
 * clientAuth 'require' only a client whose certificate the CA signed),
 * else plain TCP.
 */
export function tcpListen(sec: ClusterSecurity | undefined, onConnection: (socket: Socket) => void): Server {
  const base = { noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000 };
  const tlsOpts = serverTlsOptions(sec);
  if (!tlsOpts) return netCreateServer(base, onConnection);
  const server = tlsCreateServer({ ...base, ...tlsOpts }, (s: TLSSocket) => onConnection(s));
  // A failed handshake (untrusted or missing client certificate, plain bytes) ends only that socket.
  server.on('tlsClientError', (_err, s) => s.destroy());
  return server;
}

/**
 * A readable reason why a TLS client did not trust the server's
 * certificate, or undefined when err is not that. Node reports these with
 * OpenSSL's codes.
 */
export function certificateProblem(err: unknown): string | undefined {
  return findCode(err, CERT_CODES);
}

/** A readable reason why the server refused this client's certificate (or its lack of one), or undefined. */
export function clientCertificateRefused(err: unknown): string | undefined {
  return findCode(err, REFUSED_CODES);
}

function findCode(err: unknown, codes: ReadonlySet<string>): string | undefined {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code && codes.has(code)) return `${code}: ${String(e?.message ?? code)}`;
  if (e?.cause !== undefined && e.cause !== err) return findCode(e.cause, codes);
  return undefined;
}

/** TLS alerts a server sends when it refuses the client's certificate. */
const REFUSED_CODES = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
]);

const CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
