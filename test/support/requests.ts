import { setTimeout as sleep } from 'node:timers/promises';
import { DIRECT_REPLY_TO } from '@fib-rpc/rpc';
import type { Channel, ConsumeMessage, Options } from 'amqplib';
import { type BrokerAdmin, uniqueQueue } from './broker.ts';
import { waitFor } from './wait.ts';

/**
 * Requests made by hand, behind the client's back: what a foreign or hostile client sends,
 * and the direct reply-to addresses such requests carry.
 */

/** Publishes a JSON request body as is, with `properties` (reply_to, correlation_id, ...). */
export function sendRequest(channel: Channel, queue: string, body: string, properties: Options.Publish = {}): boolean {
  return channel.sendToQueue(queue, Buffer.from(body), { contentType: 'application/json', ...properties });
}

/**
 * Starts consuming direct reply-to on `channel` (replies go to `onReply`) and returns the address
 * the broker gives it: live as long as the channel is open.
 */
export async function replyAddress(
  channel: Channel,
  onReply: (msg: ConsumeMessage) => void = () => {},
): Promise<string> {
  await channel.consume(DIRECT_REPLY_TO, (msg) => msg && onReply(msg), { noAck: true });
  // The broker writes the address into reply_to as it routes a message: send one to ourselves.
  const probe = uniqueQueue('probe');
  await channel.assertQueue(probe, { exclusive: true });
  channel.sendToQueue(probe, Buffer.from('x'), { replyTo: DIRECT_REPLY_TO });
  const msg = await waitFor(async () => (await channel.get(probe, { noAck: true })) || undefined, 5000, 'the probe');
  await channel.deleteQueue(probe);
  return String(msg.properties.replyTo);
}

/**
 * Consumes direct reply-to on `channel` and counts the replies per correlation id (a count above
 * one is a duplicate); `each` sees every reply as well. Requests published on this channel with
 * reply_to = DIRECT_REPLY_TO are answered here.
 */
export async function countReplies(
  channel: Channel,
  each: (msg: ConsumeMessage) => void = () => {},
): Promise<Map<string, number>> {
  const replies = new Map<string, number>();
  await channel.consume(
    DIRECT_REPLY_TO,
    (msg) => {
      if (!msg) return;
      const id = String(msg.properties.correlationId);
      replies.set(id, (replies.get(id) ?? 0) + 1);
      each(msg);
    },
    { noAck: true },
  );
  return replies;
}

/**
 * A direct reply-to address as well formed as `address` but whose pid names no node of this
 * broker (one digit of "reply@<digits>" changed): a reply to it makes RabbitMQ 3.10 close the
 * publishing connection with 541 INTERNAL_ERROR.
 */
export function craftedReplyTo(address: string): string {
  const [pid = '', key = ''] = address.slice(`${DIRECT_REPLY_TO}.`.length).split('.');
  const term = Buffer.from(pid, 'base64');
  const nodeStart = term[2] === 118 ? 5 : 4;
  term[nodeStart + 6] = term[nodeStart + 6] === 0x31 ? 0x32 : 0x31;
  return `${DIRECT_REPLY_TO}.${term.toString('base64')}.${key}`;
}

/** A crafted reply-to address made from one of our own (its channel closed at once). */
export async function poisonReplyTo(admin: BrokerAdmin): Promise<string> {
  await using channel = await admin.openChannel();
  return craftedReplyTo(await replyAddress(channel));
}

/** Sends a raw request, bypassing the client's checks, and returns the reply it gets. */
export async function rawCall(
  admin: BrokerAdmin,
  queue: string,
  body: string | Buffer,
  properties: Options.Publish,
): Promise<ConsumeMessage> {
  await using channel = await admin.openChannel();
  const reply = new Promise<ConsumeMessage>((resolve) => {
    void channel.consume(DIRECT_REPLY_TO, (msg) => msg && resolve(msg), { noAck: true });
  });
  await sleep(20);
  channel.sendToQueue(queue, Buffer.isBuffer(body) ? body : Buffer.from(body), {
    replyTo: DIRECT_REPLY_TO,
    correlationId: 'raw-1',
    ...properties,
  });
  return await reply;
}
