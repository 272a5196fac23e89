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
  type RenderOptions,
  render,
  run,
  spec,
  tool,
} from './lib.ts';

function renderError(options: RenderOptions): string {
  const result = run(tool('helm'), helmTemplateArgs(options));
  assert.notEqual(result.status, 0, `helm template accepted ${JSON.stringify(options)}`);
  return result.stderr;
}

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
