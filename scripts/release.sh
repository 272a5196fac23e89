#!/usr/bin/env bash
# The release (`make release`; docs/release.md): everything a version ships, built, pushed
# and signed the same way on GitHub (release workflow, keyless) and in the local rehearsal
# (`make release-local`, a registry on loopback and a key pair):
#
#   1. the server and client images (Dockerfile targets) as multi-arch manifest lists, built
#      with buildah, pushed under the version tag only (package.json's version; never latest)
#   2. an SPDX JSON SBOM of every platform image (syft), attached as a signed attestation to
#      the platform image and to the manifest list (cosign attest --type spdxjson)
#   3. a cosign signature on every image by digest (the list and each platform image)
#   4. the chart, version = appVersion = package.json's version, its images pinned by digest
#      and listed in the artifacthub.io/images annotation, pushed to oci://REGISTRY/charts and
#      signed by digest
#   5. the plain manifests rendered from that chart (pinned by digest) as a release asset
#
# Variables (environment or make variables):
#   REGISTRY        where everything goes, e.g. ghcr.io/OWNER or 127.0.0.1:5443 (required)
#   PLATFORMS       comma-separated (default linux/amd64,linux/arm64)
#   SIGN            key | keyless (default: keyless on GitHub Actions, key elsewhere)
#   COSIGN_KEY      SIGN=key: path of the cosign private key, or the key itself (PEM); never
#                   passed in an argument: a PEM is written to a mode 0600 file first
#   COSIGN_PASSWORD SIGN=key: its password (read by cosign from the environment)
#   DRY_RUN         true: build images, SBOMs, chart and manifests into the output dir; push
#                   and sign nothing
#   NODE_IMAGE      the Dockerfile's base (default: the Dockerfile's own official node image)
#   REGISTRY_CA     CA file that the registry's certificate chains to (a private registry)
#   REGISTRY_USERNAME / REGISTRY_PASSWORD   registry login, from the environment only
#   RABBITMQ_DIGEST / JAEGER_DIGEST   digests of the chart's default broker and Jaeger images;
#                   default: resolved from their registry with skopeo. UNPINNED_UPSTREAM=true
#                   lets them stay by tag where that registry is unreachable (the rehearsal,
#                   which installs with its stand-ins pinned by digest instead), and says so.
#   RELEASE_OUT     output directory (default .tools/release/VERSION)
#
# Outputs in RELEASE_OUT: release.json (every reference and digest, sizes, SBOM counts),
# fib-rpc-VERSION.tgz (the packaged chart), fib-rpc-k8s-VERSION.yaml and
# fib-rpc-k8s-client-job-VERSION.yaml (manifests), sbom/IMAGE-VERSION-OS-ARCH.spdx.json.
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$ROOT/node_modules/.bin:$ROOT/.tools/bin:$PATH"

log() { printf '=== %s release: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf 'release: %s\n' "$*" >&2
  exit 1
}

# --- inputs ---------------------------------------------------------------------------------
# package.json's version is the only one (scripts/version.sh); nothing here restates it.
VERSION=$(node -p 'require(process.argv[1]).version' "$ROOT/package.json")
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "package.json version '$VERSION' is not SemVer"
REGISTRY=${REGISTRY:?set REGISTRY, e.g. make release REGISTRY=ghcr.io/OWNER}
REGISTRY=${REGISTRY%/}
PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64}
DRY_RUN=${DRY_RUN:-false}
if [[ -z ${SIGN:-} ]]; then
  if [[ ${GITHUB_ACTIONS:-} == true ]]; then SIGN=keyless; else SIGN=key; fi
fi
[[ $SIGN == key || $SIGN == keyless ]] || die "SIGN=$SIGN: key or keyless"
[[ $DRY_RUN == true || $DRY_RUN == false ]] || die "DRY_RUN=$DRY_RUN: true or false"
UNPINNED_UPSTREAM=${UNPINNED_UPSTREAM:-false}
OUT=$(realpath -m "${RELEASE_OUT:-$ROOT/.tools/release/$VERSION}")
WORK="$OUT/work"
IFS=, read -r -a PLATFORM_LIST <<<"$PLATFORMS"
for p in "${PLATFORM_LIST[@]}"; do [[ $p =~ ^linux/(amd64|arm64)$ ]] || die "platform $p: linux/amd64 or linux/arm64"; done
TARGETS=(server client)

