/**
 * The broker over its lifetime: the pods enable all stable feature flags after they boot, the
 * StatefulSet records what it runs, and a change RabbitMQ does not support (a scale-down, a
 * downgrade, a series skipped, 4.3 with the flags not known to be on) fails the render before
 * anything changes, naming the supported path.
 *
 * helm template cannot lookup, so what runs is given as rabbitmq.upgrade.running, the same
 * values a render without cluster access (Argo CD) gives; helm install/upgrade read it from
 * the live StatefulSet (templates/rabbitmq/_lifecycle.tpl), which the e2e exercises.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CI_VALUES_DIR, helmTemplateArgs, only, podTemplate, render, run, tool } from './lib.ts';

const CLUSTER_VALUES = join(CI_VALUES_DIR, 'broker-cluster-values.yaml');
const BROKER = 'fib-rpc-rabbitmq';

interface Running {
  version: string;
  featureFlags?: 'enabled' | 'pending' | 'unknown';
  replicas?: number;
}

/** --set pairs: the broker image at `tag`, over a broker that runs `running`. */
function over(running: Running, tag: string, replicas?: number): string[] {
  const set = [`rabbitmq.image.tag=${tag}`, `rabbitmq.upgrade.running.version=${running.version}`];
  if (running.featureFlags) set.push(`rabbitmq.upgrade.running.featureFlags=${running.featureFlags}`);
  if (running.replicas) set.push(`rabbitmq.upgrade.running.replicas=${running.replicas}`);
  if (replicas) set.push(`rabbitmq.replicas=${replicas}`);
  return set;
}

/** The render's error, or null when it renders. */
function refusal(set: readonly string[], values: readonly string[] = []): string | null {
  const result = run(tool('helm'), helmTemplateArgs({ set, values }));
  if (result.status === 0) return null;
  return result.stderr;
}

describe('feature flags', () => {
  const statefulSet = only(render({ values: [CLUSTER_VALUES] }), 'StatefulSet', BROKER);
  const container = podTemplate(statefulSet)?.spec.containers.find((c) => c.name === 'rabbitmq') as
    | { command?: string[]; args?: string[] }
    | undefined;

  it("each broker pod runs the image's own entrypoint and server, and enables all stable feature flags once booted", () => {
    const script = container?.command?.join('\n') ?? '';
    assert.deepEqual(container?.command?.slice(0, 2), ['sh', '-c']);
    assert.equal(container?.args, undefined);
    assert.match(script, /^exec docker-entrypoint\.sh rabbitmq-server$/m);
    // Waits for the node, then asks it; retried (a cluster mid-upgrade cannot enable yet), bounded.
    assert.match(script, /rabbitmqctl -q await_startup --timeout \d+ .*&&\s+rabbitmqctl -q enable_feature_flag all/s);
    assert.match(script, /for _ in \$\(seq 1 \d+\); do/);
    assert.match(script, /\) &\n/);
  });

  it('the StatefulSet records the version it runs and that its pods enable the flags', () => {
    const annotations = statefulSet.metadata.annotations ?? {};
    assert.equal(annotations['fib-rpc.io/rabbitmq-version'], '4.2.9');
    assert.equal(annotations['fib-rpc.io/rabbitmq-feature-flags'], 'all');
    const tagless = only(render({ set: ['rabbitmq.image.tag=management'] }), 'StatefulSet', BROKER);
    assert.equal(tagless.metadata.annotations?.['fib-rpc.io/rabbitmq-version'], undefined);
  });
});

describe('upgrades RabbitMQ supports', () => {
  for (const [running, tag] of [
    [{ version: '4.2.9', featureFlags: 'enabled' }, '4.3.6-management'],
    [{ version: '4.0.5' }, '4.2.9-management'],
    [{ version: '4.0.5' }, '4.1.4-management'],
    [{ version: '3.13.7' }, '4.2.9-management'],
    [{ version: '4.2.8' }, '4.2.9-management'],
    [{ version: '4.2.9' }, '4.2.8-management'],
    [{ version: '4.3.6', featureFlags: 'enabled' }, '4.4.0-management'],
  ] as const) {
    it(`${running.version} (flags ${running.featureFlags ?? 'unknown'}) -> ${tag}`, () => {
      assert.equal(refusal(over(running, tag)), null);
    });
  }

  it('a first install checks nothing: nothing runs', () => {
    assert.equal(refusal(['rabbitmq.image.tag=4.3.6-management']), null);
  });
});

