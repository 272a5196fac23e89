#!/usr/bin/env bash
# Installs the pinned tools of the chart, manifest and workflow checks into .tools/bin
# (tests look there first, then on PATH). Idempotent: a tool already at its pinned version
# is kept. Needs Go (tools are built with `go install` from the Go module proxy); shellcheck
# and prometheus (promtool) come from the system package manager.
#
#   bash scripts/install-tools.sh           # helm, helm-docs, kube-validate, compose-validate, KEDA CRDs, actionlint, shellcheck, prometheus
#   bash scripts/install-tools.sh --e2e     # also kind (for make e2e)
set -euo pipefail

HELM_VERSION=v4.3.1
ACTIONLINT_VERSION=v1.7.12
# helm-docs writes charts/fib-rpc/README.md from values.yaml (make chart-docs; a test fails on drift).
HELM_DOCS_VERSION=v1.14.2
KIND_VERSION=v0.33.0
# KEDA whose CRD schemas validate the rendered ScaledObject/TriggerAuthentication; keep it
# equal to the KEDA version installed by test/e2e/kind.sh.
KEDA_VERSION=v2.21.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
STAMPS="$TOOLS/versions"
mkdir -p "$BIN" "$STAMPS"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

log() { printf 'install-tools: %s\n' "$*" >&2; }

# up_to_date NAME VERSION: the binary exists and was built at VERSION.
up_to_date() {
  [[ -x "$BIN/$1" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]
}

go_tool() {
  local name=$1 module=$2 version=$3
  if up_to_date "$name" "$version"; then
    log "$name $version already installed"
    return
  fi
  command -v go >/dev/null || { log "go is required to install $name"; exit 1; }
  log "installing $name $version (go install $module@$version)"
  GOBIN="$BIN" go install "$module@$version"
  printf '%s\n' "$version" >"$STAMPS/$name"
}

# local_tool NAME: builds tools/NAME (a small Go program of this repository) into .tools/bin.
local_tool() {
  local name=$1 src="$ROOT/tools/$1" version
  version=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-16)
  if up_to_date "$name" "$version"; then
    log "$name $version already built"
    return
  fi
  log "building $name ($version)"
  (cd "$src" && go build -trimpath -o "$BIN/$name" .)
  printf '%s\n' "$version" >"$STAMPS/$name"
}

keda_crds() {
  local dest="$TOOLS/crds/keda-$KEDA_VERSION" dir
  if [[ -f "$dest/keda.sh_scaledobjects.yaml" && -f "$dest/keda.sh_triggerauthentications.yaml" ]]; then
    log "KEDA $KEDA_VERSION CRDs already present"
    return
  fi
  log "fetching KEDA $KEDA_VERSION CRDs (go mod download github.com/kedacore/keda/v2@$KEDA_VERSION)"
  dir=$(cd "$TOOLS" && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$dir" && -d "$dir/config/crd/bases" ]] || { log "KEDA module has no config/crd/bases"; exit 1; }
  mkdir -p "$dest"
  cp "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" "$dir/config/crd/bases/keda.sh_triggerauthentications.yaml" "$dest/"
  chmod u+w "$dest"/*.yaml
}

# apt_pkg PACKAGE COMMAND...: installs the Debian/Ubuntu package unless all its commands exist.
apt_pkg() {
  local pkg=$1 missing=false
  shift
  for command in "$@"; do
    command -v "$command" >/dev/null || missing=true
  done
  if [[ $missing == false ]]; then
    log "$pkg already installed ($(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo "on PATH"))"
    return
  fi
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  log "installing $pkg with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y --no-install-recommends "$pkg" >/dev/null 2>&1 ||
    { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y --no-install-recommends "$pkg" >/dev/null; }
}

go_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION"
go_tool helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$HELM_DOCS_VERSION"
local_tool kube-validate
local_tool compose-validate
keda_crds
go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"
apt_pkg shellcheck shellcheck
# prometheus and promtool: the alert unit tests and the monitoring test.
apt_pkg prometheus prometheus promtool
if [[ "${1:-}" == "--e2e" ]]; then
  go_tool kind sigs.k8s.io/kind "$KIND_VERSION"
fi
log "tools in $BIN: $(cd "$BIN" && echo *)"
