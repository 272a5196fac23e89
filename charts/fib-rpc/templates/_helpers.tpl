{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "fib-rpc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "fib-rpc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fib-rpc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: app.kubernetes.io/name and /instance only. Each component is its own
application (name <chart>-<component>: fib-rpc-server, fib-rpc-rabbitmq, ...), so the
Services and PDB of one release never select another component's pods.
Pass (dict "ctx" $ "component" "server").
*/}}
{{- define "fib-rpc.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-%s" (include "fib-rpc.name" .ctx) .component | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end }}

{{/* Standard labels on every object. Pass (dict "ctx" $ "component" "server"). */}}
{{- define "fib-rpc.labels" -}}
helm.sh/chart: {{ include "fib-rpc.chart" .ctx }}
{{ include "fib-rpc.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "fib-rpc.name" .ctx }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the pod templates (and claim template) of the broker and Jaeger: the standard set
without helm.sh/chart and app.kubernetes.io/version. A pod template that changed with every
chart or app version would restart the broker and drop Jaeger's in-memory traces on each
upgrade, and a StatefulSet's volumeClaimTemplates cannot change at all (the upgrade fails).
Pass (dict "ctx" $ "component" "rabbitmq").
*/}}
{{- define "fib-rpc.stablePodLabels" -}}
{{ include "fib-rpc.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: {{ include "fib-rpc.name" .ctx }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
A Kubernetes quantity ("512Mi", "1Gi", "4G", 1073741824) in bytes, as an integer string:
the broker's and Jaeger's configs are computed from the same numbers as their limits.
*/}}
{{- define "fib-rpc.bytes" -}}
{{- $q := toString . -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$" $q) -}}
{{- fail (printf "%q is not a memory or storage quantity such as 512Mi or 4Gi" $q) -}}
{{- end -}}
{{- $number := regexFind "^[0-9.]+" $q | float64 -}}
{{- $unit := regexReplaceAll "^[0-9.]+" $q "" -}}
{{- $factors := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- printf "%.0f" (mulf $number (index $factors $unit)) -}}
{{- end }}

{{- define "fib-rpc.serverName" -}}{{ include "fib-rpc.fullname" . }}-server{{- end }}
{{- define "fib-rpc.clientName" -}}{{ include "fib-rpc.fullname" . }}-client{{- end }}
{{- define "fib-rpc.rabbitmqName" -}}{{ include "fib-rpc.fullname" . }}-rabbitmq{{- end }}
{{- define "fib-rpc.jaegerName" -}}{{ include "fib-rpc.fullname" . }}-jaeger{{- end }}

{{- define "fib-rpc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fib-rpc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference: repository@digest when image.digest is set (what a release pins: the
tag can be moved, the digest cannot), else repository:tag. Pass (dict "image" X "tag" T). */}}
{{- define "fib-rpc.imageRef" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .tag }}
{{- end -}}
{{- end }}

{{- define "fib-rpc.serverImage" -}}
{{ include "fib-rpc.imageRef" (dict "image" .Values.server.image "tag" (.Values.server.image.tag | default .Chart.AppVersion)) }}
{{- end }}

{{- define "fib-rpc.clientImage" -}}
{{ include "fib-rpc.imageRef" (dict "image" .Values.client.image "tag" (.Values.client.image.tag | default .Chart.AppVersion)) }}
{{- end }}

{{- define "fib-rpc.rabbitmqImage" -}}
{{ include "fib-rpc.imageRef" (dict "image" .Values.rabbitmq.image "tag" .Values.rabbitmq.image.tag) }}
{{- end }}

{{- define "fib-rpc.jaegerImage" -}}
{{ include "fib-rpc.imageRef" (dict "image" .Values.jaeger.image "tag" .Values.jaeger.image.tag) }}
{{- end }}

{{/* ---------- broker wiring ---------- */}}

{{/* True ("true") when the chart itself writes the administrator's Secret (bundled broker only). */}}
{{- define "fib-rpc.createSecret" -}}
{{- if and .Values.rabbitmq.enabled (not .Values.rabbitmq.auth.existingSecret) }}true{{ end -}}
{{- end }}

{{/* Name of the Secret of the broker's administrator: read by the broker and the users Job only. */}}
{{- define "fib-rpc.secretName" -}}
{{- .Values.rabbitmq.auth.existingSecret | default (printf "%s-rabbitmq" (include "fib-rpc.fullname" .)) -}}
{{- end }}

{{/*
Broker roles: each process gets a broker user of its own, with only what it needs
(files/broker-roles.json, which the integration tests read too). "server", "client", "keda".
*/}}
{{- define "fib-rpc.roles" -}}
{{- if include "fib-rpc.kedaActive" . }}server,client,keda{{ else }}server,client{{ end -}}
{{- end }}

{{/* The broker user name of a role. Pass (dict "ctx" $ "role" "server"). */}}
{{- define "fib-rpc.roleUsername" -}}
{{ .ctx.Values.rabbitmq.auth.username }}-{{ .role }}
{{- end }}

{{/* "true" when the chart writes the role's Secret. Pass (dict "ctx" $ "role" "server"). */}}
{{- define "fib-rpc.createRoleSecret" -}}
{{- if not (include "fib-rpc.existingRoleSecret" .) }}true{{ end -}}
{{- end }}

{{/* The Secret a user named for the role, if any (externalRabbitmq.<role>.existingSecret, then externalRabbitmq.existingSecret). */}}
{{- define "fib-rpc.existingRoleSecret" -}}
{{- $v := .ctx.Values -}}
{{- if $v.rabbitmq.enabled -}}
{{ index $v.rabbitmq.auth.existingRoleSecrets .role | default "" }}
{{- else -}}
{{ (index $v.externalRabbitmq .role | default dict).existingSecret | default $v.externalRabbitmq.existingSecret | default "" }}
{{- end -}}
{{- end }}

{{/* Name of the Secret holding a role's amqp-url (and for keda management-url). Pass (dict "ctx" $ "role" "server"). */}}
{{- define "fib-rpc.roleSecretName" -}}
{{- include "fib-rpc.existingRoleSecret" . | default (printf "%s-rabbitmq-%s" (include "fib-rpc.fullname" .ctx) .role) -}}
{{- end }}

{{/* Key of a role's URL in its Secret. Pass (dict "ctx" $ "role" "keda" "url" "amqp" | "management"). */}}
{{- define "fib-rpc.roleUrlKey" -}}
{{- $keys := .ctx.Values.externalRabbitmq.existingSecretKeys -}}
{{- if and (not .ctx.Values.rabbitmq.enabled) (include "fib-rpc.existingRoleSecret" .) -}}
{{ ternary $keys.amqpUrl $keys.managementUrl (eq .url "amqp") }}
{{- else -}}
{{ .url }}-url
{{- end -}}
{{- end }}

{{/* A list of permission patterns (files/broker-roles.json) as one anchored regex; none: "^$". Pass (dict "patterns" L "queue" Q). */}}
{{- define "fib-rpc.permissionRegex" -}}
{{- $alternatives := list -}}
{{- range .patterns -}}
{{- $alternatives = append $alternatives (replace "{queue}" $.queue . | regexQuoteMeta) -}}
{{- end -}}
{{- if $alternatives -}}
^({{ join "|" $alternatives }})$
{{- else -}}
^$
{{- end -}}
{{- end }}

{{/*
The users the users Job applies, as JSON: { vhost, users: [{ role, name, tags, permissions }],
retired: [name] }. retired names the users of the roles this release does not use now (KEDA
turned off): the Job deletes them, so that no credential outlives its role.
*/}}
{{- define "fib-rpc.brokerUsers" -}}
{{- $roles := .Files.Get "files/broker-roles.json" | fromJson -}}
{{- $active := splitList "," (include "fib-rpc.roles" $) -}}
{{- $retired := list -}}
{{- range $role := keys $roles | sortAlpha -}}
{{- if not (has $role $active) -}}
{{- $retired = append $retired (include "fib-rpc.roleUsername" (dict "ctx" $ "role" $role)) -}}
{{- end -}}
{{- end -}}
{{- $users := list -}}
{{- range $role := $active -}}
{{- $spec := index $roles $role -}}
{{- $permissions := dict
  "configure" (include "fib-rpc.permissionRegex" (dict "patterns" $spec.configure "queue" $.Values.config.rpcQueue))
  "write" (include "fib-rpc.permissionRegex" (dict "patterns" $spec.write "queue" $.Values.config.rpcQueue))
  "read" (include "fib-rpc.permissionRegex" (dict "patterns" $spec.read "queue" $.Values.config.rpcQueue)) -}}
{{- $user := dict "role" $role "name" (include "fib-rpc.roleUsername" (dict "ctx" $ "role" $role)) "tags" $spec.tags -}}
{{- $_ := set $user "permissions" $permissions -}}
{{- $users = append $users $user -}}
{{- end -}}
{{- dict "vhost" .Values.rabbitmq.vhost "users" $users "retired" $retired | toJson -}}
{{- end }}

{{/* "true" when the chart runs a RabbitMQ cluster (rabbitmq.replicas above 1). */}}
{{- define "fib-rpc.rabbitmqCluster" -}}
{{- if and .Values.rabbitmq.enabled (gt (int .Values.rabbitmq.replicas) 1) }}true{{ end -}}
{{- end }}

{{/*
"true" when the cluster's peer discovery reads the Kubernetes API. rabbitmq_peer_discovery_k8s
up to 4.0 lists the headless Service's endpoints (and posts Events); from 4.1 on it takes pod -0
of the StatefulSet as the seed node, derived from its own name, and asks the API nothing. A tag
whose version cannot be read gets the API access too: the 4.0 settings also work on 4.1+.
*/}}
{{- define "fib-rpc.rabbitmqApiDiscovery" -}}
{{- if include "fib-rpc.rabbitmqCluster" . -}}
{{- $version := regexFind "^[0-9]+\\.[0-9]+\\.[0-9]+" (toString .Values.rabbitmq.image.tag) -}}
{{- if or (not $version) (semverCompare "<4.1.0-0" $version) }}true{{ end -}}
{{- end -}}
{{- end }}

{{/*
Type of the work queue (RPC_QUEUE_TYPE): config.rpcQueueType when set, else what the broker's
topology calls for. A single node replicates nothing, so a quorum queue there only costs
throughput: classic. Three or more nodes: quorum, replicated, with a delivery limit.
*/}}
{{- define "fib-rpc.queueType" -}}
{{- if .Values.config.rpcQueueType -}}
{{ .Values.config.rpcQueueType }}
{{- else if .Values.rabbitmq.enabled -}}
{{ ternary "quorum" "classic" (gt (int .Values.rabbitmq.replicas) 1) }}
{{- else -}}
{{ .Values.externalRabbitmq.queueType }}
{{- end -}}
{{- end }}

{{/* In-cluster host of the bundled broker; namespace-qualified because KEDA's operator resolves it from its own namespace. */}}
{{- define "fib-rpc.rabbitmqHost" -}}
{{ include "fib-rpc.rabbitmqName" . }}.{{ .Release.Namespace }}.svc
{{- end }}

{{/* The AMQP_URL env entry of a role: from its Secret, never inline. Pass (dict "ctx" $ "role" "server"). */}}
{{- define "fib-rpc.amqpUrlEnv" -}}
- name: AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fib-rpc.roleSecretName" . }}
      key: {{ include "fib-rpc.roleUrlKey" (dict "ctx" .ctx "role" .role "url" "amqp") }}
{{- end }}

{{/* ---------- autoscaling ---------- */}}

{{/* "true" when a KEDA ScaledObject owns the server replicas: enabled and the API is served. */}}
{{- define "fib-rpc.kedaActive" -}}
{{- if and .Values.autoscaling.keda.enabled (.Capabilities.APIVersions.Has "keda.sh/v1alpha1") }}true{{ end -}}
{{- end }}

{{/* "true" when the CPU HPA owns the server replicas (never beside a ScaledObject). */}}
{{- define "fib-rpc.hpaActive" -}}
{{- if and .Values.autoscaling.hpa.enabled (not (include "fib-rpc.kedaActive" .)) }}true{{ end -}}
{{- end }}

{{/* Largest replica count the server can have. */}}
{{- define "fib-rpc.maxServerReplicas" -}}
{{- if or (include "fib-rpc.kedaActive" .) (include "fib-rpc.hpaActive" .) -}}
{{ .Values.autoscaling.maxReplicas }}
{{- else -}}
{{ .Values.server.replicas }}
{{- end -}}
{{- end }}

{{/* ---------- telemetry ---------- */}}

{{/* OTLP endpoint in use: otel.endpoint, else the bundled Jaeger, else empty (tracing off). */}}
{{- define "fib-rpc.otlpEndpoint" -}}
{{- if .Values.otel.endpoint -}}
{{ .Values.otel.endpoint }}
{{- else if .Values.jaeger.enabled -}}
http://{{ include "fib-rpc.jaegerName" . }}:{{ ternary 4317 4318 (eq .Values.otel.protocol "grpc") }}
{{- end -}}
{{- end }}

{{/* OTEL_* entries of a component's ConfigMap. Pass (dict "ctx" $ "service" "fib-rpc-server"). */}}
{{- define "fib-rpc.otelConfig" -}}
{{- $endpoint := include "fib-rpc.otlpEndpoint" .ctx -}}
OTEL_SERVICE_NAME: {{ .service | quote }}
{{- $attrs := printf "service.version=%s,service.namespace=%s" .ctx.Chart.AppVersion .ctx.Release.Namespace }}
{{- with .ctx.Values.otel.resourceAttributes }}
{{- $attrs = printf "%s,%s" $attrs . }}
{{- end }}
OTEL_RESOURCE_ATTRIBUTES: {{ $attrs | quote }}
{{- if $endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ $endpoint | quote }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ .ctx.Values.otel.protocol | quote }}
OTEL_METRICS_EXPORTER: {{ .ctx.Values.otel.metricsExporter | quote }}
OTEL_LOGS_EXPORTER: {{ .ctx.Values.otel.logsExporter | quote }}
{{- with .ctx.Values.otel.sampler }}
OTEL_TRACES_SAMPLER: {{ . | quote }}
{{- end }}
{{- with .ctx.Values.otel.samplerArg }}
OTEL_TRACES_SAMPLER_ARG: {{ . | quote }}
{{- end }}
{{- else }}
OTEL_SDK_DISABLED: "true"
{{- end }}
{{- end }}

