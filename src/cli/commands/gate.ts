import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { ExitCode } from '../../core/errors.js';
import { loadNpmConfig } from '../../resolve/npmrc.js';
import { cliContext } from '../context.js';
import { renderGateMarkdown, renderGateSarif, renderGateText } from '../render-gate.js';
import { openStore, policyFromFlags } from '../store-option.js';
import { failOnOption, reachesFailOn, type FailOn } from './check.js';

export function gateCommand(): Command {
  return new Command('gate')
    .description(
      'check the packages a change adds or upgrades in the lockfile (upgrades against their base version); for pull requests',
    )
    .option(
      '--base <ref>',
      'base lockfile, project folder or git ref (default: merge base with the default branch)',
    )
    .option('--head <ref>', 'head lockfile, project folder or git ref', '.')
    .option('--json', 'print the gate report as JSON')
    .option('--markdown', 'print a Markdown summary for a pull request comment')
    .option('--comment-file <file>', 'also write the Markdown summary to this file')
    .option(
      '--sarif <file>',
      'write SARIF 2.1.0 results (each at the lockfile entry of its package)',
    )
    .option('--registry <url>', 'npm registry (default: from your npm config)')
    .option('--policy <file>', 'policy file (as for check)')
    .option('--policy-override <file>', 'override merged on top of the policy')
    .option(
      '--store <file>',
      'result store (default: results.sqlite in the phonehome cache folder)',
    )
    .addOption(failOnOption('fail'))
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
      async (o: {
        base?: string;
        head: string;
        json?: boolean;
        markdown?: boolean;
        commentFile?: string;
        sarif?: string;
        registry?: string;
        policy?: string;
        policyOverride?: string;
        store?: string;
        cache: boolean;
        failOn: FailOn;
      }) => {
        const policy = policyFromFlags(o);
        const npmConfig = loadNpmConfig(o.registry ? { registry: o.registry } : {});
        const ctx = cliContext();
        const { gate, defaultBase } = await import('../../gate/gate.js');
        const store = openStore(o.store);
        let report;
        try {
          report = await gate(ctx.sandbox, o.base ?? defaultBase(), o.head, {
            policy,
            npmConfig,
            store,
            noCache: !o.cache,
            log: ctx.log,
            signal: ctx.signal,
          });
        } finally {
          store.close();
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
