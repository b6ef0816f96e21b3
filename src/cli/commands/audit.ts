import { Command, Option } from 'commander';
import type { AuditProgress, AuditReport } from '../../audit/audit.js';
import { ExitCode, PhonehomeError } from '../../core/errors.js';
import { readFileSync } from 'node:fs';
import { parseEngine } from '../../sandbox/docker/connect.js';
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
import { renderAuditMarkdown, renderAuditText } from '../render-audit.js';
import { checkOutputPath, writeHtmlReport } from '../../report/html.js';
import { auditModel } from '../../report/model.js';

function fmt(s: number): string {
  const m = Math.floor(s / 60);
  return m ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

/** A bar redrawn in place on a terminal; a plain line every 10 s otherwise. */
function progressDisplay(): { update: (p: AuditProgress) => void; stop: () => void } {
  const started = Date.now();
  let last: AuditProgress | undefined;
  let lastLine = 0;
  const line = (p: AuditProgress) => {
    const elapsed = (Date.now() - started) / 1000;
    const ran = p.done - p.fromStore;
    const left = p.total - p.done;
    const eta = ran > 0 ? fmt((elapsed / ran) * left) : '?';
    return `${p.done}/${p.total} done, ${p.fromStore} from the store, ${p.running} running, ${fmt(elapsed)} elapsed, ETA ${left ? eta : '0s'}`;
  };
  if (process.stderr.isTTY) {
    const draw = () => {
      if (!last) return;
      const width = 24;
      const filled = Math.round((last.done / Math.max(1, last.total)) * width);
      process.stderr.write(
        `\r\x1b[2K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${line(last)}`,
      );
    };
    const timer = setInterval(draw, 250);
    timer.unref();
    return {
      update: (p) => {
        last = p;
        draw();
      },
      stop: () => {
        clearInterval(timer);
        process.stderr.write('\r\x1b[2K');
      },
    };
  }
  // Not a terminal: a line every 10 s whether or not anything finished, and one at the end.
  const timer = setInterval(() => {
    if (last) process.stderr.write(`[audit] ${line(last)}\n`);
  }, 10_000);
  timer.unref();
  return {
    update: (p) => {
      last = p;
      if (p.done === p.total && Date.now() - lastLine > 1000) {
        lastLine = Date.now();
        process.stderr.write(`[audit] ${line(p)}\n`);
      }
    },
    stop: () => clearInterval(timer),
  };
}

export function auditCommand(): Command {
  const cmd = new Command('audit')
    .description(
      'check every package of a lockfile at its locked version and integrity; results from the store are reused',
    )
    .argument(
      '[path]',
      'a lockfile (package-lock.json, npm-shrinkwrap.json, pnpm-lock.yaml, yarn.lock, bun.lock) or a project folder',
      '.',
    )
    .addOption(
      new Option(
        '--omit <kind...>',
        'leave out dev, optional or peer dependencies, like npm',
      ).choices(['dev', 'optional', 'peer']),
    )
    .option(
      '--concurrency <n>',
      'sandboxes at once, on each engine (default: from its CPU count and memory)',
    )
    .option(
      '--per-sandbox <n>',
      'packages per sandbox (default: 40 to 150, by the size of the tree)',
    )
    .option(
      '--shard <k/n>',
      'only part k of n of the tree (CI jobs sharing a store; the same parts on every machine)',
    )
    .option(
      '--report-only',
      'run nothing: the report from the store alone (after the --shard jobs); what it lacks is not run',
    )
    .option(
      '--engine <address>',
      'a Docker engine of the pool (repeat for several): default, unix:///path, tcp://host:2376?tls=<dir>, ssh://user@host',
      (v: string, all: string[] = []) => [...all, v],
    )
    .option('--engines-file <file>', 'engines of the pool, one address per line (# comments)');
  // No exercise phase in an audit.
  const limits = LIMIT_FLAGS.filter((f) => f !== 'exerciseTimeout');
  return withFlags(cmd, [
    'json',
    'markdown',
    'html',
    ...RUN_FLAGS,
    'allowRemoteSources',
    'workspace',
    'runKnownMalicious',
    'failOn',
    ...limits,
  ])
    .addHelpText(
      'after',
      `
Only packages with install scripts (or binding.gyp) get an install phase; every package is
loaded (require(), or import() when it cannot be required); the exercise phase is not run.
Interrupted audits keep what finished in the store: run again to resume. Reads npm's
(package-lock.json, npm-shrinkwrap.json), pnpm's (pnpm-lock.yaml, lockfile 6 and 9), Yarn's
(yarn.lock, classic and Berry) and Bun's (bun.lock) lockfiles, workspaces included; registry
packages are fetched from the registry your npm configuration names.

Exit codes: 0 pass, 1 findings at or above --fail-on (default warn) or a package not run,
2 usage error or unusable lockfile, 3 environment (Docker, images, registry, store), 4 internal
error, 130 interrupted.`,
    )
    .action(
      async (
        path: string,
        o: SharedFlags & {
          omit?: ('dev' | 'optional' | 'peer')[];
          concurrency?: string;
          perSandbox?: string;
          shard?: string;
          reportOnly?: boolean;
          engine?: string[];
          enginesFile?: string;
        },
      ) => {
        const engines = engineAddresses(o.engine, o.enginesFile);
        const part = o.shard === undefined ? undefined : parsePart(o.shard);
        if (o.reportOnly && !o.cache)
          throw new PhonehomeError(
            'EUSAGE',
            '--report-only reads the store, and --no-cache says not to: choose one.',
          );
        oneOutputKind(o);
        if (o.html) checkOutputPath(o.html);
        const concurrency = o.concurrency === undefined ? undefined : Number(o.concurrency);
        if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1))
          throw new PhonehomeError(
            'EUSAGE',
            `--concurrency wants a whole number, not "${o.concurrency}".`,
          );
        const shardSize = o.perSandbox === undefined ? undefined : Number(o.perSandbox);
        if (shardSize !== undefined && (!Number.isInteger(shardSize) || shardSize < 1))
          throw new PhonehomeError(
            'EUSAGE',
            `--per-sandbox wants a whole number, not "${o.perSandbox}".`,
          );
        const timeouts = timeoutsFromFlags(o);
        const policyFiles = policyFromFlags(o);
        const npmConfig = npmConfigFromFlags(o);
        const ctx = cliContext();
        const store = await storeFromFlags(o);
        const policy = await withMalicious(policyFiles, store);
        const display = progressDisplay();
        let report: AuditReport;
        let engineLost = false;
        try {
          const { audit } = await import('../../audit/audit.js');
          const sandbox = engines.length
            ? engines.map((a) => () => ctx.sandboxAt(a))
            : () => ctx.sandbox();
          report = await audit(sandbox, path, {
            ...(part ? { part } : {}),
            ...(o.reportOnly ? { reportOnly: true } : {}),
            ...timeouts,
            ...(o.allowRemoteSources ? { allowRemoteSources: true } : {}),
            ...(o.runKnownMalicious ? { runKnownMalicious: true } : {}),
            npmConfig,
            policy,
            store,
            noCache: !o.cache,
            ...(o.omit ? { omit: o.omit } : {}),
            ...(o.workspace ? { workspace: o.workspace } : {}),
            ...(concurrency ? { concurrency } : {}),
            ...(shardSize ? { shardSize } : {}),
            as: o.as,
            tlsIntercept: o.tlsIntercept,
            log: (l) => {
              if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
              ctx.log(l);
            },
            onProgress: display.update,
            onEngineLost: () => (engineLost = true),
            signal: ctx.signal,
          });
        } finally {
          display.stop();
          await store.close();
          // Failed with an engine lost: the error is printed by the caller, then the process
          // ends, whatever of the lost engine's requests still hangs.
          if (engineLost) setTimeout(() => process.exit(), 3000).unref();
        }
        process.stdout.write(
          o.json
            ? JSON.stringify(report, null, 2) + '\n'
            : o.markdown
              ? renderAuditMarkdown(report)
              : renderAuditText(report),
        );
        // After the result is out: the page is one more way to read it, never the only one.
        if (o.html) writeHtmlReport(o.html, auditModel(report));
        const hit =
          report.summary.unattributedLeaks.length > 0 ||
          report.summary.notRun > 0 ||
          reachesFailOn(
            report.packages.flatMap((p) => (p.report ? [p.report] : [])),
            o.failOn,
          );
        process.exitCode = hit ? ExitCode.findings : ExitCode.pass;
        // A lost engine's requests may never end (a frozen daemon, a machine gone): the report is
        // out, so the process ends now instead of waiting on them. This process's containers on
        // the other engines are already removed; `phonehome sweep --engine` clears the lost one.
        if (engineLost) process.exit(process.exitCode);
      },
    );
}

