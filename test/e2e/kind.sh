#!/usr/bin/env bash
# The end-to-end test on a kind cluster (GitHub's e2e workflow, or any machine with Docker):
#   1. create a kind cluster (pinned node image), or reuse it
#   2. build both images with a non-latest tag and `kind load` them
#   3. run the shared assertions of test/e2e/checks.sh, which install KEDA from its official
#      chart (pinned) when they need it
#   4. on failure dump cluster state, logs and events; delete the cluster unless KEEP_CLUSTER=true
# The same assertions run on the local cluster of test/e2e/local.sh (`make e2e-local`).
#
# Usage: test/e2e/kind.sh [all|up|images|test [PHASE...]|dump|down]   (default: all)
# Needs docker, kind, helm, kubectl, jq, curl (bash scripts/install-tools.sh --e2e installs
# kind and helm into .tools/bin). Safe to re-run: every step converges.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$ROOT/.tools/bin:$PATH"

CLUSTER=${KIND_CLUSTER:-fib-rpc-e2e}
# kind v0.33.0 node image for Kubernetes 1.35, pinned by digest.
# The Prometheus of phase network-policy (the local cluster builds a stand-in from Debian's 2.42).
PROMETHEUS_IMAGE=quay.io/prometheus/prometheus:v2.55.1
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0}
KEDA_CHART_VERSION=${KEDA_CHART_VERSION:-2.21.0}
IMAGE_TAG=${IMAGE_TAG:-e2e-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo local)}
SERVER_IMAGE=${SERVER_IMAGE:-fib-rpc-server}
CLIENT_IMAGE=${CLIENT_IMAGE:-fib-rpc-client}
KEEP_CLUSTER=${KEEP_CLUSTER:-false}
STATE="$ROOT/.tools/e2e/kind"
export KUBECONFIG="$STATE/kubeconfig"

log() { printf '\n=== %s: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

require() {
  local missing=()
  for bin in docker kind helm kubectl jq curl; do
    command -v "$bin" >/dev/null || missing+=("$bin")
  done
  ((${#missing[@]} == 0)) || fail "missing tools: ${missing[*]} (bash scripts/install-tools.sh --e2e installs kind and helm)"
}

cluster_up() {
  mkdir -p "$STATE"
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "reusing kind cluster $CLUSTER"
  else
    log "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
    kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --wait 180s
  fi
  kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
  kubectl cluster-info >/dev/null
}

cluster_down() {
  log "deleting kind cluster $CLUSTER"
  kind delete cluster --name "$CLUSTER"
}

build_images() {
  local revision created version
  revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  version=$(node -p "require('$ROOT/package.json').version")
  created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for target in server client; do
    local image="$SERVER_IMAGE"
    [[ $target == client ]] && image="$CLIENT_IMAGE"
    log "building $image:$IMAGE_TAG (target $target)"
    docker build --target "$target" --tag "$image:$IMAGE_TAG" \
      --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" "$ROOT"
    kind load docker-image "$image:$IMAGE_TAG" --name "$CLUSTER"
  done
}

# Values naming the images that build_images loaded into the node.
image_values() {
  local file="$STATE/images-values.yaml"
  mkdir -p "$STATE"
  cat >"$file" <<VALUES
server:
  image: {repository: $SERVER_IMAGE, tag: "$IMAGE_TAG", pullPolicy: Never}
client:
  image: {repository: $CLIENT_IMAGE, tag: "$IMAGE_TAG", pullPolicy: Never}
VALUES
  echo "$file"
}

# The shared assertions, with KEDA from its official chart and Prometheus' official image
# (kind's kindnet enforces the chart's NetworkPolicies, since kind v0.24).
checks() {
  E2E_IMAGE_VALUES=$(image_values) E2E_PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE \
    E2E_KEDA_INSTALL="helm repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null && helm upgrade --install keda kedacore/keda --version $KEDA_CHART_VERSION --namespace keda --create-namespace --wait --timeout 5m" \
    bash "$ROOT/test/e2e/checks.sh" "$@"
}

on_exit() {
  local status=$?
  ((status == 0)) || checks dump || true
  if [[ $KEEP_CLUSTER != true ]]; then
    cluster_down || true
  else
    log "keeping cluster $CLUSTER (make kind-down deletes it)"
  fi
  exit "$status"
}

main() {
  require
  local command=${1:-all}
  (($#)) && shift
  case "$command" in
  up) cluster_up ;;
  images) build_images ;;
  test)
    KEEP_CLUSTER=true
    trap on_exit EXIT
    checks "$@"
    ;;
  dump) checks dump ;;
  down) cluster_down ;;
  all)
    trap on_exit EXIT
    cluster_up
    build_images
    checks all
    ;;
  *) fail "unknown command $command (all|up|images|test [PHASE...]|dump|down)" ;;
  esac
}

main "$@"
