#!/usr/bin/env bash
# The tests' own RabbitMQ node, for the suites that need what the machine's broker must not
# be asked for: a mutual-TLS listener (the fault suite's TLS scenario), rabbitmq_prometheus
# (the monitoring test) and the management API (the least-privilege suite). It is a second
# node of the machine's installed rabbitmq-server, with its own name, ports, config, enabled plugins, cookie, data and logs under .tools/test-broker/;
# the machine's broker (its /etc/rabbitmq, its node, its epmd) is never read or touched.
#
# The node is scripts/rabbitmq4.sh's single node made of the machine's package instead of the
# chroot's (FIB_RPC_NODE_SOURCE=machine), so it starts, waits and stops the same way; no root
# needed. The suites that start it stop it; `make test-broker-down` stops one a killed run left.
#   up       start the node unless it runs; prints its AMQP URL
#   down     stop it; leaves no process or data behind (the TLS folder stays)
#   url      print its AMQP URL (fails when it is not running)
#   ctl ARGS rabbitmqctl ARGS against it
#   tls-dir  print the folder its TLS listener reads ca.pem, server.pem, server.key from
#   status   what runs
#
# Ports (all on 127.0.0.1), from TEST_BROKER_PORT P (default 5675): AMQP P, TLS P-1 (5674),
# prometheus P+10020 (15695), Erlang distribution P+20000 (25675), rabbitmqctl's P+30100..P+30109,
# its own epmd P-1300 (4375; not the machine's 4369). TEST_BROKER_DIR: the state folder.
# The management API listens on P+10000 (15675): the least-privilege suite reads it as KEDA does.
set -euo pipefail
FIB_RPC_NODE_SOURCE=machine exec bash "$(dirname "${BASH_SOURCE[0]}")/rabbitmq4.sh" "$@"
