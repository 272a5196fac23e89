# The release workflow's steps around `make release`. Included by the top Makefile.
# .github/workflows/release.yaml runs, in order:
#   make tag-check        the tag is v + package.json's version; Chart.yaml and CHANGELOG.md agree
#   make release          images, chart, signatures, SBOMs, RELEASE_OUT/fib-rpc-k8s-VERSION.yaml
#                         (the workflow sets RELEASE_OUT and RELEASE_DIR to release/)
#   make github-release   the GitHub Release: the version's CHANGELOG section, the manifests attached
# Every step is a make target, so a maintainer can run each one as the workflow does.
# DRY_RUN=true checks everything and pushes nothing.

.PHONY: tag-check github-release changelog-section

tag-check: ## Check the release tag (RELEASE_TAG, or the workflow's tag) against package.json, Chart.yaml, CHANGELOG.md
	bash scripts/tag-check.sh

github-release: ## Create the GitHub Release of package.json's version from its CHANGELOG section (DRY_RUN=true prints it)
	bash scripts/github-release.sh

changelog-section: ## Print the CHANGELOG section of package.json's version (the GitHub Release's text)
	@bash scripts/changelog-section.sh "$(VERSION)"
