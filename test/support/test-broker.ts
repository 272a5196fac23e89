import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { RABBITMQ4_PORT, rabbitmq4Env, STAND_IN } from './broker.ts';

/**
 * The broker node of the suites that need more than a plain broker: a mutual-TLS listener
 * (the fault suite's TLS scenario) and rabbitmq_prometheus (the monitoring test). Never the
 * machine's broker, which the suites must leave as its owner set it up: a node of the tests'
 * own, scripts/test-broker.sh (a second node of the machine's rabbitmq-server on its own
 * ports), or with BROKER=rabbitmq4 or rabbitmq43 the stand-in node of scripts/rabbitmq4.sh, which
 * has both.
 */

const run = promisify(execFile);
const SCRIPT = fileURLToPath(
  new URL(STAND_IN ? '../../scripts/rabbitmq4.sh' : '../../scripts/test-broker.sh', import.meta.url),
);
/** Where the node's AMQP port comes from: the same variables the scripts read. */
const PORT = STAND_IN ? RABBITMQ4_PORT : Number(process.env.TEST_BROKER_PORT || 5675);

/** Why this machine cannot run the node, or null when it can. */
export function cannotRunTestBroker(): string | null {
  if (process.platform !== 'linux') return 'the test broker node runs on Linux only';
  if (STAND_IN) {
    return process.getuid?.() === 0 ? null : 'RabbitMQ 4 nodes need root (chroot, mount namespace)';
  }
  if (!existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server')) return 'no rabbitmq-server installed (make broker)';
  return null;
}

/** The scripts' variable that moves the node to other ports (a node of its own). */
const PORT_VARIABLE = STAND_IN ? 'RABBITMQ4_PORT' : 'TEST_BROKER_PORT';

async function script(port: number, ...args: string[]): Promise<string> {
  try {
    // A node's start is bounded by the script (120 s for the VM, then 20 s for AMQP).
    const env = rabbitmq4Env({ [PORT_VARIABLE]: String(port) });
    const { stdout } = await run('bash', [SCRIPT, ...args], { timeout: 600_000, env });
    return stdout;
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`${SCRIPT} ${args.join(' ')} failed: ${stderr?.trim() || (err as Error).message}`);
  }
}

export class TestBroker implements AsyncDisposable {
  /** amqp:// on the node's plain listener. */
  readonly url: string;
  /** The mutual-TLS listener (verify_peer, fail_if_no_peer_cert): AMQP port - 1. */
  readonly tlsPort: number;
  /** host:port of rabbitmq_prometheus: AMQP port + 10020. */
  readonly prometheus: string;
  /** http:// of the management API: AMQP port + 10000. */
  readonly management: string;
  /** The folder the TLS listener reads ca.pem, server.pem and server.key from. */
  readonly tlsDir: string;
  readonly #port: number;
  readonly #startedHere: boolean;

  private constructor(port: number, url: string, tlsDir: string, startedHere: boolean) {
    this.#port = port;
    this.url = url;
    this.tlsDir = tlsDir;
    this.tlsPort = port - 1;
    this.prometheus = `127.0.0.1:${port + 10020}`;
    this.management = `http://127.0.0.1:${port + 10000}`;
    this.#startedHere = startedHere;
  }

  /**
   * Starts the node unless it runs (a make target or another suite started it); stop() then
   * stops it only if it was started here, so a suite leaves things as it found them.
   */
  static async up(port = PORT): Promise<TestBroker> {
    const running = await script(port, 'url').then(
      () => true,
      () => false,
    );
    try {
      const url = (await script(port, 'up')).trim();
      const tlsDir = (await script(port, 'tls-dir')).trim();
      return new TestBroker(port, url, tlsDir, !running);
    } catch (err) {
      // The caller has no node to stop: do not leave behind what this start may have begun.
      if (!running) await script(port, 'down').catch(() => {});
      throw err;
    }
  }

  /** rabbitmqctl against the node. */
  ctl(...args: string[]): Promise<string> {
    return script(this.#port, 'ctl', ...args);
  }

  async stop(): Promise<void> {
    if (this.#startedHere) await script(this.#port, 'down');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
