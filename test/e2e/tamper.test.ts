/**
 * End to end, packages that fight back: each fixture tries to change its own verdict (forge the
 * step driver's result, take over the observer, borrow another package's npm identity, stop or
 * confuse phonehome's processes, outlive its step, rewrite the user's terminal, reach the
 * hypervisor through AF_VSOCK) and then phones home. Each must still get its real verdict: fail,
 * exit 1, the destination and the bait leak named, charged to the right package and phase. The
 * controls do ordinary things that look alike (detached helpers, /proc reads, many lookups of a
 * declared host) and must pass.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tar from 'tar';
import type { CheckReport, Finding, ReportEvent } from '../../src/core/report.js';
import { cli, fixture, leftovers, type CliResult } from '../support/cli.js';
import { startRegistry } from '../support/registry.js';
import { images } from '../support/sandbox.js';

async function check(
  name: string,
  ...flags: string[]
): Promise<{ r: CliResult; report: CheckReport }> {
  // A fixture's name, or a spec as it is (name@version, a folder).
  const spec = name.includes('/') || name.includes('@') ? name : fixture(name);
  const r = await cli(['check', spec, '--json', '--no-cache', ...flags]);
  assert.equal(r.hung, false, `${name}: the CLI did not end`);
  assert.notEqual(r.code, 4, `${name}: internal error (exit 4):\n${r.stderr}`);
  assert.equal(await leftovers(r.pid), 0, `${name}: no container is left`);
  assert.ok(r.code === 0 || r.code === 1, `${name}: exit ${r.code}:\n${r.stderr}`);
  return { r, report: JSON.parse(r.stdout) as CheckReport };
}

function baitLeak(report: CheckReport, destination: string): Finding {
  const f = report.findings.find((x) => x.id === 'bait-leak' && x.destination === destination);
  assert.ok(
    f,
    `a bait leak to ${destination}: ${JSON.stringify(report.findings.map((x) => [x.id, x.destination]))}`,
  );
  return f;
}

/** A character the terminal would act on (the renderers' own newlines aside). */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

const eventsTo = (report: CheckReport, host: string): ReportEvent[] =>
  report.events.filter((e) => e.host === host || e.sni === host);

