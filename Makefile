# fib-rpc: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# npm scripts already run on the project's Node 24 (devDependency `node`); direct calls do too.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/.tools/bin:$(PATH)

N ?= 30

# `tools` (pinned helm, validators) comes from mk/deploy.mk.
.PHONY: help deps bench-deps build lint format broker jaeger test test-unit fault coverage bench version ci demo run-server run-client load clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# On a fresh machine npm runs on the machine's Node, often older than the Node 22+ that many
# packages ask for, and says so in dozens of EBADENGINE warnings. Everything here runs on the
# Node 24 that this very install brings (devDependency `node`, first on PATH above), so they
# are false alarms: one line says that instead. Other output and npm's status pass through.
node_modules: package.json package-lock.json packages/rpc/package.json
	@echo 'npm ci --no-audit --no-fund'
	@npm ci --no-audit --no-fund 2>&1 | awk \
	  -v note="note: npm ran on Node $$(node --version), older than some packages ask for; harmless: the project runs on its own Node $$(node -p 'require("./package.json").devDependencies.node') (devDependency node)" \
	  '/^npm warn EBADENGINE/ { muted++; next } { print } END { if (muted) print note }'
	@touch node_modules

deps: node_modules ## Install dependencies (npm ci)

# The benchmark's peer libraries (NestJS, rabbitmq-client, ...) are bench/'s own package, so the
# product's dependency tree holds only what it uses; lint type-checks bench/ against them.
bench/node_modules/.package-lock.json: bench/package.json bench/package-lock.json | node_modules
	npm ci --prefix bench --no-audit --no-fund
	@touch $@

bench-deps: bench/node_modules/.package-lock.json ## Install the benchmark's peer libraries (npm ci in bench/)

build: deps ## Compile TypeScript to dist/
	npm run build

lint: deps bench-deps ## Lint and format check (biome) and type-check the tests and bench/
	npm run lint

format: deps ## Format the sources
	npm run format

broker: ## Make sure a RabbitMQ broker answers on 127.0.0.1:5672 (starts or installs one)
	bash scripts/ensure-broker.sh

jaeger: ## Build the pinned Jaeger v2 that the tracing tests export to (.tools/bin/jaeger)
	bash scripts/install-jaeger.sh

test: deps broker tools jaeger ## Run every test: unit, integration and tracing (real broker, real Jaeger), chart
	npm test

test-unit: deps ## Run the unit tests only (no broker needed)
	npm run test:unit

fault: deps broker ## The fault suite (docs/reliability.md), about 5 minutes; it restarts the local broker
	npm run test:fault

coverage: deps broker ## Unit and integration tests with Node's own coverage; prints the total line/branch figures
	npm run coverage | awk '{ print } / all files +[|]/ { split($$0, f, "|"); l = f[2]; b = f[3]; gsub(/ /, "", l); gsub(/ /, "", b) } \
	  END { if (l == "") exit 1; printf "coverage of src/ (what the suites load, in the test processes and the servers and clients they start): lines %s%%, branches %s%%\n", l, b }'

bench: deps bench-deps broker ## The benchmark (bench/README.md), about 20 minutes; options: make bench ARGS="--quick"
	npm run bench -- $(ARGS)

version: ## Copy package.json's version into the core package, Chart.yaml, then k8s/ (make manifests) and the chart's README (make chart-docs)
	bash scripts/version.sh
	$(MAKE) --no-print-directory manifests
	$(MAKE) --no-print-directory chart-docs

ci: ## What CI runs on a clean clone (.ci/run): install, lint, test, fault suite, e2e
	bash .ci/run

demo: build broker ## Start a server, make one call and a short load, stop the server
	bash scripts/demo.sh

run-server: build ## Run a server in the foreground against AMQP_URL
	node bin/fib-rpc-server.js

run-client: build ## One call: make run-client N=30
	node bin/fib-rpc-client.js $(N)

load: build ## A 10 s load at concurrency 64
	node bin/fib-rpc-client.js --load --concurrency 64 --duration 10s

clean: ## Remove build output
	rm -rf dist

-include mk/*.mk
