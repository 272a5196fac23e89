#!/usr/bin/env bash
# Writes charts/fib-rpc/README.md with helm-docs from README.md.gotmpl, Chart.yaml and the
# "# --" comments of values.yaml, values in the file's order (the order they are explained in).
# Usage: scripts/chart-docs.sh [CHART_DIR]   (default: charts/fib-rpc; the drift test passes a copy)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART=${1:-"$ROOT/charts/fib-rpc"}
HELM_DOCS=${HELM_DOCS:-}
if [[ -z "$HELM_DOCS" ]]; then
  if [[ -x "$ROOT/.tools/bin/helm-docs" ]]; then HELM_DOCS="$ROOT/.tools/bin/helm-docs"; else HELM_DOCS=helm-docs; fi
fi

"$HELM_DOCS" --log-level warning --chart-search-root "$CHART" \
  --template-files README.md.gotmpl --output-file README.md --sort-values-order file
