/**
 * Install scripts run by the step driver (src/agent/lifecycle.ts) against the image's own npm:
 * in one sandbox, a postinstall run as phonehome runs it and the same postinstall under a real
 * `npm install` must see the same environment, but for what names the folder they ran in.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as tar from 'tar';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AGENT_ONLY_ENV } from '../../src/agent/step.js';
import { stage, type StagedPackage } from '../../src/resolve/stage.js';
import { installSteps, runSteps, startProject, STEP_ENV } from '../../src/run/steps.js';
import type { SandboxRun } from '../../src/sandbox/sandbox.js';
import type { CaptureTopology } from '../../src/sandbox/topology.js';
import { engine as newEngine, images } from '../support/sandbox.js';
import { scratch } from '../support/scratch.js';

/**
 * Writes its environment and what it can see of its parent's parent (npm, or what stands for it)
 * where the test reads it: stdout under phonehome, a file under npm.
 */
const DUMP = `node -e "const fs = require('fs'); const st = fs.readFileSync('/proc/' + process.ppid + '/stat', 'utf8'); const npm = st.slice(st.lastIndexOf(')') + 2).split(' ')[1]; const j = JSON.stringify({ env: process.env, npm: { uid: fs.statSync('/proc/' + npm).uid, cmd: fs.readFileSync('/proc/' + npm + '/cmdline', 'utf8').split(String.fromCharCode(0)).filter(Boolean).join(' '), exe: fs.readlinkSync('/proc/' + npm + '/exe') } }); if (process.env.INIT_CWD === '/tmp/real') fs.writeFileSync('/tmp/real-env.json', j); else process.stdout.write(j + String.fromCharCode(10))"`;

interface Dump {
  env: Record<string, string>;
  npm: { uid: number; cmd: string; exe: string };
}

/** What differs by folder and by how the test started npm, not by who ran the script. */
const BY_FOLDER = new Set([
  'INIT_CWD',
  'npm_config_local_prefix',
  'PATH',
  'PWD',
  'OLDPWD',
  'npm_package_json',
  'npm_package_resolved',
  'npm_package_integrity',
  // The test's npm needs these to run scripts offline; a user's npm 12 allows them in the project.
  'npm_config_dangerously_allow_all_scripts',
  'npm_config_offline',
  'npm_config_install_links',
  '_',
  // The test's npm is told not to ask the registry for updates or audits (STEP_ENV).
  'npm_config_update_notifier',
  'npm_config_audit',
  'npm_config_fund',
  // The shell the test starts npm from (sh, not a user's bash).
  'SHLVL',
]);

