/**
 * The RPC core as a library: request/reply over RabbitMQ with direct reply-to, deadlines,
 * retries, draining and tracing. It knows nothing of any particular service; the programs
 * in src/cmd/ and the Fibonacci methods in src/fib/ are built on this entry alone.
 */
export {
  type CallOptions,
  type CallResult,
  type ClientStats,
  RpcClient,
  type RpcClientOptions,
} from './client/rpc-client.ts';
export { type BrokerOptions, describeBroker } from './connection/broker-connection.ts';
export * from './errors.ts';
export { DIRECT_REPLY_TO, JSON_CONTENT_TYPE, PROTOCOL_VERSION } from './protocol.ts';
export {
  deadLetterQueue,
  deadLetterQueueArguments,
  type Handler,
  type HandlerContext,
  type Outcome,
  RpcServer,
  type RpcServerOptions,
  type ServerObserver,
  UNKNOWN_METHOD_LABEL,
  workQueueArguments,
} from './server/rpc-server.ts';
