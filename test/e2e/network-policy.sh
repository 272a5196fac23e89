# shellcheck shell=bash
# NetworkPolicy in the cluster, sourced by test/e2e/checks.sh (its kn, log, fail, figure,
# helm_install, restricted_namespace, check_* helpers, RELEASE, NAMESPACE, SERVER, CHART):
#   deploy_prometheus NS PORT  a real Prometheus in namespace `monitoring`, finding the servers
#                            (metrics on PORT) and the broker of NS by DNS, scraping the broker as
#                            the chart's PodMonitor would (port 15692, /metrics/detailed)
#   check_prometheus_scrapes PORT  every server pod and the broker are scraped up, with their series
#   check_reach NAME LABELS WANT TARGET...   from a restricted pod labelled LABELS (JSON), which
#                            of TARGET (host:port) open, as WANT says (JSON: target -> open|closed)
#
# The policies must be enforced by the cluster's network plugin: kube-router's firewall on the
# local cluster (test/e2e/local/cluster.sh), kindnet on kind (v0.24+).

set -euo pipefail

REACH_SCRIPT="$ROOT/test/e2e/probe/reach.mjs"
POLICY_NAMESPACE=${POLICY_NAMESPACE:-fib-rpc-policy}
PROMETHEUS_NAMESPACE=monitoring
PROMETHEUS_LOCAL_PORT=${PROMETHEUS_LOCAL_PORT:-19090}

# Discovery by DNS, through headless Services: Debian's Prometheus has no Kubernetes service
# discovery (its build leaves client-go out), and a DNS A record per ready pod finds every
# server and the broker as well. The servers get a headless Service of the test's own; the
# broker's is the chart's. The broker is scraped as the chart's PodMonitor has the Operator
# scrape it (/metrics/detailed, two families).
prometheus_config() {
  local ns=$1 port=$2
  sed -e "s/@NAMESPACE@/$ns/g" -e "s/@RELEASE@/$RELEASE/g" -e "s/@PORT@/$port/g" <<'EOF'
global:
  scrape_interval: 5s
  scrape_timeout: 4s
scrape_configs:
  - job_name: fib-rpc-servers
    metrics_path: /metrics
    dns_sd_configs:
      - {names: [e2e-prometheus-servers.@NAMESPACE@.svc.cluster.local], type: A, port: @PORT@, refresh_interval: 5s}
  - job_name: fib-rpc-broker
    metrics_path: /metrics/detailed
    params:
      family: [queue_coarse_metrics, queue_consumer_count]
    dns_sd_configs:
      - {names: [@RELEASE@-rabbitmq-headless.@NAMESPACE@.svc.cluster.local], type: A, port: 15692, refresh_interval: 5s}
EOF
}

# The manifests of Prometheus (no API access: it discovers by DNS) and of the headless Service
# that gives it one A record per server pod.
prometheus_manifests() {
  local ns=$1 image=$2 port=$3
  cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: e2e-prometheus-servers, namespace: $ns}
spec:
  clusterIP: None
  selector: {app.kubernetes.io/name: fib-rpc-server, app.kubernetes.io/instance: $RELEASE}
  ports: [{name: http, port: $port}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: prometheus, namespace: $PROMETHEUS_NAMESPACE}
spec:
  replicas: 1
  selector: {matchLabels: {app: prometheus}}
  template:
    metadata: {labels: {app: prometheus}}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        runAsGroup: 65534
        fsGroup: 65534
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: prometheus
          image: $image
          imagePullPolicy: IfNotPresent
          args: [--config.file=/etc/prometheus/prometheus.yml, --storage.tsdb.path=/prometheus,
            --storage.tsdb.retention.time=1h, --web.listen-address=:9090]
          ports: [{name: web, containerPort: 9090}]
          readinessProbe:
            httpGet: {path: /-/ready, port: web}
            periodSeconds: 2
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          resources:
            requests: {cpu: 50m, memory: 128Mi}
            limits: {memory: 512Mi}
          volumeMounts:
            - {name: config, mountPath: /etc/prometheus, readOnly: true}
            - {name: data, mountPath: /prometheus}
      volumes:
        - {name: config, configMap: {name: prometheus}}
        - {name: data, emptyDir: {}}
EOF
}

# deploy_prometheus NS PORT: Prometheus scraping the servers (metrics on PORT) and the broker of NS.
deploy_prometheus() {
  local ns=$1 port=$2 image=${E2E_PROMETHEUS_IMAGE:?set E2E_PROMETHEUS_IMAGE to a Prometheus image the cluster has}
  log "network policy: Prometheus ($image) in namespace $PROMETHEUS_NAMESPACE, scraping $ns"
  kubectl create namespace "$PROMETHEUS_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label namespace "$PROMETHEUS_NAMESPACE" --overwrite \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null
  kubectl -n "$PROMETHEUS_NAMESPACE" create configmap prometheus \
    --from-file=prometheus.yml=<(prometheus_config "$ns" "$port") --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  prometheus_manifests "$ns" "$image" "$port" | kubectl apply -f - >/dev/null
  kubectl -n "$PROMETHEUS_NAMESPACE" rollout status deployment/prometheus --timeout 3m
}

