#!/usr/bin/env bash
# Builds the Jaeger v2 all-in-one binary (cmd/jaeger) that the tracing tests export to and
# query, into .tools/bin/jaeger. Jaeger's Go module carries a replace directive, so
# `go install module@version` refuses it; the module is downloaded from the Go module proxy
# and built in a scratch copy instead. Idempotent: a binary at the pinned version is kept.
# The Go module version v1.x is the same release as the Jaeger v2 images of that date.
set -euo pipefail

JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_VERSION=v1.76.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/.tools/bin"
STAMP="$ROOT/.tools/versions/jaeger"
mkdir -p "$BIN" "$(dirname "$STAMP")"

if [[ -x "$BIN/jaeger" && -f "$STAMP" && "$(cat "$STAMP")" == "$JAEGER_VERSION" ]]; then
  echo "install-jaeger: jaeger $JAEGER_VERSION already built"
  exit 0
fi
command -v go >/dev/null || { echo "install-jaeger: go is required" >&2; exit 1; }

echo "install-jaeger: building jaeger $JAEGER_VERSION (a few minutes the first time)"
dir=$(GOFLAGS=-mod=mod go mod download -json "$JAEGER_MODULE@$JAEGER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -n "$dir" && -d "$dir" ]] || { echo "install-jaeger: could not download $JAEGER_MODULE@$JAEGER_VERSION" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT
cp -r "$dir/." "$scratch/"
chmod -R u+w "$scratch"
(cd "$scratch" && GOFLAGS=-buildvcs=false go build -trimpath -o "$BIN/jaeger" ./cmd/jaeger)
echo "$JAEGER_VERSION" >"$STAMP"
echo "install-jaeger: $("$BIN/jaeger" version 2>/dev/null | head -c 200 || echo built)"
