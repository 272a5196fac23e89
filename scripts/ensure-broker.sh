#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672: uses a running one as it is, else
# starts the machine's rabbitmq-server, installing it with apt-get when it is missing.
#
# It never changes a broker: no config file, no plugin, no restart. What some suites need
# beyond a plain broker (a mutual-TLS listener, rabbitmq_prometheus) is on a node of their
# own that they start and stop themselves (scripts/test-broker.sh), on other ports.
# Idempotent.
set -euo pipefail

host=127.0.0.1
port=5672

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

# BROKER=rabbitmq4 (4.0) or rabbitmq43 (4.3): the RabbitMQ 4 node of scripts/rabbitmq4.sh of
# that series instead, on its own ports (the machine's broker is left alone).
case ${BROKER:-} in
'') ;;
rabbitmq4 | rabbitmq43)
  series=4.0
  [ "$BROKER" = rabbitmq4 ] || series=4.3
  echo "broker: RabbitMQ $series (Debian's package, a stand-in for the official image) at $(RABBITMQ4_SERIES=$series bash "$(dirname "$0")/rabbitmq4.sh" up)"
  exit 0
  ;;
*)
  echo "broker: BROKER=$BROKER: set BROKER=rabbitmq4 or BROKER=rabbitmq43, or unset it for the machine's broker" >&2
  exit 2
  ;;
esac

if reachable "$port"; then
  echo "broker: reachable on $host:$port"
  exit 0
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "broker: rabbitmq-server not installed, installing it with apt-get"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq rabbitmq-server >/dev/null
fi

echo "broker: starting rabbitmq-server"
as_root rabbitmq-server -detached || true
if ! wait_for "$port" 120; then
  echo "broker: RabbitMQ did not come up on $host:$port within 120 s" >&2
  exit 1
fi
echo "broker: up on $host:$port"