{{/* Settings shared by server and client ConfigMaps. */}}
{{- define "fib-rpc.commonConfig" -}}
RPC_QUEUE: {{ .Values.config.rpcQueue | quote }}
RPC_QUEUE_TYPE: {{ include "fib-rpc.queueType" . | quote }}
RPC_DELIVERY_LIMIT: {{ .Values.config.rpcDeliveryLimit | quote }}
AMQP_HEARTBEAT_S: {{ .Values.config.amqpHeartbeatSeconds | quote }}
FIB_MAX_N: {{ .Values.config.fibMaxN | quote }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
{{- end }}

{{/* ---------- security ---------- */}}

{{/* Restricted Pod Security: pod level. Pass (dict "uid" 1000). */}}
{{- define "fib-rpc.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Restricted Pod Security: container level, with a read-only root filesystem. */}}
{{- define "fib-rpc.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Checks that fail the render with a clear message. */}}
{{- define "fib-rpc.validate" -}}
{{- if and .Values.rabbitmq.enabled (eq .Values.rabbitmq.auth.username "guest") }}
{{- fail "rabbitmq.auth.username must not be \"guest\": the guest account is never used" }}
{{- end }}
{{- if not .Values.rabbitmq.enabled }}
{{- range $role := list "server" "client" }}
{{- if not (or (index $.Values.externalRabbitmq $role).url (include "fib-rpc.existingRoleSecret" (dict "ctx" $ "role" $role)) $.Values.externalRabbitmq.url) }}
{{- fail (printf "rabbitmq.enabled=false needs the %s's broker URL: externalRabbitmq.%s.url or .existingSecret (or the shared externalRabbitmq.url or .existingSecret)" $role $role) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (include "fib-rpc.queueType" .) }}
{{- fail "rabbitmq.enabled=false needs externalRabbitmq.queueType: quorum for a RabbitMQ cluster of 3 or more nodes, classic for a single node (it must match the type of an existing queue)" }}
{{- end }}
{{- if and (not .Values.rabbitmq.enabled) (include "fib-rpc.kedaActive" .) (eq .Values.autoscaling.keda.protocol "http") (include "fib-rpc.createRoleSecret" (dict "ctx" $ "role" "keda")) (not (or .Values.externalRabbitmq.keda.managementUrl .Values.externalRabbitmq.managementUrl)) }}
{{- fail "autoscaling.keda.protocol=http with an external broker needs externalRabbitmq.keda.managementUrl or externalRabbitmq.managementUrl (a user with the monitoring tag), or use autoscaling.keda.protocol=amqp" }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.keda.enabled (eq (int .Values.autoscaling.minReplicas) 0) (gt (int .Values.autoscaling.keda.activationQueueLength) 0) }}
{{- fail (printf "autoscaling.keda.activationQueueLength=%d with minReplicas 0: KEDA wakes a server only when the queue holds MORE than this many messages, so a lone request would wait until it expires. Use 0." (int .Values.autoscaling.keda.activationQueueLength)) }}
{{- end }}
{{- if and (include "fib-rpc.hpaActive" .) (lt (int .Values.autoscaling.minReplicas) 1) }}
{{- fail "the CPU HPA cannot scale to zero: set autoscaling.minReplicas >= 1 or enable KEDA" }}
{{- end }}
{{- end }}

{{/* Pod spec of a client run (Job or helm test). Pass (dict "ctx" $ "args" (list ...)). */}}
{{- define "fib-rpc.clientPodSpec" -}}
{{- $ := .ctx -}}
serviceAccountName: {{ include "fib-rpc.serviceAccountName" $ }}
automountServiceAccountToken: false
restartPolicy: Never
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "fib-rpc.podSecurityContext" (dict "uid" 1000) | nindent 2 }}
containers:
  - name: client
    image: {{ include "fib-rpc.clientImage" $ | quote }}
    imagePullPolicy: {{ $.Values.client.image.pullPolicy }}
    args:
      {{- range .args }}
      - {{ . | quote }}
      {{- end }}
    envFrom:
      - configMapRef:
          name: {{ include "fib-rpc.clientName" $ }}
    env:
      {{- include "fib-rpc.amqpUrlEnv" (dict "ctx" $ "role" "client") | nindent 6 }}
      {{- include "fib-rpc.caEnv" (dict "ctx" $ "name" "AMQP_TLS_CA_FILE") | nindent 6 }}
    resources:
      {{- toYaml $.Values.client.resources | nindent 6 }}
    securityContext:
      {{- include "fib-rpc.containerSecurityContext" $ | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- include "fib-rpc.caVolumeMount" $ | nindent 6 }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
  {{- include "fib-rpc.caVolume" $ | nindent 2 }}
{{- end }}
