#!/usr/bin/env bash
# RabbitMQ 4 brokers on this machine, next to (never instead of) the machine's own broker.
#
# STAND-IN: the nodes run a Debian `rabbitmq-server` package from a root filesystem made by
# mmdebstrap, not the official rabbitmq:4 image (no Docker here). RABBITMQ4_SERIES picks it:
#   4.0 (default)  Debian 13 (trixie): 4.0.5 on Erlang 27, Mnesia, deprecated features permitted
#   4.3            Debian forky (testing): 4.3.x on Erlang 29, Khepri, the deprecated features
#                  of 4.x denied (transient non-exclusive queues, global QoS, ...); the stand-in
#                  for 4.1+ (the chart's default image is 4.2)
# Each series has its own root filesystem, state folder, ports and node names, so both can run
# at once. Each node runs chrooted in a private mount namespace (its /proc and TLS bind mounts
# vanish with it), as root, on loopback only.
#
# Interface (kept stable: the fault suite, `make test-rabbitmq4` and the bench call it):
#   build              make the root filesystem (.tools/rabbitmq4{,3}/rootfs) unless it exists, and
#                      install the host tools it and partition need (mmdebstrap, iptables);
#                      `build --force` remakes it
#   up                 start one node unless it runs; prints its AMQP URL
#   down               stop that node; leaves no process, mount or data behind
#   url                print the one node's AMQP URL (fails when it is not running)
#   ctl ARGS...        rabbitmqctl ARGS against the one node
#   tls-dir            print the folder the one node's TLS listener reads its files from
#   cluster-up N       start N fresh nodes joined into one cluster (rabbitmqctl join_cluster);
#                      prints their AMQP URLs, comma-separated, node 1 first; refuses when a
#                      cluster already runs on those ports
#   cluster-down       stop the cluster; leaves nothing behind
#   cluster-urls       print the running cluster's AMQP URLs, comma-separated
#   kill K             SIGKILL node K's Erlang VM (K = 1..N, as in the URL list)
#   start K            restart node K (after kill); it rejoins the cluster; waits until it runs
#   leader QUEUE [K..] print the number K of the node that leads quorum queue QUEUE (vhost /),
#                      as the first running node answers (of nodes K.., when given)
#   online QUEUE [K..] print the numbers of the nodes whose members of QUEUE are online, one
#                      line, space-separated, as the first running node answers
#   partition K        cut node K's Erlang distribution off from the other nodes (iptables on
#                      loopback: every packet node K sends on its distribution connections is
#                      dropped, so each of them stalls both ways); AMQP, epmd and management
#                      still reach every node
#   heal K             remove that cut
#   status             what runs
#
# Ports (all on 127.0.0.1), from the node's AMQP port P (defaults: series 4.0 / series 4.3):
#   management P+10000 (every node), prometheus P+10020, Erlang distribution P+20000,
#   rabbitmqctl's own distribution ports P+30100..P+30109, epmd P-1300 (one epmd per broker:
#   Erlang finds a node on the same host through one epmd port, so a cluster's nodes share
#   theirs; it is never the machine's 4369).
#   RABBITMQ4_PORT          the one node's AMQP port (5682: 15682, 15702, 25682, 4382 /
#                           5685: 15685, 15705, 25685, 4385)
#   RABBITMQ4_CLUSTER_PORT  node 1's AMQP port; node K has P+K-1 (5691: 5691.., 15691..,
#                           15711.., 25691.., epmd 4391 / 5721: 5721.., epmd 4421). Two
#                           clusters of a series at once need two values; every cluster
#                           subcommand reads it.
#   RABBITMQ4_DIR           state folder (<repo>/.tools/rabbitmq4 / <repo>/.tools/rabbitmq43)
# Credentials: guest/guest (loopback_users = none). Logs: <state>/run/<name>/<node>/log/.
#
# TLS: `up` gives the one node a mutual-TLS listener on P-1 (verify_peer,
# fail_if_no_peer_cert) with certificate files in <state>/tls (`tls-dir` prints it), made here
# with a throwaway CA when missing; the TLS test puts its own CA and certificates there.
#
# scripts/test-broker.sh runs this script with FIB_RPC_NODE_SOURCE=machine: the same node,
# made of the machine's installed rabbitmq-server instead of the chroot's (see its header).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source=${FIB_RPC_NODE_SOURCE:-rabbitmq4}
series=${RABBITMQ4_SERIES:-4.0}
mirror=${RABBITMQ4_MIRROR:-http://deb.debian.org/debian}
host=127.0.0.1
# Per series: the Debian suite whose package it runs, the state folder's name, the default
# ports (apart, so that both series run at once) and the node name prefix.
case $series in
4.0) suite=trixie series_name=rabbitmq4 default_single=5682 default_cluster=5691 series_prefix=fib4 ;;
4.3) suite=forky series_name=rabbitmq43 default_single=5685 default_cluster=5721 series_prefix=fib43 ;;
*)
  echo "rabbitmq4: RABBITMQ4_SERIES=$series: 4.0 (Debian trixie's 4.0.5) or 4.3 (Debian forky's 4.3)" >&2
  exit 2
  ;;
