/**
 * A released chart pins every image by digest (make release sets image.digest for the server
 * and the client; a stand-in broker or Jaeger is pinned the same way): each container of each
 * workload, the helm test and the client Jobs included, then runs repository@digest, and
 * without a digest the chart keeps repository:tag.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type K8sObject, podTemplate, render } from './lib.ts';

const DIGESTS = {
  server: `sha256:${'1'.repeat(64)}`,
  client: `sha256:${'2'.repeat(64)}`,
  rabbitmq: `sha256:${'3'.repeat(64)}`,
  jaeger: `sha256:${'4'.repeat(64)}`,
};
const REPOSITORIES = {
  server: '127.0.0.1:5000/fib-rpc-server',
  client: '127.0.0.1:5000/fib-rpc-client',
  rabbitmq: '127.0.0.1:5000/fib-rpc/rabbitmq-standin',
  jaeger: '127.0.0.1:5000/fib-rpc/jaeger',
};

/** name of the workload or container -> image, over every pod template and the helm test Pod. */
function images(objects: readonly K8sObject[]): Map<string, string> {
  const found = new Map<string, string>();
  for (const object of objects) {
    const spec = podTemplate(object)?.spec ?? (object.kind === 'Pod' ? (object.spec as PodSpec) : undefined);
    if (!spec) continue;
    for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
      found.set(`${object.kind}/${object.metadata.name}/${container.name}`, container.image);
    }
  }
  return found;
}
interface PodSpec {
  initContainers?: { name: string; image: string }[];
  containers: { name: string; image: string }[];
}

/** Which of the four images a container runs, from its name and its workload's. */
function component(key: string): keyof typeof DIGESTS {
  if (key.includes('jaeger')) return 'jaeger';
  if (key.includes('rabbitmq')) return 'rabbitmq';
  if (key.endsWith('/server')) return 'server';
  return 'client';
}

describe('image.digest pins every image as repository@digest', () => {
  const set = Object.entries(DIGESTS).flatMap(([key, digest]) => [
    `${key}.image.digest=${digest}`,
    `${key}.image.repository=${REPOSITORIES[key as keyof typeof REPOSITORIES]}`,
  ]);
  // The broker cluster renders the Erlang cookie's init container; the client Job and the
  // CronJob template render the client twice more.
  const objects = render({ set: [...set, 'rabbitmq.replicas=3', 'client.job.enabled=true'] });
  const found = images(objects);

  it('each of the four images appears, with its own digest and nothing else', () => {
    const seen = new Set<string>();
    for (const [key, image] of found) {
      const which = component(key);
      seen.add(which);
      assert.equal(image, `${REPOSITORIES[which]}@${DIGESTS[which]}`, key);
    }
    assert.deepEqual([...seen].sort(), ['client', 'jaeger', 'rabbitmq', 'server']);
    const keys = [...found.keys()];
    assert.ok(
      keys.some((k) => k.startsWith('Pod/')),
      'the helm test Pod',
    );
    assert.ok(
      keys.some((k) => k.endsWith('/setup')),
      "the broker's init container",
    );
  });

  it('without digests the images stay repository:tag (the tag of server and client is appVersion)', () => {
    for (const [key, image] of images(render({ set: ['rabbitmq.replicas=3'] }))) {
      assert.match(image, /^[^@]+:[A-Za-z0-9._-]+$/, key);
    }
  });
});
