/**
 * Every flag that more than one command takes, declared once (npm's config/definitions is the
 * model): its name, argument, help and default live here, and each command lists the ones it
 * takes. What a flag means is read here too (policyFromFlags, storeFromFlags, …), so two commands
 * cannot read one flag two ways.
 */
import { type Command, Option } from 'commander';
import { CHECK_DEFAULTS } from '../check/defaults.js';
import { PhonehomeError } from '../core/errors.js';
import { severityRank, type CheckReport } from '../core/report.js';
import { loadPolicy, type LoadedPolicy } from '../policy/load.js';
import { loadNpmConfig, type NpmConfig } from '../resolve/npmrc.js';
import type { IdentityProfile } from '../sandbox/identity.js';
import { openStore, storeLocation, type ResultStore } from '../store/store.js';

/** --fail-on: a severity, or a verdict name (warn = low and above, fail = high and above). */
export const FAIL_ON = ['warn', 'fail', 'none', 'low', 'medium', 'high', 'critical'] as const;
export type FailOn = (typeof FAIL_ON)[number];

const d = (ms: number) => String(ms / 1000);

const DEFINITIONS = {
  json: () => new Option('--json', 'print the result as versioned JSON'),
  markdown: () =>
    new Option('--markdown', 'print the result as Markdown (for a pull request comment)'),
  html: () =>
    new Option(
      '--html <file>',
      'also write the result as one self-contained HTML page (timeline, findings, tables; opens from disk)',
    ),
  registry: () =>
    new Option(
      '--registry <url>',
      'npm registry to resolve from (default: from your npm config, like npm)',
    ),
  policy: () =>
    new Option(
      '--policy <file>',
      'policy file (default: the first phonehome.policy.{yaml,yml,json} from here up)',
    ),
  policyOverride: () =>
    new Option(
      '--policy-override <file>',
      'override merged on top of the policy (default: phonehome.policy.override.* next to it)',
    ),
  store: () =>
    new Option(
      '--store <file|url>',
      'result store: a SQLite file, or postgres://user@host/db for one a team shares (default: $PHONEHOME_STORE, else results.sqlite in the phonehome cache folder)',
    ),
  noCache: () =>
    new Option(
      '--no-cache',
      'run even when the result store has a result for the same tarball and sandbox',
    ),
  as: () =>
    new Option('--as <profile>', 'who the sandbox looks like: a developer laptop or a CI runner')
      .choices(['laptop', 'ci'])
      .default('laptop'),
  tlsIntercept: () =>
    new Option(
      '--no-tls-intercept',
      'leave TLS alone: see server names, not what is sent inside (default: read it with a CA made for the run)',
    ),
  installTimeout: () =>
    new Option('--install-timeout <seconds>', 'timeout of the install phase').default(
      d(CHECK_DEFAULTS.installTimeoutMs),
    ),
  importTimeout: () =>
    new Option('--import-timeout <seconds>', 'timeout of each import step').default(
      d(CHECK_DEFAULTS.importTimeoutMs),
    ),
  exerciseTimeout: () =>
    new Option('--exercise-timeout <seconds>', 'timeout of the exercise phase').default(
      d(CHECK_DEFAULTS.exerciseTimeoutMs),
    ),
  workspace: () =>
    new Option(
      '--workspace <name>',
      'in a monorepo, only what this workspace (its package name or folder) brings in',
    ),
  allowRemoteSources: () =>
    new Option(
      '--allow-remote-sources',
      'fetch the tarball URLs and git repositories the lockfile names outside your registries (internal addresses never)',
    ),
  runKnownMalicious: () =>
    new Option(
      '--run-known-malicious',
      'run versions a known-malicious record names too, to see what they do (they are flagged either way)',
    ),
  settle: () =>
    new Option(
      '--settle <seconds>',
      'how long processes that outlive a step (detached children) are watched before being killed',
    ).default(d(CHECK_DEFAULTS.settleMs)),
} satisfies Record<string, () => Option>;

export type FlagName = keyof typeof DEFINITIONS | 'failOn';