for tool in buildah skopeo jq helm syft; do command -v "$tool" >/dev/null || die "$tool missing: run make release-tools"; done
[[ $DRY_RUN == true ]] || command -v cosign >/dev/null || die "cosign missing: run make release-tools"

rm -rf "$OUT"
mkdir -p "$OUT/sbom" "$WORK/oci"
chmod 0700 "$WORK"
STARTED=$SECONDS
FIGURES="$OUT/figures.tsv"
: >"$FIGURES"
step_started=$SECONDS
step() { # step NAME: ends the previous step's timing and starts the next
  [[ -z ${STEP:-} ]] || printf 'release: %s (s)\t%s\n' "$STEP" $((SECONDS - step_started)) >>"$FIGURES"
  STEP=$1
  step_started=$SECONDS
  log "$1"
}

# --- registry access: TLS trust and credentials for buildah, skopeo, helm, cosign, syft ----
CERT_DIR="$WORK/certs"
mkdir -p "$CERT_DIR"
TLS_BUILDAH=() TLS_HELM=()
if [[ -n ${REGISTRY_CA:-} ]]; then
  [[ -f $REGISTRY_CA ]] || die "REGISTRY_CA=$REGISTRY_CA is not a file"
  # buildah and skopeo read every *.crt of --cert-dir; helm takes the file; Go tools (cosign,
  # syft) read SSL_CERT_FILE, which replaces the system roots: give them both.
  cp "$REGISTRY_CA" "$CERT_DIR/ca.crt"
  TLS_BUILDAH=(--cert-dir "$CERT_DIR")
  TLS_HELM=(--ca-file "$REGISTRY_CA")
  cat "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$REGISTRY_CA" >"$WORK/ca-bundle.crt" 2>/dev/null ||
    cp "$REGISTRY_CA" "$WORK/ca-bundle.crt"
  export SSL_CERT_FILE="$WORK/ca-bundle.crt"
