/**
 * The dashboard and the alerts against a real Prometheus (Debian's `prometheus`), scraping a
 * real fib-rpc server and its broker's rabbitmq_prometheus endpoint the way the chart's
 * ServiceMonitor and PodMonitor do (same paths, same `family` params, the labels they attach
 * given as static labels, since there is no Kubernetes here). Prometheus loads the rule groups
 * of the chart's rendered PrometheusRule (every `for` set to 0s).
 *
 * Phase 0: two servers on one queue, idle. Every alert is quiet (the broker selectors match, so
 * FibRpcBrokerMetricsAbsent is too).
 * Phase 1: server B loses the broker (its connection runs through a proxy that closes); a
 * short load through server A, a few requests A refuses (its FIB_MAX_N is lower than the
 * client's), one request that is dead-lettered. Every query of the dashboard returns data with
 * the labels its legend uses; disconnected, error ratio, p99 and dead-letter alerts fire.
 * Phase 2: server A stops and requests keep arriving: no-consumer and backlog-at-max fire.
 *
 * The broker is the suite's own node (scripts/test-broker.sh, or the RabbitMQ 4 node with
 * BROKER=rabbitmq4), which has rabbitmq_prometheus: the machine's broker is not the suite's to
 * enable plugins on. The servers, clients and the admin connection all use that node.
 *
 * Needs a built server (npm run build), an installed rabbitmq-server (scripts/ensure-broker.sh)
 * and helm (scripts/install-tools.sh); a missing piece fails the test.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { only, render, tool } from '../chart/lib.ts';
import { allPanels, readDashboard, ruleFile, ruleGroups } from '../chart/monitoring.ts';
import { BrokerAdmin, uniqueQueue } from '../support/broker.ts';
import { freePort } from '../support/ports.ts';
import { runClient, ServerProcess } from '../support/processes.ts';
import { TcpProxy } from '../support/proxy.ts';
import { TestBroker } from '../support/test-broker.ts';

const NAMESPACE = 'mon-ns';
const RELEASE = 'mon-rel';
const POD_A = `${RELEASE}-fib-rpc-server-a`;
const POD_B = `${RELEASE}-fib-rpc-server-b`;
/** What Grafana would put in for $__rate_interval with a 1 s scrape interval. */
const RATE_INTERVAL = '10s';

interface Sample {
  metric: Record<string, string>;
  value?: [number, string];
  values?: [number, string][];
}

let prometheus: ChildProcess | undefined;
let promLog = '';
let base = '';
let work = '';
let queue = '';
let admin: BrokerAdmin;
let node: TestBroker | undefined;
/** What every server and client of the test connects to: the node's AMQP URL. */
let onNode: { AMQP_URL: string };
let serverA: ServerProcess | undefined;
let serverB: ServerProcess | undefined;
let proxy: TcpProxy | undefined;
let rules: ReturnType<typeof ruleGroups>;
const started = Date.now() / 1000;

async function api<T>(path: string, params: Record<string, string | string[]>): Promise<T> {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) search.append(key, v);
  }
  const response = await fetch(`${base}/api/v1/${path}?${search}`);
  const body = (await response.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`${path} ${JSON.stringify(params)}: ${body.error}`);
  return body.data;
}

async function query(expr: string): Promise<Sample[]> {
  return (await api<{ result: Sample[] }>('query', { query: expr })).result;
}

async function queryRange(expr: string): Promise<Sample[]> {
  const end = Date.now() / 1000;
  return (
    await api<{ result: Sample[] }>('query_range', { query: expr, start: String(started), end: String(end), step: '1' })
  ).result;
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${(last as Error).message})` : ''}\n${promLog}`);
}

async function firing(): Promise<Map<string, Record<string, string>[]>> {
  const data = await api<{ alerts: { labels: Record<string, string>; state: string }[] }>('alerts', {});
  const out = new Map<string, Record<string, string>[]>();
  for (const alert of data.alerts) {
    if (alert.state !== 'firing') continue;
    const name = alert.labels.alertname ?? '';
    out.set(name, [...(out.get(name) ?? []), alert.labels]);
  }
  return out;
}

