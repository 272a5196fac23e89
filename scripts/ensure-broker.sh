#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672: uses a running one, else starts
# the local rabbitmq-server, installing it with apt-get when it is missing.
set -euo pipefail

host=127.0.0.1
port=5672

reachable() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if reachable; then
  echo "broker: reachable on $host:$port"
  exit 0
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "broker: rabbitmq-server not installed, installing it with apt-get"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq rabbitmq-server >/dev/null
fi

echo "broker: starting rabbitmq-server"
rabbitmq-server -detached || true
for _ in $(seq 1 120); do
  if reachable; then
    echo "broker: up on $host:$port"
    exit 0
  fi
  sleep 1
done
echo "broker: RabbitMQ did not come up on $host:$port within 120 s" >&2
exit 1