for (const as of ['laptop', 'ci'] as const) {
  describe(`install scripts as npm install runs them (${as})`, () => {
    const engine = newEngine();
    let run: SandboxRun;
    let topo: CaptureTopology;
    let staged: StagedPackage;
    const folder = scratch('lifecycle-');

    before(async () => {
      const refs = await images(engine);
      writeFileSync(
        join(folder, 'package.json'),
        JSON.stringify({
          name: 'env-dump',
          version: '1.2.3',
          bin: { envdump: 'cli.js' },
          config: { port: 8080 },
          engines: { node: '>=18' },
          scripts: { preinstall: DUMP, postinstall: DUMP },
        }),
      );
      writeFileSync(join(folder, 'cli.js'), '#!/usr/bin/env node\n');
      staged = await stage(folder);
      run = engine.newRun();
      topo = await startProject(run, refs, staged.tar(), as);
    });
    after(async () => {
      await run?.dispose();
      await staged?.[Symbol.asyncDispose]();
    });

    it('gives a script what npm install gives it, with no trace of phonehome or npm rebuild', async () => {
      const steps = installSteps(staged.packages, 60_000);
      assert.deepEqual(
        steps.map((x) => x.label),
        ['preinstall of env-dump@1.2.3', 'postinstall of env-dump@1.2.3'],
      );
      const { outputs } = await runSteps(topo, steps, { settleMs: 500 });
      assert.equal(outputs.length, 2);
      for (const o of outputs) assert.equal(o.code, 0, o.stderr);
      const out = { stdout: outputs.map((o) => o.stdout).join('') };
      // Two scripts, two dumps, a line each.
      const [preDump, postDump] = out.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Dump);
      assert.ok(preDump && postDump);
      const [pre, post] = [preDump.env, postDump.env];
      // The same package under the image's npm, in the same sandbox, as the same user.
      const real = await topo.sandbox.exec(
        [
          'env',
          ...AGENT_ONLY_ENV.flatMap((k) => ['-u', k]),
          ...Object.entries({ HOME: topo.identity.home, ...STEP_ENV }).map(([k, v]) => `${k}=${v}`),
          'sh',
          '-c',
          `mkdir -p /tmp/real /tmp/pkg && cp -r /work/node_modules/env-dump/. /tmp/pkg && cd /tmp/real && echo '{"name":"real","version":"1.0.0"}' > package.json && npm install --offline --install-links --dangerously-allow-all-scripts /tmp/pkg >/dev/null && cat /tmp/real-env.json`,
        ],
        { user: '1000:1000', timeoutMs: 120_000 },
      );
      assert.equal(real.exitCode, 0, real.stderr);
      const realDump = JSON.parse(real.stdout) as Dump;
      const npm = realDump.env;
      // The scripts' parent: node, as the package's user, showing as npm does.
      assert.deepEqual(
        { uid: postDump.npm.uid, exe: postDump.npm.exe },
        { uid: realDump.npm.uid, exe: realDump.npm.exe },
      );
      assert.equal(postDump.npm.cmd, 'npm install');
      const keys = (e: Record<string, string>) =>
        Object.keys(e)
          .filter((k) => !BY_FOLDER.has(k))
          .sort();
      assert.deepEqual(keys(post), keys(npm));
      for (const k of keys(npm)) assert.equal(post[k], npm[k], k);

      assert.equal(pre.npm_lifecycle_event, 'preinstall');
      assert.equal(post.npm_lifecycle_event, 'postinstall');
      assert.equal(post.npm_lifecycle_script, DUMP);
      assert.equal(post.npm_command, 'install');
      assert.equal(post.npm_package_name, 'env-dump');
      assert.equal(post.npm_package_version, '1.2.3');
      assert.equal(post.npm_package_config_port, '8080');
      assert.equal(post.npm_package_engines_node, '>=18');
      assert.equal(post.npm_package_bin_envdump, 'cli.js');
      assert.equal(post.npm_package_json, '/work/node_modules/env-dump/package.json');
      assert.equal(post.INIT_CWD, '/work');
      assert.ok(post.PATH?.startsWith('/work/node_modules/env-dump/node_modules/.bin:'), post.PATH);
      for (const k of AGENT_ONLY_ENV) assert.equal(post[k], undefined, k);
      // A user's npm with its default configuration sets none of these.
      for (const k of Object.keys(STEP_ENV)) assert.equal(post[k], undefined, k);
      assert.deepEqual(
        Object.entries(post).filter(([k, v]) => /rebuild|phonehome|\/opt\/agent/.test(`${k}=${v}`)),
        [],
      );
      if (as === 'ci')
        assert.match(post.npm_config_user_agent ?? '', / ci\/github-actions\/dotcom-hosted$/);
      else assert.doesNotMatch(post.npm_config_user_agent ?? '', / ci\//);
    });
  });
}

