/**
 * What the rendered chart must guarantee, checked on the defaults and on every
 * charts/fib-rpc/ci values file: env vars of the convict schema only, credentials only in
 * Secrets, one autoscaler at a time aimed at the right Deployment and queue, probes,
 * resources and restricted security everywhere, standard labels and narrow selectors.
 */
import assert from 'node:assert/strict';
import { basename, join } from 'node:path';
import { before, describe, it } from 'node:test';
import {
  CI_VALUES_DIR,
  type Container,
  ciValuesFiles,
  configEnvNames,
  find,
  type K8sObject,
  only,
  podTemplate,
  render,
  spec,
  validateObjects,
} from './lib.ts';

const SERVER = 'fib-rpc-server';
const STANDARD_LABELS = [
  'helm.sh/chart',
  'app.kubernetes.io/name',
  'app.kubernetes.io/instance',
  'app.kubernetes.io/version',
  'app.kubernetes.io/component',
  'app.kubernetes.io/managed-by',
];

/** Every scenario: defaults (with and without the optional APIs) and each ci values file. */
function scenarios(): { name: string; objects: K8sObject[] }[] {
  return [
    { name: 'defaults', objects: render() },
    { name: 'defaults, no KEDA API', objects: render({ apiVersions: [] }) },
    ...ciValuesFiles().map((file) => ({ name: basename(file), objects: render({ values: [file] }) })),
  ];
}

function containersOf(object: K8sObject): Container[] {
  const template = podTemplate(object);
  return template ? [...(template.spec.initContainers ?? []), ...template.spec.containers] : [];
}

function configMapData(objects: readonly K8sObject[], name: string): Record<string, string> {
  return (only(objects, 'ConfigMap', name).data ?? {}) as Record<string, string>;
}

/** Env var names a container gets: its env entries plus the keys of ConfigMaps it imports. */
function envNames(objects: readonly K8sObject[], container: Container): string[] {
  const names = (container.env ?? []).map((e) => e.name);
  for (const source of container.envFrom ?? []) {
    assert.equal(source.secretRef, undefined, `${container.name}: envFrom secretRef imports unknown keys`);
    if (source.configMapRef) names.push(...Object.keys(configMapData(objects, source.configMapRef.name)));
  }
  return names;
}

function serverDeployment(objects: readonly K8sObject[]): K8sObject {
  return only(objects, 'Deployment', SERVER);
}

function serverContainer(objects: readonly K8sObject[]): Container {
  const container = containersOf(serverDeployment(objects)).find((c) => c.name === 'server');
  assert.ok(container, 'no server container');
  return container;
}

function appPods(objects: readonly K8sObject[]): { object: K8sObject; container: Container }[] {
  return objects
    .filter((o) => ['Deployment', 'Job', 'CronJob', 'Pod'].includes(o.kind))
    .flatMap((object) => containersOf(object).map((container) => ({ object, container })))
    .filter(({ container }) => container.name === 'server' || container.name === 'client');
}

let all: { name: string; objects: K8sObject[] }[] = [];
let allowedEnv = new Set<string>();

before(async () => {
  all = scenarios();
  allowedEnv = await configEnvNames();
});

describe('configuration reaches the containers as the convict schema expects', () => {
  it('the schema lists the settings the chart relies on', () => {
    for (const name of ['AMQP_URL', 'RPC_QUEUE', 'PREFETCH', 'DRAIN_TIMEOUT_MS', 'HTTP_PORT', 'LOG_LEVEL']) {
      assert.ok(allowedEnv.has(name), `${name} missing from src/cmd/common/config.ts`);
    }
  });

  it('every env var set on server and client containers exists in src/cmd/common/config.ts (or is OTEL_*)', () => {
    for (const { name, objects } of all) {
      for (const { object, container } of appPods(objects)) {
        for (const env of envNames(objects, container)) {
          assert.ok(
            allowedEnv.has(env) || env.startsWith('OTEL_'),
            `${name}: ${object.kind}/${object.metadata.name} sets ${env}, which src/cmd/common/config.ts does not read`,
          );
        }
      }
    }
  });

  it('AMQP_URL comes only from a Secret (secretKeyRef), in every server and client container', () => {
    for (const { name, objects } of all) {
      for (const { object, container } of appPods(objects)) {
        const entries = (container.env ?? []).filter((e) => e.name === 'AMQP_URL');
        assert.equal(entries.length, 1, `${name}: ${object.metadata.name} has ${entries.length} AMQP_URL entries`);
        const [entry] = entries;
        assert.equal(entry?.value, undefined, `${name}: AMQP_URL inline`);
        const ref = entry?.valueFrom?.secretKeyRef;
        assert.ok(ref, `${name}: AMQP_URL of ${object.metadata.name} is not a secretKeyRef`);
      }
    }
  });

  it('the drain of DRAIN_TIMEOUT_MS fits in terminationGracePeriodSeconds', () => {
    for (const drain of [20, 45]) {
      const objects = render({ set: [`server.drainTimeoutSeconds=${drain}`] });
      const drainMs = Number(configMapData(objects, SERVER).DRAIN_TIMEOUT_MS);
      const grace = podTemplate(serverDeployment(objects))?.spec.terminationGracePeriodSeconds ?? 30;
      assert.equal(drainMs, drain * 1000);
      assert.ok(grace >= drainMs / 1000 + 5, `grace ${grace}s does not exceed the ${drainMs} ms drain by a margin`);
    }
  });
});

