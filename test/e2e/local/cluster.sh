#!/usr/bin/env bash
# A single-node Kubernetes cluster on this machine from upstream parts, for the local e2e:
# its own containerd, etcd, kube-apiserver (with the aggregation layer), controller-manager,
# scheduler, kubelet, kube-proxy, CoreDNS and a NetworkPolicy enforcer (kube-router's firewall
# controller, beside the bridge CNI, as upstream's kube-router-firewall-daemonset.yaml runs it).
# No Docker, no kind, no registry: the binaries and the infrastructure images come from
# test/e2e/local/binaries.sh.
#
#   bash test/e2e/local/cluster.sh up                 # start (or complete) the cluster; safe to re-run
#   bash test/e2e/local/cluster.sh down               # remove every process, mount, netns, link, rule and file it made
#   bash test/e2e/local/cluster.sh status             # what runs, the node, the system pods
#   bash test/e2e/local/cluster.sh kubeconfig         # print the admin kubeconfig's path
#   bash test/e2e/local/cluster.sh import FILE NAME   # import an image archive (OCI or docker) as NAME
#   bash test/e2e/local/cluster.sh pv [N]             # make sure N (default 5) local PersistentVolumes exist
#   bash test/e2e/local/cluster.sh smoke              # the cluster's own acceptance checks (leaves nothing behind)
#   bash test/e2e/local/cluster.sh trust-registry HOST:PORT CA   # containerd pulls from https://HOST:PORT trusting CA
#
# Needs root. What it changes on the host, and `down` undoes:
#   - /var/lib/fib-rpc-e2e and /run/fib-rpc-e2e (all state, logs, PKI, containerd root),
#   - the bridge fibrpc0 with the pod network and the veths of pods,
#   - iptables/ip6tables chains FIBRPC-* (ours), KUBE-* (kube-proxy, kubelet, kube-router),
#     CNI-* (portmap), and kube-router's ipsets KUBE-SRC-*/KUBE-DST-*,
#   - cgroups kubepods* (kubelet), net.ipv4.ip_forward (set to 1, restored),
#   - what the kubelet and containerd 1.6 put in paths they hard-code: symlinks in
#     /var/log/containers, /var/lib/kubelet/device-plugins, shim sockets in /run/containerd/s,
#     libcni's cache in /var/lib/cni (each removed, the directory too when we created it).
# Pod traffic never leaves the machine: a FORWARD rule rejects anything from the pod CIDR
# that is not going back to the bridge, pods are not masqueraded, and CoreDNS answers
# cluster.local only (no forwarder; the kubelet's resolv.conf has no nameserver).
set -euo pipefail

# --- pins and addresses: everything tunable lives here -----------------------------------
NODE_NAME=fib-rpc-e2e
BRIDGE=fibrpc0
BRIDGE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
APISERVER_PORT=6443
# Not 2379/2380: a developer's own etcd may use those.
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
ETCD_METRICS_PORT=23810
# The main namespace's broker keeps one; the broker-cluster phase claims five (3, then scaled to 5).
PV_COUNT=8
# What each local volume offers to claims: the chart's broker claims 4Gi by default. Local
# volumes are directories on the host's disk; the capacity is what a claim may bind to, not a quota.
PV_SIZE=8Gi
STATE=/var/lib/fib-rpc-e2e
RUN=/run/fib-rpc-e2e
# Built by binaries.sh; keep these equal to its pins.
K8S_VERSION=v1.35.4
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:v1.13.1
PROBE_IMAGE=fib-rpc.local/e2e/probe:1
# ------------------------------------------------------------------------------------------

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
E2E="$ROOT/.tools/e2e"
BIN="$E2E/bin"
IMAGES="$E2E/images"
KUBECONFIG_OUT="$E2E/kubeconfig"
PKI="$STATE/pki"
CONF="$STATE/conf"
LOGS="$STATE/logs"
PIDS="$RUN/pids"
SOCK="$RUN/containerd/containerd.sock"
CNI_CONF_DIR="$STATE/cni/net.d"
PV_DIR="$STATE/pv"
CERTS_D="$STATE/containerd-certs.d"
SUPER="$CONF/super-admin.conf"
# The order in which `up` starts and `down` stops (in reverse) the daemons.
DAEMONS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router pv-recycler)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
kc() { "$BIN/kubectl" --kubeconfig "$SUPER" "$@"; }
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

# wait_for SECONDS WHAT CMD...: retry CMD every second until it succeeds.
wait_for() {
  local timeout=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= timeout)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 1
  done
  log "$what: ok ($((SECONDS - start))s)"
}

# --- processes ----------------------------------------------------------------------------

# alive NAME: the pid file names a live process that is still the daemon we started (pids
# are reused, so the command line must mention this cluster's state or binaries).
alive() {
  local pid
  [[ -f "$PIDS/$1.pid" ]] || return 1
  pid=$(<"$PIDS/$1.pid")
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -e "$STATE" -e "$BIN/"
}

# start NAME CMD...: run CMD in its own session, detached from this shell, logging to
# $LOGS/NAME.log; a no-op when NAME already runs, so `up` can be re-run.
start() {
  local name=$1
  shift
  if alive "$name"; then
    log "$name already running (pid $(<"$PIDS/$name.pid"))"
    return
  fi
  log "starting $name"
  # fd 9 is main's lock on this script: a daemon must not hold it after we exit.
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9<&- &
  printf '%s\n' "$!" >"$PIDS/$name.pid"
}

# is_daemon PATH: PATH is one of our daemons' binaries (not kubectl: other people's clients
# of the cluster are theirs to stop).
is_daemon() {
  case "$1" in
    "$BIN"/etcd | "$BIN"/kube-apiserver | "$BIN"/kube-controller-manager | "$BIN"/kube-scheduler | "$BIN"/kubelet | "$BIN"/kube-proxy | "$BIN"/kube-router) return 0 ;;
  esac
  return 1
}

