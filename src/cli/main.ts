#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { phonehomeVersion } from '../paths.js';
import { ExitCode, formatError, isPhonehomeError, PhonehomeError } from '../core/errors.js';
import { forTerminal } from '../core/escape.js';
import { auditCommand } from './commands/audit.js';
import { checkCommand } from './commands/check.js';
import { diffCommand } from './commands/diff.js';
import { doctorCommand } from './commands/doctor.js';
import { gateCommand } from './commands/gate.js';
import { historyCommand } from './commands/history.js';
import { imagesCommand } from './commands/images.js';
import { indicatorsCommand } from './commands/indicators.js';
import { policyCommand } from './commands/policy.js';
import { storeCommand } from './commands/store.js';
import { sweepCommand } from './commands/sweep.js';
import { watchCommand } from './commands/watch.js';

const program = new Command('phonehome')
  .description(
    'Find out whether an npm package talks to the network, to whom and when: install and exercise it in a sandbox whose only "internet" is a capture gateway.',
  )
  .version(phonehomeVersion())
  .exitOverride()
  .showSuggestionAfterError();

program.addCommand(checkCommand());
program.addCommand(auditCommand());
program.addCommand(gateCommand());
program.addCommand(watchCommand());
program.addCommand(diffCommand());
program.addCommand(historyCommand());
program.addCommand(doctorCommand());
program.addCommand(imagesCommand());
program.addCommand(policyCommand());
program.addCommand(indicatorsCommand());
program.addCommand(storeCommand());
program.addCommand(sweepCommand());

// Added commands do not inherit settings: usage errors everywhere must reach the handler below.
const override = (c: Command): void => {
  c.exitOverride().showSuggestionAfterError();
  c.commands.forEach(override);
};
override(program);

/** An error as the terminal shows it: its messages may quote a spec, a lockfile, a package's output. */
const shownError = (e: PhonehomeError): string =>
  formatError(e).split('\n').map(forTerminal).join('\n') + '\n';

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // Help and version exit 0; usage errors have already been printed by commander.
    process.exitCode = e.exitCode === 0 ? 0 : ExitCode.usage;
  } else if (isPhonehomeError(e)) {
    process.stderr.write(shownError(e));
    process.exitCode = e.exitCode;
  } else {
    const err = new PhonehomeError('EINTERNAL', e instanceof Error ? e.message : String(e), {
      detail: e instanceof Error ? e.stack : undefined,
    });
    process.stderr.write(shownError(err));
    process.exitCode = ExitCode.internal;
  }
}