esac
cluster_port=${RABBITMQ4_CLUSTER_PORT:-$default_cluster}
case $source in
rabbitmq4)
  me=$series_name
  state=${RABBITMQ4_DIR:-$repo/.tools/$series_name}
  single_port=${RABBITMQ4_PORT:-$default_single}
  ;;
machine)
  me=test-broker
  state=${TEST_BROKER_DIR:-$repo/.tools/test-broker}
  single_port=${TEST_BROKER_PORT:-5675}
  ;;
*)
  echo "rabbitmq4: FIB_RPC_NODE_SOURCE=$source: rabbitmq4 or machine" >&2
  exit 2
  ;;
esac
mkdir -p "$state"
state=$(cd "$state" && pwd)
tls_dir=$state/tls

die() {
  echo "$me: $*" >&2
  exit 1
}
say() { echo "$me: $*" >&2; }

if [ "$source" = rabbitmq4 ]; then
  rootfs=$state/rootfs
  # Inside the root filesystem, where each broker keeps its nodes' data, logs and cookie.
  inner=/var/lib/fib-rpc-rabbitmq4
  # Where a node finds its TLS files: $tls_dir, bind-mounted into the root filesystem.
  node_tls_dir=/etc/fib-rpc-tls
  # Chroot processes are told apart from the host's (and other worktrees') by their root.
  node_root=$rootfs
  tag=
  node_prefix=$series_prefix
  port_vars="RABBITMQ4_PORT / RABBITMQ4_CLUSTER_PORT"
  [ "$(id -u)" -eq 0 ] || die "needs root (chroot and mount namespaces); run it with sudo"
  # curl and jq: the cluster's `leader`; the machine's single node has no use for them.
  for tool in curl jq; do command -v "$tool" >/dev/null 2>&1 || die "needs $tool (apt-get install $tool)"; done
else
  rootfs=
  inner=$state/run
  node_tls_dir=$tls_dir
  # Every host process has / as its root: the tag (this state folder) tells this worktree's
  # nodes from another's on the same ports' names.
  node_root=/
  tag=$state:
  node_prefix=fibtest
  port_vars=TEST_BROKER_PORT
fi

is_port() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1400 ] && [ "$1" -le 35000 ]; }
is_port "$single_port" || die "${port_vars%% *}=$single_port: give an AMQP port between 1400 and 35000"
is_port "$cluster_port" || die "RABBITMQ4_CLUSTER_PORT=$cluster_port: give an AMQP port between 1400 and 35000"

