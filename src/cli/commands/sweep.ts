import { Command } from 'commander';
import { PhonehomeError } from '../../core/errors.js';
import { cliContext } from '../context.js';

export function sweepCommand(): Command {
  return new Command('sweep')
    .description(
      'remove containers left behind by phonehome runs whose process is gone (by label only)',
    )
    .option(
      '--foreign-min-age <seconds>',
      'containers made by phonehome on another host (remote engine) are removed only when older than this',
      '21600',
    )
    .action(async (o: { foreignMinAge: string }) => {
      const ctx = cliContext();
      const { engine } = await ctx.sandbox();
      const age = Number(o.foreignMinAge);
      if (!Number.isFinite(age) || age < 0)
        throw new PhonehomeError(
          'EUSAGE',
          `--foreign-min-age wants a number of seconds, not "${o.foreignMinAge}".`,
        );
      const r = await engine.sweep({ foreignMinAgeMs: age * 1000 });
      process.stdout.write(
        `removed ${r.removedContainers.length} container(s)${r.removedContainers.length ? ` (${r.removedContainers.join(', ')})` : ''}\n`,
      );
    });
}