/** Grafana's interpolation of the variables the dashboard uses. */
function interpolate(expr: string, vars: Record<string, string>): string {
  return expr.replaceAll('$__rate_interval', RATE_INTERVAL).replace(/\$\{(\w+)\}|\$(\w+)/g, (_, braced, bare) => {
    const name = (braced ?? bare) as string;
    const value = vars[name];
    if (value === undefined) throw new Error(`the dashboard uses $${name}, which the test does not know`);
    return value;
  });
}

const finite = (s: Sample) => (s.values ?? (s.value ? [s.value] : [])).some(([, v]) => Number.isFinite(Number(v)));
const lastValue = (s: Sample) => Number(s.values?.at(-1)?.[1] ?? s.value?.[1]);

before(async () => {
  const promBin = tool('prometheus');
  work = mkdtempSync(join(tmpdir(), 'fib-rpc-prometheus-'));
  node = await TestBroker.up();
  onNode = { AMQP_URL: node.url };
  admin = await BrokerAdmin.open(node.url);
  queue = admin.track(uniqueQueue('monitoring'));

  // The chart's monitors and rules for this release; the scrape config copies what the
  // ServiceMonitor and PodMonitor would make the operator generate.
  const values = join(work, 'values.yaml');
  writeFileSync(
    values,
    stringify({
      config: { rpcQueue: queue },
      autoscaling: { minReplicas: 1, maxReplicas: 1 },
      server: {
        metrics: {
          serviceMonitor: { enabled: true },
          prometheusRule: {
            enabled: true,
            rateWindow: '1m',
            noConsumer: { for: '0s', severity: 'critical' },
            backlogAtMaxReplicas: { for: '0s', severity: 'warning' },
            errorReplies: { ratio: 0.0001, for: '0s', severity: 'warning' },
            latency: { p99Seconds: 0.0001, for: '0s', severity: 'warning' },
            deadLetters: { window: '1m', for: '0s', severity: 'warning' },
            brokerDisconnected: { for: '0s', severity: 'warning' },
            brokerMetricsAbsent: { for: '0s', severity: 'warning' },
          },
        },
      },
      rabbitmq: { metrics: { podMonitor: { enabled: true } } },
    }),
  );
  const objects = render({ release: RELEASE, namespace: NAMESPACE, values: [values] });
  rules = ruleGroups(objects);
  writeFileSync(join(work, 'rules.yaml'), ruleFile(rules));
  const serviceMonitor = only(objects, 'ServiceMonitor').spec as {
    podTargetLabels: string[];
    endpoints: { path: string }[];
  };
  const podMonitor = only(objects, 'PodMonitor').spec as {
    podTargetLabels: string[];
    podMetricsEndpoints: { path: string; params: Record<string, string[]> }[];
  };
  // The operator turns a pod label into a series label with non-alphanumerics replaced by _.
  const targetLabels = (names: string[]) =>
    Object.fromEntries(names.map((n) => [n.replace(/[^a-zA-Z0-9_]/g, '_'), RELEASE]));

  // Server A consumes directly; server B through a proxy the test closes in phase 1.
  const nodeUrl = new URL(node.url);
  proxy = await TcpProxy.start(Number(nodeUrl.port), nodeUrl.hostname);
  const env = { ...onNode, RPC_QUEUE: queue, FIB_MAX_N: '50', LOG_LEVEL: 'info' };
  serverA = await ServerProcess.start(env);
  serverB = await ServerProcess.start({ ...env, AMQP_URL: proxy.url(), AMQP_HEARTBEAT_S: '1' });

  const server = (pod: string, port: number) => ({
    targets: [`127.0.0.1:${port}`],
    labels: { namespace: NAMESPACE, pod, ...targetLabels(serviceMonitor.podTargetLabels) },
  });
  const [brokerEndpoint] = podMonitor.podMetricsEndpoints;
  assert.ok(brokerEndpoint);
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '900ms' },
    rule_files: [join(work, 'rules.yaml')],
    scrape_configs: [
      {
        job_name: `${NAMESPACE}/${RELEASE}-fib-rpc-server`,
        metrics_path: serviceMonitor.endpoints[0]?.path,
        static_configs: [server(POD_A, serverA.httpPort), server(POD_B, serverB.httpPort)],
      },
      {
        job_name: `${NAMESPACE}/${RELEASE}-fib-rpc-rabbitmq`,
        metrics_path: brokerEndpoint.path,
        params: brokerEndpoint.params,
        static_configs: [
          {
            targets: [node.prometheus],
            labels: {
              namespace: NAMESPACE,
              pod: `${RELEASE}-fib-rpc-rabbitmq-0`,
              ...targetLabels(podMonitor.podTargetLabels),
            },
          },
        ],
      },
    ],
  };
  writeFileSync(join(work, 'prometheus.yaml'), stringify(config));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  prometheus = spawn(
    promBin,
    [
      `--config.file=${join(work, 'prometheus.yaml')}`,
      `--storage.tsdb.path=${join(work, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  prometheus.stderr?.on('data', (chunk: Buffer) => {
    promLog += chunk;
  });
  await eventually('Prometheus ready', async () => ((await fetch(`${base}/-/ready`)).ok ? true : undefined));
  await eventually('all three targets scraped', async () => {
    const up = await query('up');
    return up.length === 3 && up.every((s) => s.value?.[1] === '1') ? true : undefined;
  });
  await eventually('the broker reports both consumers of the queue', async () => {
    const consumers = await query(`sum(rabbitmq_detailed_queue_consumers{queue="${queue}"})`);
    return consumers[0]?.value?.[1] === '2' ? true : undefined;
  });
});

after(async () => {
  await serverA?.stop();
  await serverB?.stop();
  await proxy?.close();
  await admin?.close();
  if (prometheus && prometheus.exitCode === null) {
    prometheus.kill('SIGTERM');
    await new Promise((resolve) => prometheus?.once('exit', resolve));
  }
  if (work && existsSync(work)) rmSync(work, { recursive: true, force: true });
  await node?.stop();
});

describe('a real Prometheus scraping a real server and broker', () => {
  it('phase 0, idle: every rule evaluates without error and no alert fires', async () => {
    // A few evaluation rounds on the idle system.
    await new Promise((r) => setTimeout(r, 3000));
    const data = await api<{ groups: { rules: { name: string; health: string; lastError?: string }[] }[] }>(
      'rules',
      {},
    );
    const loaded = data.groups.flatMap((g) => g.rules);
    assert.deepEqual(
      loaded.map((r) => r.name).sort(),
      rules
        .flatMap((g) => g.rules)
        .map((r) => r.alert)
        .sort(),
    );
    for (const rule of loaded) assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError}`);
    assert.deepEqual([...(await firing()).keys()], []);
  });

  it('phase 0, then only ok replies: the error-ratio panel has no data without calls, then reads 0', async () => {
    const [target] = allPanels(readDashboard()).find((p) => p.title === 'Error replies')?.targets ?? [];
    assert.ok(target);
    const ratio = interpolate(target.expr, { namespace: NAMESPACE, release: RELEASE });
    // No request settled yet: a share of nothing is no number, and the panel says "No data".
    assert.deepEqual(await query(ratio), []);
    // Calls that all succeed: the share of errors is 0, although no error series exists. A
    // counter's first sample has no rate, so Prometheus sees the first call before the others.
    const ok = async (args: string[]) => {
      const call = await runClient(args, { ...onNode, RPC_QUEUE: queue });
      assert.equal(call.code, 0, call.stderr);
    };
    await ok(['5']);
    await eventually('Prometheus has the first ok reply', async () => {
      const [sample] = await query(`sum(rpc_server_requests_total{outcome="ok",namespace="${NAMESPACE}"})`);
      return Number(sample?.value?.[1]) >= 1 ? true : undefined;
    });
    await ok(['--load', '--count', '20', '--concurrency', '2', '5']);
    const value = await eventually('the error ratio reads 0', async () => {
      const [sample, ...more] = await query(ratio);
      return sample && more.length === 0 && Number.isFinite(lastValue(sample)) ? lastValue(sample) : undefined;
    });
    assert.equal(value, 0);
  });

  it('phase 1, load: every dashboard query returns data with the labels its legend uses', async () => {
    await proxy?.close();
    proxy = undefined;
    // Requests A refuses: its FIB_MAX_N is 50, the client's the default. Prometheus must see the
    // first one before the others: a counter whose first sample is already its final value has
    // no rate, and the error ratio would read 0.
    const refuse = async () => {
      const refused = await runClient(['--timeout', '5000', '60'], { ...onNode, RPC_QUEUE: queue });
      assert.equal(refused.code, 5, refused.stderr);
    };
    const invalidSeen = async (count: number) => {
      const [sample] = await query(`rpc_server_requests_total{outcome="invalid",pod="${POD_A}"}`);
      return Number(sample?.value?.[1]) === count ? true : undefined;
    };
    await refuse();
    await eventually('Prometheus has the first refused request', () => invalidSeen(1));
    // A request nobody could answer (no reply_to, no correlation_id): dead-lettered.
    admin.channel.sendToQueue(queue, Buffer.from('{"n":1}'), { contentType: 'application/json' });
    const load = runClient(['--load', '--json', '--concurrency', '4', '--duration', '3s', '20'], {
      ...onNode,
      RPC_QUEUE: queue,
    });
    for (let i = 0; i < 4; i++) await refuse();
    const loaded = await load;
    assert.equal(loaded.code, 0, loaded.stderr);
    await eventually('Prometheus has every refused request', () => invalidSeen(5));
    await admin.waitForCount(`${queue}.dlq`, 1);
    await eventually('server B reports the lost connection', async () => {
      const connected = await query(`rpc_server_broker_connected{pod="${POD_B}"}`);
      return connected[0]?.value?.[1] === '0' ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 2500));

    const dashboard = readDashboard();
    const variables = Object.fromEntries(
      dashboard.templating.list.map((v) => [v.name, typeof v.query === 'object' ? v.query.query : (v.query ?? '')]),
    );
    // The variable queries offer this release.
    const labelValues = async (definition: string) => {
      const match = /^label_values\((.*), *(\w+)\)$/.exec(interpolate(definition, { namespace: NAMESPACE }));
      assert.ok(match, definition);
      return api<string[]>(`label/${match[2]}/values`, { 'match[]': match[1] as string });
    };
    assert.ok((await labelValues(variables.namespace as string)).includes(NAMESPACE));
    assert.ok((await labelValues(variables.release as string)).includes(RELEASE));

    // Labels each query's result must carry (its legend and grouping), by panel title and refId.
    const expected: Record<string, string[]> = {
      'Calls/s by outcome/A': ['outcome'],
      'Handler latency percentiles/A': [],
      'Handler latency percentiles/B': [],
      'Handler latency percentiles/C': [],
      'Error replies/A': [],
      'In flight per server/A': ['pod'],
      'Servers against queue depth/A': [],
      'Servers against queue depth/B': [],
      'Servers against queue depth/C': [],
      'Servers against queue depth/D': [],
      'Dead-letter queue depth/A': [],
      'Broker connection per server/A': ['pod'],
    };
    const vars = { namespace: NAMESPACE, release: RELEASE, queue, datasource: 'prometheus' };
    const seen = new Set<string>();
    for (const panel of allPanels(dashboard)) {
      for (const target of panel.targets ?? []) {
        const key = `${panel.title}/${target.refId}`;
        seen.add(key);
        const labels = expected[key];
        assert.ok(labels, `${key}: no expectation in this test for a new query`);
        const result = await queryRange(interpolate(target.expr, vars));
        assert.ok(result.length > 0, `${key}: no data for ${interpolate(target.expr, vars)}`);
        assert.ok(result.some(finite), `${key}: only NaN for ${interpolate(target.expr, vars)}`);
        for (const series of result) assert.deepEqual(Object.keys(series.metric).sort(), labels, key);
      }
    }
    assert.deepEqual([...seen].sort(), Object.keys(expected).sort());

    const interpolated = (title: string, refId = 'A') => {
      const target = allPanels(dashboard)
        .find((p) => p.title === title)
        ?.targets?.find((t) => t.refId === refId);
      assert.ok(target);
      return interpolate(target.expr, vars);
    };
    const outcomes = (await queryRange(interpolated('Calls/s by outcome'))).map((s) => s.metric.outcome).sort();
    assert.deepEqual(outcomes, ['dead_lettered', 'invalid', 'ok']);
    const connection = await query(interpolated('Broker connection per server'));
    assert.deepEqual(Object.fromEntries(connection.map((s) => [s.metric.pod, lastValue(s)])), {
      [POD_A]: 1,
      [POD_B]: 0,
    });
    const dlq = await query(interpolated('Dead-letter queue depth'));
    assert.equal(lastValue(dlq[0] as Sample), 1);
  });

  it('phase 1, load: the disconnected server, error replies, p99 and dead letters fire with their labels', async () => {
    const wanted: Record<string, Record<string, string>> = {
      FibRpcServerDisconnected: { namespace: NAMESPACE, pod: POD_B, app_kubernetes_io_instance: RELEASE },
      FibRpcErrorRepliesHigh: { namespace: NAMESPACE },
      FibRpcLatencyP99High: { namespace: NAMESPACE, method: 'fib' },
      FibRpcDeadLettersGrowing: { namespace: NAMESPACE, queue: `${queue}.dlq` },
    };
    await expectFiring(wanted);
    const now = await firing();
    for (const quiet of ['FibRpcNoConsumer', 'FibRpcBrokerMetricsAbsent']) assert.ok(!now.has(quiet), quiet);
  });

  it('phase 2, no consumer: requests pile up; no-consumer and backlog-at-max fire with their labels', async () => {
    await serverA?.stop();
    serverA = undefined;
    for (let i = 0; i < 12; i++) {
      admin.channel.sendToQueue(queue, Buffer.from('{"n":5}'), {
        contentType: 'application/json',
        replyTo: 'nobody.waits',
        correlationId: `pile-${i}`,
        expiration: '120000',
      });
      await new Promise((r) => setTimeout(r, 400));
    }
    await expectFiring({
      FibRpcNoConsumer: { namespace: NAMESPACE, queue },
      FibRpcBacklogGrowingAtMaxReplicas: { namespace: NAMESPACE, queue },
    });
  });
});

/** Each alert's expression returns a series with these labels, and Prometheus has it firing with them. */
async function expectFiring(wanted: Record<string, Record<string, string>>): Promise<void> {
  const byName = new Map(rules.flatMap((g) => g.rules).map((r) => [r.alert, r]));
  for (const [name, labels] of Object.entries(wanted)) {
    const rule = byName.get(name);
    assert.ok(rule, name);
    const result = await eventually(`${name} expression returns data`, async () => {
      const r = await query(rule.expr);
      return r.length > 0 ? r : undefined;
    });
    const series = result.find((s) => Object.entries(labels).every(([k, v]) => s.metric[k] === v));
    assert.ok(series, `${name}: ${JSON.stringify(result.map((s) => s.metric))} lacks ${JSON.stringify(labels)}`);
    await eventually(`${name} firing`, async () => {
      const alerts = (await firing()).get(name) ?? [];
      return alerts.some((a) => Object.entries(labels).every(([k, v]) => a[k] === v)) ? true : undefined;
    });
  }
}
