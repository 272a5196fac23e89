import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));

/**
 * `make node_modules` (the first step of `make demo` and `make test`) in a scratch directory
 * with the project's package files, and `npm` replaced by `npmScript`: the rule runs as it
 * would on a newcomer's machine, without installing anything.
 */
function makeNodeModules(npmScript: string, path = process.env.PATH ?? '') {
  const dir = mkdtempSync(join(tmpdir(), 'fib-make-'));
  copyFileSync(join(root, 'package.json'), join(dir, 'package.json'));
  copyFileSync(join(root, 'package-lock.json'), join(dir, 'package-lock.json'));
  mkdirSync(join(dir, 'packages/rpc'), { recursive: true });
  copyFileSync(join(root, 'packages/rpc/package.json'), join(dir, 'packages/rpc/package.json'));
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', 'npm'), `#!/bin/sh\n${npmScript}\n`);
  chmodSync(join(dir, 'bin', 'npm'), 0o755);
  const run = spawnSync('make', ['--no-print-directory', '-f', join(root, 'Makefile'), '-C', dir, 'node_modules'], {
    env: { PATH: `${join(dir, 'bin')}:${path}`, HOME: process.env.HOME },
    encoding: 'utf8',
  });
  return { ...run, dir, output: `${run.stdout}${run.stderr}` };
}

/** What npm 11 prints for one package when it runs on a Node older than the package asks for. */
const EBADENGINE = `npm warn EBADENGINE Unsupported engine {
npm warn EBADENGINE   package: 'kubernetes-models@5.1.0',
npm warn EBADENGINE   required: { node: '>=22' },
npm warn EBADENGINE   current: { node: 'v20.20.2', npm: '11.19.1' }
npm warn EBADENGINE }`;

/** A Node older than 22 with its npm, as a fresh Debian or Ubuntu machine has, if there is one. */
function olderNode(): { node: string; npm: string } | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat('/usr/bin', '/usr/local/bin')) {
    const node = join(dir, 'node');
    if (dir.includes('node_modules') || !existsSync(node)) continue;
    const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
    const npm = join(dirname(dir), 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
    if (/^v(1\d|2[01])\./.test(version) && existsSync(npm)) return { node, npm };
  }
  return undefined;
}

describe('make node_modules on a machine whose Node is older than the project asks for', () => {
  it("replaces npm's EBADENGINE warnings with one line that says why they are harmless", () => {
    const run = makeNodeModules(
      `cat >&2 <<'EOF'\n${EBADENGINE.repeat(3)}\nnpm warn deprecated glob@7.2.3: no longer supported\nEOF\necho 'added 161 packages in 25s'`,
    );
    assert.equal(run.status, 0, run.output);
    assert.doesNotMatch(run.output, /EBADENGINE/);
    assert.match(run.output, /npm warn deprecated glob@7\.2\.3/, 'other warnings pass through');
    assert.match(run.output, /added 161 packages/);
    const notes = run.output.split('\n').filter((line) => line.startsWith('note: '));
    assert.equal(notes.length, 1);
    assert.match(notes[0] ?? '', /harmless: the project runs on its own Node 24\.\d+\.\d+ \(devDependency node\)/);
    assert.ok(existsSync(join(run.dir, 'node_modules')));
  });

  it('says nothing more when npm had no such warning, and fails when npm fails', () => {
    const quiet = makeNodeModules(`echo 'added 161 packages in 25s'`);
    assert.equal(quiet.status, 0, quiet.output);
    assert.doesNotMatch(quiet.output, /note:/);
    const failed = makeNodeModules(`echo 'npm error code E404' >&2; exit 1`);
    assert.notEqual(failed.status, 0, 'a failed npm ci fails the target');
    assert.match(failed.output, /npm error code E404/);
    assert.equal(existsSync(join(failed.dir, 'node_modules')), false);
  });

  const older = olderNode();
  it('with the real npm on the real older Node: npm ci --dry-run prints no EBADENGINE', {
    skip: older === undefined && 'no Node older than 22 with its npm on this machine',
  }, () => {
    if (older === undefined) return;
    // The real npm and lock file; --dry-run resolves and checks engines but installs nothing.
    const run = makeNodeModules(
      `exec ${older.node} ${older.npm} "$@" --dry-run`,
      `${dirname(older.node)}:/usr/bin:/bin`,
    );
    assert.equal(run.status, 0, run.output);
    assert.doesNotMatch(run.output, /EBADENGINE/);
    assert.match(run.output, /^note: npm ran on Node v(1\d|2[01])\./m);
  });
});

describe('the make targets that CI, the workflows and the README name', () => {
  const make = (...args: string[]) =>
    spawnSync('make', ['--no-print-directory', '-C', root, ...args], { encoding: 'utf8', env: process.env });

  it('make help lists fault, coverage, bench, version and ci', () => {
    const help = make('help');
    assert.equal(help.status, 0, help.stderr);
    // Without the colours make help gives a terminal.
    const text = help.stdout.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '');
    for (const target of ['fault', 'coverage', 'bench', 'version', 'ci', 'lint', 'test']) {
      assert.match(text, new RegExp(`^\\s+${target}\\s`, 'm'), `make help lacks ${target}`);
    }
  });

  it('make bench hands ARGS to the benchmark, after its peer libraries are installed', () => {
    // -n prints the recipes and runs none of them.
    const dry = make('-n', 'bench', 'ARGS=--quick --rounds 1');
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /^npm run bench -- --quick --rounds 1$/m);
  });

  it('every workflow step that runs a command runs a make target', () => {
    const workflows = readdirSync(join(root, '.github/workflows')).filter((f) => f.endsWith('.yaml'));
    assert.ok(workflows.length > 0);
    for (const file of workflows) {
      const workflow = parse(readFileSync(join(root, '.github/workflows', file), 'utf8')) as {
        jobs: Record<string, { steps: { run?: string }[] }>;
      };
      for (const job of Object.values(workflow.jobs)) {
        for (const step of job.steps) {
          if (step.run !== undefined) assert.match(step.run.trim(), /^make [a-z0-9-]+$/, `${file}: ${step.run}`);
        }
      }
    }
  });
});
