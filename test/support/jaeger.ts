import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The Jaeger v2 binary built by scripts/install-jaeger.sh (or JAEGER_BIN). */
export function jaegerBinary(): string {
  const candidates = [process.env.JAEGER_BIN, join(root, '.tools/bin/jaeger')].filter(Boolean) as string[];
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error('no Jaeger binary: run `bash scripts/install-jaeger.sh` (make tools) first');
  return found;
}

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  processID: string;
  references: Array<{ refType: string; traceID: string; spanID: string }>;
  tags: Array<{ key: string; type: string; value: unknown }>;
  logs: Array<{ fields: Array<{ key: string; value: unknown }> }>;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

/**
 * A real Jaeger v2 (all-in-one, in-memory storage) on free ports: the OTLP receivers the
 * services export to, and the query API the tests read traces back from.
 */
export class Jaeger implements AsyncDisposable {
  readonly process: ChildProcess;
  readonly otlpHttpPort: number;
  readonly otlpGrpcPort: number;
  readonly queryPort: number;
  readonly healthPort: number;
  output = '';

  private constructor(process: ChildProcess, ports: number[]) {
    this.process = process;
    [this.otlpHttpPort, this.otlpGrpcPort, this.queryPort, this.healthPort] = ports as [number, number, number, number];
    process.stdout?.on('data', (d: Buffer) => {
      this.output += d;
    });
    process.stderr?.on('data', (d: Buffer) => {
      this.output += d;
    });
  }

  /**
   * Free ports are only free when asked: a test running beside this one can take one before
   * Jaeger binds it. A start that lost a port that way is tried again on new ports.
   */
  static async start(): Promise<Jaeger> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await Jaeger.#startOnce();
      } catch (err) {
        if (attempt >= 3 || !/address already in use/.test(String(err))) throw err;
      }
    }
  }

  static async #startOnce(): Promise<Jaeger> {
    const ports = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const [http, grpc, query, health, queryGrpc] = ports as [number, number, number, number, number];
    const dir = mkdtempSync(join(tmpdir(), 'fib-jaeger-'));
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:${health}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:${query}
    grpc:
      endpoint: 127.0.0.1:${queryGrpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${grpc}
      http:
        endpoint: 127.0.0.1:${http}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`,
    );
    const child = spawn(jaegerBinary(), ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    const jaeger = new Jaeger(child, [http, grpc, query, health]);
    await jaeger.#waitHealthy();
    return jaeger;
  }

  async #waitHealthy(): Promise<void> {
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      if (this.process.exitCode !== null) throw new Error(`jaeger exited: ${this.output}`);
      try {
        const status = await fetch(`http://127.0.0.1:${this.healthPort}/status`);
        const ui = await fetch(`http://127.0.0.1:${this.queryPort}/api/services`);
        if (status.ok && ui.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`jaeger did not become healthy: ${this.output}`);
  }

  get otlpHttpEndpoint(): string {
    return `http://127.0.0.1:${this.otlpHttpPort}`;
  }

  get otlpGrpcEndpoint(): string {
    return `http://127.0.0.1:${this.otlpGrpcPort}`;
  }

  /** One trace by id, or undefined while Jaeger has not stored it. */
  async trace(traceId: string): Promise<JaegerTrace | undefined> {
    const res = await fetch(`http://127.0.0.1:${this.queryPort}/api/traces/${traceId}`);
    if (res.status === 404) return undefined;
    const body = (await res.json()) as { data?: JaegerTrace[] };
    return body.data?.[0];
  }

  /** Polls until the trace satisfies `ready` (bounded), then returns it. */
  async waitForTrace(traceId: string, ready: (t: JaegerTrace) => boolean, timeoutMs = 15_000): Promise<JaegerTrace> {
    const until = Date.now() + timeoutMs;
    let last: JaegerTrace | undefined;
    while (Date.now() < until) {
      last = await this.trace(traceId);
      if (last && ready(last)) return last;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`trace ${traceId} incomplete after ${timeoutMs} ms: ${JSON.stringify(summarise(last))}`);
  }

  /** Traces of a service, newest first. */
  async traces(service: string, limit = 20): Promise<JaegerTrace[]> {
    const res = await fetch(
      `http://127.0.0.1:${this.queryPort}/api/traces?service=${service}&limit=${limit}&lookback=1h`,
    );
    const body = (await res.json()) as { data?: JaegerTrace[] };
    return body.data ?? [];
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null) return;
    this.process.kill('SIGTERM');
    await new Promise((r) => this.process.once('exit', r));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

export function serviceOf(trace: JaegerTrace, span: JaegerSpan): string {
  return trace.processes[span.processID]?.serviceName ?? '?';
}

export function tag(span: JaegerSpan, key: string): unknown {
  return span.tags.find((t) => t.key === key)?.value;
}

export function parentOf(span: JaegerSpan): string | undefined {
  return span.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
}

/** service:operation <- parent, for failure messages. */
export function summarise(trace: JaegerTrace | undefined): string[] {
  if (!trace) return [];
  return trace.spans.map((s) => `${serviceOf(trace, s)}:${s.operationName}#${s.spanID} <- ${parentOf(s) ?? 'root'}`);
}
