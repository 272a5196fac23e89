import { EventEmitter } from 'node:events';
import type { Channel, Message, Options } from 'amqplib';

/** What a test channel was asked to publish. */
export interface Published {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

/**
 * Just enough of an amqplib Channel for the client's units: it records publishes and says
 * "buffer full" when told to, and emits 'drain' on demand, as a socket under back-pressure.
 */
export class FakeChannel extends EventEmitter {
  readonly published: Published[] = [];
  /** publish() returns false (the socket buffer is full) while this is set. */
  full = false;

  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): boolean {
    this.published.push({ exchange, routingKey, content, options });
    return !this.full;
  }

  drain(): void {
    this.full = false;
    this.emit('drain');
  }

  asChannel(): Channel {
    return this as unknown as Channel;
  }
}

/** A reply as the broker delivers it on direct reply-to. */
export function replyMessage(correlationId: string | undefined, body: unknown): Message {
  return {
    content: Buffer.from(JSON.stringify(body)),
    fields: {} as Message['fields'],
    properties: { correlationId, headers: {} } as unknown as Message['properties'],
  };
}