# The host's own tools: mmdebstrap builds the root filesystem, iptables cuts a node off
# (partition). A fresh machine has neither.
host_tools() {
  local missing=()
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  [ "${#missing[@]}" -gt 0 ] || return 0
  say "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() {
  [ "$source" = rabbitmq4 ] || die "build: only RabbitMQ 4 nodes have a root filesystem to build"
  host_tools
  if [ "${1:-}" = --force ]; then rm -rf "$rootfs"; fi
  if [ -x "$rootfs/usr/lib/rabbitmq/bin/rabbitmq-server" ]; then return 0; fi
  say "building the root filesystem (Debian $suite, rabbitmq-server) in $rootfs"
  rm -rf "$rootfs.new"
  # A testing suite's Release file is valid for a week only (Valid-Until); a mirror's copy older
  # than that is refused unless told. The signatures are still checked.
  mmdebstrap --quiet --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' \
    --include=rabbitmq-server "$suite" "$rootfs.new" "$mirror" >&2
  # The package's own node would never start (no init in a chroot), but its data folder and
  # default config are not ours to use: every node here gets its own folders below $inner.
  loopback_hosts "$rootfs.new"
  mv "$rootfs.new" "$rootfs"
  check_series
  say "rabbitmq-server $(rootfs_version) ready"
}

# Node names are name@localhost: Erlang resolves localhost through the root's /etc/hosts,
# which trixie's netbase ships and forky's no longer does.
loopback_hosts() {
  [ -s "$1/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$1/etc/hosts"
}

# A testing suite moves on: a rootfs whose package is no longer of the series is not its stand-in.
check_series() {
  local version
  version=$(rootfs_version)
  case $version in
  "$series".*) ;;
  *) die "Debian $suite's rabbitmq-server is $version, not of series $series: this is no stand-in for $series (RABBITMQ4_SERIES)" ;;
  esac
}

rootfs_version() {
  if [ "$source" = machine ]; then
    dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo '(version unknown)'
    return 0
  fi
  sed -n 's/^Version: //p' <(awk '/^Package: rabbitmq-server$/,/^$/' "$rootfs/var/lib/dpkg/status")
}

need_rootfs() {
  if [ "$source" = machine ]; then
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] ||
      die "no rabbitmq-server installed here (scripts/ensure-broker.sh installs it with apt-get)"
    return 0
  fi
  [ -x "$rootfs/usr/lib/rabbitmq/bin/rabbitmq-server" ] || build
  check_series
}

node_kind() {
  if [ "$source" = machine ]; then
    echo "a test node of the machine's RabbitMQ $(rootfs_version)"
  else
    echo "RabbitMQ $(rootfs_version) (Debian package, a stand-in for the official image)"
  fi
}

# A throwaway CA and a server certificate for localhost/127.0.0.1, unless present: the TLS
# listener needs files to start with; the TLS test replaces them with its own.
tls_files() {
  if [ -s "$tls_dir/server.pem" ] && [ -s "$tls_dir/server.key" ] && [ -s "$tls_dir/ca.pem" ]; then return 0; fi
  command -v openssl >/dev/null 2>&1 || return 0
  local tmp
  tmp=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 3650 \
    -subj "/CN=fib-rpc throwaway test CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tmp/server.ext"
  openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -out "$tmp/server.pem" -days 3650 -extfile "$tmp/server.ext" 2>/dev/null
  mkdir -p "$tls_dir"
  install -m 0644 "$tmp/ca.pem" "$tmp/server.pem" "$tls_dir/"
  install -m 0600 "$tmp/server.key" "$tls_dir/"
  rm -rf "$tmp"
}

# ---- one broker (a single node or a cluster) -------------------------------------------
# A broker is named by its first AMQP port: node-P for `up`, cluster-P for `cluster-up`.
# Its folder: $rootfs$inner/<name>/ with `nodes` (how many), cookie home, and one folder a node.

broker_dir() { echo "$rootfs$inner/$1"; }
node_name() { echo "$node_prefix-$1-$2@localhost"; } # broker name, node number

