#!/usr/bin/env bash
# End-to-end test of the images and the Helm chart on a local kind cluster:
#   1. create a kind cluster (pinned node image), or reuse it
#   2. build both images with a non-latest tag and `kind load` them
#   3. install KEDA from its official chart (pinned) and this chart with ci/e2e-values.yaml
#   4. assert the client Job's answer, run `helm test`, find one trace holding spans of both
#      fib-rpc-client and fib-rpc-server in Jaeger, check the generated broker password
#      survives an upgrade, and see the server scale above its minimum under load and back
#   5. on failure dump cluster state, logs and events; delete the cluster unless KEEP_CLUSTER=true
#
# Usage: test/e2e/kind.sh [all|up|images|deploy|test|dump|down]   (default: all)
# Needs docker, kind, helm, kubectl, jq, curl (bash scripts/install-tools.sh --e2e installs
# kind and helm into .tools/bin). Safe to re-run: every step converges.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$ROOT/.tools/bin:$PATH"

CLUSTER=${KIND_CLUSTER:-fib-rpc-e2e}
# kind v0.33.0 node image for Kubernetes 1.35, pinned by digest.
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0}
KEDA_CHART_VERSION=${KEDA_CHART_VERSION:-2.21.0}
NAMESPACE=${NAMESPACE:-fib-rpc}
RELEASE=${RELEASE:-fib-rpc}
IMAGE_TAG=${IMAGE_TAG:-e2e-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo local)}
SERVER_IMAGE=${SERVER_IMAGE:-fib-rpc-server}
CLIENT_IMAGE=${CLIENT_IMAGE:-fib-rpc-client}
KEEP_CLUSTER=${KEEP_CLUSTER:-false}
JAEGER_LOCAL_PORT=${JAEGER_LOCAL_PORT:-16686}
LOAD_SECONDS=${LOAD_SECONDS:-150}

CHART="$ROOT/charts/fib-rpc"
VALUES="$CHART/ci/e2e-values.yaml"
SERVER="$RELEASE-server"
PORT_FORWARD_PID=""

