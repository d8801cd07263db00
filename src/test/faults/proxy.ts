import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy that stands between FlexStore processes and injects network
 * faults. It listens on a free loopback port and forwards every connection to
 * a target port, byte for byte; it knows nothing about HTTP.
 *
 * Modes:
 * - `forward`   (the initial mode): a transparent pipe.
 * - `cut`       every open connection is reset (RST) and each new one is reset
 *               as soon as it is accepted: what a peer sees when a host's link
 *               goes down and its packets come back refused.
 * - `blackhole` connections are accepted but nothing moves in either direction:
 *               open pipes stop reading and new connections are held without
 *               an upstream. Peers see no error, only silence, until their own
 *               timeouts fire — the failure that hurts most, since nothing
 *               tells the caller to give up.
 * - `heal()`    back to `forward`. Held connections then flow again (the bytes
 *               sat in kernel buffers, as retransmitted packets would), and
 *               their upstream connections are opened late.
 */
export type ProxyMode = 'forward' | 'cut' | 'blackhole';

interface Pipe {
  client: Socket;
  upstream: Socket | null;
}

export class FaultProxy {
  private mode: ProxyMode = 'forward';
  private readonly pipes = new Set<Pipe>();
  /** Connections accepted, whatever became of them. */
  accepted = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly targetHost: string,
    readonly targetPort: number,
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<FaultProxy> {
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: true });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const addr = server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : 0);
      });
    });
    const proxy = new FaultProxy(server, port, targetHost, targetPort);
    server.on('connection', (socket) => proxy.accept(socket));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get currentMode(): ProxyMode {
    return this.mode;
  }

  /** Open client connections (held ones included). */
  get connections(): number {
    return this.pipes.size;
  }

  cut(): void {
    this.mode = 'cut';
    for (const pipe of [...this.pipes]) this.reset(pipe);
  }

  blackhole(): void {
    this.mode = 'blackhole';
    for (const pipe of this.pipes) {
      pipe.client.pause();
      pipe.upstream?.pause();
    }
  }

  heal(): void {
    this.mode = 'forward';
    for (const pipe of [...this.pipes]) {
      if (!pipe.upstream) this.connectUpstream(pipe);
      else {
        pipe.client.resume();
        pipe.upstream.resume();
      }
    }
  }

  async close(): Promise<void> {
    for (const pipe of [...this.pipes]) this.reset(pipe);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.accepted++;
    client.on('error', () => {});
    if (this.mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const pipe: Pipe = { client, upstream: null };
    this.pipes.add(pipe);
    client.on('close', () => this.drop(pipe));
    // Held until healed: the client's bytes wait in the kernel, unread.
    if (this.mode === 'forward') this.connectUpstream(pipe);
  }

  private connectUpstream(pipe: Pipe): void {
    const upstream = connect({ host: this.targetHost, port: this.targetPort });
    pipe.upstream = upstream;
    upstream.on('error', () => {});
    upstream.on('close', () => this.drop(pipe));
    upstream.once('connect', () => {
      if (!this.pipes.has(pipe)) return;
      forward(pipe.client, upstream, () => this.mode === 'forward');
      forward(upstream, pipe.client, () => this.mode === 'forward');
      if (this.mode === 'forward') pipe.client.resume();
      else upstream.pause();
    });
  }

  private drop(pipe: Pipe): void {
    if (!this.pipes.delete(pipe)) return;
    // One side gone means the conversation is over; a lingering half would
    // keep the peer waiting on a pipe that can never answer.
    pipe.client.destroy();
    pipe.upstream?.destroy();
  }

  private reset(pipe: Pipe): void {
    this.pipes.delete(pipe);
    if (!pipe.client.destroyed) pipe.client.resetAndDestroy();
    if (pipe.upstream && !pipe.upstream.destroyed) pipe.upstream.resetAndDestroy();
  }
}

/** Copies from → to with backpressure; reading pauses while `open()` is false. */
function forward(from: Socket, to: Socket, open: () => boolean): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => {
    if (open()) from.resume();
  });
  from.on('end', () => to.end());
}
