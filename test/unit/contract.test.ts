/**
 * Constants written in two languages: the shell and Dockerfiles of the images, and the
 * TypeScript on the host and in the sandbox. Nothing at run time makes them agree, so this test
 * does: it reads the image files as text (shell-only values parsed out with a regex) and
 * compares them with the compiled TypeScript constants. A failure names both sides.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { describe, it } from 'node:test';
import { AGENT_CLOCK_ENV, CLOCK_SPEED, REAL_NODE } from '../../src/agent/clock.js';
import {
  AGENT_DIR as DRIVER_AGENT_DIR,
  AGENT_ONLY_ENV,
  NPM_BIN,
  PACKAGE_GID,
  PACKAGE_UID,
  SANDBOX_DIR,
} from '../../src/agent/step.js';
import { NPM_ENV_FILE } from '../../src/agent/lifecycle.js';
import { SANDBOX_WORKDIR } from '../../src/core/terms.js';
import { CAPTURE_PORTS } from '../../src/capture/main.js';
import { captureDistDir, packageRoot } from '../../src/paths.js';
import { SANDBOX_CLOCK_SPEED } from '../../src/capture/reply.js';
import { CA_SUBJECT } from '../../src/capture/x509.js';
import {
  AGENT_DIR,
  SANDBOX_RESOLVERS,
  SANDBOX_USER,
  TRUST_FILES,
} from '../../src/sandbox/topology.js';

const read = (path: string) => readFileSync(join(packageRoot(), path), 'utf8');
const SETUP_SH = 'sandbox-images/gateway/setup.sh';
const GATEWAY_DOCKERFILE = 'sandbox-images/gateway/Dockerfile';
const RUNNER_DOCKERFILE = 'sandbox-images/runner/Dockerfile';
const BASE_PACKAGES = 'sandbox-images/base/packages.txt';
const TOPOLOGY_TS = 'src/sandbox/topology.ts';

const setupSh = read(SETUP_SH);
const gatewayDockerfile = read(GATEWAY_DOCKERFILE);
const runnerDockerfile = read(RUNNER_DOCKERFILE);

/** `NAME=value` assignments at the start of a line of a shell script (no quoting or expansion). */
function shellVars(script: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const m of script.matchAll(/^([A-Z][A-Z0-9_]*)=([^\s"'$;]+)\s*(?:#.*)?$/gm))
    vars.set(m[1] ?? '', m[2] ?? '');
  return vars;
}
const vars = shellVars(setupSh);

/** `$NAME` and `${NAME}` replaced by the script's own assignments; unknown names fail. */
function expand(text: string, where: string): string {
  return text.replace(/\$\{?([A-Z][A-Z0-9_]*)\}?/g, (_, name: string) => {
    const v = vars.get(name);
    assert.ok(v !== undefined, `${where} uses $${name}, which ${SETUP_SH} never sets`);
    return v;
  });
}

/** The heredocs fed to iptables-restore / ip6tables-restore, by command. */
function ruleSets(script: string): { cmd: string; rules: string }[] {
  const out: { cmd: string; rules: string }[] = [];
  for (const m of script.matchAll(
    /^\s*(ip6?tables-restore)\b[^\n]*<<\s*(\w+)[^\n]*\n([\s\S]*?)^\2$/gm,
  ))
    out.push({ cmd: m[1] ?? '', rules: m[3] ?? '' });
  return out;
}

/** Every NAT REDIRECT rule's match and target port, with the script's variables expanded. */
function redirects(rules: string, where: string): { match: string; port: number }[] {
  const out: { match: string; port: number }[] = [];
  for (const line of rules.split('\n')) {
    const m = /^-A OUTPUT (.*?)\s*-j REDIRECT --to-ports (\S+)\s*$/.exec(line.trim());
    if (!m) continue;
    out.push({ match: m[1] ?? '', port: Number(expand(m[2] ?? '', where)) });
  }
  return out;
}

describe('contract: the gateway rules and the capture', () => {
  it('setup.sh sets the capture ports CAPTURE_PORTS names', () => {
    assert.deepEqual(
      {
        tcp: Number(vars.get('TCP_PORT')),
        dns: Number(vars.get('DNS_PORT')),
        udp: Number(vars.get('UDP_PORT')),
      },
      { ...CAPTURE_PORTS },
      `TCP_PORT/DNS_PORT/UDP_PORT in ${SETUP_SH} vs CAPTURE_PORTS in src/capture/capture.ts`,
    );
  });

  it('every rule set redirects DNS, TCP and UDP to the capture ports, in that order', () => {
    const sets = ruleSets(setupSh).filter((s) => /^\*nat$/m.test(s.rules));
    assert.deepEqual(
      sets.map((s) => s.cmd),
      ['iptables-restore', 'ip6tables-restore'],
      `${SETUP_SH} should install one nat table for IPv4 and one for IPv6`,
    );
    for (const { cmd, rules } of sets) {
      const where = `${SETUP_SH} (${cmd})`;
      // DNS before the catch-all UDP rule: the first matching REDIRECT wins.
      // What is sent straight to the capture's ports is turned away first, to a closed port.
      const closed = Number(vars.get('CLOSED_PORT'));
      assert.deepEqual(
        redirects(rules, where),
        [
          { match: '-p tcp --dport $TCP_PORT -m addrtype --dst-type LOCAL', port: closed },
          {
            match: '-p udp -m multiport --dports $DNS_PORT,$UDP_PORT -m addrtype --dst-type LOCAL',
            port: closed,
          },
          { match: '-p udp --dport 53', port: CAPTURE_PORTS.dns },
          { match: '-p tcp', port: CAPTURE_PORTS.tcp },
          { match: '-p udp', port: CAPTURE_PORTS.udp },
        ],
        `REDIRECT rules in ${where} vs CAPTURE_PORTS`,
      );
    }
  });

  it("the package's uid, whose local traffic setup.sh leaves untracked, is PACKAGE_UID", () => {
    assert.equal(Number(vars.get('PACKAGE_UID')), PACKAGE_UID, `PACKAGE_UID in ${SETUP_SH}`);
    const closed = Number(vars.get('CLOSED_PORT'));
    assert.ok(!(Object.values(CAPTURE_PORTS) as number[]).includes(closed), 'CLOSED_PORT');
  });

  it('the sandbox resolver is the address setup.sh writes to resolv.conf', () => {
    const written = [
      ...setupSh.matchAll(/^\s*echo "nameserver ([^"]+)"\s*>+\s*\/etc\/resolv\.conf/gm),
    ].map((m) => expand(m[1] ?? '', SETUP_SH));
    assert.deepEqual(
      written,
      [...SANDBOX_RESOLVERS],
      `nameserver lines in ${SETUP_SH} vs SANDBOX_RESOLVERS in ${TOPOLOGY_TS}`,
    );
    assert.equal(vars.get('V4_RESOLVER'), SANDBOX_RESOLVERS[0], `V4_RESOLVER in ${SETUP_SH}`);
  });

  it('the gateway image runs setup.sh, which starts the compiled capture program', () => {
    const copy = /^COPY capture\/ (\S+)$/m.exec(gatewayDockerfile)?.[1];
    assert.ok(copy, `${GATEWAY_DOCKERFILE} should COPY capture/ somewhere`);
    const setupAt = /^COPY setup\.sh (\S+)$/m.exec(gatewayDockerfile)?.[1];
    assert.ok(setupAt, `${GATEWAY_DOCKERFILE} should COPY setup.sh into the image`);
    assert.match(
      gatewayDockerfile,
      new RegExp(`^ENTRYPOINT \\["${setupAt}"\\]$`, 'm'),
      `${GATEWAY_DOCKERFILE} should start ${setupAt}`,
    );
    const exec = /^exec node (\S+) (\S+) /m.exec(setupSh);
    assert.ok(exec, `${SETUP_SH} should end by exec'ing node on the capture`);
    const program = exec[1] ?? '';
    assert.ok(program.startsWith(copy), `${SETUP_SH} runs ${program}, outside ${copy}`);
    const compiled = join(captureDistDir(), posix.relative(copy, program));
    assert.ok(existsSync(compiled), `${SETUP_SH} runs ${program}, but ${compiled} is not built`);
    // The events path: setup.sh's argument, which the host reads back (topology.ts).
    const eventsPath = exec[2] ?? '';
    const topology = read(TOPOLOGY_TS);
    assert.equal(
      /^const EVENTS_PATH = '([^']+)';$/m.exec(topology)?.[1],
      eventsPath,
      `EVENTS_PATH in ${TOPOLOGY_TS} vs the events path ${SETUP_SH} passes`,
    );
    assert.match(
      setupSh,
      new RegExp(`^mkdir -p ${posix.dirname(eventsPath)}\\b`, 'm'),
      `${SETUP_SH} should create the events folder`,
    );
  });
});

