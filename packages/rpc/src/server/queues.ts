import type { Channel, ChannelModel } from 'amqplib';
import { QueueMismatchError } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** What the server's queues are declared from. */
export interface QueueSettings {
  queue: string;
  queueType: 'quorum' | 'classic';
  /** Quorum queues: deliveries of one message before it is dead-lettered (a poison message). */
  deliveryLimit: number;
  /** Most messages the dead-letter queue keeps (oldest dropped first); 0: no limit. */
  dlqMaxLength: number;
  /** How long the dead-letter queue keeps a message, in ms; 0: for ever. */
  dlqTtlMs: number;
}

/** The arguments the work queue is declared with; also used by tests and tooling. */
export function workQueueArguments(options: Pick<QueueSettings, 'queue' | 'queueType' | 'deliveryLimit'>) {
  return {
    'x-queue-type': options.queueType,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': deadLetterQueue(options.queue),
    ...(options.queueType === 'quorum' ? { 'x-delivery-limit': options.deliveryLimit } : {}),
  };
}

export function deadLetterQueue(queue: string): string {
  return `${queue}.dlq`;
}

/**
 * The arguments the dead-letter queue is declared with. Expired requests land there too, so
 * without a bound it grows for as long as the service runs. Past x-max-length RabbitMQ drops
 * the oldest (its default overflow, drop-head), which keeps the newest evidence. A limit of
 * 0 leaves the argument out: RabbitMQ would read 0 as "keep nothing" (a TTL of 0 drops a
 * message at once).
 */
export function deadLetterQueueArguments(options: Pick<QueueSettings, 'queueType' | 'dlqMaxLength' | 'dlqTtlMs'>) {
  return {
    'x-queue-type': options.queueType,
    ...(options.dlqMaxLength > 0 ? { 'x-max-length': options.dlqMaxLength } : {}),
    ...(options.dlqTtlMs > 0 ? { 'x-message-ttl': options.dlqTtlMs } : {}),
  };
}

/** What an operator calls the dead-letter queue's options in messages (a program's env vars, say); default: the option names. */
export interface DeadLetterOptionNames {
  dlqMaxLength?: string;
  dlqTtlMs?: string;
}

/**
 * What the server logs when `<queue>.dlq` exists with other arguments (`mismatch`), typically
 * made by a version that did not bound it: it is used as it is, and the message says how to
 * apply the configured bounds without stopping the service, a RabbitMQ policy (the exact
 * command) or deleting the queue so that the next server to start declares it bounded.
 * `vhost` is the broker URL's, for the commands' `-p`; `names` what the options are called.
 */
export function deadLetterQueueKept(
  mismatch: QueueMismatchError,
  options: Pick<QueueSettings, 'dlqMaxLength' | 'dlqTtlMs'>,
  vhost = '/',
  names: DeadLetterOptionNames = {},
): string {
  const dlq = mismatch.queue;
  const inVhost = vhost === '/' ? '' : ` -p ${shellWord(vhost)}`;
  const remove =
    `delete it (its messages are lost, and dead letters are dropped until it exists again), ` +
    `e.g. rabbitmqctl delete_queue${inVhost} ${shellWord(dlq)}, and restart the servers`;
  const bounds = [
    [names.dlqMaxLength ?? 'dlqMaxLength', 'max-length', options.dlqMaxLength],
    [names.dlqTtlMs ?? 'dlqTtlMs', 'message-ttl', options.dlqTtlMs],
  ].filter(([, , value]) => (value as number) > 0) as Array<[string, string, number]>;
  if (bounds.length === 0) {
    return `${mismatch.message}. The server uses it as it is. To have it declared as configured, ${remove}.`;
  }
  const settings = bounds.map(([setting, , value]) => `${setting} (${value})`).join(' and ');
  const definition = JSON.stringify(Object.fromEntries(bounds.map(([, key, value]) => [key, value])));
  const pattern = `^${dlq.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&')}$`;
  const policy =
    `rabbitmqctl set_policy${inVhost} --apply-to queues ${shellWord(`${dlq}-bounds`)} ` +
    `${shellQuote(pattern)} ${shellQuote(definition)}`;
  return (
    `${mismatch.message}. The server uses it as it is: ${settings} ${bounds.length > 1 ? 'are' : 'is'} not applied ` +
    `to it (a queue's arguments are fixed when it is made). To bound it without downtime, either apply ` +
    `${bounds.length > 1 ? 'them' : 'it'} as a policy (unless one already does; a queue follows only one policy, ` +
    `the one of highest priority): ${policy}; or ${remove}: the next one to start declares it bounded.`
  );
}

/** A word for a shell command line: as it is when it is plainly safe, else single-quoted. */
function shellWord(word: string): string {
  return /^[\w.,:@%+=/-]+$/.test(word) ? word : shellQuote(word);
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/** Declares a durable queue; a queue of that name with other arguments becomes a QueueMismatchError. */
export async function declare(channel: Channel, queue: string, args: Record<string, unknown>): Promise<void> {
  try {
    await channel.assertQueue(queue, { durable: true, arguments: args });
  } catch (err) {
    // 406 PRECONDITION_FAILED: the broker names the first argument that differs.
    if ((err as { code?: unknown }).code === 406) {
      throw new QueueMismatchError(queue, (err as Error).message, { cause: err });
    }
    throw err;
  }
}

/**
 * Declares `<queue>.dlq` on a channel of its own. When it exists with other arguments (one
 * made before the DLQ was bounded, say) it is used as it is, with a warning that says how
 * to bound it: refusing to start would stall a rolling upgrade on a queue that works. The
 * broker closes the channel of a refused declaration, so it must not be the server's work
 * channel. `vhost` is the broker URL's, for the commands the warning gives.
 */
export async function declareDeadLetterQueue(
  model: ChannelModel,
  settings: QueueSettings,
  vhost: string,
  log: Logger,
  names: DeadLetterOptionNames = {},
): Promise<void> {
  const dlq = deadLetterQueue(settings.queue);
  const channel = await model.createChannel();
  // The declaration's rejection carries the broker's reason; this channel serves nothing else.
  channel.on('error', (err: Error) => log.debug({ err: err.message }, 'dead-letter queue declaration refused'));
  try {
    await declare(channel, dlq, deadLetterQueueArguments(settings));
  } catch (err) {
    if (!(err instanceof QueueMismatchError)) {
      await channel.close().catch(() => {});
      throw err;
    }
    // That channel is closed now; a passive check on a new one makes sure the queue is there.
    const check = await model.createChannel();
    check.on('error', (e: Error) => log.debug({ err: e.message }, 'dead-letter queue check failed'));
    try {
      const { messageCount } = await check.checkQueue(dlq);
      log.warn({ queue: dlq, messages: messageCount }, deadLetterQueueKept(err, settings, vhost, names));
    } finally {
      await check.close().catch(() => {});
    }
    return;
  }
  await channel.close();
}
