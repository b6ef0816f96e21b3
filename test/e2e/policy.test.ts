/**
 * End to end: the policy decides the verdict of real runs. A declared download passes, the same
 * download undeclared fails and its suggested rule makes it pass, a declaration cannot make a
 * request catcher acceptable, and `policy init` / `policy check` work on real files.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CheckReport } from '../../src/core/report.js';
import { cli, fixture, leftovers } from '../support/cli.js';
import { images } from '../support/sandbox.js';

describe('phonehome check with policies (CLI)', () => {
  const work = mkdtempSync(join(tmpdir(), 'phonehome-policy-e2e-'));
  before(async () => {
    await images();
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  const run = async (args: string[], cwd = work) => {
    const r = await cli(['check', '--json', ...args], process.env, { cwd });
    assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}: ${r.stderr}`);
    assert.equal(await leftovers(r.pid), 0);
    return { code: r.code, report: JSON.parse(r.stdout) as CheckReport };
  };

  it('a download its package declares passes; the same download undeclared fails, and the suggested rule allows it', async () => {
    const declared = await run([fixture('declared-download')]);
    assert.equal(declared.code, 0);
    assert.equal(declared.report.verdict, 'pass');
    const allowed = declared.report.findings.find((f) => f.id === 'egress-allowed');
    assert.equal(allowed?.destination, 'downloads.declared-tool.example:443');
    assert.equal(allowed?.rule, 'declaration');
    assert.deepEqual(declared.report.packages?.[0]?.declares, {
      install: ['downloads.declared-tool.example:443'],
    });

    // The same package without its declaration.
    const copy = join(work, 'undeclared-download');
    cpSync(fixture('declared-download'), copy, { recursive: true });
    const pkg = JSON.parse(readFileSync(join(copy, 'package.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    delete pkg.egress;
    writeFileSync(join(copy, 'package.json'), JSON.stringify(pkg, null, 2));
    const undeclared = await run([copy]);
    assert.equal(undeclared.code, 1);
    assert.equal(undeclared.report.verdict, 'fail');
    const denied = undeclared.report.findings.find((f) => f.id === 'egress-not-allowed');
    assert.equal(denied?.severity, 'high');
    assert.equal(denied?.phase, 'install');
    assert.equal(denied?.rule, 'default:install');
    assert.ok(denied?.suggestion);

    // The suggestion, pasted into a policy found from the working directory, allows it.
    writeFileSync(
      join(work, 'phonehome.policy.yaml'),
      `version: 1\nrules:\n${denied.suggestion.replace(/^/gm, '  ')}`,
    );
    try {
      const approved = await run([copy]);
      assert.equal(approved.code, 0, JSON.stringify(approved.report.findings));
      assert.match(approved.report.findings[0]?.rule ?? '', /^phonehome\.policy\.yaml:3$/);
      assert.deepEqual(approved.report.policy?.sources, [join(work, 'phonehome.policy.yaml')]);
    } finally {
      rmSync(join(work, 'phonehome.policy.yaml'));
    }
  });

  it('a declared request catcher still fails: the indicator is critical and no rule is suggested', async () => {
    const { code, report } = await run([fixture('declared-exfil-channel')]);
    assert.equal(code, 1);
    assert.equal(report.verdict, 'fail');
    const ind = report.findings.find((f) => f.id === 'request-catcher');
    assert.equal(ind?.severity, 'critical');
    assert.equal(ind?.destination, 'c0ffee.webhook.site:443');
    assert.ok(report.findings.every((f) => !f.suggestion));
  });

  it('egress from code that shows no way to the network is its own finding', async () => {
    const { report } = await run([fixture('hidden-fetch-beacon')]);
    const f = report.findings.find((x) => x.id === 'hidden-network-code');
    assert.equal(f?.severity, 'high');
    assert.equal(f?.phase, 'import');
    assert.deepEqual(report.packages?.[0]?.capabilities, []);
  });

  it('--fail-on picks the severity that makes the exit code 1', async () => {
    const r = await cli(['check', fixture('import-beacon'), '--fail-on', 'critical']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^FAIL import-beacon@1\.0\.0/);
  });

  it('policy init lists every destination a run reached, not yet allowed ones as deny rules; flipped to allow, the check passes', async () => {
    const dir = mkdtempSync(join(work, 'init-'));
    const init = await cli(
      ['policy', 'init', fixture('upgrade-beacon-1.0.1'), fixture('declared-download')],
      process.env,
      { cwd: dir },
    );
    assert.equal(init.code, 0, init.stderr);
    const text = readFileSync(join(dir, 'phonehome.policy.yaml'), 'utf8');
    assert.match(
      text,
      /- deny: \["cdn\.upgrade-stats\.example:443"\]\n {4}packages: \["upgrade-beacon@1\.0\.1"\]\n {4}phases: \[install\]/,
    );
    // Already allowed by its declaration: listed, commented out, so nothing that passes fails.
    assert.match(
      text,
      /already allowed by the package's own declaration[^\n]*\n\s*# - allow: \["downloads\.declared-tool\.example:443"\]/,
    );
    const valid = await cli(['policy', 'check'], process.env, { cwd: dir });
    assert.equal(valid.code, 0, valid.stderr);
    assert.match(valid.stdout, /valid, 1 rule\(s\)/);
    const declared = await run([fixture('declared-download')], dir);
    assert.equal(declared.code, 0, 'the starter policy does not fail what passed');
    // Not overwritten without --force.
    const again = await cli(['policy', 'init'], process.env, { cwd: dir });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /exists; not overwritten/);

    writeFileSync(join(dir, 'phonehome.policy.yaml'), text.replaceAll('- deny:', '- allow:'));
    const { code, report } = await run([fixture('upgrade-beacon-1.0.1')], dir);
    assert.equal(code, 0, JSON.stringify(report.findings));
    assert.ok(report.findings.every((f) => f.id === 'egress-allowed'));
  });

  it('a broken policy file stops the check before anything runs: exit 2, file, line and fix', async () => {
    const dir = mkdtempSync(join(work, 'bad-'));
    writeFileSync(
      join(dir, 'phonehome.policy.yaml'),
      'version: 1\nrules:\n  - allow: [a.example.com:99999]\n    phase: install\n',
    );
    const r = await cli(['check', fixture('honest-no-scripts')], process.env, { cwd: dir });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /EPOLICY/);
    assert.match(
      r.stderr,
      /phonehome\.policy\.yaml:3:\d+: rules\[0\]\.allow\[0\]: "99999" is not a port/,
    );
    assert.match(r.stderr, /phonehome\.policy\.yaml:4:\d+: rules\[0\]\.phase: unknown key "phase"/);
    assert.equal(r.stdout, '');
    assert.equal(await leftovers(r.pid), 0);
    const checked = await cli(['policy', 'check', join(dir, 'phonehome.policy.yaml')]);
    assert.equal(checked.code, 2);
    assert.match(checked.stderr, /rules\[0\]\.phase/);
  });
});
