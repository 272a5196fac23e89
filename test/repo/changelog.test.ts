import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

const section = (...args: string[]) =>
  spawnSync('bash', [join(root, 'scripts/changelog-section.sh'), ...args], { encoding: 'utf8' });

const SAMPLE = `# Changelog

## [Unreleased]

## [1.10.0] - 2027-02-01

### Added

- Ten.

## [1.1.0] - 2027-01-01

### Fixed

- One.
  Continued.

[Unreleased]: https://example.test/compare/v1.10.0...HEAD
[1.10.0]: https://example.test/releases/tag/v1.10.0
[1.1.0]: https://example.test/releases/tag/v1.1.0
`;

describe('scripts/changelog-section.sh (the GitHub Release text)', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'fib-changelog-'));
  const file = join(scratch, 'CHANGELOG.md');
  writeFileSync(file, SAMPLE);
  process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

  it("prints a version's section without its heading, the next section or the link definitions", () => {
    const last = section('1.1.0', file);
    assert.equal(last.status, 0, last.stderr);
    assert.equal(last.stdout, '### Fixed\n\n- One.\n  Continued.\n');
    const first = section('1.10.0', file);
    assert.equal(first.stdout, '### Added\n\n- Ten.\n');
  });

  it('matches the version literally: 1.1.0 is not 1.10.0, and dots are not wildcards', () => {
    writeFileSync(join(scratch, 'dots.md'), '## [1x1x0] - 2027-01-01\n\n- Not this.\n');
    assert.equal(section('1.1.0', join(scratch, 'dots.md')).status, 1);
    assert.doesNotMatch(section('1.1.0', file).stdout, /Ten/);
  });

  it('fails, naming the version, when the section is missing or empty', () => {
    for (const missing of ['2.0.0', 'Unreleased']) {
      const result = section(missing, file);
      assert.equal(result.status, 1);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, new RegExp(`no section \\(or an empty one\\) for version ${missing}`));
    }
  });

  it("finds the section of package.json's version in the repository's CHANGELOG.md", () => {
    const result = section(version);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^### Added$/m);
    assert.match(result.stdout, /^### Upgrade notes$/m);
    assert.doesNotMatch(result.stdout, /^## /m);
  });
});
