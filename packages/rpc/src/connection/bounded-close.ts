import type { ChannelModel } from 'amqplib';
import { destroySocket } from './amqplib-patches.ts';

/**
 * How long closing a connection, or a channel on it, waits for the broker's CloseOk before
 * the socket is destroyed: a broker that does not answer (blocked by a resource alarm reads
 * nothing, Close included; or stuck) would otherwise hold the closing process for ever.
 */
export const CLOSE_TIMEOUT_MS = 1500;

/** Whether `work` settled (either way) within `ms`; when not, it is no longer waited for, not cancelled. */
export async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Closes `model` with the AMQP handshake, waiting up to `ms` for the broker, then destroys
 * its socket whatever happened: amqplib ends a closed connection's socket without waiting
 * for the broker to close its side, and a blocked broker, which amqplib closes without the
 * handshake, does not read that end either, so the half-closed socket would keep the
 * process alive. Says whether the broker answered in time.
 */
export async function closeWithin(model: ChannelModel, ms = CLOSE_TIMEOUT_MS): Promise<boolean> {
  const answered = await within(model.close(), ms);
  destroySocket(model, answered ? 'closed' : `no close-ok from the broker within ${ms} ms`);
  return answered;
}
