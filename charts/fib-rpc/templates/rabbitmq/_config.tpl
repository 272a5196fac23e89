{{/*
The broker's rabbitmq.conf. It replaces the image's conf.d/10-defaults.conf, so it repeats
what that file and the image's defaults set, except the line that opens guest to the network.
Memory figures derive from the container limit: Erlang reads the node's RAM, not the cgroup
limit, and would put the watermark above the limit (OOM kill instead of a memory alarm).
*/}}
{{- define "fib-rpc.rabbitmqConf" -}}
{{- $rmq := .Values.rabbitmq -}}
{{- $limit := include "fib-rpc.bytes" $rmq.resources.limits.memory | int64 -}}
# Logs to stdout, where kubectl logs reads them (as in the image's 10-defaults.conf).
log.console = true
# guest is never created (RABBITMQ_DEFAULT_USER is always set); if it ever were, it stays local-only.
loopback_users.guest = true
{{- if include "fib-rpc.plaintextActive" . }}
listeners.tcp.default = 5672
management.tcp.port = 15672
{{- else }}
# rabbitmq.tls.plaintext=false: no plaintext AMQP; the management API listens on https only.
listeners.tcp = none
{{- end }}
prometheus.tcp.port = 15692
{{- include "fib-rpc.rabbitmqTlsConf" . }}

# Memory: the container limit is the RAM this node has; publishers are blocked at the watermark.
total_memory_available_override_value = {{ $limit }}
vm_memory_high_watermark.relative = {{ $rmq.memoryHighWatermark }}
# Quorum queues hold up to this much in memory before flushing it to segment files; RabbitMQ
# asks for 3-4x of it in RAM, so it is a quarter of the limit (the default, 512 MiB, needs 2 GiB).
raft.wal_max_size_bytes = {{ div $limit 4 }}

# Disk: publishers are blocked while the data volume has less than this free.
disk_free_limit.absolute = {{ include "fib-rpc.bytes" $rmq.diskFreeLimit }}
{{- if include "fib-rpc.rabbitmqCluster" . }}
{{- $headless := printf "%s-headless" (include "fib-rpc.rabbitmqName" .) }}

# Cluster formation, done once, on a node's first boot with an empty data directory.
cluster_formation.peer_discovery_backend = k8s
{{- if eq (include "fib-rpc.rabbitmqApiDiscovery" .) "true" }}
# Up to RabbitMQ 4.0 the plugin lists the endpoints of this Service (ready or not: the headless
# Service publishes not-ready addresses) and turns each pod's hostname into a node name. 4.1+
# accepts these keys and ignores them.
# The API's name without the cluster domain: the pod's DNS search path completes it.
cluster_formation.k8s.host = kubernetes.default.svc
cluster_formation.k8s.address_type = hostname
cluster_formation.k8s.service_name = {{ $headless }}
cluster_formation.k8s.hostname_suffix = .{{ $headless }}.{{ .Release.Namespace }}{{ include "fib-rpc.rabbitmqNodeDomain" . }}
{{- end }}
# A node that is down is a node to wait for, never one to remove from the cluster.
cluster_formation.node_cleanup.only_log_warning = true
# A quorum queue gets a member on each node that is up when it is declared: a server that
# declares its queue while the other nodes are still joining would leave it on one node.
# Reconciliation adds members on the nodes that join later, up to one per node.
quorum_queue.continuous_membership_reconciliation.enabled = true
quorum_queue.continuous_membership_reconciliation.target_group_size = {{ $rmq.replicas }}
{{- end }}
{{- end }}

{{/* The broker's enabled_plugins: the image's own two, and in a cluster its Kubernetes peer discovery. */}}
{{- define "fib-rpc.rabbitmqPlugins" -}}
{{- if include "fib-rpc.rabbitmqCluster" . -}}
[rabbitmq_management,rabbitmq_prometheus,rabbitmq_peer_discovery_k8s].
{{- else -}}
[rabbitmq_management,rabbitmq_prometheus].
{{- end -}}
{{- end }}

{{/*
Startup probe failures (10 s apart) before the kubelet restarts a booting node: a single node
waits for no one (5 min); a cluster node outlasts twice its 300 s wait for its peers (10 min).
*/}}
{{- define "fib-rpc.rabbitmqStartupProbeFailures" -}}
{{- if include "fib-rpc.rabbitmqCluster" . }}60{{ else }}30{{ end -}}
{{- end }}

{{/* Fails the render when the data volume cannot hold the disk alarm threshold, the WAL and some queue data. */}}
{{- define "fib-rpc.rabbitmqValidate" -}}
{{- $rmq := .Values.rabbitmq -}}
{{- if and (include "fib-rpc.rabbitmqCluster" .) (not $rmq.persistence.enabled) -}}
{{- fail (printf "rabbitmq.replicas=%d needs rabbitmq.persistence.enabled=true: a cluster node re-created on an empty volume does not rejoin as itself, and pod -0 on an empty volume starts a new cluster of its own" (int $rmq.replicas)) -}}
{{- end -}}
{{- if and $rmq.enabled $rmq.persistence.enabled -}}
{{- $size := include "fib-rpc.bytes" $rmq.persistence.size | int64 -}}
{{- $reserve := include "fib-rpc.bytes" $rmq.diskFreeLimit | int64 -}}
{{- $wal := div (include "fib-rpc.bytes" $rmq.resources.limits.memory | int64) 4 -}}
{{- $room := 536870912 -}}
{{- if lt $size (add $reserve $wal $room) -}}
{{- fail (printf "rabbitmq.persistence.size %s cannot hold rabbitmq.diskFreeLimit %s (kept free: publishers block below it) + the quorum-queue WAL (%d MiB, a quarter of rabbitmq.resources.limits.memory) + 512 MiB of queue data: raise it to at least %d MiB" $rmq.persistence.size $rmq.diskFreeLimit (div $wal 1048576) (div (add $reserve $wal $room) 1048576)) -}}
{{- end -}}
{{- end -}}
{{- end }}
