// Least privilege in the cluster: what each role's own credentials (the chart's per-role
// Secrets, mounted as env by test/e2e/security.sh) may and may not do on the release's broker.
// Runs with the client image's node and amqplib; prints one JSON line of what the broker
// answered, and exits 1 when anything that must be refused was allowed, or what must work failed.
//
// Environment:
//   QUEUE                   the release's work queue
//   CLIENT_URL SERVER_URL   the client's and the server's amqp-url
//   KEDA_URL KEDA_MANAGEMENT_URL   KEDA's amqp-url and management-url (http(s)://user:pass@host:port/vhost)
//   AMQP_TLS_CA_FILE        the broker's CA (amqps); https verifies with NODE_EXTRA_CA_CERTS
//   CLOSED_HOST             optional: a host whose 5672 and 15672 must refuse connections
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect as tcpConnect } from 'node:net';

// amqplib of the client image (/app), or of a checkout (APP_DIR).
const amqp = createRequire(`${process.env.APP_DIR || '/app'}/package.json`)('amqplib');
const env = (name) => process.env[name] || fail(`${name} is not set`);
const queue = env('QUEUE');
const ca = process.env.AMQP_TLS_CA_FILE ? [readFileSync(process.env.AMQP_TLS_CA_FILE)] : undefined;
const problems = [];
const seen = {};

function fail(message) {
  console.error(`least-privilege: ${message}`);
  process.exit(2);
}

const open = (url) => amqp.connect(url, ca ? { ca } : {});

/** The broker's refusal of `operation` on a channel of its own, or a problem when it is allowed. */
async function refused(role, what, model, operation) {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  try {
    await operation(channel);
    problems.push(`${role} ${what}: allowed`);
    seen[`${role} ${what}`] = 'allowed';
    await channel.close().catch(() => {});
  } catch (err) {
    const text = String(err.message)
      .replace(/^.*?(ACCESS_REFUSED|NOT_FOUND|PRECONDITION_FAILED)/, '$1')
      .replace(/"$/, '');
    seen[`${role} ${what}`] = `${err.code} ${text}`;
    if (err.code !== 403) problems.push(`${role} ${what}: ${err.code} ${text} (expected 403 ACCESS_REFUSED)`);
  }
}

/** A management API call with the credentials in `base` (a management URL, as KEDA gets it). */
async function api(base, method, path, body) {
  const url = new URL(base);
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
  const response = await fetch(`${url.origin}/api/${path}`, {
    method,
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, text: await response.text() };
}

/** `url`'s credentials on the management API of KEDA's URL (the same broker). */
function managementAs(url) {
  const amqpUrl = new URL(url);
  const management = new URL(env('KEDA_MANAGEMENT_URL'));
  management.username = amqpUrl.username;
  management.password = amqpUrl.password;
  return management.href;
}

async function apiRefused(role, what, base, method, path, body) {
  const answer = await api(base, method, path, body);
  seen[`${role} ${what}`] = `${answer.status}`;
  if (answer.status !== 401)
    problems.push(`${role} ${what}: HTTP ${answer.status} (expected 401) ${answer.text.slice(0, 160)}`);
}

function portRefuses(host, port) {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port, timeout: 5_000 });
    socket.on('connect', () => {
      socket.destroy();
      resolve('open');
    });
    socket.on('timeout', () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.on('error', (err) => resolve(err.code));
  });
}

const vhost = encodeURIComponent(decodeURIComponent(new URL(env('KEDA_MANAGEMENT_URL')).pathname.slice(1) || '/'));
const other = `least-privilege-other-${process.pid}`;

// The client: publishes to the default exchange, and nothing else.
const client = await open(env('CLIENT_URL'));
await refused('client', 'declare work queue', client, (ch) => ch.assertQueue(queue, { durable: true }));
await refused('client', 'delete work queue', client, (ch) => ch.deleteQueue(queue));
await refused('client', 'consume work queue', client, (ch) => ch.consume(queue, () => {}));
await refused('client', 'purge work queue', client, (ch) => ch.purgeQueue(queue));
await client.close();
await apiRefused('client', 'GET /api/overview', managementAs(env('CLIENT_URL')), 'GET', 'overview');

// The server: its work queue and DLQ only; no other queue, no users.
const server = await open(env('SERVER_URL'));
const own = await server.createChannel();
const depth = await own.checkQueue(queue);
seen['server passive declare work queue'] = `ok, ${depth.messageCount} ready`;
await own.close();
await refused('server', 'declare another queue', server, (ch) => ch.assertQueue(other, { durable: false }));
await refused('server', 'delete another queue', server, (ch) => ch.deleteQueue(other));
await refused('server', 'consume another queue', server, (ch) => ch.consume(other, () => {}));
await refused('server', 'publish to amq.topic', server, async (ch) => {
  ch.publish('amq.topic', 'x', Buffer.from('x'));
  await ch.checkExchange('amq.topic');
});
await server.close();
const serverApi = managementAs(env('SERVER_URL'));
await apiRefused('server', 'GET /api/users', serverApi, 'GET', 'users');
await apiRefused('server', 'PUT /api/users/intruder', serverApi, 'PUT', 'users/least-privilege-intruder', {
  password: 'x',
  tags: 'administrator',
});

// KEDA: reads the depth over the management API; cannot publish, consume or administer.
const keda = env('KEDA_MANAGEMENT_URL');
// The broker adds `messages` to a queue's JSON with its first statistics (every 5 s by default).
let read;
let count;
for (let tries = 0; tries < 10 && typeof count !== 'number'; tries++) {
  if (tries) await new Promise((resolve) => setTimeout(resolve, 2_000));
  read = await api(keda, 'GET', `queues/${vhost}/${encodeURIComponent(queue)}`);
  count = read.status === 200 ? JSON.parse(read.text).messages : undefined;
}
seen['keda GET /api/queues/<vhost>/<queue>'] = `${read.status}, messages ${count}`;
if (typeof count !== 'number')
  problems.push(`keda cannot read the queue depth: ${read.status} ${read.text.slice(0, 160)}`);
const publish = await api(keda, 'POST', `exchanges/${vhost}/amq.default/publish`, {
  properties: {},
  routing_key: queue,
  payload: '{}',
  payload_encoding: 'string',
});
seen['keda POST /api/exchanges/<vhost>/amq.default/publish'] =
  `${publish.status} ${publish.text.replace(/\s+/g, ' ').slice(0, 160)}`;
if (publish.status === 200) problems.push(`keda published over the management API: ${publish.text}`);
await apiRefused('keda', 'GET /api/users', keda, 'GET', 'users');
const kedaAmqp = await open(env('KEDA_URL'));
await refused('keda', 'publish to the work queue', kedaAmqp, async (ch) => {
  ch.sendToQueue(queue, Buffer.from('{}'));
  await ch.checkQueue(queue);
});
await refused('keda', 'consume work queue', kedaAmqp, (ch) => ch.consume(queue, () => {}));
await refused('keda', 'delete work queue', kedaAmqp, (ch) => ch.deleteQueue(queue));
await kedaAmqp.close();

if (process.env.CLOSED_HOST) {
  for (const port of [5672, 15672]) {
    const outcome = await portRefuses(process.env.CLOSED_HOST, port);
    seen[`plaintext ${port}`] = outcome;
    if (outcome !== 'ECONNREFUSED')
      problems.push(`port ${port} of ${process.env.CLOSED_HOST}: ${outcome} (expected ECONNREFUSED)`);
  }
}

console.log(JSON.stringify({ refusals: seen, problems }));
process.exit(problems.length ? 1 : 0);
