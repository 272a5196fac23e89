/**
 * NOTES.txt renders for every scenario and tells the user how to run the client, watch the
 * autoscaler and open Jaeger, and says plainly when autoscaling is inactive.
 *
 * `helm template` does not print NOTES.txt, and `helm install --dry-run` cannot pretend that
 * KEDA is installed; so the test renders the real NOTES.txt through a copy of the chart in
 * which it is wrapped in a ConfigMap.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CHART, CI_VALUES_DIR, helmTemplateArgs, parseManifests, run, tool } from './lib.ts';

let copy = '';

before(() => {
  copy = join(mkdtempSync(join(tmpdir(), 'fib-rpc-notes-')), 'fib-rpc');
  cpSync(CHART, copy, { recursive: true });
  const notes = readFileSync(join(CHART, 'templates/NOTES.txt'), 'utf8');
  writeFileSync(
    join(copy, 'templates/_notes-under-test.tpl'),
    `{{- define "notes-under-test" -}}\n${notes}\n{{- end }}\n`,
  );
  writeFileSync(
    join(copy, 'templates/notes-under-test.yaml'),
    'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-under-test\ndata:\n  notes: {{ include "notes-under-test" . | toJson }}\n',
  );
});

after(() => {
  if (copy) rmSync(join(copy, '..'), { recursive: true, force: true });
});

function notes(options: { values?: string[]; set?: string[]; apiVersions?: string[] } = {}): string {
  const args = helmTemplateArgs({ ...options, showOnly: 'templates/notes-under-test.yaml' });
  args[2] = copy;
  const result = run(tool('helm'), args);
  assert.equal(result.status, 0, result.stderr);
  const [configMap] = parseManifests(result.stdout);
  assert.ok(configMap, 'the notes ConfigMap did not render');
  return (configMap.data as { notes: string }).notes;
}

describe('NOTES.txt', () => {
  it('renders with KEDA: client Job, helm test, autoscaler watch, Jaeger port-forward', () => {
    const text = notes();
    assert.match(text, /kubectl -n fib-rpc create job "\$job" --from=cronjob\/fib-rpc-client/);
    assert.match(text, /kubectl -n fib-rpc wait --for=condition=complete "job\/\$job"/);
    assert.match(text, /kubectl -n fib-rpc run fib-rpc-client-once/);
    assert.match(text, /helm test fib-rpc -n fib-rpc/);
    assert.match(text, /KEDA scales fib-rpc-server between 1 and 10 replicas/);
    assert.match(text, /kubectl -n fib-rpc get hpa -w/);
    assert.match(text, /kubectl -n fib-rpc port-forward service\/fib-rpc-jaeger 16686:16686/);
    assert.doesNotMatch(text, /INACTIVE/);
  });

  it('waits for the broker and the server rollout before it creates a client Job', () => {
    for (const values of [[], [join(CI_VALUES_DIR, 'scale-to-zero-values.yaml')]]) {
      const text = notes({ values });
      const createJob = text.indexOf('create job');
      assert.ok(createJob > 0, 'no create job command');
      // A deployment scaled to zero is "rolled out" at once: only the broker's rollout says it can take the call.
      for (const wait of [
        'kubectl -n fib-rpc rollout status statefulset/fib-rpc-rabbitmq',
        'kubectl -n fib-rpc rollout status deployment/fib-rpc-server',
      ]) {
        const at = text.indexOf(wait);
        assert.ok(
          at >= 0 && at < createJob,
          `${values.join(' ') || 'defaults'}: "${wait}" does not precede create job`,
        );
      }
    }
    const external = notes({ values: [join(CI_VALUES_DIR, 'external-broker-values.yaml')] });
    assert.doesNotMatch(external, /statefulset\//, 'no bundled broker to wait for');
    assert.match(external, /rollout status deployment\/fib-rpc-server/);
  });

  it('says autoscaling is inactive when the cluster has no KEDA', () => {
    assert.match(notes({ apiVersions: [] }), /Autoscaling is INACTIVE: KEDA's API keda\.sh\/v1alpha1 was not found/);
  });

  it('says queue-depth autoscaling is inactive with KEDA off, and names the CPU HPA', () => {
    const text = notes({ values: [join(CI_VALUES_DIR, 'keda-off-values.yaml')] });
    assert.match(text, /Autoscaling on queue depth is INACTIVE \(autoscaling\.keda\.enabled=false\)/);
    assert.match(text, /kubectl -n fib-rpc get hpa fib-rpc-server -w/);
  });

  it('names the external collector, or says tracing is off', () => {
    assert.match(
      notes({ values: [join(CI_VALUES_DIR, 'otel-collector-values.yaml')] }),
      /exported over OTLP \(grpc\) to http:\/\/otel-collector/,
    );
    assert.match(notes({ values: [join(CI_VALUES_DIR, 'jaeger-off-values.yaml')] }), /Tracing is off/);
  });

  it('the real NOTES.txt renders through helm install --dry-run too', () => {
    const result = run(tool('helm'), ['install', 'fib-rpc', CHART, '--namespace', 'fib-rpc', '--dry-run=client']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /NOTES:[\s\S]*helm test fib-rpc/);
  });
});