fi
# One auth file (containers auth.json, the same "auths" format as Docker's config.json) for
# every tool: buildah/skopeo via REGISTRY_AUTH_FILE, cosign/syft via DOCKER_CONFIG, helm via
# HELM_REGISTRY_CONFIG. The password goes through stdin only.
export DOCKER_CONFIG="$WORK/docker"
mkdir -p "$DOCKER_CONFIG"
[[ -f $DOCKER_CONFIG/config.json ]] || echo '{"auths":{}}' >"$DOCKER_CONFIG/config.json"
export REGISTRY_AUTH_FILE="$DOCKER_CONFIG/config.json" HELM_REGISTRY_CONFIG="$DOCKER_CONFIG/config.json"
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config"
REGISTRY_HOST=${REGISTRY%%/*}
if [[ -n ${REGISTRY_USERNAME:-} && $DRY_RUN == false ]]; then
  printf '%s' "${REGISTRY_PASSWORD:?REGISTRY_PASSWORD must go with REGISTRY_USERNAME}" |
    buildah login "${TLS_BUILDAH[@]}" --username "$REGISTRY_USERNAME" --password-stdin "$REGISTRY_HOST" >/dev/null
fi

# --- cosign ---------------------------------------------------------------------------------
COSIGN_ARGS=()
if [[ $DRY_RUN == false ]]; then
  if [[ $SIGN == key ]]; then
    [[ -n ${COSIGN_KEY:-} ]] || die "SIGN=key needs COSIGN_KEY (a key file or the PEM) and COSIGN_PASSWORD"
    [[ -v COSIGN_PASSWORD ]] || die "SIGN=key needs COSIGN_PASSWORD in the environment (empty for a key without one)"
    key_file=$COSIGN_KEY
    if [[ $COSIGN_KEY == *"-----BEGIN"* ]]; then
      key_file="$WORK/cosign.key"
      (umask 077 && printf '%s\n' "$COSIGN_KEY" >"$key_file")
    fi
    [[ -f $key_file ]] || die "COSIGN_KEY is neither a file nor a PEM key"
    # No transparency log is reachable from a private rehearsal; a key signature verifies
    # without one (cosign verify --insecure-ignore-tlog=true).
    COSIGN_ARGS=(--key "$key_file" --tlog-upload=false)
  fi
  # keyless: cosign's default flow (Fulcio certificate from the GitHub OIDC token, Rekor entry).
fi
# A registry on loopback is the rehearsal: nothing cosign or syft does may leave the machine.
# Go never proxies loopback addresses, so a proxy on a closed loopback port makes any other
# request (a public sigstore service, an update check) fail at once, here.
GUARD=()
if [[ $REGISTRY_HOST == 127.0.0.1:* || $REGISTRY_HOST == localhost:* ]]; then
  GUARD=(env HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY=)
fi
cosign_() { "${GUARD[@]}" cosign "$@" "${COSIGN_ARGS[@]}" --yes; }

# --- 1. images --------------------------------------------------------------------------------
if [[ $(id -u) == 0 ]]; then
  # Storage of its own, so a release never sees or disturbs other images of this machine;
  # chroot isolation: RUN steps need no user namespace and share the host's network (npm ci).
  BUILDAH=(buildah --root "$ROOT/.tools/release/buildah/storage" --runroot /run/fib-rpc-release/buildah --storage-driver overlay)
  ISOLATION=(--isolation chroot)
else
  BUILDAH=(buildah)
  ISOLATION=()
fi
bah() { "${BUILDAH[@]}" "$@"; }

# Where the host reaches npm's registry through a TLS-intercepting proxy, `npm ci` in the
# build needs its CA: lent to the RUN steps as npm's global config (/usr/local/etc/npmrc of
# the node image's prefix), a bind mount that never lands in a layer.
NPM_MOUNT=()
npm_ca=$(npm config get cafile 2>/dev/null || true)
for candidate in "$npm_ca" "${NODE_EXTRA_CA_CERTS:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [[ -n $candidate && $candidate != null && -f $candidate ]]; then
    mkdir -p "$WORK/npm-etc"
    cp "$candidate" "$WORK/npm-etc/ca.crt"
    printf '%s\n' cafile=/usr/local/etc/ca.crt update-notifier=false >"$WORK/npm-etc/npmrc"
    NPM_MOUNT=(--volume "$WORK/npm-etc:/usr/local/etc:ro")
    break
  fi
done

REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
CREATED=$(git -C "$ROOT" log -1 --format=%cI 2>/dev/null || echo unknown)
# The Dockerfile runs its build stages on BUILDPLATFORM and the runtime on TARGETPLATFORM;
# Debian 12's buildah 1.28 sets neither for FROM lines, so both are given, and each platform
# is built on its own into the one manifest list.
case $(uname -m) in
  x86_64) BUILDPLATFORM=linux/amd64 ;;
  aarch64) BUILDPLATFORM=linux/arm64 ;;
  *) die "no BUILDPLATFORM for $(uname -m)" ;;
esac
BUILD_ARGS=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED"
  --build-arg "BUILDPLATFORM=$BUILDPLATFORM")
[[ -z ${NODE_IMAGE:-} ]] || BUILD_ARGS+=(--build-arg "NODE_IMAGE=$NODE_IMAGE" --label "org.opencontainers.image.base.name=$NODE_IMAGE")

declare -A INDEX_DIGEST
repo_of() { printf '%s/fib-rpc-%s\n' "$REGISTRY" "$1"; }

step "build images for $PLATFORMS"
for target in "${TARGETS[@]}"; do
  list="fib-rpc-release-$target"
  bah manifest rm "$list" >/dev/null 2>&1 || true
  for p in "${PLATFORM_LIST[@]}"; do
    log "buildah bud --target $target --platform $p --manifest $list"
    # --layers: the client and the other platforms reuse the build stages (they run on
    # BUILDPLATFORM); --pull: the base comes from its registry (the rehearsal's from the local one).
    bah bud --quiet --layers --pull "${ISOLATION[@]}" "${TLS_BUILDAH[@]}" --format oci \
      --platform "$p" --build-arg "TARGETPLATFORM=$p" --manifest "$list" --file "$ROOT/Dockerfile" \
      --target "$target" "${BUILD_ARGS[@]}" "${NPM_MOUNT[@]}" "$ROOT" >/dev/null
  done
  # The layout of the list, its bytes exactly as pushed: the SBOMs and the dry run read it.
  bah manifest push --quiet --all --format oci "$list" "oci:$WORK/oci/$target:$VERSION" >/dev/null
  INDEX_DIGEST[$target]=$(jq -r --arg v "$VERSION" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $v) | .digest' "$WORK/oci/$target/index.json")
  [[ ${INDEX_DIGEST[$target]} == sha256:* ]] || die "no manifest list for $target in its OCI layout"
done

# platform_digest TARGET PLATFORM: the platform image's manifest digest in the list.
platform_digest() {
  local blob=$WORK/oci/$1/blobs/sha256/${INDEX_DIGEST[$1]#sha256:}
  jq -r --arg os "${2%/*}" --arg arch "${2#*/}" \
    '.manifests[] | select(.platform.os == $os and .platform.architecture == $arch) | .digest' "$blob"
}
# image_size TARGET DIGEST: bytes of its config and compressed layers (what a pull fetches).
image_size() {
  jq '[.config.size] + [.layers[].size] | add' "$WORK/oci/$1/blobs/sha256/${2#sha256:}"
}
for target in "${TARGETS[@]}"; do
  for p in "${PLATFORM_LIST[@]}"; do
    d=$(platform_digest "$target" "$p")
    [[ $d == sha256:* ]] || die "the $target list has no $p image"
    printf 'image fib-rpc-%s %s (MB)\t%s\n' "$target" "$p" "$(awk -v b="$(image_size "$target" "$d")" 'BEGIN { printf "%.1f", b / 1e6 }')" >>"$FIGURES"
  done
