/**
 * The chart's PrometheusRule and the broker's PodMonitor: rendered only when asked for and only
 * where the Prometheus Operator's API exists, valid, thresholds taken from the values; the rules
 * accepted by Prometheus' own `promtool check rules`, and every alert exercised by
 * `promtool test rules` (test/chart/alerts/*.test.yaml) with series that fire it and series
 * that must not.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { find, only, ROOT, render, run, tool, validateObjects } from './lib.ts';
import { ruleFile, ruleGroups } from './monitoring.ts';

const ON = [
  'server.metrics.serviceMonitor.enabled=true',
  'server.metrics.prometheusRule.enabled=true',
  'rabbitmq.metrics.podMonitor.enabled=true',
];
/** The release the promtool test files are written for. */
const PROMTOOL_RENDER = { release: 'shop', namespace: 'prod', set: [...ON, 'autoscaling.maxReplicas=2'] };
const ALERTS_DIR = join(ROOT, 'test/chart/alerts');

const work = mkdtempSync(join(tmpdir(), 'fib-rpc-alerts-'));
after(() => rmSync(work, { recursive: true, force: true }));

function promtool(args: string[]) {
  return run(tool('promtool'), args);
}

describe('PrometheusRule and PodMonitor render', () => {
  it('are absent by default', () => {
    const objects = render();
    assert.deepEqual(find(objects, 'PrometheusRule'), []);
    assert.deepEqual(find(objects, 'PodMonitor'), []);
  });

  it('are absent where the monitoring.coreos.com API is not served, even when enabled', () => {
    const objects = render({ set: ON, apiVersions: ['keda.sh/v1alpha1'] });
    assert.deepEqual(find(objects, 'PrometheusRule'), []);
    assert.deepEqual(find(objects, 'PodMonitor'), []);
    assert.deepEqual(find(objects, 'ServiceMonitor'), []);
  });

  it('render when enabled and pass strict validation with the operator Go types', () => {
    const objects = render({ set: [...ON, 'server.metrics.prometheusRule.labels.release=kube-prometheus-stack'] });
    const monitoring = objects.filter((o) => o.apiVersion === 'monitoring.coreos.com/v1');
    assert.deepEqual(monitoring.map((o) => o.kind).sort(), ['PodMonitor', 'PrometheusRule', 'ServiceMonitor']);
    assert.deepEqual(validateObjects(monitoring), []);
    assert.equal(only(objects, 'PrometheusRule').metadata.labels?.release, 'kube-prometheus-stack');
    // The validation is not a no-op for these kinds.
    const broken = structuredClone(only(objects, 'PrometheusRule'));
    (broken.spec as { groups: { rules: Record<string, unknown>[] }[] }).groups[0]!.rules[0]!.fro = '5m';
    assert.match(validateObjects([broken]).join('\n'), /unknown field "spec\.groups\[0\]\.rules\[0\]\.fro"/);
  });

  it('the PodMonitor scrapes the broker pod port that serves rabbitmq_prometheus, per queue', () => {
    const objects = render({ set: ON });
    const monitor = only(objects, 'PodMonitor');
    const spec = monitor.spec as {
      selector: { matchLabels: Record<string, string> };
      podTargetLabels: string[];
      podMetricsEndpoints: { port: string; path: string; params: Record<string, string[]> }[];
    };
    const broker = only(objects, 'StatefulSet');
    const template = broker.spec as {
      template: {
        metadata: { labels: Record<string, string> };
        spec: { containers: { ports: { name: string; containerPort: number }[] }[] };
      };
    };
    for (const [key, value] of Object.entries(spec.selector.matchLabels)) {
      assert.equal(template.template.metadata.labels[key], value, `broker pods lack ${key}=${value}`);
    }
    const [endpoint] = spec.podMetricsEndpoints;
    const port = template.template.spec.containers[0]?.ports.find((p) => p.name === endpoint?.port);
    assert.equal(port?.containerPort, 15692);
    assert.equal(endpoint?.path, '/metrics/detailed');
    assert.deepEqual(endpoint?.params.family, ['queue_coarse_metrics', 'queue_consumer_count']);
    assert.deepEqual(spec.podTargetLabels, ['app.kubernetes.io/instance']);
    const serviceMonitor = only(objects, 'ServiceMonitor').spec as { podTargetLabels: string[] };
    assert.deepEqual(serviceMonitor.podTargetLabels, ['app.kubernetes.io/instance']);
  });

  it('no PodMonitor for an external broker; brokerSelector then picks its series', () => {
    const objects = render({
      set: [
        ...ON,
        'rabbitmq.enabled=false',
        'externalRabbitmq.url=amqp://u:p@rabbit.example:5672/',
        'externalRabbitmq.managementUrl=http://u:p@rabbit.example:15672/',
        'externalRabbitmq.queueType=quorum',
        'server.metrics.prometheusRule.brokerSelector=job="rabbitmq"',
      ],
    });
    assert.deepEqual(find(objects, 'PodMonitor'), []);
    const rules = ruleGroups(objects).flatMap((g) => g.rules);
    const noConsumer = rules.find((r) => r.alert === 'FibRpcNoConsumer');
    assert.match(noConsumer?.expr ?? '', /rabbitmq_detailed_queue_consumers\{job="rabbitmq",queue="rpc_queue"\}/);
  });

  it('every alert has severity, summary, description and a runbook section in docs/operations.md', () => {
    const rules = ruleGroups(render({ set: ON })).flatMap((g) => g.rules);
    const operations = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
    assert.ok(rules.length >= 7);
    for (const rule of rules) {
      assert.ok(rule.labels?.severity, `${rule.alert}: no severity`);
      assert.ok(rule.annotations?.summary && rule.annotations.description, `${rule.alert}: no summary/description`);
      assert.equal(rule.annotations?.runbook, `docs/operations.md#${rule.alert.toLowerCase()}`);
      assert.match(
        operations,
        new RegExp(`^### ${rule.alert}$`, 'm'),
        `docs/operations.md has no section ${rule.alert}`,
      );
    }
    const withUrl = ruleGroups(
      render({ set: [...ON, 'server.metrics.prometheusRule.runbookUrl=https://docs.example/fib-rpc/operations'] }),
    ).flatMap((g) => g.rules);
    for (const rule of withUrl) {
      assert.equal(
        rule.annotations?.runbook_url,
        `https://docs.example/fib-rpc/operations#${rule.alert.toLowerCase()}`,
      );
    }
  });

  it('thresholds, durations, severities and the replica maximum come from the values', () => {
    // A values file: --set would pass 0.2 as a string.
    const values = join(work, 'thresholds-values.yaml');
    writeFileSync(
      values,
      stringify({
        config: { rpcQueue: 'orders' },
        autoscaling: { maxReplicas: 7 },
        server: {
          metrics: {
            prometheusRule: {
              rateWindow: '3m',
              noConsumer: { for: '4m', severity: 'page' },
              backlogAtMaxReplicas: { for: '17m', severity: 'warning' },
              errorReplies: { ratio: 0.2, for: '6m', severity: 'warning' },
              latency: { p99Seconds: 0.75, for: '8m', severity: 'warning' },
              deadLetters: { window: '30m', for: '2m', severity: 'warning' },
              brokerDisconnected: { for: '90s', severity: 'warning' },
              brokerBlocked: { for: '45s', severity: 'page' },
              brokerMetricsAbsent: { for: '20m', severity: 'warning' },
            },
          },
        },
      }),
    );
    const rules = ruleGroups(render({ release: 'shop', namespace: 'prod', set: ON, values: [values] })).flatMap(
      (g) => g.rules,
    );
    const rule = (name: string) => {
      const found = rules.find((r) => r.alert === name);
      assert.ok(found, `no alert ${name}`);
      return found;
    };
    assert.equal(rule('FibRpcNoConsumer').for, '4m');
    assert.equal(rule('FibRpcNoConsumer').labels?.severity, 'page');
    assert.match(rule('FibRpcNoConsumer').expr, /queue="orders"/);
    assert.match(rule('FibRpcNoConsumer').expr, /namespace="prod",app_kubernetes_io_instance="shop"/);
    assert.equal(rule('FibRpcBacklogGrowingAtMaxReplicas').for, '17m');
    assert.match(rule('FibRpcBacklogGrowingAtMaxReplicas').expr, />= 7$/);
    assert.match(rule('FibRpcBacklogGrowingAtMaxReplicas').expr, /\[3m\]/);
    assert.match(rule('FibRpcErrorRepliesHigh').expr, /> 0\.2$/);
    assert.equal(rule('FibRpcErrorRepliesHigh').for, '6m');
    assert.match(rule('FibRpcLatencyP99High').expr, /> 0\.75$/);
    assert.equal(rule('FibRpcLatencyP99High').for, '8m');
    assert.match(rule('FibRpcDeadLettersGrowing').expr, /queue="orders\.dlq"\}\[30m\]/);
    assert.equal(rule('FibRpcDeadLettersGrowing').for, '2m');
    assert.equal(rule('FibRpcServerDisconnected').for, '90s');
    assert.equal(rule('FibRpcBrokerBlocked').for, '45s');
    assert.equal(rule('FibRpcBrokerBlocked').labels?.severity, 'page');
    assert.match(
      rule('FibRpcBrokerBlocked').expr,
      /rpc_server_broker_blocked\{namespace="prod",app_kubernetes_io_instance="shop"\} == 1/,
    );
    assert.equal(rule('FibRpcBrokerMetricsAbsent').for, '20m');
    // Without an autoscaler the maximum is the fixed replica count.
    const fixed = ruleGroups(render({ set: [...ON, 'autoscaling.keda.enabled=false', 'server.replicas=3'] })).flatMap(
      (g) => g.rules,
    );
    assert.match(fixed.find((r) => r.alert === 'FibRpcBacklogGrowingAtMaxReplicas')?.expr ?? '', />= 3$/);
  });

  it('the values schema refuses a p99 threshold the histogram cannot report and a malformed duration', () => {
    const values = join(work, 'bad-values.yaml');
    writeFileSync(values, stringify({ server: { metrics: { prometheusRule: { latency: { p99Seconds: 3 } } } } }));
    assert.throws(() => render({ set: ON, values: [values] }), /p99Seconds/);
    assert.throws(
      () => render({ set: [...ON, 'server.metrics.prometheusRule.noConsumer.for=2 minutes'] }),
      /noConsumer\/for/,
    );
  });
});

