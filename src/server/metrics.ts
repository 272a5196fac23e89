import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Outcome, ServerObserver } from '../rpc/server.ts';

/** Prometheus metrics of one server process, fed by the RpcServer's observer hooks. */
export function createServerMetrics(): { registry: Registry; observer: ServerObserver } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'rpc_server_requests_total',
    help: 'Requests settled, by method and outcome (ok, invalid, failed, dead_lettered, expired).',
    labelNames: ['method', 'outcome'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'rpc_server_handler_duration_seconds',
    help: 'Time from delivery to reply, by method.',
    labelNames: ['method'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: 'rpc_server_in_flight',
    help: 'Requests being worked on now.',
    registers: [registry],
  });
  const connected = new Gauge({
    name: 'rpc_server_broker_connected',
    help: '1 while connected to the broker and consuming.',
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
  // Label children are looked up once per (method, outcome), not on every request.
  const children = new Map<string, { count: { inc(): void }; time: { observe(v: number): void } }>();
  const child = (method: string, outcome: Outcome) => {
    const key = `${method}\u0000${outcome}`;
    let found = children.get(key);
    if (found === undefined) {
      found = { count: requests.labels(method, outcome), time: duration.labels(method) };
      children.set(key, found);
    }
    return found;
  };
  const observer: ServerObserver = {
    settled(method, outcome, seconds) {
      const { count, time } = child(method, outcome);
      count.inc();
      time.observe(seconds);
    },
    inFlight(count) {
      inFlight.set(count);
    },
    connected(up) {
      connected.set(up ? 1 : 0);
    },
    redelivered() {
      redelivered.inc();
    },
    unroutable() {
      unroutable.inc();
    },
  };
  return { registry, observer };
}
