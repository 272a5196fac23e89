{{/*
Bytes of Jaeger's memory store per trace, for the default sizing of max_traces. Measured when
one fib-rpc call was a trace of six spans from two services (client call and publish, server
process, handler and reply): ~8.5 KiB live heap each in Jaeger v2's memory store, plus a third
for traces with errors and longer attributes. A call now makes two spans (CLI calls three),
so this errs on the side of fewer traces; not measured again.
*/}}
{{- define "fib-rpc.jaegerBytesPerTrace" -}}12288{{- end }}

{{/* max_traces: jaeger.maxTraces, or half of the memory limit divided by the bytes per trace. */}}
{{- define "fib-rpc.jaegerMaxTraces" -}}
{{- if .Values.jaeger.maxTraces -}}
{{ .Values.jaeger.maxTraces | int64 }}
{{- else -}}
{{ div (div (include "fib-rpc.bytes" .Values.jaeger.resources.limits.memory | int64) 2) (include "fib-rpc.jaegerBytesPerTrace" . | int64) }}
{{- end -}}
{{- end }}

{{/*
Jaeger v2 config: the image's built-in all-in-one config (cmd/jaeger/internal/all-in-one.yaml)
reduced to what this chart exposes (OTLP in, query UI, health), with the memory store bounded.
The built-in one keeps 100,000 traces, several times what a 512Mi pod holds.
*/}}
{{- define "fib-rpc.jaegerConfig" -}}
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {{ include "fib-rpc.jaegerMaxTraces" . }}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 0.0.0.0:16686
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 0.0.0.0:13133

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
{{- end }}
