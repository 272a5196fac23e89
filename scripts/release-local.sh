#!/usr/bin/env bash
# The release rehearsal (`make release-local`, docs/release.md): the same scripts/release.sh
# that the release workflow runs, into a real registry on loopback, and the result used the
# way a user would, on the local Kubernetes of test/e2e/local.sh:
#
#   1. a registry (Debian's docker-registry) on 127.0.0.1 at a free port, TLS with a CA and
#      certificate made here, storage of its own; stopped and removed at the end
#   2. the stand-in images of test/e2e/local/images.sh pushed there: the Node base (the
#      release's NODE_IMAGE), the RabbitMQ stand-in and Jaeger (the released chart defaults
#      to the official images, which cannot be pulled here)
#   3. scripts/release.sh with REGISTRY=127.0.0.1:PORT, SIGN=key (a key pair made for this run)
#   4. cosign verify passes for every image and the chart, and fails for an image pushed
#      without a signature and for a signed tag moved to another image; the SBOM attestation,
#      fetched and verified, lists amqplib, @opentelemetry/* and node at the lockfile's versions
#   5. on the local cluster (fresh; containerd trusts the registry's CA): the chart installed
#      from oci:// in an empty directory, every image PULLED by containerd (none imported),
#      the pods' image digests equal to the released ones, a client Job answers fib(30), helm test
#   6. an arm64 client (qemu-user-static) from the registry calls the amd64 server through a
#      port-forward of the broker and prints fib(30) (RELEASE_ARM64=false skips it, loudly)
#
# Figures (timings, image sizes per platform, SBOM package counts) go to E2E_FIGURES.
# Needs root. KEEP_CLUSTER=true keeps the cluster (make e2e-local-down removes it).
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/test/e2e/local"
export PATH="$ROOT/.tools/e2e/bin:$ROOT/.tools/bin:$ROOT/node_modules/.bin:$PATH"
export KUBECONFIG="$ROOT/.tools/e2e/kubeconfig"
export E2E_FIGURES=${E2E_FIGURES:-$ROOT/.tools/e2e/release-figures.tsv}
RELEASE_ARM64=${RELEASE_ARM64:-true}
KEEP_CLUSTER=${KEEP_CLUSTER:-false}
# All of the rehearsal's own state: registry storage, PKI, keys, logs.
STATE="$ROOT/.tools/release-local"
REG_DIR="$STATE/registry"
PKI="$STATE/pki"
VERSION=$(node -p 'require(process.argv[1]).version' "$ROOT/package.json")
NAMESPACE=fib-rpc-release
IMAGES="$ROOT/.tools/e2e/images"
E2E_CTR_SOCK=/run/fib-rpc-e2e/containerd/containerd.sock

