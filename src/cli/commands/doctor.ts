import { Command } from 'commander';
import { isPhonehomeError } from '../../core/errors.js';
import { cliContext } from '../context.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      'check Docker, the sandbox images and the gateway rules; each failing line says how to fix it',
    )
    .option('--json', 'print the checks as JSON')
    .action(async (o: { json?: boolean }) => {
      const ctx = cliContext();
      const { engine, images } = await ctx.sandbox();
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
          detail: `engine ${info.serverVersion} (API ${info.serverApiVersion}, ${info.os}, kernel ${info.kernel}); client API ${info.clientApiVersion}; ${process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'}`,
        });
      } catch (e) {
        checks.push({
          name: 'docker',
          ok: false,
          detail: e instanceof Error ? e.message : String(e),
          ...(isPhonehomeError(e) ? { fix: e.fix } : {}),
        });
      }
      let gatewayImage: string | undefined;
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
                  detail: `veth, default routes and iptables rules installed (IPv4${r.ipv6 ? ' and IPv6' : ' only'})`,
                }
              : {
                  name: 'gateway rules',
                  ok: false,
                  detail: r.output || 'the probe container failed',
                  fix: 'The kernel or engine lacks something the isolation needs (iptables nat/filter with REDIRECT, conntrack, veth). phonehome will refuse to run packages here.',
                },
          );
        } catch (e) {
          checks.push({
            name: 'gateway rules',
            ok: false,
            detail: e instanceof Error ? e.message : String(e),
            ...(isPhonehomeError(e) ? { fix: e.fix } : {}),
          });
        }
      } else {
        checks.push({
          name: 'gateway rules',
          ok: false,
          detail: 'not checked: needs Docker and the gateway image',
          fix: 'Fix the lines above first.',
        });
      }
      if (o.json) {
        process.stdout.write(
          JSON.stringify({ ok: checks.every((c) => c.ok), checks }, null, 2) + '\n',
        );
      } else {
        for (const c of checks) {
          process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(14)} ${c.detail}\n`);
          if (!c.ok && c.fix) process.stdout.write(`     ${''.padEnd(14)} fix: ${c.fix}\n`);
        }
      }
      process.exitCode = checks.every((c) => c.ok) ? 0 : 3;
    });
}
