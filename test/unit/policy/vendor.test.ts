import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CheckReport, PackageSummary, ReportEvent } from '../../../src/core/report.js';
import { diffReports } from '../../../src/core/compare.js';
import { evaluate, type EvaluationContext } from '../../../src/policy/evaluate.js';
import {
  loadPolicy,
  mergeLayers,
  shippedIndicators,
  shippedKnownEgress,
  shippedSharedHosts,
} from '../../../src/policy/load.js';
import { parsePolicyLayer } from '../../../src/policy/parse.js';
import { readStructured } from '../../../src/policy/source.js';
import { ownDomainOf, vendorOf } from '../../../src/policy/vendor.js';
import { linksOf } from '../../../src/resolve/stage.js';

const SUBJECT = 'sdk@2.0.0';
const CALLER = 'db.prod-4821.9f3a0c1e.com';
const RESOLVER = '192.168.1.1';

function policy(yaml = 'version: 1') {
  const { layer, problems } = parsePolicyLayer(
    readStructured('p.yaml', yaml),
    shippedIndicators().map((i) => i.id),
  );
  assert.deepEqual(problems, []);
  return mergeLayers([layer], ['p.yaml']);
}

function ctx(yaml?: string): EvaluationContext {
  return {
    policy: policy(yaml),
    knownEgress: shippedKnownEgress(),
    indicators: shippedIndicators(),
    resolvers: [RESOLVER],
    sharedHosts: shippedSharedHosts(),
  };
}

/** A connection by name, after its lookup through the sandbox's resolver. */
function reach(phase: ReportEvent['phase'], host: string, extra: Partial<ReportEvent> = {}) {
  const pkg = extra.package ?? SUBJECT;
  return [
    { phase, package: pkg, kind: 'dns', host, qtype: 'A', resolver: RESOLVER },
    { phase, package: pkg, kind: 'tls', ip: '23.45.6.7', port: 443, host, sni: host, ...extra },
  ] as ReportEvent[];
}

function report(
  events: ReportEvent[],
  packages: Partial<PackageSummary>[] = [],
  more: Partial<CheckReport> = {},
): CheckReport {
  const list: PackageSummary[] = [
    { id: SUBJECT, installScripts: [], capabilities: ['network'], fromRegistry: true },
    ...packages.map((p) => ({
      id: 'x@1.0.0',
      installScripts: [],
      capabilities: ['network' as const],
      fromRegistry: true,
      ...p,
    })),
  ];
  const byId = new Map(list.map((p) => [p.id, p]));
  return {
    schemaVersion: 2,
    subject: { name: 'sdk', version: '2.0.0', integrity: null, spec: SUBJECT },
    phases: [],
    events,
    findings: [],
    verdict: 'pass',
    packages: [...byId.values()],
    ...more,
  };
}

const ids = (r: CheckReport) => r.findings.map((f) => `${f.severity} ${f.id} ${f.destination}`);

