import { trace } from '@opentelemetry/api';
import pino, { type Logger } from 'pino';

/**
 * JSON logs on stderr (stdout belongs to the client's answers). Inside a span every line
 * carries trace_id and span_id, so a log line leads to its trace in Jaeger.
 */
export function createLogger(
  name: string,
  level: string,
  destination: pino.DestinationStream = pino.destination({ dest: 2, sync: true }),
): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin() {
        const context = trace.getActiveSpan()?.spanContext();
        return context ? { trace_id: context.traceId, span_id: context.spanId } : {};
      },
    },
    destination,
  );
}
