/**
 * The sandbox's virtual clock. Every dynamically linked program the package runs (node, sh,
 * sleep, python, curl…) reads time through libfaketime, which the runner image preloads from
 * /etc/ld.so.preload and configures from /etc/faketimerc (see sandbox-images/runner/Dockerfile):
 * from a process's start, its clocks (`Date`, `performance.now`, `process.hrtime`, timers,
 * `sleep`, python's `time`) run CLOCK_SPEED times faster than the wall clock, all together, so a
 * payload that waits minutes acts while the run watches and still sees that the time passed.
 *
 * phonehome's own processes in the sandbox (observer, step driver) keep the kernel's clocks: the
 * container's environment sets AGENT_CLOCK_ENV for every process the engine starts, and the step
 * driver removes it from the environment of each step. Node built-ins only.
 */

/** The node binary of the runner image (the real binary, on the PATH as `node`). */
export const REAL_NODE = '/usr/local/bin/node';

/** How much faster than the wall clock package code's clocks run (`x50` in /etc/faketimerc). */
export const CLOCK_SPEED = 50;

/**
 * The environment that keeps libfaketime at the kernel's time (no offset, no speed-up, monotonic
 * clocks untouched): set for the agents, never passed to a step.
 */
export const AGENT_CLOCK_ENV: Readonly<Record<string, string>> = {
  FAKETIME: '+0',
  DONT_FAKE_MONOTONIC: '1',
};

/** Virtual milliseconds (what package code measures) in `wallMs` of wall-clock time. */
export const virtualMs = (wallMs: number): number => wallMs * CLOCK_SPEED;
