/**
 * The sandbox container's seccomp profile (sandbox-images/seccomp/sandbox.json): Docker's default
 * profile with socket(2) and socketpair(2) allowed only for the address families a package needs,
 * so that nothing leaves the sandbox but what the capture gateway sees (AF_VSOCK above all: on a
 * VM it reaches the hypervisor). sandbox-images/seccomp/README.md explains each rule.
 *
 * The profile is read once, checked by `checkSeccompProfile` (a profile with a problem is refused,
 * never passed on), and handed to the engine as JSON text.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PhonehomeError } from '../core/errors.js';
import { packageRoot } from '../paths.js';
import type { SandboxRun } from './sandbox.js';

/** The errno a refused family gets: what a kernel without that family answers. */
export const EAFNOSUPPORT = 97;

/** Address families by number (Linux, include/linux/socket.h). */
export const AF = {
  UNSPEC: 0,
  UNIX: 1,
  INET: 2,
  INET6: 10,
  NETLINK: 16,
  PACKET: 17,
  VSOCK: 40,
} as const;

/** Families the sandbox must be able to create: local IPC, the captured network, interface lists. */
const REQUIRED: Record<'socket' | 'socketpair', readonly number[]> = {
  socket: [AF.UNIX, AF.INET, AF.INET6, AF.NETLINK],
  socketpair: [AF.UNIX],
};
/** Families the profile may leave to the kernel (AF_PACKET: the kernel wants CAP_NET_RAW). */
const PERMITTED: readonly number[] = [AF.UNIX, AF.INET, AF.INET6, AF.NETLINK, AF.PACKET];
/** Family values the check tries: every family the kernel knows, values past AF_MAX, and values
 * with bits above the low 32 (the kernel reads the family as an int: 2^32 + 40 is AF_VSOCK). */
const PROBE_VALUES: readonly number[] = [
  ...Array.from({ length: 64 }, (_, i) => i),
  255,
  0x7fffffff,
  0xffffffff,
  2 ** 32 + AF.VSOCK,
  2 ** 32 + AF.INET,
  Number.MAX_SAFE_INTEGER,
];
const FAMILY_NAMES: Record<number, string> = {
  0: 'AF_UNSPEC',
  1: 'AF_UNIX',
  2: 'AF_INET',
  10: 'AF_INET6',
  16: 'AF_NETLINK',
  17: 'AF_PACKET',
  38: 'AF_ALG',
  40: 'AF_VSOCK',
  44: 'AF_XDP',
};

/** Actions that let a call through (or may: a tracer or a notify listener decides). */
const PASSING = new Set(['SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_TRACE', 'SCMP_ACT_NOTIFY']);
const REFUSING = new Set([
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_TRAP',
]);
const OPS = new Set([
  'SCMP_CMP_NE',
  'SCMP_CMP_LT',
  'SCMP_CMP_LE',
  'SCMP_CMP_EQ',
  'SCMP_CMP_GE',
  'SCMP_CMP_GT',
  'SCMP_CMP_MASKED_EQ',
]);
/** Syscalls that create sockets without a family seccomp can read. */
const HIDDEN_FAMILY: Record<string, string> = {
  socketcall:
    'socketcall passes the family behind a pointer seccomp cannot read (SYS_SOCKET would create any family)',
  io_uring_setup: 'io_uring creates sockets without socket(2) (IORING_OP_SOCKET, Linux 5.19+)',
  io_uring_enter: 'io_uring creates sockets without socket(2) (IORING_OP_SOCKET, Linux 5.19+)',
  io_uring_register: 'io_uring creates sockets without socket(2) (IORING_OP_SOCKET, Linux 5.19+)',
};

type Match = 'yes' | 'no' | 'maybe';

interface Rule {
  names: string[];
  action: string;
  errnoRet: number | undefined;
  args: { index: number; value: bigint; valueTwo: bigint; op: string }[];
  conditional: boolean;
}

function familyName(v: number): string {
  const name = FAMILY_NAMES[v];
  return name ? `${name} (${v})` : String(v);
}

/** `0, 3-9, 11-15, AF_PACKET (17), …`: runs of three or more collapse to a range. */
function familyList(values: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < values.length;) {
    let j = i;
    while (j + 1 < values.length && values[j + 1] === values[j]! + 1) j++;
    if (j - i >= 2) out.push(`${values[i]}-${values[j]}`);
    else for (let k = i; k <= j; k++) out.push(familyName(values[k]!));
    i = j + 1;
  }
  return out.join(', ');
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function nonEmptyFilter(x: unknown): boolean {
  return isRecord(x) && Object.values(x).some((v) => v !== undefined && v !== null && v !== '');
}