/** `--shard k/n`: part k (1-based) of n. */
export function parsePart(v: string): { index: number; count: number } {
  const m = /^(\d{1,4})\/(\d{1,4})$/.exec(v.trim());
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || index < 1 || index > count)
    throw new PhonehomeError('EUSAGE', `--shard wants k/n with 1 <= k <= n, not "${v}".`, {
      fix: 'For three CI jobs: --shard 1/3, --shard 2/3 and --shard 3/3, then audit --report-only.',
    });
  return { index, count };
}

/**
 * The engines of `--engine` and `--engines-file`, each checked now (EENGINE before anything
 * runs); none: the default engine alone.
 */
export function engineAddresses(flags: string[] = [], file?: string): string[] {
  const fromFile = file
    ? (() => {
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (e) {
          throw new PhonehomeError('EENGINE', `--engines-file ${file}: ${(e as Error).message}.`);
        }
        return text
          .split('\n')
          .map((l) => l.replace(/#.*/, '').trim())
          .filter(Boolean);
      })()
    : [];
  const all = [...flags, ...fromFile];
  const seen = new Set<string>();
  for (const a of all) {
    const name = parseEngine(a).name;
    if (seen.has(name))
      throw new PhonehomeError('EENGINE', `--engine ${name} is named twice.`, {
        fix: 'Name each engine once; how many sandboxes it runs comes from its machine (or --concurrency).',
      });
    seen.add(name);
  }
  return all;
}
