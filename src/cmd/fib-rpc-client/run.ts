import { AbortedError, RemoteError, RpcClient, RpcError } from '@fib-rpc/rpc';
import { fib } from '../../fib/methods.ts';
import { parseN } from '../../fib/validate.ts';
import { type Config, ConfigError, loadConfig } from '../common/config.ts';
import { createLogger } from '../common/log.ts';
import { clientOptions } from '../common/rpc-options.ts';
import { untrustedCertificateHint } from '../common/tls-hint.ts';
import { type CliOptions, parseCli, USAGE, UsageError } from './cli.ts';
import { EXIT, exitCodeFor } from './exit-codes.ts';
import { runLoad } from './load.ts';
import { ReplyCounts } from './reply-counts.ts';
import { activeTraceId, withCallSpan } from './span.ts';

/** How a run ended: its exit code, and the failure behind it if any (for the trace). */
export interface RunResult {
  code: number;
  error?: Error;
}

/** Where a run writes: stdout gets answers, stderr messages; both awaited. */
export interface RunOutput {
  out(line: string): Promise<void>;
  err(line: string): void;
  /** Live progress of a load (a terminal), or undefined. */
  progress?: (line: string) => void;
}

/**
 * The whole CLI but for the process around it (signals, telemetry, exit): parses the
 * arguments and settings, makes the call or the load, and says how it ended. `signal`
 * interrupts it (a load stops and reports, a single call is abandoned).
 */
export async function run(
  argv: string[],
  output: RunOutput,
  signal: AbortSignal,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RunResult> {
  const fail = (message: string, code: number, error?: Error): RunResult => {
    output.err(`fib-rpc-client: ${message}`);
    return error === undefined ? { code } : { code, error };
  };
  let cli: CliOptions;
  let config: Config;
  try {
    cli = parseCli(argv);
    if (cli.help) {
      await output.out(USAGE);
      return { code: EXIT.ok };
    }
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof UsageError) return fail(`${err.message}\n\n${USAGE}`, EXIT.invalidInput, err);
    if (err instanceof ConfigError) return fail(err.message, EXIT.invalidInput, err);
    throw err;
  }
  if (cli.n === undefined) return fail(`missing n\n\n${USAGE}`, EXIT.invalidInput);
  const raw = cli.n;
  const call = async (): Promise<RunResult> => {
    const traceId = activeTraceId();
    if (cli.verbose && traceId) {
      output.err(`trace ${traceId}: open in Jaeger (Search, service fib-rpc-client, or paste the id)`);
    }
    let n: number;
    try {
      n = parseN(raw, config.fib.maxN);
    } catch (err) {
      return fail(`invalid input: ${(err as Error).message}`, EXIT.invalidInput, err as Error);
    }
    const replies = new ReplyCounts();
    const connectAndRun = (work: (client: RpcClient) => Promise<RunResult>) =>
      connected(config, cli, replies, signal, fail, work);
    return cli.load
      ? connectAndRun((client) => load(client, n, cli, config, replies, output, signal))
      : connectAndRun((client) => oneCall(client, n, cli, output, signal, fail));
  };
  // A one-shot call is one trace whose root covers validation too, so that every failure
  // (invalid input included) marks a span; a load makes one trace per call instead.
  return cli.load ? call() : withCallSpan(fib.name, raw, call);
}

type Fail = (message: string, code: number, error?: Error) => RunResult;

