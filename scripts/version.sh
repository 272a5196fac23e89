#!/usr/bin/env bash
# package.json's `version` is the project's one version. This copies it into the chart
# (Chart.yaml `version`, `appVersion` and its own images' tags in artifacthub.io/images); `make images` passes it to the Dockerfile
# (--build-arg VERSION, the image's org.opencontainers.image.version) and `make manifests`
# carries it into k8s/. test/repo/version.test.ts fails when any of them disagrees.
#
#   scripts/version.sh           write package.json's version into Chart.yaml
#   scripts/version.sh --check   only compare; exit 1 when Chart.yaml disagrees
#
# VERSION_ROOT points it at another checkout (the test runs it on a scratch copy).
set -euo pipefail

root=${VERSION_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
chart="$root/charts/fib-rpc/Chart.yaml"
version=$(node -p 'require(process.argv[1]).version' "$root/package.json")
# Helm needs SemVer 2 for the chart's version; refuse anything else here, not at package time.
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] ||
  { echo "version: package.json version \"$version\" is not SemVer" >&2; exit 1; }

# Only the two top-level keys (and the image tags below): the rest of Chart.yaml (comments
# included) is left as it is.
chart_version=$(sed -n 's/^version:[[:space:]]*//p' "$chart")
app_version=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$chart")

if [[ ${1:-} == --check ]]; then
  if [[ $chart_version == "$version" && $app_version == "$version" ]]; then
    echo "version: $version everywhere"
    exit 0
  fi
  echo "version: package.json says $version, Chart.yaml version $chart_version, appVersion $app_version: run make version" >&2
  exit 1
fi

# The project's own images in the artifacthub.io/images annotation carry the version as their tag.
sed -i -E "s/^version:.*/version: $version/; s/^appVersion:.*/appVersion: \"$version\"/
  s#^([[:space:]]+image: [^[:space:]]+/fib-rpc-(server|client)):.*#\\1:$version#" "$chart"
echo "version: Chart.yaml version, appVersion and its images' tags set to $version (run make manifests to carry it into k8s/)"
