/**
 * The batch driver: runs many steps one after another in a single process, each exactly as the
 * step driver runs one (timeouts, bounded output, leftovers watched then killed), and writes one
 * line of JSON per step as it ends. One `docker exec` for a whole list instead of one per step:
 * an audit loads hundreds of packages, each in a process of its own.
 *
 * Runs on the sandbox's Node with built-ins only; its input is one JSON argument (StepInput[]).
 */
import { runStep, type StepInput } from './step.js';

const steps = JSON.parse(process.argv[2] ?? '[]') as StepInput[];
for (const step of steps) {
  const out = await runStep(step);
  await new Promise<void>((resolve) =>
    process.stdout.write(JSON.stringify(out) + '\n', () => resolve()),
  );
}
process.exit(0);