describe('credentials live in Secrets only', () => {
  const password = 'Zq7pW3nR8sT2vX9yB4cD6fG1hJ5kL0mN';

  it('a known password appears in the Secret and nowhere else (ConfigMaps, args, annotations, labels)', () => {
    const objects = render({
      set: [`rabbitmq.auth.password=${password}`],
      values: [join(CI_VALUES_DIR, 'full-values.yaml')],
    });
    for (const object of objects) {
      const text = JSON.stringify(object);
      const encoded = Buffer.from(password).toString('base64');
      if (object.kind === 'Secret') continue;
      assert.ok(!text.includes(password), `${object.kind}/${object.metadata.name} contains the password`);
      assert.ok(!text.includes(encoded), `${object.kind}/${object.metadata.name} contains the base64 password`);
    }
    // The administrator's password is in the administrator's Secret, not in the role users'.
    const admin = only(objects, 'Secret', 'fib-rpc-rabbitmq').data as Record<string, string>;
    assert.equal(Buffer.from(admin['rabbitmq-password'] ?? '', 'base64').toString(), password);
    assert.equal(admin['amqp-url'], undefined, 'no URL of the administrator for anyone to use');
    for (const role of ['server', 'client', 'keda']) {
      const secret = only(objects, 'Secret', `fib-rpc-rabbitmq-${role}`);
      assert.ok(!JSON.stringify(secret).includes(Buffer.from(password).toString('base64')), `the ${role} Secret`);
      const data = secret.data as Record<string, string>;
      const amqpUrl = Buffer.from(data['amqp-url'] ?? '', 'base64').toString();
      assert.match(
        amqpUrl,
        new RegExp(`^amqp://fib-rpc-${role}:[A-Za-z0-9]{32}@fib-rpc-rabbitmq\\.fib-rpc\\.svc:5672/%2F$`),
      );
    }
  });

  it('no ConfigMap value, container arg or annotation holds a URL with credentials', () => {
    const credentialUrl = /[a-z][a-z0-9+.-]*:\/\/[^/\s:@]+:[^/\s@]+@/i;
    for (const { name, objects } of all) {
      for (const object of objects) {
        const where = `${name}: ${object.kind}/${object.metadata.name}`;
        if (object.kind === 'ConfigMap') {
          for (const [key, value] of Object.entries((object.data ?? {}) as Record<string, string>)) {
            assert.doesNotMatch(value, credentialUrl, `${where} key ${key}`);
            assert.ok(!/PASS|SECRET|TOKEN|AMQP_URL/i.test(key), `${where} has a secret-looking key ${key}`);
          }
        }
        for (const value of Object.values(object.metadata.annotations ?? {})) {
          assert.doesNotMatch(value, credentialUrl, `${where} annotation`);
        }
        const template = podTemplate(object);
        for (const value of Object.values(template?.metadata?.annotations ?? {})) {
          assert.doesNotMatch(value, credentialUrl, `${where} pod annotation`);
        }
        for (const container of containersOf(object)) {
          for (const arg of [...(container.args ?? []), ...(container.command ?? [])]) {
            assert.doesNotMatch(arg, credentialUrl, `${where} container ${container.name} arg`);
          }
          for (const env of container.env ?? []) {
            if (env.value !== undefined) assert.doesNotMatch(env.value, credentialUrl, `${where} env ${env.name}`);
          }
        }
      }
    }
  });

  it('the generated broker user is never guest, and the password is 32 random alphanumerics', () => {
    const secret = only(render(), 'Secret', 'fib-rpc-rabbitmq');
    const data = secret.data as Record<string, string>;
    const decode = (key: string): string => Buffer.from(data[key] ?? '', 'base64').toString();
    assert.notEqual(decode('rabbitmq-username'), 'guest');
    assert.match(decode('rabbitmq-password'), /^[A-Za-z0-9]{32}$/);
    assert.notEqual(
      decode('rabbitmq-password'),
      Buffer.from(
        (only(render(), 'Secret', 'fib-rpc-rabbitmq').data as Record<string, string>)['rabbitmq-password'] ?? '',
        'base64',
      ).toString(),
      'two fresh renders produced the same password: it is not random',
    );
  });
});

