# Deployment targets: images, chart checks, plain manifests, kind e2e.
# Included by the top-level Makefile (`include mk/deploy.mk`); also usable alone:
#   make -f mk/deploy.mk help

# package.json's version is the only one (scripts/version.sh copies it into Chart.yaml); the
# image's version label is exactly it, the tag adds the commit.
VERSION := $(shell node -p "require('./package.json').version")
IMAGE_TAG ?= $(VERSION)-$(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
SERVER_IMAGE ?= fib-rpc-server
CLIENT_IMAGE ?= fib-rpc-client
KIND_CLUSTER ?= fib-rpc-e2e
DEPLOY_NAMESPACE ?= fib-rpc
# Node 24 from the `node` devDependency when installed (runs the .ts tests natively).
TEST_NODE ?= $(if $(wildcard node_modules/.bin/node),node_modules/.bin/node,node)
HELM ?= $(if $(wildcard .tools/bin/helm),.tools/bin/helm,helm)

.PHONY: tools images chart-test manifests chart-docs kind-up kind-down deploy e2e e2e-local e2e-local-up e2e-local-down

tools: ## Install the pinned helm, helm-docs, kube-validate, KEDA CRDs, actionlint and shellcheck into .tools/
	bash scripts/install-tools.sh

images: ## Build the server and client images (tag IMAGE_TAG, never latest)
	docker build --target server --tag $(SERVER_IMAGE):$(IMAGE_TAG) --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) .
	docker build --target client --tag $(CLIENT_IMAGE):$(IMAGE_TAG) --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) .

chart-test: tools ## Lint, render and validate the chart, k8s/, scripts, workflows and compose.yaml offline
	$(TEST_NODE) --test "test/chart/*.test.ts"

manifests: ## Regenerate k8s/ from the chart (commit the result; a test fails on drift)
	HELM=$(HELM) bash scripts/render-manifests.sh

chart-docs: ## Regenerate charts/fib-rpc/README.md from values.yaml with helm-docs (commit the result; a test fails on drift)
	bash scripts/chart-docs.sh

kind-up: ## Create (or reuse) the kind cluster of the e2e
	bash scripts/install-tools.sh --e2e
	KIND_CLUSTER=$(KIND_CLUSTER) bash test/e2e/kind.sh up

kind-down: ## Delete the kind cluster of the e2e
	KIND_CLUSTER=$(KIND_CLUSTER) bash test/e2e/kind.sh down

deploy: ## Build, load and install KEDA + the chart into the kind cluster (kept running)
	bash scripts/install-tools.sh --e2e
	KIND_CLUSTER=$(KIND_CLUSTER) IMAGE_TAG=$(IMAGE_TAG) bash test/e2e/kind.sh up
	KIND_CLUSTER=$(KIND_CLUSTER) IMAGE_TAG=$(IMAGE_TAG) bash test/e2e/kind.sh images
	KIND_CLUSTER=$(KIND_CLUSTER) IMAGE_TAG=$(IMAGE_TAG) NAMESPACE=$(DEPLOY_NAMESPACE) bash test/e2e/kind.sh test keda install

# deps: the broker-cluster phase publishes and counts messages with the project's amqplib.
e2e: deps ## Full kind e2e as CI runs it: cluster, images, KEDA, chart, assertions, cleanup
	bash scripts/install-tools.sh --e2e
	KIND_CLUSTER=$(KIND_CLUSTER) IMAGE_TAG=$(IMAGE_TAG) bash test/e2e/kind.sh all

e2e-local: deps tools jaeger ## The same e2e on a local cluster built here from upstream parts (root; no Docker, no registry)
	bash test/e2e/local.sh all

e2e-local-up: deps tools jaeger ## Bring up the local cluster with every image imported, and keep it (KUBECONFIG=.tools/e2e/kubeconfig)
	bash test/e2e/local.sh up
	bash test/e2e/local.sh images

e2e-local-down: ## Remove every process, mount, namespace, iptables rule and containerd state of the local cluster
	bash test/e2e/local.sh down

# `help` lives in the top-level Makefile; this fallback serves `make -f mk/deploy.mk help`.
ifeq ($(words $(MAKEFILE_LIST)),1)
.PHONY: help
help:
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'
endif