# our_pids: every process of this cluster that a pid file may have lost track of: anything
# whose command line names our state directories (containerd, its shims, ctr clients), our
# daemons' binaries, and every process in a kubelet pod cgroup (the containers).
our_pids() {
  local d pid cmd
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [[ $pid != "$$" && $pid != "$BASHPID" ]] || continue
    # A zombie is dead already; it waits for its parent (or init) to reap it.
    [[ $(awk '{print $3}' 2>/dev/null <"$d/stat") != Z ]] || continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
    if [[ $cmd == *"$STATE"* || $cmd == *"$RUN"* ]] || is_daemon "${cmd%% *}" ||
      grep -qE '^[0-9]+:[^:]*:/kubepods' "$d/cgroup" 2>/dev/null; then
      printf '%s\n' "$pid"
    fi
  done
}

# --- host set-up --------------------------------------------------------------------------

check_host() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router kubectl kubeadm etcd; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b missing: run bash test/e2e/local/binaries.sh"
  done
  for b in containerd containerd-shim-runc-v2 runc ctr iptables ip6tables ipset ip curl jq; do
    command -v "$b" >/dev/null || die "$b missing (apt-get install containerd runc iptables ipset iproute2 curl)"
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap && -x /usr/lib/cni/loopback ]] ||
    die "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"
}

net_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($BRIDGE_IP/24)"
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Pod-to-service traffic is routed by the host (DNAT to a pod on the same bridge), so
  # forwarding must be on; the previous value is restored by `down`.
  [[ -f "$RUN/ip_forward.orig" ]] || sysctl -n net.ipv4.ip_forward >"$RUN/ip_forward.orig"
  sysctl -qw net.ipv4.ip_forward=1
  # A reply from a pod to a pod on the same bridge must pass conntrack to be un-DNATed.
  if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    [[ -f "$RUN/bridge-nf.orig" ]] || sysctl -n net.bridge.bridge-nf-call-iptables >"$RUN/bridge-nf.orig"
    sysctl -qw net.bridge.bridge-nf-call-iptables=1
  fi
  firewall_up
}

# Our own chains, hooked first into INPUT and FORWARD: pod traffic stays on the bridge (no
# route out of the machine, REJECT so that a stray connection fails at once instead of
# hanging), and nothing from outside reaches the pod network or the control plane on it.
firewall_up() {
  local want
  want=$(
    cat <<EOF
-N FIBRPC-FORWARD
-A FIBRPC-FORWARD -s $POD_CIDR ! -o $BRIDGE -j REJECT --reject-with icmp-net-prohibited
-A FIBRPC-FORWARD -d $POD_CIDR ! -i $BRIDGE -j DROP
-N FIBRPC-INPUT
-A FIBRPC-INPUT -i lo -j RETURN
-A FIBRPC-INPUT -i $BRIDGE -j RETURN
-A FIBRPC-INPUT -d $POD_CIDR -j DROP
EOF
  )
  # Rebuilt only when different: a flush would open a gap while pods run.
  if [[ "$(iptables -w -S FIBRPC-FORWARD 2>/dev/null; iptables -w -S FIBRPC-INPUT 2>/dev/null)" != "$want" ]]; then
    printf '*filter\n:FIBRPC-FORWARD - [0:0]\n:FIBRPC-INPUT - [0:0]\n%s\nCOMMIT\n' "$(grep -v '^-N' <<<"$want")" |
      iptables-restore -w --noflush
  fi
  firewall_first
  # The same bounds once more in mangle's FORWARD, which runs before any filter chain: kube-router
  # keeps its own jump first in filter's FORWARD and ACCEPTs there what a policy admits, so the
  # filter rules above alone would not hold for traffic that an egress or ipBlock policy allows.
  want=$(
    cat <<EOF
-N FIBRPC-GUARD
-A FIBRPC-GUARD -s $POD_CIDR ! -o $BRIDGE -j DROP
-A FIBRPC-GUARD -d $POD_CIDR ! -i $BRIDGE -j DROP
EOF
  )
  if [[ "$(iptables -w -t mangle -S FIBRPC-GUARD 2>/dev/null)" != "$want" ]]; then
    printf '*mangle\n:FIBRPC-GUARD - [0:0]\n%s\nCOMMIT\n' "$(grep -v '^-N' <<<"$want")" |
      iptables-restore -w --noflush
  fi
  iptables -w -t mangle -C FORWARD -j FIBRPC-GUARD 2>/dev/null || iptables -w -t mangle -I FORWARD 1 -j FIBRPC-GUARD
}

# Our jumps must come first: kube-proxy and the kubelet prepend theirs to INPUT and FORWARD
# when they start (KUBE-FORWARD accepts marked and established traffic before us).
firewall_first() {
  local hook chain
  for hook in FORWARD INPUT; do
    chain=FIBRPC-$hook
    [[ $(iptables -w -S "$hook" 2>/dev/null | sed -n 2p) == "-A $hook -j $chain" ]] && continue
    # Insert before deleting the old jump, so that there is no moment without it.
    iptables -w -I "$hook" 1 -j "$chain"
    iptables -w -S "$hook" | awk -v r="-A $hook -j $chain" 'NR > 2 && $0 == r { print NR - 1 }' | sort -rn |
      while read -r n; do iptables -w -D "$hook" "$n"; done
  done
}

