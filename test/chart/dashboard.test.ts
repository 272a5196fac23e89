/**
 * The Grafana dashboard (charts/fib-rpc/dashboards/fib-rpc.json) and its ConfigMap: the JSON's
 * structure (unique panel ids, every panel and query on the datasource variable, every query
 * scoped to the namespace and release variables, the panels the operators asked for, a Jaeger
 * link), and the ConfigMap the chart renders for Grafana's sidecar. Whether each query returns
 * data is test/monitoring/prometheus.test.ts' job.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { find, only, render, validateObjects } from './lib.ts';
import { allPanels, type Dashboard, readDashboard } from './monitoring.ts';

const ON = ['server.metrics.grafanaDashboard.enabled=true'];
/** Grafana's reference to the datasource variable (a literal, not a JS template). */
const DATASOURCE_VAR = '$' + '{datasource}';

/** Structural problems of a dashboard; empty when it is sound. */
function problems(dashboard: Dashboard): string[] {
  const out: string[] = [];
  const panels = allPanels(dashboard);
  const ids = panels.map((p) => p.id);
  for (const id of new Set(ids)) {
    if (ids.filter((i) => i === id).length > 1) out.push(`panel id ${id} is used more than once`);
  }
  if (ids.some((id) => !Number.isInteger(id))) out.push('a panel has no integer id');
  const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
  const datasource = variables.get('datasource');
  if (datasource?.type !== 'datasource' || datasource.query !== 'prometheus') {
    out.push('no datasource variable of type prometheus');
  }
  for (const name of ['namespace', 'release']) {
    const variable = variables.get(name);
    const query = typeof variable?.query === 'object' ? variable.query.query : variable?.query;
    if (variable?.type !== 'query') out.push(`no query variable ${name}`);
    if (variable?.datasource?.uid !== DATASOURCE_VAR) out.push(`variable ${name} does not query $datasource`);
    if (!query?.startsWith('label_values(')) out.push(`variable ${name} is not a label_values() query`);
  }
  const release = variables.get('release');
  const releaseQuery = typeof release?.query === 'object' ? release.query.query : release?.query;
  if (!releaseQuery?.includes('namespace="$namespace"')) out.push('release does not depend on namespace');
  for (const panel of panels) {
    if (panel.type === 'row') continue;
    const where = `panel ${panel.id} "${panel.title}"`;
    if (panel.datasource?.uid !== DATASOURCE_VAR) out.push(`${where}: datasource is not $datasource`);
    if (!panel.targets?.length) out.push(`${where}: no queries`);
    const refIds = new Set<string>();
    for (const target of panel.targets ?? []) {
      if (refIds.has(target.refId)) out.push(`${where}: refId ${target.refId} twice`);
      refIds.add(target.refId);
      if (target.datasource?.uid !== DATASOURCE_VAR)
        out.push(`${where} ${target.refId}: datasource is not $datasource`);
      // Every selector of the query is scoped to the chosen namespace and release.
      for (const selector of target.expr.match(/\{[^}]*\}/g) ?? []) {
        if (
          !selector.includes('namespace="$namespace"') ||
          !selector.includes('app_kubernetes_io_instance="$release"')
        ) {
          out.push(`${where} ${target.refId}: selector ${selector} is not scoped to $namespace and $release`);
        }
      }
      const metrics = target.expr.match(/\b(rpc_server|rabbitmq_detailed)_[a-z_]+(?=\{)/g) ?? [];
      if (metrics.length === 0) out.push(`${where} ${target.refId}: no fib-rpc or broker metric with a selector`);
    }
  }
  return out;
}

