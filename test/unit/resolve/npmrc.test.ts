/**
 * Reading the user's npm configuration as npm does: the ini format, `${VAR}` expansion, the
 * layers (global, user, project, environment, flag) with later ones winning, and only the
 * settings that say where and how to fetch.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PhonehomeError } from '../../../src/core/errors.js';
import {
  fetchOptions,
  loadNpmConfig,
  parseNpmrc,
  registryOrigins,
} from '../../../src/resolve/npmrc.js';

describe('parseNpmrc', () => {
  it('reads key = value lines, skipping comments, sections and lines without a value', () => {
    const text = [
      '; a comment',
      '# another',
      '[section]',
      'registry = https://npm.corp.example/',
      '  strict-ssl=false  ',
      'fetch-retries = 5',
      'just-a-word',
      '',
      '//npm.corp.example/:_authToken=abc=def',
    ].join('\r\n');
    assert.deepEqual(parseNpmrc(text, 'x'), {
      registry: 'https://npm.corp.example/',
      'strict-ssl': false,
      'fetch-retries': '5',
      // Only the first `=` separates: a token may hold more.
      '//npm.corp.example/:_authToken': 'abc=def',
    });
  });

  it('unquotes values and reads true and false as booleans', () => {
    assert.deepEqual(
      parseNpmrc(`a = "quoted value"\nb = 'single'\nc = true\nd = "false"\ne = TRUE`, 'x'),
      { a: 'quoted value', b: 'single', c: true, d: false, e: 'TRUE' },
    );
  });

  it('collects key[] lines into a list, a later plain key replaces it', () => {
    assert.deepEqual(parseNpmrc('ca[] = one\nca[] = two\nnoproxy[] = a', 'x'), {
      ca: ['one', 'two'],
      noproxy: ['a'],
    });
    assert.deepEqual(parseNpmrc('ca[] = one\nca = two', 'x'), { ca: 'two' });
  });

  describe('${VAR} expansion', () => {
    const VAR = 'PHONEHOME_TEST_NPMRC_TOKEN';
    before(() => {
      process.env[VAR] = 's3cret';
    });
    after(() => {
      delete process.env[VAR];
    });

    it('expands in keys and values; a backslash keeps it literal', () => {
      assert.deepEqual(
        parseNpmrc(
          [
            `//reg.example/:_authToken = \${${VAR}}`,
            `//\${${VAR}}.example/:always-auth = true`,
            `literal = \\\${${VAR}}`,
            `escaped-backslash = \\\\\${${VAR}}`,
          ].join('\n'),
          'x',
        ),
        {
          '//reg.example/:_authToken': 's3cret',
          '//s3cret.example/:always-auth': true,
          literal: `\${${VAR}}`,
          'escaped-backslash': '\\s3cret',
        },
      );
    });

    it('an unset variable is a usage error naming the file and the variable', () => {
      assert.throws(
        () => parseNpmrc('token = ${PHONEHOME_TEST_SURELY_UNSET}', '/home/u/.npmrc'),
        (e: unknown) =>
          e instanceof PhonehomeError &&
          e.code === 'EUSAGE' &&
          e.message.includes('/home/u/.npmrc') &&
          e.message.includes('PHONEHOME_TEST_SURELY_UNSET'),
      );
    });
  });
});

describe('loadNpmConfig', () => {
  let root: string;
  let project: string;
  let globalrc: string;
  let userrc: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'phonehome-npmrc-'));
    project = join(root, 'project');
    mkdirSync(join(project, 'src', 'deep'), { recursive: true });
    writeFileSync(join(project, 'package.json'), '{}');
    globalrc = join(root, 'global-npmrc');
    userrc = join(root, 'user-npmrc');
    writeFileSync(
      globalrc,
      'registry = https://global.example/\nproxy = http://proxy.global:3128\nfetch-retries = 1\n',
    );
    writeFileSync(
      userrc,
      'registry = https://user.example/\n@corp:registry = https://npm.corp.example/\n//npm.corp.example/:_authToken = tok\nfetch-retries = 2\n',
    );
    writeFileSync(
      join(project, '.npmrc'),
      'registry = https://project.example/\nignore-scripts = false\nscript-shell = /bin/evil\nfetch-retries = 3\n',
    );
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    npm_config_globalconfig: globalrc,
    npm_config_userconfig: userrc,
    ...extra,
  });

  it('merges global, user and project files, later ones winning, fetch settings only', () => {
    assert.deepEqual(loadNpmConfig({ cwd: project, env: env() }), {
      registry: 'https://project.example/',
      proxy: 'http://proxy.global:3128',
      'fetch-retries': '3',
      '@corp:registry': 'https://npm.corp.example/',
      '//npm.corp.example/:_authToken': 'tok',
    });
  });

  it('finds the project .npmrc from a folder inside the project', () => {
    assert.equal(
      loadNpmConfig({ cwd: join(project, 'src', 'deep'), env: env() }).registry,
      'https://project.example/',
    );
  });

  it('npm_config_* variables (any case) win over the files, and --registry over everything', () => {
    const vars = env({
      npm_config_registry: 'https://env.example/',
      NPM_CONFIG_HTTPS_PROXY: 'http://proxy.env:8080',
      npm_config_strict_ssl: 'false',
      npm_config_ignore_scripts: 'true',
    });
    const fromEnv = loadNpmConfig({ cwd: project, env: vars });
    assert.equal(fromEnv.registry, 'https://env.example/');
    assert.equal(fromEnv['https-proxy'], 'http://proxy.env:8080');
    assert.equal(fromEnv['strict-ssl'], false);
    assert.equal('ignore-scripts' in fromEnv, false, 'what runs is never configurable');
    assert.equal('globalconfig' in fromEnv, false);
    assert.equal(
      loadNpmConfig({ cwd: project, env: vars, registry: 'https://flag.example/' }).registry,
      'https://flag.example/',
    );
  });

  it('reads the config file locations in upper case too, and skips files that are not there', () => {
    assert.deepEqual(
      loadNpmConfig({
        cwd: root,
        env: { NPM_CONFIG_GLOBALCONFIG: join(root, 'absent'), NPM_CONFIG_USERCONFIG: userrc },
      }),
      {
        registry: 'https://user.example/',
        'fetch-retries': '2',
        '@corp:registry': 'https://npm.corp.example/',
        '//npm.corp.example/:_authToken': 'tok',
      },
    );
  });
});

describe('registryOrigins', () => {
  it('the default and every scope registry, as origin and path, npmjs always included', () => {
    assert.deepEqual(
      registryOrigins({
        registry: 'https://npm.corp.example/api/npm/',
        '@corp:registry': 'https://npm.corp.example/api/npm/',
        '@other:registry': 'http://127.0.0.1:4873/',
        '//npm.corp.example/:_authToken': 'https://not.a.registry/',
        proxy: 'http://proxy.example:3128/',
      }),
      [
        'https://npm.corp.example/api/npm/',
        'http://127.0.0.1:4873/',
        'https://registry.npmjs.org/',
      ],
    );
  });

  it('drops a query, a fragment and credentials; skips what is not a URL', () => {
    assert.deepEqual(
      registryOrigins({
        registry: 'https://user:pw@reg.example/base/?x=1#f',
        '@a:registry': 'not a url',
      }),
      ['https://reg.example/base/', 'https://registry.npmjs.org/'],
    );
    assert.deepEqual(registryOrigins({}), ['https://registry.npmjs.org/']);
  });
});

describe('fetchOptions', () => {
  it('camel-cases as npm flattens, and keeps scope and //host keys as they are', () => {
    assert.deepEqual(
      fetchOptions({
        registry: 'https://r.example/',
        'strict-ssl': false,
        'fetch-retry-mintimeout': '100',
        noproxy: ['a.example', 'b.example'],
        '@corp:registry': 'https://c.example/',
        '//c.example/:_authToken': 'tok',
      }),
      {
        registry: 'https://r.example/',
        strictSSL: false,
        fetchRetryMintimeout: '100',
        noProxy: 'a.example,b.example',
        '@corp:registry': 'https://c.example/',
        '//c.example/:_authToken': 'tok',
      },
    );
    assert.equal(fetchOptions({ 'strict-ssl': 'false' }).strictSSL, false);
    assert.equal(fetchOptions({ 'strict-ssl': true }).strictSSL, true);
  });

  it('reads a cafile into one entry per certificate', () => {
    const dir = mkdtempSync(join(tmpdir(), 'phonehome-cafile-'));
    try {
      const cert = (n: number) => `-----BEGIN CERTIFICATE-----\nMII${n}\n-----END CERTIFICATE-----`;
      writeFileSync(join(dir, 'ca.pem'), `${cert(1)}\n\n${cert(2)}\n`);
      assert.deepEqual(fetchOptions({ cafile: join(dir, 'ca.pem') }).ca, [cert(1), cert(2)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