function bigArg(x: unknown): bigint | undefined {
  if (x === undefined || x === null) return 0n;
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? BigInt(x) : undefined;
}

function readRules(syscalls: unknown[], problems: string[]): Rule[] {
  const rules: Rule[] = [];
  syscalls.forEach((raw, i) => {
    const where = `syscalls[${i}]`;
    if (!isRecord(raw)) {
      problems.push(`${where} is not an object`);
      return;
    }
    const names: string[] = [];
    if (typeof raw.name === 'string' && raw.name) names.push(raw.name);
    if (Array.isArray(raw.names)) {
      if (names.length > 0) problems.push(`${where} has both name and names (Docker refuses it)`);
      for (const n of raw.names) {
        if (typeof n === 'string') names.push(n);
        else problems.push(`${where}.names holds a non-string`);
      }
    }
    if (names.length === 0) problems.push(`${where} names no syscall`);
    if (typeof raw.action !== 'string' || !(PASSING.has(raw.action) || REFUSING.has(raw.action))) {
      problems.push(`${where} has an unknown action ${JSON.stringify(raw.action)}`);
      return;
    }
    let errnoRet: number | undefined;
    if (raw.errnoRet !== undefined && raw.errnoRet !== null) {
      if (typeof raw.errnoRet !== 'number' || !Number.isInteger(raw.errnoRet) || raw.errnoRet < 0) {
        problems.push(`${where}.errnoRet is not an errno`);
        return;
      }
      errnoRet = raw.errnoRet;
    }
    const args: Rule['args'] = [];
    if (raw.args !== undefined && raw.args !== null && !Array.isArray(raw.args)) {
      problems.push(`${where}.args is not a list`);
      return;
    }
    for (const a of (raw.args as unknown[] | undefined) ?? []) {
      const value = isRecord(a) ? bigArg(a.value) : undefined;
      const valueTwo = isRecord(a) ? bigArg(a.valueTwo) : undefined;
      if (
        !isRecord(a) ||
        typeof a.index !== 'number' ||
        !Number.isInteger(a.index) ||
        a.index < 0 ||
        a.index > 5 ||
        typeof a.op !== 'string' ||
        !OPS.has(a.op) ||
        value === undefined ||
        valueTwo === undefined
      ) {
        problems.push(`${where}.args holds a comparison this check cannot read`);
        return;
      }
      args.push({ index: a.index, value, valueTwo, op: a.op });
    }
    rules.push({
      names,
      action: raw.action,
      errnoRet,
      args,
      // Rules kept or dropped by capabilities, architecture or kernel version may or may not apply.
      conditional: nonEmptyFilter(raw.includes) || nonEmptyFilter(raw.excludes),
    });
  });
  return rules;
}

function compare(op: string, x: bigint, value: bigint, valueTwo: bigint): boolean {
  switch (op) {
    case 'SCMP_CMP_NE':
      return x !== value;
    case 'SCMP_CMP_LT':
      return x < value;
    case 'SCMP_CMP_LE':
      return x <= value;
    case 'SCMP_CMP_EQ':
      return x === value;
    case 'SCMP_CMP_GE':
      return x >= value;
    case 'SCMP_CMP_GT':
      return x > value;
    default:
      // SCMP_CMP_MASKED_EQ: value is the mask, valueTwo the expected result.
      return (x & value) === valueTwo;
  }
}

/**
 * Whether `rule` matches a call whose first argument is `family` (other arguments unknown). runc
 * adds a rule's comparisons as one AND-ed rule, except when two of them test the same argument:
 * then each comparison becomes a rule of its own (an OR), as runc 1.1 does.
 */
function matches(rule: Rule, family: bigint): Match {
  if (rule.args.length === 0) return rule.conditional ? 'maybe' : 'yes';
  const each: Match[] = rule.args.map((a) =>
    a.index === 0 ? (compare(a.op, family, a.value, a.valueTwo) ? 'yes' : 'no') : 'maybe',
  );
  const indexes = rule.args.map((a) => a.index);
  const ored = new Set(indexes).size !== indexes.length;
  let m: Match;
  if (ored) m = each.includes('yes') ? 'yes' : each.includes('maybe') ? 'maybe' : 'no';
  else m = each.includes('no') ? 'no' : each.includes('maybe') ? 'maybe' : 'yes';
  return m === 'yes' && rule.conditional ? 'maybe' : m;
}

/**
 * What the profile does with `syscall(family, …)`: whether a rule may let it through, how a rule
 * refuses it (an errno, or `kill`; undefined when no rule refuses it), and whether that is unclear
 * (a rule that may or may not apply, or rules that disagree).
 */
