/**
 * The OTLP/HTTP protobuf span exporter of @opentelemetry/exporter-trace-otlp-proto, put
 * together from the same upstream parts (transport, retries, OTEL_EXPORTER_OTLP_* settings,
 * response handling), with one part swapped: the request is encoded by SpanEncoder, which
 * writes the same bytes for much less CPU (span-encoder.ts).
 */
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { ProtobufTraceSerializer, TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer';
import { type EncodableSpan, SpanEncoder } from './span-encoder.ts';

export class ProtobufSpanExporter extends OTLPExporterBase<EncodableSpan[]> {
  constructor() {
    const encoder = new SpanEncoder();
    const serializer = {
      serializeRequest: (spans: EncodableSpan[]) => encoder.encode(spans),
      deserializeResponse: ProtobufTraceSerializer.deserializeResponse,
    };
    const options = convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' });
    // The exporter's own metrics stay off, as in the stock exporter without a meter provider.
    super(
      createOtlpHttpExportDelegate(
        options,
        serializer,
        'otlp_http_span_exporter',
        TraceExporterMetricsHelper as never,
        undefined,
      ),
    );
  }
}
