import type { Context } from '@opentelemetry/api';
import type { Channel, ConsumeMessage, Options } from 'amqplib';
import { replyIsMandatory, replyNeedsQuarantine, replyToProblem } from '../connection/reply-address.ts';
import { asRpcError, type RpcError } from '../errors.ts';
import { thrownMessage } from '../hooks.ts';
import type { Logger } from '../logger.ts';
import {
  encodeError,
  encodeResult,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_RESULT,
  replyOptions,
  toEnvelope,
} from '../protocol.ts';
import { untracedPublish } from '../spans.ts';
import type { Outcome } from './observer.ts';
import type { Reply } from './pipeline.ts';
import type { ReplyQuarantine } from './reply-quarantine.ts';

export type Settle = (method: string, outcome: Outcome, error?: RpcError<string>) => void;

/** One request on its way through the server, with what is read of it once. */
export interface Delivery {
  channel: Channel;
  msg: ConsumeMessage;
  /** seenBefore(msg): the handler's context and the reply quarantine both ask. */
  redelivered: boolean;
  settle: Settle;
  /** The request's server span as a context, once there is one that carries a trace: the reply carries it. */
  traceContext?: Context | undefined;
}

/**
 * The last step of a delivery: publishes its Reply to reply_to and only then acks, or
 * dead-letters a request nobody can be answered for, or sends the reply through the
 * ReplyQuarantine; and every ack, nack and publish on that path is guarded (see onChannel).
 */
export class Replier {
  readonly #log: Logger;
  /** Whether a channel is still the server's: a request from one that closed is redelivered elsewhere. */
  readonly #isCurrent: (channel: Channel) => boolean;
  readonly #openQuarantine: () => ReplyQuarantine;
  /** Opened on first use: where replies to redelivered requests go (see ReplyQuarantine). */
  #quarantine: ReplyQuarantine | undefined;

  constructor(log: Logger, isCurrent: (channel: Channel) => boolean, openQuarantine: () => ReplyQuarantine) {
    this.#log = log;
    this.#isCurrent = isCurrent;
    this.#openQuarantine = openQuarantine;
  }

  /** Publishes the reply and acks, or dead-letters a request nobody can be answered for. */
  send(delivery: Delivery, plainText: boolean, reply: Reply, method: string): void {
    const { channel, msg, settle } = delivery;
    const error = reply.kind === 'error' ? reply.error : undefined;
    const outcome: Outcome =
      error === undefined
        ? 'ok'
        : error.code === 'INVALID_REQUEST' || error.code === 'UNKNOWN_METHOD' || error.code === 'UNSUPPORTED_VERSION'
          ? 'invalid'
          : 'failed';
    if (!this.#isCurrent(channel)) {
      // The channel this came on is gone: the broker redelivers the request elsewhere.
      settle(method, outcome, error);
      return;
    }
    const { replyTo, correlationId } = msg.properties;
    const unanswerable =
      replyToProblem(replyTo) ??
      (typeof correlationId !== 'string' || correlationId === '' ? 'the request has no correlation_id' : null);
    if (unanswerable !== null) {
      // Nobody could receive or match a reply: keep the message visible in the dead-letter queue.
      this.onChannel('dead-letter', () => channel.nack(msg, false, false));
      this.#log.debug(
        { code: error?.code, reason: unanswerable },
        'dead-lettered a request nobody can be answered for',
      );
      settle(method, 'dead_lettered', error);
      return;
    }
    try {
      const body =
        reply.kind === 'result'
          ? encodeResult(reply.value, plainText)
          : encodeError(toEnvelope(reply.error), plainText);
      const { traceContext } = delivery;
      const options = replyOptions(
        msg,
        plainText,
        reply.kind === 'result' ? REPLY_TYPE_RESULT : REPLY_TYPE_ERROR,
        replyIsMandatory(replyTo),
        traceContext,
      );
      if (replyNeedsQuarantine(replyTo, delivery.redelivered)) {
        this.#replyInQuarantine(
          delivery,
          replyTo,
          body,
          options,
          () => settle(method, outcome, error),
          () => settle(method, 'dead_lettered', error),
        );
        return;
      }
      // The reply carries the server span's context (the client's instrumentation continues
      // it): published with tracing suppressed, so that the instrumentation adds no publish span.
      if (traceContext === undefined) channel.publish('', replyTo, body, options);
      else untracedPublish(traceContext, channel, '', replyTo, body, options);
    } catch (err) {
      if (!this.#isCurrent(channel)) {
        // The channel closed under us: the broker redelivers the request elsewhere.
        this.#log.warn({ err: thrownMessage(err) }, 'could not publish a reply: the channel is gone');
        settle(method, outcome, error);
        return;
      }
      // E.g. a header table too large to encode: the request cannot be answered. If the nack
      // fails too, the channel has closed (amqplib has not said so yet): it comes back.
      if (!this.onChannel('dead-letter', () => channel.nack(msg, false, false))) {
        settle(method, outcome, error);
        return;
      }
      this.#log.warn({ err: thrownMessage(err) }, 'could not publish a reply; dead-lettered the request');
      settle(method, 'dead_lettered', asRpcError(err));
      return;
    }
    this.onChannel('ack', () => channel.ack(msg));
    settle(method, outcome, error);
    this.#log.debug({ method, outcome, correlationId }, 'request settled');
  }

  #replyInQuarantine(
    { channel, msg }: Delivery,
    replyTo: string,
    body: Buffer,
    options: Options.Publish,
    answered: () => void,
    deadLettered: () => void,
  ): void {
    this.#quarantine ??= this.#openQuarantine();
    void this.#quarantine.publish(replyTo, body, options).then(
      (result) => {
        if (!this.#isCurrent(channel)) {
          // The request is back in the queue already; a duplicate reply is dropped by the caller.
          answered();
        } else if (result === 'confirmed') {
          this.onChannel('ack', () => channel.ack(msg));
          answered();
        } else if (result === 'refused') {
          this.onChannel('dead-letter', () => channel.nack(msg, false, false));
          this.#log.warn(
            { correlationId: msg.properties.correlationId },
            'the broker dropped the connection over this reply_to: dead-lettered the request',
          );
          deadLettered();
        } else {
          // The quarantine connection failed for another reason (or cannot be opened): reply the
          // ordinary way rather than requeue, which could spin if it stays unavailable.
          try {
            channel.publish('', replyTo, body, options);
          } catch {
            this.onChannel('dead-letter', () => channel.nack(msg, false, false));
            deadLettered();
            return;
          }
          this.onChannel('ack', () => channel.ack(msg));
          answered();
        }
      },
      (err: unknown) => {
        // Not expected (publish() resolves with a result, never rejects); logged, not left unhandled.
        this.#log.error({ err: thrownMessage(err) }, 'could not settle a quarantined reply');
        deadLettered();
      },
    );
  }

  /**
   * An ack, nack or publish on the reply path. One that throws is logged, not thrown: it
   * fails when the channel has closed under us (amqplib: "Channel closed"), and then the
   * broker redelivers every request that channel left unacked, so the redelivery takes over.
   * Returns whether it went out.
   */
  onChannel(what: string, operation: () => void): boolean {
    try {
      operation();
      return true;
    } catch (err) {
      this.#log.warn({ operation: what, err: thrownMessage(err) }, 'channel operation failed; left to redelivery');
      return false;
    }
  }

  /** Closes the quarantine's connection, if one was opened, once its replies are settled. */
  async close(): Promise<void> {
    await this.#quarantine?.close();
  }
}
