#!/usr/bin/env bash
# KEDA for the local e2e cluster, built from KEDA's Go module instead of pulled from ghcr.io,
# because no container registry is reachable here.
#
#   build      the operator, metrics API server (adapter) and admission webhooks binaries,
#              their images as OCI archives, and the manifests rendered from the module's
#              own config/ (what `make release` turns into keda-<version>.yaml)
#   install    build, import the images into the cluster's containerd, apply the manifests,
#              wait for the three Deployments and the external metrics API
#   uninstall  delete everything install created (the namespace, CRDs, cluster-scoped RBAC,
#              APIService, webhook configuration) and wait until it is gone
#   render     print the rendered manifests
#   smoke      prove it scales: a ScaledObject with a rabbitmq trigger (over amqp, then over
#              http as the chart uses it) takes a Deployment 0 -> 4 -> 0 (needs images.sh)
#
# The images are stand-ins for the published ghcr.io/kedacore/* images: the same binaries
# (same packages, ldflags and CGO_ENABLED=0 as upstream's Makefile) on an empty base with
# user 65532, as distroless/static:nonroot gives upstream. They carry the upstream names
# so the upstream manifests need no edit but imagePullPolicy: Never.
#
# Needs go, umoci, jq, the host's ca-certificates and tzdata, and for install a running
# cluster (test/e2e/local/cluster.sh up; ctr talks to its containerd). Every step is
# idempotent; binaries, images and manifests are reused while their stamps match.
#
# Timings on this 2-core machine: cold binaries about 23 min for the operator (it links every
# scaler's SDK; measured while two other large Go builds shared the cores), then 3 min for
# the adapter and seconds for the webhooks; images 10 s; install 30-45 s on a fresh cluster
# (the operator restarts once by design after its cert rotation writes the Secret); warm
# build + install 2-4 s; uninstall 8 s; smoke 90 s.
set -euo pipefail

# The version test/e2e/kind.sh installs (KEDA_CHART_VERSION) and scripts/install-tools.sh
# validates the chart against (KEDA_VERSION); keep the three equal.
KEDA_VERSION=v2.21.0
KEDA_MODULE=github.com/kedacore/keda/v2
# Only used to render when the cluster's kubectl (which embeds kustomize) is not built yet.
KUSTOMIZE_VERSION=v5.7.1
# Upstream's images run as distroless's "nonroot" user.
NONROOT_UID=65532

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
E2E="$ROOT/.tools/e2e"
KEDA_DIR="$E2E/keda"
BIN_DIR="$KEDA_DIR/bin"
IMAGES_DIR="$E2E/images"
MANIFEST="$KEDA_DIR/keda-${KEDA_VERSION#v}.yaml"
KUBECONFIG_FILE=${KUBECONFIG_FILE:-$E2E/kubeconfig}
KUBECTL=${KUBECTL:-$E2E/bin/kubectl}
CONTAINERD_SOCK=${CONTAINERD_SOCK:-/run/fib-rpc-e2e/containerd/containerd.sock}
NAMESPACE=keda
TAG=${KEDA_VERSION#v}
WAIT_TIMEOUT=${KEDA_WAIT_TIMEOUT:-300}

# binary name -> cmd package, image repository
declare -A CMD=([keda]=operator [keda-adapter]=adapter [keda-admission-webhooks]=webhooks)
declare -A IMAGE=(
  [keda]=ghcr.io/kedacore/keda
  [keda-adapter]=ghcr.io/kedacore/keda-metrics-apiserver
  [keda-admission-webhooks]=ghcr.io/kedacore/keda-admission-webhooks
)
# The ENTRYPOINTs of upstream's Dockerfile, Dockerfile.adapter and Dockerfile.webhooks. The
# manifests override them with command/args, but an image should behave like upstream's.
declare -A ENTRY=(
  [keda]='/keda --zap-log-level=info --zap-encoder=console'
  [keda-adapter]='/keda-adapter --secure-port=6443 --zap-log-level=info --zap-encoder=console'
  [keda-admission-webhooks]='/keda-admission-webhooks --zap-log-level=info --zap-encoder=console'
)
BINARIES=(keda keda-adapter keda-admission-webhooks)

log() { printf '=== %s keda: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { printf 'keda: FAIL: %s\n' "$*" >&2; exit 1; }

stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }
# What an output is made by: the named functions' text and the pins they read. An edit
# elsewhere in this script does not rebuild images or re-render the manifests.
recipe_hash() {
  { declare -f "$@"; declare -p KEDA_VERSION NONROOT_UID DISTROLESS_FILES IMAGE ENTRY; } | sha256sum | cut -c1-16
}

module_dir() {
  local dir
  mkdir -p "$E2E"
  dir=$(cd "$E2E" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$KEDA_MODULE@$KEDA_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n $dir && -d $dir/cmd && -d $dir/config ]] || fail "could not download $KEDA_MODULE@$KEDA_VERSION"
  printf '%s\n' "$dir"
}

