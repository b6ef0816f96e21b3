import { Command } from 'commander';
import { isPhonehomeError } from '../../core/errors.js';
import type { ImageStore, SandboxEngine } from '../../sandbox/sandbox.js';
import { engineAddresses } from './audit.js';
import { probeSeccompProfile, sandboxSeccompProfile } from '../../sandbox/seccomp.js';
import { cliContext } from '../context.js';
import { forTerminal } from '../../core/escape.js';
import {
  openStoreReadOnly,
  redactedUrl,
  storeLocation,
  type ResultStore,
} from '../../store/store.js';
import { setAge, STALE_DAYS } from './indicators.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      'check Docker, the sandbox images, the gateway rules and the seccomp profile; each failing line says how to fix it',
    )
    .option('--json', 'print the checks as JSON')
    .option(
      '--store <file|url>',
      'result store: a SQLite file or a postgres:// URL (default: $PHONEHOME_STORE, else results.sqlite in the phonehome cache folder)',
    )
    .option(
      '--engine <address>',
      'check this Docker engine (repeat for several; as `audit --engine`)',
      (v: string, all: string[] = []) => [...all, v],
    )
    .option('--engines-file <file>', 'check the engines of this file, one address per line')
    .action(
      async (o: { json?: boolean; store?: string; engine?: string[]; enginesFile?: string }) => {
        const ctx = cliContext();
        const addresses = engineAddresses(o.engine, o.enginesFile);
        const checks: Check[] = [];
        for (const address of addresses.length ? addresses : ['default']) {
          const { engine, images } = await ctx.sandboxAt(address);
          const lines = await engineChecks(engine, images);
          // Several engines: each line says which.
          checks.push(
            ...(addresses.length > 1
              ? lines.map((c) => ({ ...c, name: `${c.name} @ ${engine.name}` }))
              : lines),
          );
        }
        checks.push(await storeCheck(o.store));
        checks.push(await maliciousSetCheck(o.store));
        if (o.json) {
          process.stdout.write(
            JSON.stringify({ ok: checks.every((c) => c.ok), checks }, null, 2) + '\n',
          );
        } else {
          for (const c of checks) {
            process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(15)} ${c.detail}\n`);
            if (!c.ok && c.fix) process.stdout.write(`     ${''.padEnd(15)} fix: ${c.fix}\n`);
          }
        }
        process.exitCode = checks.every((c) => c.ok) ? 0 : 3;
      },
    );
}

/** One engine: it answers, has the images, and applies the gateway rules and the seccomp profile. */
async function engineChecks(engine: SandboxEngine, images: ImageStore): Promise<Check[]> {
  const { imagesStatus } = await import('../../images/build.js');
  const { checkGatewayRules } = await import('../../sandbox/topology.js');
  const checks: Check[] = [];
  let dockerOk = false;
  try {
    const info = await engine.info();
    dockerOk = true;
    checks.push({
      name: 'docker',
      ok: true,
      detail: `engine ${info.serverVersion} (API ${info.serverApiVersion}, ${info.os}, kernel ${info.kernel}); client API ${info.clientApiVersion}; ${engine.name === 'default' ? (process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock') : engine.name}`,
    });
  } catch (e) {
    checks.push(errorCheck('docker', e));
  }
  let gatewayImage: string | undefined;
  let runnerImage: string | undefined;
  if (dockerOk) {
    const { refs, present } = await imagesStatus(images);
    for (const k of ['runner', 'gateway'] as const) {
      checks.push(
        present[k]
          ? { name: `image ${k}`, ok: true, detail: `${refs[k]} present and current` }
          : {
              name: `image ${k}`,
              ok: false,
              detail: `${refs[k]} missing (or out of date: the tag is a hash of the current inputs)`,
              fix: 'Run `phonehome images build`.',
            },
      );
    }
    if (present.gateway) gatewayImage = refs.gateway;
    if (present.runner) runnerImage = refs.runner;
  }
  if (gatewayImage) {
    await using run = engine.newRun();
    try {
      const r = await checkGatewayRules(run, gatewayImage);
      checks.push(
        r.ok
          ? {
              name: 'gateway rules',
              ok: true,
              detail: `interface, default routes and iptables rules installed (IPv4${r.ipv6 ? ' and IPv6' : ' only'})`,
            }
          : {
              name: 'gateway rules',
              ok: false,
              detail: r.output || 'the probe container failed',
              fix: 'The kernel or engine lacks something the isolation needs (iptables nat/filter with REDIRECT, conntrack, a VXLAN or veth link). phonehome will refuse to run packages here.',
            },
      );
    } catch (e) {
      checks.push(errorCheck('gateway rules', e));
    }
  } else {
    checks.push({
      name: 'gateway rules',
      ok: false,
      detail: 'not checked: needs Docker and the gateway image',
      fix: 'Fix the lines above first.',
    });
  }
  checks.push(await seccompCheck(engine, runnerImage));
  checks.push(await tlsCheck(engine, runnerImage, gatewayImage));
  return checks;
}

/** The result store answers: kind, schema, runs. A store asked for that cannot be used fails. */
async function storeCheck(flag: string | undefined): Promise<Check> {
  const name = 'result store';
  let store: ResultStore | undefined;
  try {
    store = await openStoreReadOnly(storeLocation(flag));
    if (!store)
      return {
        name,
        ok: true,
        detail: `${forTerminal(redactedUrl(storeLocation(flag)))}: none yet (made by the first run)`,
      };
    return {
      name,
      ok: true,
      detail: `${store.kind} ${forTerminal(store.location)}: schema ${await store.schema()}, ${await store.count()} run(s)`,
    };
  } catch (e) {
    return errorCheck(name, e);
  } finally {
    await store?.close().catch(() => undefined);
  }
}

/**
 * How old the imported known-malicious set is. Informational: a missing or old set weakens what
 * is flagged without a run, it does not make the sandbox unsafe, so it never fails the doctor.
 */
async function maliciousSetCheck(path: string | undefined): Promise<Check & { note?: string }> {
  const name = 'malicious set';
  let store: ResultStore | undefined;
  try {
    store = await openStoreReadOnly(storeLocation(path));
    const set = await store?.maliciousSet();
    if (!set)
      return {
        name,
        ok: true,
        detail:
          'none imported (optional: `phonehome indicators import <folder|zip>` flags known-malicious versions without running them)',
      };
    const age = setAge(set);
    return {
      name,
      ok: true,
      detail: `${set.records} record(s) from ${forTerminal(set.source)}; ${age.line}${age.stale ? `; older than ${STALE_DAYS} days: import a fresh copy` : ''}`,
    };
  } catch (e) {
    return {
      name,
      ok: true,
      detail: `not read: ${e instanceof Error ? e.message : String(e)}`,
    };
  } finally {
    await store?.close();
  }
}

/** A check that could not be made: the error, and its fix when phonehome knows one. */
function errorCheck(name: string, e: unknown): Check {
  return {
    name,
    ok: false,
    detail: e instanceof Error ? e.message : String(e),
    ...(isPhonehomeError(e) ? { fix: e.fix } : {}),
  };
}

/**
 * TLS interception works end to end: in a sandbox behind a gateway, curl, python and node
 * (with nothing in its environment or command line) take the run CA's certificate for a name and
 * get the capture's 200. A machine where they do not would see every HTTPS request refused.
 */
async function tlsCheck(
  engine: SandboxEngine,
  runnerImage: string | undefined,
  gatewayImage: string | undefined,
): Promise<Check> {
  const name = 'tls interception';
  if (!runnerImage || !gatewayImage)
    return {
      name,
      ok: false,
      detail: 'not checked: needs Docker and both images',
      fix: 'Fix the lines above first.',
    };
  try {
    const { CaptureTopology } = await import('../../sandbox/topology.js');
    await using run = engine.newRun();
    const topo = await CaptureTopology.start(run, {
      runnerImage,
      gatewayImage,
      observer: false,
    });
    const url = 'https://doctor.tls-check.example/';
    const r = await topo.sandbox.exec(
      [
        'sh',
        '-c',
        [
          `echo "curl $(curl -sS -m 5 -o /dev/null -w '%{http_code}' ${url} 2>&1)"`,
          `echo "python $(python3 -c "import urllib.request as u; print(u.urlopen('${url}', timeout=5).status)" 2>&1 | tail -1)"`,
          `echo "require('https').get('${url}', (r) => console.log('node', r.statusCode)).on('error', (e) => console.log('node', e.code))" > /tmp/t.js && node /tmp/t.js`,
        ].join('; '),
      ],
      { timeoutMs: 60_000 },
    );
    const got = (tool: string) => new RegExp(`^${tool} (.*)$`, 'm').exec(r.stdout)?.[1] ?? '?';
    const tools = ['curl', 'python', 'node'];
    const ok = tools.every((t) => got(t) === '200');
    const detail = tools.map((t) => `${t} ${got(t)}`).join(', ');
    return ok
      ? { name, ok, detail: `the run CA is trusted in the sandbox: ${detail}` }
      : {
          name,
          ok,
          detail: `HTTPS through the capture: ${detail} (expected 200 each)`,
          fix: 'The runner image does not trust the run CA (rebuild it with `phonehome images build`); until then, `--no-tls-intercept` runs with TLS left alone.',
        };
  } catch (e) {
    return errorCheck(name, e);
  }
}

/**
 * The seccomp profile loads and passes its check, and, in a probe container from the runner
 * image, refuses AF_VSOCK with EAFNOSUPPORT while AF_INET and AF_UNIX work.
 */
async function seccompCheck(
  engine: SandboxEngine,
  runnerImage: string | undefined,
): Promise<Check> {
  const name = 'seccomp profile';
  let profile: { json: string; sha256: string };
  try {
    profile = sandboxSeccompProfile();
  } catch (e) {
    return {
      name,
      ok: false,
      detail: [e instanceof Error ? e.message : String(e), isPhonehomeError(e) ? e.detail : '']
        .filter(Boolean)
        .join(' ')
        .replace(/\n/g, '; '),
      ...(isPhonehomeError(e) ? { fix: e.fix } : {}),
    };
  }
  const id = `sha256 ${profile.sha256.slice(0, 12)}`;
  if (!runnerImage) {
    return {
      name,
      ok: false,
      detail: `${id} passes its check; not tried in a container: needs Docker and the runner image`,
      fix: 'Fix the lines above first.',
    };
  }
  try {
    await using run = engine.newRun();
    const r = await probeSeccompProfile(run, runnerImage, profile.json);
    return r.ok
      ? { name, ok: true, detail: `${id}; in a runner container: ${r.detail}` }
      : {
          name,
          ok: false,
          detail: `${id}; in a runner container: ${r.detail} (expected AF_VSOCK refused with EAFNOSUPPORT, AF_INET and AF_UNIX created)`,
          fix: 'The engine did not apply the profile as written (an engine older than Docker 20.10, or a runtime without seccomp errno support). phonehome will not run packages here.',
        };
  } catch (e) {
    return errorCheck(name, e);
  }
}
