/**
 * The benchmark's own servers, one process each: `node bench/server.ts`, configured by
 * BENCH_* variables. fib-rpc's server is not here: the benchmark runs its real entry point.
 *
 *   floor            raw amqplib: consume, compute, reply to reply_to, ack after the reply
 *   rabbitmq-client  its createConsumer(); replies with reply(), acks when the handler resolves
 *   nestjs           a NestJS microservice app on the RMQ transport (@MessagePattern('fib'))
 *
 * All answer the same work (fib(n) of the same code) with the same delivery guarantee
 * (at-least-once: manual acks) and the same prefetch. NestJS's own default is noAck
 * (at-most-once: a request in flight is lost when a server dies); to match the others it
 * runs with noAck: false and the manual ack its documentation shows, unless
 * BENCH_NEST_NOACK=true (the nestjs-noack variant: Nest's defaults untouched).
 */
import type { RmqContext } from '@nestjs/microservices';
import amqp from 'amqplib';
import { AMQP_URL, dist, firstUrl, LAYOUT, type QueueType, type ServerKind } from './lib/common.ts';
import { flushTracing } from './lib/flush.ts';

const kind = process.env.BENCH_KIND as ServerKind;
const queue = process.env.BENCH_QUEUE ?? 'bench';
const queueType = (process.env.BENCH_QUEUE_TYPE ?? 'classic') as QueueType;
const prefetch = Number(process.env.BENCH_PREFETCH ?? 16);
const noDelay = process.env.BENCH_NODELAY === 'true';
const nestNoAck = process.env.BENCH_NEST_NOACK === 'true';
const queueArguments = { 'x-queue-type': queueType };

const { fib } = await dist<typeof import('../src/fib/fib.ts')>(LAYOUT.fib);
/** Raw amqplib and the peers take one URL; a cluster's list starts with its first node. */
const url = firstUrl(AMQP_URL);

async function floor(): Promise<void> {
  const model = await amqp.connect(url, { noDelay: true });
  const channel = await model.createChannel();
  await channel.assertQueue(queue, { durable: true, arguments: queueArguments });
  await channel.prefetch(prefetch);
  await channel.consume(queue, (msg) => {
    if (msg === null) return;
    const { n } = JSON.parse(msg.content.toString()) as { n: number };
    channel.publish('', msg.properties.replyTo, Buffer.from(`{"result":"${fib(n)}"}`), {
      correlationId: msg.properties.correlationId,
      contentType: 'application/json',
    });
    channel.ack(msg);
  });
}

async function rabbitmqClient(): Promise<void> {
  const { Connection } = await import('rabbitmq-client');
  const rabbit = new Connection({ url, noDelay });
  rabbit.on('error', () => {});
  rabbit.createConsumer(
    {
      queue,
      queueOptions: { durable: true, arguments: queueArguments },
      qos: { prefetchCount: prefetch },
    },
    async (req, reply) => {
      const { n } = req.body as { n: number };
      await reply({ result: fib(n).toString() });
    },
  );
}

async function nestjs(): Promise<void> {
  await import('reflect-metadata');
  const { Controller, Module } = await import('@nestjs/common');
  const { NestFactory } = await import('@nestjs/core');
  const { Ctx, MessagePattern, Payload, Transport } = await import('@nestjs/microservices');

  // What `@Controller() class { @MessagePattern('fib') fib(@Payload() data, @Ctx() context) {...} }`
  // compiles to: decorators are plain functions, applied here by hand (type stripping has none).
  class FibController {
    fib(data: { n: number }, context: RmqContext): string {
      // Nest sends the returned value as the reply after this returns.
      if (!nestNoAck) context.getChannelRef().ack(context.getMessage());
      return fib(data.n).toString();
    }
  }
  const method = Object.getOwnPropertyDescriptor(FibController.prototype, 'fib');
  if (method === undefined) throw new Error('no fib method');
  Payload()(FibController.prototype, 'fib', 0);
  Ctx()(FibController.prototype, 'fib', 1);
  MessagePattern('fib')(FibController.prototype, 'fib', method);
  Controller()(FibController);
  class AppModule {}
  Module({ controllers: [FibController] })(AppModule);

  const app = await NestFactory.createMicroservice(AppModule, {
    logger: false,
    transport: Transport.RMQ,
    options: {
      urls: [url],
      queue,
      queueOptions: { durable: true, arguments: queueArguments },
      ...(nestNoAck ? {} : { noAck: false, prefetchCount: prefetch }),
      ...(noDelay ? { socketOptions: { connectionOptions: { noDelay: true } } } : {}),
    },
  });
  await app.listen();
}

// The stock OTel variant's spans must all reach the sink (bench/lib/sink.ts counts them).
process.once('SIGTERM', () => {
  flushTracing(2500).then(() => process.exit(0));
});
if (kind === 'floor') await floor();
else if (kind === 'rabbitmq-client') await rabbitmqClient();
else if (kind === 'nestjs') await nestjs();
else throw new Error(`unknown server kind ${kind}`);