# The module's release time (its .info from the proxy): every timestamp in the images, so a
# rebuild from the same binaries gives the same digests and nothing is re-imported.
module_time() {
  local info
  info=$(cd "$E2E" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$KEDA_MODULE@$KEDA_VERSION" | jq -r .Info)
  jq -r .Time "$info"
}

# A writable copy of the module: the module cache is read-only, and the release process
# edits config/ (image tags, version label) before it renders.
SCRATCH=""
scratch_copy() {
  [[ -n $SCRATCH ]] && return
  local dir
  dir=$(module_dir)
  SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/keda-src.XXXXXX")
  trap 'chmod -R u+w "$SCRATCH" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
  cp -r "$dir/." "$SCRATCH/"
  chmod -R u+w "$SCRATCH"
}

build_binaries() {
  local stamp="$KEDA_DIR/binaries.version" want b missing=0
  want="$KEDA_VERSION $(go env GOVERSION) $(declare -f build_binaries | sha256sum | cut -c1-16)"
  for b in "${BINARIES[@]}"; do [[ -x $BIN_DIR/$b ]] || missing=1; done
  if ((missing == 0)) && stamp_ok "$stamp" "$want"; then
    log "binaries $KEDA_VERSION already built"
    return
  fi
  command -v go >/dev/null || fail "go is required"
  scratch_copy
  mkdir -p "$BIN_DIR"
  # As upstream's Makefile (GO_BUILD_VARS, GO_LDFLAGS, `make manager adapter webhooks`): its
  # release sets Version to the tag without "v"; GitCommit names the source, since the
  # module zip carries no git metadata. -trimpath (not upstream's) keeps this machine's
  # paths out, so the binaries and thus the images' digests are reproducible. One binary at
  # a time: the cores are shared, and the second and third reuse the first's packages.
  local ldflags="-X=$KEDA_MODULE/version.GitCommit=go-module-$KEDA_VERSION -X=$KEDA_MODULE/version.Version=$TAG"
  for b in "${BINARIES[@]}"; do
    log "go build $b (cmd/${CMD[$b]})"
    local t0=$SECONDS
    (cd "$SCRATCH" && GO111MODULE=on CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
      go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$b.tmp" "./cmd/${CMD[$b]}")
    mv -f "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
    log "built $b in $((SECONDS - t0)) s"
  done
  echo "$want" >"$stamp"
}

# keda.tar, keda-metrics-apiserver.tar, keda-admission-webhooks.tar: upstream's repository names.
archive_for() { printf '%s/%s.tar\n' "$IMAGES_DIR" "${IMAGE[$1]##*/}"; }

# Files of gcr.io/distroless/static (Debian 12) that the binaries read at run time: the CA
# bundle (scalers reaching TLS endpoints) and tzdata (the cron scaler's time zones). They
# come from this Debian 12 host's own ca-certificates and tzdata packages.
DISTROLESS_FILES=(/etc/ssl/certs/ca-certificates.crt /usr/share/zoneinfo /etc/nsswitch.conf)

# One OCI archive per image, built with umoci from an empty image, as distroless/static:nonroot
# is for upstream: the static binary, the files above, /etc/passwd and /etc/group naming user
# 65532, and /tmp. The archive's reference is the upstream name:tag.
build_images() {
  command -v umoci >/dev/null || fail "umoci is required"
  local f
  for f in "${DISTROLESS_FILES[@]}"; do
    [[ -e $f ]] || fail "$f missing (apt-get install ca-certificates tzdata)"
  done
  mkdir -p "$IMAGES_DIR"
  local b created
  created=$(module_time)
  [[ $created == 20* ]] || fail "no release time for $KEDA_MODULE@$KEDA_VERSION"
  for b in "${BINARIES[@]}"; do
    local archive ref stamp want
    archive=$(archive_for "$b")
    ref="${IMAGE[$b]}:$TAG"
    stamp="$archive.version"
    # The binary and the recipe (these functions and their inputs), not the whole script.
    want="$ref $(sha256sum "$BIN_DIR/$b" | cut -c1-64) $(recipe_hash build_images annotate_ref)"
    if [[ -f $archive ]] && stamp_ok "$stamp" "$want"; then
      log "image $ref already at $archive"
      continue
    fi
    log "building image $ref"
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/keda-image.XXXXXX")
    (
      trap 'rm -rf "$work"' EXIT
      umoci init --layout "$work/oci"
      umoci new --image "$work/oci:$TAG"
      umoci unpack --image "$work/oci:$TAG" "$work/bundle" >/dev/null
      local rootfs="$work/bundle/rootfs"
      mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/home/nonroot"
      chmod 1777 "$rootfs/tmp"
      chown "$NONROOT_UID:$NONROOT_UID" "$rootfs/home/nonroot"
      local f
      for f in "${DISTROLESS_FILES[@]}"; do
        mkdir -p "$rootfs$(dirname "$f")"
        cp -a -L "$f" "$rootfs$f"
      done
      printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
        "$NONROOT_UID" "$NONROOT_UID" >"$rootfs/etc/passwd"
      printf 'root:x:0:\nnonroot:x:%s:\n' "$NONROOT_UID" >"$rootfs/etc/group"
      install -m 0755 "$BIN_DIR/$b" "$rootfs/$b"
      find "$rootfs" -exec touch -h -d "$created" {} +
      umoci repack --history.created "$created" --image "$work/oci:$TAG" "$work/bundle" >/dev/null
      local -a entry cfg
      read -r -a entry <<<"${ENTRY[$b]}"
      cfg=(--image "$work/oci:$TAG" --config.user "$NONROOT_UID:$NONROOT_UID" --config.workingdir /
        --architecture amd64 --os linux --clear config.entrypoint --clear config.cmd
        --created "$created" --history.created "$created"
        --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        --config.label "org.opencontainers.image.version=$TAG"
        --config.label "org.opencontainers.image.source=https://github.com/kedacore/keda"
        --config.label "org.opencontainers.image.description=stand-in for ${IMAGE[$b]}:$TAG built from the Go module $KEDA_MODULE@$KEDA_VERSION"
        --author "fib-rpc test/e2e/local/keda.sh")
      local e
      for e in "${entry[@]}"; do cfg+=(--config.entrypoint "$e"); done
      umoci config "${cfg[@]}"
      umoci gc --layout "$work/oci"
      annotate_ref "$work/oci" "$TAG" "$ref"
      tar -C "$work/oci" -cf "$archive.tmp" oci-layout index.json blobs
      mv -f "$archive.tmp" "$archive"
    )
    echo "$want" >"$stamp"
    log "wrote $archive ($(du -h "$archive" | cut -f1))"
  done
}

# umoci tags an image by a short name inside its layout. Name the image by its full
# reference in both annotations importers read: containerd's io.containerd.image.name
# (ctr import takes it as it is, while it drops an org.opencontainers.image.ref.name that
# lacks its generated prefix) and the OCI ref.name (skopeo, buildah).
annotate_ref() {
  local layout=$1 tag=$2 ref=$3 key=org.opencontainers.image.ref.name
  [[ $(jq --arg k "$key" --arg t "$tag" '[.manifests[] | select(.annotations[$k] == $t)] | length' "$layout/index.json") == 1 ]] ||
    fail "expected one manifest tagged $tag in $layout/index.json"
  jq -c --arg k "$key" --arg t "$tag" --arg r "$ref" \
    '(.manifests[] | select(.annotations[$k] == $t) | .annotations) |= . + {($k): $r, "io.containerd.image.name": $r}' \
    "$layout/index.json" >"$layout/index.json.tmp"
  mv -f "$layout/index.json.tmp" "$layout/index.json"
}

# kubectl embeds kustomize; before the cluster's kubectl is built, use kustomize itself.
kustomize_build() {
  if [[ -x $KUBECTL ]]; then
    "$KUBECTL" kustomize "$1"
  else
    (cd "$E2E" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go run "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" build "$1")
  fi
}

# What upstream's `make release` does to config/ before `kustomize build config/default`
# (set the image tags and the version label), plus imagePullPolicy: Never because these
# images exist only in the node's containerd. Everything else, including the operator's
# --enable-cert-rotation=true that creates the kedaorg-certs Secret and injects the CA into
# the APIService and the webhook configuration, is upstream's as it is.
render_manifests() {
  local stamp="$MANIFEST.version" want
  want="$KEDA_VERSION $(recipe_hash render_manifests)"
  if [[ -s $MANIFEST ]] && stamp_ok "$stamp" "$want"; then
    log "manifests already rendered at $MANIFEST"
    return
  fi
  scratch_copy
  log "rendering $KEDA_MODULE@$KEDA_VERSION config/default"
  local config="$SCRATCH/config" overlay="$SCRATCH/config/fib-rpc-local"
  sed -i -e "s@version:[ ].*@version: $TAG@g" "$config/default/kustomize-config/metadataLabelTransformer.yaml"
  mkdir -p "$overlay"
  cat >"$overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../default
images:
- name: ${IMAGE[keda]}
  newTag: "$TAG"
- name: ${IMAGE[keda-adapter]}
  newTag: "$TAG"
- name: ${IMAGE[keda-admission-webhooks]}
  newTag: "$TAG"
patches:
- target: {kind: Deployment, namespace: $NAMESPACE}
  patch: |-
    - op: replace
      path: /spec/template/spec/containers/0/imagePullPolicy
      value: Never
EOF
  mkdir -p "$KEDA_DIR"
  {
    printf '# KEDA %s from %s@%s config/default, rendered by test/e2e/local/keda.sh.\n' "$TAG" "$KEDA_MODULE" "$KEDA_VERSION"
    printf '# The ghcr.io/kedacore images named here are built locally from that module: stand-ins\n'
    printf '# for the published images, hence imagePullPolicy: Never.\n'
    kustomize_build "$overlay"
  } >"$MANIFEST.tmp"
  local images want_images b
  images=$(sed -n 's/^[[:space:]]*image:[[:space:]]*\([^[:space:]]\{1,\}\)$/\1/p' "$MANIFEST.tmp" | sort -u)
  want_images=$(for b in "${BINARIES[@]}"; do echo "${IMAGE[$b]}:$TAG"; done | sort -u)
  [[ $images == "$want_images" ]] || fail "rendered manifests name unexpected images: $images"
  grep -q 'imagePullPolicy: Always' "$MANIFEST.tmp" && fail "an imagePullPolicy: Always is left"
  mv -f "$MANIFEST.tmp" "$MANIFEST"
  echo "$want" >"$stamp"
  log "wrote $MANIFEST"
}

cmd_build() {
  local t0=$SECONDS
  build_binaries
  build_images
  render_manifests
  log "build done in $((SECONDS - t0)) s"
}

k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

require_cluster() {
  [[ -x $KUBECTL ]] || fail "$KUBECTL missing: build the cluster first (test/e2e/local/cluster.sh)"
  [[ -f $KUBECONFIG_FILE ]] || fail "$KUBECONFIG_FILE missing: start the cluster first (test/e2e/local/cluster.sh)"
  k get --raw /readyz >/dev/null || fail "the cluster's API server does not answer"
}

ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# The manifest digest containerd stores for REF, empty if it has none.
stored_digest() { ctr_ images ls "name==$1" 2>/dev/null | awk 'NR > 1 {print $3}'; }
# The index of an OCI archive, stored as index.json or ./index.json depending on its maker.
archive_index() { tar -xOf "$1" index.json 2>/dev/null || tar -xOf "$1" ./index.json; }
archive_digest() { archive_index "$1" | jq -r '.manifests[0].digest'; }

# cluster.sh import knows the cluster's containerd (socket, namespace, snapshotter, name
# normalisation); plain ctr on the same socket is the fallback while it has no import.
# An image already stored at the archive's digest is not imported again.
IMPORTED=0
import_images() {
  local cluster="$ROOT/test/e2e/local/cluster.sh" b archive ref want
  for b in "${BINARIES[@]}"; do
    archive=$(archive_for "$b")
    ref="${IMAGE[$b]}:$TAG"
    [[ -f $archive ]] || fail "$archive missing"
    want=$(archive_digest "$archive")
    if [[ $(stored_digest "$ref") == "$want" ]]; then
      log "$ref already in containerd ($want)"
      continue
    fi
    if [[ -f $cluster ]] && grep -qE '^[[:space:]]*import\)' "$cluster"; then
      bash "$cluster" import "$archive" "$ref"
    else
      ctr_ images import --snapshotter overlayfs "$archive" >/dev/null
    fi
    [[ $(stored_digest "$ref") == "$want" ]] || fail "$ref is not in containerd's k8s.io namespace at $want after the import"
    log "imported $ref ($want)"
    IMPORTED=1
  done
}

wait_ready() {
  local d
  for d in keda-operator keda-metrics-apiserver keda-admission; do
    k -n "$NAMESPACE" rollout status "deployment/$d" --timeout "${WAIT_TIMEOUT}s" ||
      { diagnose; fail "deployment $d did not become ready"; }
  done
  log "waiting for APIService v1beta1.external.metrics.k8s.io to be Available"
  k wait --for=condition=Available apiservice/v1beta1.external.metrics.k8s.io --timeout "${WAIT_TIMEOUT}s" ||
    { diagnose; fail "the external metrics APIService is not Available"; }
  local deadline=$((SECONDS + WAIT_TIMEOUT))
  until k get --raw /apis/external.metrics.k8s.io/v1beta1 >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { diagnose; fail "/apis/external.metrics.k8s.io/v1beta1 does not answer"; }
    sleep 2
  done
  # The webhook answers once the operator has written its certificate and CA bundle. Its
  # failurePolicy is Ignore, so an accepted object proves nothing: a server-side dry run of
  # a ScaledObject that only the webhook rejects (idleReplicaCount not below minReplicaCount;
  # the CRD's own rules let it through) shows the webhook is called and answers.
  deadline=$((SECONDS + WAIT_TIMEOUT))
  until webhook_answers; do
    ((SECONDS < deadline)) || { diagnose; fail "the KEDA admission webhook does not answer"; }
    sleep 2
  done
}

webhook_answers() {
  local out
  out=$(k -n "$NAMESPACE" create --dry-run=server -o name -f - 2>&1 <<EOF
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: keda-sh-webhook-probe
spec:
  scaleTargetRef:
    name: keda-sh-webhook-probe-absent
  idleReplicaCount: 1
  minReplicaCount: 1
  triggers:
  - type: cron
    metadata: {timezone: Etc/UTC, start: 0 6 * * *, end: 0 7 * * *, desiredReplicas: "1"}
EOF
  ) && return 1
  grep -q 'IdleReplicaCount=1 must be less than MinReplicaCount=1' <<<"$out"
}

diagnose() {
  log "diagnostics"
  k -n "$NAMESPACE" get deploy,pods,svc,secret -o wide >&2 || true
  k get apiservice v1beta1.external.metrics.k8s.io -o yaml >&2 || true
  k -n "$NAMESPACE" get events --sort-by=.lastTimestamp 2>&1 | tail -n 30 >&2 || true
  local d
  for d in keda-operator keda-metrics-apiserver keda-admission; do
    k -n "$NAMESPACE" logs "deployment/$d" --tail=40 >&2 || true
  done
}

cmd_install() {
  local t0=$SECONDS
  cmd_build
  require_cluster
  import_images
  local existed=0 d
  k -n "$NAMESPACE" get deployment keda-operator >/dev/null 2>&1 && existed=1
  log "applying $MANIFEST"
  # Server-side apply: the CRDs' schemas are too large for the last-applied annotation.
  k apply --server-side --force-conflicts -f "$MANIFEST" >/dev/null
  # A rebuilt image keeps its name and tag, so running pods would keep the old one.
  if ((existed && IMPORTED)); then
    log "images changed: restarting the running KEDA Deployments"
    for d in keda-operator keda-metrics-apiserver keda-admission; do
      k -n "$NAMESPACE" rollout restart "deployment/$d" >/dev/null
    done
  fi
  wait_ready
  log "KEDA $TAG ready in $((SECONDS - t0)) s"
}

cmd_uninstall() {
  # No cluster (cluster.sh down removes the kubeconfig): nothing of KEDA's can be left.
  if [[ ! -f $KUBECONFIG_FILE ]]; then
    log "no cluster ($KUBECONFIG_FILE missing): nothing to remove"
    return
  fi
  require_cluster
  if [[ ! -s $MANIFEST ]]; then render_manifests; fi
  log "deleting KEDA $TAG"
  # ScaledObjects first, while the operator still runs to remove their HPAs and finalizers.
  if k get crd scaledobjects.keda.sh >/dev/null 2>&1; then
    k delete scaledobjects.keda.sh,scaledjobs.keda.sh --all --all-namespaces --wait=true --timeout=120s >/dev/null 2>&1 || true
  fi
  k delete -f "$MANIFEST" --ignore-not-found --wait=true --timeout="${WAIT_TIMEOUT}s" >/dev/null
  # The operator's cert rotation makes this Secret at run time; it is not in the manifests
  # and goes with the namespace, which the manifests own.
  local deadline=$((SECONDS + WAIT_TIMEOUT))
  while k get namespace "$NAMESPACE" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "namespace $NAMESPACE is still there"
    sleep 2
  done
  log "KEDA removed"
}

# --- smoke: a ScaledObject with a rabbitmq trigger scales a Deployment -----------------------
# In a namespace of its own, deleted at the end: the RabbitMQ stand-in of images.sh, a queue
# filled by a publisher pod (the Node base image of images.sh with this repository's amqplib
# mounted read-only), and a Deployment of pause containers that KEDA scales 0 -> 1 (operator,
# activation) -> MAX (HPA on the external metric) and, once the queue is purged, back to 0.
SMOKE_NS=keda-smoke
SMOKE_MESSAGES=20
SMOKE_PER_REPLICA=5
SMOKE_MAX=4

# The full name an archive of images.sh or binaries.sh carries in its index, so no other
# script's pins are repeated here.
archive_ref() {
  archive_index "$1" | jq -r '.manifests[0].annotations
    | .["io.containerd.image.name"] // (.["org.opencontainers.image.ref.name"] | select(. != null and contains("/"))) // empty'
}

ensure_image() { # ensure_image ARCHIVE: import it unless containerd has it; print its name
  local archive=$1 ref want
  ref=$(archive_ref "$archive")
  [[ -n $ref ]] || fail "$archive carries no io.containerd.image.name"
  want=$(archive_digest "$archive")
  if [[ $(stored_digest "$ref") != "$want" ]]; then
    bash "$ROOT/test/e2e/local/cluster.sh" import "$archive" "$ref" >&2
  fi
  printf '%s\n' "$ref"
}

# replicas_become N SECONDS: the worker Deployment's desired replicas reach N in time.
replicas_become() {
  local want=$1 deadline=$((SECONDS + $2)) have
  while :; do
    have=$(k -n "$SMOKE_NS" get deployment worker -o jsonpath='{.spec.replicas}')
    [[ $have == "$want" ]] && return 0
    ((SECONDS < deadline)) || { smoke_diagnose; fail "worker has $have replicas, expected $want"; }
    sleep 2
  done
}

smoke_diagnose() {
  k -n "$SMOKE_NS" get all,scaledobject,hpa -o wide >&2 || true
  k -n "$SMOKE_NS" describe scaledobject worker >&2 || true
  k -n "$SMOKE_NS" describe hpa >&2 || true
  k -n "$NAMESPACE" logs deployment/keda-operator --tail=40 >&2 || true
}

# run_amqp NAME SCRIPT: a pod runs SCRIPT with amqplib against the stand-in and must succeed.
run_amqp() {
  local name=$1 script=$2
  k -n "$SMOKE_NS" delete pod "$name" --ignore-not-found --wait=true >/dev/null
  k -n "$SMOKE_NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  restartPolicy: Never
  containers:
  - name: amqp
    image: $NODE_IMAGE
    imagePullPolicy: Never
    workingDir: /app
    command: [node, -e, "$script"]
    env: [{name: AMQP_URL, valueFrom: {secretKeyRef: {name: rabbitmq, key: host}}}]
    volumeMounts: [{name: modules, mountPath: /app/node_modules, readOnly: true}]
  volumes:
  - name: modules
    hostPath: {path: $ROOT/node_modules, type: Directory}
EOF
  local deadline=$((SECONDS + 120)) phase
  while :; do
    phase=$(k -n "$SMOKE_NS" get pod "$name" -o jsonpath='{.status.phase}')
    [[ $phase == Succeeded ]] && break
    if [[ $phase == Failed ]] || ((SECONDS >= deadline)); then
      k -n "$SMOKE_NS" logs "$name" >&2 || true
      fail "pod $name: $phase"
    fi
    sleep 2
  done
  k -n "$SMOKE_NS" logs "$name" >&2
}

cmd_smoke() {
  local t0=$SECONDS rabbit_archive="$IMAGES_DIR/rabbitmq-standin.tar" node_archive="$IMAGES_DIR/base-node.tar"
  require_cluster
  k get --raw /apis/external.metrics.k8s.io/v1beta1 >/dev/null || fail "KEDA's external metrics API does not answer: keda.sh install first"
  [[ -f $rabbit_archive && -f $node_archive ]] ||
    fail "$rabbit_archive or $node_archive missing: bash test/e2e/local/images.sh"
  local RABBIT_IMAGE NODE_IMAGE PAUSE_IMAGE
  RABBIT_IMAGE=$(ensure_image "$rabbit_archive")
  NODE_IMAGE=$(ensure_image "$node_archive")
  # The sandbox image the cluster already runs: the worker only has to exist, not to work.
  PAUSE_IMAGE=$(ensure_image "$IMAGES_DIR/pause.tar")
  k delete namespace "$SMOKE_NS" --ignore-not-found --wait=true >/dev/null
  k create namespace "$SMOKE_NS" >/dev/null
  log "smoke: RabbitMQ stand-in ($RABBIT_IMAGE) and an idle worker Deployment"
  # host: the AMQP URL (protocol amqp), management: the management API (protocol http, what
  # the chart's ScaledObject uses by default).
  k -n "$SMOKE_NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata: {name: rabbitmq}
stringData:
  user: keda
  password: smoke
  host: amqp://keda:smoke@rabbitmq.$SMOKE_NS.svc:5672/
  management: http://keda:smoke@rabbitmq.$SMOKE_NS.svc:15672/
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: rabbitmq}
spec:
  selector: {matchLabels: {app: rabbitmq}}
  template:
    metadata: {labels: {app: rabbitmq}}
    spec:
      containers:
      - name: rabbitmq
        image: $RABBIT_IMAGE
        imagePullPolicy: Never
        env:
        - {name: RABBITMQ_DEFAULT_USER, valueFrom: {secretKeyRef: {name: rabbitmq, key: user}}}
        - {name: RABBITMQ_DEFAULT_PASS, valueFrom: {secretKeyRef: {name: rabbitmq, key: password}}}
        ports: [{containerPort: 5672, name: amqp}, {containerPort: 15672, name: management}]
        readinessProbe:
          tcpSocket: {port: management}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {name: rabbitmq}
spec:
  selector: {app: rabbitmq}
  ports:
  - {name: amqp, port: 5672, targetPort: amqp}
  - {name: management, port: 15672, targetPort: management}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker}
spec:
  replicas: 0
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers:
      - {name: pause, image: $PAUSE_IMAGE, imagePullPolicy: Never}
EOF
  k -n "$SMOKE_NS" rollout status deployment/rabbitmq --timeout=180s >/dev/null || { smoke_diagnose; fail "RabbitMQ stand-in not ready"; }
  local protocol summary=""
  for protocol in amqp http; do
    smoke_round "$protocol"
    summary+=" $protocol: 0 -> $SMOKE_MAX in ${SMOKE_UP} s, back to 0 in ${SMOKE_DOWN} s after the purge;"
  done
  k delete namespace "$SMOKE_NS" --wait=true --timeout=120s >/dev/null
  log "smoke passed in $((SECONDS - t0)) s:${summary%;}"
}

