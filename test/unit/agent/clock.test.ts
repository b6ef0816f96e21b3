/**
 * The timer compression of the sandbox's Node processes: short delays kept, long ones cut to
 * something a run can wait for, and only where it was asked for.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { compressDelay } from '../../../src/agent/clock.js';

const CLOCK = new URL('../../../src/agent/clock.js', import.meta.url).href;

/** Milliseconds `timer` took to fire in a fresh Node process, after `setup`. */
function measured(setup: string, timer: string): number {
  const code = `
    const clock = await import(${JSON.stringify(CLOCK)});
    ${setup}
    const t0 = performance.now();
    ${timer}
    process.stdout.write(String(Math.round(performance.now() - t0)));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout);
}

describe('compressDelay', () => {
  it('keeps delays up to 10 ms, and compresses the rest a hundredfold, at most 2 s', () => {
    assert.equal(compressDelay(0), 0);
    assert.equal(compressDelay(7), 7);
    assert.equal(compressDelay(10), 10);
    assert.equal(compressDelay(1010), 20);
    assert.equal(compressDelay(30_000), 309.9);
    assert.equal(compressDelay(199_010), 2000);
    assert.equal(compressDelay(3_600_000), 2000);
  });

  it('reads what setTimeout would not wait for as no delay', () => {
    for (const v of [-5, NaN, Infinity, -Infinity, undefined, null, '1000', {}])
      assert.equal(compressDelay(v), 0, String(v));
  });

  it('never shortens a longer delay below a shorter one', () => {
    let prev = 0;
    for (let ms = 0; ms <= 400_000; ms += 37) {
      const c = compressDelay(ms);
      assert.ok(c >= prev, `${ms} ms`);
      assert.ok(c <= ms, `${ms} ms is never lengthened`);
      prev = c;
    }
  });
});

describe('accelerateTimers', () => {
  it('imported, the module leaves timers alone', () => {
    assert.ok(measured('', 'await new Promise((r) => setTimeout(r, 300));') >= 290);
  });

  it('once asked, setTimeout, setInterval and timers/promises wait the compressed delay', () => {
    const fast = 'clock.accelerateTimers(); clock.accelerateTimers();';
    // 30 s becomes 310 ms; the upper bound leaves room for a slow machine, not for 30 s.
    for (const timer of [
      'await new Promise((r) => setTimeout(r, 30_000));',
      'await new Promise((r) => { const i = setInterval(() => { clearInterval(i); r(); }, 30_000); });',
      "await (await import('node:timers/promises')).setTimeout(30_000);",
      "const timers = await import('node:timers'); await new Promise((r) => timers.setTimeout(r, 30_000));",
    ]) {
      const ms = measured(fast, timer);
      assert.ok(ms >= 300 && ms < 5000, `${timer}: ${ms} ms`);
    }
  });
});
