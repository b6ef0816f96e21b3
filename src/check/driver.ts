/**
 * The phase driver: a short Node program run inside the sandbox for each step. It records the
 * step's start and end on the sandbox kernel's monotonic clock (the clock the capture stamps
 * events with), keeps a bounded head of the step's output, and kills the step's process group on
 * timeout. Its one line of JSON on stdout is the step's result.
 */
export const DRIVER_SOURCE = `
const { spawn } = require('child_process');
const now = () => Number(process.hrtime.bigint() / 1000n) / 1000;
const [cmd, args, timeoutMs, maxOut] = JSON.parse(process.argv[1]);
const head = { out: [], err: [] }, size = { out: 0, err: 0 };
const keep = (k) => (d) => { if (size[k] < maxOut) head[k].push(d.subarray(0, maxOut - size[k])); size[k] += d.length; };
const start = now();
const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
c.stdout.on('data', keep('out'));
c.stderr.on('data', keep('err'));
let timedOut = false;
const timer = setTimeout(() => { timedOut = true; try { process.kill(-c.pid, 'SIGKILL'); } catch {} }, timeoutMs);
const finish = (code, signal, error) => {
  clearTimeout(timer);
  process.stdout.write(JSON.stringify({ start, end: now(), code, signal, timedOut, error,
    stdout: Buffer.concat(head.out).toString(), stderr: Buffer.concat(head.err).toString(),
    stdoutBytes: size.out, stderrBytes: size.err }) + '\\n');
  process.exit(0);
};
c.on('error', (e) => finish(null, null, String(e && e.message)));
c.on('close', (code, signal) => finish(code, signal, null));
`;

export interface StepResult {
  start: number;
  end: number;
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  error: string | null;
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  stderrBytes: number;
}
