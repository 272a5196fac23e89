/**
 * The release's metadata agrees with itself: the chart's Artifact Hub annotations with the
 * CHANGELOG, values.yaml and package.json; every link with the project's one home.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string; license: string };
const chart = parse(read('charts/fib-rpc/Chart.yaml')) as {
  home: string;
  sources: string[];
  icon: string;
  annotations: Record<string, string>;
};
const values = parse(read('charts/fib-rpc/values.yaml')) as Record<
  string,
  { image: { repository: string; tag: string } }
>;
const annotation = <T>(name: string): T => {
  const text = chart.annotations[name];
  assert.ok(text, `Chart.yaml has no annotation ${name}`);
  return parse(text) as T;
};

/** The entries of one CHANGELOG section, as Artifact Hub's kinds; "Upgrade notes" is not a kind. */
function changelogEntries(version: string): { kind: string; description: string }[] {
  const text = read('CHANGELOG.md');
  const start = text.indexOf(`\n## [${version}]`);
  assert.ok(start >= 0, `CHANGELOG.md has no section for ${version}`);
  const end = text.indexOf('\n## ', start + 1);
  const section = text.slice(start, end < 0 ? undefined : end);
  const kinds = new Set(['added', 'changed', 'deprecated', 'removed', 'fixed', 'security']);
  const entries: { kind: string; description: string }[] = [];
  let kind: string | undefined;
  for (const line of section.split('\n')) {
    const heading = /^### (.+)$/.exec(line);
    if (heading) kind = kinds.has(heading[1]?.toLowerCase() ?? '') ? heading[1]?.toLowerCase() : undefined;
    else if (kind && line.startsWith('- ')) entries.push({ kind, description: line.slice(2) });
    else if (kind && line.startsWith('  ') && entries.length > 0) {
      const last = entries.at(-1);
      if (last) last.description += ` ${line.trim()}`;
    }
  }
  return entries;
}

describe('the chart metadata', () => {
  it("artifacthub.io/changes are the CHANGELOG section's entries, word for word", () => {
    const entries = changelogEntries(pkg.version);
    assert.ok(entries.length > 0);
    assert.deepEqual(
      annotation<{ kind: string; description: string }[]>('artifacthub.io/changes'),
      entries,
      "copy this version's CHANGELOG entries into Chart.yaml's artifacthub.io/changes",
    );
  });

  it("artifacthub.io/images lists the images a default install runs: the project's at the version, the others at values.yaml's tags", () => {
    const images = annotation<{ name: string; image: string; platforms?: string[] }[]>('artifacthub.io/images');
    const registry = 'ghcr.io/fib-rpc';
    assert.deepEqual(
      images.map((i) => i.image),
      [
        `${registry}/fib-rpc-server:${pkg.version}`,
        `${registry}/fib-rpc-client:${pkg.version}`,
        `${values.rabbitmq?.image.repository}:${values.rabbitmq?.image.tag}`,
        `${values.jaeger?.image.repository}:${values.jaeger?.image.tag}`,
      ],
    );
    for (const own of images.slice(0, 2)) assert.deepEqual(own.platforms, ['linux/amd64', 'linux/arm64'], own.name);
  });

  it('names the license of package.json and LICENSE', () => {
    assert.equal(chart.annotations['artifacthub.io/license'], pkg.license);
    assert.equal(pkg.license, 'Apache-2.0');
    const license = read('LICENSE');
    assert.match(license, /^\n {33}Apache License\n {27}Version 2\.0, January 2004\n/);
    assert.match(license, /^ {3}Copyright 2026 The fib-rpc Authors$/m);
  });

  it('has a home, its sources and an icon in the repository', () => {
    assert.equal(chart.home, 'https://github.com/fib-rpc/fib-rpc');
    assert.deepEqual(chart.sources, [chart.home]);
    const icon = `https://raw.githubusercontent.com/${chart.home.replace('https://github.com/', '')}/main/`;
    assert.ok(chart.icon.startsWith(icon), chart.icon);
    assert.ok(existsSync(join(root, chart.icon.slice(icon.length))), `${chart.icon} is not in the repository`);
  });
});

describe("the project's one home", () => {
  const documents = [
    'README.md',
    'CHANGELOG.md',
    'SECURITY.md',
    'docs/versioning.md',
    'charts/fib-rpc/Chart.yaml',
    'charts/fib-rpc/README.md.gotmpl',
  ];
  const repo = new URL(chart.home).pathname.slice(1);

  it("every link to GitHub and every ghcr.io reference names the chart's home and its registry", () => {
    for (const file of documents) {
      const text = read(file);
      for (const [url, path] of text.matchAll(
        /https:\/\/(?:github\.com|raw\.githubusercontent\.com)\/([\w.-]+\/[\w.-]+)/g,
      ))
        assert.equal(path?.replace(/\.+$/, ''), repo, `${file}: ${url}`);
      for (const [ref, owner] of text.matchAll(/ghcr\.io\/([\w.-]+)/g))
        assert.equal(owner, repo.split('/')[0], `${file}: ${ref}`);
    }
  });
});
