import { existsSync } from 'node:fs';
import { BROKER_DEFAULTS, CLIENT_DEFAULTS, parseBrokerUrls, SERVER_DEFAULTS } from '@fib-rpc/rpc';
import convict from 'convict';

/**
 * Every setting of the server and the client: its env var, default, format and doc.
 * Loaded and validated once at start-up; an invalid value stops the process with a
 * message naming the env var.
 */

// convict's own `int` accepts "10abc" and its Boolean turns "0" into true, so every
// number and flag here goes through a strict format instead.
const INTEGER = /^-?\d+$/;

function strictInt(min: number, max = Number.MAX_SAFE_INTEGER) {
  return {
    coerce: (value: unknown): unknown =>
      typeof value === 'string' && INTEGER.test(value.trim()) ? Number(value.trim()) : value,
    validate(value: unknown): void {
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
        throw new Error(`must be an integer, got ${JSON.stringify(value)}`);
      }
      if (value < min || value > max) {
        throw new Error(`must be between ${min} and ${max}, got ${value}`);
      }
    },
  };
}

convict.addFormat({ name: 'non-negative-int', ...strictInt(0) });
convict.addFormat({ name: 'positive-int', ...strictInt(1) });
convict.addFormat({ name: 'port', ...strictInt(0, 65535) });
convict.addFormat({ name: 'prefetch', ...strictInt(1, 65535) });
// RabbitMQ refuses a message TTL above 2^32-1 ms (about 49.7 days).
convict.addFormat({ name: 'message-ttl', ...strictInt(0, 4294967295) });
convict.addFormat({
  name: 'amqp-url',
  validate(value: unknown): void {
    // The value is never echoed: it usually carries the password.
    if (typeof value !== 'string') throw new Error('must be a string');
    const urls = parseBrokerUrls(value);
    if (urls.length === 0) throw new Error('must be a URL like amqp://user:password@host:5672/vhost');
    urls.forEach((raw, index) => {
      // Which address of a list is wrong, without showing any of them.
      const which = urls.length > 1 ? `address ${index + 1} of ${urls.length} ` : '';
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw new Error(
          `${which}must be a URL like amqp://user:password@host:5672/vhost (several: separate them with commas)`,
        );
      }
      if (url.protocol !== 'amqp:' && url.protocol !== 'amqps:') {
        throw new Error(`${which}must use the amqp:// or amqps:// scheme, got ${url.protocol}//`);
      }
      if (!url.hostname) throw new Error(`${which}must name a host`);
    });
  },
});
convict.addFormat({
  name: 'optional-file',
  validate(value: unknown): void {
    if (value === '') return;
    if (typeof value !== 'string' || !existsSync(value)) {
      throw new Error(`must be a readable file, ${JSON.stringify(value)} does not exist`);
    }
  },
});
convict.addFormat({
  name: 'queue-name',
  validate(value: unknown): void {
    if (typeof value !== 'string' || value.length === 0 || value.length > 200) {
      throw new Error('must be a non-empty queue name of at most 200 characters');
    }
    if (value.startsWith('amq.')) throw new Error('must not start with the reserved prefix "amq."');
  },
});

