import type { Socket } from 'node:net';
import type { ChannelModel } from 'amqplib';
import type { Logger } from '../logger.ts';

/**
 * The places where this project reaches into amqplib's internals, kept in one file:
 * the only one with casts to amqplib's private shape. Each patch checks the shape it needs
 * and, when an amqplib upgrade has changed it, says so in the log and leaves the connection
 * as amqplib made it (it still works, only without the patch's gain).
 * test/integration/amqplib-patches.test.ts fails on such an upgrade.
 *
 * Why not amqplib 2.3's own `recovery` option for reconnection: it reconnects to one URL
 * (no failover across a cluster's nodes), hands back a model whose channels it re-creates
 * behind our back (the RPC client must fail calls in flight at once on a loss, and the
 * server must re-declare its queues and consumer in a set order), and gives no hook per
 * underlying connection for the watchdog below. BrokerConnection keeps that job.
 */

/** amqplib's private connection state, as far as the patches touch it. */
interface Internals {
  connection?: {
    heartbeat?: number;
    stream?: Partial<Socket>;
    muxer?: { _readIncoming?: () => void };
  };
}

const internalsOf = (model: ChannelModel) => (model as unknown as Internals).connection;

/** Why the heartbeat watchdog cannot be applied to `model`, or null when it can. */
export function silenceWatchProblem(model: ChannelModel): string | null {
  const connection = internalsOf(model);
  if (connection === undefined) return 'ChannelModel.connection is missing';
  if (typeof connection.heartbeat !== 'number') return 'connection.heartbeat is not a number';
  if (typeof connection.stream?.bytesRead !== 'number') return 'connection.stream.bytesRead is not a number';
  if (typeof connection.stream.destroy !== 'function') return 'connection.stream.destroy is not a function';
  return null;
}

/** Why write coalescing cannot be applied to `model`, or null when it can. */
export function writeCoalescingProblem(model: ChannelModel): string | null {
  const connection = internalsOf(model);
  if (connection === undefined) return 'ChannelModel.connection is missing';
  if (typeof connection.stream?.cork !== 'function' || typeof connection.stream.uncork !== 'function') {
    return 'connection.stream has no cork/uncork';
  }
  if (typeof connection.muxer?._readIncoming !== 'function') return 'connection.muxer._readIncoming is not a function';
  return null;
}

/** Patches that could not be applied are reported once per process, not once per connection. */
const reported = new Set<string>();

/** Applies both patches to a freshly opened connection. */
export function patchAmqplib(model: ChannelModel, log: Logger): void {
  const silence = silenceWatchProblem(model);
  if (silence === null) watchSilence(model);
  else reportOnce(log, 'heartbeat watchdog', silence);
  const coalescing = writeCoalescingProblem(model);
  if (coalescing === null) coalesceWrites(model);
  else reportOnce(log, 'write coalescing', coalescing);
}

function reportOnce(log: Logger, patch: string, problem: string): void {
  if (reported.has(patch)) return;
  reported.add(patch);
  log.warn({ patch, problem }, 'amqplib internals changed: running without this patch');
}

/**
 * Notices a half-open connection (the broker or the path to it gone without a FIN or RST)
 * within two heartbeat intervals. RabbitMQ sends a heartbeat every half interval when it has
 * nothing else to send, so 1.5 intervals without a byte means three are missing; the socket
 * is then destroyed, which closes the connection like any network error. amqplib's own check
 * runs once per interval and gives up after two silent ones, i.e. after two to three
 * intervals; it stays as the backstop and keeps sending our heartbeats.
 */
function watchSilence(model: ChannelModel): void {
  const connection = internalsOf(model) as { heartbeat: number; stream: Socket };
  const heartbeatMs = connection.heartbeat * 1000;
  const socket = connection.stream;
  if (heartbeatMs <= 0) return;
  const periodMs = heartbeatMs / 8;
  const limitMs = heartbeatMs * 1.5;
  let bytes = socket.bytesRead;
  let seen = performance.now();
  let tick = seen;
  const timer = setInterval(() => {
    const now = performance.now();
    // A late tick means our event loop was blocked: bytes may be waiting unread, so no verdict.
    const late = now - tick > 2 * periodMs;
    tick = now;
    if (late || socket.bytesRead !== bytes) {
      bytes = socket.bytesRead;
      seen = now;
    } else if (now - seen >= limitMs) {
      clearInterval(timer);
      socket.destroy(
        new Error(`no data from the broker for ${Math.round(now - seen)} ms (heartbeat ${heartbeatMs / 1000} s)`),
      );
    }
  }, periodMs);
  timer.unref();
  model.once('close', () => clearInterval(timer));
}

/**
 * amqplib queues each frame batch (a publish, an ack) as its own chunk and its muxer, once
 * per event-loop turn, hands the chunks to the socket one write() at a time: with
 * TCP_NODELAY on, each is a write(2) and a TCP segment of its own, which under load is
 * most of the CPU time of the client, the server and the broker's reader. Corking the
 * socket for that one pass sends the turn's chunks in one writev(2): the same bytes in the
 * same order, sent at the same moment, in fewer segments. Nothing is held back past the
 * pass, so a lone call's latency is unchanged.
 */
function coalesceWrites(model: ChannelModel): void {
  const connection = internalsOf(model) as { stream: Socket; muxer: { _readIncoming: () => void } };
  const socket = connection.stream;
  const muxer = connection.muxer;
  const pass = muxer._readIncoming;
  muxer._readIncoming = function corked(this: unknown) {
    socket.cork();
    try {
      pass.call(this);
    } finally {
      socket.uncork();
    }
  };
}

/**
 * Drops the connection's socket at once, without the AMQP close handshake: what closing a
 * connection comes to when the broker does not answer, as a blocked broker never does (it
 * reads nothing, Close included). amqplib's own close then only end()s the socket, and a
 * half-closed socket the broker never reads stays open, and keeps the process alive. amqplib
 * sees the socket go and closes the connection and its channels as after any network error.
 * Returns false when amqplib's shape has changed and there was no socket to destroy.
 */
export function destroySocket(model: ChannelModel, why: string): boolean {
  const socket = internalsOf(model)?.stream;
  if (typeof socket?.destroy !== 'function') return false;
  if (socket.destroyed !== true) socket.destroy(new Error(why));
  return true;
}
