/**
 * Which Docker engine a `--engine` value names, and how to reach it. The forms are the Docker
 * CLI's, as dockerode's docker-modem speaks them:
 *
 * - `default`: the engine the docker CLI would use (DOCKER_HOST, DOCKER_TLS_VERIFY,
 *   DOCKER_CERT_PATH, else the local socket);
 * - `unix:///run/docker.sock`, or a socket's absolute path;
 * - `tcp://host:2376?tls=/dir` (or `https://…`): TLS with the client certificate of that folder
 *   (`ca.pem`, `cert.pem`, `key.pem`, as DOCKER_CERT_PATH holds them), the server's certificate
 *   checked against `ca.pem`. `tcp://` without `tls=` is plain HTTP, accepted only to a loopback
 *   address: an engine's API is root on its machine, and a package's results would cross the
 *   network in the clear.
 * - `ssh://user@host[:port]?hostkey=SHA256:…`: the engine of that machine over SSH (the agent at
 *   SSH_AUTH_SOCK answers for the key), through `docker system dial-stdio` there, as the docker
 *   CLI does; the machine's host key must be the pinned one. docker-modem needs the protocol set
 *   explicitly for it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
// Types only: reading an address must not load the Docker client (a command answered from the
// store never does).
import type Docker from 'dockerode';
import { PhonehomeError } from '../../core/errors.js';

export interface EngineAddress {
  /** How the engine is named in logs and reports: the value, without any secret. */
  name: string;
  /** dockerode's options; undefined for the default engine. */
  options?: Docker.DockerOptions;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)$/i;

/** The address as it may be printed: no password, and nothing of one that does not parse. */
export function shownAddress(spec: string): string {
  try {
    const u = new URL(spec);
    const path = u.pathname === '/' ? '' : u.pathname;
    return `${u.protocol}//${u.username ? `${u.username}@` : ''}${u.host}${path}${u.search ? '?…' : ''}`;
  } catch {
    return spec.includes('@') ? '(an address that is not a URL)' : spec;
  }
}

function bad(spec: string, why: string): PhonehomeError {
  return new PhonehomeError('EENGINE', `--engine ${shownAddress(spec)}: ${why}.`);
}

/**
 * Every connection field set, the unused ones to undefined: docker-modem lays the options over
 * what DOCKER_HOST and DOCKER_CERT_PATH say, and an address must not be quietly replaced by them.
 */
function only(o: Docker.DockerOptions): Docker.DockerOptions {
  return {
    socketPath: undefined,
    host: undefined,
    port: undefined,
    protocol: undefined,
    ca: undefined,
    cert: undefined,
    key: undefined,
    username: undefined,
    timeout: undefined,
    ...o,
  } as Docker.DockerOptions;
}

/** An SSH host key's fingerprint as ssh-keygen -l prints it: SHA256:<base64, unpadded>. */
export function sshFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

export function parseEngine(spec: string): EngineAddress {
  const value = spec.trim();
  if (!value || value === 'default') return { name: 'default' };
  if (isAbsolute(value)) return { name: `unix://${value}`, options: only({ socketPath: value }) };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw bad(value, 'not an engine address');
  }
  const port = (fallback: number) => (url.port ? Number(url.port) : fallback);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  switch (url.protocol) {
    case 'unix:': {
      const path = decodeURIComponent(url.pathname);
      if (!path || path === '/') throw bad(value, 'no socket path');
      return { name: `unix://${path}`, options: only({ socketPath: path }) };
    }
    case 'tcp:':
    case 'https:':
    case 'http:': {
      if (!host) throw bad(value, 'no host');
      if (url.username || url.password) throw bad(value, 'a TCP engine takes no user or password');
      const tls = url.searchParams.get('tls');
      const name = `${url.protocol === 'http:' ? 'tcp' : url.protocol.slice(0, -1)}://${url.host}`;
      if (tls) {
        const read = (f: string) => {
          try {
            return readFileSync(join(tls, f));
          } catch (e) {
            throw new PhonehomeError(
              'EENGINE',
              `--engine ${name}: cannot read ${join(tls, f)} (${(e as Error).message}).`,
              { fix: 'Point tls= at a folder with ca.pem, cert.pem and key.pem.' },
            );
          }
        };
        return {
          name: `${name} (TLS)`,
          options: only({
            protocol: 'https',
            host,
            port: port(2376),
            ca: read('ca.pem'),
            cert: read('cert.pem'),
            key: read('key.pem'),
          }),
        };
      }
      if (url.protocol === 'https:')
        throw bad(value, 'https:// needs tls=<folder with ca.pem, cert.pem, key.pem>');
      if (!LOOPBACK.test(host))
        throw new PhonehomeError(
          'EENGINE',
          `--engine ${name}: plain TCP to another machine would send the engine API (root there) unencrypted.`,
          { fix: `Add ?tls=<folder with ca.pem, cert.pem, key.pem>, or use ssh://user@${host}.` },
        );
      return { name, options: only({ protocol: 'http', host, port: port(2375) }) };
    }
    case 'ssh:': {
      if (!host) throw bad(value, 'no host');
      if (url.password)
        throw bad(value, 'a password in the address is refused: use the SSH agent (SSH_AUTH_SOCK)');
      // The engine's machine is who it says only if its host key is the one expected: without a
      // check, whoever answers for the name would be the engine, and write the results.
      // A '+' of the base64 written as is reads back as a space.
      const pinned = url.searchParams.get('hostkey')?.replace(/ /g, '+');
      if (!pinned || !/^SHA256:[A-Za-z0-9+/]{43}$/.test(pinned))
        throw new PhonehomeError(
          'EENGINE',
          `--engine ${shownAddress(value)}: an ssh engine needs its host key pinned (?hostkey=SHA256:…).`,
          {
            fix: `Add ?hostkey= with the fingerprint \`ssh-keyscan ${host} | ssh-keygen -lf -\` prints (checked against what you know of the machine).`,
          },
        );
      const username = decodeURIComponent(url.username) || undefined;
      return {
        name: `ssh://${url.username ? `${url.username}@` : ''}${url.host}`,
        options: only({
          protocol: 'ssh',
          host,
          port: port(22),
          ...(username ? { username } : {}),
          sshOptions: {
            ...(process.env.SSH_AUTH_SOCK ? { agent: process.env.SSH_AUTH_SOCK } : {}),
            hostVerifier: (key: Buffer) => sshFingerprint(key) === pinned,
          },
        } as Docker.DockerOptions),
      };
    }
    default:
      throw bad(value, `${url.protocol}// is not an engine address (unix, tcp, https or ssh)`);
  }
}
