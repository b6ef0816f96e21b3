import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { PhonehomeError } from '../../../src/core/errors.js';
import { matchesDestination, parseDestination } from '../../../src/policy/destination.js';
import {
  findPolicyFile,
  loadPolicy,
  shippedDir,
  shippedIndicators,
  shippedKnownEgress,
} from '../../../src/policy/load.js';
import {
  packageInScope,
  parseDeclaration,
  parsePackageScope,
  parsePolicyLayer,
} from '../../../src/policy/parse.js';
import { targetOf } from '../../../src/policy/indicators.js';
import { readStructured } from '../../../src/policy/source.js';

const indicatorIds = () => shippedIndicators().map((i) => i.id);
const problemsOf = (yaml: string, file = 'phonehome.policy.yaml') =>
  parsePolicyLayer(readStructured(file, yaml), indicatorIds()).problems;

describe('destination patterns', () => {
  it('parse names, wildcards, ports, ranges, IPs, CIDRs and IPv6 in brackets', () => {
    for (const ok of [
      'example.com',
      'EXAMPLE.com.',
      '*.example.com:443',
      'a.example:8000-8100',
      '10.0.0.0/8',
      '10.1.2.3:53',
      '[fd00::1]:53',
      'fd00::/8',
      '[2001:db8::/32]:443',
      '*',
      '*:443',
      'metadata',
    ])
      assert.equal(typeof parseDestination(ok), 'object', ok);
    for (const bad of [
      '',
      'exa mple.com',
      'example.com:0',
      'example.com:70000',
      'a.com:9-3',
      '10.0.0.0/33',
      'a*.example.com',
      'example.com:http',
      'ex/ample',
    ])
      assert.equal(typeof parseDestination(bad), 'string', bad);
  });

  it('a name pattern does not match an address and an address pattern does not match a name', () => {
    const name = parseDestination('example.com') as Exclude<
      ReturnType<typeof parseDestination>,
      string
    >;
    const ip = parseDestination('198.18.0.7') as Exclude<
      ReturnType<typeof parseDestination>,
      string
    >;
    assert.ok(matchesDestination(name, { names: ['example.com'], ip: '198.18.0.7', port: 443 }));
    assert.ok(!matchesDestination(name, { names: [], ip: '198.18.0.7', port: 443 }));
    assert.ok(matchesDestination(ip, { names: ['example.com'], ip: '198.18.0.7', port: 443 }));
    assert.ok(!matchesDestination(ip, { names: ['198.18.0.7.example'], port: 443 }));
  });

  it('to allow, every name of the attempt must match and a raw IP claims no name; to deny, one is enough', () => {
    const cdn = parseDestination('cdn.example:443') as Exclude<
      ReturnType<typeof parseDestination>,
      string
    >;
    // DNS for evil.example, SNI of the allowed name: denied by a deny rule, not allowed by an allow.
    const mixed = { names: ['evil.example', 'cdn.example'], port: 443 };
    assert.ok(matchesDestination(cdn, mixed, 'deny'));
    assert.ok(!matchesDestination(cdn, mixed, 'allow'));
    assert.ok(matchesDestination(cdn, { names: ['cdn.example'], port: 443 }, 'allow'));
    // A raw IP with the SNI of the allowed name.
    const raw = { names: ['cdn.example'], claimedOnly: true, ip: '203.0.113.5', port: 443 };
    assert.ok(!matchesDestination(cdn, raw, 'allow'));
    assert.ok(matchesDestination(cdn, raw, 'deny'));
  });
});

