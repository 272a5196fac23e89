import { shutdownTelemetry } from '../../telemetry/bootstrap.ts';
import { ConfigError, loadConfig, redactedConfig } from '../common/config.ts';
import { createLogger } from '../common/log.ts';
import { installShutdown } from '../common/shutdown.ts';
import { buildServer } from './app.ts';
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
const app = await buildServer(config, log);
log.info({ port: app.port }, 'health and metrics listening');

let exitCode = 0;
// Reverse order of opening: stop taking work and drain, then telemetry, then HTTP.
const shutdown = installShutdown(
  log,
  config.server.drainTimeoutMs + 5000,
  [
    async () => {
      const inFlight = app.rpc.inFlight;
      const { drained, abandoned } = await app.rpc.stop();
      if (drained) log.info({ in_flight_at_signal: inFlight }, 'drained: every in-flight request was answered');
      else log.warn({ abandoned }, 'drain timed out: unfinished requests return to the queue');
    },
    () => shutdownTelemetry(),
    () => new Promise((resolve) => app.http.close(resolve)),
  ],
  () => exitCode,
);

try {
  await app.rpc.start();
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