// The library's defaults (one definition, in packages/rpc/src/defaults.ts) are the programs':
// what the core does unset is what an unset env var means.
export const configSchema = {
  amqp: {
    url: {
      doc: 'Broker URL, credentials included: amqp://user:password@host:5672/vhost (amqps:// for TLS). Several, comma-separated (the nodes of a cluster): the first that answers is used, the next on connection loss.',
      format: 'amqp-url',
      default: 'amqp://guest:guest@127.0.0.1:5672',
      env: 'AMQP_URL',
      sensitive: true,
    },
    heartbeatS: {
      doc: 'AMQP heartbeat in seconds; a dead connection is detected within two heartbeats. 0 disables.',
      format: 'non-negative-int',
      default: BROKER_DEFAULTS.heartbeatS,
      env: 'AMQP_HEARTBEAT_S',
    },
    connectTimeoutMs: {
      doc: 'How long one attempt to open the broker connection may take.',
      format: 'positive-int',
      default: BROKER_DEFAULTS.connectTimeoutMs,
      env: 'AMQP_CONNECT_TIMEOUT_MS',
    },
    startupTimeoutMs: {
      doc:
        'Server: how long the first connection keeps retrying (same backoff as reconnecting; /readyz 503, /healthz 200 meanwhile) before the server exits 6. ' +
        "0 waits for ever, the default: a running server already waits for ever for a broker that went away, and one that starts first should do the same rather than crash-loop into Kubernetes' growing restart delays; " +
        'set a limit where a crash is the better alarm (e.g. to surface a wrong AMQP_URL as restarts). ' +
        'The client has its own limit, CLIENT_STARTUP_TIMEOUT_MS.',
      format: 'non-negative-int',
      default: SERVER_DEFAULTS.startupTimeoutMs,
      env: 'AMQP_STARTUP_TIMEOUT_MS',
    },
    tls: {
      caFile: {
        doc: 'PEM file of the CA that signed the broker certificate (amqps:// only).',
        format: 'optional-file',
        default: '',
        env: 'AMQP_TLS_CA_FILE',
      },
      certFile: {
        doc: 'PEM client certificate for mutual TLS (amqps:// only).',
        format: 'optional-file',
        default: '',
        env: 'AMQP_TLS_CERT_FILE',
      },
      keyFile: {
        doc: 'PEM private key of the client certificate (amqps:// only).',
        format: 'optional-file',
        default: '',
        env: 'AMQP_TLS_KEY_FILE',
      },
    },
  },
  rpc: {
    queue: {
      doc: 'Work queue that requests are published to and servers consume. Its dead-letter queue is <queue>.dlq.',
      format: 'queue-name',
      default: SERVER_DEFAULTS.queue,
      env: 'RPC_QUEUE',
    },
    queueType: {
      doc:
        'Type of the work queue: classic (one broker node: about twice the calls per broker CPU) or quorum (a cluster of 3+ nodes: replicated, survives a node). ' +
        'Must match an existing queue of that name. Both dead-letter a request redelivered more than RPC_DELIVERY_LIMIT times.',
      format: ['classic', 'quorum'],
      default: SERVER_DEFAULTS.queueType,
      env: 'RPC_QUEUE_TYPE',
    },
    deliveryLimit: {
      doc: 'Redeliveries of one request before it is dead-lettered (stops a crash loop): the broker counts on quorum queues, the server on classic ones.',
      format: 'positive-int',
      default: SERVER_DEFAULTS.deliveryLimit,
      env: 'RPC_DELIVERY_LIMIT',
    },
    dlqMaxLength: {
      doc:
        'Server: most messages kept in the dead-letter queue <queue>.dlq (x-max-length); beyond it the oldest are dropped (drop-head). 0: no limit. ' +
        'Changing it for an existing queue needs the queue deleted first (the broker refuses other arguments).',
      format: 'non-negative-int',
      default: SERVER_DEFAULTS.dlqMaxLength,
      env: 'RPC_DLQ_MAX_LENGTH',
    },
    dlqTtlMs: {
      doc:
        'Server: how long a dead letter is kept in <queue>.dlq (x-message-ttl), 7 days by default. 0: for ever. ' +
        'Changing it for an existing queue needs the queue deleted first (the broker refuses other arguments).',
      format: 'message-ttl',
      default: SERVER_DEFAULTS.dlqTtlMs,
      env: 'RPC_DLQ_TTL_MS',
    },
    timeoutMs: {
      doc: 'Client: how long a call waits for its reply; also the request message TTL.',
      format: 'positive-int',
      default: CLIENT_DEFAULTS.timeoutMs,
      env: 'RPC_TIMEOUT_MS',
    },
    retries: {
      doc: 'Client: retries of a call that failed with a retryable error (connection lost, no responder).',
      format: 'non-negative-int',
      default: CLIENT_DEFAULTS.retries,
      env: 'RPC_RETRIES',
    },
    maxInFlight: {
      doc: 'Client: calls awaiting a reply at once; further calls wait for a free slot.',
      format: 'positive-int',
      default: CLIENT_DEFAULTS.maxInFlight,
      env: 'MAX_IN_FLIGHT',
    },
  },
  client: {
    startupTimeoutMs: {
      doc:
        'Client: how long the first connection keeps retrying (the reconnect backoff; a warning at most every 10 s, the other attempts at debug) before the client exits 6. ' +
        '0, the default: one attempt, and exit 6 at once. ' +
        "Set it for a Job whose pod may start before it can reach the broker (a broker still starting, a network-policy plugin that admits a new pod seconds late): a new pod of the Job's backoffLimit meets the same wait.",
      format: 'non-negative-int',
      default: 0,
      env: 'CLIENT_STARTUP_TIMEOUT_MS',
    },
  },
  server: {
    prefetch: {
      doc: 'Server: requests one replica works on at once (unacknowledged deliveries).',
      format: 'prefetch',
      default: SERVER_DEFAULTS.prefetch,
      env: 'PREFETCH',
    },
    drainTimeoutMs: {
      doc: 'Server: on SIGTERM, how long to wait for in-flight requests before closing anyway.',
      format: 'positive-int',
      default: SERVER_DEFAULTS.drainTimeoutMs,
      env: 'DRAIN_TIMEOUT_MS',
    },
    maxRequestBytes: {
      doc: 'Server: larger request bodies are rejected before they are parsed.',
      format: 'positive-int',
      default: SERVER_DEFAULTS.maxRequestBytes,
      env: 'MAX_REQUEST_BYTES',
    },
  },
  fib: {
    maxN: {
      doc: 'Largest n accepted by fib (client and server both check).',
      format: 'non-negative-int',
      default: 100000,
      env: 'FIB_MAX_N',
    },
  },
  http: {
    port: {
      doc: 'Server: port of /healthz, /readyz and /metrics. 0 picks a free port.',
      format: 'port',
      default: 8080,
      env: 'HTTP_PORT',
    },
  },
  log: {
    level: {
      doc: 'Log level of the JSON logs on stderr.',
      format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
      env: 'LOG_LEVEL',
    },
  },
  configFile: {
    doc: 'Optional JSON file with any of these settings (nested as in this schema); env vars win over it.',
    format: 'optional-file',
    default: '',
    env: 'CONFIG_FILE',
  },
  // Read by the OpenTelemetry SDK itself (src/telemetry/bootstrap.ts); listed so that they are
  // documented and validated in one place.
  otel: {
    serviceName: {
      doc: 'Service name on spans. Defaults to fib-rpc-server / fib-rpc-client.',
      format: String,
      default: '',
      env: 'OTEL_SERVICE_NAME',
    },
    exporterEndpoint: {
      doc: 'OTLP endpoint, e.g. http://jaeger:4318 (http/protobuf) or http://jaeger:4317 (grpc). Unset: no export.',
      format: String,
      default: '',
      env: 'OTEL_EXPORTER_OTLP_ENDPOINT',
    },
    exporterProtocol: {
      doc: 'OTLP protocol: http/protobuf (default) or grpc.',
      format: ['', 'http/protobuf', 'http/json', 'grpc'],
      default: '',
      env: 'OTEL_EXPORTER_OTLP_PROTOCOL',
    },
    tracesSampler: {
      doc: 'Sampler: parentbased_always_on (default), always_on, always_off, traceidratio, parentbased_traceidratio.',
      format: String,
      default: '',
      env: 'OTEL_TRACES_SAMPLER',
    },
    tracesSamplerArg: {
      doc: 'Sampler argument, e.g. 0.1 for a ratio sampler.',
      format: String,
      default: '',
      env: 'OTEL_TRACES_SAMPLER_ARG',
    },
    sdkDisabled: {
      doc: 'true turns tracing off entirely (no SDK, no instrumentation, no cost).',
      format: ['', 'true', 'false'],
      default: '',
      env: 'OTEL_SDK_DISABLED',
    },
    resourceAttributes: {
      doc: 'Extra resource attributes, e.g. deployment.environment=prod,service.version=1.2.3.',
      format: String,
      default: '',
      env: 'OTEL_RESOURCE_ATTRIBUTES',
    },
  },
};

