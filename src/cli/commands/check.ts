import { Command, Option } from 'commander';
import { CHECK_DEFAULTS } from '../../check/defaults.js';
import { checkStored } from '../../check/stored.js';
import { ExitCode, PhonehomeError } from '../../core/errors.js';
import { forTerminal } from '../../core/escape.js';
import { REPORT_SCHEMA_VERSION, severityRank, type CheckReport } from '../../core/report.js';
import type { Phase } from '../../core/terms.js';
import { openStore, policyFromFlags } from '../store-option.js';
import { loadNpmConfig } from '../../resolve/npmrc.js';
import { cliContext } from '../context.js';
import { renderText } from '../render-text.js';

/** --fail-on: a severity, or a verdict name (warn = low and above, fail = high and above). */
export const FAIL_ON = ['warn', 'fail', 'none', 'low', 'medium', 'high', 'critical'] as const;
export type FailOn = (typeof FAIL_ON)[number];

export function failOnRank(level: FailOn): number {
  if (level === 'none') return Infinity;
  return severityRank(level === 'warn' ? 'low' : level === 'fail' ? 'high' : level);
}

/** --fail-on, as check, audit and gate take it (with their own default). */
export function failOnOption(defaultLevel: FailOn): Option {
  return new Option(
    '--fail-on <level>',
    'exit 1 when a finding is at or above this severity (warn = low, fail = high)',
  )
    .choices(FAIL_ON)
    .default(defaultLevel);
}

/** Whether any finding of the reports reaches the --fail-on level. */
export function reachesFailOn(reports: CheckReport[], level: FailOn): boolean {
  const rank = failOnRank(level);
  return reports.some((r) => r.findings.some((f) => severityRank(f.severity) >= rank));
}

function seconds(flag: string, value: string): number {
  const n = Number(value);
  // Zero would skip a phase, and a skipped phase sees nothing: never a way to a pass.
  if (!Number.isFinite(n) || n <= 0)
    throw new PhonehomeError(
      'EUSAGE',
      `${flag} wants a number of seconds above zero, not "${value}".`,
    );
  return Math.round(n * 1000);
}

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
  const d = (ms: number) => String(ms / 1000);
  return new Command('check')
    .description(
      'install, import and exercise packages in the sandbox and report every egress attempt',
    )
    .argument(
      '<spec...>',
      'registry spec (name, name@1.2.3, name@^1, @scope/name@tag), a .tgz path, or a package folder',
    )
    .option('--json', 'print the versioned JSON report')
    .option(
      '--registry <url>',
      'npm registry to resolve from (default: from your npm config, like npm)',
    )
    .option(
      '--policy <file>',
      'policy file (default: the first phonehome.policy.{yaml,yml,json} from here up)',
    )
    .option(
      '--policy-override <file>',
      'override merged on top of the policy (default: phonehome.policy.override.* next to it)',
    )
    .option(
      '--against <version>',
      'compare with an earlier version of the package (a version, or "previous": the one before by semver)',
    )
    .option(
      '--store <file>',
      'result store (default: results.sqlite in the phonehome cache folder)',
    )
    .option('--no-cache', 'run even when the store has a result for this tarball and sandbox')
    .addOption(failOnOption('warn'))
    .option(
      '--install-timeout <seconds>',
      'timeout of the install phase',
      d(CHECK_DEFAULTS.installTimeoutMs),
    )
    .option(
      '--import-timeout <seconds>',
      'timeout of each import step',
      d(CHECK_DEFAULTS.importTimeoutMs),
    )
    .option(
      '--exercise-timeout <seconds>',
      'timeout of the exercise phase',
      d(CHECK_DEFAULTS.exerciseTimeoutMs),
    )
    .option(
      '--settle <seconds>',
      'how long processes that outlive a step (detached children) are watched before being killed',
      d(CHECK_DEFAULTS.settleMs),
    )
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
    .action(
      async (
        specs: string[],
        o: {
          json?: boolean;
          registry?: string;
          failOn: FailOn;
          policy?: string;
          policyOverride?: string;
          against?: string;
          store?: string;
          cache: boolean;
          as: 'laptop' | 'ci';
          installTimeout: string;
          importTimeout: string;
          exerciseTimeout: string;
          settle: string;
        },
      ) => {
        const timeouts = {
          installTimeoutMs: seconds('--install-timeout', o.installTimeout),
          importTimeoutMs: seconds('--import-timeout', o.importTimeout),
          exerciseTimeoutMs: seconds('--exercise-timeout', o.exerciseTimeout),
          settleMs: seconds('--settle', o.settle),
        };
        const policy = policyFromFlags(o);
        const npmConfig = loadNpmConfig(o.registry ? { registry: o.registry } : {});
        const ctx = cliContext();
        const store = openStore(o.store);
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
        store.close();
        process.exitCode = reachesFailOn(reports, o.failOn) ? ExitCode.findings : ExitCode.pass;
      },
    );
}