# Runs a command inside the root filesystem with the broker's environment; $1 = broker name,
# $2 = base port, $3 = node number, then the command.
in_root() {
  local name=$1 base=$2 k=$3
  shift 3
  local port=$((base + k - 1))
  local dir=$inner/$name/$k
  local enter wrap=()
  if [ "$source" = machine ]; then
    enter="exec /usr/bin/env -i"
  else
    wrap=(unshare --mount --propagation private --)
    local tls_bind=:
    # The TLS scenario writes its certificates on the host; the node reads the same files.
    if [ -d "$tls_dir" ]; then
      tls_bind="mkdir -p '$rootfs$node_tls_dir' && mount --bind -o ro '$tls_dir' '$rootfs$node_tls_dir'"
    fi
    enter="mount -t proc proc '$rootfs/proc' && $tls_bind && exec chroot '$rootfs' /usr/bin/env -i"
  fi
  # env -i: nothing of the caller's environment (ERL_FLAGS, RABBITMQ_*) reaches the node, and
  # RABBITMQ_CONF_ENV_FILE keeps it from reading the machine's /etc/rabbitmq/rabbitmq-env.conf.
  "${wrap[@]}" /bin/sh -c "
    $enter \
      PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME='$inner/$name/home' \
      FIB_RPC_RABBITMQ4='$tag$name/$k' RABBITMQ_CONF_ENV_FILE='$dir/rabbitmq-env.conf' \
      ERL_EPMD_PORT=$((base - 1300)) ERL_EPMD_ADDRESS=$host \
      RABBITMQ_NODENAME='$(node_name "$name" "$k")' RABBITMQ_NODE_IP_ADDRESS=$host \
      RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((port + 20000)) \
      RABBITMQ_CTL_DIST_PORT_MIN=$((port + 30100)) RABBITMQ_CTL_DIST_PORT_MAX=$((port + 30109)) \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}' \
      RABBITMQ_CTL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}' \
      RABBITMQ_MNESIA_BASE='$dir/data' RABBITMQ_LOG_BASE='$dir/log' \
      RABBITMQ_CONFIG_FILE='$dir/rabbitmq.conf' RABBITMQ_ENABLED_PLUGINS_FILE='$dir/enabled_plugins' \
      RABBITMQ_ADVANCED_CONFIG_FILE='$dir/advanced.config' RABBITMQ_PID_FILE='$dir/pid' \
      \"\$@\"" in-root "$@"
}

# Every process of a broker (or of one node when $2 is given): found by the variable that
# in_root gives them all, so the machine's own broker and other brokers are never touched.
# Builtins only (test -ef, read): on a busy machine a fork per process made a kill take seconds.
pids_of() {
  local want=$1 node=${2:-} p env=() comm
  for p in /proc/[0-9]*; do
    [ "$p/root" -ef "$node_root" ] || continue
    mapfile -d '' env 2>/dev/null <"$p/environ" || continue
    if [ -n "$node" ]; then
      [[ " ${env[*]} " == *" FIB_RPC_RABBITMQ4=$tag$want/$node "* ]] || continue
      # epmd serves the whole broker: it goes with the broker, not with one node.
      read -r comm <"$p/comm" 2>/dev/null || continue
      [ "$comm" = epmd ] && continue
    else
      [[ " ${env[*]} " == *" FIB_RPC_RABBITMQ4=$tag$want/"* ]] || continue
    fi
    echo "${p#/proc/}"
  done
}

reachable() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

# The supplementary group a node's processes carry (from its AMQP port; no /etc/group entry).
node_gid() { echo $((40000 + $1)); }

# The iptables rules (OUTPUT, loopback) that cut node $1 of the cluster off: what its sockets
# send to the others' distribution ports, or from its own (its replies on the connections they
# opened). Printed one rule a line, without the -A/-D; tagged so that heal removes just these.
partition_rules() {
  local k=$1 n j port dports=()
  n=$(cluster_size)
  port=$((cluster_port + k - 1))
  for j in $(seq 1 "$n"); do [ "$j" = "$k" ] || dports+=($((cluster_port + j - 1 + 20000))); done
  local owner
  owner="-o lo -p tcp -m owner --gid-owner $(node_gid "$port") --suppl-groups"
  local tag="-m comment --comment fib-rpc-partition-$cluster-$k -j DROP"
  echo "$owner -m multiport --dports $(IFS=,; echo "${dports[*]}") $tag"
  echo "$owner --sport $((port + 20000)) $tag"
}

