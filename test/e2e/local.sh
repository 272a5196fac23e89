#!/usr/bin/env bash
# The end-to-end test on a real single-node Kubernetes built on this machine from upstream
# parts, for machines without Docker or without access to a registry (`make e2e-local`):
#   1. build the pinned cluster binaries once into .tools/e2e (test/e2e/local/binaries.sh)
#   2. bring up etcd, kube-apiserver, controller-manager, scheduler, kubelet on its own
#      containerd, kube-proxy and CoreDNS, networked on a local bridge only (local/cluster.sh)
#   3. build every image here without a registry and import it (local/images.sh)
#   4. run the shared assertions of test/e2e/checks.sh, with KEDA built from its Go module
#      (local/keda.sh) when they need it
#   5. on failure dump cluster state, logs and events; tear everything down unless
#      KEEP_CLUSTER=true (`make e2e-local-down` does it later)
#
# Usage: test/e2e/local.sh [all|up|images|test [PHASE...]|dump|down]   (default: all)
# Needs root and Debian's containerd, runc, containernetworking-plugins, buildah, skopeo,
# umoci, debootstrap and mmdebstrap (installed with apt-get when missing), Go, helm.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/test/e2e/local"
KEEP_CLUSTER=${KEEP_CLUSTER:-false}
export PATH="$ROOT/.tools/e2e/bin:$ROOT/.tools/bin:$ROOT/node_modules/.bin:$PATH"
export KUBECONFIG="$ROOT/.tools/e2e/kubeconfig"
export E2E_FIGURES=${E2E_FIGURES:-$ROOT/.tools/e2e/figures.tsv}
mkdir -p "$(dirname "$E2E_FIGURES")"

log() { printf '\n=== %s: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

# Debian packages the local cluster and the image builds run on.
PACKAGES=(containerd runc containernetworking-plugins iptables ipset iproute2 conntrack socat
  buildah skopeo umoci debootstrap mmdebstrap jq curl openssl)

require() {
  [[ $(id -u) == 0 ]] || fail "the local cluster needs root (network namespaces, mounts, iptables)"
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  fi
  command -v go >/dev/null || fail "Go is needed to build the cluster binaries"
  [[ -x $ROOT/.tools/bin/helm ]] || bash "$ROOT/scripts/install-tools.sh"
}

timed() {
  local name=$1 started=$SECONDS
  shift
  "$@"
  printf '%s\t%s\n' "$name (s)" $((SECONDS - started)) | tee -a "$E2E_FIGURES" >&2
}

up() {
  timed "binaries" bash "$LOCAL/binaries.sh"
  timed "cluster up" bash "$LOCAL/cluster.sh" up
}

# A run starts from no cluster state: processes of an earlier run may have been killed (a
# stopped CI job) and left etcd data, volumes and KEDA behind, which the checks must not see.
fresh_up() {
  timed "cluster down (leftovers)" bash "$LOCAL/cluster.sh" down
  up
}

images() {
  timed "images build" bash "$LOCAL/images.sh" build
  timed "images import" bash "$LOCAL/images.sh" import
}

checks() {
  E2E_IMAGE_VALUES="$ROOT/.tools/e2e/images/values.yaml" E2E_EXPECT_FSGROUP=true \
    E2E_PROMETHEUS_IMAGE="$(cat "$ROOT/.tools/e2e/images/prometheus.image" 2>/dev/null)" \
    E2E_RABBITMQ43_VALUES="$ROOT/.tools/e2e/images/values-rabbitmq43.yaml" \
    E2E_KEDA_INSTALL="bash '$LOCAL/keda.sh' build && bash '$LOCAL/keda.sh' install" \
    bash "$ROOT/test/e2e/checks.sh" "$@"
}

down() { bash "$LOCAL/cluster.sh" down; }

on_exit() {
  local status=$?
  ((status == 0)) || checks dump || true
  if [[ $KEEP_CLUSTER != true ]]; then
    down || true
  else
    log "keeping the local cluster (make e2e-local-down removes it; KUBECONFIG=$KUBECONFIG)"
  fi
  exit "$status"
}

main() {
  local command=${1:-all}
  (($#)) && shift
  case "$command" in
  up)
    require
    up
    ;;
  images)
    require
    images
    ;;
  test)
    KEEP_CLUSTER=true
    trap on_exit EXIT
    checks "$@"
    ;;
  dump) checks dump ;;
  down) down ;;
  all)
    require
    : >"$E2E_FIGURES"
    trap on_exit EXIT
    local started=$SECONDS
    fresh_up
    images
    checks all
    printf '%s\t%s\n' "make e2e-local in all (s)" $((SECONDS - started)) | tee -a "$E2E_FIGURES" >&2
    ;;
  *) fail "unknown command $command (all|up|images|test [PHASE...]|dump|down)" ;;
  esac
}

main "$@"
