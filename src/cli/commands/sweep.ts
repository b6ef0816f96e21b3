import { Command } from 'commander';
import { PhonehomeError } from '../../core/errors.js';
import { cliContext } from '../context.js';
import { engineAddresses } from './audit.js';

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
    .option(
      '--engine <address>',
      'sweep this Docker engine (repeat for several; as `audit --engine`)',
      (v: string, all: string[] = []) => [...all, v],
    )
    .option('--engines-file <file>', 'sweep the engines of this file, one address per line')
    .action(async (o: { foreignMinAge: string; engine?: string[]; enginesFile?: string }) => {
      const ctx = cliContext();
      const addresses = engineAddresses(o.engine, o.enginesFile);
      const age = Number(o.foreignMinAge);
      if (!Number.isFinite(age) || age < 0)
        throw new PhonehomeError(
          'EUSAGE',
          `--foreign-min-age wants a number of seconds, not "${o.foreignMinAge}".`,
        );
      for (const address of addresses.length ? addresses : ['default']) {
        const { engine } = await ctx.sandboxAt(address);
        const r = await engine.sweep({ foreignMinAgeMs: age * 1000 });
        process.stdout.write(
          `${addresses.length > 1 ? `${engine.name}: ` : ''}removed ${r.removedContainers.length} container(s)${r.removedContainers.length ? ` (${r.removedContainers.join(', ')})` : ''}\n`,
        );
      }
    });
}
