// Creates or updates the broker's role users through the management API with the
// administrator's credentials: the chart's users Job runs it on every install, upgrade and
// rollback (node from the client image, no dependencies). Every run sets each user's password,
// tags and permissions to what the files say, so a fresh volume, a kept volume and a broker that
// only has the administrator all end the same, and a changed password is a rotation. The users
// of roles the release no longer has (`retired`) are deleted.
//
// Environment:
//   RABBITMQ_MANAGEMENT_URL   e.g. http://broker:15672 (no credentials); https with NODE_EXTRA_CA_CERTS
//   RABBITMQ_ADMIN_USERNAME   the administrator (the broker's default user)
//   RABBITMQ_ADMIN_PASSWORD
//   BROKER_USERS_FILE         JSON: { vhost, users: [{ role, name, tags, permissions | null }], retired?: [name] }
//   BROKER_PASSWORDS_DIR      one file per role (server, client, keda) holding its password
//   BROKER_USERS_WAIT_S       how long to wait for the management API (default 300)
// Exit codes: 0 applied; 1 refused or timed out (the message says which); 2 bad input.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const REQUEST_TIMEOUT_MS = 10_000;
const RETRY_MS = 2_000;

function fail(code, message) {
  console.error(`broker-users: ${message}`);
  process.exit(code);
}

function setting(name) {
  const value = process.env[name];
  if (!value) fail(2, `${name} is not set`);
  return value;
}

function readInput() {
  const file = setting('BROKER_USERS_FILE');
  const dir = setting('BROKER_PASSWORDS_DIR');
  let spec;
  try {
    spec = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    fail(2, `cannot read ${file} (BROKER_USERS_FILE): ${err.message}`);
  }
  if (typeof spec?.vhost !== 'string' || !Array.isArray(spec.users)) {
    fail(2, `${file} (BROKER_USERS_FILE) must hold { "vhost": "...", "users": [...] }`);
  }
  const retired = spec.retired ?? [];
  if (!Array.isArray(retired) || !retired.every((name) => typeof name === 'string' && name !== '')) {
    fail(2, `${file} (BROKER_USERS_FILE): "retired" must be a list of user names`);
  }
  const kept = retired.find((name) => spec.users.some((user) => user.name === name));
  if (kept !== undefined) fail(2, `${file} (BROKER_USERS_FILE): ${kept} is both a user and retired`);
  const users = spec.users.map((user) => {
    let password;
    try {
      password = readFileSync(join(dir, user.role), 'utf8').trim();
    } catch (err) {
      fail(2, `no password for role ${user.role} in ${dir} (BROKER_PASSWORDS_DIR): ${err.message}`);
    }
    if (!password) fail(2, `the password of role ${user.role} in ${dir} is empty`);
    return { ...user, password };
  });
  return { vhost: spec.vhost, users, retired };
}

function client() {
  const base = new URL(setting('RABBITMQ_MANAGEMENT_URL'));
  const auth = `Basic ${Buffer.from(`${setting('RABBITMQ_ADMIN_USERNAME')}:${setting('RABBITMQ_ADMIN_PASSWORD')}`).toString('base64')}`;
  const waitS = Number(process.env.BROKER_USERS_WAIT_S || 300);
  if (!Number.isFinite(waitS) || waitS <= 0) fail(2, `BROKER_USERS_WAIT_S=${process.env.BROKER_USERS_WAIT_S}: give seconds > 0`);
  const deadline = Date.now() + waitS * 1000;

  /** One call; a broker that is not up yet (no answer, 5xx) is asked again until the deadline. */
  return async function call(method, path, body) {
    const url = new URL(`api/${path}`, base.href.endsWith('/') ? base : `${base.href}/`);
    for (;;) {
      let outcome;
      try {
        const response = await fetch(url, {
          method,
          headers: { authorization: auth, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        if (response.status < 500) return { status: response.status, text: await response.text() };
        outcome = `HTTP ${response.status}`;
      } catch (err) {
        outcome = err.cause?.code ?? err.cause?.message ?? err.message;
        // A certificate the CA does not vouch for never gets better: say so now.
        if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(String(err.cause?.code))) {
          fail(1, `${method} ${url.origin}: ${outcome}: the broker's certificate is not signed by the CA in NODE_EXTRA_CA_CERTS`);
        }
      }
      if (Date.now() + RETRY_MS > deadline) fail(1, `${method} ${url.origin}/api/${path}: ${outcome}; gave up after BROKER_USERS_WAIT_S=${waitS}`);
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  };
}

function expect(result, ok, what) {
  if (ok.includes(result.status)) return;
  const hint = result.status === 401 ? ' (the administrator credentials are refused)' : '';
  fail(1, `${what}: HTTP ${result.status}${hint}: ${result.text.slice(0, 200)}`);
}

const { vhost, users, retired } = readInput();
const call = client();
expect(await call('GET', 'whoami'), [200], 'GET /api/whoami');
const vhostPath = encodeURIComponent(vhost);
for (const user of users) {
  const name = encodeURIComponent(user.name);
  expect(await call('PUT', `users/${name}`, { password: user.password, tags: user.tags.join(',') }), [201, 204], `PUT /api/users/${user.name}`);
  if (user.permissions) {
    expect(await call('PUT', `permissions/${vhostPath}/${name}`, user.permissions), [201, 204], `PUT /api/permissions for ${user.name}`);
  } else {
    expect(await call('DELETE', `permissions/${vhostPath}/${name}`), [204, 404], `DELETE /api/permissions for ${user.name}`);
  }
  const rights = user.permissions ? `configure ${user.permissions.configure} write ${user.permissions.write} read ${user.permissions.read}` : 'no access';
  console.log(`broker-users: ${user.role} user ${user.name}: tags [${user.tags.join(',')}], vhost ${vhost}: ${rights}`);
}
for (const name of retired) {
  const result = await call('DELETE', `users/${encodeURIComponent(name)}`);
  expect(result, [204, 404], `DELETE /api/users/${name}`);
  if (result.status === 204) console.log(`broker-users: deleted ${name}: its role is no longer in this release`);
}
