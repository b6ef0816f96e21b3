/**
 * Install scripts run by the step driver (src/agent/lifecycle.ts) against the image's own npm:
 * in one sandbox, a postinstall run as phonehome runs it and the same postinstall under a real
 * `npm install` must see the same environment, but for what names the folder they ran in.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AGENT_ONLY_ENV } from '../../src/agent/step.js';
import { stage, type StagedPackage } from '../../src/resolve/stage.js';
import { installSteps, runSteps, startProject, STEP_ENV } from '../../src/run/steps.js';
import type { SandboxRun } from '../../src/sandbox/sandbox.js';
import type { CaptureTopology } from '../../src/sandbox/topology.js';
import { engine as newEngine, images } from '../support/sandbox.js';
import { scratch } from '../support/scratch.js';

/** Writes its environment where the test reads it: stdout under phonehome, a file under npm. */
const DUMP = `node -e "const j=JSON.stringify(process.env); if (process.env.INIT_CWD==='/tmp/real') require('fs').writeFileSync('/tmp/real-env.json', j); else process.stdout.write(j)"`;

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
      assert.equal(steps.length, 1);
      const [out] = (await runSteps(topo, steps, { settleMs: 500 })).outputs;
      assert.ok(out, 'the install step ran');
      assert.equal(out.code, 0, out.stderr);
      // Two scripts, two dumps, back to back.
      const [pre, post] = out.stdout.split('}{').map((s, i, all) => {
        const text = `${i > 0 ? '{' : ''}${s}${i < all.length - 1 ? '}' : ''}`;
        return JSON.parse(text) as Record<string, string>;
      });
      assert.ok(pre && post);
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
      const npm = JSON.parse(real.stdout) as Record<string, string>;
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
