/**
 * @fib-rpc/rpc: request/reply over RabbitMQ with direct reply-to, deadlines, retries,
 * draining, broker alarms and W3C trace context. This entry is the whole public API (see
 * README.md); it knows no particular service.
 */

export type { ClientObserver, StrayReply } from './client/observer.ts';
export { type CallOptions, type CallResult, RpcClient, type RpcClientOptions } from './client/rpc-client.ts';
export { parseBrokerUrls } from './connection/broker-addresses.ts';
export type { ConnectionOptions, TlsOptions } from './connection/open-connection.ts';
export { BROKER_DEFAULTS, CLIENT_DEFAULTS, SERVER_DEFAULTS } from './defaults.ts';
export * from './errors.ts';
export { type Logger, silentLogger } from './logger.ts';
export { defineMethod, type Method, type ParamsOf, type ResultOf } from './method.ts';
export { DIRECT_REPLY_TO, JSON_CONTENT_TYPE, PROTOCOL_VERSION } from './protocol.ts';
export type { Outcome, ServerObserver } from './server/observer.ts';
export { type Handler, type HandlerContext, UNKNOWN_METHOD_LABEL } from './server/pipeline.ts';
export {
  type DeadLetterOptionNames,
  deadLetterQueue,
  deadLetterQueueArguments,
  type QueueSettings,
  workQueueArguments,
} from './server/queues.ts';
export { type Implementation, implement, RpcServer, type RpcServerOptions } from './server/rpc-server.ts';