write_node_config() {
  local name=$1 base=$2 k=$3
  local port=$((base + k - 1))
  local dir
  dir=$(broker_dir "$name")/$k
  mkdir -p "$dir/data" "$dir/log"
  cat >"$dir/rabbitmq.conf" <<EOF
# fib-rpc test broker (scripts/$me.sh): loopback only, guest allowed from loopback.
listeners.tcp.1 = $host:$port
loopback_users = none
prometheus.tcp.ip = $host
prometheus.tcp.port = $((port + 10020))
# Several nodes and the machine's broker share a few GB: do not let one claim 40 % of it.
vm_memory_high_watermark.absolute = 1GB
disk_free_limit.absolute = 50MB
EOF
  # The management API on P+10000: the cluster's `leader` asks it, and the least-privilege
  # suite reads it as KEDA does. Every node has it, so a suite that finds a node already
  # running (another suite started it) finds the plugin there too.
  printf 'management.tcp.ip = %s\nmanagement.tcp.port = %s\n' "$host" $((port + 10000)) >>"$dir/rabbitmq.conf"
  echo '[rabbitmq_management,rabbitmq_prometheus].' >"$dir/enabled_plugins"
  if [ "$4" = tls ] && [ -s "$tls_dir/server.pem" ]; then
    # The fault suite's TLS scenario: mutual TLS on port P-1 (the one node only: a cluster
    # has no room there).
    cat >>"$dir/rabbitmq.conf" <<EOF
listeners.ssl.fibrpc = $host:$((port - 1))
ssl_options.cacertfile = $node_tls_dir/ca.pem
ssl_options.certfile = $node_tls_dir/server.pem
ssl_options.keyfile = $node_tls_dir/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
EOF
  fi
  echo '[].' >"$dir/advanced.config"
  : >"$dir/rabbitmq-env.conf"
}

new_broker() {
  local name=$1 base=$2 n=$3 tls=${4:-} k
  local dir
  dir=$(broker_dir "$name")
  rm -rf "$dir"
  mkdir -p "$dir/home"
  # One cookie for the broker's nodes and its rabbitmqctl; random, so nothing else joins.
  head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$dir/home/.erlang.cookie"
  chmod 600 "$dir/home/.erlang.cookie"
  echo "$n" >"$dir/nodes"
  for k in $(seq 1 "$n"); do write_node_config "$name" "$base" "$k" "$tls"; done
}

check_ports_free() {
  local base=$1 n=$2 k port
  for k in $(seq 1 "$n"); do
    port=$((base + k - 1))
    for p in "$port" $((port + 10000)) $((port + 10020)) $((port + 20000)); do
      if reachable "$p"; then die "port $p is taken: pick another with $port_vars"; fi
    done
  done
  if reachable $((base - 1300)); then die "epmd port $((base - 1300)) is taken (another broker with the same base port?)"; fi
}

start_node() {
  local name=$1 base=$2 k=$3
  local log
  log=$(broker_dir "$name")/$k/log/console.log
  # setsid + no inherited descriptors: the caller (a test's execFile) must not wait for the VM,
  # and a lock the caller holds (`flock /work/locks/broker.lock make ...`) must not live on in it.
  (
    close_inherited_fds
    # The node's processes carry a supplementary group of their own: `partition` matches the
    # packets their sockets send by it (iptables -m owner); uid root, like every other node's.
    exec setsid setpriv --groups "$(node_gid $((base + k - 1)))" -- \
      "$0" _in-root "$name" "$base" "$k" /usr/lib/rabbitmq/bin/rabbitmq-server >"$log" 2>&1 </dev/null
  ) &
}

