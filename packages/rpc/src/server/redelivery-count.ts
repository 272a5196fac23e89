import type { Channel, ConsumeMessage } from 'amqplib';

/**
 * A delivery limit for classic queues, which, unlike quorum queues, have none of their own.
 *
 * A request that kills every server that takes it (a poison message) comes back for ever on
 * a classic queue: the broker only flags it `redelivered`. So the server counts for it: a
 * redelivered request is published again at the tail of the work queue with this header
 * one higher, and the delivery acked; past the limit it is dead-lettered instead, like
 * quorum's x-delivery-limit does. Only redeliveries pay for this, never the ordinary path.
 * Publish and ack go on one channel, in that order: if the channel dies between them the
 * request is there twice (at least once, as everywhere), never lost.
 */
export const HEADER_REDELIVERIES = 'x-rpc-redeliveries';

/** How often this request has come back so far (0 for a fresh one). */
export function redeliveriesOf(msg: ConsumeMessage): number {
  const raw = msg.properties.headers?.[HEADER_REDELIVERIES];
  const count = typeof raw === 'number' ? raw : Number(raw);
  return Number.isInteger(count) && count > 0 ? count : 0;
}

/** Whether the request has been delivered before, by the broker's flag or by our count. */
export function seenBefore(msg: ConsumeMessage): boolean {
  return msg.fields.redelivered || redeliveriesOf(msg) > 0;
}

/**
 * Handles a redelivered request on a classic queue: publishes it again counted and acks
 * it ('requeued'), or dead-letters it past `limit` ('dead_lettered').
 */
export function recount(
  channel: Channel,
  queue: string,
  msg: ConsumeMessage,
  limit: number,
): 'requeued' | 'dead_lettered' {
  const count = redeliveriesOf(msg) + 1;
  if (count > limit) {
    channel.nack(msg, false, false);
    return 'dead_lettered';
  }
  const { headers, ...properties } = msg.properties;
  channel.publish('', queue, msg.content, {
    ...withoutUnset(properties),
    headers: { ...headers, [HEADER_REDELIVERIES]: count },
  });
  channel.ack(msg);
  return 'requeued';
}

/** amqplib reports absent properties as undefined; publishing them so would set them empty. */
function withoutUnset(properties: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(properties).filter(([, value]) => value !== undefined));
}
