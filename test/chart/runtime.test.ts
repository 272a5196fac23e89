/**
 * Properties that only show in a running cluster, pinned here on the render so that they
 * cannot regress unseen: the broker's Erlang cookie stays owner-only across re-creation, its
 * credentials outlive an uninstall together with its volume, one request wakes a server scaled
 * to zero, Jaeger's and the broker's in-memory and on-disk stores are bounded to fit their
 * limits, and a chart or app version bump leaves the broker's and Jaeger's pods alone.
 * (The same properties are exercised for real by the cluster e2e.)
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse } from 'yaml';
import {
  CHART,
  CI_VALUES_DIR,
  ciValuesFiles,
  find,
  helmTemplateArgs,
  type K8sObject,
  only,
  parseManifests,
  podTemplate,
  type RenderOptions,
  render,
  run,
  spec,
  tool,
} from './lib.ts';

const BROKER = 'fib-rpc-rabbitmq';
const JAEGER = 'fib-rpc-jaeger';
const SERVER = 'fib-rpc-server';

interface Volume {
  name: string;
  emptyDir?: Record<string, unknown>;
  configMap?: { name: string };
  persistentVolumeClaim?: { claimName: string };
}
interface Mount {
  name: string;
  mountPath: string;
  subPath?: string;
}
interface FullPodSpec {
  securityContext?: { fsGroup?: number; fsGroupChangePolicy?: string };
  volumes?: Volume[];
  containers: {
    name: string;
    args?: string[];
    env?: { name: string; value?: string }[];
    volumeMounts?: Mount[];
    resources?: { limits?: Record<string, string> };
  }[];
}

function podSpec(object: K8sObject): FullPodSpec {
  const template = podTemplate(object);
  assert.ok(template, `${object.kind}/${object.metadata.name} has no pod template`);
  return template.spec as unknown as FullPodSpec;
}

function renderError(options: RenderOptions): string {
  const result = run(tool('helm'), helmTemplateArgs(options));
  assert.notEqual(result.status, 0, `helm template accepted ${JSON.stringify(options)}`);
  return result.stderr;
}

/** Kubernetes memory quantity in bytes (the forms values.yaml uses). */
function bytes(quantity: string): number {
  const match = /^([0-9.]+)(Ki|Mi|Gi|Ti|K|M|G|T)?$/.exec(quantity);
  assert.ok(match, `not a quantity: ${quantity}`);
  const factor: Record<string, number> = {
    '': 1,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    K: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Number(match[1]) * (factor[match[2] ?? ''] ?? Number.NaN);
}

/** rabbitmq.conf (sysctl format) as key → value. */
function parseRabbitConf(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not a key = value line: ${line}`);
    entries.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return entries;
}

/** The broker's rabbitmq.conf as mounted into its container (every conf file in /etc/rabbitmq/conf.d). */
function brokerConf(objects: readonly K8sObject[]): Map<string, string> {
  const pod = podSpec(only(objects, 'StatefulSet', BROKER));
  const container = pod.containers.find((c) => c.name === 'rabbitmq');
  const mount = container?.volumeMounts?.find(
    (m) => m.mountPath === '/etc/rabbitmq/conf.d' || m.mountPath.startsWith('/etc/rabbitmq/conf.d/'),
  );
  assert.ok(mount, 'nothing is mounted into /etc/rabbitmq/conf.d');
  const volume = pod.volumes?.find((v) => v.name === mount.name);
  assert.ok(volume?.configMap, `volume ${mount.name} is not a ConfigMap`);
  const data = (only(objects, 'ConfigMap', volume.configMap.name).data ?? {}) as Record<string, string>;
  const files = Object.entries(data).filter(([key]) => key.endsWith('.conf'));
  assert.ok(files.length > 0, 'the broker ConfigMap holds no .conf file');
  const conf = new Map<string, string>();
  for (const [, text] of files) for (const [k, v] of parseRabbitConf(text)) conf.set(k, v);
  return conf;
}

/** The parts of Jaeger's (OpenTelemetry Collector style) config the checks read. */
interface JaegerConfig {
  service?: { extensions?: string[]; pipelines?: { traces?: { receivers?: string[]; exporters?: string[] } } };
  extensions?: {
    jaeger_storage?: { backends?: Record<string, { memory?: { max_traces?: number } }> };
    jaeger_query?: { storage?: { traces?: string }; http?: { endpoint?: string } };
    healthcheckv2?: { http?: { endpoint?: string } };
  };
  receivers?: { otlp?: { protocols?: { grpc?: { endpoint?: string }; http?: { endpoint?: string } } } };
  exporters?: { jaeger_storage_exporter?: { trace_storage?: string } };
}

/** Jaeger's config file, as mounted and passed with --config. */
function jaegerConfig(objects: readonly K8sObject[]): JaegerConfig {
  const pod = podSpec(only(objects, 'Deployment', JAEGER));
  const [container] = pod.containers;
  const flag = container?.args?.find((a) => a.startsWith('--config='));
  assert.ok(flag, 'Jaeger runs its built-in all-in-one config (100,000 traces): no --config=');
  const path = flag.slice('--config='.length).replace(/^file:/, '');
  const mount = container?.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `${path} is on no volume`);
  const volume = pod.volumes?.find((v) => v.name === mount.name);
  assert.ok(volume?.configMap, `volume ${mount.name} is not a ConfigMap`);
  const key = path.slice(mount.mountPath.length + 1);
  const text = ((only(objects, 'ConfigMap', volume.configMap.name).data ?? {}) as Record<string, string>)[key];
  assert.ok(text, `ConfigMap ${volume.configMap.name} has no key ${key}`);
  return parse(text) as JaegerConfig;
}

function maxTraces(config: JaegerConfig): number {
  const backends = Object.values(config.extensions?.jaeger_storage?.backends ?? {});
  assert.equal(backends.length, 1, 'one storage backend');
  const value = backends[0]?.memory?.max_traces;
  assert.ok(typeof value === 'number' && value > 0, `max_traces ${value}: 0 means unbounded`);
  return value;
}

// ---------- item 1: the Erlang cookie survives pod re-creation ----------

describe('broker: the Erlang cookie stays owner-only when the pod is re-created', () => {
  it('the kubelet does not re-chmod the data volume on every mount (fsGroupChangePolicy OnRootMismatch)', () => {
    for (const set of [[], ['rabbitmq.persistence.enabled=false']]) {
      const pod = podSpec(only(render({ set }), 'StatefulSet', BROKER));
      assert.ok(pod.securityContext?.fsGroup, 'fsGroup is what makes the volume writable for uid 999');
      assert.equal(pod.securityContext?.fsGroupChangePolicy, 'OnRootMismatch', `with ${set.join(' ') || 'defaults'}`);
    }
  });

  it('$HOME (where Erlang keeps .erlang.cookie) is a pod-local emptyDir, not on the data volume', () => {
    const pod = podSpec(only(render(), 'StatefulSet', BROKER));
    const container = pod.containers.find((c) => c.name === 'rabbitmq');
    const home = container?.env?.find((e) => e.name === 'HOME')?.value;
    // The image's HOME is /var/lib/rabbitmq, which is the data volume.
    assert.ok(home, 'HOME is not set: the image default /var/lib/rabbitmq is the data volume');
    const mounts = container?.volumeMounts ?? [];
    const data = mounts.find((m) => m.name === 'data');
    assert.ok(data, 'no data mount');
    assert.ok(
      !`${home}/`.startsWith(`${data.mountPath}/`),
      `HOME ${home} lies on the data volume mounted at ${data.mountPath}`,
    );
    const homeMount = mounts
      .filter((m) => `${home}/`.startsWith(`${m.mountPath}/`))
      .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    assert.ok(homeMount, `HOME ${home} is on the read-only root filesystem`);
    const volume = pod.volumes?.find((v) => v.name === homeMount.name);
    assert.ok(volume?.emptyDir, `HOME is on volume ${homeMount.name}, which is not an emptyDir`);
  });
});

// ---------- item 4: uninstall + reinstall with the volume kept ----------

describe('broker: credentials outlive an uninstall as long as the data volume does', () => {
  it('the generated Secret is kept on uninstall when the broker keeps its data on a PVC', () => {
    const secret = only(render(), 'Secret', BROKER);
    assert.equal(secret.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
  });

  it('nothing is kept when nothing remembers the password (no PVC, or an external broker)', () => {
    const ephemeral = only(render({ set: ['rabbitmq.persistence.enabled=false'] }), 'Secret', BROKER);
    assert.equal(ephemeral.metadata.annotations?.['helm.sh/resource-policy'], undefined);
    const external = find(render({ values: [join(CI_VALUES_DIR, 'external-broker-values.yaml')] }), 'Secret');
    assert.equal(external.length, 3, 'a Secret per role');
    for (const secret of external) assert.equal(secret.metadata.annotations?.['helm.sh/resource-policy'], undefined);
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

// ---------- item 7: Jaeger's in-memory store fits its memory limit ----------

describe('Jaeger: the in-memory store is bounded to fit the pod memory limit', () => {
  it('runs a mounted config with max_traces below the 100,000 default, keeping its receivers, UI and health ports', () => {
    const config = jaegerConfig(render());
    assert.ok(maxTraces(config) < 100000);
    const otlp = config.receivers?.otlp?.protocols;
    assert.match(otlp?.grpc?.endpoint ?? '', /^0\.0\.0\.0:4317$/);
    assert.match(otlp?.http?.endpoint ?? '', /^0\.0\.0\.0:4318$/);
    assert.match(config.extensions?.healthcheckv2?.http?.endpoint ?? '', /^0\.0\.0\.0:13133$/);
    assert.match(config.extensions?.jaeger_query?.http?.endpoint ?? '', /^0\.0\.0\.0:16686$/);
    const pipeline = config.service?.pipelines?.traces;
    assert.deepEqual(pipeline?.receivers, ['otlp']);
    assert.deepEqual(pipeline?.exporters, ['jaeger_storage_exporter']);
    for (const name of ['jaeger_storage', 'jaeger_query', 'healthcheckv2'])
      assert.ok(config.service?.extensions?.includes(name), `extension ${name} is not enabled`);
    const store = config.exporters?.jaeger_storage_exporter?.trace_storage ?? '';
    assert.equal(config.extensions?.jaeger_query?.storage?.traces, store);
    assert.ok(config.extensions?.jaeger_storage?.backends?.[store], `no backend ${store}`);
  });

  it('max_traces follows the memory limit (sizing rule), and jaeger.maxTraces overrides it', () => {
    const small = maxTraces(jaegerConfig(render()));
    const big = maxTraces(jaegerConfig(render({ set: ['jaeger.resources.limits.memory=1Gi'] })));
    assert.equal(big, small * 2, 'doubling the limit should double the trace budget');
    assert.equal(maxTraces(jaegerConfig(render({ set: ['jaeger.maxTraces=1234'] }))), 1234);
  });

  it('the Go runtime is told the limit (GOMEMLIMIT below limits.memory) so it collects before the OOM killer acts', () => {
    const pod = podSpec(only(render(), 'Deployment', JAEGER));
    const container = pod.containers[0];
    const limit = bytes(container?.resources?.limits?.memory ?? '');
    const gomemlimit = container?.env?.find((e) => e.name === 'GOMEMLIMIT')?.value ?? '';
    const match = /^(\d+)MiB$/.exec(gomemlimit);
    assert.ok(match, `GOMEMLIMIT ${gomemlimit}`);
    const value = Number(match[1]) * 2 ** 20;
    assert.ok(value < limit && value >= limit * 0.7, `GOMEMLIMIT ${gomemlimit} for a ${limit}-byte limit`);
  });

  it('a config change restarts Jaeger (checksum of its config on the pod template)', () => {
    const annotation = (set: string[]): string | undefined =>
      podTemplate(only(render({ set }), 'Deployment', JAEGER))?.metadata?.annotations?.['checksum/config'];
    assert.ok(annotation([]));
    assert.notEqual(annotation([]), annotation(['jaeger.maxTraces=1234']));
  });
});

// ---------- item 8: version bumps do not restart the broker or Jaeger ----------

describe('a chart or app version bump leaves the broker and Jaeger pods alone', () => {
  const VERSION_LABELS = ['helm.sh/chart', 'app.kubernetes.io/version'];
  let copy = '';

  after(() => {
    if (copy) rmSync(join(copy, '..'), { recursive: true, force: true });
  });

  /** Renders a copy of the chart whose version and appVersion are bumped. */
  function renderBumped(): K8sObject[] {
    copy = join(mkdtempSync(join(tmpdir(), 'fib-rpc-bump-')), 'fib-rpc');
    cpSync(CHART, copy, { recursive: true });
    const chartYaml = readFileSync(join(copy, 'Chart.yaml'), 'utf8');
    const bumped = chartYaml
      .replace(/^version: .*$/m, 'version: 9.8.7')
      .replace(/^appVersion: .*$/m, 'appVersion: "9.8.7"');
    assert.notEqual(bumped, chartYaml);
    writeFileSync(join(copy, 'Chart.yaml'), bumped);
    const args = helmTemplateArgs();
    args[2] = copy;
    const result = run(tool('helm'), args);
    assert.equal(result.status, 0, result.stderr);
    return parseManifests(result.stdout);
  }

  it('the pod templates (and the claim template) of the broker and Jaeger carry no version labels', () => {
    const objects = render();
    const statefulSet = only(objects, 'StatefulSet', BROKER);
    const claims = spec<{ volumeClaimTemplates?: { metadata?: { labels?: Record<string, string> } }[] }>(
      statefulSet,
    ).volumeClaimTemplates;
    assert.ok(claims?.length, 'no volumeClaimTemplates with persistence on');
    const templates: [string, Record<string, string> | undefined][] = [
      ['StatefulSet pod template', podTemplate(statefulSet)?.metadata?.labels],
      ['StatefulSet volumeClaimTemplate', claims[0]?.metadata?.labels],
      ['Jaeger pod template', podTemplate(only(objects, 'Deployment', JAEGER))?.metadata?.labels],
    ];
    for (const [where, labels] of templates) {
      assert.ok(labels?.['app.kubernetes.io/name'], `${where} has no name label`);
      assert.ok(labels?.['app.kubernetes.io/component'], `${where} has no component label`);
      for (const label of VERSION_LABELS) assert.equal(labels?.[label], undefined, `${where} carries ${label}`);
    }
  });

  it('bumping version and appVersion changes neither pod template nor the immutable claim template', () => {
    const before = render();
    const after = renderBumped();
    // The objects themselves do carry the new version: the comparison below is not vacuous.
    assert.notEqual(
      only(before, 'StatefulSet', BROKER).metadata.labels?.['helm.sh/chart'],
      only(after, 'StatefulSet', BROKER).metadata.labels?.['helm.sh/chart'],
    );
    const podOf = (objects: K8sObject[], kind: string, name: string): unknown => podTemplate(only(objects, kind, name));
    assert.deepEqual(podOf(after, 'StatefulSet', BROKER), podOf(before, 'StatefulSet', BROKER));
    assert.deepEqual(podOf(after, 'Deployment', JAEGER), podOf(before, 'Deployment', JAEGER));
    const claims = (objects: K8sObject[]): unknown =>
      spec<{ volumeClaimTemplates?: unknown }>(only(objects, 'StatefulSet', BROKER)).volumeClaimTemplates;
    assert.deepEqual(claims(after), claims(before));
  });
});

// ---------- item 9: DLQ bounds and broker limits ----------

describe('server: the dead-letter queue is bounded', () => {
  const data = (objects: readonly K8sObject[]): Record<string, string> =>
    (only(objects, 'ConfigMap', SERVER).data ?? {}) as Record<string, string>;

  it('RPC_DLQ_MAX_LENGTH and RPC_DLQ_TTL_MS reach the server with the defaults of src/cmd/common/config.ts', () => {
    const defaults = data(render());
    assert.equal(defaults.RPC_DLQ_MAX_LENGTH, '100000');
    assert.equal(defaults.RPC_DLQ_TTL_MS, String(7 * 24 * 3600 * 1000));
    const set = data(render({ set: ['config.dlqMaxLength=500', 'config.dlqTtlMs=60000'] }));
    assert.equal(set.RPC_DLQ_MAX_LENGTH, '500');
    assert.equal(set.RPC_DLQ_TTL_MS, '60000');
  });

  it('refuses an unbounded DLQ (0 or negative)', () => {
    assert.match(renderError({ set: ['config.dlqMaxLength=0'] }), /\/config\/dlqMaxLength/);
    assert.match(renderError({ set: ['config.dlqTtlMs=0'] }), /\/config\/dlqTtlMs/);
  });
});

describe('broker: memory and disk limits come from a rabbitmq.conf in the chart', () => {
  it('keeps what the official image configures (console logs, listeners) and never opens guest to the network', () => {
    const conf = brokerConf(render());
    assert.equal(conf.get('log.console'), 'true');
    assert.equal(conf.get('listeners.tcp.default'), '5672');
    assert.equal(conf.get('management.tcp.port'), '15672');
    assert.equal(conf.get('prometheus.tcp.port'), '15692');
    assert.notEqual(conf.get('loopback_users.guest'), 'false');
  });

  it('the memory watermark is computed from the container limit, not from the node RAM Erlang sees', () => {
    for (const limit of ['1Gi', '3Gi']) {
      const objects = render({ set: [`rabbitmq.resources.limits.memory=${limit}`] });
      const conf = brokerConf(objects);
      const total = Number(conf.get('total_memory_available_override_value'));
      assert.equal(total, bytes(limit), 'total_memory_available_override_value');
      const relative = Number(conf.get('vm_memory_high_watermark.relative'));
      assert.ok(relative > 0 && relative <= 0.7, `vm_memory_high_watermark.relative ${relative}`);
      // Quorum queues keep up to raft.wal_max_size_bytes in memory; RabbitMQ asks for 3-4x that.
      const wal = Number(conf.get('raft.wal_max_size_bytes'));
      assert.ok(wal > 0 && wal * 4 <= bytes(limit), `raft.wal_max_size_bytes ${wal} for a ${limit} limit`);
    }
  });

  it('the disk alarm threshold and the WAL fit in the default volume with room for the queues', () => {
    const objects = render();
    const conf = brokerConf(objects);
    const diskFree = Number(conf.get('disk_free_limit.absolute'));
    const wal = Number(conf.get('raft.wal_max_size_bytes'));
    assert.ok(diskFree >= 50e6, `disk_free_limit.absolute ${conf.get('disk_free_limit.absolute')}`);
    const claim = spec<{
      volumeClaimTemplates: { spec: { resources: { requests: { storage: string } } } }[];
    }>(only(objects, 'StatefulSet', BROKER)).volumeClaimTemplates[0];
    const size = bytes(claim?.spec.resources.requests.storage ?? '0');
    // 100,000 dead letters of ~1 KiB each (body, properties, trace headers, Raft overhead), twice
    // over until segments are compacted, beside the same again for the work queue.
    const queues = 4 * 100000 * 1024;
    assert.ok(
      size >= diskFree + wal + queues,
      `a ${size}-byte volume leaves no room above the ${diskFree}-byte alarm threshold and ${wal}-byte WAL`,
    );
  });

  it('refuses a volume that the disk alarm would fill from the first boot', () => {
    assert.match(
      renderError({ set: ['rabbitmq.persistence.size=1Gi', 'rabbitmq.diskFreeLimit=1Gi'] }),
      /rabbitmq\.persistence\.size/,
    );
  });

  it('a config change restarts the broker (checksum of its config on the pod template)', () => {
    const annotation = (set: string[]): string | undefined =>
      podTemplate(only(render({ set }), 'StatefulSet', BROKER))?.metadata?.annotations?.['checksum/config'];
    assert.ok(annotation([]));
    assert.notEqual(annotation([]), annotation(['rabbitmq.diskFreeLimit=2Gi']));
  });
});
