/**
 * Preloaded (--import) into the "floor + OTel" processes: the stock set-up a user gets
 * from the OpenTelemetry docs, @opentelemetry/sdk-node with instrumentation-amqplib,
 * configured by the standard OTEL_* variables (the benchmark sets always_on sampling and
 * an OTLP/HTTP endpoint that drops what it receives; sdk-node then uses its batch processor).
 */
import { AmqplibInstrumentation } from '@opentelemetry/instrumentation-amqplib';
import { NodeSDK } from '@opentelemetry/sdk-node';

const sdk = new NodeSDK({ instrumentations: [new AmqplibInstrumentation()] });
sdk.start();
