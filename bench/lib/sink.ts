/**
 * A local OTLP/HTTP endpoint that accepts span exports and keeps them only to count them:
 * what tracing costs the traced processes, without the cost (or the variance) of a real
 * collector. The bodies are counted after a run (`take`), so counting costs the measured
 * processes nothing.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { countJson, countProtobuf, emptyCount, type SpanCount } from './otlp-count.ts';

interface Export {
  body: Buffer;
  json: boolean;
  gzip: boolean;
}

export interface Sink {
  endpoint: string;
  /** Export requests and body bytes (as sent, compressed or not) received so far. */
  stats(): { requests: number; bytes: number };
  /** Counts the spans of every export received since the last call, and forgets them. */
  take(): SpanCount;
  close(): Promise<void>;
}

export async function startSink(): Promise<Sink> {
  let requests = 0;
  let bytes = 0;
  let received: Export[] = [];
  const server: Server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      req.resume();
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      chunks.push(chunk);
    });
    req.on('end', () => {
      requests++;
      // An empty ExportTraceServiceResponse: full success, in the request's encoding.
      const json = (req.headers['content-type'] ?? '').includes('json');
      received.push({ body: Buffer.concat(chunks), json, gzip: req.headers['content-encoding'] === 'gzip' });
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
    take: () => {
      const count = emptyCount();
      for (const { body, json, gzip } of received) {
        const plain = gzip ? gunzipSync(body) : body;
        if (json) countJson(plain, count);
        else countProtobuf(plain, count);
      }
      received = [];
      return count;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
