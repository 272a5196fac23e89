#!/usr/bin/env bash
# Builds the binaries and the two infrastructure images (pause, CoreDNS) of the local e2e
# cluster into .tools/e2e/, once. Nothing is downloaded but Go modules from the module
# proxy: no container registry and no release tarball is reachable from this machine.
#
#   bash test/e2e/local/binaries.sh      # idempotent: a part already at its pinned version is kept
#
# Kubernetes comes from the k8s.io/kubernetes module. Its go.mod replaces the staging
# modules (k8s.io/api, client-go, ...) with ./staging, which the module zip lacks, so a
# scratch module requires k8s.io/kubernetes and replaces each staging module with its
# published v0.<minor>.<patch> twin (the same code, published from the same commit).
set -euo pipefail

# --- pins: every version of the local cluster lives here ---------------------------------
K8S_VERSION=v1.35.4
# etcd and CoreDNS: the versions kubeadm of K8S_VERSION deploys
# (cmd/kubeadm/app/constants/constants.go: DefaultEtcdVersion, CoreDNSVersion, PauseVersion).
ETCD_VERSION=v3.6.6
COREDNS_VERSION=v1.13.1
PAUSE_VERSION=3.10.1
# The NetworkPolicy enforcer (its firewall controller only, beside the bridge CNI). The Go
# proxy serves kube-router/v2 at v2.1.0 only, which has reported flaws: IPv6 policies not
# applied (fixed in v2.1.1) and dependency CVEs. This cluster is IPv4 only and on loopback,
# and the enforcer is a test fixture, never shipped. kube-network-policies (nftables) does
# not work here: this kernel has no nft_queue (CONFIG_NFT_QUEUE is not set).
KUBE_ROUTER_VERSION=v2.1.0
# The names pods and the CRI config refer to. The images are built here from the binaries
# above (no registry is reachable); the names only match what a stock cluster would pull.
PAUSE_IMAGE="registry.k8s.io/pause:$PAUSE_VERSION"
COREDNS_IMAGE="registry.k8s.io/coredns/coredns:$COREDNS_VERSION"
# The smoke-test binary of cluster.sh (./probe), in a scratch image of its own.
PROBE_IMAGE="fib-rpc.local/e2e/probe:1"
# ------------------------------------------------------------------------------------------

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
E2E="$ROOT/.tools/e2e"
BIN="$E2E/bin"
STAMPS="$E2E/versions"
SRC="$E2E/src"
IMAGES="$E2E/images"
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm)

# A local toolchain only (the module says go 1.25, ours is newer), no VCS stamping of the
# scratch modules, reproducible paths, and static binaries that run in scratch images.
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -trimpath -mod=mod" CGO_ENABLED=0

log() { printf 'binaries: %s\n' "$*" >&2; }

# stamped NAME VERSION FILE...: every FILE exists and NAME was built at VERSION.
stamped() {
  local name=$1 version=$2 f
  shift 2
  [[ -f "$STAMPS/$name" && "$(cat "$STAMPS/$name")" == "$version" ]] || return 1
  for f in "$@"; do [[ -e "$f" ]] || return 1; done
}
stamp() { printf '%s\n' "$2" >"$STAMPS/$1"; }

module_dir() { # module@version -> its extracted directory in the module cache
  (cd "$SRC" && go mod download -json "$1" | jq -r '.Dir // error(.Error)')
}

build_kubernetes() {
  local outs=() b
  for b in "${K8S_BINARIES[@]}"; do outs+=("$BIN/$b"); done
  if stamped kubernetes "$K8S_VERSION" "${outs[@]}"; then
    log "kubernetes $K8S_VERSION already built"
    return
  fi
  local dir="$SRC/kubernetes" kdir minor patch pkgs=() ldflags
  mkdir -p "$dir"
  kdir=$(module_dir "k8s.io/kubernetes@$K8S_VERSION")
  IFS=. read -r _ minor patch <<<"$K8S_VERSION"
  {
    printf 'module fib-rpc.local/e2e/kubernetes\n\ngo %s\n\n' "$(sed -n 's/^go //p' "$kdir/go.mod")"
    # Keep the runtime defaults Kubernetes was released with (its go.mod pins them too).
    sed -n '/^godebug/p' "$kdir/go.mod"
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 v0.'"$minor.$patch"'#p' "$kdir/go.mod"
    printf ')\n'
  } >"$dir/go.mod"
  for b in "${K8S_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  # What hack/lib/version.sh stamps, so that version skew checks see a real version.
  ldflags="-s -w"
  local p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kubernetes $K8S_VERSION (${K8S_BINARIES[*]}); ~10 min cold on 2 cores"
  (cd "$dir" && go build -ldflags "$ldflags" -o "$BIN/" "${pkgs[@]}")
  stamp kubernetes "$K8S_VERSION"
}

