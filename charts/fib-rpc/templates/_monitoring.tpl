{{/*
The runbook annotation of an alert: runbook_url when server.metrics.prometheusRule.runbookUrl
points at a published docs/operations.md, else the path of the section in the chart's repository.
Pass (dict "url" .Values.server.metrics.prometheusRule.runbookUrl "anchor" "fibrpcnoconsumer").
*/}}
{{- define "fib-rpc.runbook" -}}
{{- if .url -}}
runbook_url: {{ printf "%s#%s" .url .anchor | quote }}
{{- else -}}
runbook: {{ printf "docs/operations.md#%s" .anchor | quote }}
{{- end -}}
{{- end }}
