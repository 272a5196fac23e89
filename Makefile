# fib-rpc: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# npm scripts already run on the project's Node 24 (devDependency `node`); direct calls do too.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/.tools/bin:$(PATH)

N ?= 30

# `tools` (pinned helm, validators) comes from mk/deploy.mk.
.PHONY: help deps build lint format broker jaeger test test-unit demo run-server run-client load clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# On a fresh machine npm runs on the machine's Node, often older than the Node 22+ that many
# packages ask for, and says so in dozens of EBADENGINE warnings. Everything here runs on the
# Node 24 that this very install brings (devDependency `node`, first on PATH above), so they
# are false alarms: one line says that instead. Other output and npm's status pass through.
node_modules: package.json package-lock.json
	@echo 'npm ci --no-audit --no-fund'
	@npm ci --no-audit --no-fund 2>&1 | awk \
	  -v note="note: npm ran on Node $$(node --version), older than some packages ask for; harmless: the project runs on its own Node $$(node -p 'require("./package.json").devDependencies.node') (devDependency node)" \
	  '/^npm warn EBADENGINE/ { muted++; next } { print } END { if (muted) print note }'
	@touch node_modules

deps: node_modules ## Install dependencies (npm ci)

build: deps ## Compile TypeScript to dist/
	npm run build

lint: deps ## Lint and format check (biome) and type-check the tests
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

demo: build broker ## Start a server, make one call and a short load, stop the server
	bash scripts/demo.sh

run-server: build ## Run a server in the foreground against AMQP_URL
	node --import ./dist/telemetry.js dist/server/main.js

run-client: build ## One call: make run-client N=30
	node --import ./dist/telemetry.js dist/client/main.js $(N)

load: build ## A 10 s load at concurrency 64
	node --import ./dist/telemetry.js dist/client/main.js --load --concurrency 64 --duration 10s

clean: ## Remove build output
	rm -rf dist

-include mk/*.mk
