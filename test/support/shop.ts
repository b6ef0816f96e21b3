/**
 * A small project for audits through the sandbox: seven packages from our fixtures (one with an
 * install beacon, honest ones with and without install scripts, a dependency chain), published to
 * the loopback registry and locked by npm; and what an audit report says of each package, for
 * comparing two audits of it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditReport } from '../../src/audit/audit.js';
import { fixture } from './cli.js';
import type { Verdaccio } from './verdaccio.js';

export const SHOP_FIXTURES = [
  'telemetry-dep',
  'uses-telemetry-dep',
  'app-toolkit',
  'upgrade-beacon-1.0.1',
  'honest-no-scripts',
  'honest-postinstall-prints',
  'quiet-lib-1.0.0',
];

/** The fixtures published, and the project written and locked in `dir`. */
export async function shop(registry: Verdaccio, dir: string): Promise<void> {
  for (const f of SHOP_FIXTURES) await registry.publish(fixture(f));
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({
      name: 'shop',
      version: '1.0.0',
      private: true,
      dependencies: {
        'app-toolkit': '^1.0.0',
        'honest-postinstall-prints': '^1.0.0',
        'upgrade-beacon': '1.0.1',
        'quiet-lib': '^1.0.0',
      },
      devDependencies: { 'honest-no-scripts': '^1.0.0' },
    }),
  );
  await registry.lock(dir);
}

/** What a report says of each package, leaving out where the answer came from. */
export const reportLines = (r: AuditReport) =>
  r.packages
    .map((p) => ({
      id: p.id,
      path: p.path,
      status: p.status,
      verdict: p.verdict,
      findings: (p.report?.findings ?? []).map((f) => `${f.id}:${f.severity}`).sort(),
    }))
    .sort((a, b) => a.id.localeCompare(b.id));
