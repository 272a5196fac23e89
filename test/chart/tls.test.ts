/**
 * TLS to the broker: rabbitmq.tls (amqps 5671, https management 15671, a Secret of tls.crt,
 * tls.key and ca.crt, or a cert-manager Certificate), rabbitmq.tls.plaintext=false, and every
 * client of the broker (servers, client Jobs, helm test, the users Job, KEDA, and an external
 * broker's private CA) verifying the broker's certificate.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type Container,
  find,
  helmTemplateArgs,
  type K8sObject,
  OPTIONAL_APIS,
  only,
  podTemplate,
  render,
  run,
  spec,
  tool,
  validateObjects,
} from './lib.ts';

const BYO = ['rabbitmq.tls.enabled=true', 'rabbitmq.tls.existingSecret=broker-tls'];
const CERT_MANAGER = [
  'rabbitmq.tls.enabled=true',
  'rabbitmq.tls.certManager.enabled=true',
  'rabbitmq.tls.certManager.issuerRef.name=fib-rpc-ca',
];
const WITH_CERT_MANAGER = [...OPTIONAL_APIS, 'cert-manager.io/v1'];

type Volume = {
  name: string;
  secret?: { secretName: string; items?: { key: string; path: string }[] };
};
type Pod = { containers: (Container & { volumeMounts?: { name: string; mountPath: string }[] })[]; volumes?: Volume[] };

function brokerConf(objects: readonly K8sObject[]): string {
  return (
    (only(objects, 'ConfigMap', 'fib-rpc-rabbitmq-config').data as Record<string, string>)['10-fib-rpc.conf'] ?? ''
  );
}

function servicePorts(objects: readonly K8sObject[], name = 'fib-rpc-rabbitmq'): number[] {
  return spec<{ ports: { port: number }[] }>(only(objects, 'Service', name))
    .ports.map((p) => p.port)
    .sort();
}

function secretValue(objects: readonly K8sObject[], name: string, key: string): string {
  return Buffer.from((only(objects, 'Secret', name).data as Record<string, string>)[key] ?? '', 'base64').toString();
}

/** Every broker client's container, with the CA file its env names and the Secret behind that file. */
function caOfClients(
  objects: readonly K8sObject[],
): { id: string; variable?: string; secret?: string; keys?: string[] }[] {
  const clients: { id: string; variable?: string; secret?: string; keys?: string[] }[] = [];
  for (const object of objects) {
    const pod = podTemplate(object)?.spec as Pod | undefined;
    for (const container of pod?.containers ?? []) {
      if (!['server', 'client', 'users'].includes(container.name)) continue;
      const env = container.env?.find((e) => e.name === 'AMQP_TLS_CA_FILE' || e.name === 'NODE_EXTRA_CA_CERTS');
      const mount = container.volumeMounts?.find((m) => env?.value?.startsWith(`${m.mountPath}/`));
      const volume = pod?.volumes?.find((v) => v.name === mount?.name);
      clients.push({
        id: `${object.kind}/${object.metadata.name}/${container.name}`,
        variable: env && `${env.name}=${env.value}`,
        secret: volume?.secret?.secretName,
        keys: volume?.secret?.items?.map((i) => i.key),
      });
    }
  }
  return clients;
}

function refusal(set: readonly string[], apiVersions?: readonly string[]): string {
  const result = run(tool('helm'), helmTemplateArgs({ set, apiVersions }));
  assert.notEqual(result.status, 0, `helm template accepted ${set.join(' ')}`);
  return result.stderr;
}

