/**
 * Properties that only show in a running cluster, pinned here on the render so that they
 * cannot regress unseen: the broker's Erlang cookie stays owner-only across re-creation, its
 * credentials outlive an uninstall together with its volume, one request wakes a server scaled
 * to zero, Jaeger's and the broker's in-memory and on-disk stores are bounded to fit their
 * limits, and a chart or app version bump leaves the broker's and Jaeger's pods alone.
 * (The same properties are exercised for real by the cluster e2e.)
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  CI_VALUES_DIR,
  ciValuesFiles,
  find,
  helmTemplateArgs,
  only,
  type RenderOptions,
  render,
  run,
  spec,
  tool,
} from './lib.ts';

const BROKER = 'fib-rpc-rabbitmq';
function renderError(options: RenderOptions): string {
  const result = run(tool('helm'), helmTemplateArgs(options));
  assert.notEqual(result.status, 0, `helm template accepted ${JSON.stringify(options)}`);
  return result.stderr;
}

// ---------- item 4: uninstall + reinstall with the volume kept ----------

describe('broker: credentials outlive an uninstall as long as the data volume does', () => {
  it('the generated Secret is kept on uninstall when the broker keeps its data on a PVC', () => {
    const secret = only(render(), 'Secret', BROKER);
    assert.equal(secret.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
  });

  it('nothing is kept when nothing remembers the password (no PVC, or an external broker)', () => {
    const ephemeral = only(render({ set: ['rabbitmq.persistence.enabled=false'] }), 'Secret', BROKER);
    assert.equal(ephemeral.metadata.annotations?.['helm.sh/resource-policy'], undefined);
    const external = only(render({ values: [join(CI_VALUES_DIR, 'external-broker-values.yaml')] }), 'Secret');
    assert.equal(external.metadata.annotations?.['helm.sh/resource-policy'], undefined);
  });
});

// ---------- item 5: scale-to-zero wakes for one request ----------

describe('autoscaling: one request wakes a server scaled to zero', () => {
  // KEDA activates when the metric is strictly greater than activationValue.
  const wakesOnOne = (activation: string | undefined): boolean => 1 > Number(activation);

  it('ci/scale-to-zero-values.yaml and every other scenario with minReplicaCount 0 activate on one message', () => {
    const scenarios = [
      { name: 'scale-to-zero', objects: render({ values: [join(CI_VALUES_DIR, 'scale-to-zero-values.yaml')] }) },
      ...ciValuesFiles().map((file) => ({ name: file, objects: render({ values: [file] }) })),
    ];
    let zero = 0;
    for (const { name, objects } of scenarios) {
      for (const so of find(objects, 'ScaledObject')) {
        const soSpec = spec<{ minReplicaCount: number; triggers: { metadata: Record<string, string> }[] }>(so);
        if (soSpec.minReplicaCount !== 0) continue;
        zero += 1;
        const activation = soSpec.triggers[0]?.metadata.activationValue;
        assert.ok(wakesOnOne(activation), `${name}: activationValue ${activation} needs more than one message`);
      }
    }
    assert.ok(zero > 0, 'no scenario scales to zero');
  });

  it('refuses a threshold that strands a lone request while scaled to zero', () => {
    assert.match(
      renderError({ set: ['autoscaling.minReplicas=0', 'autoscaling.keda.activationQueueLength=1'] }),
      /activationQueueLength/,
    );
  });
});
