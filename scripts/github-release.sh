#!/usr/bin/env bash
# Creates the GitHub Release of package.json's version, after `make release` has pushed its
# images and chart: tag vVERSION (which must exist: --verify-tag, so nothing creates a tag
# here), its CHANGELOG section as the text (scripts/changelog-section.sh), and the rendered
# plain manifests that `make release` wrote, RELEASE_DIR/fib-rpc-k8s-VERSION.yaml, attached.
# A version with a pre-release part (0.3.0-rc.1) is marked as a pre-release.
#
# With DRY_RUN=true it checks the same things and prints the command and the text instead of
# running it. Needs the gh CLI and GH_TOKEN (the workflow's token, contents: write).
#
# VERSION_ROOT points it at another checkout (the test runs it on a scratch copy).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${VERSION_ROOT:-$(cd "$here/.." && pwd)}
version=$(node -p 'require(process.argv[1]).version' "$root/package.json")
release_dir=${RELEASE_DIR:-"$root/release"}
asset="$release_dir/fib-rpc-k8s-$version.yaml"

[[ -s $asset ]] || { echo "github-release: $asset is missing or empty: make release writes it" >&2; exit 1; }

notes=$(mktemp)
trap 'rm -f "$notes"' EXIT
bash "$here/changelog-section.sh" "$version" "$root/CHANGELOG.md" >"$notes"

args=(release create "v$version" --verify-tag --title "fib-rpc $version" --notes-file "$notes")
[[ $version != *-* ]] || args+=(--prerelease)
args+=("$asset#fib-rpc-k8s-$version.yaml (plain manifests, images by digest)")

if [[ ${DRY_RUN:-false} == true ]]; then
  echo "github-release: dry run; would run: gh ${args[*]}"
  echo "github-release: with this text:"
  cat "$notes"
  exit 0
fi
gh "${args[@]}"
