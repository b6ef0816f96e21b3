/**
 * Where a lockfile may send phonehome (which fetches on the host): the configured registries and
 * the project's own folder; elsewhere only with consent, internal addresses never.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { refusedSources, type LockEntry } from '../../../src/resolve/lockfile.js';

const entry = (resolved: string | null): LockEntry => ({
  name: 'x',
  version: '1.0.0',
  integrity: null,
  resolved,
  location: 'node_modules/x',
  path: ['app', 'x'],
  dev: false,
  optional: false,
  installable: true,
});
const registries = ['https://registry.npmjs.org/', 'http://127.0.0.1:4873/'];
const why = (resolved: string, allow = false) =>
  refusedSources([entry(resolved)], registries, '/home/me/app', allow)[0]?.why;

describe('refusedSources', () => {
  it('takes the configured registries and files inside the project', () => {
    assert.equal(why('https://registry.npmjs.org/x/-/x-1.0.0.tgz'), undefined);
    assert.equal(why('http://127.0.0.1:4873/x/-/x-1.0.0.tgz'), undefined);
    assert.equal(why('file:vendor/x-1.0.0.tgz'), undefined);
    assert.equal(refusedSources([entry(null)], registries, '/home/me/app', false).length, 0);
  });

  it('refuses files outside the project, and other hosts or git without consent', () => {
    assert.equal(why('file:../../etc/x.tgz'), 'a file outside the project');
    assert.equal(why('file:/etc/x.tgz'), 'a file outside the project');
    assert.equal(why('https://cdn.example/x-1.0.0.tgz'), 'a tarball URL outside the registries');
    assert.equal(
      why('git+ssh://git@github.com/a/x.git#0123'),
      'a git repository outside the registries',
    );
    assert.equal(why('git+file:///srv/repo#0123'), 'a git repository outside the registries');
    assert.equal(why('https://cdn.example/x-1.0.0.tgz', true), undefined);
    assert.equal(why('git+file:///srv/repo#0123', true), undefined);
  });

  it('never fetches from an internal address that is not a configured registry', () => {
    for (const u of [
      'http://169.254.169.254/latest/meta-data/x.tgz',
      'http://127.0.0.2:8080/x.tgz',
      'http://10.0.0.5/x.tgz',
      'http://192.168.1.10/x.tgz',
      'http://172.20.0.1/x.tgz',
      'http://[::1]/x.tgz',
      'http://[fd00::1]/x.tgz',
      'http://localhost:9000/x.tgz',
    ])
      assert.equal(why(u, true), 'an internal address', u);
  });

  it('a file: spec as npm reads it: the home folder, the root and escapes are outside the project', () => {
    for (const spec of [
      'file:~/secret-dir',
      'file:~',
      'file://etc/x',
      'file:%2e%2e/x',
      'file:a%2F..%2F..%2Fx',
    ])
      assert.equal(why(spec), 'a file outside the project', spec);
  });

  it('git on a registry’s host is still git: consent needed', () => {
    assert.equal(
      why('git+https://registry.npmjs.org/x.git#0123'),
      'a git repository outside the registries',
    );
  });

  it('IPv6 forms of internal addresses are internal; ordinary IPv4 literals are not', () => {
    for (const u of [
      'http://[::]/x.tgz',
      'http://[::127.0.0.1]/x.tgz',
      'http://[::ffff:127.0.0.1]/x.tgz',
      'http://[::ffff:a9fe:a9fe]/x.tgz',
      'http://[64:ff9b::a9fe:a9fe]/x.tgz',
      'http://[64:ff9b::10.0.0.1]/x.tgz',
    ])
      assert.equal(why(u, true), 'an internal address', u);
    for (const u of ['http://198.18.0.1/x.tgz', 'http://[::ffff:81.2.3.4]/x.tgz'])
      assert.equal(why(u, true), undefined, u);
  });
});