type Leaf<T> = T extends { default: infer D } ? (D extends string ? string : D) : never;
type Shape<T> = { [K in keyof T]: T[K] extends { default: unknown } ? Leaf<T[K]> : Shape<T[K]> };
export type Config = Shape<typeof configSchema>;

/** A start-up configuration error: its message names the env var and never a secret. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

interface SchemaLeaf {
  env: string;
  sensitive?: boolean;
}

function leaves(node: object, path: string[] = []): Map<string, SchemaLeaf> {
  const found = new Map<string, SchemaLeaf>();
  for (const [key, child] of Object.entries(node)) {
    if (child !== null && typeof child === 'object' && 'default' in child) {
      found.set([...path, key].join('.'), child as SchemaLeaf);
    } else if (child !== null && typeof child === 'object') {
      for (const [p, leaf] of leaves(child, [...path, key])) found.set(p, leaf);
    }
  }
  return found;
}

const schemaLeaves = leaves(configSchema);

/** Every env var the schema reads, for the chart test and the README table. */
export const configEnvVars: readonly string[] = [...schemaLeaves.values()].map((leaf) => leaf.env);

/** Rewrites convict's "rpc.timeoutMs: must be…" lines to name the env var users set. */
function explain(message: string): string {
  return message
    .split('\n')
    .map((line) => {
      const match = /^([\w.]+): (.*)$/.exec(line.trim());
      const leaf = match?.[1] ? schemaLeaves.get(match[1]) : undefined;
      if (!match || !leaf) return line;
      const detail = leaf.sensitive ? (match[2] ?? '').replace(/: value was .*$/, '') : match[2];
      return `${leaf.env} (${match[1]}): ${detail}`;
    })
    .join('\n');
}

/**
 * Loads env vars (and CONFIG_FILE when set), validates strictly, and returns a frozen
 * plain object. Throws ConfigError naming the offending env var.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const config = convict(configSchema, { env, args: [] });
  try {
    const file = config.get('configFile');
    if (file && !existsSync(file))
      throw new Error(`configFile: must be a readable file, ${JSON.stringify(file)} does not exist`);
    if (file) config.loadFile(file);
    config.validate({ allowed: 'strict' });
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${explain((err as Error).message)}`);
  }
  return Object.freeze(config.getProperties()) as Config;
}

/** The configuration as JSON with secrets replaced, safe to log. */
export function redactedConfig(config: Config): Record<string, unknown> {
  const copy = structuredClone(config) as unknown as Record<string, Record<string, unknown>>;
  const amqp = copy.amqp;
  if (amqp) amqp.url = parseBrokerUrls(String(amqp.url)).map(redactUrl).join(',');
  return copy;
}

/** amqp://user:secret@host → amqp://user:***@host; used in every log and error message. */
export function redactUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '<invalid url>';
  }
}