# smoke_round PROTOCOL: fill the queue, let a ScaledObject reading it over PROTOCOL scale the
# worker up, purge, see it back at 0, remove the ScaledObject. Sets SMOKE_UP and SMOKE_DOWN.
smoke_round() {
  local protocol=$1 key=host
  [[ $protocol == http ]] && key=management
  # The scaler declares the queue passively: it must exist before the ScaledObject is checked.
  log "smoke ($protocol): publishing $SMOKE_MESSAGES messages to the queue keda-smoke"
  run_amqp publish "(async () => { const c = await require('amqplib').connect(process.env.AMQP_URL); const ch = await c.createConfirmChannel(); await ch.assertQueue('keda-smoke', {durable: true}); for (let i = 0; i < $SMOKE_MESSAGES; i++) ch.sendToQueue('keda-smoke', Buffer.from(String(i)), {persistent: true}); await ch.waitForConfirms(); const q = await ch.checkQueue('keda-smoke'); console.log('queue keda-smoke holds', q.messageCount); await c.close(); })().catch((e) => { console.error(e); process.exit(1); })"
  local t_up=$SECONDS
  # Cooldown and scale-down windows cut to seconds so the way back is seen within the test.
  k -n "$SMOKE_NS" apply -f - >/dev/null <<EOF
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: rabbitmq}
spec:
  secretTargetRef: [{parameter: host, name: rabbitmq, key: $key}]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: worker}
