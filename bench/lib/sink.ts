/**
 * A local OTLP/HTTP endpoint that accepts span exports and drops them: what tracing costs
 * the traced processes, without the cost (or the variance) of a real collector.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Sink {
  endpoint: string;
  /** Export requests and body bytes received so far. */
  stats(): { requests: number; bytes: number };
  close(): Promise<void>;
}

export async function startSink(): Promise<Sink> {
  let requests = 0;
  let bytes = 0;
  const server: Server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      req.resume();
      res.writeHead(404).end();
      return;
    }
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      requests++;
      // An empty ExportTraceServiceResponse: full success, in the request's encoding.
      const json = (req.headers['content-type'] ?? '').includes('json');
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
      res.end(json ? '{}' : '');
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats: () => ({ requests, bytes }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