# Closes every descriptor above stderr that this shell has (a subshell's own copy).
close_inherited_fds() {
  local fd
  for fd in "/proc/$BASHPID/fd"/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
}

ctl_node() { # broker name, base, node, rabbitmqctl args
  local name=$1 base=$2 k=$3
  shift 3
  in_root "$name" "$base" "$k" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$(node_name "$name" "$k")" "$@"
}

wait_node() {
  local name=$1 base=$2 k=$3
  # await_startup gives up at once while the VM is not yet registered with epmd: until then,
  # ping (which fails fast) in a loop; the node's own failure ends the wait early.
  local until=$((SECONDS + 120)) started=0
  while [ "$SECONDS" -lt "$until" ]; do
    if ctl_node "$name" "$base" "$k" -q ping >/dev/null 2>&1; then
      started=1
      break
    fi
    [ -n "$(pids_of "$name" "$k")" ] || break
    sleep 0.5
  done
  if [ "$started" = 0 ] || ! ctl_node "$name" "$base" "$k" -q await_startup --timeout 120 >/dev/null 2>&1; then
    say "node $k of $name did not start; the end of its log:"
    tail -n 30 "$(broker_dir "$name")/$k/log/console.log" >&2 || true
    return 1
  fi
  local port=$((base + k - 1))
  for _ in $(seq 1 100); do
    if reachable "$port"; then return 0; fi
    sleep 0.2
  done
  die "node $k of $name runs but AMQP does not answer on $host:$port"
}

stop_broker() {
  local name=$1 base=$2 dir n k pids
  dir=$(broker_dir "$name")
  if [ -f "$dir/nodes" ]; then
    n=$(cat "$dir/nodes")
    # A clean stop first, all nodes at once (a cluster's last node waits for no one).
    for k in $(seq 1 "$n"); do
      if [ -n "$(pids_of "$name" "$k")" ]; then
        timeout 60 "$0" _in-root "$name" "$base" "$k" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$(node_name "$name" "$k")" -q stop >/dev/null 2>&1 9>&- &
      fi
    done
    wait || true
  fi
  for _ in 1 2 3 4 5; do
    pids=$(pids_of "$name")
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  done
  [ -z "$(pids_of "$name")" ] || die "processes of $name are still alive: $(pids_of "$name" | tr '\n' ' ')"
  rm -rf "$dir"
}

urls() { # base, n
  local base=$1 n=$2 k list=()
  for k in $(seq 1 "$n"); do list+=("amqp://guest:guest@$host:$((base + k - 1))"); done
  (
    IFS=,
    echo "${list[*]}"
  )
}

# One subcommand at a time on a broker: a second `up` waits for the first instead of racing it.
lock() {
  exec 9>"$state/.lock-$1"
  flock 9
}

single=node-$single_port
cluster=cluster-$cluster_port

cluster_size() {
  local f
  f=$(broker_dir "$cluster")/nodes
  [ -f "$f" ] || die "no cluster on port $cluster_port (cluster-up N first; RABBITMQ4_CLUSTER_PORT=$cluster_port)"
  cat "$f"
}

node_arg() {
  local n
  n=$(cluster_size)
  if ! [[ ${1:-} =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$n" ]; then die "give a node number 1..$n, not '${1:-}'"; fi
}

cmd=${1:-}
shift || true
case $source:$cmd in
machine:build | machine:cluster-* | machine:kill | machine:start | machine:leader)
  die "$cmd: clusters are RabbitMQ 4's (scripts/rabbitmq4.sh); this node is a single one"
  ;;
esac
case $cmd in
build)
  lock rootfs
  build "$@"
  ;;