describe('contract: the runner image and the sandbox agents', () => {
  it('the agents are copied to AGENT_DIR', () => {
    const copy = /^COPY agent\/ (\S+)$/m.exec(runnerDockerfile)?.[1];
    assert.equal(copy, `${AGENT_DIR}/`, `COPY agent/ in ${RUNNER_DOCKERFILE} vs AGENT_DIR`);
    assert.match(
      runnerDockerfile,
      new RegExp(`chmod -R a\\+rX,go-w ${AGENT_DIR}$`, 'm'),
      `${RUNNER_DOCKERFILE} should make ${AGENT_DIR} read-only to the package's user`,
    );
  });

  it("the step driver's own copies of the agents' folder and the project folder agree", () => {
    assert.equal(DRIVER_AGENT_DIR, AGENT_DIR, 'AGENT_DIR in src/agent/step.ts vs topology');
    assert.equal(SANDBOX_DIR, SANDBOX_WORKDIR, 'SANDBOX_DIR in src/agent/step.ts vs terms');
    assert.equal(NPM_ENV_FILE, `${AGENT_DIR}/npm-env.json`, 'NPM_ENV_FILE in lifecycle.ts');
    // npm's variables are recorded in the project folder, where the scripts run.
    assert.match(
      runnerDockerfile,
      new RegExp(`cd ${SANDBOX_WORKDIR} && node ${AGENT_DIR}/npm-env\\.js > ${NPM_ENV_FILE}`),
      `${RUNNER_DOCKERFILE} should record npm's variables into ${NPM_ENV_FILE} from ${SANDBOX_WORKDIR}`,
    );
    // npm on the PATH is node's own installer's, which npm-env.ts finds next to REAL_NODE.
    assert.equal(NPM_BIN, `${posix.dirname(REAL_NODE)}/npm`);
  });

  it('node is REAL_NODE itself, and the virtual clock runs at CLOCK_SPEED', () => {
    // No wrapper and no flag: the runner's node is the binary the base image put on the PATH.
    assert.equal(REAL_NODE, '/usr/local/bin/node', 'REAL_NODE in src/agent/clock.ts');
    assert.doesNotMatch(runnerDockerfile, /\/usr\/local\/bin\/node\b/, 'the runner moves node');
    const rc = /printf '([^']*)\\n' > \/etc\/faketimerc/.exec(runnerDockerfile)?.[1];
    assert.equal(
      rc,
      `+0 x${CLOCK_SPEED}`,
      `/etc/faketimerc in ${RUNNER_DOCKERFILE} vs CLOCK_SPEED`,
    );
    assert.equal(SANDBOX_CLOCK_SPEED, CLOCK_SPEED, 'SANDBOX_CLOCK_SPEED in src/capture/reply.ts');
    assert.match(runnerDockerfile, /> \/etc\/ld\.so\.preload/, 'libfaketime is not preloaded');
    assert.match(read(BASE_PACKAGES), /^libfaketime$/m, `libfaketime is not in ${BASE_PACKAGES}`);
    // What keeps the agents on the kernel's clock is never passed to a step.
    for (const k of Object.keys(AGENT_CLOCK_ENV))
      assert.ok(AGENT_ONLY_ENV.includes(k), `${k} is not in AGENT_ONLY_ENV (src/agent/step.ts)`);
  });

  it('the trust store the runner links is the one the topology writes, for the CA the capture makes', () => {
    const extraca = read('sandbox-images/runner/extraca.c');
    const define = (name: string) =>
      new RegExp(`^#define ${name} "([^"]*)"$`, 'm').exec(extraca)?.[1];
    assert.equal(define('CA_FILE'), TRUST_FILES.ca, 'CA_FILE in extraca.c vs TRUST_FILES.ca');
    assert.equal(define('NODE_BINARY'), REAL_NODE, 'NODE_BINARY in extraca.c vs REAL_NODE');
    assert.ok(
      runnerDockerfile.includes(`-subj '/O=${CA_SUBJECT.o}/CN=${CA_SUBJECT.cn}'`),
      `the subject hashed in ${RUNNER_DOCKERFILE} vs CA_SUBJECT (src/capture/x509.ts)`,
    );
    assert.ok(
      runnerDockerfile.includes(`ln -s ${TRUST_FILES.ca} "/etc/ssl/certs/$h.0"`),
      `${RUNNER_DOCKERFILE} should link the hashed name to TRUST_FILES.ca`,
    );
    assert.ok(
      runnerDockerfile.includes(`mv /etc/ssl/certs/ca-certificates.crt ${TRUST_FILES.base}`) &&
        runnerDockerfile.includes(`ln -s ${TRUST_FILES.bundle} /etc/ssl/certs/ca-certificates.crt`),
      `${RUNNER_DOCKERFILE} should move the bundle to TRUST_FILES.base and link TRUST_FILES.bundle`,
    );
    assert.match(
      runnerDockerfile,
      /echo \/usr\/local\/lib\/libextraca\.so; \} > \/etc\/ld\.so\.preload/,
    );
  });

  it("the package's user is uid/gid PACKAGE_UID/PACKAGE_GID everywhere", () => {
    const user = `${PACKAGE_UID}:${PACKAGE_GID}`;
    assert.equal(SANDBOX_USER, user, 'SANDBOX_USER (topology.ts) vs PACKAGE_UID:PACKAGE_GID');
    assert.equal(/^USER (\S+)$/m.exec(runnerDockerfile)?.[1], user, `USER in ${RUNNER_DOCKERFILE}`);
    // The tmpfs owners and the passwd/group lines the topology writes for the user.
    const topology = read(TOPOLOGY_TS);
    const owners = [...topology.matchAll(/uid=(\d+),gid=(\d+)/g)].map((m) => `${m[1]}:${m[2]}`);
    assert.ok(owners.length > 0, `no tmpfs uid=,gid= options found in ${TOPOLOGY_TS}`);
    for (const o of owners) assert.equal(o, user, `a tmpfs owner in ${TOPOLOGY_TS}`);
    const passwd = /:x:(\d+):(\d+):/.exec(topology);
    assert.equal(passwd && `${passwd[1]}:${passwd[2]}`, user, `the passwd line in ${TOPOLOGY_TS}`);
    const group = /\$\{id\.user\}:x:(\d+):`/.exec(topology)?.[1];
    assert.equal(group, String(PACKAGE_GID), `the group line in ${TOPOLOGY_TS}`);
  });
});
