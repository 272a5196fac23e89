import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { configEnvVars } from '../../src/cmd/common/config.ts';
import { USAGE } from '../../src/cmd/fib-rpc-client/cli.ts';
import { EXIT } from '../../src/cmd/fib-rpc-client/exit-codes.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents every configuration variable the schema reads', () => {
    for (const name of configEnvVars) assert.match(readme, new RegExp(`\\| \`${name}\` \\|`), name);
  });

  it('documents every client option and exit code', () => {
    for (const option of USAGE.matchAll(/--[a-z]+/g)) {
      if (option[0] !== '--help') assert.ok(readme.includes(`\`${option[0]}`), option[0]);
    }
    for (const code of Object.values(EXIT)) assert.match(readme, new RegExp(`\\| ${code} \\|`), `exit code ${code}`);
  });
});
