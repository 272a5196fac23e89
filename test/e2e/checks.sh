#!/usr/bin/env bash
# The end-to-end assertions, shared by every cluster the chart is tested on: kind on GitHub
# (test/e2e/kind.sh) and the local cluster built from upstream parts (test/e2e/local.sh).
# The driver brings up the cluster and the images; this script does the rest, in order:
#
#   1. without KEDA's CRDs: install with fixed replicas, the client Job answers, uninstall
#      leaves no pod behind
#   2. install KEDA (the driver's E2E_KEDA_INSTALL command)
#   3. install of the 0.2.0 chart (one broker user; from git history, PREVIOUS_CHART_COMMIT),
#      then the upgrade to this chart with KEDA and a persistent broker: the client Job prints fib(30), helm test
#      passes, one trace holds spans of both services, the broker password survives an upgrade,
#      every pod is admitted in a namespace that enforces the restricted Pod Security level;
#      an upgrade RabbitMQ does not support (the running 4.0.5 straight to E2E_RABBITMQ43_VALUES'
#      4.3.6) is refused before anything changes, and the broker still serves;
#      least privilege (test/e2e/security.sh): the broker has exactly the chart's users after
#      every install, upgrade and reinstall, and each role's own Secret, in a restricted pod, is
#      refused what is not its own (the client the work queue, the server other queues and the
#      users API, KEDA publishing) while KEDA reads the queue depth
#   4. under a load Job the server scales to at least 3 replicas and back to its minimum; Jaeger
#      is not restarted by the load
#   5. faults, each under a load that checks every answer (--verify) with retries: a server pod
#      deleted, the broker pod deleted (same credentials after it comes back), a helm upgrade
#      that changes the server pod template (0 failed calls; broker and Jaeger untouched)
#   6. scale-to-zero: the server goes to 0 replicas, one single request wakes it and is answered
#   7. uninstall and reinstall with the broker's volume kept, serving amqps and https only
#      (rabbitmq.tls with a CA the test makes, plaintext=false): clients still get in, helm test
#      passes, every AMQP connection is TLS, 5672 and 15672 refuse, a client without the CA
#      exits 6 naming AMQP_TLS_CA_FILE, KEDA reads the queue depth with its TriggerAuthentication's ca
#   8. uninstall: no pod of the release is left
#  8b. network-policy, in a namespace of its own (test/e2e/network-policy.sh): with
#      networkPolicy.enabled the client Job answers, the users Job sets the users, one trace
#      holds both services, a real Prometheus in namespace monitoring scrapes every server and
#      the broker's 15692, KEDA scales the servers under load; a pod without the release's
#      labels is refused at 5672, 15672, 4318, the servers' metrics and 15692, and the same pod
#      with a client's labels opens 5672 and 4318 only. The cluster's plugin must enforce
#      NetworkPolicy (E2E_PROMETHEUS_IMAGE names the Prometheus image)
#   9. broker-cluster, in a namespace of its own, on E2E_RABBITMQ43_VALUES' broker (the 4.3.6
#      stand-in; without it the chart's default image): rabbitmq.replicas=3 forms one RabbitMQ
#      cluster of three running nodes with the image's Kubernetes peer discovery (4.1+: no Role,
#      no API token; up to 4.0: the endpoints Role), Khepri from 4.2 on, every stable feature
#      flag enabled and recorded on the StatefulSet; the work queue is a quorum queue with a
#      member on each node. Each under a verified load (--retries 5): the queue leader's pod
#      deleted; a helm upgrade rolling the brokers one at a time; a scale-up 3 -> 5 (5 running
#      nodes, the queue grows to 5 members). Between them every broker pod deleted at once:
#      all back without a restart, a durable quorum queue keeps its persistent messages. Last,
#      a scale-down 5 -> 3 is refused with the documented procedure and changes nothing.
#  10. release (only when named; make release-local): the released chart installed from its
#      oci:// registry in an empty directory (no checkout), with values that set only the
#      stand-in broker and Jaeger images: a client Job from the chart's CronJob template prints
#      fib(30), helm test passes
#
# Usage: test/e2e/checks.sh [all|PHASE...]   phases: no-keda keda install scaling faults
#                                             scale-to-zero reinstall uninstall network-policy broker-cluster,
#                                             release (not in all), and dump
#                                             (cluster state, events and logs, for failures)
# Environment (set by the driver):
#   KUBECONFIG          the cluster (kubectl and helm use it)
#   E2E_IMAGE_VALUES    values file naming the images the cluster has (repositories, tags, pullPolicy)
#   E2E_RABBITMQ43_VALUES  values file (on top of E2E_IMAGE_VALUES) naming a RabbitMQ 4.3 broker
#                       image the cluster has: phase broker-cluster runs on it, and phase install
#                       checks that the jump to it from an older-than-4.2 broker is refused
#   E2E_KEDA_INSTALL    command that installs KEDA and waits for it (phase keda)
#   NAMESPACE RELEASE   default fib-rpc / fib-rpc
#   LOAD_SECONDS        length of the scaling load (default 120)
#   CLUSTER_NAMESPACE   namespace of phase broker-cluster (default fib-rpc-broker-cluster)
#   POLICY_NAMESPACE    namespace of phase network-policy (default fib-rpc-policy)
#   E2E_PROMETHEUS_IMAGE  a Prometheus image the cluster has or can pull (phase network-policy)
#   CLUSTER_LOAD_SECONDS  length of its load (default 40)
#   RELEASE_CHART RELEASE_CHART_VERSION RELEASE_CA_FILE RELEASE_VALUES   phase release: the
#                       chart's oci:// reference and version, the registry's CA, the values file
# Needs kubectl, helm, jq, curl, and Node with the project's node_modules (npm ci: phase
# broker-cluster publishes with amqplib). Writes E2E_FIGURES (default: a temp file) with timings.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHART="$ROOT/charts/fib-rpc"
E2E_VALUES="$CHART/ci/e2e-values.yaml"
NAMESPACE=${NAMESPACE:-fib-rpc}
RELEASE=${RELEASE:-fib-rpc}
SERVER="$RELEASE-server"
BROKER_POD="$RELEASE-rabbitmq-0"
LOAD_SECONDS=${LOAD_SECONDS:-120}
JAEGER_LOCAL_PORT=${JAEGER_LOCAL_PORT:-16686}
E2E_IMAGE_VALUES=${E2E_IMAGE_VALUES:?set E2E_IMAGE_VALUES to a values file naming the images}
E2E_FIGURES=${E2E_FIGURES:-$(mktemp)}
PORT_FORWARD_PID=""

