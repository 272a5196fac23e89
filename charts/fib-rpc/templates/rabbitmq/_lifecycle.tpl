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

{{/* The x.y.z that rabbitmq.image.tag names ("" for a tag without one). */}}
{{- define "fib-rpc.rabbitmqTargetVersion" -}}
{{- regexFind "^[0-9]+\\.[0-9]+\\.[0-9]+" (toString .Values.rabbitmq.image.tag) -}}
{{- end }}

{{/*
Fails the render, before anything changes, on a change of the running broker that RabbitMQ
does not support, naming the supported path:
- a scale-down (the removed nodes stay members of the metadata store and of the quorum queues:
  later restarts wait for a majority that cannot come);
- a downgrade to an older series;
- a series the running one cannot be upgraded to (the release notes' "supports upgrades from");
- 4.3 or later with the feature flags not known to be all enabled.
Nothing is checked on a first install (nothing runs).
*/}}
{{- define "fib-rpc.rabbitmqLifecycleCheck" -}}
{{- $run := include "fib-rpc.rabbitmqRunning" . | fromJson -}}
{{- if $run.found -}}
{{- $rmq := .Values.rabbitmq -}}
{{- $name := include "fib-rpc.rabbitmqName" . -}}
{{- if lt (int $rmq.replicas) (int $run.replicas) -}}
{{- fail (printf "rabbitmq.replicas=%d is a scale-down of the running %d-node broker, which the chart refuses (as the RabbitMQ Cluster Operator does): removed nodes stay members of the cluster and of every quorum queue, and later restarts wait for a majority that cannot come. Remove nodes one at a time, highest ordinal first (docs/deploy.md, \"Scaling the broker down\"): rabbitmq-upgrade drain on it; kubectl scale statefulset %s --replicas=<one less>; rabbitmqctl forget_cluster_node rabbit@%s-<ordinal>.%s-headless.%s%s on a remaining node; delete its PersistentVolumeClaim; then helm upgrade with the new rabbitmq.replicas." (int $rmq.replicas) (int $run.replicas) $name $name $name .Release.Namespace $run.nodeDomain) -}}
{{- end -}}
{{- $to := include "fib-rpc.rabbitmqTargetVersion" . -}}
{{- $from := $run.version -}}
{{- $toSeries := regexFind "^[0-9]+\\.[0-9]+" $to -}}
{{- $fromSeries := regexFind "^[0-9]+\\.[0-9]+" $from -}}
{{- $newSeries := and $to (or (not $from) (ne $toSeries $fromSeries)) -}}
{{- $needsFlags := and $to (semverCompare ">=4.3.0-0" $to) -}}
{{- if and $to $from -}}
{{- if semverCompare (printf "<%s.0-0" $fromSeries) $to -}}
{{- fail (printf "rabbitmq.image.tag %s would take the running RabbitMQ %s back to series %s: RabbitMQ does not support downgrades. Keep a %s.x tag; going back means a new broker restored from a backup (definitions export)." $rmq.image.tag $from $toSeries $fromSeries) -}}
{{- end -}}
{{- if ne $toSeries $fromSeries -}}
{{- /* The release notes' "This release series supports upgrades from"; a later series from the one before it. */ -}}
{{- $paths := dict "4.0" (list "3.13") "4.1" (list "3.13" "4.0") "4.2" (list "3.13" "4.0" "4.1") "4.3" (list "4.2") -}}
{{- $parts := splitList "." $toSeries -}}
{{- $previous := printf "%s.%d" (first $parts) (sub (int (last $parts)) 1) -}}
{{- $allowed := get $paths $toSeries | default (list $previous) -}}
{{- if not (has $fromSeries $allowed) -}}
{{- fail (printf "rabbitmq.image.tag %s: RabbitMQ %s supports upgrades from %s.x only, and this broker runs %s. Upgrade to the latest %s.x first (e.g. rabbitmq.image.tag=%s-management), let its rollout finish (its pods then enable all stable feature flags), then to %s (docs/deploy.md, \"Broker upgrades\")." $rmq.image.tag $toSeries (join ".x, " $allowed) $run.version (last $allowed) (ternary "4.2.9" (printf "%s.<latest>" (last $allowed)) (eq (last $allowed) "4.2")) $toSeries) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $newSeries $needsFlags (ne $run.featureFlags "enabled") -}}
{{- fail (printf "rabbitmq.image.tag %s: RabbitMQ %s starts only on a cluster whose stable feature flags are all enabled, and this broker's are %s (%s). Let the running release's rollout finish (kubectl rollout status statefulset %s: its pods enable all feature flags after they boot), or enable them yourself (kubectl exec %s-0 -c rabbitmq -- rabbitmqctl enable_feature_flag all) and say so with rabbitmq.upgrade.running.featureFlags=enabled, then upgrade." $rmq.image.tag $toSeries $run.featureFlags (ternary "its rollout has not finished" (ternary "made by a chart that never enabled them" "not known to be enabled" (eq $run.featureFlags "unknown")) (eq $run.featureFlags "pending")) $name $name) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The broker container's command: the image's own entrypoint and server, and beside it the step
that enables every stable feature flag once the node has booted, as the RabbitMQ Cluster
Operator does after each change (`rabbitmqctl enable_feature_flag all`; it runs it in pod -0
through the API, which a chart has no business being allowed to). In a pod, with the node's own
cookie, it needs no API access, no network path and no hook (which a render without Helm, as
Argo CD's, would not run). In a cluster that is mid-upgrade the flags the older nodes lack
cannot be enabled yet: the step retries, and the last node to boot on the new version, pod -0,
enables them. The StatefulSet says so (fib-rpc.io/rabbitmq-feature-flags: all), which is how
the next upgrade knows the flags are on once the rollout has finished.
*/}}
{{- define "fib-rpc.rabbitmqCommand" -}}
- sh
- -c
- |
  (
    # await_startup gives up at once until the VM has registered with epmd: it is retried too.
    for _ in $(seq 1 60); do
      sleep 30
      if rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1 &&
        rabbitmqctl -q enable_feature_flag all >/dev/null 2>&1; then
        echo "fib-rpc: all stable feature flags are enabled"
        exit 0
      fi
    done
    echo "fib-rpc: rabbitmqctl enable_feature_flag all kept failing for 30 minutes (a node of another version, or one down)"
  ) &
  exec docker-entrypoint.sh rabbitmq-server
{{- end }}
