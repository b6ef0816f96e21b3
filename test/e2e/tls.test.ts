/**
 * End to end, secrets and requests sent inside HTTPS: with TLS intercepted by the run's CA, a
 * token in a JSON body, an Authorization header, a query string or a Python upload is a bait leak
 * found in the HTTPS channel; a client that trusts only its own CA refuses the certificate, and
 * the refusal is in the report with the destination judged as before; the honest control's
 * HTTPS request to its declared host passes with its path shown; `--no-tls-intercept` leaves TLS
 * alone.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { CheckReport, Finding, ReportEvent } from '../../src/core/report.js';
import { checkFixture, cli, fixture } from '../support/cli.js';
import { images } from '../support/sandbox.js';

const leaks = (r: CheckReport): Finding[] => r.findings.filter((f) => f.id === 'bait-leak');
const https = (r: CheckReport, host: string): ReportEvent[] =>
  r.events.filter((e) => e.kind === 'tls' && (e.sni === host || e.host === host));

/** The one leak of `label` through `channel`, charged to `pkg` in install. */
function leaked(r: CheckReport, label: RegExp, channel: string, pkg: string): Finding {
  const f = leaks(r).find((x) => label.test(x.message) && x.message.includes(`in the ${channel})`));
  assert.ok(f, JSON.stringify(r.findings.map((x) => [x.id, x.message])));
  assert.equal(f.severity, 'critical');
  assert.equal(f.phase, 'install');
  assert.equal(f.package, pkg);
  assert.equal(r.verdict, 'fail');
  return f;
}

describe('phonehome check (CLI), what is sent inside HTTPS', () => {
  before(async () => {
    await images();
  });

  it('an npm token base64 in a JSON body POSTed over HTTPS is a bait leak in the HTTPS body', async () => {
    const { code, report } = await checkFixture('https-token-body');
    assert.equal(code, 1);
    leaked(report, /npm access token/, 'HTTPS body', 'https-token-body@1.0.0');
    const [e] = https(report, 'metrics.build-insights.example');
    assert.equal(e?.intercept, 'decrypted');
    assert.equal(e?.method, 'POST');
    assert.equal(e?.path, '/v1/collect');
  });

  it('a GitHub token in the Authorization header of an API call is a bait leak in the HTTPS headers', async () => {
    const { code, report } = await checkFixture('github-api-exfil');
    assert.equal(code, 1);
    leaked(report, /GitHub token/, 'HTTPS headers', 'github-api-exfil@1.0.0');
    const e = https(report, 'api.github.com').find((x) => x.path === '/user/repos');
    assert.equal(e?.method, 'POST');
  });

  it('a token in a header line without a colon, or as a header name, to a declared host is a bait leak', async () => {
    const { code, report } = await checkFixture('https-header-tricks');
    assert.equal(code, 1);
    leaked(report, /npm access token/, 'HTTPS headers', 'https-header-tricks@1.0.0');
  });

  it('a secret in the query string of a curl HTTPS request is a bait leak in the HTTPS path', async () => {
    const { code, report } = await checkFixture('https-curl-query-secret');
    assert.equal(code, 1);
    leaked(report, /AWS secret access key/, 'HTTPS path', 'https-curl-query-secret@1.0.0');
    const [e] = https(report, 'cdn.asset-mirror.example');
    assert.match(e?.path ?? '', /^\/pixel\.gif\?k=/);
    assert.match(e?.process ?? '', /curl/);
  });

  it('credentials uploaded by Python urllib over HTTPS are a bait leak in the HTTPS body', async () => {
    const { code, report } = await checkFixture('https-python-urllib');
    assert.equal(code, 1);
    leaked(report, /AWS secret access key/, 'HTTPS body', 'https-python-urllib@1.0.0');
    const [e] = https(report, 'sync.cloud-backup.example');
    assert.equal(e?.method, 'POST');
    assert.match(e?.process ?? '', /python3/);
  });

  it('a client that trusts only its own CA refuses; the refusal is reported and the destination judged', async () => {
    const { code, report } = await checkFixture('https-pinned-client');
    assert.equal(code, 1);
    const seen = https(report, 'ingest.pinned-telemetry.example');
    assert.ok(seen.length > 0, JSON.stringify(report.events));
    assert.ok(seen.every((e) => e.intercept === 'refused' && e.method === undefined));
    assert.ok(seen.every((e) => typeof e.tlsAlert === 'string'));
    assert.equal(
      report.findings.find((f) => f.id === 'refused-inspection')?.severity,
      'medium',
      JSON.stringify(report.findings),
    );
    assert.ok(
      report.findings.some(
        (f) =>
          f.id === 'egress-not-allowed' && f.destination === 'ingest.pinned-telemetry.example:443',
      ),
      JSON.stringify(report.findings),
    );
    const text = await cli(['check', fixture('https-pinned-client')]);
    assert.match(text.stdout, /refused the run's certificate/);
  });

  it('an OpenTelemetry-shaped export at install to a declared host is flagged from its path', async () => {
    const { code, report } = await checkFixture('otel-export-install');
    assert.equal(code, 1);
    assert.equal(report.verdict, 'fail');
    const f = report.findings.find((x) => x.id === 'telemetry-export-at-install');
    assert.equal(f?.severity, 'high', JSON.stringify(report.findings));
    assert.equal(f?.phase, 'install');
    assert.equal(f?.destination, 'otel.observability-cloud.example:443');
    // The declaration allowed the host: only what was read inside TLS makes the verdict.
    assert.ok(
      report.findings.some((x) => x.rule === 'declaration' && x.severity === 'info'),
      JSON.stringify(report.findings),
    );
  });

  it('control: an HTTPS POST of the platform to the declared host passes, its path in the report', async () => {
    const { code, report } = await checkFixture('honest-https-declared-post');
    assert.equal(code, 0, JSON.stringify(report.findings));
    assert.equal(report.verdict, 'pass');
    const [e] = https(report, 'releases.honest-tool.example');
    assert.equal(e?.method, 'POST');
    assert.equal(e?.path, '/v3/resolve');
    const text = await cli(['check', fixture('honest-https-declared-post')]);
    assert.match(text.stdout, /https POST releases\.honest-tool\.example:443\/v3\/resolve/);
  });

  it('--no-tls-intercept: the token body is not read, the destination still is', async () => {
    const r = await cli(['check', fixture('https-token-body'), '--json', '--no-tls-intercept']);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.deepEqual(leaks(report), []);
    const seen = https(report, 'metrics.build-insights.example');
    assert.ok(seen.length > 0);
    assert.ok(seen.every((e) => e.intercept === undefined && e.method === undefined));
  });
});
