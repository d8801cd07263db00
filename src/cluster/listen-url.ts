/**
 * The URL a server bound to `host` is reached by. A wildcard bind (0.0.0.0,
 * ::, or none) is reached through loopback; an IPv6 literal needs brackets,
 * or `::1:5000` would read as an address, not a host and a port. The scheme
 * is https when the server serves TLS.
 */
export function listenUrl(host: string | undefined, port: number, scheme: 'http' | 'https' = 'http'): string {
  if (!host || host === '0.0.0.0' || host === '::' || host === '[::]') return `${scheme}://127.0.0.1:${port}`;
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${scheme}://${h}:${port}`;
}
