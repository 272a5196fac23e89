/**
 * The chart lints strictly and renders with its defaults and with every values file in
 * charts/fib-rpc/ci; every rendered object passes strict offline schema validation (unknown
 * fields fail), KEDA's ScaledObject and TriggerAuthentication included.
 */
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { describe, it } from 'node:test';
import { CHART, ciValuesFiles, KUBE_VERSION, render, run, tool, validateObjects } from './lib.ts';

describe('helm lint --strict', () => {
  it('passes with the default values', () => {
    const result = run(tool('helm'), ['lint', '--strict', CHART, '--kube-version', KUBE_VERSION]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });

  it('passes with every ci/*-values.yaml', () => {
    for (const file of ciValuesFiles()) {
      const result = run(tool('helm'), ['lint', '--strict', CHART, '--kube-version', KUBE_VERSION, '--values', file]);
      assert.equal(result.status, 0, `${basename(file)}:\n${result.stdout}${result.stderr}`);
    }
  });
});

describe('rendered objects pass strict schema validation', () => {
  it('there are ci values files for each scenario the issue names', () => {
    const names = ciValuesFiles().map((f) => basename(f));
    for (const expected of [
      'default-values.yaml',
      'external-broker-values.yaml',
      'keda-off-values.yaml',
      'scale-to-zero-values.yaml',
      'jaeger-off-values.yaml',
      'e2e-values.yaml',
    ]) {
      assert.ok(names.includes(expected), `missing charts/fib-rpc/ci/${expected}`);
    }
  });

  it('with the default values (as in a cluster with KEDA)', () => {
    const objects = render();
    assert.ok(objects.length > 10, `only ${objects.length} objects rendered`);
    assert.deepEqual(validateObjects(objects), []);
  });

  it('with the default values in a cluster without KEDA or the Prometheus Operator', () => {
    const objects = render({ apiVersions: [] });
    assert.ok(!objects.some((o) => o.apiVersion.startsWith('keda.sh/')), 'KEDA objects rendered without the KEDA API');
    assert.deepEqual(validateObjects(objects), []);
  });

  for (const file of ciValuesFiles()) {
    it(`with ci/${basename(file)}`, () => {
      const objects = render({ values: [file] });
      assert.deepEqual(validateObjects(objects), []);
    });
  }

  it('the validation itself rejects unknown fields, wrong types and unknown kinds', () => {
    const objects = render();
    const deployment = structuredClone(
      objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'fib-rpc-server'),
    );
    const scaledObject = structuredClone(objects.find((o) => o.kind === 'ScaledObject'));
    assert.ok(deployment && scaledObject);
    (deployment.spec as Record<string, unknown>).replica = 3;
    (scaledObject.spec as Record<string, unknown>).minReplicas = 1;
    (scaledObject.spec as Record<string, unknown>).pollingInterval = 'fast';
    const mistyped = structuredClone(deployment);
    (mistyped.spec as Record<string, unknown>).replica = undefined;
    (mistyped.spec as Record<string, unknown>).replicas = 'three';
    const unknownKind = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } };
    const problems = validateObjects([deployment, scaledObject, mistyped, unknownKind]).join('\n');
    assert.match(problems, /Deployment\/fib-rpc-server: unknown field "spec.replica"/);
    assert.match(problems, /ScaledObject\/fib-rpc-server: \/spec must NOT have additional properties.*minReplicas/);
    assert.match(problems, /ScaledObject\/fib-rpc-server: \/spec\/pollingInterval must be integer/);
    assert.match(problems, /Deployment\/fib-rpc-server: .*replicas.*(integer|int32)/);
    assert.match(problems, /Widget\/w: no schema known/);
  });
});