function outcome(
  rules: Rule[],
  syscall: string,
  family: number,
): { pass: boolean; refusal: number | 'kill' | undefined; unclear: boolean } {
  const f = BigInt(family);
  let pass = false;
  let unclear = false;
  const refusals = new Set<number | 'kill'>();
  for (const r of rules) {
    if (!r.names.includes(syscall)) continue;
    const m = matches(r, f);
    if (m === 'no') continue;
    if (PASSING.has(r.action)) {
      pass = true;
      if (m === 'maybe') unclear = true;
    } else if (m === 'yes') {
      // An ERRNO rule without errnoRet answers EPERM (runc's default).
      refusals.add(r.action === 'SCMP_ACT_ERRNO' ? (r.errnoRet ?? 1) : 'kill');
    } else {
      unclear = true;
    }
  }
  // Rules that disagree about one call: libseccomp refuses the profile, or one of them wins.
  if (pass && refusals.size > 0) unclear = true;
  if (refusals.size > 1) unclear = true;
  return { pass, refusal: [...refusals][0], unclear };
}

/**
 * Problems with a seccomp profile (Docker's JSON format) as the sandbox's: socket families it lets
 * through that it should refuse with EAFNOSUPPORT (AF_VSOCK above all), families the sandbox needs
 * that it refuses, and the ways around a family check (socketcall, io_uring, the i386 syscall ABI
 * on x86_64). Conservative: a rule that may or may not apply counts against the profile. Pure;
 * an empty list means no problem found.
 */
export function checkSeccompProfile(profile: unknown): string[] {
  const problems: string[] = [];
  if (!isRecord(profile)) return ['the profile is not a JSON object'];
  const defaultAction = profile.defaultAction;
  if (typeof defaultAction !== 'string' || !REFUSING.has(defaultAction)) {
    problems.push(
      `defaultAction is ${JSON.stringify(defaultAction)}: a syscall no rule names must be refused`,
    );
  }
  if (!Array.isArray(profile.syscalls)) {
    problems.push('syscalls is not a list');
    return problems;
  }
  const rules = readRules(profile.syscalls, problems);
  // Docker 20.10 reads no defaultErrnoRet: a call refused by default answers EPERM.
  const defaultRefusal: number | 'kill' = defaultAction === 'SCMP_ACT_ERRNO' ? 1 : 'kill';

  // The i386 ABI on an x86_64 host: libseccomp turns every socket rule into a socketcall rule
  // that cannot see the family.
  const archMap = Array.isArray(profile.archMap) ? profile.archMap : [];
  const i386 =
    archMap.some(
      (a) =>
        isRecord(a) &&
        a.architecture === 'SCMP_ARCH_X86_64' &&
        Array.isArray(a.subArchitectures) &&
        a.subArchitectures.includes('SCMP_ARCH_X86'),
    ) ||
    (Array.isArray(profile.architectures) && profile.architectures.includes('SCMP_ARCH_X86'));
  if (i386) {
    problems.push(
      'SCMP_ARCH_X86 is listed for x86_64: i386 system calls (int 0x80) reach socketcall, which hides the family',
    );
  }
  for (const [name, why] of Object.entries(HIDDEN_FAMILY)) {
    if (rules.some((r) => r.names.includes(name) && PASSING.has(r.action))) {
      problems.push(`${name} is allowed: ${why}`);
    }
  }

  for (const syscall of ['socket', 'socketpair'] as const) {
    if (
      rules.some((r) => r.names.includes(syscall) && PASSING.has(r.action) && r.args.length === 0)
    ) {
      problems.push(`${syscall} is allowed unconditionally: every address family gets through`);
      continue;
    }
    const leaks: number[] = [];
    const wrong = new Map<string, number[]>();
    const missing: number[] = [];
    for (const v of PROBE_VALUES) {
      const o = outcome(rules, syscall, v);
      // No rule refuses it: the default action does.
      const refusal = o.refusal ?? defaultRefusal;
      if (PERMITTED.includes(v)) {
        if (REQUIRED[syscall].includes(v) && (!o.pass || o.unclear)) {
          missing.push(v);
        }
        continue;
      }
      if (v === AF.VSOCK) {
        if (o.pass || o.unclear || refusal !== EAFNOSUPPORT) {
          problems.push(
            `${syscall}: AF_VSOCK (40) is not refused with EAFNOSUPPORT (97)${o.pass ? ': it is allowed' : ''}`,
          );
        }
        continue;
      }
      if (o.pass || o.unclear) leaks.push(v);
      else if (refusal !== EAFNOSUPPORT) {
        const how = refusal === 'kill' ? 'a kill' : `errno ${refusal}`;
        wrong.set(how, [...(wrong.get(how) ?? []), v]);
      }
    }
    if (leaks.length > 0) {
      problems.push(
        `${syscall} may create family ${familyList(leaks)}; only ${familyList([...PERMITTED])} may be allowed`,
      );
    }
    for (const [how, values] of wrong) {
      problems.push(`${syscall} refuses ${familyList(values)} with ${how}, not EAFNOSUPPORT (97)`);
    }
    if (missing.length > 0) {
      problems.push(
        `${syscall} does not clearly allow ${familyList(missing)}, which the sandbox needs`,
      );
    }
  }
  return problems;
}

