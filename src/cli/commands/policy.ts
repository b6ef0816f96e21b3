import { existsSync, writeFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { Command } from 'commander';
import { PhonehomeError } from '../../core/errors.js';
import { forTerminal, forYamlString } from '../../core/escape.js';
import { parseDestination } from '../../policy/destination.js';
import { exactPackage } from '../../policy/evaluate.js';
import { parse as parseYaml } from 'yaml';
import { reachedDestination, type CheckReport, type Finding } from '../../core/report.js';
import { PHASES } from '../../core/terms.js';
import {
  findPolicyFile,
  formatProblems,
  loadPolicy,
  POLICY_FILE_NAMES,
  readPolicyFile,
} from '../../policy/load.js';
import { POLICY_VERSION } from '../../policy/parse.js';
import { npmConfigFromFlags, withFlags, type SharedFlags } from '../options.js';
import { cliContext } from '../context.js';

const HEADER = `# phonehome policy (format version ${POLICY_VERSION}; docs/policy.md, policies/policy.schema.json).
# Merged on top of phonehome's shipped defaults: deny egress in every phase unless a rule below,
# the shipped known-egress list or the package's own "egress" declaration allows it.
version: ${POLICY_VERSION}

# deny (high, fails), warn (medium) or allow (info) for egress nothing allows.
defaults:
  install: deny
  import: deny
  exercise: deny

# allow | warn | ignore: how a package's own "egress" declaration counts.
declarations: allow

# Allow the documented downloads of popular packages (policies/known-egress.json).
knownEgress: true

# warn (low) | allow (info) | deny: a package reaching its own vendor's domain at run time.
ownVendor: warn

# Rules are tried in order; the first that matches an attempt decides it. Destinations: host,
# host:port, *.zone, IP, CIDR, [IPv6]:port; packages: name, name@range, @scope/*;
# phases: install, import, exercise, runtime (= import and exercise).
#
#   - allow: [downloads.example.com:443]
#     packages: [some-tool@^2]
#     phases: [install]
#     why: postinstall downloads the platform binary
`;

/**
 * A rules list for the destinations a run saw. What nothing allows yet is a `deny` rule for a
 * person to flip to `allow`; what the known-egress list or the package's declaration already
 * allows is written commented out (uncomment to pin it in your own policy); what an indicator
 * forbids is only noted, since no rule can allow it.
 *
 * Destinations and package names come from the packages: values are written as YAML
 * double-quoted scalars with every control and invisible character escaped (forYamlString), and
 * comments quote them through forTerminal, so a newline in a DNS name cannot end a comment and
 * add a rule of its own.
 */
export function rulesFromReports(reports: CheckReport[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const r of reports) {
    for (const f of r.findings.filter(reachedDestination)) {
      const key = `${f.phase}\0${f.package ?? ''}\0${f.destination}`;
      if (seen.has(key) || !f.phase) continue;
      seen.add(key);
      out.push(ruleText(f, r.findings));
    }
  }
  if (out.length === 0) return 'rules: []\n';
  return `# Every destination the run saw. "deny" rules are not approved yet: change "deny" to "allow"\n# for each one you expect, and leave the rest denied.\nrules:\n${out.join('')}`;
}

/** The destination pattern of a suggested rule (phonehome's own YAML), read back. */
function suggestedPattern(suggestion: string | undefined): string | undefined {
  if (!suggestion) return undefined;
  try {
    const doc = parseYaml(suggestion) as unknown;
    const allow = Array.isArray(doc)
      ? (doc[0] as { allow?: unknown } | undefined)?.allow
      : undefined;
    return Array.isArray(allow) && allow.length === 1 && typeof allow[0] === 'string'
      ? allow[0]
      : undefined;
  } catch {
    return undefined;
  }
}

function ruleText(f: Finding, all: Finding[]): string {
  const dest = (f.destination ?? '').replace(/ \(DNS\)$/, '');
  const forbidden = all.filter(
    (g) =>
      g.rule?.startsWith('indicator:') &&
      g.severity !== 'info' &&
      !g.suggestion &&
      g.phase === f.phase &&
      g.package === f.package &&
      g.destination === f.destination,
  );
  const c = forTerminal;
  const seenAt = `seen during ${c(`${f.phase}`)}${f.package ? ` from ${c(f.package)}` : ''}`;
  // The rule the judgement suggested (its pattern is the attempt's, checked to mean only it and
  // only this package), as a deny to review. Without one (allowed already, or nothing can be
  // written that means only this attempt) the shown destination is used when it reads back as
  // exactly itself and the package id covers only that package; else the attempt is only noted:
  // flipped to allow, such a rule would allow more.
  const parsed = parseDestination(dest);
  const writable =
    typeof parsed !== 'string' &&
    (parsed.host === undefined || 'exact' in parsed.host) &&
    (f.package === undefined || exactPackage(f.package));
  const suggested = suggestedPattern(f.suggestion);
  const pattern = suggested ?? (writable ? dest : undefined);
  const body = [
    `- deny: [${forYamlString(pattern ?? dest)}]`,
    ...(f.package ? [`  packages: [${forYamlString(f.package)}]`] : []),
    `  phases: [${f.phase}]`,
  ];
  if (pattern === undefined)
    return `  # ${seenAt}: ${c(dest)} cannot be written as a rule that means only it\n`;
  if (forbidden.length && !f.suggestion)
    return `  # ${seenAt}: ${c(dest)} cannot be allowed (${forbidden.map((b) => c(`indicator ${b.id}, ${b.severity}`)).join('; ')})\n`;
  if (f.id === 'egress-allowed') {
    const by = f.rule === 'declaration' ? "the package's own declaration" : c(`${f.rule}`);
    return (
      [
        `  # ${seenAt}; already allowed by ${by}. Uncomment (as allow) to pin it in this policy:`,
        ...body.map((l) => `  # ${l.replace('- deny:', '- allow:')}`),
      ].join('\n') + '\n'
    );
  }
  return [`  # ${seenAt}`, ...body.map((l) => `  ${l}`)].join('\n') + '\n';
}

export function policyCommand(): Command {
  const cmd = new Command('policy').description('write and validate policy files');

  const init = cmd
    .command('init')
    .description(
      'write a starter policy; with specs, run them and list every destination they reached as a deny rule to review',
    )
    .argument('[spec...]', 'packages to run first (as for check)')
    .option('-o, --output <file>', 'where to write it (- for stdout)', POLICY_FILE_NAMES[0])
    .option('--force', 'overwrite an existing file');
  withFlags(init, ['registry', 'as']).action(
    async (
      specs: string[],
      o: Pick<SharedFlags, 'registry' | 'as'> & { output: string; force?: boolean },
    ) => {
      const target = o.output === '-' ? undefined : resolve(o.output);
      if (target && existsSync(target) && !o.force)
        throw new PhonehomeError('EUSAGE', `${target} exists; not overwritten.`, {
          fix: 'Pass --force to replace it, or --output another file.',
        });
      let body = 'rules: []\n';
      if (specs.length) {
        const ctx = cliContext();
        const sandbox = await ctx.sandbox();
        // Judged by the shipped defaults only: what the user's current policy allows is listed too.
        const policy = loadPolicy({ discover: false });
        const npmConfig = npmConfigFromFlags(o);
        const reports: CheckReport[] = [];
        for (const spec of specs) {
          ctx.log(`[policy init] running ${spec}`);
          reports.push(
            await (
              await import('../../check/check.js')
            ).check(sandbox.engine, sandbox.images, spec, {
              npmConfig,
              policy,
              as: o.as,
              log: ctx.log,
              signal: ctx.signal,
            }),
          );
        }
        body = rulesFromReports(reports);
      }
      const text = `${HEADER}\n${body}`;
      if (!target) process.stdout.write(text);
      else {
        writeFileSync(target, text, { flag: o.force ? 'w' : 'wx' });
        process.stderr.write(`wrote ${forTerminal(target)}\n`);
      }
    },
  );

  cmd
    .command('check')
    .description('validate a policy file (default: the one found from here up) and its override')
    .argument('[file]', 'policy file')
    .action((file: string | undefined) => {
      const path = file ? resolve(file) : findPolicyFile(process.cwd());
      if (!path)
        throw new PhonehomeError('EPOLICY', 'No policy file here or in any parent folder.', {
          fix: `Create one with \`phonehome policy init\` (${POLICY_FILE_NAMES.join(', ')}).`,
        });
      const { layer, problems } = readPolicyFile(path);
      if (problems.length)
        throw new PhonehomeError(
          'EPOLICY',
          `The policy file ${relative(process.cwd(), path) || path} is not valid (${problems.length} problem${problems.length > 1 ? 's' : ''}).`,
          { detail: formatProblems(problems) },
        );
      // The merged result also validates an override next to the file.
      const { policy } = file ? loadPolicy({ file: path }) : loadPolicy();
      const shown = relative(process.cwd(), path) || path;
      const overrides = Object.entries(policy.indicators);
      process.stdout.write(
        [
          `${shown}: valid, ${layer.rules.length} rule(s)`,
          `effective policy: ${policy.sources.map((p) => relative(process.cwd(), p) || p).join(' + ')} over the shipped defaults`,
          `  defaults: ${PHASES.map((p) => `${p} ${policy.defaults[p]}`).join(', ')}`,
          `  changes (--against): ${PHASES.map((p) => `${p} ${policy.changes[p]}`).join(', ')}`,
          `  declarations: ${policy.declarations}; known egress: ${policy.knownEgress ? 'on' : 'off'}; own vendor: ${policy.ownVendor}`,
          `  indicators: ${overrides.length ? overrides.map(([id, s]) => `${id} ${s}`).join(', ') : 'as shipped'}`,
          `  rules (first match wins):`,
          ...policy.rules.map(
            (r) =>
              `    ${r.action} ${r.destinations.map((d) => d.text).join(', ')}${r.packages ? ` for ${r.packages.map((p) => p.text).join(', ')}` : ''}${r.phases ? ` in ${r.phases.join(', ')}` : ''}  (${r.origin})`,
          ),
          `  hash: ${policy.hash}`,
        ].join('\n') + '\n',
      );
    });
  return cmd;
}
