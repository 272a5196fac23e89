import { parseArgs } from 'node:util';

export const USAGE = `Usage:
  fib-rpc-client [options] <n>                 one call: prints fib(n) on stdout
  fib-rpc-client --load [options] [n]          a load run (n defaults to 20)

Options:
  --json                 one JSON line on stdout (a call's result, or the load summary)
  --timeout <ms>         reply timeout per call (default RPC_TIMEOUT_MS, 30000)
  --retries <k>          retry retryable failures k times (default RPC_RETRIES, 0)
  --retry-on-timeout     with --retries, also retry a call that timed out (fib is
                         idempotent; a late reply to an earlier attempt still counts once)
  --expect <value>       exit 7 unless the result equals value (smoke tests)
  --verbose              say on stderr where to find the call's trace
  --load                 closed-loop load instead of one call
  --concurrency <c>      callers in the load (default 16)
  --duration <d>         load duration: 10s, 500ms, 2m (default 10s unless --count)
  --count <k>            load stops after k calls
  --spread               vary n over 0..n during the load
  --verify               check every answer of the load against a local computation
  -h, --help             this text

Exit codes: 0 ok, 1 unexpected, 2 invalid input or usage, 3 no responder,
4 timeout, 5 remote error, 6 broker unreachable or connection lost, 7 wrong answer,
8 interrupted (SIGTERM, SIGINT), 9 unreadable reply (protocol error),
10 broker blocked (resource alarm: retry later).`;

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface CliOptions {
  help: boolean;
  json: boolean;
  verbose: boolean;
  load: boolean;
  /** The raw n as typed; validated against FIB_MAX_N by the caller. */
  n: string | undefined;
  timeoutMs: number | undefined;
  retries: number | undefined;
  /** Retry timeouts too: a request lost with a broker's leader is only recovered that way. */
  retryOnTimeout: boolean;
  expect: string | undefined;
  concurrency: number;
  durationMs: number | undefined;
  count: number | undefined;
  spread: boolean;
  verify: boolean;
}

function positiveInt(name: string, raw: string | undefined, min = 1): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || !Number.isSafeInteger(Number(raw))) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

/** "10s", "500ms", "2m", or a bare number of seconds. */
export function parseDuration(raw: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(raw.trim());
  if (!match) throw new UsageError(`--duration must look like 10s, 500ms or 2m, got ${JSON.stringify(raw)}`);
  const value = Number(match[1]);
  const unit = match[2] ?? 's';
  const ms = unit === 'ms' ? value : unit === 'm' ? value * 60_000 : value * 1000;
  if (ms <= 0) throw new UsageError('--duration must be positive');
  return ms;
}

export function parseCli(argv: string[]): CliOptions {
  // "-1" is a (negative) n for the validator to refuse clearly, not an unknown option.
  const negative = (arg: string) => /^-\.?\d/.test(arg);
  const rest = argv.filter((arg) => !negative(arg));
  const negatives = argv.filter(negative);
  const args = negatives.length === 0 || rest.includes('--') ? [...rest, ...negatives] : [...rest, '--', ...negatives];
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1)
    throw new UsageError(`expected one n, got ${positionals.length}: ${positionals.join(' ')}`);
  const load = values.load === true;
  const count = positiveInt('count', values.count);
  const durationMs =
    values.duration !== undefined ? parseDuration(values.duration) : load && count === undefined ? 10_000 : undefined;
  return {
    help: values.help === true,
    json: values.json === true,
    verbose: values.verbose === true,
    load,
    n: positionals[0] ?? (load ? '20' : undefined),
    timeoutMs: positiveInt('timeout', values.timeout),
    retries: positiveInt('retries', values.retries, 0),
    retryOnTimeout: values['retry-on-timeout'] === true,
    expect: values.expect,
    concurrency: positiveInt('concurrency', values.concurrency) ?? 16,
    durationMs,
    count,
    spread: values.spread === true,
    verify: values.verify === true,
  };
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
      load: { type: 'boolean' },
      timeout: { type: 'string' },
      retries: { type: 'string' },
      'retry-on-timeout': { type: 'boolean' },
      expect: { type: 'string' },
      concurrency: { type: 'string', short: 'c' },
      duration: { type: 'string', short: 'd' },
      count: { type: 'string', short: 'n' },
      spread: { type: 'boolean' },
      verify: { type: 'boolean' },
    },
  });
}
