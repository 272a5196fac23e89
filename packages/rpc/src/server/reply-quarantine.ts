import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { CLOSE_TIMEOUT_MS, closeWithin, within } from '../connection/bounded-close.ts';
import { type BrokerOptions, openConnection, reason } from '../connection/open-connection.ts';

/** What became of a reply published through the quarantine. */
export type QuarantineResult =
  /** The broker confirmed it. */
  | 'confirmed'
  /** The broker closed the connection with an internal error while this reply, alone, was in flight. */
  | 'refused'
  /** The connection could not be opened or went away for another reason: try again later. */
  | 'unknown';

/** AMQP reply code of the broker's "internal error" connection close. */
const INTERNAL_ERROR = 541;

/**
 * Publishes replies that might make the broker drop the publishing connection on a
 * connection of their own, one at a time, each confirmed before the next.
 *
 * RabbitMQ 3.10 closes a connection with 541 INTERNAL_ERROR when a reply is published to a
 * well-formed direct reply-to address whose pid names no node of the broker (4.0.5 confirms
 * and drops such a reply instead, so there the quarantine only costs a confirm): a hostile or
 * broken client can craft one. On the consuming connection that requeues every request in
 * flight with the culprit, and they all come back together, so the delivery limit
 * dead-letters the innocent ones along with it. The server therefore sends the replies of
 * redelivered requests here: the culprit is found on its second delivery (the connection
 * dies while its reply alone is in flight) and dead-lettered, and nothing else is touched.
 */
export class ReplyQuarantine {
  readonly #options: BrokerOptions;
  readonly #connect: typeof openConnection;
  #model: ChannelModel | undefined;
  #channel: ConfirmChannel | undefined;
  #opening: Promise<ConfirmChannel> | undefined;
  #lastCloseCode: number | undefined;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  /** `open` is amqplib's connect behind openConnection; tests pass their own. */
  constructor(options: BrokerOptions, open: typeof openConnection = openConnection) {
    this.#options = { ...options, connectionName: `${options.connectionName} (quarantined replies)` };
    this.#connect = open;
  }

  /** Publishes after every earlier reply has been settled. */
  publish(replyTo: string, body: Buffer, options: Options.Publish): Promise<QuarantineResult> {
    const next = this.#tail.then(() => this.#publishOne(replyTo, body, options));
    this.#tail = next.catch(() => {});
    return next;
  }

  async #publishOne(replyTo: string, body: Buffer, options: Options.Publish): Promise<QuarantineResult> {
    let channel: ConfirmChannel;
    try {
      channel = await this.#open();
    } catch (err) {
      this.#options.log.warn({ err: reason(err) }, 'cannot open the connection for quarantined replies');
      return 'unknown';
    }
    this.#lastCloseCode = undefined;
    const model = this.#model;
    return new Promise<QuarantineResult>((resolve) => {
      const done = (err: unknown) => {
        if (err == null) resolve('confirmed');
        else if (this.#model !== model || this.#channel === undefined) {
          // The connection went down with this reply alone in flight; the close code says why.
          resolve(this.#lastCloseCode === INTERNAL_ERROR ? 'refused' : 'unknown');
        } else resolve('unknown'); // a nack without a close: the broker could not take it now
      };
      try {
        channel.publish('', replyTo, body, options, (err) => {
          // The close event may come after the callback: let it land first.
          setImmediate(() => done(err));
        });
      } catch (err) {
        resolve('unknown');
        this.#options.log.warn({ err: reason(err) }, 'could not publish a quarantined reply');
      }
    });
  }

  #open(): Promise<ConfirmChannel> {
    if (this.#channel) return Promise.resolve(this.#channel);
    if (this.#closed) return Promise.reject(new Error('closed'));
    this.#opening ??= (async () => {
      const { model } = await this.#connect(this.#options);
      model.on('error', () => {});
      model.once('close', (err?: Error & { code?: number }) => {
        this.#lastCloseCode = err?.code;
        if (this.#model === model) {
          this.#model = undefined;
          this.#channel = undefined;
        }
      });
      const channel = await model.createConfirmChannel();
      channel.on('error', () => {});
      this.#model = model;
      this.#channel = channel;
      return channel;
    })().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  /** Bounded: a blocked broker confirms nothing and never answers the close. */
  async close(): Promise<void> {
    this.#closed = true;
    await within(this.#tail, CLOSE_TIMEOUT_MS);
    const model = this.#model;
    this.#model = undefined;
    this.#channel = undefined;
    if (model !== undefined) await closeWithin(model);
  }
}
