import { Command } from 'commander';
import { PhonehomeError } from '../../core/errors.js';
import { forTerminal as t } from '../../core/escape.js';
import { maliciousIntel } from '../../policy/malicious.js';
import { shippedKnownEgress, shippedSharedHosts } from '../../policy/load.js';
import {
  openStore,
  openStoreReadOnly,
  storeLocation,
  type MaliciousSet,
} from '../../store/store.js';
import { withFlags } from '../options.js';

/** How old an imported set is, in words, and whether it is old enough to say so. */
export function setAge(
  set: Pick<MaliciousSet, 'importedAt' | 'newestModified'>,
  now = Date.now(),
): {
  days: number;
  stale: boolean;
  line: string;
} {
  const newest = set.newestModified ? Date.parse(set.newestModified) : NaN;
  const from = Number.isFinite(newest) ? newest : Date.parse(set.importedAt);
  const days = Math.max(0, Math.floor((now - from) / 86_400_000));
  return {
    days,
    stale: days > STALE_DAYS,
    line: `newest record ${days === 0 ? 'today' : `${days} day(s) old`}, imported ${set.importedAt.slice(0, 10)}`,
  };
}

/** Known-malicious packages are published every day; a set older than this misses many. */
export const STALE_DAYS = 7;

export function indicatorsCommand(): Command {
  const cmd = new Command('indicators').description(
    'known-malicious package records (OpenSSF malicious-packages, OSV format): import them, see what is imported',
  );
  cmd.addCommand(
    withFlags(
      new Command('import')
        .description(
          'read OSV records (MAL- ids, npm) from a folder or a zip and keep them, dated, in the result store (replacing the set imported before)',
        )
        .argument(
          '<path>',
          'a folder of OSV records (a clone of github.com/ossf/malicious-packages, or its osv/malicious/npm) or a zip of them (osv.dev: npm/all.zip)',
        ),
      ['json', 'store'],
    )
      .addHelpText(
        'after',
        `
Nothing is downloaded: bring the data, e.g.
  git clone --depth 1 https://github.com/ossf/malicious-packages
  phonehome indicators import malicious-packages/osv/malicious/npm
or osv.dev's bulk file (https://osv-vulnerabilities.storage.googleapis.com/npm/all.zip: only
its MAL- records are kept).

Then: a package version a record names is flagged (known-malicious-package, critical) by check,
audit, gate and watch; audit, gate and watch flag it without running it. Egress to a destination
a record lists as an indicator of compromise is known-malicious-destination (critical; no policy
allows it). \`phonehome doctor\` says how old the set is.`,
      )
      .action(async (path: string, o: { json?: boolean; store?: string }) => {
        const { readOsvSource } = await import('../../intel/import.js');
        const read = await readOsvSource(path);
        if (read.records.length === 0)
          throw new PhonehomeError(
            'EINTEL',
            `${path} holds no MAL- record for npm (${read.files} JSON file(s) read: ${read.skipped['not-malicious']} not MAL-, ${read.skipped['not-npm']} for other ecosystems, ${read.skipped.withdrawn} withdrawn, ${read.problemCount} not OSV records).`,
            read.problems.length ? { detail: read.problems.join('\n') } : {},
          );
        const store = await openStore(storeLocation(o.store));
        try {
          const kept = await store.replaceMalicious(read.records, {
            source: path,
            importedAt: new Date().toISOString(),
          });
          const set = (await store.maliciousSet()) as MaliciousSet;
          const intel = maliciousIntel(set, shippedSharedHosts(), shippedKnownEgress());
          const summary = {
            source: path,
            records: kept.records,
            newestModified: kept.newestModified,
            withIocs: set.withIocs.length,
            destinations: intel.destinations.length,
            sharedIocs: intel.sharedIocs,
            files: read.files,
            skipped: read.skipped,
            problems: read.problemCount,
            store: store.location,
          };
          if (o.json) {
            process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
            return;
          }
          process.stdout.write(
            [
              `imported ${kept.records} known-malicious npm record(s) from ${t(path)} into ${t(store.location)}`,
              `  ${setAge(set).line}`,
              `  ${set.withIocs.length} with indicators of compromise: ${intel.destinations.length} destination pattern(s) judged as known-malicious-destination`,
              ...(intel.sharedIocs.length
                ? [
                    `  ${intel.sharedIocs.length} IOC host(s) of shared services kept but not matched (reaching them is what honest packages do too): ${intel.sharedIocs.slice(0, 5).map(t).join(', ')}${intel.sharedIocs.length > 5 ? ', …' : ''}`,
                  ]
                : []),
              `  read ${read.files} JSON file(s): ${read.skipped['not-malicious']} not MAL-, ${read.skipped['not-npm']} for other ecosystems, ${read.skipped.withdrawn} withdrawn`,
              ...(read.problemCount
                ? [
                    `  ${read.problemCount} file(s) are not OSV records and were left out:`,
                    ...read.problems.map((p) => `    ${t(p)}`),
                  ]
                : []),
            ].join('\n') + '\n',
          );
        } finally {
          await store.close();
        }
      }),
  );
  cmd.addCommand(
    withFlags(
      new Command('show')
        .description(
          'what is imported: where from, how many records, how old; with a name, its records',
        )
        .argument('[name]', 'a package name: list the records that name it'),
      ['json', 'store'],
    ).action(async (name: string | undefined, o: { json?: boolean; store?: string }) => {
      const store = await openStoreReadOnly(storeLocation(o.store));
      const set = await store?.maliciousSet();
      const path = store?.location ?? storeLocation(o.store);
      try {
        if (!set) {
          if (o.json) process.stdout.write(JSON.stringify({ imported: false }, null, 2) + '\n');
          else
            process.stdout.write(
              `no known-malicious records imported in ${t(path)}: run \`phonehome indicators import <folder|zip>\`\n`,
            );
          return;
        }
        const records = name ? set.recordsOf(name) : undefined;
        if (o.json) {
          process.stdout.write(
            JSON.stringify(
              {
                imported: true,
                source: set.source,
                importedAt: set.importedAt,
                records: set.records,
                newestModified: set.newestModified,
                withIocs: set.withIocs.length,
                ...(records ? { name, matching: records } : {}),
              },
              null,
              2,
            ) + '\n',
          );
          return;
        }
        const age = setAge(set);
        process.stdout.write(
          `${set.records} known-malicious npm record(s) from ${t(set.source)}; ${age.line}${age.stale ? ` (older than ${STALE_DAYS} days: import a fresh copy)` : ''}\n`,
        );
        if (records) {
          if (!records.length) process.stdout.write(`no record names ${t(name ?? '')}\n`);
          for (const r of records)
            process.stdout.write(
              `${t(r.id)}  ${t(r.name)}  ${r.versions.length ? t(r.versions.slice(0, 10).join(', ')) : 'ranges'}${r.summary ? `  ${t(r.summary)}` : ''}\n`,
            );
        }
      } finally {
        await store?.close();
      }
    }),
  );
  return cmd;
}
