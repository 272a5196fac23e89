import { rabbitmqctl } from './broker-control.ts';
import { waitFor } from './wait.ts';

/**
 * Resource alarms on the broker under test, raised by lowering its limits at run time
 * (rabbitmqctl; not persisted: a restart of the broker forgets them too). Each raise reads
 * the setting first, and clear() puts exactly that back, so tests call it from t.after,
 * failed or not.
 */
export type AlarmKind = 'memory' | 'disk';

/** One alarm's switch: the setting to restore read up front, since each rabbitmqctl can take seconds. */
export interface Alarm {
  kind: AlarmKind;
  /**
   * Lowers the limit; resolves once rabbitmqctl has, with when (ms since the epoch). The
   * broker raises the alarm as it takes the setting; what it blocks, the tests see for themselves.
   */
  raise(): Promise<number>;
  /** Restores the setting and waits until the broker reports the alarm gone; resolves with when. Idempotent. */
  clear(): Promise<number>;
}

const SETTING: Record<AlarmKind, { get: string; set: string; low: string[] }> = {
  // A watermark of 1 byte: the node always uses more.
  memory: {
    get: 'vm_memory_monitor:get_vm_memory_high_watermark().',
    set: 'set_vm_memory_high_watermark',
    low: ['absolute', '1'],
  },
  // A free-space limit of 1 PB: above what any disk here has free.
  disk: { get: 'rabbit_disk_monitor:get_disk_free_limit().', set: 'set_disk_free_limit', low: ['1000000000000000'] },
};

/** The arguments of `set_…` that give back a setting as `eval` prints it: 0.4, {absolute,"1GB"}, 50000000, {mem_relative,1.5}. */
export function settingArguments(printed: string): string[] {
  const text = printed.trim();
  const tuple = /^\{(\w+),"?([^"}]*)"?\}$/.exec(text);
  if (tuple) return [tuple[1] as string, tuple[2] as string];
  if (/^[\d.]+$/.test(text)) return [text];
  throw new Error(`cannot read the broker's setting back from ${JSON.stringify(printed)}`);
}

/** The resource alarms the broker reports now (rabbit_alarm:get_alarms()). */
export async function activeAlarms(): Promise<AlarmKind[]> {
  const printed = await rabbitmqctl('eval', 'rabbit_alarm:get_alarms().');
  return (['memory', 'disk'] as const).filter((kind) => printed.includes(`resource_limit,${kind},`));
}

async function waitForAlarm(kind: AlarmKind, on: boolean, timeoutMs: number): Promise<number> {
  await waitFor(
    async () => ((await activeAlarms()).includes(kind) === on ? true : undefined),
    timeoutMs,
    `the ${kind} alarm to ${on ? 'be raised' : 'clear'}`,
  );
  return Date.now();
}

/** Reads what `kind`'s setting is now, to put back; nothing is changed yet. */
export async function prepareAlarm(kind: AlarmKind, timeoutMs = 60_000): Promise<Alarm> {
  const setting = SETTING[kind];
  const restore = settingArguments(await rabbitmqctl('eval', setting.get));
  let cleared: Promise<number> | undefined;
  return {
    kind,
    async raise() {
      cleared = undefined;
      await rabbitmqctl(setting.set, ...setting.low);
      return Date.now();
    },
    clear() {
      cleared ??= (async () => {
        await rabbitmqctl(setting.set, ...restore);
        return waitForAlarm(kind, false, timeoutMs);
      })();
      return cleared;
    },
  };
}

/** Ready and unacknowledged messages of `queue`, as the broker counts them. */
export async function queueCounts(queue: string): Promise<{ ready: number; unacked: number }> {
  const printed = await rabbitmqctl('list_queues', '--silent', 'name', 'messages_ready', 'messages_unacknowledged');
  for (const line of printed.split('\n')) {
    const [name, ready, unacked] = line.trim().split(/\s+/);
    if (name === queue) return { ready: Number(ready), unacked: Number(unacked) };
  }
  throw new Error(`no queue ${queue} in list_queues:\n${printed}`);
}
