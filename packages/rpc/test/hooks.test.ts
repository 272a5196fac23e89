import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { CLIENT_HOOKS, type ClientObserver } from '../src/client/observer.ts';
import { guardObserver } from '../src/hooks.ts';

const silent = pino({ level: 'silent' });
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('guarded observer hooks', () => {
  it('a hook that throws or rejects is counted and reported to hookFailed; the caller goes on', async () => {
    const reported: string[] = [];
    const observer: ClientObserver = {
      strayReply() {
        throw new Error('sync bug');
      },
      returned: (async () => {
        throw new Error('async bug');
      }) as () => void,
      hookFailed: (hook) => void reported.push(hook),
    };
    const guarded = guardObserver(observer, CLIENT_HOOKS, silent);
    assert.doesNotThrow(() => guarded.hooks.strayReply?.('late'));
    guarded.hooks.returned?.();
    await tick();
    assert.equal(guarded.failures(), 2);
    assert.deepEqual(reported, ['strayReply', 'returned']);
  });

  it('passes the arguments and the observer as `this`, and leaves absent hooks absent', () => {
    const seen: unknown[] = [];
    class Recorder implements ClientObserver {
      readonly name = 'recorder';
      connected(up: boolean, broker: string): void {
        seen.push(this.name, up, broker);
      }
    }
    const guarded = guardObserver<ClientObserver>(new Recorder(), CLIENT_HOOKS, silent);
    guarded.hooks.connected?.(true, 'amqp://a:5672');
    assert.deepEqual(seen, ['recorder', true, 'amqp://a:5672']);
    assert.equal(guarded.hooks.strayReply, undefined);
    assert.equal(guarded.failures(), 0);
  });

  it('a hookFailed that throws itself is logged, not reported again', () => {
    const observer: ClientObserver = {
      returned() {
        throw new Error('bug');
      },
      hookFailed() {
        throw new Error('bug in the bug report');
      },
    };
    const guarded = guardObserver(observer, CLIENT_HOOKS, silent);
    assert.doesNotThrow(() => guarded.hooks.returned?.());
    assert.equal(guarded.failures(), 1);
  });
});
