/**
 * The batch driver: runs many steps one after another in a single process, each exactly as the
 * step driver runs one (timeouts, bounded output, leftovers watched then killed), and writes one
 * line of JSON per step as it ends. One `docker exec` for a whole list instead of one per step:
 * an audit loads hundreds of packages, each in a process of its own.
 *
 * Runs as root (see step.ts) on the sandbox's Node with built-ins only. Its input (StepInput[] as
 * JSON) comes on standard input, not the command line, which every process can read; its
 * results go to its standard output, the engine's exec stream, which no package process can
 * write to.
 */
import { disguise, DRIVER_TITLE, monotonicMs } from './proc.js';
import { runStep, type StepInput } from './step.js';

export interface BatchInput {
  steps: StepInput[];
  /** The whole batch's time: a step gets at most what is left, and none starts once it is spent. */
  budgetMs?: number;
  /**
   * The steps as runs of consecutive steps with a time of their own (the phases of a check, in
   * one exec): a group's budget counts from its start. Without it, one group with `budgetMs`.
   */
  groups?: { steps: number; budgetMs?: number }[];
}

const write = (line: string) =>
  new Promise<void>((resolve) => process.stdout.write(line + '\n', () => resolve()));

// The parent of every step's process.
disguise(...DRIVER_TITLE);
const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BatchInput;
const groups = input.groups ?? [{ steps: input.steps.length, budgetMs: input.budgetMs }];
let next = 0;
for (const group of groups) {
  const started = monotonicMs();
  for (let k = 0; k < group.steps && next < input.steps.length; k++) {
    const step = input.steps[next++] as StepInput;
    const left = (group.budgetMs ?? Infinity) - (monotonicMs() - started);
    // The same text as NOT_RUN in src/run/steps.ts.
    if (left <= 0) await write('{"notRun":true}');
    else
      await write(
        JSON.stringify(await runStep({ ...step, timeoutMs: Math.min(step.timeoutMs, left) })),
      );
  }
}
process.exit(0);