describe('phonehome check (CLI), packages that tamper with the sandbox', () => {
  before(async () => {
    await images();
  });

  it('a forged step result through /proc/<driver>/fd/1 changes nothing', async () => {
    const { r, report } = await check('tamper-forged-result');
    assert.equal(r.code, 1);
    assert.equal(report.verdict, 'fail');
    const leak = baitLeak(report, 'collect.forged-result.example:80');
    assert.equal(leak.phase, 'install');
    assert.equal(leak.package, 'tamper-forged-result@1.0.0');
    const http = eventsTo(report, 'collect.forged-result.example').find((e) => e.kind === 'http');
    assert.equal(http?.phase, 'install');
    // The step driver's result was believed: every phase ran and completed in order.
    assert.deepEqual(
      report.phases.map((p) => [p.name, p.status]),
      [
        ['install', 'completed'],
        ['import', 'completed'],
        ['exercise', 'completed'],
      ],
    );
  });

  it("SIGUSR1 to the observer opens no inspector, and the observer's answers stay true", async () => {
    const { r, report } = await check('tamper-observer-takeover');
    assert.equal(r.code, 1);
    const leak = baitLeak(report, 'api.github.com:80');
    assert.equal(leak.package, 'tamper-observer-takeover@1.0.0');
    assert.equal(leak.phase, 'install');
    const http = eventsTo(report, 'api.github.com').find((e) => e.kind === 'http');
    assert.ok(http, 'the GET is recorded');
    // What the package saw, in its own words: phonehome's processes refused its signal and /proc.
    assert.match(http.path ?? '', /usr1-EPERM/);
    assert.match(http.path ?? '', /fd-EACCES/);
    assert.doesNotMatch(http.path ?? '', /usr1-ok|fd-ok/);
    assert.ok(
      report.events.every((e) => e.process),
      'every attempt has its process: the observer kept answering',
    );
    assert.ok(!report.findings.some((f) => f.id === 'observer-lost'));
  });

  it("a child with another package's npm identity is charged to the package that started it", async () => {
    const { r, report } = await check('tamper-forged-identity');
    assert.equal(r.code, 1);
    const post = eventsTo(report, 'github.com').find((e) => e.kind === 'http');
    assert.ok(post, 'the POST is recorded');
    assert.equal(post.package, 'tamper-forged-identity@1.0.0');
    assert.equal(post.phase, 'install');
    assert.ok(
      !report.events.some((e) => e.package?.startsWith('bcrypt')),
      'nothing is charged to bcrypt',
    );
    const denied = report.findings.find(
      (f) => f.id === 'egress-not-allowed' && f.destination === 'github.com:80',
    );
    assert.ok(denied, 'github.com is not known egress of this package');
    assert.equal(denied.severity, 'high');
    assert.equal(baitLeak(report, 'github.com:80').package, 'tamper-forged-identity@1.0.0');
  });

  it('fake lines into every process and SIGSTOP to everything: still a report, exit 1', async () => {
    const { r, report } = await check('tamper-generic', '--install-timeout', '15', '--settle', '1');
    assert.equal(r.code, 1, r.stderr);
    const leak = baitLeak(report, 'drop.tamper-generic.example:80');
    assert.equal(leak.package, 'tamper-generic@1.0.0');
    assert.equal(leak.phase, 'install');
    // It stopped its own npm (the scripts' parent, of its own uid), so its install step ran into
    // the timeout; nothing of phonehome's was stopped: the later phases ran, and the observer
    // named every process.
    assert.equal(report.phases.find((p) => p.name === 'install')?.status, 'timeout');
    assert.equal(report.phases.find((p) => p.name === 'import')?.status, 'completed');
    assert.ok(eventsTo(report, 'drop.tamper-generic.example').every((e) => e.process));
    assert.ok(!report.findings.some((f) => f.id === 'tampering'), 'no result was forged');
  });

  it('a zombie leader whose thread lives on is killed at the end of its step', async () => {
    const { r, report } = await check('tamper-zombie-leader', '--settle', '2');
    assert.equal(r.code, 1);
    const ticks = report.events.filter((e) => e.host?.endsWith('.zombie-beacon.example'));
    assert.ok(ticks.length > 0, 'the beacon ran during install');
    assert.deepEqual([...new Set(ticks.map((e) => e.phase))], ['install'], 'and never after');
    // Its bundler's tarball shipped it: the bundler's install step is charged.
    assert.deepEqual([...new Set(ticks.map((e) => e.package))], ['tamper-zombie-leader@1.0.0']);
    assert.ok(
      ticks.some((e) => /python3/.test(e.process ?? '')),
      'the live thread is found',
    );
    assert.match(report.phases.find((p) => p.name === 'install')?.note ?? '', /were killed/);
  });

  it('control characters from the package never reach the terminal raw', async () => {
    const r = await cli(['check', fixture('tamper-terminal-escape'), '--no-cache']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^FAIL tamper-terminal-escape@1\.0\.0/);
    assert.doesNotMatch(r.stdout, RAW_CONTROL);
    assert.doesNotMatch(r.stderr, RAW_CONTROL);
    assert.match(r.stdout, /\\x1b\[2k\\rpass\\x07\|x\.esc-beacon\.example/);
    // The JSON report keeps the names as they were asked.
    const { report } = await check('tamper-terminal-escape');
    assert.ok(report.events.some((e) => e.host === '\x1b[2k\rpass\x07|x.esc-beacon.example'));
  });

  it('an AF_VSOCK socket cannot be created in the sandbox', async () => {
    const { report } = await check('tamper-vsock');
    const probe = report.events.find((e) => e.host?.endsWith('.vsock-probe.example'));
    assert.ok(probe, 'the probe reported through DNS');
    // EAFNOSUPPORT, as on a kernel without the family.
    assert.equal(probe.host, 'vsock-errno97.vsock-probe.example');
  });

  it('51,000 lookups of one name do not hide the POST that follows them', async () => {
    const { r, report } = await check('tamper-lookup-flood', '--settle', '1');
    assert.equal(r.code, 1);
    const leak = baitLeak(report, 'collect.lookup-flood.example:80');
    assert.equal(leak.package, 'tamper-lookup-flood@1.0.0');
    assert.equal(leak.phase, 'install');
    // The flood itself is one destination, counted to the attempt.
    const flood = report.events.filter((e) => e.host === 'cdn.updates-check.example');
    const counted = flood.reduce((n, e) => n + (e.count ?? 1), 0);
    assert.ok(counted > 1000, `${counted} lookups counted`);
    assert.ok(report.findings.some((f) => f.id === 'capture-summarised'));
  });

  it('a flood of datagrams and held connections: the theft is still seen, and what was lost is said', async () => {
    const { r, report } = await check('tamper-connection-flood', '--settle', '1');
    assert.equal(r.code, 1);
    const leak = baitLeak(report, 'collect.connection-flood.example:80');
    assert.equal(leak.package, 'tamper-connection-flood@1.0.0');
    assert.equal(leak.phase, 'install');
    const udp = report.events
      .filter((e) => e.kind === 'udp')
      .reduce((n, e) => n + (e.count ?? 1), 0);
    const lost = report.findings.find((f) => f.id === 'datagrams-lost');
    // Every datagram is either recorded or counted as lost by the kernel, never silently gone.
    assert.ok(udp > 0);
    assert.ok(udp >= 20000 || lost, `${udp} datagrams recorded and no loss reported`);
    // Attempts without their process are still charged to the package, by its step.
    assert.ok(report.events.every((e) => e.package === 'tamper-connection-flood@1.0.0'));
  });

  it('connections reset before the capture accepts them, behind decoys to its port, are still recorded', async () => {
    const { r, report } = await check('tamper-reset-before-accept', '--settle', '1');
    assert.equal(r.code, 1);
    assert.equal(report.verdict, 'fail');
    const to = (host: string) =>
      report.events.filter((e) => e.kind !== 'dns' && e.host === host && e.port === 443);
    assert.equal(to('drop.reset-race.example').length, 1, JSON.stringify(report.events));
    // Each of the twenty is a connection of its own (another source port).
    assert.equal(to('linger.reset-race.example').length, 20, JSON.stringify(report.events));
    // Read from the connection table, they have no process, and are charged to the package.
    for (const e of [...to('drop.reset-race.example'), ...to('linger.reset-race.example')])
      assert.equal(e.package, 'tamper-reset-before-accept@1.0.0');
    // The decoys were refused, as on a machine where nothing listens on that port.
    assert.ok(!report.events.some((e) => e.ip === '127.0.0.1'));
  });

  it("a connection reset before accept on an earlier connection's ports is one of its own, in its phase", async () => {
    const policy = join(fixture('tamper-claim-reuse'), 'policy.yaml');
    const { r, report } = await check('tamper-claim-reuse', '--policy', policy);
    assert.equal(r.code, 1);
    const to = (phase: string) =>
      report.events.filter(
        (e) =>
          e.kind !== 'dns' &&
          e.phase === phase &&
          e.host === 'assets.claim-reuse.example' &&
          e.port === 443,
      );
    const seen = JSON.stringify(report.events.filter((e) => e.kind !== 'dns'));
    const identities = new Set(to('install').map((e) => e.identity));
    assert.ok(identities.size >= 1, seen);
    // Under each identity, both: the one the table shows under a reset install connection's
    // ports (CLOSE), and the one under a closed one's (TIME_WAIT).
    for (const identity of identities)
      assert.ok(to('import').filter((e) => e.identity === identity).length >= 2, seen);
    for (const e of to('import')) assert.equal(e.package, 'tamper-claim-reuse@1.0.0');
    assert.ok(
      report.findings.some(
        (f) => f.phase === 'import' && /assets\.claim-reuse\.example:443/.test(f.message),
      ),
      JSON.stringify(report.findings),
    );
    // The lookups repeated byte for byte from one socket are recorded, once per process at least.
    assert.ok(report.events.some((e) => e.kind === 'dns' && e.phase === 'import'));
  });

  it('a reset connection is recorded even when a full table makes polls of it slow', async () => {
    const { r, report } = await check('tamper-slow-table');
    assert.equal(r.code, 1);
    assert.equal(report.verdict, 'fail');
    const out = report.events.filter((e) => e.kind === 'tcp' && e.ip === '198.51.100.7');
    // Once under each identity the check ran.
    assert.ok(out.length >= 1, JSON.stringify(report.events.filter((e) => e.kind !== 'dns')));
    for (const e of out) {
      assert.equal(e.port, 443);
      assert.equal(e.package, 'tamper-slow-table@1.0.0');
    }
  });

  it('a secret in a TLS ClientHello to a declared host is a bait leak', async () => {
    const { r, report } = await check('tamper-tls-hello-secret');
    assert.equal(r.code, 1);
    const leak = baitLeak(report, 'telemetry.hello-secret.example:443');
    assert.equal(leak.package, 'tamper-tls-hello-secret@1.0.0');
    assert.match(leak.message, /TLS handshake data/);
  });

  it('the token as uppercase hex, standard base32 or a gzip body to declared hosts is a bait leak', async () => {
    const { r, report } = await check('tamper-encoded-exfil');
    assert.equal(r.code, 1);
    for (const host of ['a', 'b', 'c']) {
      const leak = baitLeak(report, `${host}.metrics-cdn.example:80`);
      assert.equal(leak.package, 'tamper-encoded-exfil@1.0.0');
      assert.equal(leak.phase, 'import');
    }
  });

  it('a fork chain no listing of /proc catches is killed with its step', async () => {
    const { r, report } = await check('tamper-fork-chain', '--settle', '1');
    assert.equal(r.code, 1);
    const ticks = report.events.filter((e) => e.host === 'chain-beacon.example');
    assert.ok(ticks.length > 0, 'the chain ran during install');
    assert.deepEqual([...new Set(ticks.map((e) => e.phase))], ['install'], 'and never after');
    assert.deepEqual([...new Set(ticks.map((e) => e.package))], ['tamper-fork-chain@1.0.0']);
  });

  it('a process named after an Object.prototype key gets a report, not an internal error', async () => {
    const { r, report } = await check('tamper-proto-key');
    assert.equal(r.code, 1);
    const dns = eventsTo(report, 'proto-key.example');
    assert.ok(dns.length > 0);
    assert.ok(dns.every((e) => e.process === 'constructor'));
  });

  it("70 KB of control bytes on an install step's output is not mistaken for tampering", async () => {
    const { r, report } = await check('hostile-control-output');
    assert.equal(r.code, 0, JSON.stringify(report.findings));
    assert.ok(!report.findings.some((f) => f.id === 'tampering'));
    assert.ok((report.phases[0]?.outputBytes ?? 0) >= 140 * 1024);
  });

  describe('borrowing another package of the tree', () => {
    let registry: Awaited<ReturnType<typeof startRegistry>>;
    let dir: string;
    before(async () => {
      registry = await startRegistry([fixture('tamper-victim'), fixture('tamper-modify-victim')]);
      dir = mkdtempSync(join(tmpdir(), 'phonehome-tamper-'));
    });
    after(async () => {
      await registry.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("another package's files are locked for a step; npm's configuration is watched", async () => {
      // The victim's download is allowed for it by the user's policy: a theft planted in its
      // script would run in its step, under its name and allowance.
      const policy = join(dir, 'phonehome.policy.yaml');
      writeFileSync(
        policy,
        'version: 1\nrules:\n  - allow: [victim-cdn.example]\n    packages: [tamper-victim]\n    phases: [install]\n',
      );
      const { r, report } = await check(
        'tamper-modify-victim@1.0.0',
        '--registry',
        registry.url,
        '--policy',
        policy,
      );
      assert.equal(r.code, 1, r.stderr);
      // In the package's own words: the victim's script was not writable and its folder could not
      // be swapped; the tree had no bin links, so the shim went into a new node_modules/.bin
      // (watched, below).
      const said = report.events.find((e) => e.host?.endsWith('.modify-victim.example'));
      assert.equal(said?.host, 'plant-eacces-bin-done-swap-eperm.modify-victim.example');
      assert.equal(said?.package, 'tamper-modify-victim@1.0.0');
      // ~/.npmrc is the user's to write, so it is watched: the preload is a critical finding.
      const planted = report.findings.find((f) => f.id === 'tree-modified');
      assert.ok(planted, JSON.stringify(report.findings.map((f) => f.id)));
      assert.equal(planted.severity, 'critical');
      assert.equal(planted.package, 'tamper-modify-victim@1.0.0');
      assert.equal(planted.phase, 'install');
      assert.match(planted.message, /\.npmrc/);
      assert.match(planted.message, /node_modules\/\.bin\/node/);
      assert.match(planted.message, /\.cache\/node-gyp\/99\.0\.0\/include\/node\/common\.gypi/);
    });

    it("a tarball that calls itself bcrypt@5.1.1 gets none of bcrypt's known egress", async () => {
      const fake = join(dir, 'fake');
      mkdirSync(join(fake, 'package'), { recursive: true });
      writeFileSync(
        join(fake, 'package', 'package.json'),
        JSON.stringify({ name: 'bcrypt', version: '5.1.1', scripts: { install: 'node i.js' } }),
      );
      writeFileSync(
        join(fake, 'package', 'i.js'),
        "require('https').get('https://github.com/kelektiv/node.bcrypt.js/releases', (r) => r.resume()).on('error', () => {});\nsetTimeout(() => {}, 300);\n",
      );
      const tgz = join(dir, 'bcrypt-5.1.1.tgz');
      await tar.c({ gzip: true, file: tgz, cwd: fake }, ['package']);
      const app = join(dir, 'app');
      mkdirSync(app);
      writeFileSync(
        join(app, 'package.json'),
        JSON.stringify({
          name: 'uses-fake-bcrypt',
          version: '1.0.0',
          dependencies: { bcrypt: `file:${tgz}` },
        }),
      );
      const { r, report } = await check(app);
      assert.equal(r.code, 1, r.stderr);
      const tls = eventsTo(report, 'github.com').find((e) => e.kind === 'tls');
      assert.equal(tls?.package, 'bcrypt@5.1.1');
      assert.ok(!report.findings.some((f) => f.rule?.startsWith('known-egress:')));
      const denied = report.findings.find(
        (f) => f.id === 'egress-not-allowed' && f.destination === 'github.com:443',
      );
      assert.equal(denied?.severity, 'high');
      assert.equal(report.packages?.find((p) => p.id === 'bcrypt@5.1.1')?.fromRegistry, false);
    });
  });

  it('controls pass: a detached helper that reads /proc, many lookups of a declared host', async () => {
    for (const name of [
      'honest-detached-helper',
      'honest-many-lookups',
      'honest-postinstall-prints',
    ]) {
      const { r, report } = await check(name);
      assert.equal(r.code, 0, `${name}: ${JSON.stringify(report.findings)}`);
      assert.equal(report.verdict, 'pass');
      assert.ok(
        report.phases.every((p) => p.status === 'completed'),
        name,
      );
      assert.ok(
        !report.findings.some((f) =>
          ['tampering', 'capture-bound', 'tree-modified'].includes(f.id),
        ),
        name,
      );
    }
  });
});
