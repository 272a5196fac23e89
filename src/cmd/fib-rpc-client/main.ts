import { FIB_METHOD } from '../../fib/methods.ts';
import { parseN } from '../../fib/validate.ts';
import { RpcClient } from '../../rpc/client/rpc-client.ts';
import { RpcError } from '../../rpc/errors.ts';
import { shutdownTelemetry } from '../../telemetry/bootstrap.ts';
import { type Config, ConfigError, loadConfig } from '../common/config.ts';
import { createLogger } from '../common/log.ts';
import { type CliOptions, parseCli, USAGE, UsageError } from './cli.ts';
import { EXIT, ExitWith, exitCodeFor } from './exit-codes.ts';
import { runLoad } from './load.ts';
import { activeTraceId, withCallSpan } from './span.ts';

/**
 * SIGTERM and SIGINT abort this: a load stops and reports, a single call is abandoned (exit 8).
 * In a container node runs as PID 1, which has no default action for SIGTERM, so without a
 * handler deleting the pod waits out its whole grace period. A second signal, or a stop that
 * still runs after FORCED_EXIT_MS (e.g. a connection attempt to a silent broker), exits at once.
 */
const interrupt = new AbortController();
const FORCED_EXIT_MS = 3000;
function interrupted(signal: NodeJS.Signals): void {
  const now = () => {
    process.stderr.write(`fib-rpc-client: interrupted by ${signal}\n`);
    process.exit(EXIT.interrupted);
  };
  if (interrupt.signal.aborted) now();
  interrupt.abort(new Error(`interrupted by ${signal}`));
  setTimeout(now, FORCED_EXIT_MS).unref();
}
process.on('SIGTERM', interrupted);
process.on('SIGINT', interrupted);

