/**
 * The RPC core as a library: request/reply over RabbitMQ with direct reply-to, deadlines,
 * retries, draining and tracing. It knows no particular service: the Fibonacci methods in
 * src/fib/ and the programs in src/cmd/ are built on this entry alone.
 */

export type { Attempt } from './client/attempt.ts';
export { type ClientObserver, ReplyCounts, type StrayReply } from './client/observer.ts';
export { type CallOptions, type CallResult, RpcClient, type RpcClientOptions } from './client/rpc-client.ts';
export { describeBroker, describeBrokers, parseBrokerUrls } from './connection/broker-addresses.ts';
export type { BrokerOptions } from './connection/open-connection.ts';
export * from './errors.ts';
export { defineMethod, type Method, type ParamsOf, type ResultOf } from './method.ts';
export { DIRECT_REPLY_TO, JSON_CONTENT_TYPE, PROTOCOL_VERSION } from './protocol.ts';
export type { Outcome, ServerObserver } from './server/observer.ts';
export { type Handler, type HandlerContext, UNKNOWN_METHOD_LABEL } from './server/pipeline.ts';
export {
  deadLetterQueue,
  deadLetterQueueArguments,
  deadLetterQueueKept,
  type QueueSettings,
  workQueueArguments,
} from './server/queues.ts';
export { RpcServer, type RpcServerOptions } from './server/rpc-server.ts';
export { RpcSpans, recordFailure } from './spans.ts';
