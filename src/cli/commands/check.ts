import { Command } from 'commander';
import { checkStored } from '../../check/stored.js';
import { ExitCode } from '../../core/errors.js';
import { forTerminal } from '../../core/escape.js';
import { REPORT_SCHEMA_VERSION, type CheckReport } from '../../core/report.js';
import type { Phase } from '../../core/terms.js';
import { cliContext } from '../context.js';
import {
  npmConfigFromFlags,
  policyFromFlags,
  reachesFailOn,
  storeFromFlags,
  timeoutsFromFlags,
  withFlags,
  LIMIT_FLAGS,
  RUN_FLAGS,
  type SharedFlags,
} from '../options.js';
import { withMalicious } from '../../policy/load.js';
import { renderText } from '../render-text.js';
import { checkOutputPath, writeHtmlReport } from '../../report/html.js';
import { checksModel } from '../../report/model.js';

/** Phase and elapsed time, redrawn in place; only when stderr is a terminal. */
function progress(
  spec: string,
  log: (line: string) => void,
): { phase: (p: Phase) => void; log: (line: string) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { phase: () => undefined, log, stop: () => undefined };
  const started = Date.now();
  let current = 'resolving';
  const shown = forTerminal(spec);
  const draw = () =>
    process.stderr.write(
      `\r\x1b[2K${shown}: ${current} ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  const timer = setInterval(draw, 200);
  timer.unref();
  return {
    phase: (p) => {
      current = p;
      draw();
    },
    // Log lines go above the progress line.
    log: (line) => {
      process.stderr.write('\r\x1b[2K');
      log(line);
      draw();
    },
    stop: () => {
      clearInterval(timer);
      process.stderr.write('\r\x1b[2K');
    },
  };
}

export function checkCommand(): Command {
  const cmd = new Command('check')
    .description(
      'install, import and exercise packages in the sandbox and report every egress attempt',
    )
    .argument(
      '<spec...>',
      'registry spec (name, name@1.2.3, name@^1, @scope/name@tag), a .tgz path, or a package folder',
    )
    .option(
      '--against <version>',
      'compare with an earlier version of the package (a version, or "previous": the one before by semver)',
    );
  return withFlags(cmd, ['json', 'html', ...RUN_FLAGS, 'failOn', ...LIMIT_FLAGS])
    .addHelpText(
      'after',
      `
Every egress attempt is judged by the policy (docs/policy.md): your rules, the shipped list of
known legitimate downloads, the package's own "egress" declaration, then the default for the
phase (deny). Indicators (exfiltration channels, raw IPs, data in DNS names, ...) apply whatever
the policy allows. Findings have a severity: info, low, medium, high, critical.

Results are kept in a result store (SQLite, in the phonehome cache folder, or --store): a later
check of the same tarball (same integrity) in the same sandbox is answered from it, judged by
the current policy, and says so on stderr. --against compares with an earlier version: a
destination new at install fails, one new at runtime warns (the policy's "changes").

Registries, scoped registries, auth tokens, proxy and TLS settings come from your npm
configuration (npmrc files and npm_config_* variables), as npm reads them. Nothing runs on this
machine: install scripts and package code run only in the sandbox.

Exit codes: 0 pass, 1 findings at or above --fail-on, 2 usage error (also a bad policy file), 3 environment (Docker,
images), 4 internal error, 130 interrupted.`,
    )
    .action(async (specs: string[], o: SharedFlags & { against?: string }) => {
      if (o.html) checkOutputPath(o.html);
      const timeouts = timeoutsFromFlags(o);
      const policyFiles = policyFromFlags(o);
      const npmConfig = npmConfigFromFlags(o);
      const ctx = cliContext();
      const store = await storeFromFlags(o);
      const policy = await withMalicious(policyFiles, store);
      const reports: CheckReport[] = [];
      for (const spec of specs) {
        const started = Date.now();
        const bar = progress(spec, ctx.log);
        let report: CheckReport;
        try {
          ({ report } = await checkStored(ctx.sandbox, spec, {
            ...timeouts,
            npmConfig,
            policy,
            store,
            noCache: !o.cache,
            as: o.as,
            tlsIntercept: o.tlsIntercept,
            ...(o.against ? { against: o.against } : {}),
            log: bar.log,
            onPhase: bar.phase,
            signal: ctx.signal,
          }));
        } finally {
          bar.stop();
        }
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
      await store.close();
      if (o.html) writeHtmlReport(o.html, checksModel(reports));
      process.exitCode = reachesFailOn(reports, o.failOn) ? ExitCode.findings : ExitCode.pass;
    });
}