async function oneCall(
  client: RpcClient,
  n: number,
  cli: CliOptions,
  output: RunOutput,
  signal: AbortSignal,
  fail: Fail,
): Promise<RunResult> {
  const started = performance.now();
  const traceId = activeTraceId();
  const reply = await client.call(
    fib,
    { n },
    {
      timeoutMs: cli.timeoutMs,
      retries: cli.retries,
      retryOnTimeout: cli.retryOnTimeout,
      attributes: { 'fib.n': n },
      signal,
    },
  );
  const latencyMs = Number((performance.now() - started).toFixed(3));
  const result = String(reply.result);
  if (cli.json) {
    await output.out(
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
    await output.out(result);
  }
  if (cli.expect !== undefined && cli.expect !== result) {
    return fail(
      `expected ${cli.expect}, got ${result.length > 60 ? `${result.slice(0, 60)}…` : result}`,
      EXIT.wrongAnswer,
    );
  }
  return { code: EXIT.ok };
}

async function load(
  client: RpcClient,
  n: number,
  cli: CliOptions,
  config: Config,
  replies: ReplyCounts,
  output: RunOutput,
  signal: AbortSignal,
): Promise<RunResult> {
  const progress = output.progress;
  const summary = await runLoad(client, {
    concurrency: cli.concurrency,
    durationMs: cli.durationMs,
    count: cli.count,
    n,
    spread: cli.spread,
    verify: cli.verify,
    timeoutMs: cli.timeoutMs ?? config.rpc.timeoutMs,
    retries: cli.retries ?? config.rpc.retries,
    retryOnTimeout: cli.retryOnTimeout,
    replies,
    signal,
    onProgress: progress
      ? (p) =>
          progress(
            `${p.elapsedS.toFixed(1)}s  calls ${p.calls}  ok ${p.ok}  errors ${p.errors}  ${p.callsPerS.toFixed(0)}/s  p50 ${p.p50Ms.toFixed(2)} ms`,
          )
      : undefined,
  });
  progress?.('');
  if (cli.json) {
    await output.out(JSON.stringify(summary));
  } else {
    const errors =
      Object.entries(summary.errors)
        .map(([kind, count]) => `${kind}=${count}`)
        .join(' ') || 'none';
    await output.out(
      [
        `calls ${summary.calls}  ok ${summary.ok}  wrong ${summary.wrong}  errors ${errors}`,
        `${summary.calls_per_s} calls/s over ${summary.duration_s} s at concurrency ${summary.concurrency}`,
        `latency ms: p50 ${summary.p50_ms}  p90 ${summary.p90_ms}  p99 ${summary.p99_ms}  max ${summary.max_ms}`,
        ...(summary.errors.BROKER_BLOCKED
          ? [
              `broker blocked: ${summary.errors.BROKER_BLOCKED} calls not sent (a memory or disk alarm on the broker: rabbitmq-diagnostics alarms)`,
            ]
          : []),
        ...(summary.interrupted ? [`interrupted: ${summary.abandoned_calls} calls in flight abandoned`] : []),
      ].join('\n'),
    );
  }
  if (summary.wrong > 0) return { code: EXIT.wrongAnswer };
  if (summary.ok !== summary.calls) return { code: EXIT.unexpected };
  return { code: summary.interrupted ? EXIT.interrupted : EXIT.ok };
}

/** What the first connection's limit was, and how to change it. */
function startupWaitHint(config: Config): string {
  const limit = config.client.startupTimeoutMs;
  return limit > 0
    ? `; waited CLIENT_STARTUP_TIMEOUT_MS (client.startupTimeoutMs) = ${limit} ms`
    : '; one attempt: set CLIENT_STARTUP_TIMEOUT_MS (ms) to wait for a broker that is not reachable yet';
}

/** Connects, runs `work`, closes; broker and RPC failures become their exit codes. */
async function connected(
  config: Config,
  cli: CliOptions,
  replies: ReplyCounts,
  signal: AbortSignal,
  fail: Fail,
  work: (client: RpcClient) => Promise<RunResult>,
): Promise<RunResult> {
  const log = createLogger('fib-rpc-client', config.log.level === 'info' ? 'warn' : config.log.level);
  let client: RpcClient | undefined;
  try {
    client = await RpcClient.connect(
      clientOptions(config, log, { timeoutMs: cli.timeoutMs, retries: cli.retries, observer: replies }),
    );
    return await work(client);
  } catch (err) {
    if (err instanceof AbortedError && signal.aborted) {
      return fail(
        `${(signal.reason as Error).message}: the call was abandoned before its reply`,
        EXIT.interrupted,
        err,
      );
    }
    if (err instanceof RpcError) {
      const remote = err instanceof RemoteError ? 'server error ' : '';
      const hint = untrustedCertificateHint(err);
      const retryable = err.retryable && !hint ? ' (retryable)' : '';
      const wait = client === undefined && err.code === 'CONNECTION_FAILED' ? startupWaitHint(config) : '';
      return fail(`${remote}${err.code}: ${err.message}${hint}${retryable}${wait}`, exitCodeFor(err), err);
    }
    throw err;
  } finally {
    await client?.close();
  }
}
