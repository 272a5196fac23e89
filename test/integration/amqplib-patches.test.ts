import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silenceWatchProblem, writeCoalescingProblem } from '../../packages/rpc/src/connection/amqplib-patches.ts';
import { openConnection } from '../../packages/rpc/src/connection/open-connection.ts';
import { AMQP_URL, silentLog } from '../support/broker.ts';

/**
 * The canary of packages/rpc/src/connection/amqplib-patches.ts: the patches reach into amqplib's
 * private connection state, so an amqplib upgrade that changes it must fail here, not
 * silently cost the heartbeat watchdog or the write coalescing in production.
 */
describe('amqplib internals the patches rely on', () => {
  it('are all there on a real connection of the amqplib in package.json', async (t) => {
    const { model } = await openConnection({
      url: AMQP_URL,
      heartbeatS: 5,
      connectTimeoutMs: 5000,
      connectionName: 'amqplib canary',
      log: silentLog,
    });
    t.after(() => model.close());
    assert.equal(silenceWatchProblem(model), null);
    assert.equal(writeCoalescingProblem(model), null);
  });
});
