import { Command } from 'commander';
import { checkStored } from '../../check/stored.js';
import { diffReports } from '../../core/compare.js';
import { PhonehomeError } from '../../core/errors.js';
import { loadNpmConfig } from '../../resolve/npmrc.js';
import { cliContext } from '../context.js';
import { renderDiffMarkdown, renderDiffText } from '../render-diff.js';
import { openStore, policyFromFlags } from '../store-option.js';

export function diffCommand(): Command {
  return new Command('diff')
    .description(
      'compare the egress of two versions: destinations added and removed per phase and package, phases that gained egress, install scripts added or changed, declarations widened',
    )
    .argument('<old-spec>', 'the earlier version (name@1.2.3, a .tgz, a folder)')
    .argument('<new-spec>', 'the later version')
    .option('--json', 'print the diff as JSON')
    .option('--markdown', 'print the diff as Markdown (for a pull request comment)')
    .option('--registry <url>', 'npm registry to resolve from (default: from your npm config)')
    .option('--policy <file>', 'policy file (as for check)')
    .option('--policy-override <file>', 'override merged on top of the policy (as for check)')
    .option(
      '--store <file>',
      'result store (default: results.sqlite in the phonehome cache folder)',
    )
    .option('--no-cache', 'run both even when the store has results for them')
    .addHelpText(
      'after',
      `
Each side comes from the result store when it holds that tarball checked in this sandbox, and is
run otherwise (and stored). Exit codes: 0 (whatever changed; use check --against to gate),
2 usage error, 3 environment, 130 interrupted.`,
    )
    .action(
      async (
        oldSpec: string,
        newSpec: string,
        o: {
          json?: boolean;
          markdown?: boolean;
          registry?: string;
          policy?: string;
          policyOverride?: string;
          store?: string;
          cache: boolean;
        },
      ) => {
        if (o.json && o.markdown)
          throw new PhonehomeError('EUSAGE', 'Choose one of --json and --markdown.');
        const policy = policyFromFlags(o);
        const npmConfig = loadNpmConfig(o.registry ? { registry: o.registry } : {});
        const ctx = cliContext();
        const store = openStore(o.store);
        try {
          const side = (spec: string) =>
            checkStored(ctx.sandbox, spec, {
              npmConfig,
              policy,
              store,
              noCache: !o.cache,
              log: ctx.log,
              signal: ctx.signal,
            });
          const before = await side(oldSpec);
          const after = await side(newSpec);
          if (before.report.subject.name !== after.report.subject.name)
            throw new PhonehomeError(
              'EUSAGE',
              `diff compares two versions of one package, not ${before.report.subject.name} and ${after.report.subject.name}.`,
            );
          const d = diffReports(before.report, after.report);
          process.stdout.write(
            o.json
              ? JSON.stringify(d, null, 2) + '\n'
              : o.markdown
                ? renderDiffMarkdown(d)
                : renderDiffText(d),
          );
        } finally {
          store.close();
        }
      },
    );
}
