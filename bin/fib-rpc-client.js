#!/usr/bin/env node
// The only way to start the client (the image's ENTRYPOINT too). It names the service for
// OpenTelemetry (an OTEL_SERVICE_NAME set by the operator wins) and starts telemetry before
// the program loads amqplib, which instrumentation-amqplib must patch as it is required.
process.env.OTEL_SERVICE_NAME ||= 'fib-rpc-client';
await import('../dist/telemetry/bootstrap.js');
await import('../dist/cmd/fib-rpc-client/main.js');
