#!/usr/bin/env bash
# Installs the pinned release tools into .tools/bin (`make release` and `make release-local`
# call it): cosign (signatures and attestations) and syft (SBOMs), both built with
# `go install` from the Go module proxy, and buildah, skopeo and jq from Debian when missing.
# Idempotent: a tool already at its pinned version is kept (stamp in .tools/versions).
#
#   bash scripts/install-release-tools.sh           # what make release needs
#   bash scripts/install-release-tools.sh --local   # also what make release-local needs
set -euo pipefail

# cosign v2: `--tlog-upload=false` for key signing without a transparency log, keyless with
# GitHub's OIDC token in the release workflow. v2.6.5 builds on Go 1.25+.
COSIGN_VERSION=v2.6.5
# syft writes the SPDX JSON SBOM of each image; v1.57.2 needs Go 1.26.8 (this machine's).
SYFT_VERSION=v1.57.2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/.tools/bin"
STAMPS="$ROOT/.tools/versions"
mkdir -p "$BIN" "$STAMPS"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

log() { printf 'install-release-tools: %s\n' "$*" >&2; }

up_to_date() { [[ -x "$BIN/$1" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }

# go_tool NAME MODULE VERSION [ldflags]: the version is also linked into the binary where
# the tool reports it (cosign version, syft version), as their release builds do.
go_tool() {
  local name=$1 module=$2 version=$3 ldflags=${4:-}
  if up_to_date "$name" "$version"; then
    log "$name $version already installed"
    return
  fi
  command -v go >/dev/null || { log "go is required to install $name"; exit 1; }
  log "installing $name $version (go install $module@$version; a few minutes the first time)"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w $ldflags" "$module@$version"
  printf '%s\n' "$version" >"$STAMPS/$name"
}

go_tool cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION" \
  "-X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION"
go_tool syft github.com/anchore/syft/cmd/syft "$SYFT_VERSION" \
  "-X main.version=${SYFT_VERSION#v}"

# Debian packages: buildah (builds), skopeo (copies, digests), jq; with --local also the
# rehearsal's registry (docker-registry) and openssl for its CA.
packages=(buildah skopeo jq)
[[ ${1:-} != --local ]] || packages+=(docker-registry openssl curl)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
log "cosign $("$BIN/cosign" version --json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p'), syft $("$BIN/syft" version 2>/dev/null | awk '/^Version:/ { print $2 }'), buildah $(buildah --version | awk '{ print $3 }')"