log() { printf '\n=== %s: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}
figure() { printf '%s\t%s\n' "$1" "$2" | tee -a "$E2E_FIGURES" >&2; }
kn() { kubectl -n "$NAMESPACE" "$@"; }

# Values shared by every install: the e2e tuning, the driver's images, a persistent broker
# (so that pod re-creation and reinstall exercise the volume and fsGroup), then extras.
chart_values() {
  printf '%s\n' --values "$E2E_VALUES" --values "$E2E_IMAGE_VALUES" \
    --set rabbitmq.persistence.enabled=true "$@"
}

helm_install() {
  local values
  mapfile -t values < <(chart_values "$@")
  helm upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${values[@]}" --wait --timeout 10m
}

# A namespace whose pods must meet the restricted Pod Security Standard: a pod of the chart
# that does not is refused at admission, and its controller shows FailedCreate.
restricted_namespace() {
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label namespace "$NAMESPACE" --overwrite \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null
}

check_pods_admitted() {
  local refused
  refused=$(kn get events --field-selector reason=FailedCreate -o json |
    jq -r '.items[] | select(.message | test("PodSecurity|forbidden")) | "\(.involvedObject.kind)/\(.involvedObject.name): \(.message)"')
  [[ -z $refused ]] || fail "pods refused in a restricted namespace:"$'\n'"$refused"
  echo "every pod of the chart was admitted under pod-security.kubernetes.io/enforce=restricted"
}

# --- Jobs --------------------------------------------------------------------------------

# The client's JSON answer (or load summary) from the pod of Job $1 that succeeded. Reading
# `job/X` would let kubectl pick the oldest pod, which may be a failed early attempt.
job_json() {
  local pod
  pod=$(kn get pods -l "job-name=$1" --field-selector status.phase=Succeeded -o name | sed -n 1p)
  [[ -n $pod ]] || fail "Job $1 has no succeeded pod"
  kn logs "$pod" | jq -cR 'fromjson? | select(type == "object" and (has("result") or has("calls")))' | tail -n 1
}

wait_job() {
  local job=$1 timeout=$2
  if ! kn wait --for=condition=complete "job/$job" --timeout "${timeout}s"; then
    kn get pods -l "job-name=$job" -o wide >&2 || true
    fail "Job $job did not complete within ${timeout}s"
  fi
}

# The newest client Job that the chart itself created (<release>-client-<revision>).
latest_chart_job() {
  kn get jobs -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/name=fib-rpc-client" \
    --sort-by=.metadata.creationTimestamp -o name |
    sed -n "s|^job.batch/\($RELEASE-client-[0-9]*\)\$|\1|p" | tail -n 1
}

# start_client_job NAME ARG...: the chart's own client Job template, renamed, with these args.
start_client_job() {
  local name=$1 values args
  shift
  args=$(printf '%s\n' "$@" | jq -R . | jq -cs .)
  mapfile -t values < <(chart_values)
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${values[@]}" \
    --set client.job.enabled=true --set client.job.backoffLimit=0 \
    --set client.job.activeDeadlineSeconds=1200 --set-json "client.job.args=$args" \
    --show-only templates/client/job.yaml |
    sed -E "s/^  name: $RELEASE-client-[0-9]+\$/  name: $name/" | kn create -f - >/dev/null
  echo "started Job $name: $*" >&2
}

# Prints fib(30) from the chart's install-time Job, or fails.
check_chart_job_answer() {
  local job out result
  job=$(latest_chart_job)
  [[ -n $job ]] || fail "the chart created no client Job"
  log "client Job $job answers fib(30)"
  wait_job "$job" 300
  out=$(job_json "$job")
  printf '%s\n' "$out"
  result=$(jq -r .result <<<"$out")
  [[ $result == 832040 ]] || fail "client Job $job answered '$result', expected 832040"
  TRACE_ID=$(jq -r '.trace_id // empty' <<<"$out")
}

# A load that checks every answer and retries retryable failures: every call must succeed.
# verified_load NAME SECONDS CONCURRENCY
start_verified_load() {
  start_client_job "$1" --load --json --verify --spread --retries 10 \
    --concurrency "$3" --duration "${2}s" 25
}

check_verified_load() {
  local job=$1 summary
  wait_job "$job" 900
  summary=$(job_json "$job")
  printf '%s\n' "$summary"
  jq -e '.calls > 0 and .ok == .calls and .wrong == 0' <<<"$summary" >/dev/null ||
    fail "load $job lost or got wrong answers: $summary"
  figure "$job calls/ok/wrong/retried" "$(jq -r '"\(.calls)/\(.ok)/\(.wrong)/\(.retried_calls)"' <<<"$summary")"
}

# --- Observations -----------------------------------------------------------------------

replicas() { kn get deployment "$SERVER" -o jsonpath="{.status.${1}}"; }
ready_replicas() {
  local n
  n=$(replicas readyReplicas)
  echo "${n:-0}"
}

pod_uid() { kn get pod "$1" -o jsonpath='{.metadata.uid}'; }

# Deletes StatefulSet pod $1 and waits for its successor (same name, new uid) to be Ready.
recreate_pod() {
  local uid
  uid=$(pod_uid "$1")
  kn delete pod "$1" --wait=false
  for _ in $(seq 1 120); do
    [[ $(kn get pod "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null) != "$uid" ]] && break
    sleep 1
  done
  kn wait --for=condition=Ready "pod/$1" --timeout 300s
}
jaeger_pod() { kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=jaeger" -o name | sed -n 1p; }
restarts() { kn get "$1" -o jsonpath='{.status.containerStatuses[0].restartCount}'; }

broker_password() { kn get secret "$RELEASE-rabbitmq" -o jsonpath='{.data.rabbitmq-password}'; }

start_port_forward() {
  [[ -n $PORT_FORWARD_PID ]] && return 0
  # kubectl itself, not the kn function: $! of a backgrounded function is a subshell, and
  # killing it left kubectl running after the checks, holding open whatever lock the caller
  # ran them under (flock /work/locks/... waited on it for good).
  kubectl -n "$NAMESPACE" port-forward "service/$RELEASE-jaeger" "$JAEGER_LOCAL_PORT:16686" >/dev/null 2>&1 &
  PORT_FORWARD_PID=$!
  for _ in $(seq 1 30); do
    curl -fsS "http://127.0.0.1:$JAEGER_LOCAL_PORT/api/services" >/dev/null 2>&1 && return 0
    sleep 1
  done
  fail "Jaeger query API not reachable through port-forward"
}

stop_port_forward() {
  [[ -n $PORT_FORWARD_PID ]] || return 0
  kill "$PORT_FORWARD_PID" 2>/dev/null || true
  wait "$PORT_FORWARD_PID" 2>/dev/null || true
  PORT_FORWARD_PID=""
}

# True when the JSON of /api/traces holds one trace with spans of both services.
has_joint_trace() {
  jq -e 'any(.data[]?; ([.processes[].serviceName] | (index("fib-rpc-client") != null) and (index("fib-rpc-server") != null)))' >/dev/null
}

check_trace() {
  log "one trace holds spans of fib-rpc-client and fib-rpc-server in Jaeger"
  start_port_forward
  local base="http://127.0.0.1:$JAEGER_LOCAL_PORT/api/traces"
  for attempt in $(seq 1 24); do
    if [[ -n ${TRACE_ID:-} ]] && curl -fsS "$base/$TRACE_ID" 2>/dev/null | has_joint_trace; then
      echo "trace $TRACE_ID of the client Job holds spans of both services"
      stop_port_forward
      return 0
    fi
    echo "no joint trace yet (attempt $attempt/24)"
    sleep 5
  done
  fail "trace ${TRACE_ID:-?} of the client Job has no spans of both services in Jaeger"
}

# A copy of the chart with a new version and appVersion: what every release upgrade looks like.
bumped_chart() {
  local dir
  dir=$(mktemp -d)
  cp -r "$CHART" "$dir/"
  sed -i -E 's/^version: (.*)$/version: \1-e2e.1/; s/^appVersion: "?([^"]*)"?$/appVersion: "\1-e2e.1"/' "$dir/fib-rpc/Chart.yaml"
  echo "$dir/fib-rpc"
}

# shellcheck source=test/e2e/security.sh
source "$ROOT/test/e2e/security.sh"
# shellcheck source=test/e2e/network-policy.sh
source "$ROOT/test/e2e/network-policy.sh"

# --- Phases -------------------------------------------------------------------------------

phase_no_keda() {
  log "install without KEDA's CRDs: fixed replicas"
  if kubectl get crd scaledobjects.keda.sh >/dev/null 2>&1; then
    fail "KEDA's CRDs are installed; run phase no-keda before phase keda"
  fi
  restricted_namespace
  helm_install --values "$CHART/ci/fixed-replicas-values.yaml"
  kn get scaledobject "$SERVER" >/dev/null 2>&1 && fail "a ScaledObject was rendered without KEDA"
  [[ $(kn get deployment "$SERVER" -o jsonpath='{.spec.replicas}') == 3 ]] ||
    fail "the server Deployment does not run the fixed 3 replicas"
  check_chart_job_answer
  check_broker_users "fresh install"
  check_pods_admitted
  phase_uninstall
  kubectl delete namespace "$NAMESPACE" --wait=true --timeout=5m >/dev/null
}

phase_keda() {
  log "installing KEDA"
  [[ -n ${E2E_KEDA_INSTALL:-} ]] || fail "set E2E_KEDA_INSTALL to the command that installs KEDA"
  bash -c "$E2E_KEDA_INSTALL"
  kubectl get crd scaledobjects.keda.sh >/dev/null
}

phase_install() {
  restricted_namespace
  install_previous_chart
  log "helm upgrade from the 0.2.0 chart with KEDA and a persistent broker"
  local started=$SECONDS
  helm_install
  check_chart_job_answer
  figure "helm upgrade from 0.2.0 to first answer (s)" $((SECONDS - started))
  kn get scaledobject "$SERVER" >/dev/null || fail "no ScaledObject with KEDA present"
  check_broker_users "upgrade from the 0.2.0 chart"

  log "helm test"
  helm -n "$NAMESPACE" test "$RELEASE" --logs --timeout 5m

  check_trace

  log "the generated broker password survives helm upgrade"
  local before after
  before=$(broker_password)
  helm_install
  after=$(broker_password)
  [[ -n $before && $before == "$after" ]] || fail "the broker password changed on upgrade"
  check_chart_job_answer
  check_broker_users "upgrade"
  check_least_privilege
  check_pods_admitted
  check_broker_settings
  check_refused_jump
}

# The RabbitMQ version a broker StatefulSet records (the chart's fib-rpc.io/rabbitmq-version).
sts_rabbitmq_version() {
  kn get statefulset "$RELEASE-rabbitmq" -o jsonpath='{.metadata.annotations.fib-rpc\.io/rabbitmq-version}'
}

# version_at_least X.Y.Z A.B: true when X.Y.Z is series A.B or later.
version_at_least() {
  local major=${1%%.*} rest=${1#*.} want_major=${2%%.*} want_minor=${2#*.}
  local minor=${rest%%.*}
  ((major > want_major || (major == want_major && minor >= want_minor)))
}

# A jump that RabbitMQ does not support (4.0 -> 4.3: 4.3 upgrades from 4.2.x only) is refused by
# the chart before anything changes (templates/rabbitmq/_lifecycle.tpl reads the running
# version through lookup): helm upgrade fails naming the path through 4.2, the broker pod and
# the release revision stay, and the broker still serves. It needs a broker image of a series
# the running one may not jump to: E2E_RABBITMQ43_VALUES (the 4.3 stand-in) over a broker
# older than 4.2 (the 4.0.5 stand-in). The chart refuses it for one node as for a cluster: a
# single node's data is as tied to its version.
check_refused_jump() {
  local running target uid generation revision out job
  running=$(sts_rabbitmq_version)
  if [[ -z ${E2E_RABBITMQ43_VALUES:-} ]] || version_at_least "$running" 4.2; then
    echo "not checked here: the refused jump to 4.3 needs E2E_RABBITMQ43_VALUES and a broker older than 4.2 (this one: ${running:-?})"
    return 0
  fi
  target=$(sed -n 's/^ *tag: "\{0,1\}\([0-9][^"]*\)"\{0,1\}$/\1/p' "$E2E_RABBITMQ43_VALUES" | sed -n 1p)
  log "the unsupported jump from RabbitMQ $running to $target is refused before anything changes"
  uid=$(pod_uid "$BROKER_POD")
  generation=$(kn get statefulset "$RELEASE-rabbitmq" -o jsonpath='{.metadata.generation}')
  revision=$(helm -n "$NAMESPACE" history "$RELEASE" -o json | jq -r 'last | .revision')
  if out=$(helm_install --values "$E2E_RABBITMQ43_VALUES" 2>&1); then
    fail "helm upgrade from RabbitMQ $running to $target was accepted"
  fi
  printf '%s\n' "$out" | tail -n 3
  [[ $out == *"RabbitMQ 4.3 supports upgrades from 4.2.x only, and this broker runs $running"* &&
    $out == *"Upgrade to the latest 4.2.x first"* ]] ||
    fail "the refusal does not name the supported path: $out"
  [[ $(pod_uid "$BROKER_POD") == "$uid" ]] || fail "the refused upgrade re-created the broker pod"
  [[ $(kn get statefulset "$RELEASE-rabbitmq" -o jsonpath='{.metadata.generation}') == "$generation" ]] ||
    fail "the refused upgrade changed the broker StatefulSet"
  [[ $(helm -n "$NAMESPACE" history "$RELEASE" -o json | jq -r 'last | "\(.revision) \(.status)"') == "$revision deployed" ]] ||
    fail "the refused upgrade left a new release revision"
  [[ $(sts_rabbitmq_version) == "$running" ]] || fail "the broker StatefulSet no longer records $running"
  job="$RELEASE-after-refusal-$(date +%s)"
  start_client_job "$job" --json 30
  wait_job "$job" 300
  [[ $(jq -r .result <<<"$(job_json "$job")") == 832040 ]] || fail "the broker does not serve after the refused upgrade"
  echo "refused; broker pod, StatefulSet (generation $generation) and revision $revision unchanged; a client Job got fib(30)"
}

# What the chart configures in the broker really reaches it: the limits of its rabbitmq.conf
# and the dead-letter queue's bounds declared by the server.
check_broker_settings() {
  log "the broker runs with the chart's limits, and the DLQ is bounded"
  local memory disk dlq
  memory=$(kn exec "$BROKER_POD" -- rabbitmqctl eval 'vm_memory_monitor:get_memory_limit().' | tr -d '\r')
  disk=$(kn exec "$BROKER_POD" -- rabbitmqctl eval 'rabbit_disk_monitor:get_disk_free_limit().' | tr -d '\r')
  dlq=$(kn exec "$BROKER_POD" -- rabbitmqctl -q list_queues name arguments | grep '^rpc_queue\.dlq' || true)
  echo "memory high watermark: $memory bytes; disk free limit: $disk bytes; $dlq"
  # Without the chart's rabbitmq.conf the broker reads the node's memory, far above the pod limit.
  ((memory > 0 && memory < 1073741824)) || fail "the broker's memory watermark ignores the pod's limit: $memory"
  ((disk >= 1073741824)) || fail "the broker's disk free limit is not the chart's: $disk"
  [[ $dlq == *x-max-length* && $dlq == *x-message-ttl* ]] || fail "rpc_queue.dlq is not bounded: $dlq"
}

phase_scaling() {
  local min max job peak=0 ready desired jaeger jaeger_restarts started
  min=$(kn get scaledobject "$SERVER" -o jsonpath='{.spec.minReplicaCount}')
  max=$(kn get scaledobject "$SERVER" -o jsonpath='{.spec.maxReplicaCount}')
  ((max >= 3)) || fail "maxReplicaCount $max leaves no room to see 3 replicas"
  jaeger=$(jaeger_pod)
  jaeger_restarts=$(restarts "$jaeger")
  job="$RELEASE-load-$(date +%s)"
  log "load ($LOAD_SECONDS s, concurrency 64): the server must reach 3 replicas (min $min, max $max)"
  start_client_job "$job" --load --json --concurrency 64 --duration "${LOAD_SECONDS}s" 20000
  started=$SECONDS
  for _ in $(seq 1 $((LOAD_SECONDS / 5))); do
    ready=$(ready_replicas)
    ((ready > peak)) && peak=$ready
    echo "ready server replicas: $ready (peak $peak)"
    ((peak >= 3)) && break
    sleep 5
  done
  ((peak >= 3)) || fail "the server never reached 3 ready replicas under load (peak $peak)"
  figure "load start to 3 ready servers (s)" $((SECONDS - started))
  kn get hpa
  wait_job "$job" $((LOAD_SECONDS + 300))
  local summary
  summary=$(job_json "$job")
  printf '%s\n' "$summary"
  jq -e '.ok > 0 and .errors == {}' <<<"$summary" >/dev/null || fail "load run had errors: $summary"

  log "load over: the server must return to $min"
  started=$SECONDS
  for _ in $(seq 1 120); do
    desired=$(replicas replicas)
    ready=$(ready_replicas)
    echo "desired ${desired:-0}, ready $ready (min $min)"
    if ((${desired:-0} == min && ready <= min)); then
      figure "load end to $min server(s) (s)" $((SECONDS - started))
      [[ $(restarts "$jaeger") == "$jaeger_restarts" ]] ||
        fail "Jaeger restarted during the load: $(kn get "$jaeger" -o jsonpath='{.status.containerStatuses[0].lastState.terminated.reason}')"
      echo "Jaeger kept running through the load (restarts: $jaeger_restarts)"
      return 0
    fi
    sleep 5
  done
  fail "the server did not scale back to $min after the load"
}

phase_faults() {
  local job victim broker_uid jaeger before started
  log "fault: a server pod deleted under a verified load"
  job="$RELEASE-fault-server-$(date +%s)"
  start_verified_load "$job" 60 16
  sleep 20
  victim=$(kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=server" \
    --field-selector status.phase=Running -o name | sed -n 1p)
  [[ -n $victim ]] || fail "no running server pod to delete"
  kn delete "$victim" --wait=false
  check_verified_load "$job"

  log "fault: the broker pod deleted under a verified load (persistent volume)"
  before=$(broker_password)
  job="$RELEASE-fault-broker-$(date +%s)"
  start_verified_load "$job" 90 16
  sleep 15
  started=$SECONDS
  recreate_pod "$BROKER_POD" ||
    fail "the broker did not come back after its pod was re-created (cookie permissions? see its log)"
  figure "broker pod deleted to Ready again (s)" $((SECONDS - started))
  [[ $(broker_password) == "$before" ]] || fail "the broker password changed when its pod was re-created"
  check_broker_volume
  check_verified_load "$job"

  log "fault: helm upgrade to a new chart version (new server pod template), under a verified load"
  broker_uid=$(pod_uid "$BROKER_POD")
  jaeger=$(jaeger_pod)
  before=$(kn get "$jaeger" -o jsonpath='{.metadata.uid}')
  job="$RELEASE-fault-upgrade-$(date +%s)"
  start_verified_load "$job" 90 16
  sleep 15
  local bumped values
  bumped=$(bumped_chart)
  mapfile -t values < <(chart_values)
  helm upgrade "$RELEASE" "$bumped" --namespace "$NAMESPACE" "${values[@]}" --wait --timeout 10m
  rm -rf "$(dirname "$bumped")"
  kn rollout status "deployment/$SERVER" --timeout 5m
  check_verified_load "$job"
  [[ $(pod_uid "$BROKER_POD") == "$broker_uid" ]] || fail "the upgrade re-created the broker pod"
  [[ $(kn get "$jaeger" -o jsonpath='{.metadata.uid}' 2>/dev/null) == "$before" ]] ||
    fail "the upgrade re-created the Jaeger pod"
  echo "the upgrade rolled the servers only; broker and Jaeger pods are the same"
}

# After a re-creation the kubelet has applied fsGroup to the data volume again; Erlang's
# cookie must still be owner-only or the node refuses to boot. E2E_EXPECT_FSGROUP=true (a
# cluster whose volumes honour fsGroup) makes sure the check is not vacuous.
check_broker_volume() {
  local data cookie fsgroup
  data=$(kn exec "$BROKER_POD" -- stat -c '%g %a' /var/lib/rabbitmq | tr -d '\r')
  # shellcheck disable=SC2016 # $HOME is the container's, expanded by its shell
  cookie=$(kn exec "$BROKER_POD" -- sh -c 'stat -c %a "$HOME/.erlang.cookie"' | tr -d '\r')
  fsgroup=$(kn get pod "$BROKER_POD" -o jsonpath='{.spec.securityContext.fsGroup}')
  echo "data volume: group and mode $data (fsGroup $fsgroup); Erlang cookie mode $cookie"
  [[ $cookie == 400 ]] || fail "the Erlang cookie is $cookie after the broker pod was re-created"
  if [[ ${E2E_EXPECT_FSGROUP:-false} == true ]]; then
    [[ ${data%% *} == "$fsgroup" && ${data#* } == 2* ]] ||
      fail "this cluster's volume did not get fsGroup $fsgroup applied ($data): the check proves nothing"
  fi
}

phase_scale_to_zero() {
  log "scale-to-zero: the server goes to 0, one request wakes it"
  helm_install --values "$CHART/ci/scale-to-zero-values.yaml" --set autoscaling.keda.cooldownPeriod=30 \
    --set autoscaling.keda.pollingInterval=5
  local desired started job out
  for _ in $(seq 1 60); do
    desired=$(replicas replicas)
    [[ ${desired:-0} == 0 ]] && break
    sleep 5
  done
  [[ ${desired:-0} == 0 ]] || fail "the server never scaled to zero (replicas $desired)"
  # KEDA activates on more than activationValue messages: anything above 0 strands one request.
  [[ $(kn get scaledobject "$SERVER" -o jsonpath='{.spec.triggers[0].metadata.activationValue}') == 0 ]] ||
    fail "the ScaledObject's activationValue would not wake a server for one request"
  echo "server at 0 replicas"
  job="$RELEASE-wake-$(date +%s)"
  started=$SECONDS
  start_client_job "$job" --json 30
  wait_job "$job" 300
  out=$(job_json "$job")
  printf '%s\n' "$out"
  [[ $(jq -r .result <<<"$out") == 832040 ]] || fail "the single request was not answered: $out"
  figure "one request at zero servers to its answer (s)" $((SECONDS - started))
}

delete_test_jobs() {
  kn delete jobs -l "app.kubernetes.io/instance=$RELEASE" --cascade=foreground --wait=true --timeout=3m >/dev/null 2>&1 || true
}

phase_uninstall() {
  log "helm uninstall leaves no pod behind"
  delete_test_jobs
  helm -n "$NAMESPACE" uninstall "$RELEASE" --wait --timeout 5m
  local left=""
  for _ in $(seq 1 60); do
    left=$(kn get pods -l "app.kubernetes.io/instance=$RELEASE" -o name)
    [[ -z $left ]] && break
    sleep 2
  done
  [[ -z $left ]] || fail "pods left after helm uninstall: $left"
  echo "no pod of $RELEASE is left"
}

# The reinstall is also the TLS install: amqps and https only, with a CA this run makes.
phase_reinstall() {
  log "uninstall and reinstall with the broker's volume kept, with TLS only: clients still get in"
  local before pvc
  before=$(broker_password)
  phase_uninstall
  pvc=$(kn get pvc -l "app.kubernetes.io/instance=$RELEASE" -o name)
  [[ -n $pvc ]] || fail "the broker's PersistentVolumeClaim did not outlive the release"
  [[ $(broker_password) == "$before" ]] || fail "the broker's Secret did not outlive the release beside its volume"
  echo "kept: $pvc, secret/$RELEASE-rabbitmq"
  make_tls_secret "$RELEASE-e2e-broker-tls"
  local started=$SECONDS
  helm_install --set rabbitmq.tls.enabled=true --set rabbitmq.tls.existingSecret="$RELEASE-e2e-broker-tls" \
    --set rabbitmq.tls.plaintext=false
  [[ $(broker_password) == "$before" ]] || fail "reinstall generated a new password while the data directory kept the old one"
  check_chart_job_answer
  figure "reinstall with TLS to first answer (s)" $((SECONDS - started))
  helm -n "$NAMESPACE" test "$RELEASE" --logs --timeout 5m
  check_broker_users "reinstall onto the kept volume"
  check_tls
  figure "reinstall with TLS, all checks (s)" $((SECONDS - started))
}

# --- Broker cluster -------------------------------------------------------------------

CLUSTER_NAMESPACE=${CLUSTER_NAMESPACE:-fib-rpc-broker-cluster}
CLUSTER_LOAD_SECONDS=${CLUSTER_LOAD_SECONDS:-40}

# rabbitmqctl in broker pod $1 (its env names the node; its HOME holds the cluster's cookie).
rmq() {
  local pod=$1
  shift
  kn exec "$pod" -c rabbitmq -- "$@"
}

# Names of the running nodes, as broker pod $1 sees the cluster, one a line.
running_nodes() { rmq "$1" rabbitmqctl -q cluster_status --formatter json | jq -r '.running_nodes[]'; }

# JSON of the work queue as pod $1 sees it: {name, type, leader, members}.
work_queue() {
  local queue
  queue=$(kn get configmap "$SERVER" -o jsonpath='{.data.RPC_QUEUE}')
  rmq "$1" rabbitmqctl -q list_queues name type leader members --formatter json |
    jq -c --arg q "$queue" '.[] | select(.name == $q)'
}

# rabbit@<pod>.<headless service>... -> <pod>
node_pod() {
  local host=${1#*@}
  echo "${host%%.*}"
}

wait_for_cluster() {
  local pod=$1 nodes=$2 seconds=$3 running started=$SECONDS
  while ((SECONDS - started < seconds)); do
    running=$(running_nodes "$pod" 2>/dev/null | wc -l) || running=0
    ((running == nodes)) && return 0
    echo "running nodes seen from $pod: $running of $nodes"
    sleep 5
  done
  rmq "$pod" rabbitmqctl cluster_status >&2 || true
  fail "the broker cluster did not reach $nodes running nodes within ${seconds}s"
}

# A quorum queue gets a member on each node that is up when it is declared, and the chart's
# membership reconciliation adds the nodes that joined later: wait for one member per node.
wait_for_quorum_members() {
  local pod=$1 nodes=$2 seconds=$3 queue="" members=0 started=$SECONDS
  while ((SECONDS - started < seconds)); do
    queue=$(work_queue "$pod" || true)
    [[ -n $queue ]] || queue='{}'
    members=$(jq -r '.members | length' <<<"$queue")
    if [[ $(jq -r .type <<<"$queue") == quorum ]] && ((members == nodes)); then
      echo "$queue"
      return 0
    fi
    echo "work queue: $queue ($members of $nodes members)" >&2
    sleep 5
  done
  fail "the work queue is not a quorum queue with a member on each of the $nodes nodes: $queue"
}

# disruption_figures WHAT JOB: what a verified load saw of a disruption. A stall is a second
# or more without a successful call (0: none); the slowest call is what the calls caught in
# the disruption waited.
disruption_figures() {
  local summary
  summary=$(job_json "$2")
  figure "$1: longest stall (ms)" "$(jq -r '[.stalls[]?.duration_ms] | max // 0' <<<"$summary")"
  figure "$1: slowest call (ms)" "$(jq -r .max_ms <<<"$summary")"
  figure "$1: calls/s" "$(jq -r .calls_per_s <<<"$summary")"
}

# The discovery path the chart renders for the broker's version (templates/_helpers.tpl,
# fib-rpc.rabbitmqApiDiscovery), and what the version brings: up to 4.0 the plugin lists the
# headless Service's endpoints through the API (a Role and RoleBinding, a token in the broker
# container); from 4.1 on it derives the seed node, pod -0, from its own name and asks the API
# nothing (no RBAC, no token). From 4.2 on a new cluster's metadata store is Khepri (4.0 and 4.1:
# Mnesia unless khepri_db is enabled). On every version the pods' feature-flags step has
# enabled every stable flag, and the StatefulSet records the version and that step.
check_cluster_path() {
  local pod=$1 version running rbac token flags off started=$SECONDS
  version=$(sts_rabbitmq_version)
  running=$(rmq "$pod" rabbitmqctl -q version | tr -d '\r')
  echo "the StatefulSet records RabbitMQ $version; $pod runs $running"
  [[ -n $version && $running == "$version" ]] || fail "fib-rpc.io/rabbitmq-version is '$version', the node runs $running"
  [[ $(kn get statefulset "$RELEASE-rabbitmq" -o jsonpath='{.metadata.annotations.fib-rpc\.io/rabbitmq-feature-flags}') == all ]] ||
    fail "the StatefulSet does not say its pods enable all feature flags"
  rbac=$(kn get roles,rolebindings -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=rabbitmq" -o name)
  token=$(kn get pod "$pod" -o json | jq -r '[.spec.volumes[] | select(.projected != null)] | length')
  if version_at_least "$version" 4.1; then
    [[ -z $rbac && $token == 0 ]] ||
      fail "RabbitMQ $version needs no API access, yet the chart rendered: ${rbac:-no RBAC}, $token API token volumes"
    echo "peer discovery v2 (4.1+): no Role or RoleBinding, no API token in the broker pod"
  else
    [[ $rbac == *role.rbac* && $rbac == *rolebinding.rbac* && $token == 1 ]] ||
      fail "RabbitMQ $version lists endpoints through the API, yet the chart rendered: ${rbac:-no RBAC}, $token API token volumes"
    echo "peer discovery v1 (up to 4.0): $(tr '\n' ' ' <<<"$rbac")and an API token in the broker container"
  fi
  if version_at_least "$version" 4.2; then
    [[ $(rmq "$pod" rabbitmqctl -q eval 'rabbit_khepri:is_enabled().' | tr -d '\r') == true ]] ||
      fail "a new RabbitMQ $version cluster does not use Khepri"
    echo "metadata store: Khepri"
  fi
  # A new cluster enables every stable flag by itself (4.3.6 does at its first boot), so the
  # flags' state alone does not show the chart's step: each pod's log must also say that its
  # step succeeded. The step sleeps 30 s before its first try, then retries every 30 s.
  # The log is read whole before grep: with pipefail, grep -q's early exit would SIGPIPE
  # kubectl on a log longer than the pipe's buffer and count a pod whose step succeeded as not.
  local p done_pods log
  while :; do
    flags=$(rmq "$pod" rabbitmqctl -q list_feature_flags name state stability --formatter json)
    off=$(jq -r '[.[] | select(.stability != "experimental" and .state != "enabled") | .name] | join(",")' <<<"$flags")
    done_pods=0
    for p in $(kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=rabbitmq" -o name); do
      log=$(kn logs "$p" -c rabbitmq)
      grep -q '^fib-rpc: all stable feature flags are enabled$' <<<"$log" && done_pods=$((done_pods + 1))
    done
    [[ -n $off ]] || ((done_pods != $(kn get statefulset "$RELEASE-rabbitmq" -o jsonpath='{.spec.replicas}'))) || break
    ((SECONDS - started < 180)) || fail "after 180 s: stable feature flags not enabled: ${off:-none}; pods whose step succeeded: $done_pods"
    echo "stable feature flags not enabled: ${off:-none}; pods whose step succeeded: $done_pods"
    sleep 10
  done
  echo "every stable feature flag is enabled ($(jq -r '[.[] | select(.stability != "experimental")] | length' <<<"$flags") of $(jq length <<<"$flags")), and every pod's step said so"
}

# durable_messages publish|count QUEUE [N]: through a port-forward to broker pod -0, as the
# broker's administrator (credentials in the environment only), declare durable quorum queue
# QUEUE and publish N persistent messages with publisher confirms, or count its messages.
durable_messages() {
  local mode=$1 queue=$2 n=${3:-0} port pf out
  port=$((20000 + RANDOM % 10000))
  kn port-forward "pod/$RELEASE-rabbitmq-0" "$port:5672" >/dev/null 2>&1 &
  pf=$!
  for _ in $(seq 1 30); do
    (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 1
  done
  # shellcheck disable=SC2016 # JavaScript, not shell
  out=$(cd "$ROOT" && MODE=$mode QUEUE=$queue N=$n PORT=$port \
    AMQP_USER=$(kn get secret "$RELEASE-rabbitmq" -o jsonpath='{.data.rabbitmq-username}' | base64 -d) \
    AMQP_PASS=$(kn get secret "$RELEASE-rabbitmq" -o jsonpath='{.data.rabbitmq-password}' | base64 -d) \
    VHOST=$(kn get statefulset "$RELEASE-rabbitmq" \
      -o jsonpath='{.spec.template.spec.containers[?(@.name=="rabbitmq")].env[?(@.name=="RABBITMQ_DEFAULT_VHOST")].value}') \
    timeout 60 node --input-type=module -e '
      import amqp from "amqplib";
      const env = process.env;
      const c = await amqp.connect({ hostname: "127.0.0.1", port: Number(env.PORT), username: env.AMQP_USER,
        password: env.AMQP_PASS, vhost: env.VHOST });
      const ch = await c.createConfirmChannel();
      if (env.MODE === "publish") {
        await ch.assertQueue(env.QUEUE, { durable: true, arguments: { "x-queue-type": "quorum" } });
        for (let i = 0; i < Number(env.N); i++) ch.sendToQueue(env.QUEUE, Buffer.from(`e2e-${i}`), { persistent: true });
        await ch.waitForConfirms();
      }
      const { messageCount } = await ch.checkQueue(env.QUEUE);
      console.log(messageCount);
      await c.close();') || out=""
  kill "$pf" 2>/dev/null || true
  wait "$pf" 2>/dev/null || true
  [[ $out =~ ^[0-9]+$ ]] || fail "could not $mode messages of $queue through a port-forward to the broker"
  echo "$out"
}

# The broker pods' names and uids, one "name uid" a line.
broker_pods() {
  kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=rabbitmq" -o json |
    jq -r '.items[] | "\(.metadata.name) \(.metadata.uid)"' | sort
}

# Every broker pod deleted at once (a full outage): all come back on their volumes without
# a restart. Khepri waits up to 300 s for a leader and the startup probe allows 600 s, and
# the pods start in parallel (podManagementPolicy Parallel): none of them is restarted.
check_full_restart() {
  local nodes=$1 pod0=$2 queue=e2e-durable n=200 before after restarts waiting started count
  log "broker cluster: every broker pod deleted at once; they come back without a restart, with the queues and their messages"
  count=$(durable_messages publish "$queue" "$n")
  ((count == n)) || fail "$queue holds $count messages after publishing $n"
  before=$(broker_pods)
  started=$SECONDS
  kn delete pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=rabbitmq" --wait=false >/dev/null
  while :; do
    after=$(broker_pods)
    if [[ $(comm -12 <(cut -d' ' -f2 <<<"$before" | sort) <(cut -d' ' -f2 <<<"$after" | sort) | wc -l) == 0 &&
      $(wc -l <<<"$after") == "$nodes" ]] &&
      kn wait --for=condition=Ready pod -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=rabbitmq" --timeout 5s >/dev/null 2>&1; then
      break
    fi
    waiting=$(kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=rabbitmq" -o json |
      jq -r '[.items[].status.containerStatuses[]? | select(.state.waiting.reason == "CrashLoopBackOff" or .restartCount > 0) | .name] | length')
    ((waiting == 0)) || fail "a broker container restarted after the full-cluster restart"
    ((SECONDS - started < 600)) || fail "the brokers were not all Ready within 600 s of the full-cluster restart"
    sleep 3
  done
  figure "broker cluster: all $nodes pods deleted to all Ready (s)" $((SECONDS - started))
  restarts=$(kn get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=rabbitmq" -o json |
    jq -r '[.items[].status.containerStatuses[] | .restartCount] | add')
  ((restarts == 0)) || fail "broker containers restarted $restarts times after the full-cluster restart"
  wait_for_cluster "$pod0" "$nodes" 120
  wait_for_quorum_members "$pod0" "$nodes" 120 >/dev/null
  count=$(durable_messages count "$queue")
  ((count == n)) || fail "$queue holds $count of its $n persistent messages after the full-cluster restart"
  echo "no restart; $nodes running nodes; the work queue has a member on each; $queue holds its $n messages"
  local job
  job="$RELEASE-cluster-after-restart-$(date +%s)"
  start_client_job "$job" --json 30
  wait_job "$job" 300
  [[ $(jq -r .result <<<"$(job_json "$job")") == 832040 ]] || fail "the cluster does not serve after the full restart"
}

phase_broker_cluster() {
  local main_namespace=$NAMESPACE nodes=3 pod0 queue leader victim job started broker_values=() phase_started=$SECONDS
  NAMESPACE=$CLUSTER_NAMESPACE
  pod0="$RELEASE-rabbitmq-0"
  # Locally the 4.3.6 stand-in: the official default image's path (4.1+). Without it (kind),
  # the chart's default image, the official 4.2.9.
  [[ -z ${E2E_RABBITMQ43_VALUES:-} ]] || broker_values=(--values "$E2E_RABBITMQ43_VALUES")
  log "broker cluster: rabbitmq.replicas=$nodes in namespace $NAMESPACE"
  restricted_namespace
  started=$SECONDS
  # Three brokers on a small machine: fixed servers, no Jaeger, the chart's broker requests.
  local cluster_values=("${broker_values[@]}" --set autoscaling.keda.enabled=false
    --set server.replicas=2 --set jaeger.enabled=false)
  helm_install "${cluster_values[@]}" --set "rabbitmq.replicas=$nodes"
  wait_for_cluster "$pod0" $nodes 300
  figure "broker cluster: install to $nodes running nodes (s)" $((SECONDS - started))
  running_nodes "$pod0"
  [[ $(kn get configmap "$SERVER" -o jsonpath='{.data.RPC_QUEUE_TYPE}') == quorum ]] ||
    fail "the chart did not set RPC_QUEUE_TYPE=quorum for $nodes broker nodes"
  check_chart_job_answer
  check_pods_admitted
  check_cluster_path "$pod0"
  queue=$(wait_for_quorum_members "$pod0" $nodes 180)
  echo "work queue: $queue"
  leader=$(jq -r .leader <<<"$queue")
  victim=$(node_pod "$leader")
  [[ $victim == "$RELEASE-rabbitmq-"[0-9]* ]] || fail "cannot tell the leader's pod from '$leader'"

  log "broker cluster: the leader's pod $victim deleted under a verified load"
  job="$RELEASE-cluster-load-$(date +%s)"
  start_client_job "$job" --load --json --verify --spread --retries 5 \
    --concurrency 16 --duration "${CLUSTER_LOAD_SECONDS}s" 25
  wait_load_running "$job"
  sleep $((CLUSTER_LOAD_SECONDS / 3))
  started=$SECONDS
  recreate_pod "$victim" || fail "the deleted broker $victim did not come back Ready"
  figure "broker cluster: leader pod deleted to Ready again (s)" $((SECONDS - started))
  check_verified_load "$job"
  disruption_figures "broker cluster, leader lost" "$job"
  wait_for_cluster "$pod0" $nodes 300
  queue=$(wait_for_quorum_members "$pod0" $nodes 120)
  echo "after the loss: $queue (leader was $leader)"

  log "broker cluster: a helm upgrade that changes the brokers' config rolls them one at a time, under a verified load"
  local upgrade ready fewest=$nodes
  job="$RELEASE-cluster-upgrade-$(date +%s)"
  start_client_job "$job" --load --json --verify --spread --retries 5 \
    --concurrency 16 --duration "$((CLUSTER_LOAD_SECONDS * 3))s" 25
  sleep 10
  started=$SECONDS
  cluster_values+=(--set-json rabbitmq.memoryHighWatermark=0.55)
  helm_install "${cluster_values[@]}" --set "rabbitmq.replicas=$nodes" >/dev/null &
  upgrade=$!
  while kill -0 "$upgrade" 2>/dev/null; do
    ready=$(kn get statefulset "$RELEASE-rabbitmq" -o jsonpath='{.status.readyReplicas}')
    ((${ready:-0} < fewest)) && fewest=${ready:-0}
    sleep 2
  done
  wait "$upgrade" || fail "helm upgrade of the broker cluster failed"
  kn rollout status "statefulset/$RELEASE-rabbitmq" --timeout 10m
  figure "broker cluster: helm upgrade rolling $nodes brokers (s)" $((SECONDS - started))
  echo "fewest ready brokers during the upgrade: $fewest of $nodes"
  ((fewest >= nodes - 1)) || fail "the upgrade took $((nodes - fewest)) brokers down at once"
  check_verified_load "$job"
  disruption_figures "broker cluster, rolling upgrade" "$job"

  check_full_restart $nodes "$pod0"

  local more=5
  log "broker cluster: scale-up $nodes -> $more under a verified load"
  job="$RELEASE-cluster-scale-$(date +%s)"
  start_client_job "$job" --load --json --verify --spread --retries 5 \
    --concurrency 16 --duration "$((CLUSTER_LOAD_SECONDS * 3))s" 25
  wait_load_running "$job"
  started=$SECONDS
  helm_install "${cluster_values[@]}" --set "rabbitmq.replicas=$more" >/dev/null ||
    fail "helm upgrade to rabbitmq.replicas=$more failed"
  wait_for_cluster "$pod0" $more 300
  figure "broker cluster: helm upgrade to $more running nodes (s)" $((SECONDS - started))
  queue=$(wait_for_quorum_members "$pod0" $more 300)
  figure "broker cluster: helm upgrade to $more work queue members (s)" $((SECONDS - started))
  echo "work queue: $queue"
  check_verified_load "$job"
  disruption_figures "broker cluster, scale-up to $more" "$job"
  check_cluster_path "$pod0"

  log "broker cluster: scale-down $more -> $nodes is refused and leaves the cluster as it was"
  local before out generation
  before=$(broker_pods)
  generation=$(kn get statefulset "$RELEASE-rabbitmq" -o jsonpath='{.metadata.generation}')
  if out=$(helm_install "${cluster_values[@]}" --set "rabbitmq.replicas=$nodes" 2>&1); then
    fail "helm upgrade to rabbitmq.replicas=$nodes was accepted on a $more-node broker"
  fi
  printf '%s\n' "$out" | tail -n 3
  [[ $out == *"rabbitmq.replicas=$nodes is a scale-down of the running $more-node broker, which the chart refuses"* &&
    $out == *"forget_cluster_node"* && $out == *'"Scaling the broker down"'* ]] ||
    fail "the scale-down refusal is not the chart's documented one: $out"
  [[ $(broker_pods) == "$before" ]] || fail "the refused scale-down changed the broker pods"
  [[ $(kn get statefulset "$RELEASE-rabbitmq" -o jsonpath='{.metadata.generation} {.spec.replicas}') == "$generation $more" ]] ||
    fail "the refused scale-down changed the broker StatefulSet"
  wait_for_cluster "$pod0" $more 30
  job="$RELEASE-cluster-after-refusal-$(date +%s)"
  start_client_job "$job" --json 30
  wait_job "$job" 300
  [[ $(jq -r .result <<<"$(job_json "$job")") == 832040 ]] || fail "the cluster does not serve after the refused scale-down"
  echo "refused; the same $more pods, $more running nodes, and a client Job got fib(30)"

  log "broker cluster: removing namespace $NAMESPACE"
  delete_test_jobs
  # The last brokers wait in their preStop for peers that are gone (rabbitmq.quorumWaitSeconds).
  helm -n "$NAMESPACE" uninstall "$RELEASE" --wait --timeout 10m
  kubectl delete namespace "$NAMESPACE" --wait=true --timeout=10m >/dev/null
  figure "broker cluster: whole phase, install to namespace removed (s)" $((SECONDS - phase_started))
  NAMESPACE=$main_namespace
}

# Waits (bounded) until the client of load Job $1 runs: disruptions are timed from then.
wait_load_running() {
  for _ in $(seq 1 120); do
    [[ -n $(kn get pods -l "job-name=$1" --field-selector status.phase=Running -o name) ]] && return 0
    sleep 1
  done
  fail "load Job $1 never ran"
}

# --- Release ---------------------------------------------------------------------------

# The released chart as a user installs it: from its registry, in a directory with no
# checkout, with only the images this cluster can pull instead of the official ones.
phase_release() {
  local chart=${RELEASE_CHART:?phase release needs RELEASE_CHART (oci://...)} version=${RELEASE_CHART_VERSION:?}
  local ca=${RELEASE_CA_FILE:?} release_values=${RELEASE_VALUES:?} empty started job out
  log "the released chart $chart $version, installed from the registry with no checkout"
  restricted_namespace
  empty=$(mktemp -d)
  started=$SECONDS
  (cd "$empty" && helm install "$RELEASE" "$chart" --version "$version" --ca-file "$ca" \
    --namespace "$NAMESPACE" --values "$release_values" --wait --timeout 10m)
  [[ -z $(ls -A "$empty") ]] || fail "helm install left files in its working directory: $(ls -A "$empty")"
  rmdir "$empty"
  figure "release: helm install from oci:// (s)" $((SECONDS - started))
  [[ $(helm -n "$NAMESPACE" get metadata "$RELEASE" -o json | jq -r .version) == "$version" ]] ||
    fail "the installed chart is not version $version"
  # What the README tells a user to do for one call: a Job from the chart's CronJob template.
  job="$RELEASE-release-$(date +%s)"
  kn create job "$job" --from="cronjob/$RELEASE-client" >/dev/null
  wait_job "$job" 300
  out=$(job_json "$job")
  printf '%s\n' "$out"
  [[ $(jq -r .result <<<"$out") == 832040 ]] || fail "the released client answered: $out"
  figure "release: helm install to first answer (s)" $((SECONDS - started))
  log "helm test of the released chart"
  helm -n "$NAMESPACE" test "$RELEASE" --logs --timeout 5m
  check_pods_admitted
}

dump() {
  set +e
  log "cluster state"
  kubectl get nodes -o wide
  kubectl get all,pvc,scaledobject,triggerauthentication,hpa,pdb,networkpolicy -A -o wide
  kn describe scaledobject "$SERVER"
  kn describe pods
  log "events"
  kubectl get events -A --sort-by=.lastTimestamp | tail -n 150
  local pod namespace
  for namespace in "$NAMESPACE" "$CLUSTER_NAMESPACE"; do
    log "pod logs ($namespace)"
    for pod in $(kubectl -n "$namespace" get pods -o name 2>/dev/null); do
      echo "--- $pod"
      kubectl -n "$namespace" logs "$pod" --all-containers --prefix --tail=200
      kubectl -n "$namespace" logs "$pod" --all-containers --prefix --tail=50 --previous 2>/dev/null
    done
  done
  log "KEDA operator logs"
  kubectl -n keda logs deployment/keda-operator --tail=200
  set -e
}

on_exit() {
  local status=$?
  stop_port_forward
  ((status == 0)) || log "checks failed (status $status); figures so far in $E2E_FIGURES"
  exit "$status"
}

main() {
  for bin in kubectl helm jq curl; do
    command -v "$bin" >/dev/null || fail "missing $bin"
  done
  trap on_exit EXIT
  local phases=("$@")
  ((${#phases[@]})) && [[ ${phases[0]} != all ]] ||
    phases=(no-keda keda install scaling faults scale-to-zero reinstall uninstall network-policy broker-cluster)
  for phase in "${phases[@]}"; do
    case "$phase" in
    no-keda) phase_no_keda ;;
    keda) phase_keda ;;
    install) phase_install ;;
    scaling) phase_scaling ;;
    faults) phase_faults ;;
    scale-to-zero) phase_scale_to_zero ;;
    reinstall) phase_reinstall ;;
    uninstall) phase_uninstall ;;
    network-policy) phase_network_policy ;;
    broker-cluster) phase_broker_cluster ;;
    release) phase_release ;;
    dump)
      dump
      return 0
      ;;
    *) fail "unknown phase $phase" ;;
    esac
  done
  log "e2e checks passed: ${phases[*]}"
  cat "$E2E_FIGURES" >&2
}

main "$@"
