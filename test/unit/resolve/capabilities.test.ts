/**
 * What a package's files show it could do, read on the host: here, whether its code can tell a
 * CI runner from a laptop (the trigger for a second install run under the other identity).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { scanCapabilities } from '../../../src/resolve/capabilities.js';

const root = mkdtempSync(join(tmpdir(), 'phonehome-caps-'));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
async function capsOf(files: Record<string, string>, scripts: Record<string, string> = {}) {
  const dir = join(root, String(n++));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  mkdirSync(dir, { recursive: true });
  return scanCapabilities(dir, scripts);
}

describe('reads-identity', () => {
  it('CI variables, whole-environment reads and CI-detection packages, in JS, shell and python', async () => {
    const cases: [Record<string, string>, Record<string, string>?][] = [
      [{ 'a.js': "if (process.env.GITHUB_ACTIONS === 'true') go();" }],
      [{ 'a.js': 'const ci = process.env.CI;' }],
      [{ 'a.js': 'send(JSON.stringify(process.env));' }],
      [{ 'a.js': 'const k = "GIT" + "LAB_CI"; if (process.env[k]) go();' }],
      [{ 'a.js': "const isCI = require('is-ci');" }],
      [{ 'lib/x.mjs': "import ci from 'ci-info';" }],
      [{ 'run.sh': '[ -n "$RUNNER_OS" ] && curl http://x' }],
      [{ 'w.py': "import os\nif os.environ.get('BUILDKITE'): pass" }],
      [{}, { postinstall: 'test -z "$CI" || node x.js' }],
      [{ 'a.js': 'const e = process.env; for (const k in e) send(k);' }],
      [{ 'a.js': 'if (process.env.\\u0043I) go();' }],
      [{ 'a.js': "const raw = require('fs').readFileSync('/proc/self/environ');" }],
      [{ 'a.js': "if (require('os').userInfo().username === 'runner') go();" }],
      [{ 'a.js': "if (!fs.existsSync(os.homedir() + '/Desktop')) go();" }],
      [{ 'a.js': 'if (process.env.ImageOS) go();' }],
      // A file an install script runs, whatever its extension.
      [
        { 'lib/setup.dat': 'if (process.env.GITHUB_ACTIONS) go();' },
        { postinstall: 'node lib/setup.dat' },
      ],
    ];
    for (const [files, scripts] of cases)
      assert.ok(
        (await capsOf(files, scripts)).includes('reads-identity'),
        JSON.stringify([files, scripts]),
      );
  });

  it('code that reads named variables of its own only does not count', async () => {
    const caps = await capsOf(
      {
        'a.js': "const home = process.env.HOME; const p = process.env['NODE_ENV'];",
        // A request's host name is not the machine's.
        'req.js':
          "defineGetter(req, 'hostname', function hostname() { return this.get('Host'); });",
      },
      { postinstall: 'node a.js' },
    );
    assert.ok(!caps.includes('reads-identity'), caps.join(','));
  });
});

describe('reads-secrets', () => {
  it('credential files, token variables, environment dumps and wallets', async () => {
    const cases: Record<string, string>[] = [
      { 'a.js': "fs.readFileSync(path.join(os.homedir(), '.npmrc'), 'utf8')" },
      { 'a.js': 'const t = /_authToken=(.*)/.exec(rc);' },
      { 'a.js': "const key = read(home + '/.ssh/id_ed25519');" },
      { 'a.js': "read(join(home, '.aws/credentials'))" },
      { 'a.js': 'send(process.env.NPM_TOKEN);' },
      { 'a.js': 'post(JSON.stringify(process.env));' },
      { 'a.js': 'for (const [k, v] of Object.entries(process.env)) q.push(k + v);' },
      { 'steal.py': "open(os.path.expanduser('~/.git-credentials'))" },
      { 'a.js': "glob(home + '/.config/google-chrome/Default/Login Data')" },
    ];
    for (const files of cases)
      assert.ok((await capsOf(files)).includes('reads-secrets'), JSON.stringify(files));
  });

  it('an SDK that reads its own key from a variable of its own name does not count', async () => {
    const caps = await capsOf({
      'a.js': "const key = process.env.VENDOR_API_KEY; const env = { ...process.env, X: '1' };",
    });
    assert.ok(!caps.includes('reads-secrets'), caps.join(','));
  });
});

describe('files required by a path with another extension', () => {
  it('are read as the code they are', async () => {
    const caps = await capsOf({
      'index.js': "module.exports = require('./lib/core.dat');",
      'lib/core.dat': "const k = require('fs').readFileSync(home + '/.ssh/id_ed25519');",
      'lib/plain': 'eval(atob(x));',
      'main.js': "require('./lib/plain');",
    });
    assert.ok(caps.includes('reads-secrets'), caps.join(','));
    assert.ok(caps.includes('dynamic-code'), caps.join(','));
  });

  it('not outside the package', async () => {
    const caps = await capsOf({ 'index.js': "require('../../../../etc/x.dat');" });
    assert.ok(!caps.includes('reads-secrets'), caps.join(','));
  });
});

describe('obfuscated', () => {
  it('strings hidden as escaped ASCII are; a table of Unicode escapes is not', async () => {
    const hidden = Array.from({ length: 300 }, () => "'\\x68\\x74\\x74\\x70'").join('+');
    assert.ok((await capsOf({ 'a.js': `const u = ${hidden};` })).includes('obfuscated'));
    const table = Array.from({ length: 400 }, () => '\\uD83C\\uDF00').join('|');
    assert.ok(
      !(await capsOf({ 'emoji.js': `module.exports = /${table}/g;` })).includes('obfuscated'),
    );
  });
});
