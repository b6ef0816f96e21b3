import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hostname } from 'node:os';
import {
  LABEL_OWNER,
  LABEL_ROLE,
  LABEL_RUN,
  type ContainerSpec,
  type SandboxRun,
} from '../../src/sandbox/sandbox.js';
import { engine as newEngine, idleRunner, images } from '../support/sandbox.js';
import type { ImageRefs } from '../../src/images/inputs.js';

describe('docker adapter with the runner image', () => {
  const engine = newEngine();
  let refs: ImageRefs;
  before(async () => {
    refs = await images(engine);
  });
  after(async () => {
    await engine.disposeAll();
  });

  const idleSandbox = (run: SandboxRun, extra: Partial<ContainerSpec> = {}) =>
    idleRunner(run, refs.runner, extra);

  it('runs node and curl as the unprivileged user, labels the container, and removes it on dispose', async () => {
    let id: string;
    {
      await using run = engine.newRun();
      const c = await idleSandbox(run, { capDropAll: true, noNewPrivileges: true });
      id = c.id;
      const whoami = await c.exec(['id', '-u']);
      assert.equal(whoami.stdout.trim(), '1000');
      const node = await c.exec(['node', '-e', 'console.log(process.versions.node)']);
      assert.equal(node.exitCode, 0);
      assert.match(node.stdout, /^\d+\.\d+\.\d+/);
      const curl = await c.exec(['curl', '--version']);
      assert.equal(curl.exitCode, 0);
      assert.match(curl.stdout, /^curl \d/);
      for (const tool of ['bash', 'wget', 'python3', 'git', 'dig', 'npm']) {
        const r = await c.exec(['sh', '-c', `command -v ${tool}`]);
        assert.equal(r.exitCode, 0, `${tool} is in the runner image`);
      }
      const info = await engine.docker.getContainer(id).inspect();
      assert.equal(info.Config.Labels[LABEL_RUN], run.id);
      assert.equal(info.Config.Labels[LABEL_ROLE], 'sandbox');
    }
    await assert.rejects(engine.docker.getContainer(id).inspect(), /no such container/i);
  });

  it('copies files in and out, bounds output, and times out without hanging', async () => {
    await using run = engine.newRun();
    const c = await idleSandbox(run);
    const { Header } = await import('tar');
    const data = Buffer.from('hello from the host\n');
    const h = new Header({
      path: 'greeting.txt',
      mode: 0o644,
      size: data.length,
      type: 'File',
      mtime: new Date(0),
    });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    const archive = Buffer.concat([
      block,
      data,
      Buffer.alloc(512 - data.length),
      Buffer.alloc(1024),
    ]);
    await c.putArchive(archive, '/tmp');
    assert.equal((await c.readFile('/tmp/greeting.txt', 1024)).toString(), 'hello from the host\n');

    const big = await c.exec(['sh', '-c', 'head -c 5000000 /dev/zero | tr "\\0" x'], {
      maxOutputBytes: 1000,
    });
    assert.equal(big.stdout.length, 1000);
    assert.equal(big.stdoutBytes, 5_000_000);
    assert.equal(big.truncated, true);

    const slow = await c.exec(['sleep', '30'], { timeoutMs: 500 });
    assert.equal(slow.timedOut, true);
    assert.equal(slow.exitCode, null);
  });

  it('sweeps containers whose owner process is gone, by label only', async () => {
    const labels = (owner: string) => ({
      [LABEL_RUN]: `test-${owner}`,
      [LABEL_ROLE]: 'probe',
      [LABEL_OWNER]: owner,
    });
    // pid 2^22+1 is above pid_max: no such process.
    const dead = await engine.docker.createContainer({
      Image: refs.runner,
      Entrypoint: ['sleep', '60'],
      Labels: labels(`${hostname()}:4194305`),
      HostConfig: { NetworkMode: 'none' },
    });
    const live = await engine.docker.createContainer({
      Image: refs.runner,
      Entrypoint: ['sleep', '60'],
      Labels: labels(`${hostname()}:${process.pid}`),
      HostConfig: { NetworkMode: 'none' },
    });
    const unlabelled = await engine.docker.createContainer({
      Image: refs.runner,
      Entrypoint: ['sleep', '60'],
      HostConfig: { NetworkMode: 'none' },
    });
    try {
      const r = await newEngine().sweep();
      assert.ok(r.removedContainers.includes(dead.id.slice(0, 12)));
      await assert.rejects(engine.docker.getContainer(dead.id).inspect(), /no such container/i);
      assert.equal((await live.inspect()).Id, live.id);
      assert.equal((await unlabelled.inspect()).Id, unlabelled.id);
    } finally {
      await live.remove({ force: true });
      await unlabelled.remove({ force: true });
    }
  });
});
