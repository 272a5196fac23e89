{{/*
The broker over its lifetime: what runs now, and what a change of it may do.

What runs now comes from rabbitmq.upgrade.running when it is set (a render without access to
the cluster: helm template, Argo CD, the chart's unit tests), else from the live StatefulSet,
read through lookup (helm install/upgrade; empty under helm template). As JSON:
  found         a broker StatefulSet of this release exists
  version       the RabbitMQ version it runs (x.y.z; "" when it cannot be told)
  featureFlags  enabled: every pod of it enabled all stable feature flags after it booted
                (the StatefulSet says its pods do, and its rollout finished); pending: the
                rollout has not finished; unknown: made by a chart that never enabled them
  replicas      its nodes
  nodeDomain    what its node names carry after the namespace ("" or ".svc.<domain>")
*/}}
{{- define "fib-rpc.rabbitmqRunning" -}}
{{- $given := .Values.rabbitmq.upgrade.running | default dict -}}
{{- if $given -}}
{{- dict "found" true "version" ($given.version | default "" | toString) "featureFlags" ($given.featureFlags | default "unknown" | toString) "replicas" ($given.replicas | default 1 | int) "nodeDomain" ($given.nodeDomain | default "" | toString) | toJson -}}
{{- else -}}
{{- $sts := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "fib-rpc.rabbitmqName" .) -}}
{{- if not $sts -}}
{{- dict "found" false | toJson -}}
{{- else -}}
{{- $annotations := $sts.metadata.annotations | default dict -}}
{{- $container := dict -}}
{{- range $sts.spec.template.spec.containers }}{{ if eq .name "rabbitmq" }}{{ $container = . }}{{ end }}{{ end -}}
{{- $version := index $annotations "fib-rpc.io/rabbitmq-version" | default "" -}}
{{- if not $version -}}
{{- /* A StatefulSet of chart 0.2 or older: the version is in its image's tag. */ -}}
{{- $version = regexFind "[0-9]+\\.[0-9]+\\.[0-9]+" (last (splitList ":" ($container.image | default ""))) -}}
{{- end -}}
{{- $nodeName := "" -}}
{{- range $container.env }}{{ if eq .name "RABBITMQ_NODENAME" }}{{ $nodeName = .value | default "" }}{{ end }}{{ end -}}
{{- $status := $sts.status | default dict -}}
{{- $replicas := $sts.spec.replicas | default 1 | int -}}
{{- $rolledOut := and (eq (toString $status.currentRevision) (toString $status.updateRevision)) (eq (int ($status.updatedReplicas | default 0)) $replicas) (eq (int ($status.readyReplicas | default 0)) $replicas) (eq (int64 ($status.observedGeneration | default 0)) (int64 $sts.metadata.generation)) -}}
{{- $flags := "unknown" -}}
{{- if eq (index $annotations "fib-rpc.io/rabbitmq-feature-flags" | default "") "all" -}}
{{- $flags = ternary "enabled" "pending" $rolledOut -}}
{{- end -}}
{{- dict "found" true "version" $version "featureFlags" $flags "replicas" $replicas "nodeDomain" (regexFind "\\.svc\\..*$" $nodeName) | toJson -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
What a cluster's node names carry after "<pod>.<headless>.<namespace>": nothing for a new
cluster (the pod's DNS search path completes the name under any cluster domain, as with the
RabbitMQ Cluster Operator's names), or what the running StatefulSet's names carry, since a
node's data folder is named after the node. rabbitmq.clusterDomain, when set, says it.
*/}}
{{- define "fib-rpc.rabbitmqNodeDomain" -}}
{{- if .Values.rabbitmq.clusterDomain -}}
.svc.{{ .Values.rabbitmq.clusterDomain }}
{{- else -}}
{{- (include "fib-rpc.rabbitmqRunning" . | fromJson).nodeDomain | default "" -}}
{{- end -}}
{{- end }}