log() { printf '\n=== %s: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "kind-$CLUSTER" "$@"; }
kn() { k -n "$NAMESPACE" "$@"; }

require() {
  local missing=()
  for bin in docker kind helm kubectl jq curl; do
    command -v "$bin" >/dev/null || missing+=("$bin")
  done
  ((${#missing[@]} == 0)) || fail "missing tools: ${missing[*]} (bash scripts/install-tools.sh --e2e installs kind and helm)"
}

image_sets() {
  printf '%s\n' \
    --set "server.image.repository=$SERVER_IMAGE" --set "server.image.tag=$IMAGE_TAG" \
    --set "client.image.repository=$CLIENT_IMAGE" --set "client.image.tag=$IMAGE_TAG"
}

cluster_up() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "reusing kind cluster $CLUSTER"
  else
    log "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
    kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 180s
  fi
  k cluster-info >/dev/null
}

cluster_down() {
  log "deleting kind cluster $CLUSTER"
  kind delete cluster --name "$CLUSTER"
}

build_images() {
  local revision created
  revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for target in server client; do
    local image="$SERVER_IMAGE"
    [[ $target == client ]] && image="$CLIENT_IMAGE"
    log "building $image:$IMAGE_TAG (target $target)"
    docker build --target "$target" --tag "$image:$IMAGE_TAG" \
      --build-arg "REVISION=$revision" --build-arg "CREATED=$created" "$ROOT"
    kind load docker-image "$image:$IMAGE_TAG" --name "$CLUSTER"
  done
}

deploy() {
  log "installing KEDA $KEDA_CHART_VERSION"
  helm repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null
  helm --kube-context "kind-$CLUSTER" upgrade --install keda kedacore/keda --version "$KEDA_CHART_VERSION" \
    --namespace keda --create-namespace --wait --timeout 5m
  log "installing $RELEASE with ci/e2e-values.yaml (images tagged $IMAGE_TAG)"
  local sets
  mapfile -t sets < <(image_sets)
  helm --kube-context "kind-$CLUSTER" upgrade --install "$RELEASE" "$CHART" \
    --namespace "$NAMESPACE" --create-namespace --values "$VALUES" "${sets[@]}" --wait --timeout 10m
  kn rollout status "deployment/$SERVER" --timeout 5m
}

# The newest client Job the chart created (<release>-client-<revision>).
latest_client_job() {
  kn get jobs -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/name=fib-rpc-client" \
    --sort-by=.metadata.creationTimestamp -o name | sed -n "s|^job.batch/\($RELEASE-client-[0-9]*\)\$|\1|p" | tail -n 1
}

# The client's answer (or load summary) among a Job's output: its JSON logs on stderr are
# interleaved by kubectl logs, so pick the object that carries result or calls.
job_json() {
  kn logs "job/$1" | jq -cR 'fromjson? | select(type == "object" and (has("result") or has("calls")))' | tail -n 1
}

check_client_job() {
  local job out result
  job=$(latest_client_job)
  [[ -n $job ]] || fail "the chart created no client Job"
  log "waiting for the client Job $job"
  kn wait --for=condition=complete "job/$job" --timeout 5m || fail "client Job $job did not complete"
  out=$(job_json "$job")
  printf '%s\n' "$out"
  result=$(jq -r .result <<<"$out")
  [[ $result == 832040 ]] || fail "client Job answered '$result', expected 832040"
  TRACE_ID=$(jq -r '.trace_id // empty' <<<"$out")
}

check_helm_test() {
  log "helm test"
  helm --kube-context "kind-$CLUSTER" -n "$NAMESPACE" test "$RELEASE" --logs --timeout 5m
}

start_port_forward() {
  kn port-forward "service/$RELEASE-jaeger" "$JAEGER_LOCAL_PORT:16686" >/dev/null 2>&1 &
  PORT_FORWARD_PID=$!
  for _ in $(seq 1 30); do
    curl -fsS "http://127.0.0.1:$JAEGER_LOCAL_PORT/api/services" >/dev/null 2>&1 && return 0
    sleep 1
  done
  fail "Jaeger query API not reachable through port-forward"
}

# True when the JSON of /api/traces holds one trace with spans of both services.
has_joint_trace() {
  jq -e 'any(.data[]?; ([.processes[].serviceName] | (index("fib-rpc-client") != null) and (index("fib-rpc-server") != null)))' >/dev/null
}

check_trace() {
  log "looking for one trace with spans of fib-rpc-client and fib-rpc-server in Jaeger"
  start_port_forward
  local base="http://127.0.0.1:$JAEGER_LOCAL_PORT/api/traces"
  for attempt in $(seq 1 24); do
    if [[ -n "${TRACE_ID:-}" ]] && curl -fsS "$base/$TRACE_ID" 2>/dev/null | has_joint_trace; then
      echo "trace $TRACE_ID of the client Job holds spans of both services"
      return 0
    fi
    if curl -fsS "$base?service=fib-rpc-client&limit=50&lookback=1h" 2>/dev/null | has_joint_trace; then
      echo "found a trace with spans of both services"
      return 0
    fi
    echo "no joint trace yet (attempt $attempt/24)"
    sleep 5
  done
  fail "no trace with spans of both fib-rpc-client and fib-rpc-server in Jaeger"
}

check_secret_kept() {
  log "the generated broker password survives helm upgrade"
  local before after sets
  before=$(kn get secret "$RELEASE-rabbitmq" -o jsonpath='{.data.rabbitmq-password}')
  mapfile -t sets < <(image_sets)
  helm --kube-context "kind-$CLUSTER" upgrade "$RELEASE" "$CHART" --namespace "$NAMESPACE" \
    --values "$VALUES" "${sets[@]}" --wait --timeout 10m
  after=$(kn get secret "$RELEASE-rabbitmq" -o jsonpath='{.data.rabbitmq-password}')
  [[ -n $before && $before == "$after" ]] || fail "the broker password changed on upgrade"
  check_client_job
}

ready_replicas() {
  local n
  n=$(kn get deployment "$SERVER" -o jsonpath='{.status.readyReplicas}')
  echo "${n:-0}"
}

check_autoscaling() {
  local min max job peak=0 ready sets
  min=$(kn get scaledobject "$SERVER" -o jsonpath='{.spec.minReplicaCount}')
  max=$(kn get scaledobject "$SERVER" -o jsonpath='{.spec.maxReplicaCount}')
  job="$RELEASE-load-$(date +%s)"
  log "load run $job (${LOAD_SECONDS}s, concurrency 64): servers must scale above $min (max $max)"
  mapfile -t sets < <(image_sets)
  # The load Job is the chart's own client Job template, renamed.
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --values "$VALUES" "${sets[@]}" \
    --set client.job.enabled=true --set client.job.backoffLimit=0 --set client.job.activeDeadlineSeconds=900 \
    --set-json "client.job.args=[\"--load\",\"--json\",\"--concurrency\",\"64\",\"--duration\",\"${LOAD_SECONDS}s\",\"20000\"]" \
    --show-only templates/client/job.yaml |
    sed "s/^  name: $RELEASE-client-1\$/  name: $job/" | kn create -f -
  for _ in $(seq 1 $((LOAD_SECONDS / 5))); do
    ready=$(ready_replicas)
    ((ready > peak)) && peak=$ready
    echo "ready server replicas: $ready (peak $peak, min $min)"
    ((peak > min)) && break
    sleep 5
  done
  ((peak > min)) || fail "servers never scaled above $min under load"
  kn get hpa
  kn wait --for=condition=complete "job/$job" --timeout $((LOAD_SECONDS + 300))s || fail "load Job $job did not complete"
  local summary
  summary=$(job_json "$job")
  printf '%s\n' "$summary"
  jq -e '.ok > 0 and .errors == 0' <<<"$summary" >/dev/null || fail "load run had errors: $summary"

  log "load over: servers must return to $min"
  for _ in $(seq 1 72); do
    ready=$(ready_replicas)
    local desired
    desired=$(kn get deployment "$SERVER" -o jsonpath='{.spec.replicas}')
    echo "desired $desired, ready $ready (min $min)"
    if ((desired == min)) && ((ready <= min)); then
      echo "scaled back to $min"
      return 0
    fi
    sleep 5
  done
  fail "servers did not scale back to $min after the load"
}

dump() {
  set +e
  log "cluster state"
  k get all,scaledobject,triggerauthentication,hpa,pdb,networkpolicy -A -o wide
  k -n "$NAMESPACE" describe scaledobject "$SERVER"
  k -n "$NAMESPACE" describe pods
  log "events"
  k get events -A --sort-by=.lastTimestamp | tail -n 150
  log "pod logs ($NAMESPACE)"
  local pod
  for pod in $(k -n "$NAMESPACE" get pods -o name); do
    echo "--- $pod"
    k -n "$NAMESPACE" logs "$pod" --all-containers --prefix --tail=200
  done
  log "KEDA operator logs"
  k -n keda logs deployment/keda-operator --tail=200
  set -e
}

on_exit() {
  local status=$?
  [[ -n $PORT_FORWARD_PID ]] && kill "$PORT_FORWARD_PID" 2>/dev/null
  if ((status != 0)); then
    dump || true
  fi
  if [[ $KEEP_CLUSTER != true ]]; then
    cluster_down || true
  else
    log "keeping cluster $CLUSTER (make kind-down deletes it)"
  fi
  exit "$status"
}

run_tests() {
  check_client_job
  check_helm_test
  check_trace
  check_secret_kept
  check_autoscaling
  log "e2e passed"
}

main() {
  require
  case "${1:-all}" in
  up) cluster_up ;;
  images) build_images ;;
  deploy) deploy ;;
  test)
    KEEP_CLUSTER=true
    trap on_exit EXIT
    run_tests
    ;;
  dump) dump ;;
  down) cluster_down ;;
  all)
    trap on_exit EXIT
    cluster_up
    build_images
    deploy
    run_tests
    ;;
  *) fail "unknown command $1 (all|up|images|deploy|test|dump|down)" ;;
  esac
}

main "$@"
