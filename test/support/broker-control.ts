import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BROKER_HOST, BROKER_PORT, rabbitmq4Env, STAND_IN } from './broker.ts';
import { waitFor } from './wait.ts';

/** Stopping, starting and asking the broker under test itself, for the scenarios that need it. */

const run = promisify(execFile);

/** True when the broker answers TCP on its AMQP port. */
export function brokerListening(port = BROKER_PORT, host = BROKER_HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

const RABBITMQ4_SCRIPT = fileURLToPath(new URL('../../scripts/rabbitmq4.sh', import.meta.url));

/** rabbitmqctl against the broker under test: with BROKER=rabbitmq4 or rabbitmq43, that node's own. */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const [command, argv]: [string, string[]] = STAND_IN
    ? ['bash', [RABBITMQ4_SCRIPT, 'ctl', ...args]]
    : ['rabbitmqctl', args];
  const { stdout } = await run(command, argv, { env: rabbitmq4Env(), timeout: 60_000 });
  return stdout;
}

/** Why this machine cannot stop and start the broker, or null when it can. */
export async function cannotControlBroker(): Promise<string | null> {
  if (!['127.0.0.1', 'localhost', '::1'].includes(BROKER_HOST)) return `AMQP_URL points at ${BROKER_HOST}`;
  try {
    await rabbitmqctl('status');
    return null;
  } catch (err) {
    return `rabbitmqctl does not work here: ${(err as Error).message.split('\n')[0]}`;
  }
}

/** Starts the RabbitMQ application if it is stopped; waits until AMQP answers. */
export async function ensureBrokerRunning(): Promise<void> {
  if (await brokerListening()) return;
  await rabbitmqctl('start_app').catch(() => {});
  await waitFor(async () => ((await brokerListening()) ? true : undefined), 120_000, 'the broker to come back');
}