describe('upgrades the chart refuses before anything changes', () => {
  it('4.0 -> 4.3: 4.3 upgrades from 4.2.x only; the message names the path through 4.2.9', () => {
    const error = refusal(over({ version: '4.0.5', featureFlags: 'enabled' }, '4.3.6-management')) ?? '';
    assert.match(error, /RabbitMQ 4\.3 supports upgrades from 4\.2\.x only, and this broker runs 4\.0\.5/);
    assert.match(error, /rabbitmq\.image\.tag=4\.2\.9-management/);
    assert.match(error, /then to 4\.3/);
  });

  it('4.2 -> 4.3 with the flags of a chart that never enabled them: refused, naming how to enable them', () => {
    const error = refusal(over({ version: '4.2.9', featureFlags: 'unknown' }, '4.3.6-management')) ?? '';
    assert.match(error, /feature flags are all enabled, and this broker's are unknown/);
    assert.match(error, /rabbitmqctl enable_feature_flag all/);
    assert.match(error, /rabbitmq\.upgrade\.running\.featureFlags=enabled/);
  });

  it('4.2 -> 4.3 while the 4.2 rollout has not finished (its last pod has not enabled the flags yet)', () => {
    const error = refusal(over({ version: '4.2.9', featureFlags: 'pending' }, '4.3.6-management')) ?? '';
    assert.match(error, /its rollout has not finished/);
    assert.match(error, /kubectl rollout status statefulset fib-rpc-rabbitmq/);
  });

  it('a downgrade to an older series', () => {
    const error = refusal(over({ version: '4.2.9' }, '4.0.5-management')) ?? '';
    assert.match(error, /RabbitMQ does not support downgrades/);
    assert.match(error, /Keep a 4\.2\.x tag/);
  });

  it('3.12 -> 4.0 (4.0 upgrades from 3.13.x only)', () => {
    assert.match(refusal(over({ version: '3.12.14' }, '4.0.5-management')) ?? '', /upgrades from 3\.13\.x only/);
  });

  it('a later series than the chart knows, from one series back only: 4.2 -> 4.4', () => {
    assert.match(
      refusal(over({ version: '4.2.9', featureFlags: 'enabled' }, '4.4.0-management')) ?? '',
      /RabbitMQ 4\.4 supports upgrades from 4\.3\.x only/,
    );
  });
});

describe('scaling the broker', () => {
  it('a scale-down is refused with the procedure: drain, scale, forget_cluster_node, the claim', () => {
    const error =
      refusal(over({ version: '4.2.9', featureFlags: 'enabled', replicas: 5 }, '4.2.9-management', 3), [
        CLUSTER_VALUES,
      ]) ?? '';
    assert.match(error, /rabbitmq\.replicas=3 is a scale-down of the running 5-node broker/);
    assert.match(error, /rabbitmq-upgrade drain/);
    assert.match(
      error,
      /rabbitmqctl forget_cluster_node rabbit@fib-rpc-rabbitmq-<ordinal>\.fib-rpc-rabbitmq-headless\.fib-rpc /,
    );
    assert.match(error, /PersistentVolumeClaim/);
    assert.match(error, /docs\/deploy\.md, "Scaling the broker down"/);
  });

  it('a scale-up renders: new nodes join pod -0, and reconciliation grows the quorum queues', () => {
    assert.equal(
      refusal(over({ version: '4.2.9', featureFlags: 'enabled', replicas: 3 }, '4.2.9-management', 5), [
        CLUSTER_VALUES,
      ]),
      null,
    );
  });
});
