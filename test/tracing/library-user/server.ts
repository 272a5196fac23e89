/** A server as a library user writes one: started with `node server.ts`, no preload. Prints "ready", stops on SIGTERM. */

import { defineMethod, implement, RpcServer, silentLogger } from '@fib-rpc/rpc';
import { stopTracing } from './telemetry.ts';

const echo = defineMethod<{ say: string }, { said: string }>({
  name: 'echo',
  parse: (params) => params as { say: string },
});

const server = new RpcServer({
  url: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  queue: process.env.QUEUE,
  log: silentLogger,
  methods: [implement(echo, ({ say }) => ({ said: say }))],
});
await server.start();
process.stdout.write('ready\n');
process.once('SIGTERM', async () => {
  await server.stop();
  await stopTracing();
  process.exit(0);
});
