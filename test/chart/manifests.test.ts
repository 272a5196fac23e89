/**
 * k8s/ holds plain manifests generated from the chart. They must equal a fresh render
 * (no drift), every kustomization must build with `kubectl kustomize`, and everything in
 * k8s/ passes the same strict validation as the chart.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import {
  find,
  type K8sObject,
  only,
  parseManifests,
  podTemplate,
  ROOT,
  run,
  spec,
  tool,
  validateObjects,
} from './lib.ts';

const K8S = join(ROOT, 'k8s');
const GENERATED = ['base/fib-rpc.yaml', 'client-job.yaml'];

function kustomizations(): string[] {
  const dirs: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (entry === 'kustomization.yaml') dirs.push(dir);
    }
  };
  walk(K8S);
  return dirs.sort();
}

function kustomize(dir: string): K8sObject[] {
  const result = run(tool('kubectl'), ['kustomize', dir]);
  assert.equal(result.status, 0, `kubectl kustomize ${relative(ROOT, dir)}:\n${result.stderr}`);
  return parseManifests(result.stdout);
}

describe('k8s/ is generated from the chart', () => {
  it('the committed manifests equal a fresh render (run `make manifests` after changing the chart)', () => {
    const out = mkdtempSync(join(tmpdir(), 'fib-rpc-manifests-'));
    try {
      const result = run('bash', [join(ROOT, 'scripts/render-manifests.sh'), out], undefined);
      assert.equal(result.status, 0, result.stderr);
      for (const file of GENERATED) {
        const fresh = readFileSync(join(out, file), 'utf8');
        const committed = readFileSync(join(K8S, file), 'utf8');
        assert.ok(fresh === committed, `k8s/${file} drifted from the chart: run \`make manifests\` and commit`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('no Secret and no credentials are committed in k8s/', () => {
    const credentialUrl = /[a-z][a-z0-9+.-]*:\/\/[^/\s:@$]+:[^/\s@$]+@/i;
    for (const file of [...GENERATED, 'overlays/dev/kustomization.yaml', 'overlays/no-keda/kustomization.yaml']) {
      const text = readFileSync(join(K8S, file), 'utf8');
      assert.doesNotMatch(text, credentialUrl, file);
      assert.equal(find(parseManifests(text), 'Secret').length, 0, `${file} holds a Secret`);
    }
  });
});

describe('kustomize base and overlays', () => {
  const dirs = kustomizations();

  it('there is a base and at least one overlay', () => {
    const names = dirs.map((d) => relative(K8S, d));
    assert.ok(names.includes('base'));
    assert.ok(
      names.some((n) => n.startsWith('overlays/')),
      names.join(', '),
    );
  });

  for (const dir of dirs) {
    it(`${relative(K8S, dir)} builds and every object passes strict validation`, () => {
      const objects = kustomize(dir);
      assert.deepEqual(validateObjects(objects), []);
      for (const object of objects) {
        if (object.kind !== 'Namespace')
          assert.equal(object.metadata.namespace, 'fib-rpc', `${object.kind}/${object.metadata.name}`);
      }
    });
  }

  it('the Secret references match the keys k8s/create-secret.sh writes', () => {
    const script = readFileSync(join(K8S, 'create-secret.sh'), 'utf8');
    const objects = kustomize(join(K8S, 'base'));
    const refs: { name: string; key: string }[] = [];
    for (const object of objects) {
      for (const container of podTemplate(object)?.spec.containers ?? []) {
        for (const env of container.env ?? []) if (env.valueFrom?.secretKeyRef) refs.push(env.valueFrom.secretKeyRef);
      }
    }
    const auth = spec<{ secretTargetRef: { name: string; key: string }[] }>(only(objects, 'TriggerAuthentication'));
    refs.push(...auth.secretTargetRef);
    assert.ok(refs.length >= 4);
    const written = [
      'fib-rpc-credentials',
      ...['server', 'client', 'keda'].map((role) => `fib-rpc-credentials-${role}`),
    ];
    for (const ref of refs) {
      assert.ok(written.includes(ref.name), `create-secret.sh does not write the Secret ${ref.name}`);
      assert.ok(script.includes(`--from-literal=${ref.key}=`), `create-secret.sh does not write ${ref.key}`);
    }
    // Only the broker and the users Job read the administrator's Secret.
    const readers = objects
      .filter((o) => JSON.stringify(podTemplate(o)?.spec ?? {}).includes('"fib-rpc-credentials"'))
      .map((o) => `${o.kind}/${o.metadata.name}`);
    assert.deepEqual(readers.sort(), ['Job/fib-rpc-broker-users-1', 'StatefulSet/fib-rpc-rabbitmq']);
  });

  it('overlays/no-keda has no KEDA objects and fixed replicas', () => {
    const objects = kustomize(join(K8S, 'overlays/no-keda'));
    assert.equal(objects.filter((o) => o.apiVersion.startsWith('keda.sh/')).length, 0);
    assert.equal(spec<{ replicas?: number }>(only(objects, 'Deployment', 'fib-rpc-server')).replicas, 2);
  });

  it('overlays/dev retags the images and keeps the ScaledObject aimed at the server', () => {
    const objects = kustomize(join(K8S, 'overlays/dev'));
    const image = podTemplate(only(objects, 'Deployment', 'fib-rpc-server'))?.spec.containers[0]?.image;
    assert.equal(image, 'fib-rpc-server:0.2.0-dev');
    const so = spec<{ scaleTargetRef: { name: string }; maxReplicaCount: number }>(only(objects, 'ScaledObject'));
    assert.equal(so.scaleTargetRef.name, 'fib-rpc-server');
    assert.equal(so.maxReplicaCount, 4);
  });
});

describe('k8s/client-job.yaml', () => {
  it('is a valid client Job using the base ConfigMap and the Secret of the client role', () => {
    const objects = parseManifests(readFileSync(join(K8S, 'client-job.yaml'), 'utf8'));
    assert.deepEqual(validateObjects(objects), []);
    const job = only(objects, 'Job');
    const container = podTemplate(job)?.spec.containers[0];
    assert.deepEqual(container?.args, ['--json', '30']);
    assert.equal(container?.envFrom?.[0]?.configMapRef?.name, 'fib-rpc-client');
    assert.equal(
      container?.env?.find((e) => e.name === 'AMQP_URL')?.valueFrom?.secretKeyRef?.name,
      'fib-rpc-credentials-client',
    );
    const base = kustomize(join(K8S, 'base'));
    assert.equal(find(base, 'ConfigMap', 'fib-rpc-client').length, 1);
  });
});
