import { Command, Option } from 'commander';
import { check } from '../../check/check.js';
import { ExitCode } from '../../core/errors.js';
import { REPORT_SCHEMA_VERSION, type CheckReport, type Verdict } from '../../core/report.js';
import { cliContext } from '../context.js';
import { renderText } from '../render-text.js';

const LEVELS: Record<Verdict | 'none', number> = { pass: 0, warn: 1, fail: 2, none: 99 };

export function checkCommand(): Command {
  return new Command('check')
    .description('install and import packages in the sandbox and report every egress attempt')
    .argument(
      '<spec...>',
      'registry spec (name, name@1.2.3, name@^1, @scope/name@tag), a .tgz path, or a package folder',
    )
    .option('--json', 'print the versioned JSON report')
    .option('--registry <url>', 'npm registry to resolve from')
    .addOption(
      new Option('--fail-on <level>', 'exit 1 when the verdict is at or above this level')
        .choices(['warn', 'fail', 'none'])
        .default('warn'),
    )
    .option('--install-timeout <seconds>', 'timeout of the install phase', '180')
    .action(
      async (
        specs: string[],
        o: {
          json?: boolean;
          registry?: string;
          failOn: 'warn' | 'fail' | 'none';
          installTimeout: string;
        },
      ) => {
        const ctx = cliContext();
        const reports: CheckReport[] = [];
        for (const spec of specs) {
          const started = Date.now();
          const report = await check(ctx.engine, ctx.images, spec, {
            ...(o.registry ? { registry: o.registry } : {}),
            installTimeoutMs: Number(o.installTimeout) * 1000,
            log: ctx.log,
            signal: ctx.signal,
          });
          ctx.log(
            `[check] ${spec}: ${report.verdict} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
          );
          reports.push(report);
          if (!o.json) process.stdout.write(renderText(report));
        }
        if (o.json) {
          const out =
            reports.length === 1 ? reports[0] : { schemaVersion: REPORT_SCHEMA_VERSION, reports };
          process.stdout.write(JSON.stringify(out, null, 2) + '\n');
        }
        const worst = Math.max(...reports.map((r) => LEVELS[r.verdict]));
        process.exitCode = worst >= LEVELS[o.failOn] ? ExitCode.findings : ExitCode.pass;
      },
    );
}
