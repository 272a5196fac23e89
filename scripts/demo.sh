#!/usr/bin/env bash
# The newcomer's tour: a server in the background, one call, a short load, then a clean stop.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
export HTTP_PORT="${HTTP_PORT:-8080}"

node bin/fib-rpc-server.js &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

echo "--- fib-rpc-client 30"
node bin/fib-rpc-client.js 30
echo "--- fib-rpc-client --json 1000"
node bin/fib-rpc-client.js --json 1000 | cut -c1-160
echo "--- fib-rpc-client --load --concurrency 64 --duration 3s"
node bin/fib-rpc-client.js --load --concurrency 64 --duration 3s
