import { Command } from 'commander';
import { cliContext } from '../context.js';

export function imagesCommand(): Command {
  const cmd = new Command('images').description('build or show the sandbox images');
  cmd
    .command('build')
    .description('build the runner and gateway images (does nothing when they are current)')
    .option('--node <version>', 'Node.js version for the runner (exact, e.g. 24.22.3)')
    .option('--npm <version>', 'npm version (exact)')
    .option(
      '--from-registry',
      'build from the official node image (needs a reachable container registry)',
    )
    .option('--force', 'rebuild even when the images are current')
    .option('--verbose', 'show every build step')
    .action(
      async (o: {
        node?: string;
        npm?: string;
        fromRegistry?: boolean;
        force?: boolean;
        verbose?: boolean;
      }) => {
        const ctx = cliContext();
        const { images } = await ctx.sandbox();
        const { buildImages } = await import('../../images/build.js');
        const result = await buildImages(images, {
          versions: { ...(o.node ? { node: o.node } : {}), ...(o.npm ? { npm: o.npm } : {}) },
          fromRegistry: o.fromRegistry ?? false,
          force: o.force ?? false,
          verbose: o.verbose ?? false,
          log: ctx.log,
          signal: ctx.signal,
        });
        if (result.built.length === 0) {
          ctx.log(
            `[images] up to date, nothing to build: ${result.refs.runner}, ${result.refs.gateway}`,
          );
        } else {
          ctx.log(
            `[images] built ${result.built.join(', ')} in ${result.seconds.toFixed(1)} s: ${result.refs.runner}, ${result.refs.gateway}`,
          );
        }
      },
    );
  cmd
    .command('status')
    .description('show the image tags the current inputs call for and whether they are built')
    .option('--node <version>', 'Node.js version for the runner')
    .action(async (o: { node?: string }) => {
      const { images } = await cliContext().sandbox();
      const { imagesStatus } = await import('../../images/build.js');
      const { refs, present } = await imagesStatus(images, o.node ? { node: o.node } : {});
      for (const k of ['base', 'runner', 'gateway'] as const) {
        process.stdout.write(
          `${k.padEnd(8)} ${refs[k].padEnd(36)} ${present[k] ? 'present' : 'missing'}\n`,
        );
      }
    });
  return cmd;
}