# put FILE: write stdin to FILE only when it differs, so that re-running `up` does not touch
# the files of running daemons (kube-proxy exits when its configuration file changes).
put() {
  local tmp="$1.tmp"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_configs() {
  mkdir -p "$CONF" "$CNI_CONF_DIR" "$STATE/cni/networks" "$CERTS_D"
  # No nameserver: pods with dnsPolicy Default (CoreDNS) get no upstream, so no query
  # ever leaves the machine.
  printf '# fib-rpc local e2e: no upstream resolver on purpose\noptions ndots:1\n' | put "$STATE/resolv.conf"

  put "$CONF/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Processes here lack CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below ours.
  restrict_oom_score_adj = true
  # Like containerd 2.x (kind's runtime): non-root containers may bind ports < 1024 and ping.
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # Pod network namespaces under our state dir, not /run/netns: down finds them all there.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state, by default in /run/containerd/runc, shared with any other containerd.
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF_DIR"
  # Per-registry hosts.toml files (containerd reads them at each pull, no restart): the
  # release rehearsal's registry on loopback and the CA it trusts (cluster.sh trust-registry).
  # Empty for the e2e, whose images are imported: every pull then goes where it always did.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CERTS_D"
EOF

  # No ipMasq: pods are never NATed to the host's address. The default route only exists so
  # that software probing for one works; FIBRPC-FORWARD rejects what it would carry out.
  put "$CNI_CONF_DIR/10-fibrpc.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "fibrpc",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/networks",
        "ranges": [[{ "subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF

  put "$CONF/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $BRIDGE_IP
  bindPort: $APISERVER_PORT
nodeRegistration:
  name: $NODE_NAME
  criSocket: unix://$SOCK
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $K8S_VERSION
clusterName: $NODE_NAME
certificatesDir: $PKI
controlPlaneEndpoint: $BRIDGE_IP:$APISERVER_PORT
networking:
  dnsDomain: $CLUSTER_DOMAIN
  serviceSubnet: $SERVICE_CIDR
  podSubnet: $POD_CIDR
apiServer:
  certSANs: [127.0.0.1, localhost, $BRIDGE_IP]
etcd:
  local:
    dataDir: $STATE/etcd
    serverCertSANs: [127.0.0.1, localhost]
    peerCertSANs: [127.0.0.1, localhost]
EOF

  put "$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$SOCK
# cgroup v1 and no systemd on this machine.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $STATE/resolv.conf
podLogsDir: $STATE/pod-logs
# The disk is shared with other builds: never evict pods for disk, and never garbage-collect
# images (they are imported, nothing could pull them back). 0% disables a threshold.
evictionHard:
  memory.available: 100Mi
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: true
rotateCertificates: false
serializeImagePulls: false
EOF

  put "$CONF/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
clientConnection:
  kubeconfig: $CONF/kube-proxy.conf
# NodePorts on the bridge address only: nothing is published on the host's interfaces.
nodePortAddresses: [$BRIDGE_IP/32]
iptables:
  localhostNodePorts: false
# Leave the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

pki() {
  if [[ -f "$PKI/ca.crt" && -f "$CONF/super-admin.conf" && -f "$CONF/kube-proxy.conf" && -f "$CONF/kube-router.conf" ]]; then
    return
  fi
  # kubeadm's phases make the same PKI and kubeconfigs as a kubeadm cluster: cluster CA,
  # etcd CA, front-proxy CA and client (aggregation layer), service-account key pair.
  log "making PKI and kubeconfigs (kubeadm init phase certs/kubeconfig)"
  {
    "$BIN/kubeadm" init phase certs all --config "$CONF/kubeadm.yaml"
    "$BIN/kubeadm" init phase kubeconfig all --config "$CONF/kubeadm.yaml" --kubeconfig-dir "$CONF"
  } >>"$LOGS/kubeadm.log" 2>&1
  # kube-proxy gets a client certificate for the user the built-in system:node-proxier role
  # is bound to (kubeadm would give it a service-account token instead).
  "$BIN/kubeadm" kubeconfig user --config "$CONF/kubeadm.yaml" --client-name system:kube-proxy \
    >"$CONF/kube-proxy.conf.tmp" 2>>"$LOGS/kubeadm.log"
  mv "$CONF/kube-proxy.conf.tmp" "$CONF/kube-proxy.conf"
  # kube-router: a user of its own, given read access by kube_router_rbac.
  "$BIN/kubeadm" kubeconfig user --config "$CONF/kubeadm.yaml" --client-name system:kube-router \
    >"$CONF/kube-router.conf.tmp" 2>>"$LOGS/kubeadm.log"
  mv "$CONF/kube-router.conf.tmp" "$CONF/kube-router.conf"
}

# --- daemons ------------------------------------------------------------------------------

start_containerd() {
  mkdir -p "$RUN/containerd"
  # libcni caches plugin results in /var/lib/cni/results whatever the runtime's config says,
  # and containerd 1.6 puts its shims' sockets in /run/containerd/s whatever its state dir.
  [[ -d /var/lib/cni || -f "$RUN/varlibcni.created" ]] || : >"$RUN/varlibcni.created"
  [[ -d /run/containerd || -f "$RUN/runcontainerd.created" ]] || : >"$RUN/runcontainerd.created"
  start containerd containerd --config "$CONF/containerd.toml"
  wait_for 60 containerd ctr --address "$SOCK" version
  import_builtin_images
}

start_etcd() {
  # --unsafe-no-fsync: a throw-away test store on a disk shared with builds; fsync stalls
  # there make the apiserver time out, and no data here needs to survive a crash.
  start etcd "$BIN/etcd" --name "$NODE_NAME" --data-dir "$STATE/etcd" \
    --listen-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "https://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "$NODE_NAME=https://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "http://127.0.0.1:$ETCD_METRICS_PORT" \
    --cert-file "$PKI/etcd/server.crt" --key-file "$PKI/etcd/server.key" \
    --trusted-ca-file "$PKI/etcd/ca.crt" --client-cert-auth \
    --peer-cert-file "$PKI/etcd/peer.crt" --peer-key-file "$PKI/etcd/peer.key" \
    --peer-trusted-ca-file "$PKI/etcd/ca.crt" --peer-client-cert-auth \
    --snapshot-count 10000 --unsafe-no-fsync
  wait_for 60 etcd curl -fsS "http://127.0.0.1:$ETCD_METRICS_PORT/health"
}

start_apiserver() {
  # The flags of a kubeadm control plane, with the aggregation layer (front-proxy client
  # and request-header CA) that KEDA's external-metrics APIService needs.
  start kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address "$BRIDGE_IP" --bind-address "$BRIDGE_IP" --secure-port "$APISERVER_PORT" \
    --allow-privileged=true \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --etcd-servers "https://127.0.0.1:$ETCD_CLIENT_PORT" --etcd-cafile "$PKI/etcd/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-username-headers X-Remote-User \
    --enable-aggregator-routing=true \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR"
  wait_for 180 kube-apiserver kc get --raw /readyz
  # kubeadm's admin.conf (and the apiserver's kubelet client) are in the group
  # kubeadm:cluster-admins, which kubeadm init binds to cluster-admin; so do we.
  kc create clusterrolebinding kubeadm:cluster-admins --clusterrole cluster-admin \
    --group kubeadm:cluster-admins --dry-run=client -o yaml | kc apply -f - >/dev/null
}

start_controllers() {
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$CONF/controller-manager.conf" \
    --authentication-kubeconfig "$CONF/controller-manager.conf" \
    --authorization-kubeconfig "$CONF/controller-manager.conf" \
    --bind-address 127.0.0.1 \
    --client-ca-file "$PKI/ca.crt" --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --cluster-name "$NODE_NAME" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --use-service-account-credentials=true \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$CONF/scheduler.conf" \
    --authentication-kubeconfig "$CONF/scheduler.conf" \
    --authorization-kubeconfig "$CONF/scheduler.conf" \
    --bind-address 127.0.0.1 --leader-elect=false
  wait_for 120 kube-controller-manager curl -fsSk https://127.0.0.1:10257/healthz
  wait_for 120 kube-scheduler curl -fsSk https://127.0.0.1:10259/healthz
}

start_node() {
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  # Paths the kubelet hard-codes: note which ones we create, for `down` to remove them.
  [[ -d /var/log/containers || -f "$RUN/varlogcontainers.created" ]] || : >"$RUN/varlogcontainers.created"
  [[ -d /var/lib/kubelet || -f "$RUN/varlibkubelet.created" ]] || : >"$RUN/varlibkubelet.created"
  start kubelet "$BIN/kubelet" --config "$CONF/kubelet.yaml" --kubeconfig "$CONF/kubelet.conf" \
    --hostname-override "$NODE_NAME" --node-ip "$BRIDGE_IP" --root-dir "$STATE/kubelet" \
    --cert-dir "$STATE/kubelet/pki"
  start kube-proxy "$BIN/kube-proxy" --config "$CONF/kube-proxy.yaml"
  wait_for 120 "kube-proxy's first sync" iptables -w -C FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
  firewall_first
  wait_for 180 "node $NODE_NAME Ready" kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  start_kube_router
}

# The read-only part of upstream's ClusterRole kube-router (daemonset/kube-router-firewall-
# daemonset.yaml): its informers for these must sync before it enforces anything. The
# routing and load-balancer controllers' leases and services/status writes are left out.
kube_router_rbac() {
  cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: fib-rpc-e2e:kube-router
rules:
  - apiGroups: [""]
    resources: [namespaces, pods, services, nodes, endpoints]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: fib-rpc-e2e:kube-router
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: fib-rpc-e2e:kube-router
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: system:kube-router
EOF
}

# kube-router's firewall controller only (no routing, no service proxy, no CNI config): it
# turns NetworkPolicies into iptables chains and ipsets for the pods of this node. It reads
# the node's address from the Node object, so it starts once the node is registered.
start_kube_router() {
  kube_router_rbac | kc apply -f - >/dev/null
  start kube-router "$BIN/kube-router" --kubeconfig "$CONF/kube-router.conf" \
    --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --service-cluster-ip-range "$SERVICE_CIDR" --health-port 20244 --metrics-port 0
  wait_for 120 "kube-router's firewall chains" iptables -w -S KUBE-ROUTER-FORWARD
}

# --- add-ons ------------------------------------------------------------------------------

# CoreDNS in the shape kubeadm deploys it (cmd/kubeadm/app/phases/addons/dns), one replica,
# serving only the cluster's zones: without a forwarder nothing is asked outside.
coredns_manifest() {
  cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
- kind: ServiceAccount
  name: coredns
  namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    $CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
        errors
        health {
           lameduck 5s
        }
        ready
        kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
           pods insecure
           fallthrough in-addr.arpa ip6.arpa
           ttl 30
        }
        prometheus :9153
        cache 30 {
           disable success $CLUSTER_DOMAIN
           disable denial $CLUSTER_DOMAIN
        }
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  replicas: 1
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      priorityClassName: system-cluster-critical
      serviceAccountName: coredns
      tolerations:
      - key: CriticalAddonsOnly
        operator: Exists
      - key: node-role.kubernetes.io/control-plane
        effect: NoSchedule
      nodeSelector:
        kubernetes.io/os: linux
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        resources:
          limits:
            memory: 170Mi
          requests:
            cpu: 100m
            memory: 70Mi
        args: [ "-conf", "/etc/coredns/Corefile" ]
        volumeMounts:
        - name: config-volume
          mountPath: /etc/coredns
          readOnly: true
        ports:
        - containerPort: 53
          name: dns
          protocol: UDP
        - containerPort: 53
          name: dns-tcp
          protocol: TCP
        - containerPort: 9153
          name: metrics
          protocol: TCP
        - containerPort: 8080
          name: liveness-probe
          protocol: TCP
        - containerPort: 8181
          name: readiness-probe
          protocol: TCP
        livenessProbe:
          httpGet:
            path: /health
            port: liveness-probe
            scheme: HTTP
          initialDelaySeconds: 60
          timeoutSeconds: 5
          successThreshold: 1
          failureThreshold: 5
        readinessProbe:
          httpGet:
            path: /ready
            port: readiness-probe
            scheme: HTTP
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            add:
            - NET_BIND_SERVICE
            drop:
            - ALL
          readOnlyRootFilesystem: true
      dnsPolicy: Default
      volumes:
        - name: config-volume
          configMap:
            name: coredns
            items:
            - key: Corefile
              path: Corefile
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
    kubernetes.io/cluster-service: "true"
    kubernetes.io/name: "CoreDNS"
  annotations:
    prometheus.io/port: "9153"
    prometheus.io/scrape: "true"
spec:
  clusterIP: $DNS_IP
  ports:
  - name: dns
    port: 53
    protocol: UDP
    targetPort: 53
  - name: dns-tcp
    port: 53
    protocol: TCP
    targetPort: 53
  - name: metrics
    port: 9153
    protocol: TCP
    targetPort: 9153
  selector:
    k8s-app: kube-dns
EOF
}

# The default StorageClass: statically provisioned `local` volumes, bound when the pod is
# scheduled. Unlike hostPath PVs, the kubelet applies fsGroup to local volumes.
storage_manifest() {
  cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
}

pv_manifest() { # pv_manifest NAME
  cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $1
  labels:
    fib-rpc-e2e/local-pv: "true"
spec:
  capacity:
    storage: $PV_SIZE
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  volumeMode: Filesystem
  local:
    path: $PV_DIR/$1
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - key: kubernetes.io/hostname
          operator: In
          values: [$NODE_NAME]
EOF
}

ensure_pvs() {
  local n=${1:-$PV_COUNT} i name
  for ((i = 1; i <= n; i++)); do
    name=$(printf 'local-pv-%02d' "$i")
    mkdir -p "$PV_DIR/$name"
    # apply, not create: an Available volume takes a new PV_SIZE.
    pv_manifest "$name" | kc apply -f - >/dev/null
  done
}

# A released local volume is emptied and offered again (what sig-storage's local static
# provisioner does), so that repeated e2e runs never run out of volumes.
pv_recycler() {
  local name path
  while sleep 5; do
    while read -r name path; do
      [[ -n "$name" && "$path" == "$PV_DIR/"* ]] || continue
      log "recycling released volume $name"
      find "$path" -mindepth 1 -delete
      # Back to a fresh directory: the last pod's fsGroup must not leak to the next claim.
      chown 0:0 "$path"
      chmod 0755 "$path"
      kc patch pv "$name" --type json -p '[{"op":"remove","path":"/spec/claimRef"}]' >/dev/null || true
    done < <(kc get pv -l fib-rpc-e2e/local-pv=true -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name} {.spec.local.path}{"\n"}{end}' 2>/dev/null || true)
  done
}

addons() {
  log "applying CoreDNS, the local StorageClass and $PV_COUNT local volumes"
  coredns_manifest | kc apply -f - >/dev/null
  storage_manifest | kc apply -f - >/dev/null
  ensure_pvs "$PV_COUNT"
  # The state path on its command line marks the loop as ours for `alive` and `down`.
  start pv-recycler bash "$HERE/cluster.sh" _pv-recycler "$STATE"
  # A ready endpoint, not the Deployment's Available condition: with one replica and
  # maxUnavailable 1 a Deployment is "available" before its pod answers.
  wait_for 180 "CoreDNS ready behind $DNS_IP" smoke_endpoints kube-system kube-dns 1
}

# A pod resolves the API server's name through CoreDNS and calls it through the
# `kubernetes` Service: pod network, service routing, DNS and service accounts work.
smoke_dns() {
  local pod=fib-rpc-e2e-dnscheck
  wait_for 60 "service account default/default" kc -n default get serviceaccount default
  kc -n default delete pod "$pod" --ignore-not-found --wait=true >/dev/null
  kc -n default apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $pod
spec:
  restartPolicy: Never
  automountServiceAccountToken: true
  containers:
  - name: probe
    image: $PROBE_IMAGE
    imagePullPolicy: Never
    command: [/probe, dns, kubernetes.default, kubernetes.default.svc.$CLUSTER_DOMAIN]
EOF
  if ! wait_for 120 "a pod resolving kubernetes.default through CoreDNS" \
    kc -n default wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$pod" --timeout=5s; then
    kc -n default describe pod "$pod" >&2 || true
    kc -n default logs "$pod" >&2 || true
    return 1
  fi
  kc -n default logs "$pod" >&2
  kc -n default delete pod "$pod" --wait=false >/dev/null
}

# The acceptance checks of the cluster itself, in a namespace that enforces the restricted
# Pod Security level (as the chart's e2e does): two pause pods behind a ClusterIP Service,
# an HTTP Service answered through kube-proxy, DNS, the API through 10.96.0.1, a local PV
# with fsGroup, an aggregated API served by a pod. Leaves nothing behind.
smoke() {
  local ns=fib-rpc-e2e-smoke t0=$SECONDS out c
  alive kube-apiserver || die "the cluster is not up"
  kc delete apiservice v1.smoke.fib-rpc.local --ignore-not-found >/dev/null
  kc delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
  kc create namespace "$ns" >/dev/null
  kc label namespace "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
  kc -n "$ns" apply -f - >/dev/null <<EOF
$(smoke_deployment pause "$PAUSE_IMAGE" '[]')
---
$(smoke_service pause 80)
---
$(smoke_deployment web "$PROBE_IMAGE" '[/probe, serve, ":8080"]')
---
$(smoke_service web 8080)
---
$(smoke_deployment aggr "$PROBE_IMAGE" '[/probe, apiserver, ":8443"]')
---
$(smoke_service aggr 8443 443)
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
EOF
  wait_for 120 "2 pause pods behind a ClusterIP Service" smoke_endpoints "$ns" pause 2
  wait_for 120 "2 web pods behind a ClusterIP Service" smoke_endpoints "$ns" web 2
  wait_for 120 "2 aggregated API server pods" smoke_endpoints "$ns" aggr 2
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    fsGroup: 2000
    seccompProfile: {type: RuntimeDefault}
  initContainers:
$(smoke_container dns "[/probe, dns, kubernetes.default, kubernetes.default.svc.$CLUSTER_DOMAIN, web, pause.$ns.svc]")
$(smoke_container api '[/probe, api, "https://10.96.0.1/version"]')
$(smoke_container web "[/probe, get, \"http://web.$ns.svc.$CLUSTER_DOMAIN/\"]")
$(smoke_container isolated "[/probe, blocked, \"$(gateway):53\", \"$(gateway):80\", \"1.1.1.1:53\", \"8.8.8.8:443\"]")
$(smoke_container nodns '[/probe, nodns, example.com, debian.org.]')
$(smoke_container write '[/probe, write, /data/written]')
  containers:
$(smoke_container stat '[/probe, stat, /data, /data/written]')
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: data
EOF
  if ! wait_for 180 "client pod: DNS, API via 10.96.0.1, HTTP via a Service, no way out, a local PV" \
    kc -n "$ns" wait --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout=5s; then
    kc -n "$ns" describe pod client >&2
    return 1
  fi
  for c in dns api web isolated nodns write stat; do
    printf -- '--- %s\n' "$c" >&2
    kc -n "$ns" logs client -c "$c" >&2
  done
  out=$(kc -n "$ns" logs client -c stat)
  grep -q '^/data mode=.* gid=2000$' <<<"$out" || die "fsGroup 2000 was not applied to the local volume: $out"
  grep -q '^/data/written .* gid=2000$' <<<"$out" || die "a file written to the local volume is not group 2000: $out"
  log "fsGroup applies to the local volume: ok"
  # An aggregated API served from a pod, the path KEDA's external metrics take: the
  # aggregator must proxy with its front-proxy client certificate and X-Remote-User.
  kc apply -f - >/dev/null <<EOF
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1.smoke.fib-rpc.local
spec:
  group: smoke.fib-rpc.local
  version: v1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service:
    name: aggr
    namespace: $ns
    port: 443
EOF
  wait_for 120 "aggregated APIService v1.smoke.fib-rpc.local Available" \
    kc wait --for=condition=Available apiservice/v1.smoke.fib-rpc.local --timeout=5s
  kc get apiservices v1.smoke.fib-rpc.local >&2
  out=$(kc get --raw /apis/smoke.fib-rpc.local/v1/whoami)
  printf '%s\n' "$out" >&2
  if ! grep -q '"clientCertificates":\["front-proxy-client"\]' <<<"$out" ||
    ! grep -q '"user":"kubernetes-super-admin"' <<<"$out"; then
    die "the aggregator did not proxy with the front-proxy certificate and the caller's identity"
  fi
  grep -q '"smoke.fib-rpc.local"' <<<"$(kc get --raw /apis)" || die "/apis does not list the aggregated group"
  log "aggregation layer (APIService served by a pod, front-proxy identity): ok"
  kc delete apiservice v1.smoke.fib-rpc.local >/dev/null
  kc delete namespace "$ns" --wait=true >/dev/null
  log "smoke passed in $((SECONDS - t0))s"
}

# gateway: the host's next hop to the outside, the first thing a pod must not reach; a
# TEST-NET-1 address when the host has no default route.
gateway() {
  local gw
  gw=$(ip -4 route show default | awk '{print $3; exit}')
  printf '%s\n' "${gw:-192.0.2.1}"
}

smoke_endpoints() { # smoke_endpoints NS SERVICE N: the Service has N ready endpoints
  local n
  n=$(kc -n "$1" get endpointslices -l "kubernetes.io/service-name=$2" \
    -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}x{end}')
  [[ ${#n} -eq $3 ]]
}

smoke_deployment() { # smoke_deployment NAME IMAGE COMMAND-JSON
  local command=''
  [[ $3 == '[]' ]] || command="command: $3"
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $1
spec:
  replicas: 2
  selector:
    matchLabels: {app: $1}
  template:
    metadata:
      labels: {app: $1}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: $1
        image: $2
        imagePullPolicy: Never
        $command
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
EOF
}

smoke_service() { # smoke_service NAME TARGET-PORT [PORT]
  cat <<EOF
apiVersion: v1
kind: Service
metadata:
  name: $1
spec:
  type: ClusterIP
  selector: {app: $1}
  ports:
  - port: ${3:-80}
    targetPort: $2
EOF
}

smoke_container() { # smoke_container NAME COMMAND-JSON (indented for a pod's container list)
  cat <<EOF
  - name: $1
    image: $PROBE_IMAGE
    imagePullPolicy: Never
    command: $2
    volumeMounts: [{name: data, mountPath: /data}]
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
EOF
}

# --- images -------------------------------------------------------------------------------

# import_image FILE NAME: FILE is an OCI archive (buildah/skopeo `oci-archive:`) or a docker
# archive (`docker-archive:`, `docker save`). The image is stored as NAME, normalized the way
# the kubelet normalizes a pod's image (`foo` -> docker.io/library/foo:latest), so a pod
# that says `image: NAME` with imagePullPolicy Never or IfNotPresent runs it.
# trust_registry HOST:PORT CA: a hosts.toml for that registry (pull and resolve over TLS with
# that CA). Loopback only: nothing of the cluster pulls from off the machine.
trust_registry() {
  local host=$1 ca=$2
  [[ $host =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "trust-registry: $host is not a registry on 127.0.0.1"
  [[ -f $ca ]] || die "trust-registry: no CA file $ca"
  mkdir -p "$CERTS_D/$host"
  install -m 0644 "$ca" "$CERTS_D/$host/ca.crt"
  put "$CERTS_D/$host/hosts.toml" <<EOF
server = "https://$host"

[host."https://$host"]
  capabilities = ["pull", "resolve"]
  ca = "$CERTS_D/$host/ca.crt"
EOF
  log "containerd pulls from https://$host with CA $ca"
}

import_image() {
  local file=$1 name=$2 full tmp digest
  [[ -f "$file" ]] || die "no such archive: $file"
  full=$(normalize_ref "$name")
  [[ -S "$SOCK" ]] || die "the cluster's containerd is not running (cluster.sh up)"
  # The archive's own ref name may be a bare tag or another name: import under a unique
  # temporary name with the manifest digest, then tag it as the wanted name.
  tmp="import.fib-rpc-e2e.local/tmp-$$"
  # (A docker archive's own RepoTags are created as well; ctr unpacks for overlayfs.)
  ctr_ images import --base-name "$tmp" --digests --snapshotter overlayfs "$file" >/dev/null
  # (awk reads all of ctr's output: an early exit would SIGPIPE it and fail the pipeline.)
  digest=$(ctr_ images ls -q | awk -v p="$tmp@" '!d && index($0, p) == 1 { d = substr($0, length(p) + 1) } END { print d }')
  [[ -n "$digest" ]] || die "$file: no image found in the archive (is it an OCI or docker archive?)"
  ctr_ images tag --force "$tmp@$digest" "$full" >/dev/null
  ctr_ images ls -q | awk -v p="$tmp" 'index($0, p "@") == 1 || index($0, p ":") == 1' |
    xargs -r ctr --address "$SOCK" --namespace k8s.io images rm >/dev/null
  log "imported $file as $full ($digest)"
}

normalize_ref() {
  local ref=$1 first=${1%%/*}
  if [[ $ref != */* ]]; then
    ref="docker.io/library/$ref"
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    ref="docker.io/$ref"
  fi
  # No tag and no digest after the last slash: latest.
  [[ ${ref##*/} == *:* || $ref == *@* ]] || ref="$ref:latest"
  printf '%s\n' "$ref"
}

import_builtin_images() {
  local have file name digest
  have=$(ctr_ images ls | awk 'NR > 1 { print $1, $3 }')
  while read -r file name; do
    [[ -f "$IMAGES/$file" ]] || die "$IMAGES/$file missing: run bash test/e2e/local/binaries.sh"
    # Re-import when binaries.sh rebuilt the archive (same name, another manifest).
    digest=$(tar -xOf "$IMAGES/$file" index.json | jq -r '.manifests[0].digest')
    grep -qxF "$name $digest" <<<"$have" || import_image "$IMAGES/$file" "$name"
  done <<EOF
pause.tar $PAUSE_IMAGE
coredns.tar $COREDNS_IMAGE
probe.tar $PROBE_IMAGE
EOF
}

# --- commands -----------------------------------------------------------------------------

up() {
  check_host
  local t0=$SECONDS
  mkdir -p "$STATE" "$RUN" "$LOGS" "$PIDS"
  net_up
  write_configs
  pki
  start_containerd
  start_etcd
  start_apiserver
  start_controllers
  start_node
  addons
  smoke_dns
  write_kubeconfig
  log "up in $((SECONDS - t0))s"
  printf 'export KUBECONFIG=%s\n' "$KUBECONFIG_OUT"
}

write_kubeconfig() {
  mkdir -p "$(dirname "$KUBECONFIG_OUT")"
  install -m 0600 "$CONF/admin.conf" "$KUBECONFIG_OUT"
  # Others put this kubectl on PATH; the copy in bin/ is built by binaries.sh.
}

down() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  local i pids name id ids=()
  # Our sandboxes' and containers' ids, taken before their state goes: they name what
  # containerd and libcni leave outside our directories.
  for id in "$STATE"/containerd/io.containerd.grpc.v1.cri/{sandboxes,containers}/* \
    "$RUN"/containerd/io.containerd.grpc.v1.cri/sandboxes/* "$RUN"/containerd/io.containerd.runtime.v2.task/k8s.io/*; do
    id=${id##*/}
    [[ $id =~ ^[0-9a-f]{64}$ ]] && ids+=("$id")
  done
  # Everything goes, so no daemon needs a graceful shutdown (the apiserver's takes ~10 s):
  # the kubelet first, so that nothing restarts containers while they are being killed.
  pids=()
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    name=${DAEMONS[i]}
    if alive "$name"; then
      pids+=("$(<"$PIDS/$name.pid")")
      log "stopping $name (pid ${pids[-1]})"
      kill -TERM "${pids[-1]}" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < 30; i++)); do
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 0.1
  done
  # Whatever is left or lost its pid file: shims, containers, a daemon of a crashed `up`.
  for ((i = 0; i < 20; i++)); do
    mapfile -t pids < <(our_pids)
    ((${#pids[@]})) || break
    ((i % 5)) || log "killing ${#pids[@]} processes: ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    sleep 0.5
  done
  ((${#pids[@]} == 0)) || log "warning: processes would not die: ${pids[*]}"
  log "unmounting"
  unmount_all
  cleanup_network
  cleanup_cgroups
  # Symlinks the kubelet made for our pods in the one directory it does not let us choose.
  if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete
    [[ ! -f "$RUN/varlogcontainers.created" ]] || rmdir /var/log/containers 2>/dev/null || true
  fi
  # libcni's result cache: ours are named after our network, or after a sandbox of ours
  # for the loopback network the runtime adds to every pod.
  rm -f /var/lib/cni/results/fibrpc-*
  for id in "${ids[@]}"; do
    rm -f /var/lib/cni/results/*-"$id"-*
    # A killed shim leaves its socket, named sha256(<containerd address>/<namespace>/<id>).
    rm -f "/run/containerd/s/$(printf '%s' "$SOCK/k8s.io/$id" | sha256sum | cut -c1-64)"
    # runc's state of a cluster started before runc's root moved to $RUN.
    rm -rf "/run/containerd/runc/k8s.io/$id"
  done
  [[ ! -f "$RUN/varlibcni.created" ]] || rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  [[ ! -f "$RUN/runcontainerd.created" ]] ||
    rmdir /run/containerd/s /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null || true
  # The kubelet's device-plugin socket and checkpoint live in a path it hard-codes.
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
  [[ ! -f "$RUN/varlibkubelet.created" ]] ||
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet/pki /var/lib/kubelet 2>/dev/null || true
  restore_sysctls
  # Never delete through a mount that would not go away (a pod's bind of a host path).
  if awk -v a="$STATE" -v b="$RUN" '$2 ~ "^("a"|"b")(/|$)" {found=1} END {exit !found}' /proc/self/mounts; then
    die "mounts under $STATE or $RUN remain; not deleting them: $(grep -E "$STATE|$RUN" /proc/self/mounts | cut -d' ' -f2 | tr '\n' ' ')"
  fi
  rm -rf --one-file-system "$STATE" "$RUN" "$KUBECONFIG_OUT"
  log "down: nothing of the cluster is left"
}

# Pod volumes, container root filesystems, /dev/shm of sandboxes and the network namespace
# files all live under our two directories; deepest mount first.
unmount_all() {
  local m i mounts
  for i in 1 2 3; do
    mapfile -t mounts < <(awk -v a="$STATE" -v b="$RUN" '$2 ~ "^("a"|"b")(/|$)" {print $2}' /proc/self/mounts | sort -r | uniq)
    ((${#mounts[@]})) || return 0
    for m in "${mounts[@]}"; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
}

cleanup_network() {
  local l
  # Pod veths die with their namespaces; any survivor is still attached to the bridge.
  for l in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$l" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  cleanup_iptables iptables
  cleanup_iptables ip6tables
  # kube-router's ipsets, free once no rule refers to them.
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-(SRC|DST)-'); do
    ipset destroy "$set" 2>/dev/null || log "warning: could not destroy ipset $set"
  done
}

# cleanup_iptables iptables|ip6tables: delete every rule that jumps to, and every chain
# named, FIBRPC-* (ours), KUBE-* (kube-proxy, kubelet) or CNI-* (portmap), in one
# iptables-restore --noflush per table so no other rule of the host is touched.
cleanup_iptables() {
  local cmd=$1 table rules
  for table in filter nat mangle raw; do
    rules=$("$cmd-save" -t "$table" 2>/dev/null | awk '
      /^:(FIBRPC|KUBE|CNI)-/ { chains[++n] = substr($1, 2) }
      /^-A / && (/ -j (FIBRPC|KUBE|CNI)-/ || / -g (FIBRPC|KUBE|CNI)-/) && $2 !~ /^(FIBRPC|KUBE|CNI)-/ {
        sub(/^-A /, "-D "); dels[++m] = $0 }
      END {
        for (i = 1; i <= m; i++) print dels[i]
        for (i = 1; i <= n; i++) print "-F " chains[i]
        for (i = 1; i <= n; i++) print "-X " chains[i]
      }') || continue
    [[ -n "$rules" ]] || continue
    printf '*%s\n%s\nCOMMIT\n' "$table" "$rules" | "$cmd-restore" -w --noflush ||
      log "warning: could not remove all of $cmd $table chains"
  done
}

# The kubelet's QoS and pod cgroups, in every v1 hierarchy and the v2 mount beside them.
cleanup_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods* /sys/fs/cgroup/kubepods*; do
    [[ -d $d ]] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

restore_sysctls() {
  [[ ! -f "$RUN/ip_forward.orig" ]] || sysctl -qw "net.ipv4.ip_forward=$(<"$RUN/ip_forward.orig")"
  [[ ! -f "$RUN/bridge-nf.orig" ]] || sysctl -qw "net.bridge.bridge-nf-call-iptables=$(<"$RUN/bridge-nf.orig")" 2>/dev/null || true
}

status() {
  local name
  for name in "${DAEMONS[@]}"; do
    if alive "$name"; then
      printf '%-24s running (pid %s)\n' "$name" "$(<"$PIDS/$name.pid")"
    else
      printf '%-24s stopped\n' "$name"
    fi
  done
  if alive kube-apiserver; then
    kc get nodes -o wide
    kc get pods -A -o wide
  fi
}

main() {
  local cmd=${1:-}
  shift || true
  # One up/down/pv at a time (several engineers share the cluster): lock this script itself,
  # which leaves no lock file behind.
  case "$cmd" in
    up | down | pv)
      exec 9<"${BASH_SOURCE[0]}"
      flock -w 900 9 || die "another cluster.sh up/down is still running"
      ;;
  esac
  case "$cmd" in
    up) up ;;
    down) down ;;
    status) status ;;
    kubeconfig)
      [[ -f "$KUBECONFIG_OUT" ]] || die "no kubeconfig: the cluster is not up"
      printf '%s\n' "$KUBECONFIG_OUT"
      ;;
    import)
      (($# == 2)) || die "usage: cluster.sh import FILE.tar NAME"
      import_image "$1" "$2"
      ;;
    pv)
      alive kube-apiserver || die "the cluster is not up"
      ensure_pvs "${1:-$PV_COUNT}"
      kc get pv -l fib-rpc-e2e/local-pv=true
      ;;
    smoke) smoke ;;
    trust-registry)
      (($# == 2)) || die "usage: cluster.sh trust-registry 127.0.0.1:PORT CA.crt"
      trust_registry "$1" "$2"
      ;;
    _pv-recycler) pv_recycler ;;
    *)
      sed -n '7,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
      exit 2
      ;;
  esac
}

main "$@"