describe('promtool', () => {
  it('check rules accepts the rendered rules (every expression parses, templates included)', () => {
    const file = join(work, 'check.rules.yaml');
    writeFileSync(file, ruleFile(ruleGroups(render({ set: ON }))));
    const result = promtool(['check', 'rules', file]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /SUCCESS: 8 rules found/);
  });

  it('check rules rejects a broken expression (the check is not a no-op)', () => {
    const groups = ruleGroups(render({ set: ON }));
    groups[0]!.rules[0]!.expr = 'sum by (queue) (rate(rpc_server_requests_total[5m])';
    const file = join(work, 'broken.rules.yaml');
    writeFileSync(file, ruleFile(groups));
    const result = promtool(['check', 'rules', file]);
    assert.notEqual(result.status, 0);
  });

  it('test rules: every alert fires on its series and stays quiet on the others', () => {
    const dir = mkdtempSync(join(work, 'behaviour-'));
    const groups = ruleGroups(render(PROMTOOL_RENDER));
    writeFileSync(join(dir, 'rules.yaml'), ruleFile(groups, { annotations: false }));
    copyFileSync(join(ALERTS_DIR, 'behaviour.test.yaml'), join(dir, 'behaviour.test.yaml'));
    const result = promtool(['test', 'rules', join(dir, 'behaviour.test.yaml')]);
    assert.equal(result.status, 0, result.stdout + result.stderr);

    // Each alert of the chart has at least one firing and one quiet case in the file.
    const spec = parse(readFileSync(join(ALERTS_DIR, 'behaviour.test.yaml'), 'utf8')) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
    };
    const cases = spec.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const rule of groups.flatMap((g) => g.rules)) {
      const mine = cases.filter((c) => c.alertname === rule.alert);
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${rule.alert}: no promtool case in which it fires`,
      );
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${rule.alert}: no promtool case in which it stays quiet`,
      );
    }
  });

  it('test rules: the annotations expand to the text an operator reads', () => {
    const dir = mkdtempSync(join(work, 'annotations-'));
    writeFileSync(join(dir, 'rules.yaml'), ruleFile(ruleGroups(render(PROMTOOL_RENDER))));
    copyFileSync(join(ALERTS_DIR, 'annotations.test.yaml'), join(dir, 'annotations.test.yaml'));
    const result = promtool(['test', 'rules', join(dir, 'annotations.test.yaml')]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });

  it('test rules fails when an alert misbehaves (the unit tests can fail)', () => {
    const dir = mkdtempSync(join(work, 'mutant-'));
    const groups = ruleGroups(render(PROMTOOL_RENDER));
    const rule = groups[0]!.rules.find((r) => r.alert === 'FibRpcNoConsumer');
    assert.ok(rule);
    rule.expr = rule.expr.replace('== 0', '>= 0');
    writeFileSync(join(dir, 'rules.yaml'), ruleFile(groups, { annotations: false }));
    copyFileSync(join(ALERTS_DIR, 'behaviour.test.yaml'), join(dir, 'behaviour.test.yaml'));
    const result = promtool(['test', 'rules', join(dir, 'behaviour.test.yaml')]);
    assert.notEqual(result.status, 0);
    assert.match(result.stdout + result.stderr, /FibRpcNoConsumer/);
  });
});