done

if [[ $DRY_RUN == false ]]; then
  step "push the manifest lists (version tag only)"
  for target in "${TARGETS[@]}"; do
    ref="$(repo_of "$target"):$VERSION"
    bah manifest push --quiet --all --format oci "${TLS_BUILDAH[@]}" --digestfile "$WORK/$target.digest" \
      "fib-rpc-release-$target" "docker://$ref" >/dev/null
    pushed=$(cat "$WORK/$target.digest")
    # The registry must hold exactly the list the SBOMs and the chart are made from.
    [[ $pushed == "${INDEX_DIGEST[$target]}" ]] || die "$ref was pushed as $pushed, built as ${INDEX_DIGEST[$target]}"
    log "pushed $ref@$pushed"
  done
fi

# --- 2. SBOMs ------------------------------------------------------------------------------------
step "SBOMs (syft, SPDX JSON) of every platform image"
declare -A SBOM_COUNT
for target in "${TARGETS[@]}"; do
  for p in "${PLATFORM_LIST[@]}"; do
    d=$(platform_digest "$target" "$p")
    single="$WORK/oci-single/$target-${p//\//-}"
    rm -rf "$single"
    mkdir -p "$WORK/oci-single"
    # One platform image alone in a layout, same manifest bytes (skopeo copies, converts nothing).
    skopeo copy --quiet --override-os "${p%/*}" --override-arch "${p#*/}" \
      "oci:$WORK/oci/$target:$VERSION" "oci:$single:$VERSION"
    [[ $(jq -r '.manifests[0].digest' "$single/index.json") == "$d" ]] || die "the $p image of $target changed in the copy"
    sbom="$OUT/sbom/fib-rpc-$target-$VERSION-${p//\//-}.spdx.json"
    SYFT_CHECK_FOR_APP_UPDATE=false "${GUARD[@]}" syft scan --quiet "oci-dir:$single" \
      --source-name "$(repo_of "$target")" --source-version "$VERSION" --output "spdx-json=$sbom"
    SBOM_COUNT[$target/$p]=$(jq '.packages | length' "$sbom")
    printf 'sbom fib-rpc-%s %s packages\t%s\n' "$target" "$p" "${SBOM_COUNT[$target/$p]}" >>"$FIGURES"
  done
done

