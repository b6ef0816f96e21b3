import { Command, Option } from 'commander';
import { ExitCode, PhonehomeError } from '../../core/errors.js';
import { worstVerdict } from '../../core/report.js';
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
import { renderWatchMarkdown, watchLine } from '../render-watch.js';

/** `30s`, `15m`, `1h`, `500ms`, or a number of seconds. */
export function parseDuration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(value.trim());
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const n = m ? Number(m[1]) * (unit[m[2] ?? 's'] ?? NaN) : NaN;
  if (!Number.isFinite(n) || n < 1000)
    throw new PhonehomeError(
      'EUSAGE',
      `${flag} wants a duration of at least a second (30s, 15m, 1h), not "${value}".`,
    );
  return n;
}

export function watchCommand(): Command {
  const cmd = new Command('watch')
    .description(
      'follow the registry for new versions a routine update of the project would bring, and check each against the version the lockfile pins',
    )
    .argument(
      '[path]',
      'a lockfile (package-lock.json, npm-shrinkwrap.json, pnpm-lock.yaml, yarn.lock, bun.lock) or a project folder',
      '.',
    )
    .option('--once', 'one pass, then exit (1 when a new version fails): for a scheduled CI job')
    .option('--interval <duration>', 'time between passes (30s, 15m, 1h)', '15m')
    .option('--max-versions <n>', 'new versions checked per package per pass, newest first', '3')
    .addOption(
      new Option(
        '--omit <kind...>',
        'leave out dev, optional or peer dependencies, like npm',
      ).choices(['dev', 'optional', 'peer']),
    );
  return withFlags(
    cmd,
    ['json', 'markdown', ...RUN_FLAGS, 'workspace', 'runKnownMalicious', 'failOn', ...LIMIT_FLAGS],
    'fail',
  )
    .addHelpText(
      'after',
      `
Followed: every registry package of the lockfile whose dependents' ranges (the project's
package.json for direct dependencies, each dependent's for transitive ones) admit a newer
version. A new admitted version is checked with --against the pinned one (a destination new at
install fails, one new at runtime warns), judged by the policy, kept in the result store, and
printed as it is judged: name, old -> new, verdict, new destinations, time from publication to
verdict. A version reported once is not checked or printed again, across restarts.

The registry is asked politely: conditional requests (an unchanged packument costs a 304), at
most 6 at once, a back-off on 429, 5xx and errors; registries, scopes, auth and proxy come from
your npm configuration.

--once: one pass over every admitted newer version (the ones judged before come from the result
store), printed or as --markdown / --json; exit 1 when one fails (--fail-on, default fail).
Without it: a pass every --interval until Ctrl-C; with --json, one JSON object per line.

Exit codes (--once): 0 nothing fails, 1 a new version at or above --fail-on, 2 usage error or
unusable lockfile, 3 environment (Docker, images, registry, store), 4 internal error,
130 interrupted.`,
    )
    .action(
      async (
        path: string,
        o: SharedFlags & {
          once?: boolean;
          interval: string;
          maxVersions: string;
          omit?: ('dev' | 'optional' | 'peer')[];
        },
      ) => {
        oneOutputKind(o);
        if (o.markdown && !o.once)
          throw new PhonehomeError('EUSAGE', '--markdown summarises one pass: add --once.');
        const interval = parseDuration('--interval', o.interval);
        const maxVersions = Number(o.maxVersions);
        if (!Number.isInteger(maxVersions) || maxVersions < 1)
          throw new PhonehomeError(
            'EUSAGE',
            `--max-versions wants a whole number above zero, not "${o.maxVersions}".`,
          );
        const timeouts = timeoutsFromFlags(o);
        const policyFiles = policyFromFlags(o);
        const npmConfig = npmConfigFromFlags(o);
        const ctx = cliContext();
        const store = await storeFromFlags(o);
        const { Watcher } = await import('../../watch/watch.js');
        try {
          const watcher = new Watcher(path, {
            ...timeouts,
            sandbox: ctx.sandbox,
            npmConfig,
            policy: policyFiles,
            store,
            noCache: !o.cache,
            ...(o.omit ? { omit: o.omit } : {}),
            ...(o.workspace ? { workspace: o.workspace } : {}),
            ...(o.runKnownMalicious ? { runKnownMalicious: true } : {}),
            maxVersions,
            as: o.as,
            tlsIntercept: o.tlsIntercept,
            log: ctx.log,
            signal: ctx.signal,
          });
          if (o.once) {
            const pass = await watcher.pass(true, (r) => {
              if (!o.json && !o.markdown) process.stdout.write(watchLine(r));
            });
            const verdict = worstVerdict(pass.results.map((r) => r.verdict));
            ctx.log(
              `[watch] ${pass.followed} package(s) followed in ${pass.lockfile}: ${pass.fetch.requests} request(s), ${pass.fetch.notModified} unchanged, ${pass.fetch.failed} failed; ${pass.results.length} newer version(s) admitted`,
            );
            if (o.json)
              process.stdout.write(
                JSON.stringify(
                  {
                    schemaVersion: 1,
                    kind: 'watch',
                    lockfile: pass.lockfile,
                    followed: pass.followed,
                    fetch: pass.fetch,
                    verdict,
                    results: pass.results,
                    errors: pass.errors,
                  },
                  null,
                  2,
                ) + '\n',
              );
            else if (o.markdown)
              process.stdout.write(
                renderWatchMarkdown(pass.lockfile, pass.results, verdict, pass.errors),
              );
            else if (!pass.results.length)
              process.stdout.write('no newer version admitted by the ranges of the lockfile\n');
            const hit = reachesFailOn(
              pass.results.map((r) => r.report),
              o.failOn,
            );
            // A packument that could not be read, or a version that could not be checked, is
            // unknown: never a silent pass.
            if (pass.fetch.failed > 0)
              ctx.log(
                `[watch] ${pass.fetch.failed} packument(s) could not be read: their new versions are unknown`,
              );
            for (const e of pass.errors)
              ctx.log(`[watch] NOT CHECKED ${e.name} ${e.from} -> ${e.to}: ${e.message}`);
            process.exitCode = hit
              ? ExitCode.findings
              : pass.fetch.failed > 0 || pass.errors.length > 0
                ? ExitCode.environment
                : ExitCode.pass;
            return;
          }
          ctx.log(`[watch] following ${path}: a pass every ${o.interval}; Ctrl-C stops`);
          for (let n = 1; ; n++) {
            const pass = await watcher.pass(false, (r) => {
              process.stdout.write(
                o.json ? JSON.stringify({ kind: 'watch-result', ...r }) + '\n' : watchLine(r),
              );
            });
            if (n === 1)
              ctx.log(`[watch] ${pass.followed} package(s) followed in ${pass.lockfile}`);
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, interval);
              ctx.signal.addEventListener(
                'abort',
                () => {
                  clearTimeout(timer);
                  resolve();
                },
                { once: true },
              );
            });
            ctx.signal.throwIfAborted();
          }
        } finally {
          await store.close();
        }
      },
    );
}
