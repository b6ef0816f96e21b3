/**
 * The capture program: runs as root in the gateway container (`node /opt/capture/main.js
 * <events path> ipv6|no-ipv6`, from setup.sh), after setup.sh installed the rules that redirect
 * every TCP connection, DNS query and UDP datagram of the sandbox user to it. It answers just
 * enough for the package to go on to its next step, and records each attempt (capture.ts).
 *
 * Protocol with the host (through Docker): prints `READY` on stdout once listening (`READY CA
 * <base64 DER>` with the run's CA certificate when TLS is intercepted); on SIGUSR1
 * appends ICMP and drop counts, per-destination summaries, bounds hit and the capture's
 * statistics (what it could not see or attribute), flushes the event log and prints
 * `FLUSHED <n> <events>` (n counts flushes from 1); on SIGTERM does the same and exits.
 *
 * `main()` runs only when this file is the program node started: importing it (a test, the
 * contract test reading CAPTURE_PORTS) binds nothing and prints nothing.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Capture } from './capture.js';
import { PUBLIC_SUFFIX_LIST, suffixRulesFrom, tldsFrom } from './reserved.js';
import { RunCa } from './x509.js';

/** How often conntrack is read for new ICMP echo entries, at the least. */
const ICMP_POLL_MS = 100;
/** ...and at the most, whatever a read costs: well inside the 10 s a closed flow is listed. */
const POLL_MAX_MS = 2000;

export { CAPTURE_PORTS } from './capture.js';

/**
 * Start the capture; `args` are the program's arguments: the events path, ipv6|no-ipv6, and the
 * files whose existence says the namespace's rules are in, or failed (setup.sh installs them
 * while this loads): READY only after the first.
 */
export async function main(args: readonly string[] = process.argv.slice(2)): Promise<void> {
  const eventsPath = args[0] ?? '/run/capture/events.ndjson';
  const ipv6 = args[1] !== 'no-ipv6';
  // TLS interception (off when the gateway's environment says TLS_INTERCEPT=off): the run's CA,
  // whose certificate (never its key) the host puts in the sandbox's trust store.
  const ca = process.env.TLS_INTERCEPT === 'off' ? undefined : new RunCa();
  const capture = new Capture(eventsPath, { ...readTlds(), ...(ca ? { ca } : {}) });
  await capture.start();
  // The DNS and UDP sockets must bind loopback, not the wildcard: replies must leave with the
  // address the redirect targeted, or conntrack does not un-NAT them and clients time out.
  await capture.startDns('127.0.0.1');
  await capture.startUdpSink('127.0.0.1');
  if (ipv6) {
    await capture.startDns('::1');
    await capture.startUdpSink('::1');
  }
  await capture.startTcp();
  const observerSocket = process.env.OBSERVER_SOCKET;
  if (observerSocket) await capture.observer.listen(observerSocket);
  // ICMP echo entries live 30 s in conntrack, closed connections 10 s. Answered pings end in
  // milliseconds, so the table is read every ICMP_POLL_MS, which dates them to within that, unless
  // reading it takes long (a flood): then at most a tenth of the time goes to reading it, up to
  // POLL_MAX_MS apart.
  let icmpTimer: NodeJS.Timeout | undefined;
  const pollIcmp = async () => {
    const t0 = performance.now();
    await capture.pollTable();
    icmpTimer = setTimeout(
      () => void pollIcmp(),
      Math.min(POLL_MAX_MS, Math.max(ICMP_POLL_MS, 10 * (performance.now() - t0))),
    );
  };
  void pollIcmp();
  let flushing: Promise<void> = Promise.resolve();
  let flushes = 0;
  const flush = () => {
    flushing = flushing.then(async () => {
      await capture.flush();
      process.stdout.write(`FLUSHED ${++flushes} ${capture.sink.written}\n`);
      process.stderr.write(
        `capture: conntrack unresolved=${capture.conntrack.unresolved} readErrors=${capture.conntrack.readErrors} reads=${capture.conntrack.reads} readMs=${capture.conntrack.readMs.toFixed(0)}\n`,
      );
    });
    return flushing;
  };
  // A bug reached by hostile traffic must not end the capture (and with it the run's record):
  // said on stderr, and the capture goes on.
  process.on('uncaughtException', (e: unknown) => {
    process.stderr.write(
      `capture: uncaught ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
  });
  process.on('unhandledRejection', (e: unknown) => {
    process.stderr.write(
      `capture: unhandled ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
  });
  process.on('SIGUSR1', () => void flush());
  process.on('SIGTERM', () => {
    clearTimeout(icmpTimer);
    void flush().then(() => process.exit(0));
  });
  if (args[2] && args[3] && !(await rulesIn(args[2], args[3]))) {
    process.stderr.write('SETUP-FAILED: the rules were not installed\n');
    process.exit(1);
  }
  process.stdout.write(ca ? `READY CA ${ca.certDer.toString('base64')}\n` : 'READY\n');
}

/** Whether `done` appears before `failed` does (or 15 s pass). */
async function rulesIn(done: string, failed: string): Promise<boolean> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    if (existsSync(done)) return true;
    if (existsSync(failed)) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return false;
}

/** The TLDs that exist, from the gateway image's Public Suffix List; said when it is missing. */
function readTlds(): { tlds?: Set<string>; suffixes?: Set<string> } {
  try {
    const list = readFileSync(PUBLIC_SUFFIX_LIST, 'utf8');
    return { tlds: tldsFrom(list), suffixes: suffixRulesFrom(list) };
  } catch (e) {
    process.stderr.write(
      `capture: no Public Suffix List (${String(e)}): only special-use names get NXDOMAIN\n`,
    );
    return {};
  }
}

/** Whether this module is the program node was started with (not imported, as by a test). */
function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().catch((e: unknown) => {
    process.stderr.write(`capture: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
