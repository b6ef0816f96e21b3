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
 * - `ssh://user@host[:port]`: the engine of that machine over SSH (the agent at SSH_AUTH_SOCK
 *   answers for the key), through `docker system dial-stdio` there, as the docker CLI does.
 *   docker-modem needs the protocol set explicitly for it.
 */
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

function bad(spec: string, why: string): PhonehomeError {
  return new PhonehomeError('EENGINE', `--engine ${spec}: ${why}.`);
}

export function parseEngine(spec: string): EngineAddress {
  const value = spec.trim();
  if (!value || value === 'default') return { name: 'default' };
  if (isAbsolute(value)) return { name: `unix://${value}`, options: { socketPath: value } };
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
      return { name: `unix://${path}`, options: { socketPath: path } };
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
          options: {
            protocol: 'https',
            host,
            port: port(2376),
            ca: read('ca.pem'),
            cert: read('cert.pem'),
            key: read('key.pem'),
          },
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
      return { name, options: { protocol: 'http', host, port: port(2375) } };
    }
    case 'ssh:': {
      if (!host) throw bad(value, 'no host');
      if (url.password)
        throw bad(value, 'a password in the address is refused: use the SSH agent (SSH_AUTH_SOCK)');
      const username = decodeURIComponent(url.username) || undefined;
      return {
        name: `ssh://${url.username ? `${url.username}@` : ''}${url.host}`,
        options: {
          protocol: 'ssh',
          host,
          port: port(22),
          ...(username ? { username } : {}),
          sshOptions: process.env.SSH_AUTH_SOCK ? { agent: process.env.SSH_AUTH_SOCK } : {},
        } as Docker.DockerOptions,
      };
    }
    default:
      throw bad(value, `${url.protocol}// is not an engine address (unix, tcp, https or ssh)`);
  }
}
