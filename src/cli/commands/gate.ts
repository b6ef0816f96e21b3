import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { ExitCode } from '../../core/errors.js';
import { cliContext } from '../context.js';
import {
  npmConfigFromFlags,
  oneOutputKind,
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
import { renderGateMarkdown, renderGateSarif, renderGateText } from '../render-gate.js';
import { checkOutputPath, writeHtmlReport } from '../../report/html.js';
import { gateModel } from '../../report/model.js';

export function gateCommand(): Command {
  const cmd = new Command('gate')
    .description(
      'check the packages a change adds or upgrades in the lockfile (upgrades against their base version); for pull requests',
    )
    .option(
      '--base <ref>',
      'base lockfile, project folder or git ref (default: merge base with the default branch)',
    )
    .option('--head <ref>', 'head lockfile, project folder or git ref', '.')
    .option('--comment-file <file>', 'also write the Markdown summary to this file')
    .option(
      '--sarif <file>',
      'write SARIF 2.1.0 results (each at the lockfile entry of its package)',
    );
  return withFlags(
    cmd,
    [
      'json',
      'markdown',
      'html',
      ...RUN_FLAGS,
      'allowRemoteSources',
      'workspace',
      'runKnownMalicious',
      'failOn',
      ...LIMIT_FLAGS,
    ],
    'fail',
  )
    .addHelpText(
      'after',
      `
The verdict follows the policy: new install-time egress, a known-bad indicator or bait secrets
in the traffic fail; new runtime egress warns (the policy's "changes"). For an upgrade, egress the
base version already had is shown but does not fail. Allowing an expected change is a policy
edit, reviewed in the same pull request. Identical trees exit 0 without starting a container.

Exit codes: 0 pass, 1 findings at or above --fail-on (default fail) or a package whose locked
tarball changed without a version change, 2 usage or lockfile error, 3 environment (Docker,
images, registry, store), 4 internal error, 130 interrupted.`,
    )
    .action(
      async (
        o: SharedFlags & { base?: string; head: string; commentFile?: string; sarif?: string },
      ) => {
        oneOutputKind(o);
        if (o.html) checkOutputPath(o.html);
        for (const [flag, file] of [
          ['--comment-file', o.commentFile],
          ['--sarif', o.sarif],
        ] as const)
          if (file) checkOutputPath(file, flag);
        const timeouts = timeoutsFromFlags(o);
        const policyFiles = policyFromFlags(o);
        const npmConfig = npmConfigFromFlags(o);
        const ctx = cliContext();
        const { gate, defaultBase } = await import('../../gate/gate.js');
        const store = await storeFromFlags(o);
        const policy = await withMalicious(policyFiles, store);
        let report;
        try {
          report = await gate(ctx.sandbox, o.base ?? defaultBase(), o.head, {
            ...timeouts,
            ...(o.allowRemoteSources ? { allowRemoteSources: true } : {}),
            ...(o.workspace ? { workspace: o.workspace } : {}),
            ...(o.runKnownMalicious ? { runKnownMalicious: true } : {}),
            as: o.as,
            tlsIntercept: o.tlsIntercept,
            policy,
            npmConfig,
            store,
            noCache: !o.cache,
            log: ctx.log,
            signal: ctx.signal,
          });
        } finally {
          await store.close();
        }
        const md = renderGateMarkdown(report);
        if (o.commentFile) writeFileSync(o.commentFile, md);
        if (o.sarif)
          writeFileSync(o.sarif, JSON.stringify(renderGateSarif(report), null, 2) + '\n');
        process.stdout.write(
          o.json
            ? JSON.stringify(report, null, 2) + '\n'
            : o.markdown
              ? md
              : renderGateText(report),
        );
        // After the result is out: the page is one more way to read it, never the only one.
        if (o.html) writeHtmlReport(o.html, gateModel(report));
        const hit =
          report.retargeted.length > 0 ||
          reachesFailOn(
            report.packages.map((p) => p.report),
            o.failOn,
          );
        process.exitCode = hit ? ExitCode.findings : ExitCode.pass;
      },
    );
}