describe('rabbitmq.tls with a Secret of your own', () => {
  const objects = render({ set: [...BYO, 'client.job.enabled=true'] });

  it('the broker serves amqps on 5671 and https management on 15671 from the mounted Secret, beside 5672 and 15672', () => {
    const conf = brokerConf(objects);
    assert.match(conf, /^listeners\.ssl\.default = 5671$/m);
    assert.match(conf, /^management\.ssl\.port = 15671$/m);
    for (const file of [
      'cacertfile = /etc/rabbitmq/tls/ca.crt',
      'certfile = /etc/rabbitmq/tls/tls.crt',
      'keyfile = /etc/rabbitmq/tls/tls.key',
    ]) {
      assert.match(conf, new RegExp(`^ssl_options\\.${file.replaceAll('.', '\\.')}$`, 'm'));
      assert.match(conf, new RegExp(`^management\\.ssl\\.${file.replaceAll('.', '\\.')}$`, 'm'));
    }
    assert.match(conf, /^listeners\.tcp\.default = 5672$/m);
    assert.deepEqual(servicePorts(objects), [15671, 15672, 5671, 5672]);
    const pod = podTemplate(only(objects, 'StatefulSet'))?.spec as Pod;
    const volume = pod.volumes?.find((v) => v.secret?.secretName === 'broker-tls');
    assert.ok(volume, 'the broker mounts the TLS Secret');
    const broker = pod.containers.find((c) => c.name === 'rabbitmq');
    assert.equal(broker?.volumeMounts?.find((m) => m.name === volume.name)?.mountPath, '/etc/rabbitmq/tls');
  });

  it('every role URL is amqps://...:5671 (KEDA https://...:15671), and KEDA is told to verify with the CA', () => {
    for (const role of ['server', 'client', 'keda']) {
      assert.match(
        secretValue(objects, `fib-rpc-rabbitmq-${role}`, 'amqp-url'),
        /^amqps:\/\/[^@]+@fib-rpc-rabbitmq\.fib-rpc\.svc:5671\/%2F$/,
      );
    }
    assert.match(
      secretValue(objects, 'fib-rpc-rabbitmq-keda', 'management-url'),
      /^https:\/\/[^@]+@fib-rpc-rabbitmq\.fib-rpc\.svc:15671\//,
    );
    assert.equal(secretValue(objects, 'fib-rpc-rabbitmq-keda', 'tls'), 'enable');
    const refs = spec<{ secretTargetRef: { parameter: string; name: string; key: string }[] }>(
      only(objects, 'TriggerAuthentication'),
    ).secretTargetRef;
    assert.deepEqual(
      refs.map((r) => [r.parameter, r.name, r.key]),
      [
        ['host', 'fib-rpc-rabbitmq-keda', 'management-url'],
        ['tls', 'fib-rpc-rabbitmq-keda', 'tls'],
        ['ca', 'broker-tls', 'ca.crt'],
      ],
    );
  });

  it('servers, the client Job and CronJob, the helm test and the users Job verify against ca.crt alone (never the key)', () => {
    const clients = caOfClients(objects);
    assert.deepEqual(clients.map((c) => c.id).sort(), [
      'CronJob/fib-rpc-client/client',
      'Deployment/fib-rpc-server/server',
      'Job/fib-rpc-broker-users-1/users',
      'Job/fib-rpc-client-1/client',
      'Pod/fib-rpc-client-test/client',
    ]);
    for (const client of clients) {
      const variable = client.id.endsWith('/users') ? 'NODE_EXTRA_CA_CERTS' : 'AMQP_TLS_CA_FILE';
      assert.equal(client.variable, `${variable}=/etc/fib-rpc/broker-ca/ca.crt`, client.id);
      assert.equal(client.secret, 'broker-tls', client.id);
      assert.deepEqual(client.keys, ['ca.crt'], client.id);
    }
    const users = podTemplate(only(objects, 'Job', 'fib-rpc-broker-users-1'))?.spec.containers[0];
    assert.equal(
      users?.env?.find((e) => e.name === 'RABBITMQ_MANAGEMENT_URL')?.value,
      'https://fib-rpc-rabbitmq.fib-rpc.svc:15671',
    );
  });

  it('renders valid objects', () => {
    assert.deepEqual(validateObjects(objects), []);
  });
});