up)
  lock rootfs
  need_rootfs
  exec 9>&-
  lock "$single"
  if [ -n "$(pids_of "$single" 1)" ] && reachable "$single_port"; then
    urls "$single_port" 1
    exit 0
  fi
  stop_broker "$single" "$single_port"
  check_ports_free "$single_port" 1
  if reachable $((single_port - 1)); then die "port $((single_port - 1)) (TLS) is taken: pick another with $port_vars"; fi
  tls_files
  new_broker "$single" "$single_port" 1 tls
  say "starting $(node_kind) on $host:$single_port"
  start_node "$single" "$single_port" 1
  wait_node "$single" "$single_port" 1 || {
    stop_broker "$single" "$single_port"
    exit 1
  }
  urls "$single_port" 1
  ;;
down)
  lock "$single"
  stop_broker "$single" "$single_port"
  ;;
url)
  [ -n "$(pids_of "$single" 1)" ] || die "no node on port $single_port (run: $0 up)"
  urls "$single_port" 1
  ;;
ctl)
  [ -n "$(pids_of "$single" 1)" ] || die "no node on port $single_port (run: $0 up)"
  ctl_node "$single" "$single_port" 1 "$@"
  ;;
tls-dir)
  echo "$tls_dir"
  ;;
cluster-up)
  n=${1:-}
  if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 9 ]; then die "cluster-up N: give a node count 1..9, not '$n'"; fi
  lock rootfs
  need_rootfs
  exec 9>&-
  lock "$cluster"
  # Another run's live cluster (a second test suite or bench on this machine) is not ours to
  # stop; what a crashed run left (no process) is.
  if [ -n "$(pids_of "$cluster")" ]; then
    die "a cluster already runs on port $cluster_port: cluster-down first (RABBITMQ4_CLUSTER_PORT=$cluster_port), or pick another RABBITMQ4_CLUSTER_PORT"
  fi
  stop_broker "$cluster" "$cluster_port"
  check_ports_free "$cluster_port" "$n"
  new_broker "$cluster" "$cluster_port" "$n"
  say "starting $n nodes of $(node_kind) on $host:$cluster_port.."
  # Boot in parallel (the slow part), then join one after another, as join_cluster wants.
  for k in $(seq 1 "$n"); do start_node "$cluster" "$cluster_port" "$k"; done
  ok=1
  for k in $(seq 1 "$n"); do wait_node "$cluster" "$cluster_port" "$k" || ok=0; done
  if [ "$ok" = 1 ]; then
    for k in $(seq 2 "$n"); do
      if ! { ctl_node "$cluster" "$cluster_port" "$k" -q stop_app >/dev/null &&
        ctl_node "$cluster" "$cluster_port" "$k" -q join_cluster "$(node_name "$cluster" 1)" >/dev/null &&
        ctl_node "$cluster" "$cluster_port" "$k" -q start_app >/dev/null &&
        wait_node "$cluster" "$cluster_port" "$k"; }; then
        ok=0
        break
      fi
    done
  fi
  if [ "$ok" = 1 ]; then
    running=$(ctl_node "$cluster" "$cluster_port" 1 -q cluster_status --formatter json |
      grep -o '"running_nodes":\[[^]]*\]' | grep -o '@localhost' | wc -l)
    [ "$running" = "$n" ] || {
      say "the cluster has $running running nodes, not $n"
      ok=0
    }
  fi
  if [ "$ok" != 1 ]; then
    stop_broker "$cluster" "$cluster_port"
    die "cluster-up $n failed"
  fi
  urls "$cluster_port" "$n"
  ;;
cluster-down)
  lock "$cluster"
  stop_broker "$cluster" "$cluster_port"
  ;;
cluster-urls)
  urls "$cluster_port" "$(cluster_size)"
  ;;
kill)
  node_arg "${1:-}"
  pids=$(pids_of "$cluster" "$1" | while read -r p; do if read -r comm <"/proc/$p/comm" && [ "$comm" = beam.smp ]; then echo "$p"; fi; done)
  [ -n "$pids" ] || die "node $1 is not running"
  # shellcheck disable=SC2086 # a list of pids
  kill -KILL $pids
  # Its helpers (erl_child_setup, inet_gethost) end with the VM; wait for them.
  for _ in $(seq 1 50); do
    [ -z "$(pids_of "$cluster" "$1")" ] && exit 0
    sleep 0.1
  done
  # shellcheck disable=SC2046 # a list of pids
  kill -KILL $(pids_of "$cluster" "$1") 2>/dev/null || true
  ;;
