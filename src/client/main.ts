import { type Config, ConfigError, loadConfig } from '../config.ts';
import { FIB_METHOD } from '../fib/service.ts';
import { parseN } from '../fib/validate.ts';
import { createLogger } from '../log.ts';
import { RpcClient } from '../rpc/client.ts';
import { RpcError } from '../rpc/errors.ts';
import { shutdownTelemetry } from '../telemetry.ts';
import { activeTraceId, withCallSpan } from '../tracing/spans.ts';
import { type CliOptions, parseCli, USAGE, UsageError } from './cli.ts';
import { EXIT, exitCodeFor } from './exit-codes.ts';
import { runLoad } from './load.ts';

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
  const outcome = await withCallSpan(FIB_METHOD, n, async () => {
    const traceId = activeTraceId();
    if (cli.verbose && traceId) {
      process.stderr.write(`trace ${traceId}: open in Jaeger (search for it, service fib-rpc-client)\n`);
    }
    const reply = await client.call(FIB_METHOD, { n }, { timeoutMs: cli.timeoutMs, retries: cli.retries });
    return { ...reply, traceId };
  });
  const latencyMs = Number((performance.now() - started).toFixed(3));
  const result = String(outcome.result);
  if (cli.json) {
    await out(
      JSON.stringify({
        n,
        result,
        latency_ms: latencyMs,
        correlation_id: outcome.correlationId,
        attempts: outcome.attempts,
        trace_id: outcome.traceId ?? null,
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

async function load(client: RpcClient, n: number, cli: CliOptions, config: Config): Promise<number> {
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
      ].join('\n'),
    );
  }
  if (summary.wrong > 0) return EXIT.wrongAnswer;
  return summary.ok === summary.calls ? EXIT.ok : EXIT.unexpected;
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
  let n: number;
  try {
    n = parseN(cli.n, config.fib.maxN);
  } catch (err) {
    return fail(`invalid input: ${(err as Error).message}`, EXIT.invalidInput);
  }
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
    return cli.load ? await load(client, n, cli, config) : await oneCall(client, n, cli);
  } catch (err) {
    if (err instanceof RpcError) {
      const remote = err.name === 'RemoteError' ? 'server error ' : '';
      return fail(`${remote}${err.code}: ${err.message}${err.retryable ? ' (retryable)' : ''}`, exitCodeFor(err));
    }
    throw err;
  } finally {
    await client?.close();
  }
}

const code = await main(process.argv.slice(2)).catch((err: unknown) =>
  fail(`unexpected error: ${err instanceof Error ? err.message : String(err)}`, EXIT.unexpected),
);
await shutdownTelemetry();
process.exitCode = code;