describe('package scopes', () => {
  it('name, range, scope wildcard', () => {
    const s = (t: string) => {
      const p = parsePackageScope(t);
      assert.ok(typeof p !== 'string', String(p));
      return p;
    };
    assert.ok(packageInScope(s('puppeteer'), 'puppeteer@23.11.1'));
    assert.ok(packageInScope(s('puppeteer@>=19'), 'puppeteer@23.11.1'));
    assert.ok(!packageInScope(s('puppeteer@<19'), 'puppeteer@23.11.1'));
    assert.ok(packageInScope(s('@sentry/*'), '@sentry/cli@2.1.0'));
    assert.ok(packageInScope(s('@sentry/cli@^2'), '@sentry/cli@2.1.0'));
    assert.ok(!packageInScope(s('@sentry/*'), '@sentryx/cli@2.1.0'));
    assert.equal(typeof parsePackageScope('Bad Name'), 'string');
    assert.equal(typeof parsePackageScope('ok@not a range!'), 'string');
  });
});

describe('policy files', () => {
  it('a full valid policy has no problems', () => {
    const yaml = `version: 1
defaults: { install: deny, runtime: warn }
changes: { install: deny, runtime: allow }
declarations: warn
knownEgress: false
indicators: { nonstandard-port: info, raw-ip: "off" }
rules:
  - allow: [storage.googleapis.com:443, "*.cdn.example.com"]
    packages: [puppeteer@>=19]
    phases: [install]
    why: browser download
  - deny: ["*"]
    phases: runtime
`;
    assert.deepEqual(problemsOf(yaml), []);
    const { layer } = parsePolicyLayer(readStructured('p.yaml', yaml), indicatorIds());
    assert.deepEqual(layer.defaults, { install: 'deny', import: 'warn', exercise: 'warn' });
    assert.deepEqual(layer.rules[1]?.phases, ['import', 'exercise']);
    assert.equal(layer.rules[0]?.origin, 'p.yaml:8');
  });

  it('unknown keys and wrong types are errors with file, line, path and fix', () => {
    const yaml = `version: 1
defaults:
  install: block
rulez: []
rules:
  - allow: example.com:99999
    packages: [Bad Name]
    phase: [install]
  - allow: [a.com]
    deny: [b.com]
  - why: nothing
indicators: { no-such-indicator: high, raw-ip: severe }
`;
    const problems = problemsOf(yaml);
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p]));
    assert.match(byPath['defaults.install']?.message ?? '', /"block" is not an action/);
    assert.equal(byPath['defaults.install']?.where, 'phonehome.policy.yaml:3:12');
    assert.match(byPath['rulez']?.message ?? '', /unknown key "rulez"/);
    assert.match(byPath['rulez']?.fix ?? '', /rules/);
    assert.equal(byPath['rulez']?.where.split(':')[1], '4');
    assert.match(byPath['rules[0].allow[0]']?.message ?? '', /99999/);
    assert.match(byPath['rules[0].packages[0]']?.message ?? '', /not a package name/);
    assert.match(byPath['rules[0].phase']?.message ?? '', /unknown key "phase"/);
    assert.match(byPath['rules[1]']?.message ?? '', /both allow and deny/);
    assert.match(byPath['rules[2]']?.message ?? '', /neither allow nor deny/);
    assert.equal(byPath['rules[2]']?.where.split(':')[1], '11');
    assert.match(byPath['indicators.no-such-indicator']?.message ?? '', /unknown indicator/);
    assert.match(byPath['indicators.raw-ip']?.message ?? '', /not a severity/);
    for (const p of problems) assert.ok(p.fix.length > 5, p.path);
  });

  it('import or exercise beside runtime wins whatever the key order; locked indicators cannot be lowered', () => {
    for (const yaml of [
      'version: 1\ndefaults: { runtime: warn, import: allow }',
      'version: 1\ndefaults: { import: allow, runtime: warn }',
    ]) {
      const { layer } = parsePolicyLayer(readStructured('p.yaml', yaml), indicatorIds());
      assert.deepEqual(layer.defaults, { import: 'allow', exercise: 'warn' }, yaml);
    }
    const locked = { 'request-catcher': 'critical' as const };
    for (const v of ['"off"', 'info', 'high']) {
      const p = parsePolicyLayer(
        readStructured('p.yaml', `version: 1\nindicators: { request-catcher: ${v} }`),
        indicatorIds(),
        locked,
      ).problems;
      assert.match(p[0]?.message ?? '', /locked at critical/, v);
    }
  });

  it('URLs, paths and a bare "*." are not destinations, and say why', () => {
    assert.match(String(parseDestination('http://x.com')), /is a URL/);
    assert.match(String(parseDestination('x.com/path')), /has a path/);
    assert.equal(typeof parseDestination('*.'), 'string');
  });

  it('a missing or unsupported version, a non-mapping file and YAML syntax errors', () => {
    assert.match(problemsOf('rules: []')[0]?.message ?? '', /no version/);
    assert.match(problemsOf('version: 2')[0]?.message ?? '', /version 2 is not supported/);
    assert.match(problemsOf('- a\n- b')[0]?.message ?? '', /must be a mapping/);
    const syntax = problemsOf('version: 1\nrules: [\n', 'x.yaml');
    assert.ok(syntax.length > 0);
    assert.match(syntax[0]?.where ?? '', /^x\.yaml:\d+:\d+$/);
  });

  it('JSON policies are read with positions too', () => {
    const problems = problemsOf(
      '{\n  "version": 1,\n  "rules": [\n    { "allow": ["a.com"], "when": 1 }\n  ]\n}',
      'p.json',
    );
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.where.split(':')[1], '4');
  });

  it('is found from the working directory up; an override next to it is merged on top; errors name the file', () => {
    const root = mkdtempSync(join(tmpdir(), 'phonehome-policy-test-'));
    try {
      const deep = join(root, 'a', 'b');
      mkdirSync(deep, { recursive: true });
      writeFileSync(
        join(root, 'phonehome.policy.yaml'),
        'version: 1\nrules:\n  - allow: [a.example.com]\n',
      );
      writeFileSync(
        join(root, 'phonehome.policy.override.json'),
        '{"version": 1, "defaults": {"exercise": "warn"}, "rules": [{"deny": ["a.example.com"], "phases": ["install"]}]}',
      );
      assert.equal(findPolicyFile(deep), join(root, 'phonehome.policy.yaml'));
      const { policy } = loadPolicy({ cwd: deep });
      assert.deepEqual(
        policy.sources.map((s) => s.slice(root.length)),
        ['/phonehome.policy.yaml', '/phonehome.policy.override.json'],
      );
      assert.equal(policy.defaults.exercise, 'warn');
      assert.equal(policy.defaults.install, 'deny');
      assert.deepEqual(
        policy.rules.map((r) => r.action),
        ['deny', 'allow'],
      );
      writeFileSync(
        join(root, 'phonehome.policy.yaml'),
        'version: 1\nrules:\n  - allow: [a.example.com]\n    packges: [x]\n',
      );
      assert.throws(
        () => loadPolicy({ cwd: deep }),
        (e: unknown) =>
          e instanceof PhonehomeError &&
          e.code === 'EPOLICY' &&
          e.exitCode === 2 &&
          /phonehome\.policy\.yaml:4:\d+: rules\[0\]\.packges: unknown key/.test(e.detail ?? ''),
      );
      assert.throws(() => loadPolicy({ cwd: deep, file: 'nope.yaml' }), /No policy file/);
      // Without a file anywhere up (a fresh temp dir has none unless / has one): the shipped defaults.
      const { policy: none } = loadPolicy({ discover: false });
      assert.deepEqual(none.sources, []);
      assert.deepEqual(none.defaults, { install: 'deny', import: 'deny', exercise: 'deny' });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('the hash changes with what judges, not with where it was written', () => {
    const root = mkdtempSync(join(tmpdir(), 'phonehome-policy-test-'));
    try {
      const a = join(root, 'a.yaml');
      const b = join(root, 'b.json');
      writeFileSync(a, '# a comment\nversion: 1\nrules:\n  - allow: [x.example.com]\n');
      writeFileSync(b, '{"version": 1, "rules": [{"allow": ["x.example.com"]}]}');
      const ha = loadPolicy({ file: a }).policy.hash;
      assert.equal(ha, loadPolicy({ file: b }).policy.hash);
      writeFileSync(b, '{"version": 1, "rules": [{"allow": ["y.example.com"]}]}');
      assert.notEqual(ha, loadPolicy({ file: b }).policy.hash);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('declarations', () => {
  it('strings and {host, why} objects per phase; runtime is import and exercise', () => {
    const d = parseDeclaration({
      install: ['dl.example.com:443'],
      runtime: [{ host: '*.ingest.example.io', why: 'errors' }],
    });
    assert.deepEqual(d.problems, []);
    assert.deepEqual(Object.keys(d.byPhase).sort(), ['exercise', 'import', 'install']);
  });

  it('problems are collected, not thrown', () => {
    assert.equal(parseDeclaration('everything').problems.length, 1);
    assert.equal(parseDeclaration({ install: 'a.com' }).problems.length, 1);
    assert.equal(parseDeclaration({ install: [42, { host: 1 }], always: [] }).problems.length, 3);
  });
});

describe('shipped files and their JSON Schemas', () => {
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
  const schema = (name: string) =>
    ajv.compile(JSON.parse(readFileSync(join(shippedDir(), name), 'utf8')) as object);

  it('the shipped default policy, known-egress list and indicator list load', () => {
    assert.ok(shippedKnownEgress().length >= 8);
    for (const e of shippedKnownEgress()) assert.match(e.source, /^https:\/\//, e.id);
    assert.deepEqual(loadPolicy({ discover: false }).policy.rules, []);
  });

  it('the policy schema agrees with the validator on valid and invalid policies', () => {
    const validate = schema('policy.schema.json');
    const cases = [
      'version: 1',
      readFileSync(join(shippedDir(), 'default.policy.yaml'), 'utf8'),
      'version: 1\nrules:\n  - allow: [a.com:443]\n    packages: ["x@^1"]\n    phases: [install, runtime]\n    why: y',
      'version: 1\ndefaults: { runtime: warn }\nindicators: { raw-ip: "off" }',
      'version: 2',
      'version: 1\nrulez: []',
      'version: 1\nrules:\n  - allow: [a.com]\n    deny: [b.com]',
      'version: 1\nrules:\n  - packages: [x]',
      'version: 1\ndefaults: { install: block }',
      'version: 1\ndeclarations: sometimes',
      'version: 1\nrules:\n  - allow: [a.com]\n    phases: [later]',
    ];
    for (const yaml of cases) {
      const ours = problemsOf(yaml).length === 0;
      const theirs = validate(parseYaml(yaml)) === true;
      assert.equal(theirs, ours, `${yaml}\n${JSON.stringify(validate.errors)}`);
    }
  });

  it('the declaration schema agrees with the parser', () => {
    const validate = schema('declaration.schema.json');
    const cases: unknown[] = [
      { install: ['a.com:443'] },
      { runtime: [{ host: '*.a.com', why: 'x' }], exercise: [] },
      { install: 'a.com' },
      { later: ['a.com'] },
      { install: [42] },
      'a.com',
    ];
    for (const c of cases) {
      const ours = parseDeclaration(c).problems.length === 0;
      assert.equal(validate(c) === true, ours, JSON.stringify(c));
    }
  });
});

describe('the names of an attempt', () => {
  it('a Host header is one of them; a connection to a raw IP only claims its names', () => {
    const fronted = targetOf({
      phase: 'import',
      kind: 'http',
      host: 'cdn.example',
      ip: '57.142.3.9',
      port: 80,
      httpHost: 'evil.example:80',
    });
    assert.deepEqual(fronted.names, ['cdn.example', 'evil.example']);
    assert.equal(fronted.ip, undefined, 'the stand-in address of a name is not matched');
    const raw = targetOf({
      phase: 'import',
      kind: 'tls',
      ip: '203.0.113.5',
      port: 443,
      sni: 'cdn.example',
    });
    assert.equal(raw.claimedOnly, true);
    assert.equal(raw.ip, '203.0.113.5');
  });
});
