/**
 * Helpers shared by the alert, dashboard and live Prometheus tests: the chart's PrometheusRule
 * as a Prometheus rule file, and the dashboard's queries.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { CHART, type K8sObject, only } from './lib.ts';

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface RuleGroup {
  name: string;
  rules: AlertRule[];
}

/** The rule groups of the rendered PrometheusRule (what the operator hands to Prometheus). */
export function ruleGroups(objects: readonly K8sObject[]): RuleGroup[] {
  const rule = only(objects, 'PrometheusRule');
  return (rule.spec as { groups: RuleGroup[] }).groups;
}

/** A Prometheus rule file; `annotations: false` drops them (the behaviour tests need not spell them out). */
export function ruleFile(groups: readonly RuleGroup[], options: { annotations?: boolean } = {}): string {
  const keep = options.annotations ?? true;
  const copy = groups.map((g) => ({
    ...g,
    rules: g.rules.map((r) => {
      const { annotations, ...rest } = r;
      return keep && annotations ? { ...rest, annotations } : rest;
    }),
  }));
  return stringify({ groups: copy });
}

export const DASHBOARD_FILE = join(CHART, 'dashboards/fib-rpc.json');

export interface Target {
  expr: string;
  refId: string;
  legendFormat?: string;
  datasource?: { type?: string; uid?: string };
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

export interface Variable {
  name: string;
  type: string;
  query?: string | { query: string };
  datasource?: { type?: string; uid?: string };
  hide?: number;
}

export interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  links?: { title: string; url: string; type: string }[];
  templating: { list: Variable[] };
}

export function readDashboard(text = readFileSync(DASHBOARD_FILE, 'utf8')): Dashboard {
  return JSON.parse(text) as Dashboard;
}

/** Every panel, rows' children included. */
export function allPanels(dashboard: Dashboard): Panel[] {
  return dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}
