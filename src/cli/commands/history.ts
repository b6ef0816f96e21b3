import { Command } from 'commander';
import { PhonehomeError } from '../../core/errors.js';
import { forTerminal as t } from '../../core/escape.js';
import { parseId } from '../../core/package-id.js';
import { openStoreReadOnly, redactedUrl, storeLocation } from '../../store/store.js';
import { withFlags } from '../options.js';

export function historyCommand(): Command {
  const cmd = new Command('history')
    .description('the stored runs of a package, newest first')
    .argument('<name>', 'package name')
    .option('--limit <n>', 'at most this many runs', '50');
  return withFlags(cmd, ['json', 'store']).action(
    async (name: string, o: { json?: boolean; limit: string; store?: string }) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new PhonehomeError(
          'EUSAGE',
          `--limit wants a whole number of runs, not "${o.limit}".`,
        );
      const id = parseId(name);
      if (id.version !== undefined)
        throw new PhonehomeError(
          'EUSAGE',
          `history takes a package name, not a version: ${name}.`,
          {
            fix: `Run \`phonehome history ${id.name}\`; it lists every stored version.`,
          },
        );
      const store = await openStoreReadOnly(storeLocation(o.store));
      if (!store) {
        process.stdout.write(
          `no stored runs of ${t(name)}: there is no result store at ${t(redactedUrl(storeLocation(o.store)))}\n`,
        );
        return;
      }
      try {
        const runs = await store.history(name, limit);
        if (o.json) {
          process.stdout.write(JSON.stringify({ name, runs }, null, 2) + '\n');
          return;
        }
        if (runs.length === 0) {
          process.stdout.write(`no stored runs of ${t(name)} in ${t(store.location)}\n`);
          return;
        }
        // Versions, integrities and verdicts were stored from the package's own metadata.
        const reports = await Promise.all(runs.map((r) => store.report(r.id)));
        const rows = runs.map((r, i) => {
          const report = reports[i];
          const counts = new Map<string, number>();
          for (const f of report?.findings ?? [])
            if (f.severity !== 'info') counts.set(f.severity, (counts.get(f.severity) ?? 0) + 1);
          return [
            r.createdAt.replace('T', ' ').slice(0, 19),
            r.version,
            r.verdict,
            [...counts].map(([s, n]) => `${n} ${s}`).join(', ') || '-',
            r.integrity ? r.integrity.slice(0, 17) : '(local)',
            r.policyHash ? r.policyHash.slice(0, 15) : '-',
            r.durationMs !== null ? `${(r.durationMs / 1000).toFixed(1)} s` : '-',
          ].map(t);
        });
        const head = [
          'when (UTC)',
          'version',
          'verdict',
          'findings',
          'integrity',
          'policy',
          'took',
        ];
        const widths = head.map((h, i) =>
          Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)),
        );
        const line = (cells: string[]) =>
          cells
            .map((c, i) => c.padEnd(widths[i] ?? 0))
            .join('  ')
            .trimEnd();
        process.stdout.write([line(head), ...rows.map(line)].join('\n') + '\n');
      } finally {
        await store.close();
      }
    },
  );
}
