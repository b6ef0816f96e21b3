import { Command } from 'commander';
import { checkStored } from '../../check/stored.js';
import { diffReports } from '../../core/compare.js';
import { PhonehomeError } from '../../core/errors.js';
import { cliContext } from '../context.js';
import { renderDiffMarkdown, renderDiffText } from '../render-diff.js';
import { checkOutputPath, writeHtmlReport } from '../../report/html.js';
import { diffModel } from '../../report/model.js';
import {
  npmConfigFromFlags,
  oneOutputKind,
  policyFromFlags,
  storeFromFlags,
  timeoutsFromFlags,
  withFlags,
  LIMIT_FLAGS,
  RUN_FLAGS,
  type SharedFlags,
} from '../options.js';
import { withMalicious } from '../../policy/load.js';

export function diffCommand(): Command {
  const cmd = new Command('diff')
    .description(
      'compare the egress of two versions: destinations added and removed per phase and package, phases that gained egress, install scripts added or changed, declarations widened',
    )
    .argument('<old-spec>', 'the earlier version (name@1.2.3, a .tgz, a folder)')
    .argument('<new-spec>', 'the later version');
  return withFlags(cmd, ['json', 'markdown', 'html', ...RUN_FLAGS, ...LIMIT_FLAGS])
    .addHelpText(
      'after',
      `
Each side comes from the result store when it holds that tarball checked in this sandbox, and is
run otherwise (and stored). Exit codes: 0 (whatever changed; use check --against to gate),
2 usage error, 3 environment, 130 interrupted.`,
    )
    .action(async (oldSpec: string, newSpec: string, o: SharedFlags) => {
      oneOutputKind(o);
      if (o.html) checkOutputPath(o.html);
      const timeouts = timeoutsFromFlags(o);
      const policyFiles = policyFromFlags(o);
      const npmConfig = npmConfigFromFlags(o);
      const ctx = cliContext();
      const store = await storeFromFlags(o);
      const policy = await withMalicious(policyFiles, store);
      try {
        const side = (spec: string) =>
          checkStored(ctx.sandbox, spec, {
            ...timeouts,
            as: o.as,
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
        if (o.html) writeHtmlReport(o.html, diffModel(d, before.report, after.report));
      } finally {
        await store.close();
      }
    });
}