# --- 3. signatures and attestations -------------------------------------------------------------
if [[ $DRY_RUN == false ]]; then
  step "sign every image by digest, attest its SBOM (cosign, SIGN=$SIGN)"
  for target in "${TARGETS[@]}"; do
    repo=$(repo_of "$target")
    # --recursive: the list and each platform image it names.
    cosign_ sign --recursive "$repo@${INDEX_DIGEST[$target]}" >/dev/null
    for p in "${PLATFORM_LIST[@]}"; do
      sbom="$OUT/sbom/fib-rpc-$target-$VERSION-${p//\//-}.spdx.json"
      d=$(platform_digest "$target" "$p")
      # On the platform image, and on the list too: `cosign verify-attestation repo:VERSION`
      # then finds one SBOM per platform.
      cosign_ attest --type spdxjson --predicate "$sbom" "$repo@$d" >/dev/null
      cosign_ attest --type spdxjson --predicate "$sbom" "$repo@${INDEX_DIGEST[$target]}" >/dev/null
    done
    log "signed $repo@${INDEX_DIGEST[$target]} and its ${#PLATFORM_LIST[@]} platform image(s); SBOMs attested"
  done
fi

# --- 4. the chart ---------------------------------------------------------------------------------
step "chart $VERSION pinned by digest"
# upstream_digest IMAGE:TAG OVERRIDE: the digest of the chart's default image.
upstream_digest() {
  local image=$1 override=$2 raw
  if [[ -n $override ]]; then printf '%s\n' "$override"; return; fi
  # The rehearsal asks for no lookup: its registry is the only one it may reach.
  if [[ $UNPINNED_UPSTREAM == true ]]; then
    log "WARNING: $image stays by tag in this chart (UNPINNED_UPSTREAM=true: not looked up)"
    printf '\n'
    return
  fi
  raw=$(timeout 60 skopeo inspect --raw --retry-times 2 "docker://$image") ||
    die "cannot resolve the digest of $image: set its *_DIGEST, or UNPINNED_UPSTREAM=true"
  printf 'sha256:%s\n' "$(printf '%s' "$raw" | sha256sum | cut -d' ' -f1)"
}
values_of() { # values_of KEY FIELD: the chart's default
  node -p "require('yaml').parse(require('fs').readFileSync(process.argv[1], 'utf8')).$1.image.$2" "$ROOT/charts/fib-rpc/values.yaml"
}
RABBITMQ_REF="$(values_of rabbitmq repository):$(values_of rabbitmq tag)"
JAEGER_REF="$(values_of jaeger repository):$(values_of jaeger tag)"
RABBITMQ_PIN=$(upstream_digest "$RABBITMQ_REF" "${RABBITMQ_DIGEST:-}")
JAEGER_PIN=$(upstream_digest "$JAEGER_REF" "${JAEGER_DIGEST:-}")

rm -rf "$WORK/chart"
mkdir -p "$WORK/chart"
cp -r "$ROOT/charts/fib-rpc" "$WORK/chart/"
# The packaged copy's values name the released images by digest, and its Chart.yaml lists
# them for Artifact Hub.
CHART_DIR="$WORK/chart/fib-rpc" VERSION="$VERSION" PLATFORMS="$PLATFORMS" \
  SERVER_REPO="$(repo_of server)" SERVER_DIGEST="${INDEX_DIGEST[server]}" \
  CLIENT_REPO="$(repo_of client)" CLIENT_DIGEST="${INDEX_DIGEST[client]}" \
  RABBITMQ_REF="$RABBITMQ_REF" RABBITMQ_PIN="$RABBITMQ_PIN" JAEGER_REF="$JAEGER_REF" JAEGER_PIN="$JAEGER_PIN" \
  node "$ROOT/scripts/release-chart.mjs"
helm lint --strict "$WORK/chart/fib-rpc" --kube-version 1.35.0 >/dev/null
helm package "$WORK/chart/fib-rpc" --version "$VERSION" --app-version "$VERSION" --destination "$OUT" >/dev/null
CHART_TGZ="$OUT/fib-rpc-$VERSION.tgz"
[[ -f $CHART_TGZ ]] || die "helm package wrote no $CHART_TGZ"

# --- 5. the manifests, rendered from the packaged chart ---------------------------------------------
step "manifests rendered from the packaged chart"
RENDER_CHART="$CHART_TGZ" HEADER="# fib-rpc $VERSION: rendered from oci://$REGISTRY/charts/fib-rpc $VERSION (values: charts/fib-rpc/ci/manifests-values.yaml), images by digest." \
  bash "$ROOT/scripts/render-manifests.sh" "$WORK/k8s"
