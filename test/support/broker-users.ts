import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { find, render } from '../chart/lib.ts';

/**
 * The chart's broker users, as its users Job applies them: the users.json and the script of
 * the rendered ConfigMap (files/broker-roles.json, files/broker-users.mjs), run here against a
 * broker of the tests' own. Nothing is re-stated: a change to the chart's permissions is a
 * change to what these suites check.
 */

const run = promisify(execFile);

export type Role = 'server' | 'client' | 'keda';

export interface BrokerUser {
  role: Role;
  name: string;
  tags: string[];
  permissions?: { configure: string; write: string; read: string };
}

export interface RenderedUsers {
  vhost: string;
  users: BrokerUser[];
  /** Users of the roles the release does not use: the Job deletes them. */
  retired: string[];
  script: string;
}

/** The chart's users ConfigMap for work queue `queue`, user names from `prefix`, more values in `set`. */
export function renderUsers(queue: string, prefix: string, set: string[] = []): RenderedUsers {
  const objects = render({
    showOnly: 'templates/rabbitmq/users.yaml',
    set: [`config.rpcQueue=${queue}`, `rabbitmq.auth.username=${prefix}`, ...set],
  });
  const [configMap] = find(objects, 'ConfigMap');
  const data = (configMap?.data ?? {}) as Record<string, string>;
  const spec = JSON.parse(data['users.json'] ?? 'null') as {
    vhost: string;
    users: BrokerUser[];
    retired: string[];
  } | null;
  if (!spec || !data['broker-users.mjs'])
    throw new Error('the users ConfigMap holds no users.json or broker-users.mjs');
  return { ...spec, script: data['broker-users.mjs'] };
}

/** A fresh name prefix for one suite's users. */
export function uniqueUserPrefix(label: string): string {
  return `test-${label}-${randomBytes(3).toString('hex')}`;
}

export function randomPassword(): string {
  return randomBytes(18).toString('base64url');
}

export interface ApplyResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the rendered script as the Job does: admin credentials, users file, one password file per role. */
export async function applyUsers(
  rendered: RenderedUsers,
  passwords: Record<string, string>,
  management: string,
  admin: { username: string; password: string },
  env: NodeJS.ProcessEnv = {},
): Promise<ApplyResult> {
  const dir = mkdtempSync(join(tmpdir(), 'fib-rpc-users-'));
  try {
    writeFileSync(join(dir, 'broker-users.mjs'), rendered.script);
    writeFileSync(
      join(dir, 'users.json'),
      JSON.stringify({ vhost: rendered.vhost, users: rendered.users, retired: rendered.retired }),
    );
    for (const [role, password] of Object.entries(passwords)) writeFileSync(join(dir, role), password);
    const { stdout, stderr } = await run(process.execPath, [join(dir, 'broker-users.mjs')], {
      timeout: 120_000,
      env: {
        PATH: process.env.PATH,
        RABBITMQ_MANAGEMENT_URL: management,
        RABBITMQ_ADMIN_USERNAME: admin.username,
        RABBITMQ_ADMIN_PASSWORD: admin.password,
        BROKER_USERS_FILE: join(dir, 'users.json'),
        BROKER_PASSWORDS_DIR: dir,
        BROKER_USERS_WAIT_S: '20',
        ...env,
      },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const { code, stdout, stderr } = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof code !== 'number') throw err;
    return { code, stdout: stdout ?? '', stderr: stderr ?? '' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One management API call with basic auth; the status and the parsed body (or text). */
export async function managementCall(
  management: string,
  user: { username: string; password: string },
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${management}/api/${path}`, {
    method,
    headers: {
      authorization: `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`,
      'content-type': 'application/json',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: response.status, body: parsed };
}
