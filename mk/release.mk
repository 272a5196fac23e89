# Release targets (docs/release.md). Included by the top Makefile (`-include mk/*.mk`).
#
#   make release REGISTRY=ghcr.io/OWNER [PLATFORMS=linux/amd64,linux/arm64] [SIGN=key|keyless] [DRY_RUN=true]
#       multi-arch images, SBOM attestations, signatures, the chart pinned by digest on
#       oci://REGISTRY/charts, the manifests as an asset in .tools/release/VERSION/
#       (scripts/release.sh; SIGN=key reads COSIGN_KEY and COSIGN_PASSWORD from the environment)
#   make release-local
#       the rehearsal: a registry on loopback, the same release into it, then installed from
#       oci:// on the local cluster, signatures, SBOMs and an arm64 client checked
#       (scripts/release-local.sh; root; RELEASE_ARM64=false skips the arm64 leg, saying so)

# The release reads these from the command line or the environment; nothing else.
export REGISTRY PLATFORMS SIGN DRY_RUN NODE_IMAGE REGISTRY_CA RELEASE_ARM64 RELEASE_OUT

.PHONY: release release-tools release-local

release-tools: ## Build the pinned cosign and syft into .tools/bin (and install buildah when missing)
	bash scripts/install-release-tools.sh

release: deps tools release-tools ## Build, push and sign the images, SBOMs, chart and manifests: make release REGISTRY=... [DRY_RUN=true]
	bash scripts/release.sh

release-local: deps tools jaeger release-tools ## Rehearse the release into a registry on loopback and install it on the local cluster (root)
	bash scripts/release-local.sh