describe('autoscaling: only the ScaledObject scales the server', () => {
  it('the ScaledObject targets the server Deployment and the queue the server consumes', () => {
    for (const queue of ['rpc_queue', 'fib.requests']) {
      const objects = render({ set: [`config.rpcQueue=${queue}`, 'autoscaling.queueLength=12'] });
      const scaledObject = only(objects, 'ScaledObject');
      const soSpec = spec<{
        scaleTargetRef: { name: string; kind?: string; apiVersion?: string };
        minReplicaCount: number;
        maxReplicaCount: number;
        triggers: { type: string; metadata: Record<string, string>; authenticationRef: { name: string } }[];
      }>(scaledObject);
      assert.equal(soSpec.scaleTargetRef.name, serverDeployment(objects).metadata.name);
      assert.equal(soSpec.scaleTargetRef.kind ?? 'Deployment', 'Deployment');
      assert.equal(soSpec.triggers.length, 1);
      const [trigger] = soSpec.triggers;
      assert.equal(trigger?.type, 'rabbitmq');
      assert.equal(trigger?.metadata.queueName, queue);
      assert.equal(trigger?.metadata.queueName, configMapData(objects, SERVER).RPC_QUEUE);
      assert.equal(trigger?.metadata.mode, 'QueueLength');
      assert.equal(trigger?.metadata.value, '12');
      assert.ok(trigger?.metadata.activationValue !== undefined, 'no activationValue');
      // http: the management API counts unacknowledged (prefetched) messages too.
      assert.equal(trigger?.metadata.protocol, 'http');
      const auth = only(objects, 'TriggerAuthentication', trigger?.authenticationRef.name);
      const refs = spec<{ secretTargetRef: { parameter: string; name: string; key: string }[] }>(auth).secretTargetRef;
      const host = refs.find((r) => r.parameter === 'host');
      assert.ok(host, 'TriggerAuthentication has no host');
      const secret = only(objects, 'Secret', host.name);
      const url = Buffer.from((secret.data as Record<string, string>)[host.key] ?? '', 'base64').toString();
      assert.match(url, /^http:\/\/fib-rpc-keda:[A-Za-z0-9]+@fib-rpc-rabbitmq\.fib-rpc\.svc:15672\//);
    }
  });

  it('no replicas field while KEDA or the HPA owns the Deployment; replicas when nothing does', () => {
    for (const { name, objects } of all) {
      const deployment = serverDeployment(objects);
      const replicas = spec<{ replicas?: number }>(deployment).replicas;
      const autoscaled = find(objects, 'ScaledObject').length + find(objects, 'HorizontalPodAutoscaler').length > 0;
      if (autoscaled) assert.equal(replicas, undefined, `${name}: replicas set beside an autoscaler`);
      else assert.ok(typeof replicas === 'number' && replicas >= 1, `${name}: no autoscaler and no replicas`);
    }
  });

  it('never an HPA beside the ScaledObject, even when both are asked for', () => {
    for (const { name, objects } of [
      ...all,
      { name: 'both', objects: render({ set: ['autoscaling.hpa.enabled=true'] }) },
    ]) {
      const scaled = find(objects, 'ScaledObject').length;
      const hpas = find(objects, 'HorizontalPodAutoscaler').length;
      assert.ok(scaled + hpas <= 1, `${name}: ${scaled} ScaledObject(s) and ${hpas} HPA(s)`);
    }
  });

  it('KEDA off: a CPU HPA when asked for, fixed replicas otherwise; KEDA missing from the cluster: no KEDA objects', () => {
    const hpa = render({ values: [join(CI_VALUES_DIR, 'keda-off-values.yaml')] });
    assert.equal(find(hpa, 'ScaledObject').length, 0);
    const hpaSpec = spec<{ scaleTargetRef: { name: string }; minReplicas: number }>(
      only(hpa, 'HorizontalPodAutoscaler'),
    );
    assert.equal(hpaSpec.scaleTargetRef.name, SERVER);
    const fixed = render({ apiVersions: [] });
    assert.equal(find(fixed, 'TriggerAuthentication').length, 0);
    assert.equal(spec<{ replicas?: number }>(serverDeployment(fixed)).replicas, 2);
  });

  it('scale-to-zero: minReplicaCount 0 with an activation threshold', () => {
    const objects = render({ values: [join(CI_VALUES_DIR, 'scale-to-zero-values.yaml')] });
    const soSpec = spec<{ minReplicaCount: number; triggers: { metadata: Record<string, string> }[] }>(
      only(objects, 'ScaledObject'),
    );
    assert.equal(soSpec.minReplicaCount, 0);
    assert.equal(soSpec.triggers[0]?.metadata.activationValue, '0');
  });

  it('a PodDisruptionBudget (maxUnavailable 1) only when more than one server can run', () => {
    const cases: [string[], boolean][] = [
      [[], true],
      [['autoscaling.maxReplicas=1', 'autoscaling.minReplicas=1'], false],
      [['autoscaling.keda.enabled=false', 'server.replicas=1'], false],
      [['autoscaling.keda.enabled=false', 'server.replicas=3'], true],
    ];
    for (const [set, expected] of cases) {
      const pdbs = find(render({ set }), 'PodDisruptionBudget');
      assert.equal(pdbs.length, expected ? 1 : 0, `with ${set.join(' ') || 'defaults'}`);
      if (expected) assert.equal(spec<{ maxUnavailable: number }>(pdbs[0] as K8sObject).maxUnavailable, 1);
    }
  });
});

describe('containers: probes, resources, restricted security', () => {
  it('every long-running container has readiness and, but the broker, liveness probes; the server uses /healthz and /readyz', () => {
    for (const { name, objects } of all) {
      for (const object of objects.filter((o) => ['Deployment', 'StatefulSet'].includes(o.kind))) {
        // Init containers run to completion before the pod starts: probes do not apply to them.
        for (const container of podTemplate(object)?.spec.containers ?? []) {
          const where = `${name}: ${object.metadata.name}/${container.name}`;
          // The broker has none, as with the RabbitMQ Cluster Operator: a node in maintenance
          // mode closes its listeners on purpose, and a liveness probe would restart it.
          if (container.name === 'rabbitmq') assert.equal(container.livenessProbe, undefined, where);
          else assert.ok(container.livenessProbe, `${where} has no livenessProbe`);
          assert.ok(container.readinessProbe, `${where} has no readinessProbe`);
        }
      }
      const server = serverContainer(objects);
      assert.equal(server.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(server.readinessProbe?.httpGet?.path, '/readyz');
    }
  });

  it('every container (Jobs and test pods included) requests CPU and memory and limits memory', () => {
    for (const { name, objects } of all) {
      for (const object of objects) {
        for (const container of containersOf(object)) {
          const where = `${name}: ${object.kind}/${object.metadata.name}/${container.name}`;
          assert.ok(container.resources?.requests?.cpu, `${where}: no CPU request`);
          assert.ok(container.resources?.requests?.memory, `${where}: no memory request`);
          assert.ok(container.resources?.limits?.memory, `${where}: no memory limit`);
        }
      }
    }
  });

  it('every pod meets the restricted Pod Security Standard with a read-only root filesystem', () => {
    for (const { name, objects } of all) {
      for (const object of objects) {
        const template = podTemplate(object);
        if (!template) continue;
        const pod = template.spec.securityContext;
        assert.equal(pod?.runAsNonRoot, true, `${name}: ${object.metadata.name} pod runAsNonRoot`);
        assert.ok((pod?.runAsUser ?? 0) > 0, `${name}: ${object.metadata.name} needs a numeric non-root runAsUser`);
        assert.equal(pod?.seccompProfile?.type, 'RuntimeDefault');
        assert.equal(
          template.spec.automountServiceAccountToken,
          false,
          `${name}: ${object.metadata.name} mounts a token`,
        );
        for (const container of containersOf(object)) {
          const where = `${name}: ${object.metadata.name}/${container.name}`;
          const sc = container.securityContext;
          assert.equal(sc?.allowPrivilegeEscalation, false, `${where} allowPrivilegeEscalation`);
          assert.equal(sc?.readOnlyRootFilesystem, true, `${where} readOnlyRootFilesystem`);
          assert.deepEqual(sc?.capabilities?.drop, ['ALL'], `${where} capabilities`);
          assert.equal(sc?.capabilities?.add, undefined, `${where} adds capabilities`);
          assert.notEqual(sc?.privileged, true, `${where} privileged`);
        }
      }
    }
  });

  it('images are pinned: no latest, no missing tag (or a digest, as a released chart has)', () => {
    for (const { name, objects } of all) {
      for (const object of objects) {
        for (const container of containersOf(object)) {
          assert.match(
            container.image,
            /^([^@]+:[A-Za-z0-9._-]+|[^@]+@sha256:[a-f0-9]{64})$/,
            `${name}: ${container.image}`,
          );
          assert.doesNotMatch(container.image, /:latest(@|$)/, `${name}: ${container.image}`);
        }
      }
    }
  });
});

describe('labels and selectors', () => {
  it('every object carries the standard labels', () => {
    for (const { name, objects } of all) {
      for (const object of objects) {
        for (const label of STANDARD_LABELS) {
          assert.ok(object.metadata.labels?.[label], `${name}: ${object.kind}/${object.metadata.name} lacks ${label}`);
        }
      }
    }
  });

  it('selectors use only app.kubernetes.io/name and /instance, and no two components share one', () => {
    for (const { name, objects } of all) {
      const selectors = new Map<string, string>();
      for (const object of objects) {
        const s = object.spec as
          | {
              selector?: Record<string, string> & { matchLabels?: Record<string, string> };
              podSelector?: { matchLabels?: Record<string, string> };
            }
          | undefined;
        let labels: Record<string, string> | undefined;
        if (object.kind === 'Service') labels = s?.selector;
        else if (['Deployment', 'StatefulSet', 'PodDisruptionBudget'].includes(object.kind))
          labels = s?.selector?.matchLabels;
        if (!labels) continue;
        const where = `${name}: ${object.kind}/${object.metadata.name}`;
        assert.deepEqual(Object.keys(labels).sort(), ['app.kubernetes.io/instance', 'app.kubernetes.io/name'], where);
        const template = podTemplate(object);
        for (const [key, value] of Object.entries(labels)) {
          if (template) assert.equal(template.metadata?.labels?.[key], value, `${where}: pod template lacks ${key}`);
        }
        if (['Deployment', 'StatefulSet'].includes(object.kind)) {
          const key = JSON.stringify(labels);
          assert.ok(!selectors.has(key), `${where} selects the pods of ${selectors.get(key)}`);
          selectors.set(key, object.metadata.name);
        }
      }
      const clientPods = [...find(objects, 'Job'), ...find(objects, 'CronJob'), ...find(objects, 'Pod')];
      const serverSelector = spec<{ selector: { matchLabels: Record<string, string> } }>(serverDeployment(objects))
        .selector.matchLabels;
      for (const pod of clientPods) {
        const labels = podTemplate(pod)?.metadata?.labels ?? {};
        const selected = Object.entries(serverSelector).every(([k, v]) => labels[k] === v);
        assert.ok(!selected, `${name}: the server selector matches client pod ${pod.metadata.name}`);
      }
    }
  });
});

describe('broker', () => {
  it('the bundled RabbitMQ is a StatefulSet on a pinned official 4.x management image, ready on TCP 5672', () => {
    const objects = render();
    const statefulSet = only(objects, 'StatefulSet');
    const container = containersOf(statefulSet).find((c) => c.name === 'rabbitmq');
    assert.match(container?.image ?? '', /^(docker\.io\/library\/)?rabbitmq:4\.\d+\.\d+-management$/);
    const port = container?.readinessProbe?.tcpSocket?.port;
    const resolved = typeof port === 'string' ? container?.ports?.find((p) => p.name === port)?.containerPort : port;
    assert.equal(resolved, 5672);
    const env = container?.env ?? [];
    for (const name of ['RABBITMQ_DEFAULT_USER', 'RABBITMQ_DEFAULT_PASS']) {
      assert.ok(env.find((e) => e.name === name)?.valueFrom?.secretKeyRef, `${name} not from a Secret`);
    }
    const service = only(objects, 'Service', 'fib-rpc-rabbitmq');
    const ports = spec<{ ports: { port: number }[] }>(service).ports.map((p) => p.port);
    assert.deepEqual(ports.sort(), [15672, 5672]);
  });

  it('rabbitmq.enabled=false with an external URL removes the broker and wires the URL everywhere', () => {
    const objects = render({ values: [join(CI_VALUES_DIR, 'external-broker-values.yaml')] });
    assert.equal(find(objects, 'StatefulSet').length, 0);
    assert.equal(find(objects, 'Service', 'fib-rpc-rabbitmq').length, 0);
    const decoded = (name: string, key: string): string =>
      Buffer.from((only(objects, 'Secret', name).data as Record<string, string>)[key] ?? '', 'base64').toString();
    assert.equal(
      decoded('fib-rpc-rabbitmq-server', 'amqp-url'),
      'amqps://fib-rpc-server:change-me@rabbitmq.messaging.svc:5671/%2F',
    );
    assert.equal(
      decoded('fib-rpc-rabbitmq-client', 'amqp-url'),
      'amqps://fib-rpc-client:change-me@rabbitmq.messaging.svc:5671/%2F',
    );
    assert.equal(find(objects, 'Secret', 'fib-rpc-rabbitmq').length, 0, 'no administrator for an external broker');
    for (const { object, container } of appPods(objects)) {
      const ref = container.env?.find((e) => e.name === 'AMQP_URL')?.valueFrom?.secretKeyRef;
      assert.deepEqual(ref, { name: `fib-rpc-rabbitmq-${container.name}`, key: 'amqp-url' }, object.metadata.name);
    }
    const host = spec<{ secretTargetRef: { name: string; key: string }[] }>(only(objects, 'TriggerAuthentication'))
      .secretTargetRef[0];
    assert.deepEqual(host && { name: host.name, key: host.key }, {
      name: 'fib-rpc-rabbitmq-keda',
      key: 'management-url',
    });
    assert.equal(
      decoded('fib-rpc-rabbitmq-keda', 'management-url'),
      'https://fib-rpc-keda:change-me@rabbitmq.messaging.svc:15671/',
    );
  });

  it('an existing Secret for the external broker is referenced by server, client and KEDA, and no Secret is rendered', () => {
    const objects = render({ values: [join(CI_VALUES_DIR, 'external-secret-values.yaml')] });
    assert.equal(find(objects, 'Secret').length, 0);
    for (const { container } of appPods(objects)) {
      const ref = container.env?.find((e) => e.name === 'AMQP_URL')?.valueFrom?.secretKeyRef;
      assert.deepEqual(ref, { name: 'production-rabbitmq-binding', key: 'uri' });
    }
    const auth = spec<{ secretTargetRef: { name: string; key: string }[] }>(only(objects, 'TriggerAuthentication'));
    assert.deepEqual(auth.secretTargetRef[0] && { ...auth.secretTargetRef[0] }, {
      parameter: 'host',
      name: 'production-rabbitmq-binding',
      key: 'uri',
    });
    const trigger = spec<{ triggers: { metadata: Record<string, string> }[] }>(only(objects, 'ScaledObject'))
      .triggers[0];
    assert.equal(trigger?.metadata.protocol, 'amqp');
  });

  it('the NetworkPolicy admits only server and client pods of the release to AMQP', () => {
    const objects = render({ values: [join(CI_VALUES_DIR, 'full-values.yaml')] });
    const policy = spec<{
      podSelector: { matchLabels: Record<string, string> };
      ingress: { from: { podSelector?: { matchLabels: Record<string, string> } }[]; ports: { port: string }[] }[];
    }>(only(objects, 'NetworkPolicy', 'fib-rpc-rabbitmq'));
    assert.equal(policy.podSelector.matchLabels['app.kubernetes.io/name'], 'fib-rpc-rabbitmq');
    const amqp = policy.ingress.find((rule) => rule.ports.some((p) => p.port === 'amqp'));
    const names = amqp?.from.map((peer) => peer.podSelector?.matchLabels['app.kubernetes.io/name']).sort();
    assert.deepEqual(names, ['fib-rpc-client', 'fib-rpc-server']);
  });

  type Rule = { from: { namespaceSelector?: { matchLabels: Record<string, string> } }[]; ports: { port: string }[] };
  const rulesFrom = (objects: K8sObject[], namespace: string): Rule[] =>
    spec<{ ingress: Rule[] }>(only(objects, 'NetworkPolicy', 'fib-rpc-rabbitmq')).ingress.filter((rule) =>
      rule.from.some((peer) => peer.namespaceSelector?.matchLabels['kubernetes.io/metadata.name'] === namespace),
    );

  it("the NetworkPolicy lets KEDA in on its trigger's port: management for http, amqp for amqp", () => {
    for (const [protocol, port] of [
      ['http', 'management'],
      ['amqp', 'amqp'],
    ]) {
      const objects = render({ set: ['networkPolicy.enabled=true', `autoscaling.keda.protocol=${protocol}`] });
      assert.deepEqual(
        rulesFrom(objects, 'keda').flatMap((rule) => rule.ports.map((p) => p.port)),
        [port],
      );
    }
  });

  it('networkPolicy.enabled also denies all other ingress to the release, admits Prometheus to the servers (annotations or ServiceMonitor) and only the release to Jaeger', () => {
    const objects = render({
      set: ['networkPolicy.enabled=true', 'server.metrics.serviceMonitor.enabled=true'],
    });
    assert.deepEqual(validateObjects(objects), []);
    type Policy = {
      podSelector: { matchLabels: Record<string, string> };
      policyTypes: string[];
      ingress?: {
        from: { podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: unknown }[];
        ports: { port: string }[];
      }[];
    };
    const deny = spec<Policy>(only(objects, 'NetworkPolicy', 'fib-rpc-default-deny'));
    assert.deepEqual(deny.podSelector.matchLabels, { 'app.kubernetes.io/instance': 'fib-rpc' });
    assert.deepEqual(deny.policyTypes, ['Ingress']);
    assert.equal(deny.ingress, undefined, 'no ingress rule: nothing admitted by it');
    const server = spec<Policy>(only(objects, 'NetworkPolicy', 'fib-rpc-server'));
    assert.deepEqual(
      server.ingress?.map((r) => [r.from.map((p) => JSON.stringify(p.namespaceSelector)), r.ports.map((p) => p.port)]),
      [[[JSON.stringify({ matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } })], ['http']]],
    );
    const jaeger = spec<Policy>(only(objects, 'NetworkPolicy', 'fib-rpc-jaeger'));
    assert.deepEqual(
      jaeger.ingress?.flatMap((r) => r.from.map((p) => p.podSelector?.matchLabels['app.kubernetes.io/name'])),
      ['fib-rpc-server', 'fib-rpc-client'],
    );
    assert.deepEqual(
      jaeger.ingress?.[0]?.ports.map((p) => p.port),
      ['otlp-grpc', 'otlp-http'],
    );
    // The default scrape is by annotation: the same rule without the ServiceMonitor.
    const annotated = spec<Policy>(
      only(render({ set: ['networkPolicy.enabled=true'] }), 'NetworkPolicy', 'fib-rpc-server'),
    );
    assert.deepEqual(annotated.ingress, server.ingress);
    const quiet = spec<Policy>(
      only(
        render({ set: ['networkPolicy.enabled=true', 'server.metrics.scrapeAnnotations=false'] }),
        'NetworkPolicy',
        'fib-rpc-server',
      ),
    );
    assert.equal(quiet.ingress, undefined, 'with no scrape configured nothing reaches the servers');
  });

  it('the NetworkPolicy lets Prometheus scrape the broker (15692) when the PodMonitor is on, not before', () => {
    assert.deepEqual(rulesFrom(render({ set: ['networkPolicy.enabled=true'] }), 'monitoring'), []);
    const objects = render({ set: ['networkPolicy.enabled=true', 'rabbitmq.metrics.podMonitor.enabled=true'] });
    assert.deepEqual(
      rulesFrom(objects, 'monitoring').flatMap((rule) => rule.ports.map((p) => p.port)),
      ['prometheus'],
    );
  });
});

describe('tracing', () => {
  it('Jaeger v2 on a pinned image: Service 4317/4318/16686, probes on 13133 /status', () => {
    const objects = render();
    const deployment = only(objects, 'Deployment', 'fib-rpc-jaeger');
    const [container] = containersOf(deployment);
    assert.match(container?.image ?? '', /jaegertracing\/jaeger:2\.\d+\.\d+$/);
    for (const probe of [container?.livenessProbe, container?.readinessProbe]) {
      assert.equal(probe?.httpGet?.path, '/status');
      const port = probe?.httpGet?.port;
      const resolved = typeof port === 'string' ? container?.ports?.find((p) => p.name === port)?.containerPort : port;
      assert.equal(resolved, 13133);
    }
    const ports = spec<{ ports: { port: number }[] }>(only(objects, 'Service', 'fib-rpc-jaeger')).ports.map(
      (p) => p.port,
    );
    assert.deepEqual(ports.sort(), [16686, 4317, 4318]);
  });

  it('server and client export OTLP to the bundled Jaeger, with service.version from appVersion', () => {
    const objects = render();
    for (const [name, service] of [
      [SERVER, 'fib-rpc-server'],
      ['fib-rpc-client', 'fib-rpc-client'],
    ] as const) {
      const data = configMapData(objects, name);
      assert.equal(data.OTEL_SERVICE_NAME, service);
      assert.equal(data.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://fib-rpc-jaeger:4318');
      assert.equal(data.OTEL_EXPORTER_OTLP_PROTOCOL, 'http/protobuf');
      // appVersion, as the chart's own version label carries it: the test follows make version.
      const appVersion = only(objects, 'ConfigMap', name).metadata.labels?.['app.kubernetes.io/version'] ?? '';
      assert.match(appVersion, /^\d+\.\d+\.\d+/);
      assert.ok(
        `,${data.OTEL_RESOURCE_ATTRIBUTES},`.includes(`,service.version=${appVersion},`),
        data.OTEL_RESOURCE_ATTRIBUTES,
      );
      assert.equal(data.OTEL_METRICS_EXPORTER, 'none');
      assert.equal(data.OTEL_LOGS_EXPORTER, 'none');
      assert.equal(data.OTEL_SDK_DISABLED, undefined);
    }
  });

  it('otel.endpoint replaces Jaeger; with neither, tracing is disabled', () => {
    const collector = configMapData(render({ values: [join(CI_VALUES_DIR, 'otel-collector-values.yaml')] }), SERVER);
    assert.equal(collector.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://otel-collector.observability.svc:4317');
    assert.equal(collector.OTEL_EXPORTER_OTLP_PROTOCOL, 'grpc');
    const off = render({ values: [join(CI_VALUES_DIR, 'jaeger-off-values.yaml')] });
    assert.equal(find(off, 'Deployment', 'fib-rpc-jaeger').length, 0);
    assert.equal(configMapData(off, SERVER).OTEL_SDK_DISABLED, 'true');
    assert.equal(configMapData(off, SERVER).OTEL_EXPORTER_OTLP_ENDPOINT, undefined);
  });
});

describe('client', () => {
  it('helm test runs one real RPC and checks the answer', () => {
    const objects = render();
    const pod = only(objects, 'Pod');
    assert.equal(pod.metadata.annotations?.['helm.sh/hook'], 'test');
    const [container] = containersOf(pod);
    assert.match(container?.image ?? '', /^fib-rpc-client:/);
    assert.deepEqual(container?.args, ['--json', '--expect', '832040', '30']);
    assert.equal(podTemplate(pod)?.spec.restartPolicy, 'Never');
    // helm uninstall never deletes hook resources: a passed test's pod is deleted by its hook
    // policy (Helm 4 reads --logs first), a failed one stays for its logs until the next run.
    assert.deepEqual(pod.metadata.annotations?.['helm.sh/hook-delete-policy']?.split(','), [
      'before-hook-creation',
      'hook-succeeded',
    ]);
  });

  it('a suspended, never-scheduled CronJob serves `kubectl create job --from=cronjob/...`', () => {
    const cronJob = only(render(), 'CronJob', 'fib-rpc-client');
    const cronSpec = spec<{ suspend: boolean; schedule: string }>(cronJob);
    assert.equal(cronSpec.suspend, true);
    assert.equal(cronSpec.schedule, '0 0 31 2 *');
    const [container] = containersOf(cronJob);
    assert.deepEqual(container?.args, ['--json', '30']);
    assert.equal(find(render({ set: ['client.jobTemplate.enabled=false'] }), 'CronJob').length, 0);
  });

  it('client.job.enabled renders a client Job with the given arguments; off by default', () => {
    assert.deepEqual(
      find(render(), 'Job').map((j) => j.metadata.name),
      ['fib-rpc-broker-users-1'],
    );
    const objects = render({ values: [join(CI_VALUES_DIR, 'full-values.yaml')] });
    const job = only(objects, 'Job', `fib-rpc-client-1`);
    const [container] = containersOf(job);
    assert.deepEqual(container?.args?.slice(0, 2), ['--load', '--json']);
    assert.equal(podTemplate(job)?.spec.restartPolicy, 'Never');
  });
});
