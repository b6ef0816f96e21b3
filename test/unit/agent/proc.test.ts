/**
 * Reading processes from /proc, checked against this machine's own /proc: this process, a child
 * whose command name holds spaces and parentheses, and a zombie.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  cmdline,
  liveThreads,
  monotonicMs,
  pids,
  readOf,
  stat,
  uids,
} from '../../../src/agent/proc.js';

/** Above the largest pid_max Linux allows (2^22): no such process. */
const NO_SUCH_PID = 4_194_305;

const children: ChildProcess[] = [];
/** A child process (killed after the tests), once it has printed its first line. */
function start(cmd: string, args: string[]): Promise<{ child: ChildProcess; firstLine: string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.on('error', reject);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve({ child, firstLine: out.split('\n')[0] ?? '' });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'phonehome-proc-'));
after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('stat', () => {
  it('this process: running, its parent, and its start on the monotonic clock', () => {
    const s = stat(process.pid);
    assert.ok(s);
    assert.equal(s.state, 'R');
    assert.equal(s.ppid, process.ppid);
    // /proc counts from exec in 10 ms ticks; Node's uptime from a little later.
    const expected = monotonicMs() - process.uptime() * 1000;
    assert.ok(Math.abs(s.startMs - expected) < 1000, `start ${s.startMs}, expected ~${expected}`);
    assert.ok(s.startMs <= monotonicMs());
  });

  it('a command name with spaces and parentheses does not shift the fields', async () => {
    // The kernel names a process after the file it ran: here a link to sleep.
    const odd = join(dir, 'a) b (c');
    symlinkSync('/bin/sleep', odd);
    const before = monotonicMs();
    const child = spawn(odd, ['30'], { stdio: 'ignore' });
    children.push(child);
    await new Promise((r) => child.on('spawn', r));
    const s = stat(child.pid as number);
    assert.ok(s);
    assert.match(s.state, /^[RS]$/);
    assert.equal(s.ppid, process.pid);
    // 10 ms ticks, and the boot offset read to 10 ms.
    assert.ok(s.startMs >= before - 50 && s.startMs <= monotonicMs() + 50, `start ${s.startMs}`);
  });

  it('no such process', () => {
    assert.equal(stat(NO_SUCH_PID), undefined);
    assert.equal(uids(NO_SUCH_PID), undefined);
    assert.equal(liveThreads(NO_SUCH_PID), false);
    assert.equal(readOf(NO_SUCH_PID, 'cmdline'), '');
  });
});

describe('uids', () => {
  it('the real, effective, saved and filesystem uids of this process', () => {
    const uid = process.getuid?.();
    const euid = process.geteuid?.();
    assert.deepEqual(uids(process.pid), [uid, euid, euid, euid]);
  });
});

describe('a zombie', () => {
  let zombie: number;
  before(async () => {
    // The background sleep ends at once; its parent has become a sleep that never reaps it.
    const { firstLine } = await start('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30']);
    zombie = Number(firstLine);
    for (let i = 0; i < 200 && stat(zombie)?.state !== 'Z'; i++)
      await new Promise((r) => setTimeout(r, 10));
  });

  it('shows as Z, has no live thread, and no command line', () => {
    assert.equal(stat(zombie)?.state, 'Z');
    assert.equal(liveThreads(zombie), false);
    assert.equal(readOf(zombie, 'cmdline'), '');
    assert.equal(cmdline(zombie), '');
    assert.ok(pids().includes(zombie), 'still listed');
  });
});

describe('pids, liveThreads and cmdline', () => {
  it('this process is listed, live, with its command line', () => {
    assert.ok(pids().includes(process.pid));
    assert.ok(pids().every((p) => Number.isInteger(p) && p > 0));
    assert.equal(liveThreads(process.pid), true);
    assert.ok(cmdline(process.pid).includes('proc.test.js'), cmdline(process.pid));
  });

  it('arguments joined by spaces, at most 300 characters', async () => {
    // sleep adds up its arguments: a long run of zeros is a long argument worth nothing.
    const zeros = '0'.repeat(400);
    const child = spawn('sleep', ['30', zeros], { stdio: 'ignore' });
    children.push(child);
    await new Promise((r) => child.on('spawn', r));
    const cmd = cmdline(child.pid as number);
    assert.equal(cmd.length, 300);
    assert.equal(cmd, `sleep 30 ${zeros}`.slice(0, 300));
  });
});
