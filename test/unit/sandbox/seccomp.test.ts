import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  checkSeccompProfile,
  sandboxSeccompProfile,
  seccompProfilePath,
} from '../../../src/sandbox/seccomp.js';

interface Rule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: string }[];
}
interface Profile {
  defaultAction: string;
  archMap: { architecture: string; subArchitectures: string[] | null }[];
  syscalls: Rule[];
}

function shipped(): Profile {
  return JSON.parse(readFileSync(seccompProfilePath(), 'utf8')) as Profile;
}

const isSocketRule = (r: Rule) => r.names.includes('socket');
const allowList = (p: Profile) => p.syscalls[0]!;

describe('sandbox seccomp profile', () => {
  it('the shipped profile passes the check, and loads as compact JSON with its sha256 (cached)', () => {
    assert.deepEqual(checkSeccompProfile(shipped()), []);
    const a = sandboxSeccompProfile();
    assert.deepEqual(JSON.parse(a.json), shipped());
    assert.ok(!a.json.includes('\n'));
    assert.equal(a.sha256, createHash('sha256').update(a.json).digest('hex'));
    assert.equal(sandboxSeccompProfile(), a);
  });

  it('keeps Docker default rules: default EPERM, the big allow list, clone3 ENOSYS', () => {
    const p = shipped();
    assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
    const allow = allowList(p);
    assert.equal(allow.action, 'SCMP_ACT_ALLOW');
    for (const n of ['read', 'connect', 'bind', 'sendto', 'recvmsg', 'execve']) {
      assert.ok(allow.names.includes(n), n);
    }
    for (const n of ['socket', 'socketpair', 'socketcall', 'io_uring_setup']) {
      assert.ok(!allow.names.includes(n), n);
    }
    assert.ok(
      p.syscalls.some((r) => r.names.includes('clone3') && r.errnoRet === 38),
      'clone3 answers ENOSYS so that glibc falls back to clone',
    );
  });

  it('reports socket allowed for every family, as in Docker default profile', () => {
    const p = shipped();
    p.syscalls = p.syscalls.filter((r) => !isSocketRule(r));
    allowList(p).names.push('socket', 'socketpair');
    const problems = checkSeccompProfile(p);
    assert.ok(
      problems.some((m) => /^socket is allowed unconditionally/.test(m)),
      problems.join('\n'),
    );
    assert.ok(problems.some((m) => /^socketpair is allowed unconditionally/.test(m)));
  });

  it('reports a profile without the AF_VSOCK refusal (it would get EPERM, or get through)', () => {
    const p = shipped();
    // Drop the rule that refuses every family from 18 up: AF_VSOCK falls to the default (EPERM).
    p.syscalls = p.syscalls.filter(
      (r) => !(isSocketRule(r) && r.args?.some((a) => a.op === 'SCMP_CMP_GE')),
    );
    const problems = checkSeccompProfile(p);
    assert.ok(
      problems.some((m) => /^socket: AF_VSOCK \(40\) is not refused with EAFNOSUPPORT/.test(m)),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((m) =>
        /^socket refuses 18-39, 41-63, .* with errno 1, not EAFNOSUPPORT/.test(m),
      ),
      problems.join('\n'),
    );

    // Allowing it outright is reported as allowed.
    const q = shipped();
    q.syscalls.unshift({
      names: ['socket'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 40, op: 'SCMP_CMP_EQ' }],
    });
    assert.ok(
      checkSeccompProfile(q).some((m) => /AF_VSOCK \(40\) is not refused.*it is allowed/.test(m)),
    );
  });

  it('reports an allow rule written as "not AF_VSOCK": 2^32 + 40 is AF_VSOCK to the kernel', () => {
    const p = shipped();
    p.syscalls = p.syscalls.filter((r) => !isSocketRule(r));
    p.syscalls.push({
      names: ['socket', 'socketpair'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }],
    });
    const problems = checkSeccompProfile(p);
    assert.ok(
      problems.some((m) => /socket may create family .*4294967336/.test(m)),
      problems.join('\n'),
    );
  });

  it('reads two comparisons on one argument as runc does: each its own rule (OR)', () => {
    const p = shipped();
    p.syscalls.unshift({
      names: ['socket'],
      action: 'SCMP_ACT_ALLOW',
      args: [
        { index: 0, value: 1, op: 'SCMP_CMP_EQ' },
        { index: 0, value: 40, op: 'SCMP_CMP_EQ' },
      ],
    });
    assert.ok(checkSeccompProfile(p).some((m) => /socket: AF_VSOCK/.test(m)));
  });

  it('reports the ways around a family check: socketcall, io_uring, the i386 ABI', () => {
    const p = shipped();
    allowList(p).names.push('socketcall', 'io_uring_setup');
    p.archMap[0]!.subArchitectures = ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    const problems = checkSeccompProfile(p);
    assert.ok(
      problems.some((m) => /^socketcall is allowed/.test(m)),
      problems.join('\n'),
    );
    assert.ok(problems.some((m) => /^io_uring_setup is allowed/.test(m)));
    assert.ok(problems.some((m) => /^SCMP_ARCH_X86 is listed for x86_64/.test(m)));
  });

  it('reports families the sandbox needs when they are refused, and refusals with the wrong errno', () => {
    const p = shipped();
    p.syscalls = p.syscalls.filter(
      (r) => !(isSocketRule(r) && r.action === 'SCMP_ACT_ALLOW' && r.args?.[0]?.value === 2),
    );
    const rule = p.syscalls.find((r) => isSocketRule(r) && r.args?.[0]?.value === 3)!;
    rule.errnoRet = 1;
    const problems = checkSeccompProfile(p);
    assert.ok(
      problems.some((m) => /^socket does not clearly allow AF_INET \(2\)/.test(m)),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((m) => /^socket refuses 3 with errno 1, not EAFNOSUPPORT/.test(m)),
      problems.join('\n'),
    );
  });

  it('reports rules that disagree, a permissive default and what it cannot read', () => {
    const p = shipped();
    p.syscalls.push({
      names: ['socket'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 1,
      args: [{ index: 0, value: 2, op: 'SCMP_CMP_EQ' }],
    });
    assert.ok(checkSeccompProfile(p).some((m) => /does not clearly allow AF_INET/.test(m)));

    assert.deepEqual(checkSeccompProfile('{}'), ['the profile is not a JSON object']);
    assert.ok(
      checkSeccompProfile({ ...shipped(), defaultAction: 'SCMP_ACT_ALLOW' }).some((m) =>
        /^defaultAction/.test(m),
      ),
    );
    const q = shipped();
    q.syscalls.push({
      names: ['socket'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 2, op: 'SCMP_CMP_SOMETHING' }],
    });
    assert.ok(checkSeccompProfile(q).some((m) => /cannot read/.test(m)));
    assert.ok(
      checkSeccompProfile({ defaultAction: 'SCMP_ACT_ERRNO' }).includes('syscalls is not a list'),
    );
  });

  it('counts a rule that capabilities may switch on as possibly applying', () => {
    const p = shipped() as Profile & { syscalls: (Rule & { includes?: unknown })[] };
    p.syscalls.push({
      names: ['socket'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: 40, op: 'SCMP_CMP_EQ' }],
      includes: { caps: ['CAP_NET_ADMIN'] },
    });
    assert.ok(checkSeccompProfile(p).some((m) => /socket: AF_VSOCK/.test(m)));
  });
});
