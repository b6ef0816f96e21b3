/**
 * End to end, through real sandboxes: egress an honest package makes because it was asked to is
 * not judged as its own. A client that connects where the exercise told it to passes; an SDK that
 * reaches its own vendor's domain when called is a warning; the same SDK sending a planted secret
 * there, a package reaching its vendor at install, and a package whose homepage is a shared host
 * all fail.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { CheckReport, Finding } from '../../src/core/report.js';
import { checkFixture } from '../support/cli.js';
import { images } from '../support/sandbox.js';

const check = checkFixture;

const show = (r: CheckReport) =>
  r.findings.map((f) => `${f.severity} ${f.id} ${f.phase} ${f.destination ?? ''}`).join('\n');
const about = (r: CheckReport, host: string): Finding[] =>
  r.findings.filter((f) => f.destination?.startsWith(host));

describe('phonehome check (CLI), egress the package was asked for', () => {
  before(async () => {
    await images();
  });

  it('a client that connects where its caller says passes; the attempts are caller-directed', async () => {
    const { code, report } = await check('honest-caller-client');
    assert.equal(report.verdict, 'pass', show(report));
    assert.equal(code, 0);
    const [host] = report.callerHosts ?? [];
    assert.ok(host, 'the report names the host the exercise passed');
    const directed = report.findings.filter((f) => f.id === 'egress-caller-directed');
    assert.ok(
      directed.some(
        (f) => f.destination?.startsWith(host as string) && !f.destination.includes('DNS'),
      ),
      `a connection to ${host}:\n${show(report)}`,
    );
    assert.ok(directed.every((f) => f.severity === 'info' && f.phase === 'exercise'));
    assert.ok(
      report.events.some((e) => e.kind === 'tcp' && e.host === host),
      'the connection itself was captured',
    );
  });

  it("an SDK calling its homepage's domain when called is a low finding, nothing above", async () => {
    const { report } = await check('vendor-sdk');
    assert.equal(report.verdict, 'warn', show(report));
    const vendor = about(report, 'api.vendorco.example');
    assert.ok(vendor.length > 0, show(report));
    for (const f of vendor) {
      assert.equal(f.id, 'egress-own-vendor');
      assert.equal(f.severity, 'low');
      assert.match(f.message, /vendorco\.example is vendor-sdk@1\.0\.0's own vendor's domain/);
    }
    assert.ok(!report.findings.some((f) => f.severity !== 'info' && f.severity !== 'low'));
  });

  it('the same SDK sending the planted npm token there fails, critical, with no excuse', async () => {
    const { code, report } = await check('vendor-sdk-token-theft');
    assert.equal(report.verdict, 'fail');
    assert.equal(code, 1);
    const leaks = report.findings.filter((f) => f.id === 'bait-leak');
    assert.ok(leaks.length > 0 && leaks.every((f) => f.severity === 'critical'), show(report));
    // In plain HTTP, and inside the TLS the capture intercepted.
    assert.deepEqual(
      [...new Set(leaks.map((f) => f.destination))].sort(),
      ['api.vendorco.example:443', 'api.vendorco.example:80'],
      show(report),
    );
    // Code that reads ~/.npmrc gets no excuse over TLS either.
    const tls = about(report, 'api.vendorco.example:443').filter((f) => f.id !== 'bait-leak');
    assert.ok(tls.length > 0, show(report));
    assert.ok(
      tls.every((f) => f.id === 'egress-not-allowed' && f.severity === 'high'),
      show(report),
    );
    assert.ok(!report.findings.some((f) => f.id === 'egress-own-vendor'), show(report));
  });

  it("reaching the vendor's domain at install fails: the vendor rule is for run time", async () => {
    const { report } = await check('vendor-install-beacon');
    assert.equal(report.verdict, 'fail', show(report));
    const f = about(report, 'telemetry.vendorco.example');
    assert.ok(
      f.some((x) => x.phase === 'install' && x.id === 'egress-not-allowed'),
      show(report),
    );
  });

  it('a homepage on a shared host (GitHub Pages) excuses nothing', async () => {
    const { report } = await check('shared-host-homepage');
    assert.equal(report.verdict, 'fail', show(report));
    const f = about(report, 'vendorco.github.io');
    assert.ok(
      f.some((x) => x.phase === 'exercise' && x.id === 'egress-not-allowed'),
      show(report),
    );
    assert.ok(!report.findings.some((x) => x.id === 'egress-own-vendor'), show(report));
  });
});
