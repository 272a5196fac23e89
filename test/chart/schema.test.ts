/**
 * values.schema.json and the chart's own checks reject bad values with a message that
 * names the key, before anything reaches a cluster.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { helmTemplateArgs, run, tool } from './lib.ts';

function renderError(set: readonly string[]): string {
  const result = run(tool('helm'), helmTemplateArgs({ set }));
  assert.notEqual(result.status, 0, `helm template accepted ${set.join(' ')}`);
  return result.stderr;
}

describe('bad values are rejected with a clear message', () => {
  const cases: [string[], RegExp][] = [
    [['autoscaling.minReplica=1'], /additional properties 'minReplica' not allowed/],
    [['server.image.tag=latest'], /\/server\/image\/tag/],
    [['client.image.tag=latest'], /\/client\/image\/tag/],
    [['server.image.digest=sha256:abc'], /\/server\/image\/digest/],
    [['client.image.digest=latest'], /\/client\/image\/digest/],
    [['rabbitmq.image.digest=md5:0123'], /\/rabbitmq\/image\/digest/],
    [[`jaeger.image.digest=sha256:${'A'.repeat(64)}`], /\/jaeger\/image\/digest/],
    [['rabbitmq.auth.username=guest'], /\/rabbitmq\/auth\/username/],
    [['rabbitmq.auth.password=p@ss:word'], /\/rabbitmq\/auth\/password/],
    [['autoscaling.keda.protocol=ftp'], /\/autoscaling\/keda\/protocol/],
    [['autoscaling.maxReplicas=0'], /\/autoscaling\/maxReplicas/],
    [['autoscaling.minReplicas=-1'], /\/autoscaling\/minReplicas/],
    [['autoscaling.queueLength=0'], /\/autoscaling\/queueLength/],
    [['config.rpcQueueType=stream'], /\/config\/rpcQueueType/],
    [['config.rpcQueue=amq.gen'], /\/config\/rpcQueue/],
    [['config.logLevel=verbose'], /\/config\/logLevel/],
    [['server.prefetch=0'], /\/server\/prefetch/],
    [['server.httpPort=70000'], /\/server\/httpPort/],
    [['server.drainTimeoutSeconds=ten'], /\/server\/drainTimeoutSeconds/],
    [['server.terminationGraceMarginSeconds=0'], /\/server\/terminationGraceMarginSeconds/],
    [['server.extraEnv[0].name=AMQP_URL', 'server.extraEnv[0].value=amqp://x'], /\/server\/extraEnv\/0\/name/],
    [['server.extraEnv[0].name=NOT_A_SETTING', 'server.extraEnv[0].value=1'], /\/server\/extraEnv\/0\/name/],
    [['server.resources.limits=null'], /\/server\/resources/],
    [['externalRabbitmq.url=http://broker'], /\/externalRabbitmq\/url/],
    [['otel.endpoint=jaeger:4318'], /\/otel\/endpoint/],
    [['otel.protocol=thrift'], /\/otel\/protocol/],
    [['client.test.expect=abc'], /\/client\/test\/expect/],
    [
      ['rabbitmq.enabled=false'],
      /rabbitmq\.enabled=false needs the server's broker URL: externalRabbitmq\.server\.url or \.existingSecret \(or the shared externalRabbitmq\.url or \.existingSecret\)/,
    ],
    [
      ['rabbitmq.enabled=false', 'externalRabbitmq.url=amqp://u:p@broker:5672/', 'externalRabbitmq.queueType=quorum'],
      /autoscaling\.keda\.protocol=http with an external broker needs externalRabbitmq\.keda\.managementUrl or externalRabbitmq\.managementUrl/,
    ],
    [
      ['autoscaling.minReplicas=5', 'autoscaling.maxReplicas=2'],
      /minReplicas must not exceed autoscaling\.maxReplicas/,
    ],
    [
      ['autoscaling.keda.enabled=false', 'autoscaling.hpa.enabled=true', 'autoscaling.minReplicas=0'],
      /the CPU HPA cannot scale to zero/,
    ],
  ];

  for (const [set, message] of cases) {
    it(`rejects ${set.join(' ')}`, () => {
      assert.match(renderError(set), message);
    });
  }

  it('accepts the documented external broker without KEDA http (protocol amqp)', () => {
    const set = [
      'rabbitmq.enabled=false',
      'externalRabbitmq.url=amqp://u:p@broker:5672/',
      'externalRabbitmq.queueType=classic',
      'autoscaling.keda.protocol=amqp',
    ];
    const result = run(tool('helm'), helmTemplateArgs({ set }));
    assert.equal(result.status, 0, result.stderr);
  });
});
