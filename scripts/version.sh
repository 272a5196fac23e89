#!/usr/bin/env bash
# package.json's `version` is the project's one version. This copies it into the RPC core's
# package (packages/rpc/package.json, the programs' dependency on it and package-lock.json, so
# `npm ci` installs the workspace at that version) and into the chart
# (Chart.yaml `version`, `appVersion` and its own images' tags in artifacthub.io/images); `make images` passes it to the Dockerfile
# (--build-arg VERSION, the image's org.opencontainers.image.version) and `make manifests`
# carries it into k8s/. test/repo/version.test.ts fails when any of them disagrees.
#
#   scripts/version.sh           write package.json's version into Chart.yaml
#   scripts/version.sh --check   only compare; exit 1 when the package or Chart.yaml disagrees
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

# The core package's three places, rewritten as npm writes them (two-space JSON); prints what
# disagreed. With --check it only reports.
package_places() {
  node - "$root" "$version" "$1" <<'JS'
const { readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const [root, version, mode] = process.argv.slice(2);
const core = JSON.parse(readFileSync(join(root, 'packages/rpc/package.json'), 'utf8')).name;
const places = [
  ['packages/rpc/package.json', (j) => j, 'version'],
  ['package.json', (j) => j.dependencies, core],
  ['package-lock.json', (j) => j.packages[''].dependencies, core],
  ['package-lock.json', (j) => j.packages['packages/rpc'], 'version'],
];
const stale = [];
const files = new Map();
for (const [file, at, key] of places) {
  if (!files.has(file)) files.set(file, JSON.parse(readFileSync(join(root, file), 'utf8')));
  const holder = at(files.get(file));
  if (holder?.[key] === undefined) throw new Error(`version: ${file} has no ${key === 'version' ? 'version' : `dependency on ${key}`}`);
  if (holder[key] !== version) {
    stale.push(`${file} ${key === 'version' ? 'version' : key} ${holder[key]}`);
    holder[key] = version;
  }
}
if (mode !== '--check') for (const [file, json] of files) writeFileSync(join(root, file), `${JSON.stringify(json, null, 2)}\n`);
if (stale.length) console.log(stale.join(', '));
JS
}

if [[ ${1:-} == --check ]]; then
  stale_package=$(package_places --check)
  if [[ -n $stale_package ]]; then
    echo "version: package.json says $version, $stale_package: run make version" >&2
    exit 1
  fi
  if [[ $chart_version == "$version" && $app_version == "$version" ]]; then
    echo "version: $version everywhere"
    exit 0
  fi
  echo "version: package.json says $version, Chart.yaml version $chart_version, appVersion $app_version: run make version" >&2
  exit 1
fi

package_places write >/dev/null
# The project's own images in the artifacthub.io/images annotation carry the version as their tag.
sed -i -E "s/^version:.*/version: $version/; s/^appVersion:.*/appVersion: \"$version\"/
  s#^([[:space:]]+image: [^[:space:]]+/fib-rpc-(server|client)):.*#\\1:$version#" "$chart"
echo "version: the core package, Chart.yaml version, appVersion and its images' tags set to $version (run make manifests to carry it into k8s/)"