/** What every command that runs packages in the sandbox takes. */
export const RUN_FLAGS: FlagName[] = [
  'registry',
  'policy',
  'policyOverride',
  'store',
  'noCache',
  'as',
  'tlsIntercept',
];
/** The time limits of the phases. */
export const LIMIT_FLAGS: FlagName[] = [
  'installTimeout',
  'importTimeout',
  'exerciseTimeout',
  'settle',
];

/** The values commander gives for the shared flags (each command's own come on top). */
export interface SharedFlags {
  json?: boolean;
  markdown?: boolean;
  html?: string;
  registry?: string;
  policy?: string;
  policyOverride?: string;
  store?: string;
  cache: boolean;
  as: IdentityProfile;
  tlsIntercept: boolean;
  failOn: FailOn;
  installTimeout: string;
  importTimeout: string;
  exerciseTimeout: string;
  settle: string;
  allowRemoteSources?: boolean;
  workspace?: string;
  runKnownMalicious?: boolean;
}

/**
 * Add the shared flags a command takes, in this order. --fail-on's default differs by command
 * (a gate fails on high, check and audit on low): pass it with the list.
 */
export function withFlags(
  cmd: Command,
  names: FlagName[],
  failOnDefault: FailOn = 'warn',
): Command {
  for (const n of names)
    cmd.addOption(
      n === 'failOn'
        ? new Option(
            '--fail-on <level>',
            'exit 1 when a finding is at or above this severity (warn = low, fail = high)',
          )
            .choices(FAIL_ON)
            .default(failOnDefault)
        : DEFINITIONS[n](),
    );
  return cmd;
}

export function failOnRank(level: FailOn): number {
  if (level === 'none') return Infinity;
  return severityRank(level === 'warn' ? 'low' : level === 'fail' ? 'high' : level);
}

/** Whether any finding of the reports reaches the --fail-on level. */
export function reachesFailOn(reports: CheckReport[], level: FailOn): boolean {
  const rank = failOnRank(level);
  return reports.some((r) => r.findings.some((f) => severityRank(f.severity) >= rank));
}

/** The store named by --store, or the default one in the cache folder. */
export function storeFromFlags(o: Pick<SharedFlags, 'store'>): Promise<ResultStore> {
  return openStore(storeLocation(o.store));
}

/** The policy named by --policy and --policy-override, or found from the working directory. */
export function policyFromFlags(o: Pick<SharedFlags, 'policy' | 'policyOverride'>): LoadedPolicy {
  return loadPolicy({
    ...(o.policy ? { file: o.policy } : {}),
    ...(o.policyOverride ? { override: o.policyOverride } : {}),
  });
}

/** The user's npm configuration, with --registry on top. */
export function npmConfigFromFlags(o: Pick<SharedFlags, 'registry'>): NpmConfig {
  return loadNpmConfig(o.registry ? { registry: o.registry } : {});
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

/** The time limits given by the timeout flags a command takes. */
export function timeoutsFromFlags(
  o: Partial<Pick<SharedFlags, 'installTimeout' | 'importTimeout' | 'exerciseTimeout' | 'settle'>>,
): Partial<typeof CHECK_DEFAULTS> {
  return {
    ...(o.installTimeout
      ? { installTimeoutMs: seconds('--install-timeout', o.installTimeout) }
      : {}),
    ...(o.importTimeout ? { importTimeoutMs: seconds('--import-timeout', o.importTimeout) } : {}),
    ...(o.exerciseTimeout
      ? { exerciseTimeoutMs: seconds('--exercise-timeout', o.exerciseTimeout) }
      : {}),
    ...(o.settle ? { settleMs: seconds('--settle', o.settle) } : {}),
  };
}

/** --json and --markdown are two ways to print one result. */
export function oneOutputKind(o: Pick<SharedFlags, 'json' | 'markdown'>): void {
  if (o.json && o.markdown)
    throw new PhonehomeError('EUSAGE', 'Choose one of --json and --markdown.');
}