log() { printf '\n=== %s release-local: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}
figure() { printf '%s\t%s\n' "$1" "$2" | tee -a "$E2E_FIGURES" >&2; }
timed() { # timed NAME CMD...: runs CMD, records how long it took
  local name=$1 started=$SECONDS
  shift
  "$@"
  figure "release-local: $name (s)" $((SECONDS - started))
}
ok() { printf 'ok: %s\n' "$*" >&2; }

prerequisites() {
  [[ $(id -u) == 0 ]] || fail "the rehearsal needs root (the local cluster, buildah's storage)"
  bash "$ROOT/scripts/install-release-tools.sh" --local
  local tool
  for tool in cosign syft helm; do command -v "$tool" >/dev/null || fail "$tool missing: make release-tools tools"; done
}

# --- 1. the registry ---------------------------------------------------------------------------
REG_PID=""
registry_stop() {
  local pid
  pid=$(cat "$REG_DIR/pid" 2>/dev/null || true)
  # Only our own registry: the pid must still run this config file.
  if [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$REG_DIR/config.yml"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$REG_DIR/pid"
}

# A port the kernel hands out free on 127.0.0.1 (the project's own Node asks for it).
free_port() {
  node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

pki() {
  rm -rf "$PKI"
  mkdir -p "$PKI"
  chmod 0700 "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=fib-rpc release rehearsal CA" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$PKI/registry.key" -out "$PKI/registry.csr" 2>/dev/null
  printf 'subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\nbasicConstraints = CA:FALSE\n' >"$PKI/ext.cnf"
  openssl x509 -req -in "$PKI/registry.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 2 -extfile "$PKI/ext.cnf" -out "$PKI/registry.crt" 2>/dev/null
  chmod 0644 "$PKI/ca.crt"
}

registry_start() {
  registry_stop
  rm -rf "$REG_DIR"
  mkdir -p "$REG_DIR/storage"
  pki
  PORT=$(free_port)
  REGISTRY=127.0.0.1:$PORT
  cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REG_DIR/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
  tls:
    certificate: $PKI/registry.crt
    key: $PKI/registry.key
EOF
  setsid docker-registry serve "$REG_DIR/config.yml" >"$REG_DIR/registry.log" 2>&1 </dev/null &
  REG_PID=$!
  echo "$REG_PID" >"$REG_DIR/pid"
  for _ in $(seq 1 60); do
    curl -fsS --cacert "$PKI/ca.crt" "https://$REGISTRY/v2/" >/dev/null 2>&1 && break
    kill -0 "$REG_PID" 2>/dev/null || { cat "$REG_DIR/registry.log" >&2; fail "the registry exited"; }
    sleep 0.5
  done
  curl -fsS --cacert "$PKI/ca.crt" "https://$REGISTRY/v2/" >/dev/null || fail "the registry did not answer on https://$REGISTRY"
  # TLS is really checked: without the CA the registry's certificate is refused.
  ! curl -fsS "https://$REGISTRY/v2/" >/dev/null 2>&1 || fail "https://$REGISTRY is trusted without our CA"
  ok "registry $(docker-registry --version 2>/dev/null | awk '{ print $NF }') on https://$REGISTRY (pid $REG_PID, TLS with our CA)"
}

on_exit() {
  local status=$?
  set +e
  [[ -z ${PF_PID:-} ]] || kill "$PF_PID" 2>/dev/null
  if ((status != 0)); then
    NAMESPACE=$NAMESPACE E2E_IMAGE_VALUES=/dev/null bash "$ROOT/test/e2e/checks.sh" dump >&2 2>&1 | tail -n 200 >&2
    [[ ! -f $REG_DIR/registry.log ]] || tail -n 30 "$REG_DIR/registry.log" >&2
  fi
  arm64_cleanup
  if [[ $KEEP_CLUSTER == true ]]; then
    log "keeping the cluster and the registry on $REGISTRY (make e2e-local-down; kill $(cat "$REG_DIR/pid" 2>/dev/null))"
  else
    bash "$LOCAL/cluster.sh" down >/dev/null 2>&1
    registry_stop
    rm -rf "$STATE"
  fi
  ((status == 0)) || log "FAILED (status $status); figures so far in $E2E_FIGURES"
  exit "$status"
}

# --- skopeo against the registry -------------------------------------------------------------------
CERTS="$STATE/certs"
sk() { skopeo "$@"; }
push_archive() { # push_archive ARCHIVE REF: prints the pushed manifest's (or list's) digest
  local digestfile="$STATE/digest.$$"
  # --all: an archive of a manifest list goes with every image it lists.
  sk copy --quiet --all --dest-cert-dir "$CERTS" --digestfile "$digestfile" "oci-archive:$1" "docker://$2" >&2
  cat "$digestfile"
  rm -f "$digestfile"
}

# --- arm64 ---------------------------------------------------------------------------------------------
ARM64_CTR=""
arm64_cleanup() {
  [[ -n $ARM64_CTR ]] || return 0
  ctr --address "$E2E_CTR_SOCK" -n fib-rpc-release task kill -s KILL "$ARM64_CTR" >/dev/null 2>&1
  ctr --address "$E2E_CTR_SOCK" -n fib-rpc-release containers rm "$ARM64_CTR" >/dev/null 2>&1
}

main() {
  prerequisites
  : >"$E2E_FIGURES"
  local started=$SECONDS
  mkdir -p "$STATE"
  trap on_exit EXIT
  REGISTRY=""
  log "1. a registry on loopback"
  timed "registry up" registry_start
  mkdir -p "$CERTS"
  cp "$PKI/ca.crt" "$CERTS/ca.crt"

  log "2. the cluster (fresh), the stand-in images, and the base pushed to the registry"
  timed "cluster down (leftovers)" bash "$LOCAL/cluster.sh" down
  timed "cluster binaries and up" bash "$ROOT/test/e2e/local.sh" up
  timed "stand-in images build" bash "$LOCAL/images.sh" build
  local platforms=linux/amd64
  if [[ $RELEASE_ARM64 == true ]]; then
    platforms=linux/amd64,linux/arm64
    # The arm64 Debian and Node bases (under QEMU) and the manifest list of both Node bases.
    bash "$ROOT/scripts/qemu-binfmt.sh"
    timed "arm64 bases build" bash "$LOCAL/images.sh" bases "$platforms"
  fi
  local node_ref node_digest rabbitmq_ref rabbitmq_digest jaeger_ref jaeger_digest
  node_ref="$REGISTRY/fib-rpc/node:$(jq -r '.devDependencies.node' "$ROOT/package.json")-bookworm"
  node_digest=$(push_base "$node_ref" "$platforms")
  rabbitmq_ref="$REGISTRY/fib-rpc/rabbitmq-standin:$(sed -n 's/^RABBITMQ_VERSION=//p' "$LOCAL/images.sh")-management"
  rabbitmq_digest=$(push_archive "$IMAGES/rabbitmq-standin.tar" "$rabbitmq_ref")
  jaeger_ref="$REGISTRY/fib-rpc/jaeger:$(sed -n 's/^JAEGER_VERSION=//p' "$LOCAL/images.sh")"
  jaeger_digest=$(push_archive "$IMAGES/jaeger.tar" "$jaeger_ref")
  ok "stand-ins in the registry: $node_ref@$node_digest, $rabbitmq_ref@$rabbitmq_digest, $jaeger_ref@$jaeger_digest"

  log "3. make release into $REGISTRY (SIGN=key, a key pair of this run)"
  mkdir -p "$STATE/keys"
  chmod 0700 "$STATE/keys"
  COSIGN_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  export COSIGN_PASSWORD
  (cd "$STATE/keys" && "${GUARD[@]}" cosign generate-key-pair >/dev/null 2>&1)
  PUB="$STATE/keys/cosign.pub"
  local out="$ROOT/.tools/release/$VERSION"
  timed "make release (build, push, SBOM, sign, chart)" env REGISTRY="$REGISTRY" PLATFORMS="$platforms" SIGN=key \
    COSIGN_KEY="$STATE/keys/cosign.key" REGISTRY_CA="$PKI/ca.crt" NODE_IMAGE="$node_ref@$node_digest" \
    UNPINNED_UPSTREAM=true RELEASE_OUT="$out" bash "$ROOT/scripts/release.sh"
  unset COSIGN_PASSWORD
  tee -a "$E2E_FIGURES" <"$out/figures.tsv" >&2
  RELEASE_JSON="$out/release.json"
  jq . "$RELEASE_JSON" >&2

  log "4. signatures and SBOMs, as a user checks them"
  timed "cosign verify (images, chart, negatives)" verify_signatures
  timed "SBOM attestations verified and checked" verify_sboms

  log "5. the released chart on the local cluster: every image pulled from $REGISTRY"
  timed "cluster install from oci:// and checks" cluster_checks "$rabbitmq_ref" "$rabbitmq_digest" "$jaeger_ref" "$jaeger_digest"

  log "6. an arm64 client from the registry against the amd64 server"
  if [[ $RELEASE_ARM64 == true ]]; then
    timed "arm64 client under qemu" arm64_client
  else
    printf '\n!!! RELEASE_ARM64=false: the arm64 leg was SKIPPED: no arm64 image was built or run.\n!!! This rehearsal proves nothing about linux/arm64.\n\n' >&2
    figure "release-local: arm64 leg" "SKIPPED (RELEASE_ARM64=false)"
  fi

  figure "make release-local in all (s)" $((SECONDS - started))
  log "release rehearsal passed"
  cat "$E2E_FIGURES" >&2
}

# push_base REF PLATFORMS: the Node base (images.sh), as a list of its platforms when there
# are several; prints the digest pushed.
push_base() {
  local ref=$1 platforms=$2
  if [[ $platforms == linux/amd64 ]]; then
    push_archive "$IMAGES/base-node.tar" "$ref"
  else
    push_archive "$IMAGES/base-node-index.tar" "$ref"
  fi
}

# jq over release.json
rj() { jq -r "$1" "$RELEASE_JSON"; }

# As in scripts/release.sh: any request of cosign's off loopback fails at once on a closed
# loopback port instead of leaving the machine.
GUARD=(env HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY=)

cosign_verify() { # cosign_verify REF: key signature, no transparency log
  SSL_CERT_FILE="$CERTS/ca.crt" "${GUARD[@]}" cosign verify --key "$PUB" --insecure-ignore-tlog=true "$1" >"$STATE/verify.out" 2>"$STATE/verify.err"
}

verify_signatures() {
  local target repo digest ref p n=0
  for target in server client; do
    repo=$(rj ".images.$target.repository")
    digest=$(rj ".images.$target.digest")
    for ref in "$repo@$digest" "$repo:$VERSION" $(rj ".images.$target.platforms[].digest | \"$repo@\" + ."); do
      cosign_verify "$ref" || { cat "$STATE/verify.err" >&2; fail "cosign verify $ref"; }
      # The signed payload names exactly this digest (for a tag: the list's).
      [[ $(jq -r '.[0].critical.image."docker-manifest-digest"' "$STATE/verify.out") == "${ref##*@}" || $ref == *:"$VERSION" ]] ||
        fail "the signature of $ref is for another digest"
      n=$((n + 1))
    done
    # The tag was never moved away from the built list.
    [[ $(skopeo inspect --raw --cert-dir "$CERTS" "docker://$repo:$VERSION" | sha256sum | cut -d' ' -f1) == "${digest#sha256:}" ]] ||
      fail "$repo:$VERSION is not the list that release.json names"
    skopeo inspect --raw --cert-dir "$CERTS" "docker://$repo:latest" >/dev/null 2>&1 && fail "$repo:latest exists: releases never push latest"
  done
  local chart
  chart="$REGISTRY/charts/fib-rpc@$(rj .chart.digest)"
  cosign_verify "$chart" || { cat "$STATE/verify.err" >&2; fail "cosign verify $chart"; }
  ok "cosign verify --key: $n image references (lists, tags, platform images) and the chart $chart"

  # Negative 1: an image nobody signed.
  local unsigned="$REGISTRY/fib-rpc/unsigned:$VERSION"
  push_archive "$IMAGES/jaeger.tar" "$unsigned" >/dev/null
  if cosign_verify "$unsigned"; then fail "cosign verify passed for $unsigned, which was never signed"; fi
  grep -q 'no signatures found\|no matching signatures' "$STATE/verify.err" || { cat "$STATE/verify.err" >&2; fail "cosign verify of $unsigned failed for another reason"; }
  ok "cosign verify fails for an unsigned image: $(grep -m 1 "^Error" "$STATE/verify.err")"

  # Negative 2: a signed tag moved to another image (here the Jaeger stand-in under the
  # server's release tag): verifying the tag fails, the released digest still verifies.
  local server_repo server_digest
  server_repo=$(rj .images.server.repository)
  server_digest=$(rj .images.server.digest)
  push_archive "$IMAGES/jaeger.tar" "$server_repo:$VERSION" >/dev/null
  if cosign_verify "$server_repo:$VERSION"; then fail "cosign verify passed for $server_repo:$VERSION moved to another image"; fi
  grep -q 'no signatures found\|no matching signatures' "$STATE/verify.err" || { cat "$STATE/verify.err" >&2; fail "cosign verify of the moved tag failed for another reason"; }
  cosign_verify "$server_repo@$server_digest" || fail "the released digest no longer verifies"
  ok "cosign verify fails for the moved tag $server_repo:$VERSION; $server_repo@$server_digest still verifies"
  # Put the tag back where the release put it (the registry keeps the list's blobs).
  skopeo copy --quiet --all --preserve-digests --src-cert-dir "$CERTS" --dest-cert-dir "$CERTS" \
    "docker://$server_repo@$server_digest" "docker://$server_repo:$VERSION"
  cosign_verify "$server_repo:$VERSION" || fail "the restored tag does not verify"
}

verify_sboms() {
  local target repo p digest sbom lock
  lock="$ROOT/package-lock.json"
  for target in server client; do
    repo=$(rj ".images.$target.repository")
    for p in $(rj ".images.$target.platforms[].platform"); do
      digest=$(rj ".images.$target.platforms[] | select(.platform == \"$p\") | .digest")
      SSL_CERT_FILE="$CERTS/ca.crt" "${GUARD[@]}" cosign verify-attestation --type spdxjson --key "$PUB" --insecure-ignore-tlog=true \
        "$repo@$digest" >"$STATE/att.json" 2>"$STATE/att.err" || { cat "$STATE/att.err" >&2; fail "cosign verify-attestation $repo@$digest"; }
      # The registry is new each run: one release, one SBOM attestation on each platform image.
      [[ $(wc -l <"$STATE/att.json") == 1 ]] || fail "$repo@$digest has $(wc -l <"$STATE/att.json") SBOM attestations, not 1"
      sbom="$STATE/sbom-$target-${p//\//-}.json"
      # The DSSE payload is an in-toto statement whose predicate is the SPDX document.
      head -n 1 "$STATE/att.json" | jq -r .payload | base64 -d | jq '.predicate' >"$sbom"
      [[ $(head -n 1 "$STATE/att.json" | jq -r .payload | base64 -d | jq -r '.subject[0].digest.sha256') == "${digest#sha256:}" ]] ||
        fail "the SBOM attestation of $repo@$digest is about another image"
      check_sbom "$sbom" "$lock" "$target $p"
      figure "release-local: SBOM packages fib-rpc-$target $p" "$(jq '.packages | length' "$sbom")"
    done
  done
}

# check_sbom SBOM LOCKFILE WHAT: amqplib, every production @opentelemetry package and node at
# exactly the versions that package-lock.json and package.json pin.
check_sbom() {
  local sbom=$1 lock=$2 what=$3 want got name version missing=0 n=0
  want=$(jq -r '.packages["node_modules/amqplib"].version' "$lock")
  got=$(jq -r '[.packages[] | select(.name == "amqplib") | .versionInfo] | unique | join(",")' "$sbom")
  [[ $got == "$want" ]] || fail "$what: the SBOM lists amqplib '$got', the lockfile pins $want"
  # Every production (non-dev) @opentelemetry package of the lockfile, at its version.
  while IFS=$'\t' read -r name version; do
    n=$((n + 1))
    jq -e --arg n "$name" --arg v "$version" 'any(.packages[]; .name == $n and .versionInfo == $v)' "$sbom" >/dev/null ||
      { echo "$what: missing $name@$version" >&2; missing=$((missing + 1)); }
  done < <(jq -r '.packages | to_entries[] | select(.key | test("(^|/)node_modules/@opentelemetry/")) | select(.value.dev != true and .value.devOptional != true)
    | "\(.key | sub(".*node_modules/"; ""))\t\(.value.version)"' "$lock" | sort -u)
  ((n > 0)) || fail "the lockfile names no production @opentelemetry package: the check would prove nothing"
  ((missing == 0)) || fail "$what: $missing of $n @opentelemetry packages of the lockfile are not in the SBOM"
  want=$(jq -r '.devDependencies.node' "$ROOT/package.json")
  got=$(jq -r '[.packages[] | select(.name == "node") | .versionInfo] | unique | join(",")' "$sbom")
  [[ $got == "$want" ]] || fail "$what: the SBOM lists node '$got', package.json pins $want"
  ok "$what: SBOM has amqplib $(jq -r '.packages["node_modules/amqplib"].version' "$lock"), $n @opentelemetry packages at the lockfile's versions, node $want"
}

cluster_checks() {
  local rabbitmq_ref=$1 rabbitmq_digest=$2 jaeger_ref=$3 jaeger_digest=$4 values
  bash "$LOCAL/cluster.sh" trust-registry "$REGISTRY" "$PKI/ca.crt"
  # Nothing of the release is in the cluster's containerd before the install (the cluster's
  # own images, pause, CoreDNS and fib-rpc.local/e2e/probe, are not the release's).
  if ctr --address "$E2E_CTR_SOCK" -n k8s.io images ls -q | grep -E 'fib-rpc-(server|client)|rabbitmq|jaeger'; then
    fail "the cluster's containerd already holds images of the release: they must be pulled"
  fi
  values="$STATE/standin-values.yaml"
  cat >"$values" <<EOF
# The official broker and Jaeger images cannot be pulled here: their stand-ins
# (test/e2e/local/images.sh), from the rehearsal's registry, by digest.
rabbitmq:
  image:
    repository: ${rabbitmq_ref%:*}
    tag: "${rabbitmq_ref##*:}"
    digest: $rabbitmq_digest
jaeger:
  image:
    repository: ${jaeger_ref%:*}
    tag: "${jaeger_ref##*:}"
    digest: $jaeger_digest
EOF
  HELM_CACHE_HOME="$STATE/helm/cache" HELM_CONFIG_HOME="$STATE/helm/config" HELM_REGISTRY_CONFIG="$STATE/helm/registry.json" \
    NAMESPACE=$NAMESPACE E2E_IMAGE_VALUES="$values" RELEASE_CHART="oci://$REGISTRY/charts/fib-rpc" \
    RELEASE_CHART_VERSION="$VERSION" RELEASE_CA_FILE="$PKI/ca.crt" RELEASE_VALUES="$values" \
    bash "$ROOT/test/e2e/checks.sh" release

  # Every container of the release ran an image pulled from the registry, at the released digest.
  local want got
  want=$(printf '%s\n' "$(rj .images.server.repository)@$(rj .images.server.digest)" \
    "$(rj .images.client.repository)@$(rj .images.client.digest)" \
    "${rabbitmq_ref%:*}@$rabbitmq_digest" "${jaeger_ref%:*}@$jaeger_digest" | sort -u)
  got=$(kubectl -n "$NAMESPACE" get pods -o json |
    jq -r '.items[].status | (.initContainerStatuses // []) + (.containerStatuses // []) | .[].imageID' | sort -u)
  echo "pods' image IDs:"$'\n'"$got" >&2
  [[ $got == "$want" ]] || fail "the pods ran other images than the release:"$'\n'"want:"$'\n'"$want"$'\n'"got:"$'\n'"$got"
  local listed
  listed=$(ctr --address "$E2E_CTR_SOCK" -n k8s.io images ls -q | grep -E 'fib-rpc-(server|client)|rabbitmq|jaeger' | sort)
  echo "containerd (k8s.io) images of the release:"$'\n'"$listed" >&2
  # Only registry references (name@digest, name:tag) of 127.0.0.1:PORT: nothing was imported.
  if grep -v "^$REGISTRY/" <<<"$listed"; then fail "containerd holds images of the release that did not come from $REGISTRY"; fi
  local image
  while read -r image; do
    grep -qxF "$image" <<<"$listed" || fail "containerd has no $image: it was not pulled from the registry"
  done <<<"$want"
  ok "every pod ran an image pulled from $REGISTRY at its released digest"
}

# The arm64 client image of the release, pulled by containerd from the registry for
# linux/arm64 and run under qemu-user-static on the host's network, against the cluster's
# broker through a port-forward on 127.0.0.1 (the amd64 servers in the cluster answer).
arm64_client() {
  local repo digest ref lport envfile arch out certs_d=/var/lib/fib-rpc-e2e/containerd-certs.d
  bash "$ROOT/scripts/qemu-binfmt.sh"
  repo=$(rj .images.client.repository)
  digest=$(rj .images.client.digest)
  ref="$repo@$digest"
  rj '.images.client.platforms[].platform' | grep -qx linux/arm64 || fail "the released client has no linux/arm64 image"
  local ctr_=(ctr --address "$E2E_CTR_SOCK" --namespace fib-rpc-release)
  timeout 600 "${ctr_[@]}" images pull --platform linux/arm64 --hosts-dir "$certs_d" "$ref" >/dev/null ||
    fail "containerd could not pull $ref for linux/arm64 from the registry"
  lport=$(free_port)
  kubectl -n "$NAMESPACE" port-forward --address 127.0.0.1 service/fib-rpc-rabbitmq "$lport:5672" >"$STATE/port-forward.log" 2>&1 &
  PF_PID=$!
  for _ in $(seq 1 30); do
    (exec 3<>"/dev/tcp/127.0.0.1/$lport") 2>/dev/null && break
    sleep 1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$lport") 2>/dev/null || fail "no port-forward of the broker on 127.0.0.1:$lport"
  # The client's settings from its ConfigMap, the broker URL from the release's Secret with
  # the port-forward's address: in a 0600 file, never in an argument. No tracing: Jaeger's
  # Service name does not resolve on the host.
  envfile="$STATE/arm64-client.env"
  (
    umask 077
    kubectl -n "$NAMESPACE" get configmap fib-rpc-client -o json |
      jq -r '.data | to_entries[] | select(.key | startswith("OTEL_") | not) | "\(.key)=\(.value)"'
    echo OTEL_SDK_DISABLED=true
    printf 'AMQP_URL=%s\n' "$(kubectl -n "$NAMESPACE" get secret fib-rpc-rabbitmq-client -o jsonpath='{.data.amqp-url}' |
      base64 -d | sed -E "s#@[^@/]+:5672/#@127.0.0.1:$lport/#")"
  ) >"$envfile"
  ARM64_CTR=fib-rpc-arm64-$$
  arch=$(timeout 300 "${ctr_[@]}" run --rm --platform linux/arm64 --net-host "$ref" "$ARM64_CTR-arch" \
    node -p 'process.arch + " " + process.version')
  [[ $arch == "arm64 v$(jq -r '.devDependencies.node' "$ROOT/package.json")" ]] || fail "the arm64 client image runs '$arch'"
  out=$(timeout 300 "${ctr_[@]}" run --rm --platform linux/arm64 --net-host --env-file "$envfile" "$ref" "$ARM64_CTR" \
    node bin/fib-rpc-client.js --json 30) || fail "the arm64 client failed: $out"
  rm -f "$envfile"
  printf '%s\n' "$out" >&2
  [[ $(jq -r '.result' <<<"$(grep '^{' <<<"$out" | tail -n 1)") == 832040 ]] || fail "the arm64 client answered: $out"
  ok "an arm64 client ($arch under qemu) pulled $ref from the registry and got fib(30) = 832040 from the amd64 servers"
  kill "$PF_PID" 2>/dev/null || true
  PF_PID=""
  ARM64_CTR=""
}

# Sourced (to try one step by hand): the functions only.
[[ ${BASH_SOURCE[0]} != "$0" ]] || main "$@"
