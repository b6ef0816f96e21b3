/**
 * The user's SSH agent, as a laptop has one: the laptop identity names it in SSH_AUTH_SOCK
 * (src/sandbox/identity.ts), and a path that did not exist was a tell. It holds no keys: asked for
 * its identities it says it has none, as an agent does before `ssh-add`, and it refuses every
 * other request (signing, adding keys) as an agent with no keys does. The observer serves it
 * (root; the socket itself is the package user's, made under that user's ids, as ssh-agent's is).
 *
 * What a client sends is the package's: frames are read to at most FRAME_MAX bytes, and a
 * connection that sends a bigger one, leaves its answers unread, or is one too many, is closed.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/** The user's runtime folder, a tmpfs of its own in the sandbox (src/sandbox/topology.ts). */
export const RUNTIME_DIR = '/run/user/1000';
/** Where GNOME's keyring puts the agent's socket. */
export const SSH_AGENT_SOCKET = `${RUNTIME_DIR}/keyring/ssh`;

/** Bigger than any request an agent with no keys needs to read (a key to add is a few KiB). */
const FRAME_MAX = 16 * 1024;
/** Answers waiting for a client that does not read them, at most. */
const UNREAD_MAX = 64 * 1024;
const CONNECTIONS_MAX = 32;

const SSH_AGENT_FAILURE = 5;
const SSH2_AGENTC_REQUEST_IDENTITIES = 11;
const SSH2_AGENT_IDENTITIES_ANSWER = 12;

/**
 * The agent's answers to the whole frames at the start of `input`, and the bytes left over (a
 * frame still arriving); `undefined` when a frame says it is longer than FRAME_MAX.
 */
export function agentAnswers(input: Buffer): { answers: Buffer[]; rest: Buffer } | undefined {
  const answers: Buffer[] = [];
  let at = 0;
  while (input.length - at >= 4) {
    const length = input.readUInt32BE(at);
    if (length > FRAME_MAX) return undefined;
    if (input.length - at - 4 < length) break;
    const type = length > 0 ? input[at + 4] : undefined;
    answers.push(
      type === SSH2_AGENTC_REQUEST_IDENTITIES
        ? Buffer.from([0, 0, 0, 5, SSH2_AGENT_IDENTITIES_ANSWER, 0, 0, 0, 0])
        : Buffer.from([0, 0, 0, 1, SSH_AGENT_FAILURE]),
    );
    at += 4 + length;
  }
  return { answers, rest: input.subarray(at) };
}

/**
 * Listens on `path` as the agent, the socket and its folder made as `uid`:`gid` (this process's
 * effective ids are switched for that, then back). Failures are said on stderr and leave no
 * agent: the run goes on without one.
 */
export function serveAgent(path: string, uid: number, gid: number): Server | undefined {
  const server = createServer((sock) => {
    let pending = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.setTimeout(60_000, () => sock.destroy());
    sock.on('data', (d: Buffer) => {
      const r = agentAnswers(Buffer.concat([pending, d]));
      if (!r) {
        sock.destroy();
        return;
      }
      pending = Buffer.from(r.rest);
      for (const a of r.answers) sock.write(a);
      if (sock.writableLength > UNREAD_MAX) sock.destroy();
    });
  });
  server.maxConnections = CONNECTIONS_MAX;
  server.on('error', (e) => process.stderr.write(`observer: ssh agent: ${e.message}\n`));
  const egid = process.getegid?.();
  const euid = process.geteuid?.();
  try {
    process.setegid?.(gid);
    process.seteuid?.(uid);
    mkdirSync(path.slice(0, path.lastIndexOf('/')), { recursive: true, mode: 0o700 });
    // The socket file is made by listen(), synchronously as far as the ids go: libuv binds at
    // once, before the ids are switched back.
    const old = process.umask(0o177);
    try {
      server.listen(path);
    } finally {
      process.umask(old);
    }
  } catch (e) {
    process.stderr.write(`observer: ssh agent: ${e instanceof Error ? e.message : String(e)}\n`);
    server.close();
    return undefined;
  } finally {
    if (euid !== undefined) process.seteuid?.(euid);
    if (egid !== undefined) process.setegid?.(egid);
  }
  return server;
}
