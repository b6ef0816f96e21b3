import { Command } from 'commander';
import { cliContext } from '../context.js';

export function sweepCommand(): Command {
  return new Command('sweep')
    .description("remove containers and networks that phonehome runs left behind (by label only)")
    .option('--min-age <seconds>', 'only objects older than this', '0')
    .action(async (o: { minAge: string }) => {
      const ctx = cliContext();
      const r = await ctx.engine.sweep({ minAgeMs: Number(o.minAge) * 1000 });
      process.stdout.write(
        `removed ${r.removedContainers.length} container(s)${r.removedContainers.length ? ` (${r.removedContainers.join(', ')})` : ''} and ${r.removedNetworks.length} network(s)\n`,
      );
    });
}