describe("install scripts: a dependent's script cannot take over a nested dependency's step", () => {
  const engine = newEngine();
  let run: SandboxRun;
  let topo: CaptureTopology;
  let staged: StagedPackage;
  const dir = scratch('lifecycle-nested-');

  /** A package folder packed as npm packs it, for a `file:` dependency. */
  const pack = async (name: string, files: Record<string, string>): Promise<string> => {
    const folder = join(dir, name);
    mkdirSync(folder, { recursive: true });
    for (const [f, body] of Object.entries(files)) writeFileSync(join(folder, f), body);
    const tgz = join(dir, `${name}.tgz`);
    await tar.c(
      { gzip: true, file: tgz, cwd: folder, prefix: 'package/', portable: true },
      Object.keys(files),
    );
    return tgz;
  };

  before(async () => {
    const refs = await images(engine);
    // victim@1 (nested under the helper, its postinstall runs `victim-tool`, which npm's PATH
    // looks for in every node_modules/.bin up from its folder) and victim@2 at the top.
    const v1 = await pack('victim-1', {
      'package.json': JSON.stringify({
        name: 'victim',
        version: '1.0.0',
        scripts: { postinstall: 'node install.js; victim-tool || true' },
      }),
      'install.js': "console.log('victim: own install.js');\n",
    });
    const v2 = await pack('victim-2', {
      'package.json': JSON.stringify({ name: 'victim', version: '2.0.0' }),
    });
    // The helper's preinstall runs before every install and postinstall: it tries to rewrite
    // the nested victim's code and to put a command on the victim's PATH.
    const helper = await pack('helper', {
      'package.json': JSON.stringify({
        name: 'helper',
        version: '1.0.0',
        dependencies: { victim: `file:${v1}` },
        scripts: { preinstall: 'node plant.js' },
      }),
      'plant.js': [
        "const fs = require('fs');",
        "const nested = __dirname + '/node_modules/victim';",
        "try { fs.writeFileSync(nested + '/install.js', \"console.log('victim: planted');\\n\"); console.log('rewrite: ok'); } catch (e) { console.log('rewrite: ' + e.code); }",
        "try { fs.mkdirSync(nested + '/../left-pad'); console.log('shadow: ok'); } catch (e) { console.log('shadow: ' + e.code); }",
        "try { fs.renameSync(__dirname + '/node_modules', __dirname + '/old_modules'); console.log('rename: ok'); } catch (e) { console.log('rename: ' + e.code); }",
        "try { fs.chmodSync(__dirname + '/node_modules', 0o777); console.log('chmod: ok'); } catch (e) { console.log('chmod: ' + e.code); }",
        "try { fs.mkdirSync(__dirname + '/node_modules/.bin', { recursive: true }); fs.writeFileSync(__dirname + '/node_modules/.bin/victim-tool', '#!/bin/sh\\necho victim: planted tool\\n', { mode: 0o755 }); console.log('plant: ok'); } catch (e) { console.log('plant: ' + e.code); }",
        '',
      ].join('\n'),
    });
    const subject = join(dir, 'subject');
    mkdirSync(subject);
    writeFileSync(
      join(subject, 'package.json'),
      JSON.stringify({
        name: 'subject',
        version: '1.0.0',
        dependencies: { victim: `file:${v2}`, helper: `file:${helper}` },
      }),
    );
    staged = await stage(subject);
    run = engine.newRun();
    topo = await startProject(run, refs, staged.tar(), 'laptop');
  });
  after(async () => {
    await run?.dispose();
    await staged?.[Symbol.asyncDispose]();
  });

  it("keeps the nested dependency's code, its folder and its PATH its own", async () => {
    const steps = installSteps(staged.packages, 60_000);
    assert.deepEqual(
      steps.map((x) => x.label),
      ['preinstall of helper@1.0.0', 'postinstall of victim@1.0.0'],
    );
    const { outputs, conduct } = await runSteps(topo, steps, { settleMs: 500 });
    const [plant, victim] = outputs;
    assert.ok(plant && victim);
    assert.match(plant.stdout, /rewrite: EACCES/, plant.stdout);
    // Nor can it add a folder that require() would find first, move the folder away or open it.
    assert.match(plant.stdout, /shadow: EACCES/, plant.stdout);
    assert.match(plant.stdout, /rename: EPERM|rename: EACCES/, plant.stdout);
    assert.match(plant.stdout, /chmod: EPERM/, plant.stdout);
    assert.match(victim.stdout, /victim: own install\.js/, victim.stdout);
    assert.doesNotMatch(victim.stdout, /victim: planted\n/);
    // Its node_modules is root's: no command on the victim's PATH either.
    assert.match(plant.stdout, /plant: EACCES/, plant.stdout);
    assert.doesNotMatch(victim.stdout, /planted tool/);
    assert.deepEqual(conduct, []);
  });
});
