/**
 * The files around the chart that no cluster runs here: shell scripts (shellcheck),
 * GitHub workflows (actionlint, actions pinned by SHA, read-only token), the Dockerfile
 * (checked by construction: stages, pinned base, non-root, node as PID 1) and compose.yaml
 * (loaded by compose-go, the library behind `docker compose config`).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { ROOT, run, tool } from './lib.ts';

function files(dir: string, suffix: string): string[] {
  const found: string[] = [];
  const walk = (path: string): void => {
    for (const entry of readdirSync(path)) {
      if (['node_modules', '.git', '.tools', 'dist'].includes(entry)) continue;
      const full = join(path, entry);
      if (statSync(full).isDirectory()) walk(full);
      else if (entry.endsWith(suffix)) found.push(full);
    }
  };
  walk(join(ROOT, dir));
  return found.sort();
}

const SCRIPTS = [...files('scripts', '.sh'), ...files('test/e2e', '.sh'), ...files('k8s', '.sh')];
const WORKFLOWS = files('.github/workflows', '.yaml');

describe('shell scripts', () => {
  it('the deployment scripts exist', () => {
    const names = SCRIPTS.map((f) => relative(ROOT, f));
    for (const expected of [
      'scripts/install-tools.sh',
      'scripts/render-manifests.sh',
      'test/e2e/kind.sh',
      'test/e2e/checks.sh',
      'k8s/create-secret.sh',
    ]) {
      assert.ok(names.includes(expected), `${expected} missing`);
    }
  });

  it('pass shellcheck', () => {
    const result = run(tool('shellcheck'), ['--severity=style', '--external-sources', ...SCRIPTS]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });

  it('are strict (set -euo pipefail)', () => {
    for (const file of SCRIPTS) {
      assert.match(readFileSync(file, 'utf8'), /^set -euo pipefail$/m, relative(ROOT, file));
    }
  });

  it('the kind e2e runs the shared checks, dumps state on failure, cleans up in a trap, and never builds a latest image', () => {
    const script = readFileSync(join(ROOT, 'test/e2e/kind.sh'), 'utf8');
    assert.match(script, /trap on_exit EXIT/);
    assert.match(script, /checks dump/);
    assert.match(script, /test\/e2e\/checks\.sh/);
    assert.match(script, /kindest\/node:v[\d.]+@sha256:[a-f0-9]{64}/);
    assert.match(script, /KEDA_CHART_VERSION:-\d+\.\d+\.\d+/);
    assert.match(script, /kind load docker-image/);
    assert.doesNotMatch(script, /:latest\b/);
  });

  it("the shared checks dump cluster state and read a Job's answer from the pod that succeeded", () => {
    const script = readFileSync(join(ROOT, 'test/e2e/checks.sh'), 'utf8');
    assert.match(script, /get all,pvc,scaledobject,triggerauthentication,hpa/);
    assert.match(script, /get events -A/);
    assert.match(script, /logs "\$pod" --all-containers/);
    assert.match(script, /ci\/e2e-values\.yaml/);
    // `kubectl logs job/X` reads the oldest pod, maybe a failed early attempt (issue 10, item 2).
    assert.doesNotMatch(script, /logs "?job\//);
    assert.match(script, /job-name=\$1" --field-selector status\.phase=Succeeded/);
  });
});

describe('GitHub workflows', () => {
  it('ci.yaml, e2e.yaml and release.yaml exist', () => {
    const names = WORKFLOWS.map((f) => relative(ROOT, f));
    assert.deepEqual(names, [
      '.github/workflows/ci.yaml',
      '.github/workflows/e2e.yaml',
      '.github/workflows/release.yaml',
    ]);
  });

  it('pass actionlint (with shellcheck on run: scripts)', () => {
    const result = run(tool('actionlint'), ['-shellcheck', tool('shellcheck'), ...WORKFLOWS]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });

  it('pin every action by full commit SHA and grant a read-only token; only the release job gets more, and only what it uses', () => {
    // What publishing needs: the GitHub Release, ghcr.io pushes, the OIDC token of keyless
    // signing, and attestations. Nothing else widens the workflow's read-only default.
    const widened: Record<string, Record<string, unknown>> = {
      'release.yaml/release': { contents: 'write', packages: 'write', 'id-token': 'write', attestations: 'write' },
    };
    for (const file of WORKFLOWS) {
      const text = readFileSync(file, 'utf8');
      const workflow = parse(text) as {
        permissions?: Record<string, string>;
        jobs: Record<string, { permissions?: unknown }>;
      };
      assert.deepEqual(workflow.permissions, { contents: 'read' }, relative(ROOT, file));
      for (const [name, job] of Object.entries(workflow.jobs)) {
        const key = `${relative(join(ROOT, '.github/workflows'), file)}/${name}`;
        assert.deepEqual(job.permissions, widened[key], `${key}: a job widens permissions`);
      }
      const uses = [...text.matchAll(/uses:\s*([^\s#]+)/g)].map((m) => m[1] ?? '');
      assert.ok(uses.length > 0);
      for (const action of uses)
        assert.match(action, /^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/, `${relative(ROOT, file)}: ${action}`);
    }
  });

  it('release.yaml runs on v* tags and by hand, checks the tag first, and a manual run is a dry run unless told otherwise', () => {
    const text = readFileSync(join(ROOT, '.github/workflows/release.yaml'), 'utf8');
    const workflow = parse(text) as {
      on: {
        push: { tags: string[] };
        workflow_dispatch: { inputs: Record<string, { description: string; type: string; default: unknown }> };
      };
      jobs: Record<string, { env: Record<string, string>; steps: { run?: string; if?: string; uses?: string }[] }>;
    };
    assert.deepEqual(workflow.on.push.tags, ['v*']);
    assert.deepEqual(workflow.on.workflow_dispatch.inputs['dry-run'], {
      description: workflow.on.workflow_dispatch.inputs['dry-run']?.description,
      type: 'boolean',
      default: true,
    });
    const job = workflow.jobs.release;
    assert.ok(job);
    assert.equal(job.env.DRY_RUN, '$' + "{{ github.event_name == 'workflow_dispatch' && inputs.dry-run }}");
    assert.equal(job.env.PLATFORMS, 'linux/amd64,linux/arm64');
    assert.equal(job.env.SIGN, 'keyless');
    assert.equal(job.env.REGISTRY, 'ghcr.io/$' + '{{ github.repository_owner }}');
    const runs = job.steps.flatMap((step) => step.run ?? []);
    assert.deepEqual(runs, ['make tag-check', 'make release', 'make github-release']);
    // What pushes (the registry login, the attestation) is skipped on a dry run; the make
    // targets read DRY_RUN themselves.
    for (const step of job.steps.filter((s) => /login-action|attest/.test(s.uses ?? '')))
      assert.equal(step.if, "env.DRY_RUN != 'true'", step.uses);
  });

  it('e2e.yaml runs the same make e2e as a developer', () => {
    assert.match(readFileSync(join(ROOT, '.github/workflows/e2e.yaml'), 'utf8'), /run: make e2e/);
  });

  it('ci.yaml runs .ci/run itself (through make ci), so GitHub and local CI cannot drift', () => {
    const workflow = parse(readFileSync(join(ROOT, '.github/workflows/ci.yaml'), 'utf8')) as {
      jobs: Record<string, { steps: { run?: string }[] }>;
    };
    const runs = Object.values(workflow.jobs).flatMap((job) => job.steps.flatMap((step) => step.run ?? []));
    assert.deepEqual(runs, ['make ci']);
    const makefile = readFileSync(join(ROOT, 'Makefile'), 'utf8');
    assert.match(makefile, /^ci:[^\n]*\n\tbash \.ci\/run$/m);
  });
});

describe('Dockerfile (checked by construction: no Docker engine here)', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const stages = [...dockerfile.matchAll(/^FROM\s+(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => ({
    platform: m[1] ?? '',
    from: m[2] ?? '',
    name: m[3] ?? '',
  }));
  const stage = (name: string): string => {
    const start = dockerfile.search(new RegExp(`^FROM\\s+(?:--platform=\\S+\\s+)?\\S+\\s+AS\\s+${name}\\s*$`, 'im'));
    assert.ok(start >= 0, `no stage ${name}`);
    const rest = dockerfile.slice(start + 1);
    const next = rest.search(/^FROM\s/m);
    return next < 0 ? rest : rest.slice(0, next);
  };

  it('has server and client targets on one runtime stage', () => {
    const names = stages.map((s) => s.name);
    for (const name of ['build', 'prod-deps', 'runtime', 'server', 'client']) assert.ok(names.includes(name), name);
    assert.equal(stages.find((s) => s.name === 'server')?.from, 'runtime');
    assert.equal(stages.find((s) => s.name === 'client')?.from, 'runtime');
  });

  it('builds and runs on one Node 24 base pinned by tag and digest', () => {
    const arg = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1] ?? '';
    assert.match(arg, /^node:24\.\d+\.\d+-[a-z]+-slim@sha256:[a-f0-9]{64}$/);
    for (const s of stages.filter((x) => ['build', 'prod-deps', 'runtime'].includes(x.name))) {
      assert.equal(s.from, '$' + '{NODE_IMAGE}', `stage ${s.name}`);
    }
  });

  it('cross-builds: dependencies and tsc on the build platform, only the runtime on the target platform', () => {
    // A global ARG before the first FROM, so that FROM lines may use the builder's value.
    const firstFrom = dockerfile.search(/^FROM\s/m);
    assert.match(dockerfile.slice(0, firstFrom), /^ARG BUILDPLATFORM$/m);
    assert.match(dockerfile.slice(0, firstFrom), /^ARG TARGETPLATFORM$/m);
    for (const name of ['build', 'prod-deps']) {
      assert.equal(stages.find((s) => s.name === name)?.platform, '$BUILDPLATFORM', `stage ${name}`);
    }
    // Explicit, not the default: buildah 1.28 would carry the build stages' platform over.
    assert.equal(stages.find((s) => s.name === 'runtime')?.platform, '$TARGETPLATFORM');
    for (const name of ['server', 'client']) {
      assert.equal(stages.find((s) => s.name === name)?.platform, '', `stage ${name} is the runtime's`);
    }
    // The runtime stage of another platform must not need emulation either.
    assert.doesNotMatch(stage('runtime'), /^RUN\s/m);
  });

  it('the runtime has production dependencies only, copied from a --omit=dev install', () => {
    assert.match(stage('prod-deps'), /npm ci --omit=dev/);
    const runtime = stage('runtime');
    assert.match(runtime, /COPY --from=prod-deps \/app\/node_modules \.\/node_modules/);
    assert.doesNotMatch(runtime, /COPY --from=build \/app\/node_modules/);
    assert.doesNotMatch(runtime, /npm (ci|install)/);
    assert.match(runtime, /ENV NODE_ENV=production/);
  });

  it('installs the RPC core as the workspace package it is: its manifest before npm ci, its build in the runtime', () => {
    // Without packages/rpc/package.json, npm ci leaves node_modules/@fib-rpc/rpc out (or fails
    // on the lockfile); without its dist/, the link in node_modules points at nothing.
    for (const name of ['build', 'prod-deps']) {
      const text = stage(name);
      const manifest = text.search(/^COPY packages\/rpc\/package\.json \.\/packages\/rpc\/$/m);
      assert.ok(manifest >= 0, `stage ${name} copies packages/rpc/package.json`);
      assert.ok(manifest < text.search(/^RUN npm ci/m), `stage ${name} copies it before npm ci`);
    }
    const runtime = stage('runtime');
    assert.match(runtime, /^COPY --from=build \/app\/packages\/rpc\/package\.json \.\/packages\/rpc\/$/m);
    assert.match(runtime, /^COPY --from=build \/app\/packages\/rpc\/dist \.\/packages\/rpc\/dist$/m);
  });

  it('the build keeps optional dependencies (the native TypeScript compiler) and runs the build script', () => {
    const build = stage('build');
    assert.match(build, /npm ci /);
    assert.doesNotMatch(build, /--omit=optional|--no-optional/);
    assert.match(build, /npm run build/);
  });

  it('runs as a numeric non-root user with OCI labels', () => {
    assert.match(stage('runtime'), /^USER 1000:1000$/m);
    for (const label of ['title', 'version', 'revision', 'created', 'licenses']) {
      assert.match(dockerfile, new RegExp(`org\\.opencontainers\\.image\\.${label}=`));
    }
  });

  it('starts node directly (PID 1 gets SIGTERM) through bin/, the only entry point', () => {
    assert.match(stage('server'), /^ENTRYPOINT \["node", "bin\/fib-rpc-server\.js"\]$/m);
    assert.match(stage('client'), /^ENTRYPOINT \["node", "bin\/fib-rpc-client\.js"\]$/m);
    assert.doesNotMatch(dockerfile, /npm (start|run start)/);
  });

  it('.dockerignore keeps node_modules, dist, .git and secrets out of the context', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8');
    assert.match(ignore, /^\*\*$/m, 'deny by default');
    for (const needed of [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.base.json',
      'src/**',
      'packages/rpc/package.json',
      'packages/rpc/tsconfig.json',
      'packages/rpc/src/**',
    ]) {
      assert.ok(ignore.includes(`!${needed}`), `${needed} must be sent to the build`);
    }
    assert.doesNotMatch(ignore, /^!(node_modules|dist|\.git|\.env)/m);
  });
});

describe('compose.yaml', () => {
  interface ComposeService {
    image?: string;
    build?: { context: string; target?: string };
    deploy?: { replicas?: number };
    ports?: { target: number; published?: string; host_ip?: string }[];
    environment?: Record<string, string | null>;
    read_only?: boolean;
    depends_on?: Record<string, { condition: string }>;
  }

  const load = (): { services: Record<string, ComposeService> } => {
    const result = run(tool('compose-validate'), [join(ROOT, 'compose.yaml')]);
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout) as { services: Record<string, ComposeService> };
  };

  it('is a valid Compose file (compose-go: schema, interpolation, normalisation)', () => {
    const project = load();
    assert.deepEqual(Object.keys(project.services).sort(), ['client', 'jaeger', 'rabbitmq', 'server']);
  });

  it('runs RabbitMQ with management, Jaeger v2 (4317/4318/16686), two servers from the Dockerfile and a client', () => {
    const { services } = load();
    assert.match(services.rabbitmq?.image ?? '', /^rabbitmq:4\.\d+\.\d+-management$/);
    assert.notEqual(services.rabbitmq?.environment?.RABBITMQ_DEFAULT_USER, 'guest');
    assert.match(services.jaeger?.image ?? '', /^jaegertracing\/jaeger:2\.\d+\.\d+$/);
    assert.deepEqual(services.jaeger?.ports?.map((p) => p.target).sort(), [16686, 4317, 4318]);
    assert.equal(services.server?.build?.target, 'server');
    assert.equal(services.server?.deploy?.replicas, 2);
    assert.equal(services.server?.read_only, true);
    assert.equal(services.client?.build?.target, 'client');
    assert.equal(services.server?.depends_on?.rabbitmq?.condition, 'service_healthy');
    for (const name of ['server', 'client'] as const) {
      const env = services[name]?.environment ?? {};
      assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://jaeger:4318');
      assert.equal(env.OTEL_SERVICE_NAME, `fib-rpc-${name}`);
      assert.match(env.AMQP_URL ?? '', /^amqp:\/\/[^:]+:[^@]+@rabbitmq:5672\//);
    }
  });

  it('rejects an invalid file (the loader is not a no-op)', () => {
    const bad = readFileSync(join(ROOT, 'compose.yaml'), 'utf8').replace(
      'read_only: true',
      'read_only: true\n    replicaz: 2',
    );
    const result = run(
      'bash',
      [
        '-c',
        `f=$(mktemp --suffix=.yaml) && cat > "$f" && "${tool('compose-validate')}" "$f"; s=$?; rm -f "$f"; exit $s`,
      ],
      bad,
    );
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /replicaz/);
  });
});
