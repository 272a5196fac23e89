/**
 * @fib-rpc/rpc as a stranger gets it: `npm pack` of packages/rpc, the tarball installed into a
 * scratch project in a temporary directory that holds nothing else (its other packages come
 * from the npm registry), a typed call type-checked there by tsc, and run against the broker.
 * Needs the package built (npm test builds first) and the registry (or npm's cache).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AMQP_URL, BrokerAdmin, uniqueQueue } from '../support/broker.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkgDir = join(root, 'packages/rpc');
const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  dependencies: Record<string, string>;
};
const devVersions = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies as Record<
  string,
  string
>;

/** Runs a command to the end, within `timeoutMs`; its failure says what it printed. */
function run(command: string, args: string[], cwd: string, timeoutMs = 240_000, env: NodeJS.ProcessEnv = process.env) {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  assert.equal(
    result.status,
    0,
    `${command} ${args.join(' ')} exited ${result.status ?? result.signal}:\n${result.stdout}\n${result.stderr}`,
  );
  return result.stdout;
}

const npm = (args: string[], cwd: string) => run('npm', args, cwd);

let scratch: string;
let admin: BrokerAdmin;
let packed: { filename: string; size: number; unpackedSize: number; files: Array<{ path: string }> };

before(async () => {
  admin = await BrokerAdmin.open();
  scratch = mkdtempSync(join(tmpdir(), 'fib-rpc-pack-'));
  // Nothing above the scratch project may hand it a package: Node would look there too.
  for (let dir = dirname(scratch); ; dir = dirname(dir)) {
    assert.ok(!existsSync(join(dir, 'node_modules')), `${dir}/node_modules would leak into the scratch project`);
    if (dirname(dir) === dir) break;
  }
  [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', scratch], pkgDir));
});

after(async () => {
  await admin?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('the packed package, installed where there is no other code', () => {
  it('packs the build, its declarations, its sources and README, and no tests', () => {
    const paths = packed.files.map((f) => f.path);
    for (const needed of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'src/index.ts']) {
      assert.ok(paths.includes(needed), `${needed} in ${paths.join(', ')}`);
    }
    assert.ok(!paths.some((p) => p.startsWith('test/') || p.endsWith('.tsbuildinfo')), paths.join(', '));
    process.stdout.write(
      `# packed ${packed.filename}: ${packed.size} bytes, ${packed.unpackedSize} unpacked, ${paths.length} files\n`,
    );
  });

  it('installs with amqplib and @opentelemetry/api alone, type-checks a typed call and makes it', async () => {
    const queue = admin.track(uniqueQueue('packed'));
    writeFileSync(
      join(scratch, 'package.json'),
      JSON.stringify({
        name: 'scratch',
        private: true,
        type: 'module',
        dependencies: { [manifest.name]: `file:./${packed.filename}` },
        devDependencies: { typescript: devVersions.typescript, '@types/node': devVersions['@types/node'] },
      }),
    );
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline'], scratch);

    // What the package brings at run time: itself and its two dependencies, nothing else.
    const tree = npm(['ls', '--omit=dev', '--all', '--parseable'], scratch)
      .trim()
      .split('\n')
      .slice(1)
      .map((path) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length))
      .sort();
    assert.deepEqual(tree, [manifest.name, ...Object.keys(manifest.dependencies)].sort());
    const bytes = tree
      .map((name) => Number(run('du', ['-sb', join(scratch, 'node_modules', name)], scratch).split('\t')[0]))
      .reduce((a, b) => a + b, 0);
    process.stdout.write(`# installed: ${tree.length} packages, ${bytes} bytes (du -sb of each)\n`);

    writeFileSync(
      join(scratch, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'es2024',
          module: 'nodenext',
          strict: true,
          noEmit: true,
          allowImportingTsExtensions: true,
          erasableSyntaxOnly: true,
          types: ['node'],
        },
        include: ['*.ts'],
      }),
    );
    writeFileSync(
      join(scratch, 'greet.ts'),
      `import { defineMethod, implement, InvalidRequestError, RpcClient, RpcServer, type RpcError } from '${manifest.name}';

const greet = defineMethod<{ name: string }, { text: string }>({
  name: 'greet',
  parse(params) {
    const { name } = (params ?? {}) as { name?: unknown };
    if (typeof name !== 'string') throw new InvalidRequestError('name must be a string');
    return { name };
  },
});

const url = process.env.AMQP_URL!;
const queue = process.env.QUEUE!;
await using server = new RpcServer({ url, queue, methods: [implement(greet, ({ name }) => ({ text: 'hello ' + name }))] });
await server.start();
await using client = await RpcClient.connect({ url, queue });
const { result } = await client.call(greet, { name: 'ada' });
const text: string = result.text;
// The result is typed by the definition: a field it lacks is an error for tsc.
// @ts-expect-error
result.missing;
let refused: RpcError | undefined;
try {
  await client.call('greet', { name: 1 });
} catch (err) {
  refused = err as RpcError;
}
console.log(JSON.stringify({ text, refused: refused?.code }));
`,
    );
    const tsc = join(scratch, 'node_modules/typescript/bin/tsc');
    run(process.execPath, [tsc, '-p', 'tsconfig.json'], scratch);

    // A type error is found, so the check above is a check.
    writeFileSync(join(scratch, 'wrong.ts'), `import { RpcClient } from '${manifest.name}';\nnew RpcClient({});\n`);
    const wrong = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: scratch, encoding: 'utf8' });
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stdout, /wrong\.ts.*url/s);
    rmSync(join(scratch, 'wrong.ts'));

    const out = run(process.execPath, ['greet.ts'], scratch, 30_000, {
      PATH: process.env.PATH,
      AMQP_URL,
      QUEUE: queue,
    });
    assert.deepEqual(JSON.parse(out.trim()), { text: 'hello ada', refused: 'INVALID_REQUEST' });
  });
});
