import { FIB_METHOD, registerFib } from '../../fib/methods.ts';
import { RpcServer } from '../../rpc/server/rpc-server.ts';
import { shutdownTelemetry } from '../../telemetry/bootstrap.ts';
import { ConfigError, loadConfig, redactedConfig } from '../common/config.ts';
import { createLogger } from '../common/log.ts';
import { installShutdown } from '../common/shutdown.ts';
import { boundPort, startHealthServer } from './health.ts';
import { createServerMetrics } from './metrics.ts';
import { startupFailure } from './start-up.ts';

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`fib-rpc-server: ${err.message}\n`);
  process.exit(2);
}

const log = createLogger('fib-rpc-server', config.log.level);
log.debug({ config: redactedConfig(config) }, 'configuration');
const { registry, observer } = createServerMetrics();
const server = new RpcServer({
  url: config.amqp.url,
  heartbeatS: config.amqp.heartbeatS,
  connectTimeoutMs: config.amqp.connectTimeoutMs,
  startupTimeoutMs: config.amqp.startupTimeoutMs,
  tls: config.amqp.tls,
  queue: config.rpc.queue,
  queueType: config.rpc.queueType as 'quorum' | 'classic',
  deliveryLimit: config.rpc.deliveryLimit,
  dlqMaxLength: config.rpc.dlqMaxLength,
  dlqTtlMs: config.rpc.dlqTtlMs,
  prefetch: config.server.prefetch,
  maxRequestBytes: config.server.maxRequestBytes,
  drainTimeoutMs: config.server.drainTimeoutMs,
  defaultMethod: FIB_METHOD,
  log,
  observer,
});
registerFib(server, config.fib.maxN);

const http = await startHealthServer(config.http.port, { ready: () => server.ready }, registry);
log.info({ port: boundPort(http) }, 'health and metrics listening');

let exitCode = 0;
// Reverse order of opening: stop taking work and drain, then telemetry, then HTTP.
const shutdown = installShutdown(
  log,
  config.server.drainTimeoutMs + 5000,
  [
    async () => {
      const inFlight = server.inFlight;
      const { drained, abandoned } = await server.stop();
      if (drained) log.info({ in_flight_at_signal: inFlight }, 'drained: every in-flight request was answered');
      else log.warn({ abandoned }, 'drain timed out: unfinished requests return to the queue');
    },
    () => shutdownTelemetry(),
    () => new Promise((resolve) => http.close(resolve)),
  ],
  () => exitCode,
);

// Until the broker answers, /healthz says 200 and /readyz 503: waiting is not a reason to be restarted.
try {
  await server.start();
} catch (err) {
  const failure = startupFailure(err, config);
  log.error(failure.message);
  exitCode = failure.code;
  shutdown('start-up failed');
}

process.on('uncaughtException', (err) => {
  log.fatal({ err }, 'uncaught exception');
  exitCode = 1;
  shutdown('uncaughtException');
});
