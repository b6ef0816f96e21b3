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
import { disguise, monotonicMs } from './proc.js';
import { runStep, type StepInput } from './step.js';

export interface BatchInput {
  steps: StepInput[];
  /** The whole batch's time: a step gets at most what is left, and none starts once it is spent. */
  budgetMs?: number;
}

const write = (line: string) =>
  new Promise<void>((resolve) => process.stdout.write(line + '\n', () => resolve()));

// The parent of every step's process: on a machine, the shell the user typed the command in.
disguise('-bash', 'bash');
const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BatchInput;
const started = monotonicMs();
for (const step of input.steps) {
  const left = (input.budgetMs ?? Infinity) - (monotonicMs() - started);
  // The same text as NOT_RUN in src/run/steps.ts.
  if (left <= 0) await write('{"notRun":true}');
  else
    await write(
      JSON.stringify(await runStep({ ...step, timeoutMs: Math.min(step.timeoutMs, left) })),
    );
}
process.exit(0);