start)
  node_arg "${1:-}"
  lock "$cluster"
  [ -z "$(pids_of "$cluster" "$1")" ] || die "node $1 is running (kill it first)"
  start_node "$cluster" "$cluster_port" "$1"
  wait_node "$cluster" "$cluster_port" "$1"
  ;;
leader | online)
  queue=${1:-}
  [ -n "$queue" ] || die "$cmd QUEUE: give a quorum queue's name"
  shift
  n=$(cluster_size)
  ask=("$@")
  [ ${#ask[@]} -gt 0 ] || mapfile -t ask < <(seq 1 "$n")
  # Any running node answers for the cluster: ask them in turn, over the management API
  # (milliseconds; rabbitmqctl takes seconds to start on a busy machine).
  path=/api/queues/%2F/$(jq -rn --arg q "$queue" '$q | @uri')
  number_of() { # a node's name -> its number, or nothing
    local j
    for j in $(seq 1 "$n"); do [ "$1" != "$(node_name "$cluster" "$j")" ] || echo "$j"; done
  }
  for k in "${ask[@]}"; do
    [ -n "$(pids_of "$cluster" "$k")" ] || continue
    if answer=$(curl -sS --max-time 5 -u guest:guest -w '\n%{http_code}' "http://$host:$((cluster_port + k - 1 + 10000))$path" 2>/dev/null); then
      [ "${answer##*$'\n'}" != 404 ] || die "no queue '$queue' on the cluster on $cluster_port"
      body=${answer%$'\n'*}
      if [ "$cmd" = online ]; then
        nodes=$(jq -r '.online // [] | .[]' <<<"$body" 2>/dev/null) || continue
        list=()
        for node in $nodes; do list+=("$(number_of "$node")"); done
        mapfile -t list < <(printf '%s\n' "${list[@]}" | sed '/^$/d' | sort -n)
        echo "${list[*]}"
        exit 0
      fi
      leader=$(jq -r '.leader // empty' <<<"$body" 2>/dev/null) || continue
      [ -n "$leader" ] || die "queue '$queue' has no leader (not a quorum queue, or none elected yet)"
      j=$(number_of "$leader")
      [ -n "$j" ] || die "queue '$queue' is led by $leader, not one of this cluster's nodes"
      echo "$j"
      exit 0
    fi
  done
  die "no node of the cluster on $cluster_port answers"
  ;;
partition)
  node_arg "${1:-}"
  command -v iptables >/dev/null 2>&1 || die "partition needs iptables (rabbitmq4.sh build installs it, or apt-get install iptables)"
  [ -n "$(pids_of "$cluster" "$1")" ] || die "node $1 is not running"
  while read -r rule; do
    # shellcheck disable=SC2086 # a rule's words
    iptables -C OUTPUT $rule 2>/dev/null || iptables -I OUTPUT $rule
  done < <(partition_rules "$1")
  ;;
heal)
  node_arg "${1:-}"
  while read -r rule; do
    # shellcheck disable=SC2086 # a rule's words
    while iptables -C OUTPUT $rule 2>/dev/null; do iptables -D OUTPUT $rule; done
  done < <(partition_rules "$1")
  ;;
_in-root) # internal: start_node and stop_broker run the node's commands through it
  in_root "$@"
  ;;
status)
  for dir in "$rootfs$inner"/*/; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir")
    echo "$name: $(cat "$dir/nodes" 2>/dev/null || echo '?') nodes, processes: $(pids_of "$name" | wc -l)"
  done
  ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  [ -z "$cmd" ] || [ "$cmd" = help ] || die "unknown subcommand '$cmd'"
  ;;
esac
