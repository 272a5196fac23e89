/**
 * Where a traced process's CPU goes, by what tracing does: each profile sample is given to
 * the innermost frame on its stack that belongs to one of the parts below (so the amqplib
 * publish that the instrumentation wraps counts as the call, and the serialiser that the
 * batch processor calls counts as serialisation). Start-up (module loading, SDK set-up) is
 * counted apart, so the parts describe the steady state.
 */

export interface Frame {
  functionName: string;
  url: string;
}

/** The parts, in the order the table prints them. */
export const PARTS = [
  'span creation and end (SDK spans, ids, clock, sampler)',
  'attributes (SDK checks and copies)',
  'context inject/extract (traceparent, baggage)',
  'async context (AsyncLocalStorage, context API)',
  'amqplib instrumentation (its wrappers and attributes)',
  'BatchSpanProcessor',
  'OTLP serialisation (protobuf)',
  'OTLP/HTTP export (request, response)',
  'the call itself (amqplib, fib-rpc, bench loop)',
  'event loop, I/O and other',
  'garbage collection',
] as const;
export type Part = (typeof PARTS)[number] | 'start-up';

const otel = (url: string, pkg: string) => url.includes(`/node_modules/@opentelemetry/${pkg}/`);

function isStartUp(frame: Frame): boolean {
  const { url, functionName } = frame;
  return (
    url.startsWith('node:internal/modules/') ||
    url.startsWith('node:internal/deps/amaro') ||
    url.includes('/node_modules/yaml/') ||
    url.includes('/node_modules/convict/') ||
    url.includes('/node_modules/require-in-the-middle/') ||
    otel(url, 'sdk-node') ||
    otel(url, 'configuration') ||
    functionName === 'compileSourceTextModule'
  );
}

/** The part a single frame belongs to, or undefined when it says nothing about tracing. */
export function partOf(frame: Frame): Part | undefined {
  const { url, functionName } = frame;
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (otel(url, 'otlp-transformer') || url.endsWith('/telemetry/span-encoder.js')) {
    return 'OTLP serialisation (protobuf)';
  }
  if (
    otel(url, 'otlp-exporter-base') ||
    url.includes('/node_modules/@opentelemetry/exporter-trace-otlp') ||
    url.endsWith('/telemetry/span-exporter.js')
  ) {
    return 'OTLP/HTTP export (request, response)';
  }
  if (otel(url, 'sdk-trace') && /\/export\/|MultiSpanProcessor/.test(url)) return 'BatchSpanProcessor';
  if (otel(url, 'core') && url.includes('/common/attributes')) return 'attributes (SDK checks and copies)';
  if (
    (otel(url, 'core') && /\/(propagation|baggage|trace)\//.test(url)) ||
    (otel(url, 'api') && /propagation|TextMapPropagator|baggage/.test(url))
  ) {
    return 'context inject/extract (traceparent, baggage)';
  }
  if (
    otel(url, 'context-async-hooks') ||
    (otel(url, 'api') && /\/(context|api\/context)\b|context-utils/.test(url)) ||
    url.startsWith('node:internal/async_context_frame') ||
    url.startsWith('node:async_hooks')
  ) {
    return 'async context (AsyncLocalStorage, context API)';
  }
  if (otel(url, 'sdk-trace') || otel(url, 'core') || otel(url, 'api') || url.endsWith('/rpc/spans.js')) {
    return 'span creation and end (SDK spans, ids, clock, sampler)';
  }
  if (otel(url, 'instrumentation-amqplib')) return 'amqplib instrumentation (its wrappers and attributes)';
  if (url.includes('/node_modules/amqplib/') || /\/(dist|src|bench)\//.test(url)) {
    return 'the call itself (amqplib, fib-rpc, bench loop)';
  }
  return undefined;
}

/** The part a sample belongs to, given its stack from the leaf to the root. */
export function classify(stack: Frame[]): Part {
  if (stack.some(isStartUp)) return 'start-up';
  for (const frame of stack) {
    const part = partOf(frame);
    if (part !== undefined) return part;
  }
  return 'event loop, I/O and other';
}