describe('own vendor', () => {
  it('is the registrable domain of a link, never a shared host, an address or a platform page', () => {
    const shared = shippedSharedHosts();
    assert.equal(ownDomainOf('api.nodemailer.com', shared), 'nodemailer.com');
    assert.equal(ownDomainOf('www.vendorco.co.uk', shared), 'vendorco.co.uk');
    for (const host of [
      'github.com',
      'raw.githubusercontent.com',
      'vendorco.github.io', // a private suffix of the Public Suffix List
      'my-app.vercel.app',
      'bit.ly',
      'webhook.site', // listed by an indicator
      'abc.ngrok.io',
      'checkip.amazonaws.com',
      'storage.googleapis.com',
      '203.0.113.7',
    ])
      assert.equal(ownDomainOf(host, shared), undefined, host);
  });

  it('needs every name of the attempt in the one vendor domain, and a name that was not claimed', () => {
    const shared = shippedSharedHosts();
    const links = ['www.vendorco.example', 'github.com'];
    const t = (names: string[], claimedOnly = false) => ({
      names,
      ...(claimedOnly ? { claimedOnly } : {}),
    });
    assert.equal(
      vendorOf('sdk', links, t(['api.vendorco.example']), shared)?.domain,
      'vendorco.example',
    );
    assert.equal(
      vendorOf('sdk', links, t(['api.vendorco.example', 'evil.example']), shared),
      undefined,
    );
    assert.equal(vendorOf('sdk', links, t(['api.vendorco.example'], true), shared), undefined);
    assert.equal(vendorOf('sdk', links, t(['github.com']), shared), undefined);
    assert.equal(vendorOf('sdk', links, t([]), shared), undefined);
    assert.equal(vendorOf('sdk', undefined, t(['api.vendorco.example']), shared), undefined);
    // A scope names its organisation's domain; a short or different one does not.
    assert.match(
      vendorOf('@sentry/node', [], t(['o1.ingest.sentry.io']), shared)?.because ?? '',
      /scope/,
    );
    assert.equal(vendorOf('@io/x', [], t(['api.io.com']), shared), undefined);
    assert.equal(vendorOf('@sentry/node', [], t(['sentry-mirror.io']), shared), undefined);
    // An unscoped package named like the domain, with a usual suffix or without.
    assert.equal(vendorOf('stripe', [], t(['api.stripe.com']), shared)?.domain, 'stripe.com');
    assert.equal(vendorOf('mailgun.js', [], t(['api.mailgun.com']), shared)?.domain, 'mailgun.com');
    // Any name is free in some TLD: only .com and .io count.
    assert.equal(vendorOf('@sentry/node', [], t(['o1.ingest.sentry.ru']), shared), undefined);
    assert.equal(vendorOf('stripe', [], t(['api.stripe.xyz']), shared), undefined);
    assert.equal(vendorOf('stripe', [], t(['api.stripe-payments.com']), shared), undefined);
    assert.equal(vendorOf('qs', [], t(['qs.com']), shared), undefined);
    // Named like a shared host is no excuse either.
    assert.equal(vendorOf('github', [], t(['api.github.com']), shared), undefined);
  });

  it('takes the hosts of homepage, repository and bugs; shorthands and junk are left out', () => {
    assert.deepEqual(
      linksOf({
        homepage: 'https://www.Vendorco.example/docs',
        repository: { type: 'git', url: 'git+ssh://git@github.com/vendorco/sdk.git' },
        bugs: { url: 'https://vendorco.example/issues', email: 'a@b.example' },
      }),
      ['www.vendorco.example', 'github.com', 'vendorco.example'],
    );
    assert.deepEqual(linksOf({ repository: 'vendorco/sdk', homepage: 42, bugs: 'mailto:x' }), []);
    assert.deepEqual(linksOf({ repository: 'git@gitlab.com:v/sdk.git' }), ['gitlab.com']);
    assert.deepEqual(linksOf({ homepage: `https://${'a'.repeat(400)}.example` }), []);
  });

  it('runtime egress to it is low (ownVendor: warn), info with allow, the default with deny', () => {
    const r = report(reach('exercise', 'api.vendorco.example'), [], {});
    r.packages = [{ ...(r.packages?.[0] as PackageSummary), links: ['www.vendorco.example'] }];
    const judged = evaluate(r, ctx());
    assert.deepEqual(ids(judged), ['low egress-own-vendor api.vendorco.example:443']);
    assert.equal(judged.verdict, 'warn');
    assert.match(judged.findings[0]?.message ?? '', /own vendor's domain/);
    assert.ok(judged.findings[0]?.suggestion, 'an allow rule is suggested');
    assert.deepEqual(ids(evaluate(r, ctx('version: 1\nownVendor: allow'))), [
      'info egress-own-vendor api.vendorco.example:443',
    ]);
    assert.deepEqual(ids(evaluate(r, ctx('version: 1\nownVendor: deny'))), [
      'high egress-not-allowed api.vendorco.example:443',
    ]);
    // Without the shared-host data (an older caller), nothing is excused.
    const { sharedHosts: _, ...bare } = ctx();
    assert.equal(evaluate(r, bare).verdict, 'fail');
  });

  it('never at install, with a planted secret, or with an indicator that forbids allowing', () => {
    const links = { links: ['vendorco.example'] };
    const at = (events: ReportEvent[], findings: CheckReport['findings'] = []) => {
      const r = report(events, [], { findings });
      r.packages = [{ ...(r.packages?.[0] as PackageSummary), ...links }];
      return evaluate(r, ctx());
    };
    assert.equal(at(reach('install', 'telemetry.vendorco.example')).verdict, 'fail');
    const leak = {
      id: 'bait-leak',
      severity: 'critical' as const,
      phase: 'exercise' as const,
      package: SUBJECT,
      destination: 'api.vendorco.example:443',
      message: 'sent the npm token',
      rule: 'bait',
    };
    const leaked = at(reach('exercise', 'api.vendorco.example'), [leak]);
    assert.ok(ids(leaked).includes('high egress-not-allowed api.vendorco.example:443'));
    // Data in DNS names under the vendor's domain (an indicator that forbids allowing).
    const labels = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2';
    const dns = at([
      {
        phase: 'import',
        package: SUBJECT,
        kind: 'dns',
        host: `${labels}.t.vendorco.example`,
        qtype: 'A',
        resolver: RESOLVER,
      },
    ]);
    assert.equal(dns.verdict, 'fail');
    assert.ok(!ids(dns).some((f) => f.includes('own-vendor')), ids(dns).join('\n'));
  });
});

describe('own vendor, for code that hides itself or reaches for secrets', () => {
  const judged = (capabilities: PackageSummary['capabilities'], events: ReportEvent[]) => {
    const r = report(events, [{ id: 'dep@1.0.0', capabilities }]);
    r.packages = [
      {
        ...(r.packages?.[0] as PackageSummary),
        links: ['vendorco.example'],
        dependencies: ['dep@1.0.0'],
      },
      ...(r.packages?.slice(1) ?? []),
    ];
    return evaluate(r, ctx());
  };
  const plain = reach('exercise', 'api.vendorco.example', {
    kind: 'http',
    port: 80,
    sni: undefined,
    httpHost: 'api.vendorco.example',
    method: 'POST',
    path: '/v1',
  });

  it('no excuse for a tree that reads credentials or hides code, or a package that runs built code', () => {
    assert.equal(
      judged(['network', 'reads-secrets'], reach('exercise', 'api.vendorco.example')).verdict,
      'fail',
    );
    // Over plain HTTP too: encrypted, a secret would pass any look at the traffic.
    assert.equal(judged(['network', 'reads-secrets'], plain).verdict, 'fail');
    assert.equal(judged(['network', 'obfuscated'], plain).verdict, 'fail');
    assert.equal(judged(['network'], reach('exercise', 'api.vendorco.example')).verdict, 'warn');
    const own = report(plain);
    own.packages = [
      {
        ...(own.packages?.[0] as PackageSummary),
        links: ['vendorco.example'],
        capabilities: ['network', 'dynamic-code'],
      },
    ];
    assert.equal(evaluate(own, ctx()).verdict, 'fail');
  });

  it('a tree that could not be read whole gets no excuse', () => {
    assert.equal(judged(['network', 'not-scanned'], plain).verdict, 'fail');
  });

  it('a declaration from such a tree is not taken either', () => {
    const r = report(reach('exercise', 'c2.evil.example'));
    r.packages = [
      { ...(r.packages?.[0] as PackageSummary), declares: { exercise: ['c2.evil.example:443'] } },
    ];
    assert.equal(evaluate(r, ctx()).verdict, 'pass');
    r.packages = [
      { ...(r.packages?.[0] as PackageSummary), capabilities: ['network', 'reads-secrets'] },
    ];
    assert.equal(evaluate(r, ctx()).verdict, 'fail');
  });
});

describe('groups are judged by every attempt in them', () => {
  it('a connection to another host with the SNI of an excused one is judged on its own', () => {
    const cover: ReportEvent[] = [
      ...reach('exercise', CALLER, { kind: 'tcp', sni: undefined }),
      {
        phase: 'exercise',
        package: SUBJECT,
        kind: 'dns',
        host: 'drop.evil.example',
        qtype: 'A',
        resolver: RESOLVER,
      },
      {
        phase: 'exercise',
        package: SUBJECT,
        kind: 'tls',
        ip: '23.45.6.8',
        port: 443,
        host: 'drop.evil.example',
        sni: CALLER,
      },
    ];
    const judged = evaluate(report(cover, [], { callerHosts: [CALLER] }), ctx());
    assert.equal(judged.verdict, 'fail', ids(judged).join('\n'));
    assert.ok(
      ids(judged).some(
        (f) => f.startsWith('high egress-not-allowed') && f.includes('drop.evil.example'),
      ),
      ids(judged).join('\n'),
    );
  });

  it('a raw-address connection with the SNI of an allowed host is not covered by the rule', () => {
    const c = ctx('version: 1\nrules:\n  - allow: [api.partner.example:443]\n');
    const events: ReportEvent[] = [
      ...reach('exercise', 'api.partner.example', { kind: 'tcp', sni: undefined }),
      {
        phase: 'exercise',
        package: SUBJECT,
        kind: 'tls',
        ip: '203.0.113.9',
        port: 443,
        sni: 'api.partner.example',
      },
    ];
    const judged = evaluate(report(events), c);
    assert.equal(judged.verdict, 'fail', ids(judged).join('\n'));
    assert.ok(
      ids(judged).some((f) => f.includes('also address 203.0.113.9')),
      ids(judged).join('\n'),
    );
  });

  it('a lookup asked of another resolver is a datagram to it: the name allows nothing, even without a domain', () => {
    const c = ctx('version: 1\nrules:\n  - allow: [api.partner.example:443]\n');
    const asked = (host: string): ReportEvent => ({
      phase: 'install',
      package: SUBJECT,
      kind: 'dns',
      host,
      qtype: 'A',
      resolver: '203.0.113.53',
    });
    const judged = evaluate(report([asked('api.partner.example'), asked('wpad')]), c);
    assert.equal(judged.verdict, 'fail');
    assert.ok(
      ids(judged).includes('high egress-not-allowed api.partner.example (DNS, asked 203.0.113.53)'),
      ids(judged).join('\n'),
    );
    assert.ok(
      ids(judged).includes('high egress-not-allowed wpad (DNS, asked 203.0.113.53)'),
      ids(judged).join('\n'),
    );
  });
});

describe("npm's own use of its token", () => {
  const used = {
    id: 'npm-token-used',
    severity: 'medium' as const,
    phase: 'exercise' as const,
    package: SUBJECT,
    destination: 'registry.npmjs.org:443',
    message: 'had the npm token sent to registry.npmjs.org:443',
  };
  it('stays npm-token-used while the registry was looked up through the sandbox resolver only', () => {
    const judged = evaluate(
      report(reach('exercise', 'registry.npmjs.org'), [], { findings: [used] }),
      ctx(),
    );
    assert.equal(judged.findings.find((f) => f.id === 'npm-token-used')?.severity, 'medium');
    assert.ok(!judged.findings.some((f) => f.id === 'bait-leak'));
  });
  it('is a critical bait-leak once the registry was also looked up through a resolver the package chose', () => {
    const other: ReportEvent = {
      phase: 'exercise',
      package: SUBJECT,
      kind: 'dns',
      host: 'registry.npmjs.org',
      qtype: 'A',
      resolver: '203.0.113.53',
    };
    const judged = evaluate(
      report([...reach('exercise', 'registry.npmjs.org'), other], [], { findings: [used] }),
      ctx(),
    );
    const leak = judged.findings.find((f) => f.id === 'bait-leak');
    assert.equal(leak?.severity, 'critical');
    assert.equal(judged.verdict, 'fail');
    assert.ok(!judged.findings.some((f) => f.id === 'npm-token-used'));
  });
});

describe('caller-directed egress', () => {
  it('an exercise attempt to a host the exercise passed is info, with no rule suggested', () => {
    const r = report(
      [
        ...reach('exercise', CALLER, { kind: 'tcp', port: 6379, sni: undefined }),
        {
          phase: 'exercise',
          package: SUBJECT,
          kind: 'dns',
          host: 'undefined',
          qtype: 'A',
          resolver: RESOLVER,
        },
      ],
      [],
      { callerHosts: [CALLER, 'undefined'] },
    );
    const judged = evaluate(r, ctx());
    assert.equal(judged.verdict, 'pass', ids(judged).join('\n'));
    const f = judged.findings.find((x) => x.id === 'egress-caller-directed');
    assert.equal(f?.severity, 'info');
    assert.equal(f?.suggestion, undefined);
    assert.match(f?.message ?? '', /passed .* as an argument/);
    // The port the caller's host listens on is the caller's business.
    const port = judged.findings.find((x) => x.id === 'nonstandard-port');
    assert.equal(port?.severity, 'info');
  });

  it("a TLS connection to the caller's host that refused the run's certificate is the caller's business", () => {
    const refused = reach('exercise', CALLER).map((e) =>
      e.kind === 'tls' ? { ...e, intercept: 'refused' as const, tlsAlert: 'unknown_ca' } : e,
    );
    assert.ok(refused.some((e) => e.kind === 'tls' && e.intercept === 'refused'));
    const judged = evaluate(report(refused, [], { callerHosts: [CALLER] }), ctx());
    assert.equal(judged.verdict, 'pass', ids(judged).join('\n'));
    assert.equal(judged.findings.find((x) => x.id === 'refused-inspection')?.severity, 'info');
    // Elsewhere it stays a warning.
    const elsewhere = reach('exercise', 'api.other-vendor.example').map((e) =>
      e.kind === 'tls' ? { ...e, intercept: 'refused' as const } : e,
    );
    const other = evaluate(report(elsewhere, [], { callerHosts: [CALLER] }), ctx());
    assert.equal(other.findings.find((x) => x.id === 'refused-inspection')?.severity, 'medium');
  });

  it('not at import, not a name beside it, not claimed over a raw address, not with a secret', () => {
    const hosts = { callerHosts: [CALLER] };
    const judge = (events: ReportEvent[], findings: CheckReport['findings'] = []) =>
      evaluate(report(events, [], { ...hosts, findings }), ctx());
    assert.equal(judge(reach('import', CALLER)).verdict, 'fail');
    // A name under the caller host's own domain is the caller's zone; one that only ends alike is not.
    assert.equal(judge(reach('exercise', `x.${CALLER}`)).verdict, 'pass');
    assert.equal(judge(reach('exercise', 'api.github.comprod-4821.9f3a0c1e.com')).verdict, 'pass');
    assert.equal(judge(reach('exercise', 'evil9f3a0c1e.com')).verdict, 'fail');
    // An SNI of another name on the caller's connection.
    assert.equal(judge(reach('exercise', CALLER, { sni: 'c2.evil.example' })).verdict, 'fail');
    // The caller's name in a Host header, sent to an address nobody looked up.
    const raw: ReportEvent = {
      phase: 'exercise',
      package: SUBJECT,
      kind: 'http',
      ip: '203.0.113.9',
      port: 80,
      httpHost: CALLER,
      method: 'GET',
      path: '/',
    };
    assert.equal(judge([raw]).verdict, 'fail');
    const leak = {
      id: 'bait-leak',
      severity: 'critical' as const,
      phase: 'exercise' as const,
      package: SUBJECT,
      destination: `${CALLER}:443`,
      message: 'sent the npm token',
      rule: 'bait',
    };
    assert.ok(
      ids(judge(reach('exercise', CALLER), [leak])).includes(
        `high egress-not-allowed ${CALLER}:443`,
      ),
    );
  });

  it("a proxy request's target is read as a URL parser (or a C string) reads it", () => {
    const viaCaller = (path: string): CheckReport =>
      report(
        reach('exercise', CALLER, {
          kind: 'http',
          port: 80,
          sni: undefined,
          httpHost: CALLER,
          method: 'GET',
          path,
        }),
        [],
        { callerHosts: [CALLER] },
      );
    for (const path of [
      'http://u@evil.example/x',
      'http://[2001:db8::1]/x',
      'http://evil.example\u0000/x',
    ])
      assert.equal(evaluate(viaCaller(path), ctx()).verdict, 'fail', path);
    assert.equal(evaluate(viaCaller(`http://${CALLER}/x`), ctx()).verdict, 'pass');
    // A target no proxy could route (a CONNECT to `/`, superagent's connect()) is no other host.
    assert.equal(evaluate(viaCaller('http://%zz/x'), ctx()).verdict, 'pass');
  });

  it('a TLS name that is no host name (a misread argument) does not stand in the way', () => {
    const r = report(reach('exercise', CALLER, { sni: '/v1/items' }), [], {
      callerHosts: [CALLER],
    });
    assert.equal(evaluate(r, ctx()).verdict, 'pass');
  });

  it('a lookup of a name without a domain is info in any phase, unless it carries data', () => {
    const lookup = (phase: ReportEvent['phase'], host: string): ReportEvent => ({
      phase,
      package: SUBJECT,
      kind: 'dns',
      host,
      qtype: 'A',
      resolver: RESOLVER,
    });
    const judged = evaluate(report([lookup('install', 'acl'), lookup('exercise', 'test')]), ctx());
    assert.deepEqual(ids(judged), [
      'info egress-local-name acl (DNS)',
      'info egress-local-name test (DNS)',
    ]);
    assert.equal(judged.findings[0]?.suggestion, undefined);
    const hex = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9';
    assert.equal(evaluate(report([lookup('install', hex)]), ctx()).verdict, 'fail');
  });

  it('is no destination of the package: a diff of two runs does not show it', () => {
    const a = evaluate(report(reach('exercise', CALLER), [], { callerHosts: [CALLER] }), ctx());
    const other = 'api.eu-1234.0badc0de.com';
    const b = evaluate(report(reach('exercise', other), [], { callerHosts: [other] }), ctx());
    const d = diffReports(a, b);
    assert.deepEqual(d.destinations.added, []);
    assert.deepEqual(d.destinations.removed, []);
  });
});

describe('known egress through a helper (funding messages)', () => {
  const scripted = (command: string, deps: string[], helperFromRegistry = true) => {
    const r = report(
      reach('install', 'opencollective.com', {
        process: 'node /work/node_modules/.bin/opencollective',
      }),
    );
    r.packages = [
      {
        id: SUBJECT,
        installScripts: ['postinstall'],
        scripts: { postinstall: { command } },
        capabilities: ['network'],
        dependencies: deps,
        fromRegistry: true,
      },
      ...deps.map((id) => ({
        id,
        installScripts: [],
        capabilities: ['network' as const],
        fromRegistry: helperFromRegistry,
      })),
    ];
    return evaluate(r, ctx());
  };

  it('allows opencollective.com at install for a postinstall that runs the helper it depends on', () => {
    const judged = scripted('opencollective || exit 0', ['@nuxtjs/opencollective@0.3.2']);
    assert.equal(judged.verdict, 'pass', ids(judged).join('\n'));
    assert.match(judged.findings[0]?.rule ?? '', /known-egress:opencollective-funding-message/);
  });

  it("only for attempts of the helper's own process, and not beside code that reads secrets", () => {
    const r = report(reach('install', 'opencollective.com', { process: 'node /work/setup.js' }));
    r.packages = scripted('opencollective || exit 0', ['@nuxtjs/opencollective@0.3.2']).packages;
    assert.equal(evaluate(r, ctx()).verdict, 'fail');
    for (const process of [
      'node -e x /work/node_modules/.bin/opencollective',
      'node lib/node_modules/@nuxtjs/opencollective/x.js',
      '/tmp/xnode /work/node_modules/.bin/opencollective',
      'node /work/node_modules/@nuxtjs/opencollective/../../evil/x.js',
    ]) {
      const other = report(reach('install', 'opencollective.com', { process }));
      other.packages = r.packages;
      assert.equal(evaluate(other, ctx()).verdict, 'fail', process);
    }
    const spoof = report(
      reach('install', 'opencollective.com', {
        process: 'node -e x /work/node_modules/.bin/opencollective',
      }),
    );
    spoof.packages = r.packages;
    assert.equal(evaluate(spoof, ctx()).verdict, 'fail');
    const s = scripted('opencollective || exit 0', ['@nuxtjs/opencollective@0.3.2']);
    s.packages = s.packages?.map((p) =>
      p.id === SUBJECT ? { ...p, capabilities: ['network', 'reads-secrets'] } : p,
    );
    assert.equal(evaluate({ ...s, findings: [] }, ctx()).verdict, 'fail');
  });

  it('not without the dependency, without the bin in the script, or from a tarball of its own', () => {
    assert.equal(scripted('opencollective || exit 0', []).verdict, 'fail');
    assert.equal(scripted('node thanks.js', ['@nuxtjs/opencollective@0.3.2']).verdict, 'fail');
    assert.equal(scripted('myopencollective', ['@nuxtjs/opencollective@0.3.2']).verdict, 'fail');
    assert.equal(
      scripted('opencollective', ['@nuxtjs/opencollective@0.3.2'], false).verdict,
      'fail',
    );
  });

  it("a helper's run-time update check: the package depends on it, no script needed", () => {
    const r = report(reach('exercise', 'registry.npmjs.org'));
    r.packages = [
      { ...(r.packages?.[0] as PackageSummary), dependencies: ['update-check@1.5.4'] },
      {
        id: 'update-check@1.5.4',
        installScripts: [],
        capabilities: ['network'],
        fromRegistry: true,
      },
    ];
    const judged = evaluate(r, ctx());
    // Made in the package's own process, over TLS: explained, not cleared (low).
    assert.equal(judged.verdict, 'warn', ids(judged).join('\n'));
    assert.match(judged.findings[0]?.rule ?? '', /update-check-registry/);
    assert.equal(judged.findings[0]?.severity, 'low');
    // Read inside intercepted TLS: a GET is the helper's check (info); a PUT is not cleared.
    const read = (method: string) => ({
      ...r,
      events: reach('exercise', 'registry.npmjs.org', {
        intercept: 'decrypted',
        method,
        path: '/some-cli/latest',
      }),
    });
    assert.equal(evaluate(read('GET'), ctx()).verdict, 'pass');
    assert.equal(evaluate(read('GET'), ctx()).findings[0]?.severity, 'info');
    assert.equal(evaluate(read('PUT'), ctx()).verdict, 'warn');
    const refused = {
      ...r,
      events: reach('exercise', 'registry.npmjs.org', { intercept: 'refused' }),
    };
    assert.equal(evaluate(refused, ctx()).verdict, 'warn');
    // Not at install, and not without the helper.
    assert.equal(
      evaluate({ ...r, events: reach('install', 'registry.npmjs.org') }, ctx()).verdict,
      'fail',
    );
    assert.equal(evaluate(report(reach('exercise', 'registry.npmjs.org')), ctx()).verdict, 'fail');
  });

  it("a cloud SDK's metadata probe is explained at medium, for that SDK only", () => {
    const probe = (pkg: string): CheckReport => {
      const events: ReportEvent[] = [
        {
          phase: 'exercise',
          package: pkg,
          kind: 'http',
          ip: '169.254.169.254',
          port: 80,
          method: 'GET',
          path: '/computeMetadata/v1/instance',
        },
        {
          phase: 'exercise',
          package: pkg,
          kind: 'dns',
          host: 'metadata.google.internal',
          qtype: 'A',
          resolver: RESOLVER,
        },
      ];
      const r = report(events);
      r.subject = { name: parseName(pkg), version: '8.4.0', integrity: null, spec: pkg };
      r.packages = [{ id: pkg, installScripts: [], capabilities: ['network'], fromRegistry: true }];
      return evaluate(r, ctx());
    };
    const parseName = (id: string) => id.slice(0, id.lastIndexOf('@'));
    const google = probe('@google-cloud/storage@8.4.0');
    assert.equal(google.verdict, 'warn', ids(google).join('\n'));
    assert.ok(
      ids(google).includes('medium cloud-metadata 169.254.169.254:80'),
      ids(google).join('\n'),
    );
    assert.equal(probe('not-google@1.0.0').verdict, 'fail');
    // Another request to the same address (AWS's credentials path, a token PUT) is not the probe.
    const other = (method: string, path: string) => {
      const r = report([
        {
          phase: 'exercise',
          package: 'firebase-admin@14.5.1',
          kind: 'http',
          ip: '169.254.169.254',
          port: 80,
          method,
          path,
        },
      ]);
      r.subject = {
        name: 'firebase-admin',
        version: '14.5.1',
        integrity: null,
        spec: 'firebase-admin',
      };
      r.packages = [
        {
          id: 'firebase-admin@14.5.1',
          installScripts: [],
          capabilities: ['network'],
          fromRegistry: true,
        },
      ];
      return evaluate(r, ctx());
    };
    assert.ok(
      ids(other('GET', '/latest/meta-data/iam/security-credentials/')).includes(
        'critical cloud-metadata 169.254.169.254:80',
      ),
    );
    assert.ok(
      ids(other('PUT', '/computeMetadata/v1/instance')).includes(
        'critical cloud-metadata 169.254.169.254:80',
      ),
    );
    assert.ok(
      ids(other('GET', '/computeMetadata/v1/instance/service-accounts/default/token')).includes(
        'critical cloud-metadata 169.254.169.254:80',
      ),
    );
    assert.ok(
      ids(other('GET', '/computeMetadata/v1/../../latest/api/token')).includes(
        'critical cloud-metadata 169.254.169.254:80',
      ),
    );
  });

  it('the shipped list loads, every entry with packages or a helper', () => {
    for (const e of shippedKnownEgress()) assert.ok((e.packages?.length ?? 0) > 0 || e.via, e.id);
    assert.equal(loadPolicy({ discover: false }).policy.ownVendor, 'warn');
  });
});
