import assert from 'node:assert/strict';
import { workQueueArguments } from '@fib-rpc/rpc';
import type { Channel } from 'amqplib';
import type { BrokerAdmin } from './broker.ts';

/** What versions before the dead-letter queue's bounds declared it with. */
export const OLD_DLQ_ARGUMENTS = { 'x-queue-type': 'classic' };

/**
 * Declares `queue` as a classic-queue server declares its work queue, and nobody consumes it:
 * calls to it wait until they time out. With `deadLetterQueue`, also `<queue>.dlq` as earlier
 * versions declared it (its type and nothing else), so expired requests have somewhere to go.
 */
export async function declareWorkQueue(
  channel: Channel,
  queue: string,
  { deadLetterQueue = false }: { deadLetterQueue?: boolean } = {},
): Promise<string> {
  if (deadLetterQueue) await channel.assertQueue(`${queue}.dlq`, { durable: true, arguments: OLD_DLQ_ARGUMENTS });
  await channel.assertQueue(queue, {
    durable: true,
    arguments: workQueueArguments({ queue, queueType: 'classic', deliveryLimit: 5 }),
  });
  return queue;
}

/** Whether the broker accepts declaring `queue` with exactly these arguments (it refuses any other). */
export async function declaredWith(admin: BrokerAdmin, queue: string, args: Record<string, unknown>): Promise<boolean> {
  // The broker closes the channel when it refuses: one of its own.
  await using channel = await admin.openChannel();
  channel.on('error', () => {});
  try {
    await channel.assertQueue(queue, { durable: true, arguments: args });
    return true;
  } catch (err) {
    assert.match((err as Error).message, /PRECONDITION_FAILED - inequivalent arg/);
    return false;
  }
}
