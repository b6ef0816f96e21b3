import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isPhonehomeError } from '../../src/core/errors.js';
import type { ImageRefs } from '../../src/images/inputs.js';
import type { ContainerSpec, SandboxRun } from '../../src/sandbox/sandbox.js';
import {
  EAFNOSUPPORT,
  probeSeccompProfile,
  sandboxSeccompProfile,
} from '../../src/sandbox/seccomp.js';
import { engine as newEngine, idleRunner, images } from '../support/sandbox.js';

const EPERM = 1;
const EOPNOTSUPP = 95;

// Creates sockets and closes them; nothing is bound, connected or sent. `raw` passes the family
// as a full 64-bit register value, which Python's socket() would not.
const FAMILIES = String.raw`
import ctypes, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
SYS_socket = {"x86_64": 41, "aarch64": 198}[os.uname().machine]
def make(family, kind=socket.SOCK_STREAM, proto=0):
    try:
        socket.socket(family, kind, proto).close()
        return 0
    except OSError as e:
        return e.errno
def pair(family):
    try:
        a, b = socket.socketpair(family, socket.SOCK_STREAM)
        a.close(); b.close()
        return 0
    except OSError as e:
        return e.errno
def raw(family):
    fd = libc.syscall(ctypes.c_long(SYS_socket), ctypes.c_long(family), ctypes.c_long(socket.SOCK_STREAM), ctypes.c_long(0))
    if fd >= 0:
        libc.close(fd)
        return 0
    return ctypes.get_errno()
print(json.dumps({
    "vsock stream": make(40),
    "vsock dgram": make(40, socket.SOCK_DGRAM),
    "vsock socketpair": pair(40),
    "vsock as 2^32 + 40": raw(2**32 + 40),
    "inet as 2^32 + 2": raw(2**32 + 2),
    "unspec": make(0),
    "ax25": make(3, socket.SOCK_DGRAM),
    "key": make(15, socket.SOCK_RAW, 2),
    "can": make(29, socket.SOCK_RAW, 1),
    "tipc": make(30, socket.SOCK_RDM),
    "bluetooth": make(31, socket.SOCK_RAW, 0),
    "alg": make(38, socket.SOCK_SEQPACKET),
    "xdp": make(44, socket.SOCK_RAW),
    "mctp": make(45, socket.SOCK_DGRAM),
    "past AF_MAX": make(46),
    "inet stream": make(socket.AF_INET),
    "inet dgram": make(socket.AF_INET, socket.SOCK_DGRAM),
    "inet6 stream": make(socket.AF_INET6),
    "inet6 dgram": make(socket.AF_INET6, socket.SOCK_DGRAM),
    "unix stream": make(socket.AF_UNIX),
    "unix dgram": make(socket.AF_UNIX, socket.SOCK_DGRAM),
    "unix socketpair": pair(socket.AF_UNIX),
    "netlink route": make(socket.AF_NETLINK, socket.SOCK_RAW, 0),
    "inet socketpair": pair(socket.AF_INET),
    "packet": make(17, socket.SOCK_RAW, socket.htons(3)),
}))
`;

// io_uring_setup(2) with an empty parameter block: io_uring can create sockets (IORING_OP_SOCKET)
// without socket(2), out of the profile's sight.
const IO_URING = String.raw`
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": 425, "aarch64": 425}[os.uname().machine]
params = ctypes.create_string_buffer(120)
fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(4), params)
print(0 if fd >= 0 else ctypes.get_errno())
`;

// socketcall(SYS_SOCKET, {AF_VSOCK, SOCK_STREAM, 0}) through the i386 syscall ABI (int 0x80) from
// this 64-bit process; socketcall's family sits behind a pointer no seccomp rule can read.
const I386_SOCKETCALL = String.raw`
import ctypes, mmap, struct
m = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40,
              prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)  # 0x40: MAP_32BIT
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
m[256:268] = struct.pack("<III", 40, 1, 0)
code = (b"\x53" + b"\xb8" + struct.pack("<I", 102) + b"\xbb" + struct.pack("<I", 1)
        + b"\xb9" + struct.pack("<I", addr + 256) + b"\xcd\x80" + b"\x5b" + b"\xc3")
m[0:len(code)] = code
print("calling", flush=True)
print("result", ctypes.CFUNCTYPE(ctypes.c_int)(addr)(), flush=True)
`;

