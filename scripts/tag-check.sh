#!/usr/bin/env bash
# Refuses to release anything but package.json's version from its own tag. `make tag-check`
# runs it first in the release workflow, before anything is built or pushed, so that a tag
# pushed by mistake (v0.2.1 on a commit that still says 0.2.0) fails in seconds with a reason.
#
# The tag is RELEASE_TAG, or the workflow's ref when it is a tag (GITHUB_REF_TYPE=tag,
# GITHUB_REF_NAME). Without a tag only a dry run (DRY_RUN=true) may go on. It also checks that
# Chart.yaml carries the version (scripts/version.sh --check) and that CHANGELOG.md has its
# section, which becomes the GitHub Release's text.
#
# VERSION_ROOT points it at another checkout (the test runs it on a scratch copy).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${VERSION_ROOT:-$(cd "$here/.." && pwd)}
version=$(node -p 'require(process.argv[1]).version' "$root/package.json")

tag=${RELEASE_TAG:-}
if [[ -z $tag && ${GITHUB_REF_TYPE:-} == tag ]]; then tag=${GITHUB_REF_NAME:-}; fi

if [[ -z $tag ]]; then
  if [[ ${DRY_RUN:-false} != true ]]; then
    echo "tag-check: no tag: a release runs on its tag v$version (or set DRY_RUN=true to rehearse)" >&2
    exit 1
  fi
  echo "tag-check: no tag; a dry run of v$version"
elif [[ $tag != "v$version" ]]; then
  echo "tag-check: tag $tag is not v$version (package.json's version): tag the commit that says it, or run make version" >&2
  exit 1
else
  echo "tag-check: tag $tag is package.json's version"
fi

VERSION_ROOT=$root bash "$here/version.sh" --check
bash "$here/changelog-section.sh" "$version" "$root/CHANGELOG.md" >/dev/null
echo "tag-check: CHANGELOG.md has a section for $version"