cp "$WORK/k8s/base/fib-rpc.yaml" "$OUT/fib-rpc-k8s-$VERSION.yaml"
cp "$WORK/k8s/client-job.yaml" "$OUT/fib-rpc-k8s-client-job-$VERSION.yaml"
# Every image of the asset is pinned, but those UNPINNED_UPSTREAM allowed by tag.
unpinned=$(cat "$OUT/fib-rpc-k8s-$VERSION.yaml" "$OUT/fib-rpc-k8s-client-job-$VERSION.yaml" |
  sed -n 's/^ *image: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | grep -v '@sha256:[0-9a-f]\{64\}$' | sort -u || true)
for image in $unpinned; do
  [[ $UNPINNED_UPSTREAM == true && ($image == "$RABBITMQ_REF" || $image == "$JAEGER_REF") ]] ||
    die "the rendered manifests name $image without a digest"
done

CHART_DIGEST=""
if [[ $DRY_RUN == false ]]; then
  step "push and sign the chart"
  helm push "$CHART_TGZ" "oci://$REGISTRY/charts" "${TLS_HELM[@]}" >"$WORK/helm-push.log" 2>&1 ||
    { cat "$WORK/helm-push.log" >&2; die "helm push failed"; }
  CHART_DIGEST=$(sed -n 's/^Digest: *\(sha256:[0-9a-f]\{64\}\)$/\1/p' "$WORK/helm-push.log")
  [[ -n $CHART_DIGEST ]] || { cat "$WORK/helm-push.log" >&2; die "helm push printed no digest"; }
  cosign_ sign "$REGISTRY/charts/fib-rpc@$CHART_DIGEST" >/dev/null
  log "pushed and signed oci://$REGISTRY/charts/fib-rpc:$VERSION@$CHART_DIGEST"
fi
step "done"

# --- release.json: what the rehearsal, the workflow's release notes and a reviewer read -------------
{
  for target in "${TARGETS[@]}"; do
    for p in "${PLATFORM_LIST[@]}"; do
      d=$(platform_digest "$target" "$p")
      jq -n --arg t "$target" --arg p "$p" --arg d "$d" --argjson size "$(image_size "$target" "$d")" \
        --argjson packages "${SBOM_COUNT[$target/$p]}" --arg sbom "sbom/fib-rpc-$target-$VERSION-${p//\//-}.spdx.json" \
        '{target: $t, platform: $p, digest: $d, size: $size, sbom: $sbom, sbom_packages: $packages}'
    done
  done
} | jq -s --arg version "$VERSION" --arg registry "$REGISTRY" --arg dry "$DRY_RUN" --arg sign "$SIGN" \
  --arg server "$(repo_of server)" --arg sd "${INDEX_DIGEST[server]}" \
  --arg client "$(repo_of client)" --arg cd "${INDEX_DIGEST[client]}" \
  --arg chart "$REGISTRY/charts/fib-rpc" --arg chd "$CHART_DIGEST" \
  --arg rabbitmq "$RABBITMQ_REF" --arg rd "$RABBITMQ_PIN" --arg jaeger "$JAEGER_REF" --arg jd "$JAEGER_PIN" '{
    version: $version, registry: $registry, dry_run: ($dry == "true"), sign: (if $dry == "true" then "none" else $sign end),
    images: {
      server: {repository: $server, tag: $version, digest: $sd, platforms: [.[] | select(.target == "server") | del(.target)]},
      client: {repository: $client, tag: $version, digest: $cd, platforms: [.[] | select(.target == "client") | del(.target)]}
    },
    upstream: {rabbitmq: {image: $rabbitmq, digest: $rd}, jaeger: {image: $jaeger, digest: $jd}},
    chart: {repository: ("oci://" + $chart), version: $version, digest: $chd, package: ("fib-rpc-" + $version + ".tgz")},
    manifests: ["fib-rpc-k8s-" + $version + ".yaml", "fib-rpc-k8s-client-job-" + $version + ".yaml"]
  }' >"$OUT/release.json"
printf 'release: total (s)\t%s\n' $((SECONDS - STARTED)) >>"$FIGURES"
rm -rf "$WORK/oci-single" "$WORK/certs" "$WORK/cosign.key"
cat "$FIGURES" >&2
if [[ $DRY_RUN == true ]]; then
  log "DRY_RUN: built $VERSION into $OUT; nothing pushed, nothing signed"
else
  log "released $VERSION to $REGISTRY: $OUT/release.json"
fi
