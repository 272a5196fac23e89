# The suites against another broker than the machine's own. Included by the top Makefile.
#
# BROKER=rabbitmq4 points every target that talks to a broker (test, test-integration, fault,
# demo, ...) at a RabbitMQ 4 node of scripts/rabbitmq4.sh on 127.0.0.1:$(RABBITMQ4_PORT) (5682),
# management on :15682, Prometheus on :15702. It is a stand-in: Debian 13's rabbitmq-server
# 4.0.5 in a chroot, not the official image. BROKER=rabbitmq43 does the same with Debian forky's
# 4.3 (Erlang 29, Khepri; the stand-in for 4.1+) on 127.0.0.1:5685 (:15685, :15705).
# `make broker` (a prerequisite of those targets) builds the root filesystem once
# (.tools/rabbitmq4/ or .tools/rabbitmq43/, one to two minutes) and starts the node; the
# machine's broker is left alone.
#   BROKER=rabbitmq4 make test-integration
#   BROKER=rabbitmq43 make fault
#   make test-rabbitmq4       integration, telemetry and fault suites against 4.0.5, then stops the node (about 7 minutes)
#   make test-rabbitmq43      the same against 4.3
#
# Without BROKER, the monitoring test and the fault suite's TLS scenario still need a broker
# with rabbitmq_prometheus and a mutual-TLS listener, which the machine's broker is not ours
# to give: they start (and stop) a node of scripts/test-broker.sh on 127.0.0.1:5675.

ifeq ($(BROKER),rabbitmq4)
export BROKER
export RABBITMQ4_SERIES := 4.0
RABBITMQ4_PORT ?= 5682
else ifeq ($(BROKER),rabbitmq43)
export BROKER
export RABBITMQ4_SERIES := 4.3
RABBITMQ4_PORT ?= 5685
else ifneq ($(BROKER),)
$(error BROKER=$(BROKER): set BROKER=rabbitmq4 or BROKER=rabbitmq43, or leave it unset for the machine's broker)
endif
ifneq ($(BROKER),)
export RABBITMQ4_PORT
export AMQP_URL ?= amqp://guest:guest@127.0.0.1:$(RABBITMQ4_PORT)
endif

.PHONY: test-integration test-telemetry test-rabbitmq4 test-rabbitmq43 rabbitmq4 rabbitmq4-down test-broker test-broker-down

test-integration: deps broker ## The integration suite only (real broker); BROKER=rabbitmq4 / rabbitmq43 for RabbitMQ 4.0 / 4.3
	npm run test:integration

test-telemetry: deps broker tools jaeger ## The tracing (real Jaeger) and monitoring (real Prometheus) suites only; BROKER=rabbitmq4 for RabbitMQ 4
	npm run test:telemetry

rabbitmq4: ## Build (once) and start the RabbitMQ 4 node of BROKER=rabbitmq4; prints its AMQP URL
	bash scripts/rabbitmq4.sh up

rabbitmq4-down: ## Stop that node (and nothing else)
	bash scripts/rabbitmq4.sh down

test-broker: ## Start the tests' own node of the machine's rabbitmq-server (TLS, Prometheus; 127.0.0.1:5675); prints its AMQP URL
	bash scripts/test-broker.sh up

test-broker-down: ## Stop that node (the suites that start it stop it; this is for one a killed run left)
	bash scripts/test-broker.sh down

# The suites against one stand-in series, then its node stopped: $(1) = BROKER, $(2) = series.
define stand_in_suites
	@status=0; \
	$(MAKE) --no-print-directory BROKER=$(1) test-integration test-telemetry fault || status=$$?; \
	RABBITMQ4_SERIES=$(2) bash scripts/rabbitmq4.sh down; \
	exit $$status
endef

test-rabbitmq4: deps ## Integration, telemetry and fault suites against RabbitMQ 4.0.5 (stand-in node), then stop it
	$(call stand_in_suites,rabbitmq4,4.0)

test-rabbitmq43: deps ## Integration, telemetry and fault suites against RabbitMQ 4.3 (stand-in node, Debian forky), then stop it
	$(call stand_in_suites,rabbitmq43,4.3)
