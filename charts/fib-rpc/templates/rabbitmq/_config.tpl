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
listeners.tcp.default = 5672
management.tcp.port = 15672
prometheus.tcp.port = 15692

# Memory: the container limit is the RAM this node has; publishers are blocked at the watermark.
total_memory_available_override_value = {{ $limit }}
vm_memory_high_watermark.relative = {{ $rmq.memoryHighWatermark }}
# Quorum queues hold up to this much in memory before flushing it to segment files; RabbitMQ
# asks for 3-4x of it in RAM, so it is a quarter of the limit (the default, 512 MiB, needs 2 GiB).
raft.wal_max_size_bytes = {{ div $limit 4 }}

# Disk: publishers are blocked while the data volume has less than this free.
disk_free_limit.absolute = {{ include "fib-rpc.bytes" $rmq.diskFreeLimit }}
{{- end }}

{{/* Fails the render when the data volume cannot hold the disk alarm threshold, the WAL and some queue data. */}}
{{- define "fib-rpc.rabbitmqValidate" -}}
{{- $rmq := .Values.rabbitmq -}}
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
