import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { BROKER_HOST, BROKER_PORT } from './broker.ts';

/**
 * A TCP proxy in front of the broker, so a test can cut (or stall) connections the way a
 * network does, without touching the broker.
 */
export class TcpProxy implements AsyncDisposable {
  readonly #server: Server;
  readonly #pairs = new Set<[Socket, Socket]>();
  #stalled = false;

  private constructor(server: Server) {
    this.#server = server;
  }

  /** Listens on `listenPort` (0: any free port) and forwards to the broker. */
  static async start(targetPort = BROKER_PORT, targetHost = BROKER_HOST, listenPort = 0): Promise<TcpProxy> {
    let proxy!: TcpProxy;
    const server = createServer((client) => {
      if (proxy.#stalled) {
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, targetHost);
      const pair: [Socket, Socket] = [client, upstream];
      proxy.#pairs.add(pair);
      client.pipe(upstream);
      upstream.pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
        proxy.#pairs.delete(pair);
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
    proxy = new TcpProxy(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, '127.0.0.1', resolve);
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** amqp URL through the proxy. */
  url(user = 'guest', password = 'guest'): string {
    return `amqp://${user}:${password}@127.0.0.1:${this.port}`;
  }

  get connections(): number {
    return this.#pairs.size;
  }

  /** Drops every open connection at once, like a network partition or a broker crash. */
  cut(): void {
    for (const [a, b] of this.#pairs) {
      a.destroy();
      b.destroy();
    }
    this.#pairs.clear();
  }

  /** Stops forwarding bytes without closing anything: a half-open connection. */
  stall(): void {
    this.#stalled = true;
    for (const [a, b] of this.#pairs) {
      a.unpipe(b);
      b.unpipe(a);
      a.pause();
      b.pause();
    }
  }

  /** Accepts new connections again (stalled ones stay dead). */
  heal(): void {
    this.#stalled = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