describe('sandbox seccomp profile, in a runner container', () => {
  const engine = newEngine();
  let refs: ImageRefs;
  before(async () => {
    refs = await images(engine);
  });
  after(async () => {
    await engine.disposeAll();
  });

  /** An idle runner container as the sandbox user: no capabilities, no network, our profile. */
  const idle = (run: SandboxRun, extra: Partial<ContainerSpec> = {}) =>
    idleRunner(run, refs.runner, {
      capDropAll: true,
      noNewPrivileges: true,
      seccompProfile: sandboxSeccompProfile().json,
      ...extra,
    });

  const families = async (run: SandboxRun, extra: Partial<ContainerSpec> = {}) => {
    const c = await idle(run, extra);
    const r = await c.exec(['python3', '-c', FAMILIES], { timeoutMs: 30_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    return { container: c, errno: JSON.parse(r.stdout) as Record<string, number> };
  };

  it('passes the profile to the engine next to no-new-privileges', async () => {
    await using run = engine.newRun();
    const c = await idle(run);
    const info = await engine.docker.getContainer(c.id).inspect();
    const opts: string[] = info.HostConfig.SecurityOpt ?? [];
    assert.ok(opts.includes('no-new-privileges'), opts.join(' '));
    assert.ok(
      opts.some((o) => o === `seccomp=${sandboxSeccompProfile().json}`),
      'the seccomp profile is set',
    );
    const status = await c.exec(['grep', '^Seccomp:', '/proc/self/status']);
    assert.match(status.stdout, /Seccomp:\s+2/);
  });

  it('AF_VSOCK and every other family fail with EAFNOSUPPORT; AF_INET, AF_INET6, AF_UNIX, AF_NETLINK work', async () => {
    await using run = engine.newRun();
    const { errno } = await families(run);
    const refused = [
      'vsock stream',
      'vsock dgram',
      'vsock socketpair',
      'vsock as 2^32 + 40',
      'inet as 2^32 + 2',
      'unspec',
      'ax25',
      'key',
      'can',
      'tipc',
      'bluetooth',
      'alg',
      'xdp',
      'mctp',
      'past AF_MAX',
    ];
    for (const k of refused) assert.equal(errno[k], EAFNOSUPPORT, `${k}: ${JSON.stringify(errno)}`);
    const created = [
      'inet stream',
      'inet dgram',
      'inet6 stream',
      'inet6 dgram',
      'unix stream',
      'unix dgram',
      'unix socketpair',
      'netlink route',
    ];
    for (const k of created) assert.equal(errno[k], 0, `${k}: ${JSON.stringify(errno)}`);
    // Left to the kernel: socketpair(2) of AF_INET is not supported, AF_PACKET wants CAP_NET_RAW.
    assert.equal(errno['inet socketpair'], EOPNOTSUPP);
    assert.equal(errno.packet, EPERM);
  });

  it('os.networkInterfaces() and ip addr work (netlink)', async () => {
    await using run = engine.newRun();
    const c = await idle(run);
    const node = await c.exec([
      'node',
      '-e',
      "console.log(JSON.stringify(Object.keys(require('os').networkInterfaces())))",
    ]);
    assert.equal(node.exitCode, 0, node.stderr);
    assert.deepEqual(JSON.parse(node.stdout), ['lo']);
    const ip = await c.exec(['ip', '-o', 'addr']);
    assert.equal(ip.exitCode, 0, ip.stderr);
    assert.match(ip.stdout, /\blo\b.*127\.0\.0\.1/);
  });

  it('io_uring is refused (EPERM), and the i386 syscall ABI kills the caller', async (t) => {
    await using run = engine.newRun();
    const c = await idle(run);
    const uring = await c.exec(['python3', '-c', IO_URING]);
    assert.equal(uring.exitCode, 0, uring.stderr);
    assert.equal(Number(uring.stdout.trim()), EPERM);
    if (process.arch !== 'x64') return t.skip('the i386 ABI exists on x86_64 hosts only');
    const i386 = await c.exec(['python3', '-c', I386_SOCKETCALL]);
    assert.match(i386.stdout, /^calling$/m);
    assert.doesNotMatch(i386.stdout, /result/, 'socketcall returned');
    assert.equal(i386.exitCode, 128 + 31, 'killed by SIGSYS');
  });

  it("without the profile, on this host, the same AF_VSOCK socket is created (the refusal is the profile's)", async (t) => {
    await using run = engine.newRun();
    const { container, errno } = await families(run, { seccompProfile: undefined });
    assert.equal(errno['inet stream'], 0);
    if (errno['vsock stream'] !== 0) {
      return t.skip(`this kernel has no AF_VSOCK (errno ${errno['vsock stream']})`);
    }
    t.diagnostic("Docker's default profile lets AF_VSOCK through here");
    if (process.arch === 'x64') {
      const i386 = await container.exec(['python3', '-c', I386_SOCKETCALL]);
      assert.match(i386.stdout, /^result \d+$/m, 'socketcall creates AF_VSOCK sockets');
    }
    // The doctor probe tells the two apart.
    const permissive = JSON.parse(sandboxSeccompProfile().json) as {
      syscalls: { names: string[]; action: string; args?: unknown[] }[];
    };
    permissive.syscalls[0]!.names.push('socket');
    const bad = await probeSeccompProfile(run, refs.runner, JSON.stringify(permissive));
    assert.equal(bad.ok, false);
    assert.equal(bad.results?.vsock, 0);
    assert.match(bad.detail, /AF_VSOCK created/);
  });

  it("doctor's probe: AF_VSOCK refused with EAFNOSUPPORT, AF_INET and AF_UNIX created", async () => {
    await using run = engine.newRun();
    const r = await probeSeccompProfile(run, refs.runner);
    assert.deepEqual(r.results, { vsock: EAFNOSUPPORT, inet: 0, unix: 0 });
    assert.equal(r.ok, true, r.detail);
    assert.equal(
      r.detail,
      'AF_VSOCK refused (errno 97 EAFNOSUPPORT), AF_INET created, AF_UNIX created',
    );
  });

  it('refuses a profile that is not JSON: the engine would read "unconfined" as no profile', async () => {
    await using run = engine.newRun();
    for (const seccompProfile of ['unconfined', '']) {
      await assert.rejects(idle(run, { seccompProfile }), (e) => {
        assert.ok(isPhonehomeError(e) && e.code === 'ESECCOMP', String(e));
        return true;
      });
    }
  });
});
