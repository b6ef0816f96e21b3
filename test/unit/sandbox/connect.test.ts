/**
 * `--engine` addresses: each form the Docker CLI knows becomes dockerode's options, and an address
 * that would expose the engine's API (plain TCP to another machine, a password in an ssh URL) or
 * names no engine is refused with EENGINE before anything is reached.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PhonehomeError } from '../../../src/core/errors.js';
import Docker from 'dockerode';
import { parseEngine, sshFingerprint } from '../../../src/sandbox/docker/connect.js';
import { engineAddresses } from '../../../src/cli/commands/audit.js';

const dir = mkdtempSync(join(tmpdir(), 'phonehome-connect-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const refused = (re: RegExp) => (e: unknown) =>
  e instanceof PhonehomeError && e.code === 'EENGINE' && e.exitCode === 2 && re.test(e.message);

describe('--engine addresses', () => {
  it('default, a socket, TCP on loopback, TCP with TLS, ssh', () => {
    assert.deepEqual(parseEngine('default'), { name: 'default' });
    const used = (spec: string) =>
      Object.fromEntries(
        Object.entries(parseEngine(spec).options ?? {}).filter(([, v]) => v !== undefined),
      );
    assert.deepEqual(used('/run/d2.sock'), { socketPath: '/run/d2.sock' });
    assert.equal(parseEngine('unix:///run/d2.sock').name, 'unix:///run/d2.sock');
    assert.deepEqual(used('unix:///run/d2.sock'), { socketPath: '/run/d2.sock' });
    assert.deepEqual(used('tcp://127.0.0.1:2375'), {
      protocol: 'http',
      host: '127.0.0.1',
      port: 2375,
    });
    for (const f of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(dir, f), f);
    const tls = parseEngine(`tcp://build-1.example:2376?tls=${dir}`);
    assert.equal(tls.name, 'tcp://build-1.example:2376 (TLS)');
    assert.equal(tls.options?.protocol, 'https');
    assert.equal(String(tls.options?.ca), 'ca.pem');
    const pin = `SHA256:${'A'.repeat(43)}`;
    const ssh = parseEngine(`ssh://ci@build-2.example:2222?hostkey=${pin}`);
    assert.equal(ssh.name, 'ssh://ci@build-2.example:2222');
    assert.equal(ssh.options?.protocol, 'ssh', 'docker-modem needs the protocol set');
    assert.equal(ssh.options?.username, 'ci');
    assert.equal(ssh.options?.port, 2222);
    const verify = (ssh.options?.sshOptions as { hostVerifier: (k: Buffer) => boolean })
      .hostVerifier;
    assert.equal(verify(Buffer.from('another machine')), false, 'an unpinned host key is refused');
    const key = Buffer.from('the machine');
    const pinned = parseEngine(`ssh://ci@h?hostkey=${sshFingerprint(key)}`).options?.sshOptions as {
      hostVerifier: (k: Buffer) => boolean;
    };
    assert.equal(pinned.hostVerifier(key), true);
  });

  it('DOCKER_HOST does not replace the engine an address names', () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = 'tcp://10.1.2.3:2375';
    try {
      const modem = new Docker(parseEngine('/run/other.sock').options).modem as {
        socketPath?: string;
        host?: string;
      };
      assert.equal(modem.host, undefined);
      assert.equal(modem.socketPath, '/run/other.sock');
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });

  it('refuses what would expose the engine, or names none', () => {
    assert.throws(() => parseEngine('tcp://build-1.example:2375'), refused(/unencrypted/));
    assert.throws(
      () => parseEngine('ssh://ci:hunter2@build-2.example'),
      (e: unknown) => refused(/password/)(e) && !(e as Error).message.includes('hunter2'),
    );
    assert.throws(() => parseEngine('ssh://ci@build-2.example'), refused(/host key pinned/));
    assert.throws(() => parseEngine('https://h:2376'), refused(/tls=/));
    assert.throws(
      () => parseEngine(`tcp://h:2376?tls=${join(dir, 'none')}`),
      refused(/cannot read/),
    );
    assert.throws(() => parseEngine('ftp://h'), refused(/not an engine address/));
    assert.throws(() => parseEngine('not an address'), refused(/not an engine address/));
    assert.throws(
      () => engineAddresses(['/run/a.sock', 'unix:///run/a.sock']),
      refused(/named twice/),
    );
    const file = join(dir, 'engines');
    writeFileSync(file, '# the pool\ndefault\nunix:///run/b.sock  # the second\n\n');
    assert.deepEqual(engineAddresses([], file), ['default', 'unix:///run/b.sock']);
  });
});
