/**
 * The broker's topology: one node with a classic work queue, or a RabbitMQ cluster (3, 5, ...
 * nodes) formed by the image's own Kubernetes peer discovery, with a quorum work queue, a
 * PodDisruptionBudget, soft anti-affinity, a shared Erlang cookie and, for brokers up to 4.0
 * only, the API access their discovery needs.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  CI_VALUES_DIR,
  type Container,
  find,
  helmTemplateArgs,
  type K8sObject,
  only,
  podTemplate,
  render,
  run,
  spec,
  tool,
  validateObjects,
} from './lib.ts';

const CLUSTER_VALUES = join(CI_VALUES_DIR, 'broker-cluster-values.yaml');

/**
 * The init container's script run here, as the broker's non-root user would (uid 999 when
 * the test runs as root, which could overwrite anything), on a folder standing for the pod's
 * paths. Returns a function that runs it (the n-th time) and answers its stderr, after checking
 * the copy is the cookie and owner-only; "" is a clean run.
 */
function cookieCopy(script: string, t: TestContext): (n: number) => string {
  const root = mkdtempSync(join(tmpdir(), 'fib-rpc-cookie-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'erlang-cookie'));
  mkdirSync(join(root, 'home'));
  // The rest of the setup script (the enabled_plugins copy) runs too, from its own folders.
  mkdirSync(join(root, 'plugins-config'));
  mkdirSync(join(root, 'plugins'));
  writeFileSync(join(root, 'erlang-cookie/erlang-cookie'), 'COOKIE', { mode: 0o644 });
  writeFileSync(join(root, 'plugins-config/enabled_plugins'), '[rabbitmq_management].', { mode: 0o644 });
  chmodSync(root, 0o755);
  const asBroker = process.getuid?.() === 0;
  if (asBroker) {
    chownSync(join(root, 'home'), 999, 999);
    chownSync(join(root, 'plugins'), 999, 999);
  }
  const local = script
    .replaceAll('/erlang-cookie/', `${root}/erlang-cookie/`)
    .replaceAll('/home/rabbitmq/', `${root}/home/`)
    .replaceAll('/etc/rabbitmq/fib-rpc-config/', `${root}/plugins-config/`)
    .replaceAll('/etc/rabbitmq/fib-rpc/', `${root}/plugins/`);
  return () => {
    const [command, args] = asBroker
      ? ['setpriv', ['--reuid=999', '--regid=999', '--clear-groups', 'sh', '-c', local]]
      : ['sh', ['-c', local]];
    const result = spawnSync(command, args as string[], { encoding: 'utf8' });
    if (result.status !== 0) return result.stderr || `exit ${result.status}`;
    const cookie = join(root, 'home/.erlang.cookie');
    assert.equal(readFileSync(cookie, 'utf8'), 'COOKIE');
    assert.equal(statSync(cookie).mode & 0o777, 0o400);
    return '';
  };
}
const BROKER = 'fib-rpc-rabbitmq';
const HEADLESS = 'fib-rpc-rabbitmq-headless';
/** The RabbitMQ 4.0 image whose peer discovery still reads the Kubernetes API. */
const RABBITMQ_40 = 'rabbitmq.image.tag=4.0.5-management';

interface BrokerPodSpec {
  serviceAccountName: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds: number;
  initContainers?: (Container & { volumeMounts?: { name: string; mountPath: string }[] })[];
  containers: (Container & {
    volumeMounts?: { name: string; mountPath: string }[];
    lifecycle?: { preStop?: { exec?: { command: string[] } } };
  })[];
  volumes: { name: string; projected?: unknown; secret?: { secretName: string; items?: { key: string }[] } }[];
  affinity?: {
    podAntiAffinity?: {
      preferredDuringSchedulingIgnoredDuringExecution?: {
        podAffinityTerm: { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } };
      }[];
      requiredDuringSchedulingIgnoredDuringExecution?: unknown[];
    };
  };
}

interface Broker {
  statefulSet: { replicas: number; podManagementPolicy: string; updateStrategy?: { type: string } };
  pod: BrokerPodSpec;
  container: BrokerPodSpec['containers'][number];
  env: Map<string, string | undefined>;
  conf: string;
  plugins: string | undefined;
}

function broker(objects: readonly K8sObject[]): Broker {
  const statefulSet = only(objects, 'StatefulSet', BROKER);
  const pod = podTemplate(statefulSet)?.spec as unknown as BrokerPodSpec;
  const container = pod.containers.find((c) => c.name === 'rabbitmq');
  assert.ok(container, 'no rabbitmq container');
  const data = only(objects, 'ConfigMap', `${BROKER}-config`).data as Record<string, string>;
  return {
    statefulSet: spec(statefulSet),
    pod,
    container,
    env: new Map((container.env ?? []).map((e) => [e.name, e.value])),
    conf: data['10-fib-rpc.conf'] ?? '',
    plugins: data.enabled_plugins,
  };
}

function queueTypes(objects: readonly K8sObject[]): string[] {
  return ['fib-rpc-server', 'fib-rpc-client'].map(
    (name) => (only(objects, 'ConfigMap', name).data as Record<string, string>).RPC_QUEUE_TYPE ?? '',
  );
}

function secretKeys(objects: readonly K8sObject[]): string[] {
  return Object.keys(only(objects, 'Secret', BROKER).data as Record<string, string>).sort();
}

function refusal(set: readonly string[], values: readonly string[] = []): string {
  const result = run(tool('helm'), helmTemplateArgs({ set, values }));
  assert.notEqual(result.status, 0, `helm template accepted ${set.join(' ')}`);
  return result.stderr;
}

describe('one broker node (rabbitmq.replicas 1, the default)', () => {
  const objects = render();
  const b = broker(objects);

  it('runs a single node with a classic work queue: a quorum queue would replicate nothing there', () => {
    assert.equal(b.statefulSet.replicas, 1);
    assert.deepEqual(queueTypes(objects), ['classic', 'classic']);
  });

  it('renders no broker PodDisruptionBudget, no RBAC, no API token and no cluster formation', () => {
    assert.deepEqual(
      find(objects, 'PodDisruptionBudget').map((p) => p.metadata.name),
      ['fib-rpc-server'],
    );
    assert.deepEqual([...find(objects, 'Role'), ...find(objects, 'RoleBinding')], []);
    assert.equal(find(objects, 'ServiceAccount', BROKER).length, 0);
    assert.equal(b.pod.automountServiceAccountToken, false);
    assert.ok(!b.pod.volumes.some((v) => v.projected), 'a projected token volume on a single node');
    assert.doesNotMatch(b.conf, /cluster_formation/);
    assert.equal(b.plugins, '[rabbitmq_management,rabbitmq_prometheus].');
    assert.equal(b.env.get('RABBITMQ_NODENAME'), undefined);
    assert.ok(!b.pod.initContainers?.some((c) => c.volumeMounts?.some((m) => m.name === 'erlang-cookie')));
    assert.ok(!secretKeys(objects).includes('erlang-cookie'));
  });

  it('config.rpcQueueType overrides the topology', () => {
    assert.deepEqual(queueTypes(render({ set: ['config.rpcQueueType=quorum'] })), ['quorum', 'quorum']);
  });
});

describe('a broker cluster (rabbitmq.replicas 3)', () => {
  const objects = render({ values: [CLUSTER_VALUES] });
  const b = broker(objects);

  it('passes strict validation', () => {
    assert.deepEqual(validateObjects(objects), []);
  });

  it('runs three nodes started in parallel and updated one at a time, with a quorum work queue', () => {
    assert.equal(b.statefulSet.replicas, 3);
    assert.equal(b.statefulSet.podManagementPolicy, 'Parallel');
    assert.equal(b.statefulSet.updateStrategy?.type, 'RollingUpdate');
    assert.deepEqual(queueTypes(objects), ['quorum', 'quorum']);
  });

  it('names each node after its stable DNS name under the headless Service', () => {
    const headless = spec<{ clusterIP: string; publishNotReadyAddresses: boolean }>(only(objects, 'Service', HEADLESS));
    assert.equal(headless.clusterIP, 'None');
    assert.equal(headless.publishNotReadyAddresses, true);
    assert.equal(spec<{ serviceName: string }>(only(objects, 'StatefulSet', BROKER)).serviceName, HEADLESS);
    assert.equal(b.env.get('RABBITMQ_USE_LONGNAME'), 'true');
    // No cluster domain, as the RabbitMQ Cluster Operator names nodes: the pod's DNS search
    // path completes <pod>.<headless>.<namespace> under any domain.
    assert.equal(b.env.get('RABBITMQ_NODENAME'), `rabbit@$(POD_NAME).${HEADLESS}.fib-rpc`);
    const podName = b.container.env?.find((e) => e.name === 'POD_NAME') as
      | { valueFrom?: { fieldRef?: { fieldPath: string } } }
      | undefined;
    assert.equal(podName?.valueFrom?.fieldRef?.fieldPath, 'metadata.name');
  });

  it('forms the cluster with the Kubernetes peer discovery plugin, enabled by the chart', () => {
    assert.match(b.conf, /^cluster_formation\.peer_discovery_backend = k8s$/m);
    assert.match(b.plugins ?? '', /^\[[a-z_,]*\brabbitmq_peer_discovery_k8s\b[a-z_,]*\]\.$/);
    assert.match(b.plugins ?? '', /rabbitmq_management/);
    assert.match(b.plugins ?? '', /rabbitmq_prometheus/);
    assert.equal(b.env.get('RABBITMQ_ENABLED_PLUGINS_FILE'), '/etc/rabbitmq/fib-rpc/enabled_plugins');
    assert.match(b.conf, /^quorum_queue\.continuous_membership_reconciliation\.target_group_size = 3$/m);
  });

  it('shares one Erlang cookie from the Secret, copied owner-only before the broker starts', () => {
    assert.ok(secretKeys(objects).includes('erlang-cookie'));
    const cookie = (only(objects, 'Secret', BROKER).data as Record<string, string>)['erlang-cookie'] ?? '';
    assert.match(Buffer.from(cookie, 'base64').toString(), /^[A-Za-z0-9]{64}$/);
    const volume = b.pod.volumes.find((v) => v.secret?.items?.some((i) => i.key === 'erlang-cookie'));
    assert.equal(volume?.secret?.secretName, BROKER);
    const [init] = b.pod.initContainers ?? [];
    assert.ok(
      init?.volumeMounts?.some((m) => m.name === volume?.name),
      'the init container lacks the cookie',
    );
    assert.equal(b.env.get('HOME'), '/home/rabbitmq');
  });

  it('copies the cookie owner-only, and again over the copy a re-created sandbox keeps in its home', (t) => {
    const [init] = b.pod.initContainers ?? [];
    const script = init?.command?.at(-1) ?? '';
    assert.deepEqual(init?.command?.slice(0, 2), ['sh', '-c']);
    const copy = cookieCopy(script, t);
    assert.equal(copy(1), '', 'the first run');
    assert.equal(copy(2), '', 'the second run, over the 0400 copy of the first');
    // The same check catches the old cp-then-chmod: its second cp is refused.
    const old = cookieCopy(
      'cp /erlang-cookie/erlang-cookie /home/rabbitmq/.erlang.cookie && chmod 0400 /home/rabbitmq/.erlang.cookie',
      t,
    );
    assert.equal(old(1), '');
    assert.match(old(2), /Permission denied/);
  });

  it('has a PodDisruptionBudget of one broker and prefers one broker per Kubernetes node', () => {
    const pdb = spec<{ maxUnavailable: number; selector: { matchLabels: Record<string, string> } }>(
      only(objects, 'PodDisruptionBudget', BROKER),
    );
    assert.equal(pdb.maxUnavailable, 1);
    assert.equal(pdb.selector.matchLabels['app.kubernetes.io/name'], BROKER);
    const anti = b.pod.affinity?.podAntiAffinity;
    assert.equal(anti?.requiredDuringSchedulingIgnoredDuringExecution, undefined);
    const [term] = anti?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
    assert.equal(term?.podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
    assert.equal(term?.podAffinityTerm.labelSelector.matchLabels['app.kubernetes.io/name'], BROKER);
  });

  it('a stopping node first waits for every quorum queue to keep its majority, within its grace period', () => {
    const command = b.container.lifecycle?.preStop?.exec?.command.join(' ') ?? '';
    assert.match(command, /rabbitmq-upgrade await_online_quorum_plus_one -t 120/);
    assert.equal(b.pod.terminationGracePeriodSeconds, 180);
  });

  it('lets the nodes reach each other through the NetworkPolicy', () => {
    const policy = spec<{
      ingress: {
        from: { podSelector?: { matchLabels: Record<string, string> } }[];
        ports: { port: string | number }[];
      }[];
    }>(only(objects, 'NetworkPolicy', BROKER));
    const peers = policy.ingress.find((rule) =>
      rule.from.some((f) => f.podSelector?.matchLabels['app.kubernetes.io/name'] === BROKER),
    );
    assert.deepEqual(
      peers?.ports.map((p) => p.port),
      ['epmd', 'clustering', 35672],
    );
  });

  it('on the default (4.1+) image, the broker gets no Kubernetes API access: discovery needs none', () => {
    assert.deepEqual([...find(objects, 'Role'), ...find(objects, 'RoleBinding')], []);
    assert.equal(b.pod.automountServiceAccountToken, false);
    assert.ok(!b.pod.volumes.some((v) => v.projected));
    assert.doesNotMatch(b.conf, /cluster_formation\.k8s\./);
  });

  it("the e2e's 4.3.6 stand-in (another repository) takes the 4.1+ path too: the tag decides", () => {
    const standin = render({
      values: [CLUSTER_VALUES],
      set: ['rabbitmq.image.repository=localhost/fib-rpc/rabbitmq-standin', 'rabbitmq.image.tag=4.3.6-management'],
    });
    assert.deepEqual([...find(standin, 'Role'), ...find(standin, 'RoleBinding')], []);
    const s = broker(standin);
    assert.ok(!s.pod.volumes.some((v) => v.projected));
    assert.doesNotMatch(s.conf, /cluster_formation\.k8s\./);
    assert.equal(only(standin, 'StatefulSet', BROKER).metadata.annotations?.['fib-rpc.io/rabbitmq-version'], '4.3.6');
  });

  it('on a 4.0 image, a Role reading the headless endpoints, and the token in the broker container only', () => {
    const legacy = render({ values: [CLUSTER_VALUES], set: [RABBITMQ_40] });
    assert.deepEqual(validateObjects(legacy), []);
    const role = only(legacy, 'Role') as K8sObject & {
      rules: { resources: string[]; resourceNames?: string[]; verbs: string[] }[];
    };
    assert.deepEqual(
      role.rules.map((r) => [r.resources, r.resourceNames ?? [], r.verbs]),
      [
        [['endpoints'], [HEADLESS], ['get']],
        [['events'], [], ['create']],
      ],
    );
    const binding = only(legacy, 'RoleBinding') as K8sObject & {
      roleRef: { name: string };
      subjects: { name: string }[];
    };
    assert.equal(binding.roleRef.name, role.metadata.name);
    const l = broker(legacy);
    assert.deepEqual(
      binding.subjects.map((s) => s.name),
      [l.pod.serviceAccountName],
    );
    assert.equal(only(legacy, 'ServiceAccount', l.pod.serviceAccountName).metadata.name, BROKER);
    assert.equal(l.pod.automountServiceAccountToken, false);
    const token = l.pod.volumes.find((v) => v.projected);
    assert.ok(token, 'no projected token volume');
    assert.ok(
      l.container.volumeMounts?.some(
        (m) => m.name === token.name && m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount',
      ),
    );
    assert.ok(!l.pod.initContainers?.some((c) => c.volumeMounts?.some((m) => m.name === token.name)));
    assert.match(l.conf, new RegExp(`^cluster_formation\\.k8s\\.service_name = ${HEADLESS}$`, 'm'));
    assert.match(l.conf, /^cluster_formation\.k8s\.address_type = hostname$/m);
    // The suffix makes the node names of the pods' hostnames: the same names as the nodes'.
    assert.match(l.conf, new RegExp(`^cluster_formation\\.k8s\\.hostname_suffix = \\.${HEADLESS}\\.fib-rpc$`, 'm'));
    assert.match(l.conf, /^cluster_formation\.k8s\.host = kubernetes\.default\.svc$/m);
  });

  it('keeps the .svc.<domain> node names of a cluster made by chart 0.2 (its data folders are named after them)', () => {
    for (const set of [
      ['rabbitmq.clusterDomain=example.internal'],
      ['rabbitmq.upgrade.running.nodeDomain=.svc.example.internal', 'rabbitmq.upgrade.running.version=4.0.5'],
    ]) {
      const kept = broker(render({ values: [CLUSTER_VALUES], set }));
      assert.equal(
        kept.env.get('RABBITMQ_NODENAME'),
        `rabbit@$(POD_NAME).${HEADLESS}.fib-rpc.svc.example.internal`,
        set.join(' '),
      );
      const legacy = broker(render({ values: [CLUSTER_VALUES], set: [...set, RABBITMQ_40] }));
      assert.match(
        legacy.conf,
        new RegExp(
          `^cluster_formation\\.k8s\\.hostname_suffix = \\.${HEADLESS}\\.fib-rpc\\.svc\\.example\\.internal$`,
          'm',
        ),
      );
    }
  });

  it('copies enabled_plugins into a writable folder, so that rabbitmq-plugins enable works at run time', () => {
    for (const objects of [render(), render({ values: [CLUSTER_VALUES] })]) {
      const p = broker(objects);
      const file = p.env.get('RABBITMQ_ENABLED_PLUGINS_FILE') ?? '';
      assert.equal(file, '/etc/rabbitmq/fib-rpc/enabled_plugins');
      const mount = p.container.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`)) as
        | { name: string; readOnly?: boolean }
        | undefined;
      assert.ok(mount, 'nothing mounted where the plugins file is');
      assert.notEqual(mount.readOnly, true);
      const volume = p.pod.volumes.find((v) => v.name === mount.name) as { emptyDir?: unknown } | undefined;
      assert.ok(volume?.emptyDir, 'the plugins folder is not a pod-local writable volume');
      const setup = p.pod.initContainers?.find((c) => c.volumeMounts?.some((m) => m.name === mount.name));
      assert.ok(setup, 'no init container fills the plugins folder');
      assert.match(setup.command?.join(' ') ?? '', /cp \S*enabled_plugins \/etc\/rabbitmq\/fib-rpc\/enabled_plugins/);
    }
  });

  it('has no liveness probe, and a startup probe that outlasts the 300 s a restarted node waits for its peers', () => {
    /** Khepri's wait for a leader (Mnesia's for its tables: 10 x 30 s) on a node restarted after a full outage. */
    const PEER_WAIT_S = 300;
    for (const [objects, mustOutlast] of [
      [render(), 0],
      [render({ values: [CLUSTER_VALUES] }), PEER_WAIT_S],
    ] as const) {
      const container = broker(objects).container as {
        livenessProbe?: unknown;
        startupProbe?: { periodSeconds: number; failureThreshold: number };
      };
      assert.equal(container.livenessProbe, undefined);
      const probe = container.startupProbe;
      assert.ok(probe, 'no startup probe');
      const seconds = probe.periodSeconds * probe.failureThreshold;
      assert.ok(seconds >= 2 * mustOutlast && seconds >= 120, `the startup probe gives up after ${seconds} s`);
    }
  });

  it('config.rpcQueueType overrides the topology', () => {
    const objects = render({ values: [CLUSTER_VALUES], set: ['config.rpcQueueType=classic'] });
    assert.deepEqual(queueTypes(objects), ['classic', 'classic']);
  });
});

describe('topologies the chart refuses', () => {
  for (const replicas of [2, 4, 0]) {
    it(`rabbitmq.replicas=${replicas}: 1 or an odd number of at least 3`, () => {
      assert.match(
        refusal([`rabbitmq.replicas=${replicas}`]),
        /at '\/rabbitmq\/replicas': value must be one of 1, 3, 5, 7, 9/,
      );
    });
  }

  it('a cluster without persistent volumes', () => {
    assert.match(
      refusal(['rabbitmq.replicas=3', 'rabbitmq.persistence.enabled=false']),
      /rabbitmq\.replicas=3 needs rabbitmq\.persistence\.enabled=true/,
    );
  });
});

describe('an external broker says what it is', () => {
  const external = ['rabbitmq.enabled=false', 'autoscaling.keda.protocol=amqp'];

  it('without externalRabbitmq.queueType the render fails naming it', () => {
    assert.match(
      refusal([...external, 'externalRabbitmq.url=amqp://u:p@rabbit:5672/']),
      /rabbitmq\.enabled=false needs externalRabbitmq\.queueType: quorum for a RabbitMQ cluster of 3 or more nodes, classic for a single node/,
    );
  });

  it('an unknown queue type is refused by the schema', () => {
    assert.match(
      refusal([...external, 'externalRabbitmq.url=amqp://u:p@rabbit:5672/', 'externalRabbitmq.queueType=stream']),
      /\/externalRabbitmq\/queueType/,
    );
  });

  it('a comma-separated list of node URLs reaches the Secret as it is', () => {
    const url = 'amqp://u:p@rabbit-0.rabbit:5672/%2F,amqp://u:p@rabbit-1.rabbit:5672/%2F';
    const objects = render({
      set: [...external, `externalRabbitmq.url=${url.replaceAll(',', '\\,')}`, 'externalRabbitmq.queueType=quorum'],
    });
    for (const role of ['server', 'client']) {
      const data = only(objects, 'Secret', `fib-rpc-rabbitmq-${role}`).data as Record<string, string>;
      assert.equal(Buffer.from(data['amqp-url'] ?? '', 'base64').toString(), url);
    }
    assert.deepEqual(queueTypes(objects), ['quorum', 'quorum']);
  });

  it('a list with an entry that is not an AMQP URL is refused', () => {
    assert.match(
      refusal([
        ...external,
        'externalRabbitmq.url=amqp://u:p@rabbit-0:5672\\,http://rabbit-1:15672',
        'externalRabbitmq.queueType=quorum',
      ]),
      /\/externalRabbitmq\/url/,
    );
  });
});
