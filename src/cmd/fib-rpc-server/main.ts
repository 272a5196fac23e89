import { shutdownTelemetry } from '../../telemetry/bootstrap.ts';
import { ConfigError, loadConfig, redactedConfig } from '../common/config.ts';
import { createLogger } from '../common/log.ts';
import { installShutdown, onFatalError } from '../common/shutdown.ts';
import { buildServer, type ServerApp } from './app.ts';
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

let app: ServerApp | undefined;
let exitCode = 0;
// Installed before anything is opened: start-up can wait for the broker for ever
// (AMQP_STARTUP_TIMEOUT_MS=0), and a SIGTERM or a fatal error meanwhile must end the
// process as it would later, not by node's defaults. Reverse order of opening: stop taking
// work and drain, then telemetry, then HTTP; what is not open yet is skipped.
const shutdown = installShutdown(
  log,
  config.server.drainTimeoutMs + 5000,
  [
    async () => {
      if (app === undefined) return;
      const inFlight = app.rpc.inFlight;
      const { drained, abandoned } = await app.rpc.stop();
      if (drained) log.info({ in_flight_at_signal: inFlight }, 'drained: every in-flight request was answered');
      else log.warn({ abandoned }, 'drain timed out: unfinished requests return to the queue');
    },
    () => shutdownTelemetry(),
    () => new Promise((resolve) => (app === undefined ? resolve(undefined) : app.http.close(resolve))),
  ],
  () => exitCode,
);
onFatalError(log, (reason) => {
  exitCode = 1;
  shutdown(reason);
});
log.debug({ config: redactedConfig(config) }, 'configuration');

try {
  app = await buildServer(config, log);
  log.info({ port: app.port }, 'health and metrics listening');
} catch (err) {
  // E.g. HTTP_PORT taken: one line that says so, then the same shutdown as ever.
  log.error({ err: (err as Error).message }, 'cannot start');
  exitCode = 1;
  shutdown('start-up failed');
}

if (app !== undefined && !shutdown.started) {
  try {
    await app.rpc.start();
  } catch (err) {
    // A shutdown under way stopped the wait for the broker itself: nothing failed.
    if (!shutdown.started) {
      const failure = startupFailure(err, config);
      log.error(failure.message);
      exitCode = failure.code;
      shutdown('start-up failed');
    }
  }
}
