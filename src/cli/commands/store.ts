import { Command } from 'commander';
import { forTerminal as t } from '../../core/escape.js';
import { exportStore, importStore } from '../../store/transfer.js';
import { storeFromFlags, withFlags } from '../options.js';

export function storeCommand(): Command {
  const cmd = new Command('store').description(
    'move stored results between stores as a file (CI jobs that share no store)',
  );
  cmd.addCommand(
    withFlags(
      new Command('export')
        .description('write every stored run to a new file (JSON lines)')
        .argument('<file>', 'the file to write (never overwritten)'),
      ['json', 'store'],
    ).action(async (file: string, o: { json?: boolean; store?: string }) => {
      const store = await storeFromFlags(o);
      try {
        const r = await exportStore(store, file);
        process.stdout.write(
          o.json
            ? JSON.stringify({ file, store: store.location, ...r }, null, 2) + '\n'
            : `exported ${r.runs} run(s) from ${t(store.location)} to ${t(file)} (${r.bytes} bytes)\n`,
        );
      } finally {
        await store.close();
      }
    }),
  );
  cmd.addCommand(
    withFlags(
      new Command('import')
        .description(
          'add the runs of an exported file that the store lacks (the file is read whole first; a bad one changes nothing)',
        )
        .argument('<file>', 'a file written by `phonehome store export`')
        .addHelpText(
          'after',
          `
An imported run answers later checks of the same tarball as if it had run here: import only
files your own phonehome jobs exported. Runs the store already has are left out, so importing
overlapping files keeps one copy of each.`,
        ),
      ['json', 'store'],
    ).action(async (file: string, o: { json?: boolean; store?: string }) => {
      const store = await storeFromFlags(o);
      try {
        const r = await importStore(store, file);
        process.stdout.write(
          o.json
            ? JSON.stringify({ file, store: store.location, ...r }, null, 2) + '\n'
            : `imported ${r.added} of ${r.runs} run(s) from ${t(file)} into ${t(store.location)} (${r.runs - r.added} already there)\n`,
        );
      } finally {
        await store.close();
      }
    }),
  );
  return cmd;
}
