import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const { version } = JSON.parse(read('package.json')) as { version: string };

describe("package.json's version is the only one", () => {
  it('the RPC core package carries it, and the programs depend on exactly that version', () => {
    const core = JSON.parse(read('packages/rpc/package.json')) as { name: string; version: string };
    assert.equal(core.version, version, 'packages/rpc/package.json version');
    const { dependencies } = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
    assert.equal(dependencies[core.name], version, `package.json's dependency on ${core.name}`);
  });

  it('the chart carries it as version and appVersion', () => {
    const chart = parse(read('charts/fib-rpc/Chart.yaml')) as { version: string; appVersion: string };
    assert.equal(chart.version, version, 'Chart.yaml version: run make version');
    assert.equal(chart.appVersion, version, 'Chart.yaml appVersion: run make version');
  });

  it('the rendered manifests in k8s/ carry it too', () => {
    const labels = [...read('k8s/base/fib-rpc.yaml').matchAll(/app\.kubernetes\.io\/version: "?([^"\n]+)"?/g)];
    assert.ok(labels.length > 0, 'k8s/base/fib-rpc.yaml has version labels');
    for (const [, found] of labels) assert.equal(found, version, 'k8s/: run make version (it runs make manifests)');
  });

  it('the CHANGELOG has a dated section for it, below [Unreleased], and a link for it', () => {
    const changelog = read('CHANGELOG.md');
    const headings = [...changelog.matchAll(/^## \[([^\]]+)\](.*)$/gm)].map((m) => ({ name: m[1], rest: m[2] }));
    assert.equal(headings[0]?.name, 'Unreleased', 'the first section is [Unreleased]');
    const section = headings.find((h) => h.name === version);
    assert.ok(section, `CHANGELOG.md has no section ## [${version}]: add one before releasing`);
    assert.match(section.rest ?? '', /^ - \d{4}-\d{2}-\d{2}$/, `## [${version}] - YYYY-MM-DD`);
    assert.equal(headings[1]?.name, version, `[${version}] is the newest release`);
    assert.match(changelog, new RegExp(`^\\[${version.replaceAll('.', '\\.')}\\]: https://\\S+/v${version}$`, 'm'));
  });

  it('the image gets it from make images, and the Dockerfile restates no version of its own', () => {
    const dockerfile = read('Dockerfile');
    assert.match(dockerfile, /^ARG VERSION$/m, 'ARG VERSION without a default');
    assert.match(dockerfile, /org\.opencontainers\.image\.version="\$\{VERSION\}"/);
    assert.ok(!dockerfile.includes(version), `the Dockerfile mentions ${version} literally`);
    const deploy = read('mk/deploy.mk');
    assert.match(deploy, /^VERSION := \$\(shell node -p "require\('\.\/package\.json'\)\.version"\)$/m);
    const builds = deploy.split('\n').filter((line) => line.includes('docker build'));
    assert.ok(builds.length >= 2);
    for (const line of builds) assert.ok(line.includes('--build-arg VERSION=$(VERSION)'), line);
  });

  it("scripts/version.sh finds a chart or core package that disagrees and rewrites only their version lines, the dependency on the package and the images' tags", (t) => {
    const scratch = mkdtempSync(join(tmpdir(), 'fib-version-'));
    t.after(() => rmSync(scratch, { recursive: true, force: true }));
    mkdirSync(join(scratch, 'charts/fib-rpc'), { recursive: true });
    cpSync(join(root, 'charts/fib-rpc/Chart.yaml'), join(scratch, 'charts/fib-rpc/Chart.yaml'));
    mkdirSync(join(scratch, 'packages/rpc'), { recursive: true });
    cpSync(join(root, 'packages/rpc/package.json'), join(scratch, 'packages/rpc/package.json'));
    cpSync(join(root, 'package-lock.json'), join(scratch, 'package-lock.json'));
    const manifest = JSON.parse(read('package.json')) as Record<string, unknown>;
    writeFileSync(
      join(scratch, 'package.json'),
      `${JSON.stringify({ ...manifest, version: '7.8.9-rc.1' }, null, 2)}\n`,
    );
    const scratchJson = (path: string) => JSON.parse(readFileSync(join(scratch, path), 'utf8'));
    const script = (...args: string[]) =>
      spawnSync('bash', [join(root, 'scripts/version.sh'), ...args], {
        env: { ...process.env, VERSION_ROOT: scratch },
        encoding: 'utf8',
      });

    const stale = script('--check');
    assert.equal(stale.status, 1, stale.stdout + stale.stderr);
    assert.match(
      stale.stderr,
      /package\.json says 7\.8\.9-rc\.1, packages\/rpc\/package\.json version 0\.\d+\.\d+, package\.json @fib-rpc\/rpc .*: run make version/,
    );

    const before = readFileSync(join(scratch, 'charts/fib-rpc/Chart.yaml'), 'utf8');
    const write = script();
    assert.equal(write.status, 0, write.stderr);
    const after = readFileSync(join(scratch, 'charts/fib-rpc/Chart.yaml'), 'utf8');
    const chart = parse(after) as { version: string; appVersion: string };
    assert.equal(chart.version, '7.8.9-rc.1');
    assert.equal(chart.appVersion, '7.8.9-rc.1');
    const changed = after.split('\n').filter((line, i) => line !== before.split('\n')[i]);
    assert.deepEqual(changed, [
      'version: 7.8.9-rc.1',
      'appVersion: "7.8.9-rc.1"',
      '      image: ghcr.io/fib-rpc/fib-rpc-server:7.8.9-rc.1',
      '      image: ghcr.io/fib-rpc/fib-rpc-client:7.8.9-rc.1',
    ]);
    // The core package, the programs' dependency on it and the lock file that npm ci installs from.
    assert.equal(scratchJson('packages/rpc/package.json').version, '7.8.9-rc.1');
    assert.equal(scratchJson('package.json').dependencies['@fib-rpc/rpc'], '7.8.9-rc.1');
    const lock = scratchJson('package-lock.json');
    assert.equal(lock.packages[''].dependencies['@fib-rpc/rpc'], '7.8.9-rc.1');
    assert.equal(lock.packages['packages/rpc'].version, '7.8.9-rc.1');
    assert.equal(script('--check').status, 0);

    // A package that disagrees alone is found too, although Chart.yaml agrees.
    writeFileSync(
      join(scratch, 'packages/rpc/package.json'),
      JSON.stringify({ ...scratchJson('packages/rpc/package.json'), version: '7.8.8' }),
    );
    const stalePackage = script('--check');
    assert.equal(stalePackage.status, 1);
    assert.match(stalePackage.stderr, /packages\/rpc\/package\.json version 7\.8\.8: run make version/);

    writeFileSync(join(scratch, 'package.json'), JSON.stringify({ version: 'next' }));
    const bad = script();
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /"next" is not SemVer/);
  });
});