spec:
  scaleTargetRef: {name: worker}
  minReplicaCount: 0
  maxReplicaCount: $SMOKE_MAX
  pollingInterval: 5
  cooldownPeriod: 10
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown: {stabilizationWindowSeconds: 0}
  triggers:
  - type: rabbitmq
    metadata: {protocol: $protocol, queueName: keda-smoke, mode: QueueLength, value: "$SMOKE_PER_REPLICA"}
    authenticationRef: {name: rabbitmq}
EOF
  k -n "$SMOKE_NS" wait --for=condition=Ready scaledobject/worker --timeout=120s >/dev/null || { smoke_diagnose; fail "ScaledObject not Ready"; }
  k -n "$SMOKE_NS" get hpa keda-hpa-worker >/dev/null || { smoke_diagnose; fail "KEDA made no HPA"; }
  log "smoke ($protocol): waiting for worker to scale 0 -> $SMOKE_MAX ($SMOKE_MESSAGES messages / $SMOKE_PER_REPLICA per replica)"
  replicas_become "$SMOKE_MAX" 180
  SMOKE_UP=$((SECONDS - t_up))
  local metric
  metric=$(k -n "$SMOKE_NS" get scaledobject worker -o jsonpath='{.status.externalMetricNames[0]}')
  log "smoke ($protocol): external metric $metric = $(k get --raw "/apis/external.metrics.k8s.io/v1beta1/namespaces/$SMOKE_NS/$metric?labelSelector=scaledobject.keda.sh%2Fname%3Dworker" | jq -c '[.items[] | .value]')"
  k -n "$SMOKE_NS" rollout status deployment/worker --timeout=120s >/dev/null || { smoke_diagnose; fail "worker pods not ready"; }
  log "smoke ($protocol): purging the queue; worker must go back to 0"
  local t_down=$SECONDS
  run_amqp purge "(async () => { const c = await require('amqplib').connect(process.env.AMQP_URL); const ch = await c.createChannel(); const r = await ch.purgeQueue('keda-smoke'); console.log('purged', r.messageCount); await c.close(); })().catch((e) => { console.error(e); process.exit(1); })"
  replicas_become 0 180
  SMOKE_DOWN=$((SECONDS - t_down))
  k -n "$SMOKE_NS" delete scaledobject worker --wait=true --timeout=60s >/dev/null
  local deadline=$((SECONDS + 60))
  while k -n "$SMOKE_NS" get hpa keda-hpa-worker >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "the HPA outlived its ScaledObject"
    sleep 1
  done
}

main() {
  case ${1:-build} in
    build) cmd_build ;;
    render) render_manifests >&2 && cat "$MANIFEST" ;;
    install) cmd_install ;;
    uninstall) cmd_uninstall ;;
    smoke) cmd_smoke ;;
    *) fail "usage: $0 build|install|uninstall|render|smoke" ;;
  esac
}

# One line, parsed whole before it runs: editing this file while it runs cannot feed bash
# half a command afterwards.
main "$@"; exit
