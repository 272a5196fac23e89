/**
 * The production dependency tree is plain JavaScript. The Dockerfile installs it on the build
 * machine's platform (its prod-deps stage runs on $BUILDPLATFORM) and copies node_modules into
 * the image of the target platform, amd64 into arm64 for instance. That is right only while no
 * package of the `npm ci --omit=dev` tree is platform-specific (`os`, `cpu` or `libc` in
 * package-lock.json: a prebuilt binary for one platform, usually an optional dependency) or
 * has an install script (a native addon that node-gyp compiles for the installing machine, or
 * a download of a binary for it). Either one would be right for the build machine and wrong in
 * the image.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

interface LockEntry {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  os?: string[];
  cpu?: string[];
  libc?: string[];
  hasInstallScript?: boolean;
}
interface Lockfile {
  lockfileVersion: number;
  packages: Record<string, LockEntry>;
}

// Production packages whose install script is known to leave nothing platform-specific behind.
// Each needs a reason, and package.json's allowScripts must deny it (npm ci in the Dockerfile
// runs with --ignore-scripts as well).
const HARMLESS_INSTALL_SCRIPTS: Record<string, string> = {
  'node_modules/protobufjs':
    'postinstall (scripts/postinstall.js) only warns when a dependent pins another version scheme; it builds and downloads nothing',
};

const packageName = (path: string): string => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);

/** The packages of `npm ci --omit=dev`: every lockfile entry but the root and the dev-only ones. */
function productionTree(lock: Lockfile): [string, LockEntry][] {
  return Object.entries(lock.packages).filter(([path, entry]) => path !== '' && entry.dev !== true);
}

/** Why each production package would be wrong when copied to another platform. */
function platformBound(lock: Lockfile, harmless: Record<string, string> = HARMLESS_INSTALL_SCRIPTS): string[] {
  const found: string[] = [];
  for (const [path, entry] of productionTree(lock)) {
    for (const field of ['os', 'cpu', 'libc'] as const) {
      if (entry[field] !== undefined) found.push(`${path}: ${field} ${JSON.stringify(entry[field])}`);
    }
    if (entry.hasInstallScript === true && !(path in harmless)) found.push(`${path}: has an install script`);
  }
  return found;
}

const read = (path: string) => readFileSync(join(root, path), 'utf8');
const lock = JSON.parse(read('package-lock.json')) as Lockfile;

describe('production dependencies can be copied across platforms (the Dockerfile cross-builds)', () => {
  it('package-lock.json is a v3 lockfile with the dev flags this check reads', () => {
    assert.equal(lock.lockfileVersion, 3);
    const production = productionTree(lock).map(([path]) => path);
    assert.ok(production.includes('node_modules/amqplib'), 'amqplib is a production dependency');
    assert.ok(!production.includes('node_modules/typescript'), 'typescript is dev-only');
  });

  it('no production package is platform-specific or has an install script', () => {
    assert.deepEqual(
      platformBound(lock),
      [],
      'a production dependency is native or platform-specific: the arm64 image would get the build machine’s copy',
    );
  });

  it('the known harmless install scripts are still there, and package.json denies them', () => {
    const { allowScripts } = JSON.parse(read('package.json')) as { allowScripts?: Record<string, boolean> };
    for (const path of Object.keys(HARMLESS_INSTALL_SCRIPTS)) {
      const entry = lock.packages[path];
      assert.ok(entry && entry.dev !== true, `${path} is no longer a production package: drop it from the list`);
      assert.equal(entry.hasInstallScript, true, `${path} has no install script any more: drop it from the list`);
      assert.equal(allowScripts?.[packageName(path)], false, `package.json allowScripts must deny ${path}`);
    }
  });

  it('the check finds what it looks for (dev-only platform packages are ignored)', () => {
    // The real lockfile has platform-specific dev packages (biome's and tsc's binaries).
    assert.ok(Object.values(lock.packages).some((entry) => entry.dev === true && entry.cpu !== undefined));
    const planted: Lockfile = {
      lockfileVersion: 3,
      packages: {
        '': {},
        'node_modules/native-addon': { version: '1.0.0', hasInstallScript: true },
        'node_modules/prebuilt-linux-x64': { version: '1.0.0', optional: true, os: ['linux'], cpu: ['x64'] },
        'node_modules/prebuilt-musl': { version: '1.0.0', libc: ['musl'] },
        'node_modules/dev-tool-linux-x64': { version: '1.0.0', dev: true, optional: true, cpu: ['x64'] },
        'node_modules/plain': { version: '1.0.0' },
      },
    };
    assert.deepEqual(platformBound(planted), [
      'node_modules/native-addon: has an install script',
      'node_modules/prebuilt-linux-x64: os ["linux"]',
      'node_modules/prebuilt-linux-x64: cpu ["x64"]',
      'node_modules/prebuilt-musl: libc ["musl"]',
    ]);
  });
});
