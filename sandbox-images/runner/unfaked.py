"""Runs once at image build: programs linked with jemalloc (BIND's dig, nslookup, host, ...)
deadlock when libfaketime is preloaded into them (jemalloc takes its init lock, then calls into
the preload, which allocates). They are given a copy of the dynamic loader that does not read
/etc/ld.so.preload, so they run on the kernel's clocks instead of hanging. Nothing else changes:
same binaries, same libraries, same arguments."""
import os
import struct
import subprocess
import sys

LOADER = "/lib64/ld-linux-x86-64.so.2"
# Same length as LOADER, so the path can be replaced in place in each program's PT_INTERP.
UNFAKED = "/lib/x86_64-linux-gnu/ld.np"
assert len(UNFAKED) == len(LOADER)

data = open(os.path.realpath(LOADER), "rb").read()
PRELOAD = b"/etc/ld.so.preload\0"
if data.count(PRELOAD) != 1:
    sys.exit("unfaked: the loader does not name /etc/ld.so.preload exactly once")
with open(UNFAKED, "wb") as f:
    f.write(data.replace(PRELOAD, b"/nonexistent/none\0\0"))
os.chmod(UNFAKED, 0o755)


def interp_offset(blob):
    """File offset of the PT_INTERP string of a 64-bit little-endian ELF, or None."""
    if blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        return None
    phoff, = struct.unpack_from("<Q", blob, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", blob, 0x36)
    for i in range(phnum):
        p_type, _, p_offset = struct.unpack_from("<IIQ", blob, phoff + i * phentsize)
        if p_type == 3:
            return p_offset
    return None


patched = []
for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        blob = open(path, "rb").read()
        at = interp_offset(blob)
        if at is None or blob[at : at + len(LOADER) + 1] != LOADER.encode() + b"\0":
            continue
        libs = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        if "libjemalloc" not in libs:
            continue
        mode = os.stat(path).st_mode
        blob = blob[:at] + UNFAKED.encode() + blob[at + len(LOADER) :]
        with open(path, "wb") as f:
            f.write(blob)
        os.chmod(path, mode)
        patched.append(name)
print("unfaked:", " ".join(patched) or "nothing")