# etcd's server module also replaces its sibling modules with relative paths, so it gets
# the same scratch-module treatment (siblings are published at the same version).
build_etcd() {
  if stamped etcd "$ETCD_VERSION" "$BIN/etcd"; then
    log "etcd $ETCD_VERSION already built"
    return
  fi
  local dir="$SRC/etcd" edir
  mkdir -p "$dir"
  edir=$(module_dir "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  {
    printf 'module fib-rpc.local/e2e/etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n\nreplace (\n' \
      "$(sed -n 's/^go //p' "$edir/go.mod")" "$ETCD_VERSION"
    sed -n 's#^[[:space:]]*\(go.etcd.io/etcd/[a-z0-9/]*\) => \.\./.*#\t\1 => \1 '"$ETCD_VERSION"'#p' "$edir/go.mod"
    printf ')\n'
  } >"$dir/go.mod"
  log "building etcd $ETCD_VERSION"
  (cd "$dir" && go build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD_VERSION"
}

build_coredns() {
  if stamped coredns "$COREDNS_VERSION" "$BIN/coredns"; then
    log "coredns $COREDNS_VERSION already built"
    return
  fi
  log "building coredns $COREDNS_VERSION"
  GOBIN="$BIN" go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  stamp coredns "$COREDNS_VERSION"
}

# kube-router as upstream's Makefile builds it (static, version in ldflags).
build_kube_router() {
  if stamped kube-router "$KUBE_ROUTER_VERSION" "$BIN/kube-router"; then
    log "kube-router $KUBE_ROUTER_VERSION already built"
    return
  fi
  log "building kube-router $KUBE_ROUTER_VERSION (~5 min cold)"
  GOBIN="$BIN" go install \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
  stamp kube-router "$KUBE_ROUTER_VERSION"
}

# pause is C in Kubernetes' own tree (build/pause/linux/pause.c); built as upstream does.
build_pause() {
  if stamped pause "$K8S_VERSION/$PAUSE_VERSION" "$BIN/pause"; then
    log "pause $PAUSE_VERSION already built"
    return
  fi
  local kdir
  kdir=$(module_dir "k8s.io/kubernetes@$K8S_VERSION")
  log "building pause $PAUSE_VERSION"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-fibrpc" -o "$BIN/pause" "$kdir/build/pause/linux/pause.c"
  strip "$BIN/pause"
  stamp pause "$K8S_VERSION/$PAUSE_VERSION"
}

# probe: the static checker that cluster.sh runs inside pods (source in ./probe).
build_probe() {
  local v
  v=$(cat "$HERE/probe/go.mod" "$HERE/probe"/*.go | sha256sum | cut -c1-16)
  if stamped probe "$v" "$BIN/probe"; then
    log "probe $v already built"
    return
  fi
  log "building probe ($v)"
  (cd "$HERE/probe" && go build -ldflags "-s -w" -o "$BIN/probe" .)
  stamp probe "$v"
}

# scratch_image NAME ARCHIVE BINARY ENTRYPOINT-JSON [USER]: a one-binary OCI image, saved
# as an OCI archive whose ref name is NAME (cluster.sh import reads it back).
scratch_image() {
  local name=$1 archive=$2 binary=$3 entrypoint=$4 user=${5:-} ctr
  ctr=$(buildah from scratch)
  # shellcheck disable=SC2064 # the container id is known now
  trap "buildah rm '$ctr' >/dev/null 2>&1 || true" RETURN
  buildah copy --chmod 0755 "$ctr" "$binary" "/$(basename "$binary")" >/dev/null
  buildah config --entrypoint "$entrypoint" --cmd '' --os linux --arch amd64 \
    --label "org.opencontainers.image.source=built locally by test/e2e/local/binaries.sh" "$ctr"
  [[ -z "$user" ]] || buildah config --user "$user" "$ctr"
  rm -f "$archive"
  # A fixed timestamp: the same binary gives the same image digest, so cluster.sh does not
  # re-import (and swap the sandbox image under running pods) after an unrelated rebuild.
  buildah commit --quiet --format oci --timestamp 0 --rm "$ctr" "oci-archive:$archive:$name" >/dev/null
}

# image FILE NAME BINARY USER: FILE is rebuilt when NAME or its binary's stamp changes.
image() {
  local file=$1 name=$2 binary=$3 user=$4 v
  v="$name $(cat "$STAMPS/$(basename "$binary")")"
  if stamped "image-${file%.tar}" "$v" "$IMAGES/$file"; then
    log "image $name already built"
    return
  fi
  log "building image $name"
  scratch_image "$name" "$IMAGES/$file" "$binary" "[\"/$(basename "$binary")\"]" "$user"
  stamp "image-${file%.tar}" "$v"
}

build_images() {
  mkdir -p "$IMAGES"
  # pause runs as 65535 like upstream's image.
  image pause.tar "$PAUSE_IMAGE" "$BIN/pause" 65535:65535
  # CoreDNS upstream runs as nonroot (65532); containerd lets non-root pods bind :53
  # (enable_unprivileged_ports in cluster.sh), where upstream sets a file capability.
  image coredns.tar "$COREDNS_IMAGE" "$BIN/coredns" 65532:65532
  image probe.tar "$PROBE_IMAGE" "$BIN/probe" 65534:65534
}

main() {
  mkdir -p "$BIN" "$STAMPS" "$SRC"
  for cmd in go gcc jq buildah; do
    command -v "$cmd" >/dev/null || { log "$cmd is required"; exit 1; }
  done
  build_kubernetes
  build_etcd
  build_coredns
  build_kube_router
  build_pause
  build_probe
  build_images
  log "done: $BIN"
}

main "$@"