remove_prometheus() {
  kubectl delete namespace "$PROMETHEUS_NAMESPACE" --wait=true --timeout=3m >/dev/null
}

# Every server pod of the release and the broker are targets that are up, and their series
# arrived (a server's request counter, the work queue's depth): scraped through the policies.
check_prometheus_scrapes() {
  local port=$1 pid targets up want started=$SECONDS queue series broker_ip
  log "network policy: Prometheus scrapes every server and the broker (15692)"
  kubectl -n "$PROMETHEUS_NAMESPACE" port-forward deployment/prometheus "$PROMETHEUS_LOCAL_PORT:9090" >/dev/null 2>&1 &
  pid=$!
  queue=$(kn get configmap "$SERVER" -o jsonpath='{.data.RPC_QUEUE}')
  broker_ip=$(kn get pod "$BROKER_POD" -o jsonpath='{.status.podIP}')
  for _ in $(seq 1 60); do
    want=$(kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/name=fib-rpc-server" \
      --field-selector status.phase=Running -o json |
      jq -c --arg port "$port" --arg broker "$broker_ip:15692" '[.items[].status.podIP + ":" + $port] + [$broker] | sort')
    targets=$(curl -fsS "http://127.0.0.1:$PROMETHEUS_LOCAL_PORT/api/v1/targets?state=active" 2>/dev/null || echo '{}')
    up=$(jq -c '[.data.activeTargets[]? | select(.health == "up") | .labels.instance] | unique' <<<"$targets")
    if [[ $(jq -c --argjson want "$want" '$want - . ' <<<"$up") == "[]" ]]; then
      series=$(curl -fsS "http://127.0.0.1:$PROMETHEUS_LOCAL_PORT/api/v1/query" \
        --data-urlencode "query=count(rpc_server_in_flight) + count(rabbitmq_detailed_queue_messages_ready{queue=\"$queue\"})" 2>/dev/null |
        jq -r '.data.result[0].value[1] // empty')
      if [[ -n $series ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "targets up: $(jq -r 'join(", ")' <<<"$up"); series of servers + broker queue: $series"
        figure "network policy: install to every server and the broker scraped (s)" $((SECONDS - started))
        return 0
      fi
    fi
    sleep 3
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  jq -r '.data.activeTargets[]? | "\(.labels.job) \(.labels.instance): \(.health) \(.lastError)"' <<<"$targets" >&2
  fail "Prometheus does not scrape every server and the broker through the policies (want $want, up $up)"
}

# check_reach NAME LABELS WANT TARGET...: a pod rendered from the chart's client Job (its
# restricted securityContext and image), with exactly the labels LABELS (a JSON object), tries
# each TARGET; WANT (JSON) maps each target to "open" or "closed". Prints what it saw.
check_reach() {
  local name=$1 labels=$2 want=$3 job out code=0 got
  shift 3
  job="$RELEASE-reach-$name-$(date +%s)"
  kn create configmap e2e-reach --from-file=reach.mjs="$REACH_SCRIPT" --dry-run=client -o yaml | kn apply -f - >/dev/null
  # shellcheck disable=SC2016 # jq variables
  probe_job_json "$job" --argjson labels "$labels" --argjson targets "$(printf '%s\n' "$@" | jq -R . | jq -cs .)" '
      .spec.template.metadata.labels = $labels
    | .spec.template.spec.containers[0] |= (.command = (["node", "/probe/reach.mjs"] + $targets) | del(.args)
      | .volumeMounts += [{name: "probe", mountPath: "/probe", readOnly: true}])
    | .spec.template.spec.volumes += [{name: "probe", configMap: {name: "e2e-reach"}}]' |
    kn create -f - >/dev/null
  out=$(finished_job "$job") || code=$?
  kn delete job "$job" --wait=false >/dev/null
  out=$(jq -cR 'fromjson? | select(type == "object" and has("reach")) | .reach' <<<"$out" | tail -n 1)
  [[ -n $out && $code == 0 ]] || fail "the reach probe $name printed no result (exit $code)"
  echo "$name ($(jq -c . <<<"$labels")): $out"
  # Refused or dropped is "closed"; anything else (a name that did not resolve) stays as it is.
  got=$(jq -c 'with_entries(.value |= if . == "open" then "open"
    elif . == "timeout" or . == "ECONNREFUSED" or . == "EHOSTUNREACH" then "closed" else . end)' <<<"$out")
  [[ $(jq -cS . <<<"$got") == $(jq -cS . <<<"$want") ]] ||
    fail "from a pod labelled $labels the policies let through $got, expected $want"
}

# check_no_refused_pod JOB: no pod of JOB failed to reach the broker (exit 6): the client's
# bounded wait for the broker (CLIENT_STARTUP_TIMEOUT_MS), not the Job's backoff, rode out the
# enforcer's lag. A pod that failed otherwise is shown with its exit code and last line (at
# install the broker can answer before the servers have declared the queue: exit 3, no
# responder, which the Job's backoffLimit is for). Says whether a pod had to wait.
check_no_refused_pod() {
  local job=$1 pods pod code log waited=no refused=()
  pods=$(kn get pods -l "job-name=$job" -o json)
  while read -r pod code; do
    log=$(kn logs "$pod" 2>&1 || true)
    if [[ -n $(jq -rR 'fromjson? | select(.msg == "cannot reach the broker yet, retrying") | .msg' <<<"$log") ]]; then waited=yes; fi
    [[ $code == none ]] && continue
    echo "Job $job: pod $pod exited $code: $(tail -n 1 <<<"$log")"
    [[ $code == 6 ]] && refused+=("$pod")
  done < <(jq -r '.items[] | "\(.metadata.name) \(if .status.phase == "Failed" then (.status.containerStatuses[0].state.terminated.exitCode // "unknown") else "none" end)"' <<<"$pods")
  ((${#refused[@]} == 0)) || fail "Job $job: pods that could not reach the broker: ${refused[*]}"
  echo "Job $job: $(jq '.items | length' <<<"$pods") pod(s), none refused the broker; a pod waited for it: $waited"
}

phase_network_policy() {
  local main_namespace=$NAMESPACE phase_started=$SECONDS started broker_ip metrics_port targets job peak=0 ready
  NAMESPACE=$POLICY_NAMESPACE
  log "network policy: networkPolicy.enabled=true in namespace $NAMESPACE, enforced by the cluster's network plugin"
  restricted_namespace
  started=$SECONDS
  # The PodMonitor's policy rule without the PodMonitor (no Operator CRDs here): the Prometheus
  # below scrapes what the PodMonitor would. No volume: nothing here outlives the phase.
  # kube-router admits a new pod's traffic only once it has synced the pod's IP, and it skips a
  # pod that has already failed: a client pod that connects as it starts can be refused, and a
  # Job's retry in a new pod again (seen in CI before the client waited: 164 s to the chart
  # Job's answer, a load Job failed). The chart's client pods wait for the broker for
  # client.startupTimeoutMs (60 s) in their own pod, which keeps its IP, and get in: no
  # client pod here may fail to reach the broker.
  helm_install --set networkPolicy.enabled=true --set rabbitmq.metrics.podMonitor.enabled=true \
    --set rabbitmq.persistence.enabled=false
  check_chart_job_answer
  check_no_refused_pod "$(latest_chart_job)"
  figure "network policy: install to first answer (s)" $((SECONDS - started))
  kn get networkpolicies
  # The users Job set the role users through the management API, past the broker's policy.
  check_broker_users "network policy"
  check_trace
  metrics_port=$(kn get service "$SERVER" -o jsonpath='{.spec.ports[0].port}')
  deploy_prometheus "$NAMESPACE" "$metrics_port"
  check_prometheus_scrapes "$metrics_port"

  log "network policy: under a load KEDA, in namespace keda, reads the queue depth and scales the servers"
  job="$RELEASE-policy-load-$(date +%s)"
  start_client_job "$job" --load --json --concurrency 64 --duration 90s 20000
  started=$SECONDS
  for _ in $(seq 1 40); do
    ready=$(ready_replicas)
    ((ready > peak)) && peak=$ready
    ((peak >= 2)) && break
    sleep 3
  done
  ((peak >= 2)) || fail "the server never scaled past 1 replica under load behind the policies (peak $peak)"
  figure "network policy: load start to 2 ready servers (s)" $((SECONDS - started))
  check_no_refused_pod "$job"
  kn delete job "$job" --wait=false >/dev/null

  broker_ip=$(kn get pod "$BROKER_POD" -o jsonpath='{.status.podIP}')
  targets=("$RELEASE-rabbitmq:5672" "$RELEASE-rabbitmq:15672" "$RELEASE-jaeger:4318"
    "$RELEASE-server:$metrics_port" "$broker_ip:15692")
  started=$SECONDS
  check_reach outsider '{"app": "e2e-outsider"}' "$(jq -nc --args '[$ARGS.positional[] | {(.): "closed"}] | add' "${targets[@]}")" \
    "${targets[@]}"
  # The same pod with a client's labels: AMQP and OTLP open, so the refusals above are the policies'.
  check_reach client "$(jq -nc --arg r "$RELEASE" '{"app.kubernetes.io/name": "fib-rpc-client", "app.kubernetes.io/instance": $r}')" \
    "$(jq -nc --args '[$ARGS.positional[] | {(.): "closed"}] | add | .[$ARGS.positional[0]] = "open" | .[$ARGS.positional[2]] = "open"' "${targets[@]}")" \
    "${targets[@]}"
  figure "network policy: reach probes, without and with the client's labels (s)" $((SECONDS - started))

  phase_uninstall
  remove_prometheus
  kubectl delete namespace "$NAMESPACE" --wait=true --timeout=5m >/dev/null
  NAMESPACE=$main_namespace
  figure "network policy: phase (s)" $((SECONDS - phase_started))
}
