#!/usr/bin/env bash
# The newcomer's tour: a server in the background, one call, a short load, then a clean stop.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
export HTTP_PORT="${HTTP_PORT:-8080}"

node --import ./dist/telemetry.js dist/server/main.js &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

echo "--- fib-rpc-client 30"
node --import ./dist/telemetry.js dist/client/main.js 30
echo "--- fib-rpc-client --json 1000"
node --import ./dist/telemetry.js dist/client/main.js --json 1000 | cut -c1-160
echo "--- fib-rpc-client --load --concurrency 64 --duration 3s"
node --import ./dist/telemetry.js dist/client/main.js --load --concurrency 64 --duration 3s
