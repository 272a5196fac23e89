#!/usr/bin/env node
// Telemetry must be registered before any instrumented module loads, so it is imported first.
await import('../dist/telemetry.js');
await import('../dist/client/main.js');
