import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** A checkout with just what the release scripts read, at VERSION; a fake gh that logs its arguments. */
function scratch(version: string): { dir: string; env: NodeJS.ProcessEnv; ghLog: string } {
  const dir = mkdtempSync(join(tmpdir(), 'fib-release-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'charts/fib-rpc'), { recursive: true });
  // The core package's version places, which scripts/version.sh --check compares too.
  const core = '@fib-rpc/rpc';
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ version, dependencies: { [core]: version } }));
  mkdirSync(join(dir, 'packages/rpc'), { recursive: true });
  writeFileSync(join(dir, 'packages/rpc/package.json'), JSON.stringify({ name: core, version }));
  const lock = { packages: { '': { dependencies: { [core]: version } }, 'packages/rpc': { name: core, version } } };
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(lock));
  writeFileSync(join(dir, 'charts/fib-rpc/Chart.yaml'), `version: ${version}\nappVersion: "${version}"\n`);
  writeFileSync(
    join(dir, 'CHANGELOG.md'),
    `## [Unreleased]\n\n## [${version}] - 2027-01-01\n\n### Fixed\n\n- A thing.\n`,
  );
  mkdirSync(join(dir, 'bin'));
  const ghLog = join(dir, 'gh.log');
  // The notes file is temporary: the fake keeps a copy of it, the one after --notes-file.
  const fakeGh = [
    '#!/usr/bin/env bash',
    `printf '%s\\n' "$@" >"${ghLog}"`,
    `while (($#)); do if [[ $1 == --notes-file ]]; then cat "$2" >"${ghLog}.notes"; fi; shift; done`,
  ];
  writeFileSync(join(dir, 'bin/gh'), `${fakeGh.join('\n')}\n`);
  chmodSync(join(dir, 'bin/gh'), 0o755);
  const env: NodeJS.ProcessEnv = { ...process.env, VERSION_ROOT: dir, PATH: `${join(dir, 'bin')}:${process.env.PATH}` };
  for (const name of ['RELEASE_TAG', 'GITHUB_REF_TYPE', 'GITHUB_REF_NAME', 'DRY_RUN', 'RELEASE_DIR']) delete env[name];
  return { dir, env, ghLog };
}

const script = (name: string, env: NodeJS.ProcessEnv) =>
  spawnSync('bash', [join(root, 'scripts', name)], { env, encoding: 'utf8' });

describe("scripts/tag-check.sh (make tag-check, the release workflow's first step)", () => {
  it("passes on the tag v + package.json's version, from RELEASE_TAG or the workflow's tag ref", () => {
    const { env } = scratch('1.2.3');
    const direct = script('tag-check.sh', { ...env, RELEASE_TAG: 'v1.2.3' });
    assert.equal(direct.status, 0, direct.stderr);
    assert.match(direct.stdout, /CHANGELOG\.md has a section for 1\.2\.3/);
    const workflow = script('tag-check.sh', { ...env, GITHUB_REF_TYPE: 'tag', GITHUB_REF_NAME: 'v1.2.3' });
    assert.equal(workflow.status, 0, workflow.stderr);
  });

  it('refuses another tag, and no tag unless it is a dry run', () => {
    const { env } = scratch('1.2.3');
    const other = script('tag-check.sh', { ...env, GITHUB_REF_TYPE: 'tag', GITHUB_REF_NAME: 'v1.2.4' });
    assert.equal(other.status, 1);
    assert.match(other.stderr, /tag v1\.2\.4 is not v1\.2\.3/);
    // A branch ref is no tag: a manual run from main releases nothing unless it is a dry run.
    const branch = script('tag-check.sh', { ...env, GITHUB_REF_TYPE: 'branch', GITHUB_REF_NAME: 'main' });
    assert.equal(branch.status, 1);
    assert.match(branch.stderr, /no tag: a release runs on its tag v1\.2\.3/);
    const dry = script('tag-check.sh', { ...env, GITHUB_REF_TYPE: 'branch', GITHUB_REF_NAME: 'main', DRY_RUN: 'true' });
    assert.equal(dry.status, 0, dry.stderr);
  });

  it('refuses a version that Chart.yaml or CHANGELOG.md does not carry', () => {
    const { dir, env } = scratch('1.2.3');
    writeFileSync(join(dir, 'CHANGELOG.md'), '## [Unreleased]\n\n## [1.2.2] - 2026-12-01\n\n- Older.\n');
    const changelog = script('tag-check.sh', { ...env, RELEASE_TAG: 'v1.2.3' });
    assert.equal(changelog.status, 1);
    assert.match(changelog.stderr, /no section .* for version 1\.2\.3/);
    writeFileSync(join(dir, 'charts/fib-rpc/Chart.yaml'), 'version: 1.2.2\nappVersion: "1.2.2"\n');
    const chart = script('tag-check.sh', { ...env, RELEASE_TAG: 'v1.2.3' });
    assert.equal(chart.status, 1);
    assert.match(chart.stderr, /run make version/);
  });
});

describe('scripts/github-release.sh (make github-release)', () => {
  it('creates the release of the existing tag with the CHANGELOG section as its text and the manifests attached', () => {
    const { dir, env, ghLog } = scratch('1.2.3');
    mkdirSync(join(dir, 'release'));
    writeFileSync(join(dir, 'release/fib-rpc-k8s-1.2.3.yaml'), 'kind: List\n');
    const result = script('github-release.sh', env);
    assert.equal(result.status, 0, result.stderr);
    const args = readFileSync(ghLog, 'utf8').trimEnd().split('\n');
    assert.deepEqual(args.slice(0, 4), ['release', 'create', 'v1.2.3', '--verify-tag']);
    assert.ok(args.includes('--title') && args.includes('fib-rpc 1.2.3'));
    assert.ok(!args.includes('--prerelease'));
    assert.equal(
      args.at(-1),
      `${join(dir, 'release/fib-rpc-k8s-1.2.3.yaml')}#fib-rpc-k8s-1.2.3.yaml (plain manifests, images by digest)`,
    );
    assert.equal(readFileSync(`${ghLog}.notes`, 'utf8'), '### Fixed\n\n- A thing.\n');
  });

  it('marks a pre-release version, and on a dry run prints what it would do without calling gh', () => {
    const { dir, env, ghLog } = scratch('2.0.0-rc.1');
    mkdirSync(join(dir, 'out'));
    writeFileSync(join(dir, 'out/fib-rpc-k8s-2.0.0-rc.1.yaml'), 'kind: List\n');
    const dry = script('github-release.sh', { ...env, RELEASE_DIR: join(dir, 'out'), DRY_RUN: 'true' });
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /dry run; would run: gh release create v2\.0\.0-rc\.1 --verify-tag .* --prerelease /);
    assert.match(dry.stdout, /- A thing\./);
    assert.throws(() => readFileSync(ghLog), /ENOENT/);
  });

  it('fails without the manifests that make release writes', () => {
    const { env } = scratch('1.2.3');
    const result = script('github-release.sh', env);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /fib-rpc-k8s-1\.2\.3\.yaml is missing or empty: make release writes it/);
  });
});