describe('Grafana dashboard JSON', () => {
  const dashboard = readDashboard();

  it('is structurally sound: unique ids, datasource and variables wired into every panel and query', () => {
    assert.deepEqual(problems(dashboard), []);
    assert.deepEqual(
      dashboard.templating.list.map((v) => v.name),
      ['datasource', 'namespace', 'release', 'queue'],
    );
  });

  it('the structure check catches a duplicate id, a fixed datasource and an unscoped query', () => {
    const broken = structuredClone(dashboard);
    broken.panels[1]!.id = broken.panels[0]!.id;
    broken.panels[2]!.datasource = { type: 'prometheus', uid: 'prod-prometheus' };
    broken.panels[3]!.targets![0]!.expr = 'sum(rpc_server_in_flight{namespace="$namespace"})';
    const found = problems(broken).join('\n');
    assert.match(found, /panel id \d+ is used more than once/);
    assert.match(found, /datasource is not \$datasource/);
    assert.match(found, /not scoped to \$namespace and \$release/);
  });

  it('has the panels operators look at, and a link to Jaeger', () => {
    const byTitle = new Map(allPanels(dashboard).map((p) => [p.title, p]));
    const exprs = (title: string) => {
      const panel = byTitle.get(title);
      assert.ok(panel, `no panel "${title}"`);
      return (panel.targets ?? []).map((t) => t.expr).join('\n');
    };
    assert.match(exprs('Calls/s by outcome'), /sum by \(outcome\) \(rate\(rpc_server_requests_total\{/);
    const latency = exprs('Handler latency percentiles');
    for (const q of ['0.5', '0.9', '0.99']) {
      assert.match(
        latency,
        new RegExp(`histogram_quantile\\(${q.replace('.', '\\.')}, .*rpc_server_handler_duration_seconds_bucket`),
      );
    }
    assert.match(exprs('In flight per server'), /sum by \(pod\) \(rpc_server_in_flight\{/);
    const scaling = exprs('Servers against queue depth');
    assert.match(scaling, /rabbitmq_detailed_queue_messages_ready\{[^}]*queue="\$queue"/);
    assert.match(scaling, /rabbitmq_detailed_queue_messages_unacked\{[^}]*queue="\$queue"/);
    assert.match(scaling, /count\(rpc_server_broker_connected\{/);
    assert.match(exprs('Dead-letter queue depth'), /rabbitmq_detailed_queue_messages\{[^}]*queue="\$\{queue\}\.dlq"/);
    assert.match(exprs('Broker connection per server'), /rpc_server_broker_connected\{/);
    // Errors over all settled requests. With calls but no error series yet (a counter appears
    // with its first error) the numerator falls back to 0, so the panel reads 0, not "No data";
    // without calls the denominator drops out (> 0), since a share of nothing is no number and
    // a 0 there would claim a clean run. test/monitoring checks both against Prometheus.
    assert.match(
      exprs('Error replies'),
      /^\(sum\(rate\(rpc_server_requests_total\{[^}]*outcome=~"invalid\|failed"\}\[\$__rate_interval\]\)\) or vector\(0\)\) \/ \(sum\(rate\(rpc_server_requests_total\{[^}]*\}\[\$__rate_interval\]\)\) > 0\)$/,
    );
    const jaeger = dashboard.links?.find((l) => l.title === 'Jaeger');
    assert.match(jaeger?.url ?? '', /^https?:\/\/.+\/search\?service=fib-rpc-server$/);
  });
});

describe('Grafana dashboard ConfigMap', () => {
  it('is absent by default', () => {
    assert.deepEqual(
      find(render(), 'ConfigMap').filter((c) => c.metadata.name.endsWith('-dashboard')),
      [],
    );
  });

  it("carries the sidecar's label and the dashboard with this release's queue and Jaeger URL; it validates", () => {
    const objects = render({
      set: [...ON, 'config.rpcQueue=orders', 'server.metrics.grafanaDashboard.jaegerUrl=https://jaeger.example/'],
      // A ConfigMap needs no operator: it renders where Grafana's sidecar runs without one.
      apiVersions: [],
    });
    const configMap = only(objects, 'ConfigMap', 'fib-rpc-server-dashboard');
    assert.deepEqual(validateObjects([configMap]), []);
    assert.equal(configMap.metadata.labels?.grafana_dashboard, '1');
    const data = configMap.data as Record<string, string>;
    const rendered = readDashboard(data['fib-rpc.json']);
    const original = readDashboard();
    assert.equal(rendered.templating.list.find((v) => v.name === 'queue')?.query, 'orders');
    assert.equal(
      rendered.links?.find((l) => l.title === 'Jaeger')?.url,
      'https://jaeger.example/search?service=fib-rpc-server',
    );
    // Nothing else changes on the way through the chart.
    const normalise = (d: Dashboard) => {
      const copy = structuredClone(d);
      for (const v of copy.templating.list) if (v.name === 'queue') v.query = '';
      for (const l of copy.links ?? []) if (l.title === 'Jaeger') l.url = '';
      return copy;
    };
    assert.deepEqual(normalise(rendered), normalise(original));
    assert.deepEqual(problems(rendered), []);
  });

  it('the label and annotations are configurable', () => {
    const objects = render({
      set: [
        ...ON,
        'server.metrics.grafanaDashboard.labels.grafana_dashboard=null',
        'server.metrics.grafanaDashboard.labels.dashboards=fib-rpc',
        'server.metrics.grafanaDashboard.annotations.grafana_folder=Messaging',
      ],
    });
    const configMap = only(objects, 'ConfigMap', 'fib-rpc-server-dashboard');
    assert.equal(configMap.metadata.labels?.grafana_dashboard, undefined);
    assert.equal(configMap.metadata.labels?.dashboards, 'fib-rpc');
    assert.equal(configMap.metadata.annotations?.grafana_folder, 'Messaging');
  });
});
