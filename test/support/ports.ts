import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';

/** A local port nothing listens on (connections to it are refused) until someone takes it. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
