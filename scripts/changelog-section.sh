#!/usr/bin/env bash
# Prints the body of one version's section of CHANGELOG.md: what follows its
# `## [VERSION] - DATE` heading up to the next `## ` heading, without the blank lines around it.
# The release workflow makes it the GitHub Release's text, so the release says exactly what
# the CHANGELOG says; a version with no section (or an empty one) is an error, not an empty
# release.
#
#   scripts/changelog-section.sh 0.2.0          # CHANGELOG.md of this checkout
#   scripts/changelog-section.sh 0.2.0 FILE     # another changelog (the tests use one)
set -euo pipefail

version=${1:?usage: changelog-section.sh VERSION [CHANGELOG]}
file=${2:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/CHANGELOG.md"}
[[ -f $file ]] || { echo "changelog-section: $file not found" >&2; exit 1; }

# awk's index() matches the heading literally: a version's dots are not regex wildcards. The
# link definitions at the end of the file (`[0.2.0]: https://...`) belong to no section. sed
# drops the leading blank lines; $(...) drops the trailing ones.
section=$(awk -v heading="## [$version]" '
  /^## / { if (found) exit; if (index($0, heading) == 1) { found = 1; next } }
  /^\[[^]]+\]: / { next }
  found { print }
' "$file" | sed -e '/./,$!d')

if [[ -z $section ]]; then
  echo "changelog-section: $file has no section (or an empty one) for version $version" >&2
  exit 1
fi
printf '%s\n' "$section"