/** Writes to stdout and waits for it, so piped output is complete before we exit. */
function out(line: string): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${line}\n`, () => resolve()));
}

function fail(message: string, code: number): number {
  process.stderr.write(`fib-rpc-client: ${message}\n`);
  return code;
}

async function oneCall(client: RpcClient, n: number, cli: CliOptions): Promise<number> {
  const started = performance.now();
  const traceId = activeTraceId();
  const reply = await client.call(
    FIB_METHOD,
    { n },
    { timeoutMs: cli.timeoutMs, retries: cli.retries, attributes: { 'fib.n': n }, signal: interrupt.signal },
  );
  const latencyMs = Number((performance.now() - started).toFixed(3));
  const result = String(reply.result);
  if (cli.json) {
    await out(
      JSON.stringify({
        n,
        result,
        latency_ms: latencyMs,
        correlation_id: reply.correlationId,
        attempts: reply.attempts,
        trace_id: traceId ?? null,
      }),
    );
  } else {
    await out(result);
  }
  if (cli.expect !== undefined && cli.expect !== result) {
    return fail(
      `expected ${cli.expect}, got ${result.length > 60 ? `${result.slice(0, 60)}…` : result}`,
      EXIT.wrongAnswer,
    );
  }
  return EXIT.ok;
}

function load(n: number, cli: CliOptions, config: Config): Promise<number> {
  return connected(config, cli, (client) => runLoadAndReport(client, n, cli, config));
}

async function runLoadAndReport(client: RpcClient, n: number, cli: CliOptions, config: Config): Promise<number> {
  const live = process.stderr.isTTY === true;
  const summary = await runLoad(client, {
    concurrency: cli.concurrency,
    durationMs: cli.durationMs,
    count: cli.count,
    n,
    spread: cli.spread,
    verify: cli.verify,
    timeoutMs: cli.timeoutMs ?? config.rpc.timeoutMs,
    retries: cli.retries ?? config.rpc.retries,
    signal: interrupt.signal,
    onProgress: live
      ? (p) =>
          process.stderr.write(
            `\r\x1b[K${p.elapsedS.toFixed(1)}s  calls ${p.calls}  ok ${p.ok}  errors ${p.errors}  ${p.callsPerS.toFixed(0)}/s  p50 ${p.p50Ms.toFixed(2)} ms`,
          )
      : undefined,
  });
  if (live) process.stderr.write('\r\x1b[K');
  if (cli.json) {
    await out(JSON.stringify(summary));
  } else {
    const errors =
      Object.entries(summary.errors)
        .map(([kind, count]) => `${kind}=${count}`)
        .join(' ') || 'none';
    await out(
      [
        `calls ${summary.calls}  ok ${summary.ok}  wrong ${summary.wrong}  errors ${errors}`,
        `${summary.calls_per_s} calls/s over ${summary.duration_s} s at concurrency ${summary.concurrency}`,
        `latency ms: p50 ${summary.p50_ms}  p90 ${summary.p90_ms}  p99 ${summary.p99_ms}  max ${summary.max_ms}`,
        ...(summary.interrupted ? [`interrupted: ${summary.abandoned_calls} calls in flight abandoned`] : []),
      ].join('\n'),
    );
  }
  if (summary.wrong > 0) return EXIT.wrongAnswer;
  if (summary.ok !== summary.calls) return EXIT.unexpected;
  return summary.interrupted ? EXIT.interrupted : EXIT.ok;
}

async function main(argv: string[]): Promise<number> {
  let cli: CliOptions;
  let config: Config;
  try {
    cli = parseCli(argv);
    if (cli.help) {
      await out(USAGE);
      return EXIT.ok;
    }
    config = loadConfig();
  } catch (err) {
    if (err instanceof UsageError) return fail(`${err.message}\n\n${USAGE}`, EXIT.invalidInput);
    if (err instanceof ConfigError) return fail(err.message, EXIT.invalidInput);
    throw err;
  }
  if (cli.n === undefined) return fail(`missing n\n\n${USAGE}`, EXIT.invalidInput);
  const raw = cli.n;
  const run = async (): Promise<number> => {
    const traceId = activeTraceId();
    if (cli.verbose && traceId) {
      process.stderr.write(`trace ${traceId}: open in Jaeger (Search, service fib-rpc-client, or paste the id)\n`);
    }
    let n: number;
    try {
      n = parseN(raw, config.fib.maxN);
    } catch (err) {
      fail(`invalid input: ${(err as Error).message}`, EXIT.invalidInput);
      throw new ExitWith(EXIT.invalidInput, err as Error);
    }
    return cli.load ? await load(n, cli, config) : await connected(config, cli, (client) => oneCall(client, n, cli));
  };
  try {
    // A one-shot call is one trace whose root covers validation too, so that every failure
    // (invalid input included) marks a span; a load makes one trace per call instead.
    return cli.load ? await run() : await withCallSpan(FIB_METHOD, raw, run);
  } catch (err) {
    if (err instanceof ExitWith) return err.code;
    throw err;
  }
}

/** Connects, runs `work`, closes; broker and RPC failures become their exit codes. */
async function connected(
  config: Config,
  cli: CliOptions,
  work: (client: RpcClient) => Promise<number>,
): Promise<number> {
  const log = createLogger('fib-rpc-client', config.log.level === 'info' ? 'warn' : config.log.level);
  let client: RpcClient | undefined;
  try {
    client = await RpcClient.connect({
      url: config.amqp.url,
      heartbeatS: config.amqp.heartbeatS,
      connectTimeoutMs: config.amqp.connectTimeoutMs,
      tls: config.amqp.tls,
      queue: config.rpc.queue,
      timeoutMs: cli.timeoutMs ?? config.rpc.timeoutMs,
      retries: cli.retries ?? config.rpc.retries,
      maxInFlight: config.rpc.maxInFlight,
      log,
    });
    return await work(client);
  } catch (err) {
    if (err instanceof RpcError && err.code === 'ABORTED' && interrupt.signal.aborted) {
      fail(`${(interrupt.signal.reason as Error).message}: the call was abandoned before its reply`, EXIT.interrupted);
      throw new ExitWith(EXIT.interrupted, err);
    }
    if (err instanceof RpcError) {
      const remote = err.name === 'RemoteError' ? 'server error ' : '';
      const code = exitCodeFor(err);
      fail(`${remote}${err.code}: ${err.message}${err.retryable ? ' (retryable)' : ''}`, code);
      throw new ExitWith(code, err);
    }
    throw err;
  } finally {
    await client?.close();
  }
}

const code = await main(process.argv.slice(2)).catch((err: unknown) =>
  fail(`unexpected error: ${err instanceof Error ? err.message : String(err)}`, EXIT.unexpected),
);
// A one-shot command flushes its spans but does not wait long for a collector that is not there.
await shutdownTelemetry(1000);
// Output is written (stdout was awaited; stderr to pipes and files is synchronous), and an
// exporter retrying a dead collector must not keep the process alive.
process.exit(code);
