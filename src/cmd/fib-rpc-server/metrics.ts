import type { Outcome, ServerObserver } from '@fib-rpc/rpc';
import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client';

/** Prometheus metrics of one server process, fed by the RpcServer's observer hooks. */
export function createServerMetrics(): { registry: Registry; observer: Required<ServerObserver> } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // The per-request metrics are tallied in plain numbers and handed to prom-client when
  // /metrics is scraped: prom-client validates and hashes label values on every update,
  // a few percent of the server's CPU under load for numbers nobody reads in between.
  const tallies = new Map<string, Tally>();
  const timings = new Map<string, Timing>();
  new Counter({
    name: 'rpc_server_requests_total',
    help: 'Requests settled, by method and outcome (ok, invalid, failed, dead_lettered, expired).',
    labelNames: ['method', 'outcome'],
    registers: [registry],
    collect() {
      for (const tally of tallies.values()) {
        if (tally.unreported > 0) this.inc(tally.labels, tally.unreported);
        tally.unreported = 0;
      }
    },
  });
  registry.registerMetric(histogramMetric(DURATION, timings) as unknown as Metric);
  let inFlightNow = 0;
  new Gauge({
    name: 'rpc_server_in_flight',
    help: 'Requests being worked on now.',
    registers: [registry],
    collect() {
      this.set(inFlightNow);
    },
  });
  const connected = new Gauge({
    name: 'rpc_server_broker_connected',
    help: '1 while connected to the broker and consuming.',
    registers: [registry],
  });
  const blocked = new Gauge({
    name: 'rpc_server_broker_blocked',
    help: "1 while the broker blocks this server's connection (a memory or disk alarm): replies and acks wait unread.",
    registers: [registry],
  });
  blocked.set(0);
  const brokerInfo = new Gauge({
    name: 'rpc_server_broker_info',
    help: 'The broker node this server connects to (scheme://host:port), as a label; always 1.',
    labelNames: ['broker'],
    registers: [registry],
  });
  const redelivered = new Counter({
    name: 'rpc_server_redelivered_total',
    help: 'Deliveries flagged redelivered: a consumer before this one took them and died or lost its channel before acking.',
    registers: [registry],
  });
  const unroutable = new Counter({
    name: 'rpc_server_unroutable_replies_total',
    help: 'Replies returned by the broker because their reply_to names no queue. Replies over direct reply-to to a caller that has gone are dropped by the broker unseen.',
    registers: [registry],
  });
  const hookErrors = new Counter({
    name: 'rpc_server_hook_errors_total',
    help: 'Observer hooks that threw, by hook: each was logged and ignored; a non-zero value is a bug in what observes the server.',
    labelNames: ['hook'],
    registers: [registry],
  });
  const observer: Required<ServerObserver> = {
    settled(method, outcome, seconds) {
      const key = `${method}\u0000${outcome}`;
      let tally = tallies.get(key);
      if (tally === undefined) {
        tally = { labels: { method, outcome }, unreported: 0 };
        tallies.set(key, tally);
      }
      tally.unreported++;
      let timing = timings.get(method);
      if (timing === undefined) {
        timing = { method, counts: new Array<number>(DURATION.buckets.length + 1).fill(0), sum: 0, count: 0 };
        timings.set(method, timing);
      }
      const buckets = DURATION.buckets;
      let i = 0;
      while (i < buckets.length && seconds > (buckets[i] as number)) i++;
      timing.counts[i] = (timing.counts[i] as number) + 1;
      timing.sum += seconds;
      timing.count++;
    },
    inFlight(count) {
      inFlightNow = count;
    },
    connected(up, broker) {
      connected.set(up ? 1 : 0);
      // One series, for the node in use: a failover moves it rather than leaving a stale one.
      brokerInfo.reset();
      brokerInfo.set({ broker }, 1);
    },
    blocked(up) {
      blocked.set(up ? 1 : 0);
    },
    redelivered() {
      redelivered.inc();
    },
    unroutable() {
      unroutable.inc();
    },
    hookFailed(hook) {
      hookErrors.inc({ hook });
    },
  };
  return { registry, observer };
}

interface Tally {
  labels: { method: string; outcome: Outcome };
  unreported: number;
}

/** Observations of one method: per-bucket counts (not cumulative; the last is +Inf), sum, count. */
interface Timing {
  method: string;
  counts: number[];
  sum: number;
  count: number;
}

const DURATION = {
  name: 'rpc_server_handler_duration_seconds',
  help: 'Time from delivery to reply, by method.',
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
};

/** A histogram in prom-client's metric shape (what Registry reads), fed from plain numbers. */
function histogramMetric(spec: typeof DURATION, timings: Map<string, Timing>) {
  const get = async () => {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    for (const t of timings.values()) {
      let cumulative = 0;
      spec.buckets.forEach((le, i) => {
        cumulative += t.counts[i] as number;
        values.push({ metricName: `${spec.name}_bucket`, labels: { le, method: t.method }, value: cumulative });
      });
      values.push({ metricName: `${spec.name}_bucket`, labels: { le: '+Inf', method: t.method }, value: t.count });
      values.push({ metricName: `${spec.name}_sum`, labels: { method: t.method }, value: t.sum });
      values.push({ metricName: `${spec.name}_count`, labels: { method: t.method }, value: t.count });
    }
    return { name: spec.name, help: spec.help, type: 'histogram', aggregator: 'sum', values };
  };
  return {
    name: spec.name,
    help: spec.help,
    type: 'histogram',
    aggregator: 'sum',
    get,
    reset: () => timings.clear(),
  };
}
