/**
 * The parent of install scripts, as npm is under `npm install`: the step driver (step.ts) starts
 * it as the package's user for each install step, and it shows as npm does (`npm install` in the
 * process list, node as its executable, the package's uid, an environment a shell gave it) while
 * it runs the scripts it is given one after another, each `sh -c <script>` in the package's
 * folder with the environment the driver made for it (lifecycle.ts), its standard input a pipe
 * closed at once. The first script that fails ends the list, and this process ends as it did:
 * with its exit code, or by its signal (as npm passes a script's signal on), so the driver reads
 * the step's end from this process's.
 *
 * It runs as the package's user, so the package can stop it or kill it: how it ends is display
 * only (a step's exit status), never the verdict. It has no descriptor beyond the three standard
 * ones, so the scripts inherit none. Its input (the
 * scripts, from the host's reading of the staged package.json files) comes on standard input.
 * Node built-ins only.
 */
import { spawn } from 'node:child_process';

interface Run {
  path: string;
  command: string;
  env: Record<string, string>;
}

interface ScriptsEnded {
  code: number | null;
  signal: string | null;
  error?: string;
}

process.title = 'npm install';
const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const runs = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Run[];
let ended: ScriptsEnded = { code: 0, signal: null };
for (const r of runs) {
  ended = await new Promise<ScriptsEnded>((resolve) => {
    try {
      const child = spawn('sh', ['-c', r.command], {
        cwd: r.path,
        env: r.env,
        stdio: ['pipe', 'inherit', 'inherit'],
      });
      child.stdin?.end();
      child.on('error', (e) => resolve({ code: null, signal: null, error: e.message }));
      // 'exit', not 'close': a detached child of the script may hold the pipes open.
      child.on('exit', (code, signal) => resolve({ code, signal }));
    } catch (e) {
      // A script or an environment node refuses (a NUL byte): npm fails the same way.
      resolve({ code: null, signal: null, error: (e as Error).message });
    }
  });
  if (ended.code !== 0 || ended.error) break;
}
if (ended.error) process.stderr.write(`npm error ${ended.error}\n`);
if (ended.signal) {
  process.kill(process.pid, ended.signal as NodeJS.Signals);
  // A signal this process survives (it was stopped, or the signal is ignored) ends it as npm ends.
  setTimeout(() => process.exit(1), 500);
} else process.exit(ended.code ?? 1);
