#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672: uses a running one, else starts
# the local rabbitmq-server, installing it with apt-get when it is missing.
#
# For a local rabbitmq-server it also makes sure of a mutual-TLS listener on 127.0.0.1:5671
# (the fault suite's TLS test): a marked block in rabbitmq.conf pointing at certificate
# files in $FIB_RPC_BROKER_TLS_DIR, bootstrapped here with a throwaway CA; the test installs
# its own CA and certificates there and reloads them. The plain listener is left as it is.
# Adding the block to a running broker restarts its application once (stop_app/start_app).
# Idempotent. FIB_RPC_BROKER_TLS=0 skips the TLS part.
#
# It also enables rabbitmq_prometheus (metrics on 127.0.0.1:15692), which the monitoring test
# scrapes; enabling a plugin starts it in the running node without a restart.
set -euo pipefail

host=127.0.0.1
port=5672
tls_port=5671
tls_dir=${FIB_RPC_BROKER_TLS_DIR:-/etc/rabbitmq/fib-rpc-tls}
conf=${RABBITMQ_CONFIG_FILE:-/etc/rabbitmq/rabbitmq.conf}
marker='# fib-rpc test suite: TLS listener'

reachable() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

wait_for() {
  for _ in $(seq 1 "$2"); do
    if reachable "$1"; then return 0; fi
    sleep 1
  done
  return 1
}

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
as_root() { "${sudo_cmd[@]}" "$@"; }

tls_wanted() { [ "${FIB_RPC_BROKER_TLS:-1}" != 0 ] && command -v openssl >/dev/null 2>&1; }

# Writes a throwaway CA and a server certificate for localhost/127.0.0.1 unless present.
tls_files() {
  if as_root test -s "$tls_dir/server.pem" && as_root test -s "$tls_dir/server.key" && as_root test -s "$tls_dir/ca.pem"; then
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 3650 \
    -subj "/CN=fib-rpc throwaway test CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tmp/server.ext"
  openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -out "$tmp/server.pem" -days 3650 -extfile "$tmp/server.ext" 2>/dev/null
  local owner=root
  id rabbitmq >/dev/null 2>&1 && owner=rabbitmq
  as_root install -d -o "$owner" -m 0755 "$tls_dir"
  as_root install -o "$owner" -m 0644 "$tmp/ca.pem" "$tmp/server.pem" "$tls_dir/"
  as_root install -o "$owner" -m 0600 "$tmp/server.key" "$tls_dir/"
  rm -rf "$tmp"
}

tls_configured() { as_root test -f "$conf" && as_root grep -qF "$marker" "$conf"; }

# Adds the TLS block to rabbitmq.conf; returns 0 when it was added just now.
tls_config() {
  if tls_configured; then return 1; fi
  tls_files
  as_root mkdir -p "$(dirname "$conf")"
  as_root tee -a "$conf" >/dev/null <<EOF
$marker (scripts/ensure-broker.sh)
listeners.ssl.fibrpc = $host:$tls_port
ssl_options.cacertfile = $tls_dir/ca.pem
ssl_options.certfile = $tls_dir/server.pem
ssl_options.keyfile = $tls_dir/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
EOF
  echo "broker: added a TLS listener on $host:$tls_port to $conf"
  return 0
}

prometheus_plugin() {
  command -v rabbitmq-plugins >/dev/null 2>&1 || return 0
  if as_root rabbitmq-plugins -q is_enabled rabbitmq_prometheus >/dev/null 2>&1; then return 0; fi
  as_root rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null
  echo "broker: enabled rabbitmq_prometheus (metrics on $host:15692)"
}

# BROKER=rabbitmq4: the RabbitMQ 4 node of scripts/rabbitmq4.sh instead, on its own ports
# (the machine's broker is left alone); its TLS listener reads the same certificate folder.
case ${BROKER:-} in
'') ;;
rabbitmq4)
  if tls_wanted; then tls_files; fi
  echo "broker: RabbitMQ 4 (Debian's package, a stand-in for the official image) at $(bash "$(dirname "$0")/rabbitmq4.sh" up)"
  exit 0
  ;;
*)
  echo "broker: BROKER=$BROKER: set BROKER=rabbitmq4, or unset it for the machine's broker" >&2
  exit 2
  ;;
esac

if reachable "$port"; then
  echo "broker: reachable on $host:$port"
  if command -v rabbitmqctl >/dev/null 2>&1 && as_root rabbitmqctl -q status >/dev/null 2>&1; then prometheus_plugin; fi
  if tls_wanted && ! tls_configured && command -v rabbitmqctl >/dev/null 2>&1 &&
    as_root rabbitmqctl -q status >/dev/null 2>&1; then
    if tls_config; then
      echo "broker: restarting the RabbitMQ application to open the TLS listener"
      as_root rabbitmqctl -q stop_app
      as_root rabbitmqctl -q start_app
      wait_for "$port" 60 || {
        echo "broker: not back on $host:$port after the restart" >&2
        exit 1
      }
    fi
    if wait_for "$tls_port" 10; then echo "broker: TLS on $host:$tls_port"; else echo "broker: no TLS listener on $host:$tls_port (see $conf)" >&2; fi
  fi
  exit 0
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "broker: rabbitmq-server not installed, installing it with apt-get"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq rabbitmq-server >/dev/null
fi

if tls_wanted; then tls_config || true; fi

echo "broker: starting rabbitmq-server"
rabbitmq-server -detached || true
if ! wait_for "$port" 120; then
  echo "broker: RabbitMQ did not come up on $host:$port within 120 s" >&2
  exit 1
fi
echo "broker: up on $host:$port"
prometheus_plugin
if tls_wanted; then
  if wait_for "$tls_port" 10; then echo "broker: TLS on $host:$tls_port"; else echo "broker: no TLS listener on $host:$tls_port" >&2; fi
fi