describe('rabbitmq.tls.plaintext=false', () => {
  const objects = render({ set: [...BYO, 'rabbitmq.tls.plaintext=false', 'networkPolicy.enabled=true'] });

  it('closes 5672 and 15672: no plaintext listener, port or Service port; the probes use amqps', () => {
    const conf = brokerConf(objects);
    assert.match(conf, /^listeners\.tcp = none$/m);
    assert.doesNotMatch(conf, /^listeners\.tcp\.default/m);
    assert.doesNotMatch(conf, /^management\.tcp\.port/m);
    assert.deepEqual(servicePorts(objects), [15671, 5671]);
    assert.deepEqual(servicePorts(objects, 'fib-rpc-rabbitmq-headless'), [5671]);
    const broker = (podTemplate(only(objects, 'StatefulSet'))?.spec as Pod | undefined)?.containers.find(
      (c) => c.name === 'rabbitmq',
    );
    assert.deepEqual(broker?.ports?.map((p) => p.containerPort).sort(), [15671, 15692, 5671]);
    for (const probe of [broker?.startupProbe, broker?.readinessProbe]) {
      assert.equal(probe?.tcpSocket?.port, 'amqps');
    }
    // No liveness probe at all (the RabbitMQ Cluster Operator's choice, see topology.test.ts).
    assert.equal(broker?.livenessProbe, undefined);
  });

  it('the NetworkPolicy admits the TLS ports only', () => {
    const ports = spec<{ ingress: { ports: { port: string }[] }[] }>(
      only(objects, 'NetworkPolicy', 'fib-rpc-rabbitmq'),
    ).ingress.flatMap((r) => r.ports.map((p) => p.port));
    assert.deepEqual([...new Set(ports)].sort(), ['amqps', 'management-tls']);
  });

  it('is refused without TLS', () => {
    assert.match(
      refusal(['rabbitmq.tls.plaintext=false']),
      /rabbitmq\.tls\.plaintext=false closes 5672 and 15672, so it needs rabbitmq\.tls\.enabled=true/,
    );
  });
});

describe('rabbitmq.tls.certManager', () => {
  it('renders a Certificate for the broker names into the Secret the broker and its clients read', () => {
    const objects = render({ set: CERT_MANAGER, apiVersions: WITH_CERT_MANAGER });
    const certificate = spec<{ secretName: string; dnsNames: string[]; issuerRef: { name: string; kind: string } }>(
      only(objects, 'Certificate', 'fib-rpc-rabbitmq'),
    );
    assert.equal(certificate.secretName, 'fib-rpc-rabbitmq-tls');
    assert.ok(certificate.dnsNames.includes('fib-rpc-rabbitmq.fib-rpc.svc'), 'the name in every role URL');
    assert.deepEqual(certificate.issuerRef, { name: 'fib-rpc-ca', kind: 'Issuer', group: 'cert-manager.io' });
    for (const client of caOfClients(objects)) assert.equal(client.secret, 'fib-rpc-rabbitmq-tls', client.id);
  });

  it('is refused when cert-manager is not installed, or no issuer is named', () => {
    assert.match(
      refusal(CERT_MANAGER),
      /rabbitmq\.tls\.certManager\.enabled needs cert-manager \(the API cert-manager\.io\/v1 is not served\)/,
    );
    assert.match(
      refusal(['rabbitmq.tls.enabled=true', 'rabbitmq.tls.certManager.enabled=true'], WITH_CERT_MANAGER),
      /needs rabbitmq\.tls\.certManager\.issuerRef\.name/,
    );
  });

  it('rabbitmq.tls.enabled alone is refused: it needs a certificate from somewhere', () => {
    assert.match(refusal(['rabbitmq.tls.enabled=true']), /rabbitmq\.tls\.enabled needs rabbitmq\.tls\.existingSecret/);
  });

  it('no Certificate without TLS', () => {
    assert.equal(find(render({ apiVersions: WITH_CERT_MANAGER }), 'Certificate').length, 0);
  });
});

describe('an external broker behind a private CA', () => {
  it('externalRabbitmq.tls.caSecret reaches every client and KEDA', () => {
    const objects = render({
      set: [
        'rabbitmq.enabled=false',
        'externalRabbitmq.queueType=quorum',
        'externalRabbitmq.url=amqps://u:p@rabbit.example:5671/%2F',
        'externalRabbitmq.managementUrl=https://u:p@rabbit.example:15671/',
        'externalRabbitmq.tls.caSecret=rabbit-ca',
      ],
    });
    const clients = caOfClients(objects);
    assert.ok(clients.length >= 3);
    for (const client of clients) {
      assert.equal(client.secret, 'rabbit-ca', client.id);
      assert.deepEqual(client.keys, ['ca.crt'], client.id);
    }
    const refs = spec<{ secretTargetRef: { parameter: string; name: string }[] }>(
      only(objects, 'TriggerAuthentication'),
    ).secretTargetRef;
    assert.deepEqual(
      refs.map((r) => `${r.parameter}:${r.name}`),
      ['host:fib-rpc-rabbitmq-keda', 'tls:fib-rpc-rabbitmq-keda', 'ca:rabbit-ca'],
    );
    assert.equal(find(objects, 'Certificate').length, 0);
  });
});