/** Where the shipped profile lives (the package root's sandbox-images/, as for the images). */
export function seccompProfilePath(): string {
  return join(packageRoot(), 'sandbox-images', 'seccomp', 'sandbox.json');
}

let cached: { json: string; sha256: string } | undefined;

/**
 * The sandbox's seccomp profile as the engine gets it (compact JSON) and its sha256, read and
 * checked once. Throws ESECCOMP when the file is missing, is not JSON, or has a problem: the
 * sandbox never starts with a profile that lets other families through.
 */
export function sandboxSeccompProfile(): { json: string; sha256: string } {
  if (cached) return cached;
  const path = seccompProfilePath();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new PhonehomeError('ESECCOMP', `The sandbox seccomp profile ${path} cannot be read.`, {
      detail: (e as Error).message,
      cause: e,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new PhonehomeError('ESECCOMP', `The sandbox seccomp profile ${path} is not JSON.`, {
      detail: (e as Error).message,
      cause: e,
    });
  }
  const problems = checkSeccompProfile(parsed);
  if (problems.length > 0) {
    throw new PhonehomeError(
      'ESECCOMP',
      `The sandbox seccomp profile ${path} does not keep the sandbox's socket families in.`,
      { detail: problems.join('\n') },
    );
  }
  const json = JSON.stringify(parsed);
  cached = { json, sha256: createHash('sha256').update(json).digest('hex') };
  return cached;
}

export interface SeccompProbeResult {
  ok: boolean;
  /** errno per attempt (0: the socket was created), absent when the probe printed nothing usable. */
  results?: { vsock: number; inet: number; unix: number };
  detail: string;
}

// Creates sockets and closes them; never binds, connects or sends anything.
const PROBE_SCRIPT = `
import json, socket
out = {}
for name, family in (("vsock", 40), ("inet", socket.AF_INET), ("unix", socket.AF_UNIX)):
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
        out[name] = 0
    except OSError as e:
        out[name] = e.errno or -1
print("SECCOMP-PROBE " + json.dumps(out), flush=True)
`;

function describe(name: string, errno: number): string {
  if (errno === 0) return `${name} created`;
  const known: Record<number, string> = { 1: 'EPERM', [EAFNOSUPPORT]: 'EAFNOSUPPORT' };
  return `${name} refused (errno ${errno}${known[errno] ? ` ${known[errno]}` : ''})`;
}

/**
 * Start a short-lived container from the runner image with the profile, as the sandbox user with
 * no capabilities and no network, that tries to create an AF_VSOCK socket (must fail with
 * EAFNOSUPPORT) and an AF_INET and an AF_UNIX one (must work); for `doctor`.
 */
export async function probeSeccompProfile(
  run: SandboxRun,
  runnerImage: string,
  profileJson: string = sandboxSeccompProfile().json,
): Promise<SeccompProbeResult> {
  const probe = await run.start({
    role: 'probe',
    image: runnerImage,
    entrypoint: ['python3', '-c', PROBE_SCRIPT],
    user: '1000:1000',
    network: { mode: 'none' },
    capDropAll: true,
    noNewPrivileges: true,
    seccompProfile: profileJson,
  });
  const code = await probe.wait(20_000);
  const output = (await probe.logs(16_384)).trim();
  const line = /^SECCOMP-PROBE (\{.*\})$/m.exec(output)?.[1];
  let results: SeccompProbeResult['results'];
  try {
    const r = line ? (JSON.parse(line) as Record<string, unknown>) : undefined;
    if (r && [r.vsock, r.inet, r.unix].every((v) => Number.isInteger(v))) {
      results = { vsock: r.vsock as number, inet: r.inet as number, unix: r.unix as number };
    }
  } catch {
    results = undefined;
  }
  if (code !== 0 || !results) {
    return {
      ok: false,
      detail: `the probe container ${code === undefined ? 'did not finish' : `exited with ${code}`}: ${output.slice(0, 2000) || 'no output'}`,
    };
  }
  const ok = results.vsock === EAFNOSUPPORT && results.inet === 0 && results.unix === 0;
  return {
    ok,
    results,
    detail: [
      describe('AF_VSOCK', results.vsock),
      describe('AF_INET', results.inet),
      describe('AF_UNIX', results.unix),
    ].join(', '),
  };
}
