import { RemoteError, RpcError } from '@fib-rpc/rpc';

/** Documented in README.md ("Exit codes"); scripts rely on them. */
export const EXIT = {
  ok: 0,
  unexpected: 1,
  invalidInput: 2,
  noResponder: 3,
  timeout: 4,
  remoteError: 5,
  /** A reply the client cannot read: a broken responder, or one speaking another protocol. */
  protocolError: 9,
  connection: 6,
  wrongAnswer: 7,
  /** SIGTERM or SIGINT: a call abandoned unanswered, or a load cut short (its summary printed). */
  interrupted: 8,
  /** The broker blocked publishing (a memory or disk alarm): retry later. */
  brokerBlocked: 10,
} as const;

export function exitCodeFor(err: unknown): number {
  if (!(err instanceof RpcError)) return EXIT.unexpected;
  switch (err.code) {
    case 'INVALID_REQUEST':
      return err instanceof RemoteError ? EXIT.remoteError : EXIT.invalidInput;
    case 'NO_RESPONDER':
      return EXIT.noResponder;
    case 'TIMEOUT':
      return EXIT.timeout;
    case 'ABORTED':
      return EXIT.interrupted;
    case 'PROTOCOL_ERROR':
      return err instanceof RemoteError ? EXIT.remoteError : EXIT.protocolError;
    case 'CONNECTION_FAILED':
    case 'CONNECTION_LOST':
      return EXIT.connection;
    case 'BROKER_BLOCKED':
      return EXIT.brokerBlocked;
    default:
      return err instanceof RemoteError ? EXIT.remoteError : EXIT.unexpected;
  }
}
