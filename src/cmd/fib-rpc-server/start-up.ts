import { QueueMismatchError } from '@fib-rpc/rpc';
import type { Config } from '../common/config.ts';
import { untrustedCertificateHint } from '../common/tls-hint.ts';

/** Why the server could not start, as one line that says what to do, and its exit code. */
export interface StartupFailure {
  message: string;
  /** 2: the settings (or the queues they name) must change; 6: no broker in time. */
  code: number;
}

/**
 * Turns a failed RpcServer.start() into the message an operator needs: the core knows
 * queues and arguments, this knows which setting declares each of them.
 */
export function startupFailure(err: unknown, config: Config): StartupFailure {
  if (err instanceof QueueMismatchError) return { message: queueMismatch(err), code: 2 };
  const message = (err instanceof Error ? err.message : String(err)) + untrustedCertificateHint(err);
  if (config.amqp.startupTimeoutMs > 0) {
    return {
      message:
        `${message}; gave up after AMQP_STARTUP_TIMEOUT_MS (amqp.startupTimeoutMs) = ${config.amqp.startupTimeoutMs} ms: ` +
        'check AMQP_URL and that the broker runs, or raise the limit (0 waits for ever)',
      code: 6,
    };
  }
  return { message: `cannot start: ${message}`, code: 6 };
}

/** The work queue's: a dead-letter queue with other arguments is used as it is (see RpcServer). */
function queueMismatch(err: QueueMismatchError): string {
  const keep = settingToKeep(err);
  return [
    `${err.message}.`,
    keep ? `To use it as it is, ${keep}; or` : 'No setting of this server declares it as it is:',
    `set RPC_QUEUE to another name, or delete the queue "${err.queue}" (its messages are lost),`,
    `e.g. rabbitmqctl delete_queue ${err.queue}, and start again.`,
  ].join(' ');
}

/** The setting that would declare the queue as the broker has it, if there is one. */
function settingToKeep(err: QueueMismatchError): string | undefined {
  const current = err.current;
  switch (err.argument) {
    case 'x-queue-type':
      // A queue declared without a type (the classic tutorial's) is a classic one.
      return `set RPC_QUEUE_TYPE=${current ?? 'classic'}`;
    case 'x-delivery-limit':
      return current === undefined ? undefined : `set RPC_DELIVERY_LIMIT=${current}`;
    default:
      return undefined;
  }
}
