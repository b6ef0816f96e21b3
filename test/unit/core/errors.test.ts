import { storeCommand } from '../../../src/cli/commands/store.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { doctorCommand } from '../../../src/cli/commands/doctor.js';
import { imagesCommand } from '../../../src/cli/commands/images.js';
import { policyCommand } from '../../../src/cli/commands/policy.js';
import { sweepCommand } from '../../../src/cli/commands/sweep.js';
import {
  errorCatalogue,
  formatError,
  PhonehomeError,
  type ErrorCode,
} from '../../../src/core/errors.js';
import { dockerError } from '../../../src/sandbox/docker/errors.js';

/**
 * The exit code of every code, by what it is about (README, "Exit codes"): 2 what the user gave
 * (flag, spec, tarball, lockfile, policy), 3 the environment (Docker, images, gateway, registry,
 * result store), 4 a bug, 130 Ctrl-C. A new code must be placed here.
 */
const EXIT_BY_CODE: Record<ErrorCode, 2 | 3 | 4 | 130> = {
  EUSAGE: 2,
  EOUTPUT: 2,
  ESPEC: 2,
  ESPEC_NOT_FOUND: 2,
  ESPEC_CORRUPT: 2,
  ELOCKFILE: 2,
  ELOCKFILE_SOURCE: 2,
  EPOLICY: 2,
  ESTORE_FILE: 2,
  EINTEL: 2,
  EENGINE: 2,
  EDOCKER_UNREACHABLE: 3,
  EDOCKER_PERMISSION: 3,
  EDOCKER_API: 3,
  EIMAGE_MISSING: 3,
  EIMAGE_BUILD: 3,
  EIMAGE_PREREQ: 3,
  EDISK_FULL: 3,
  EGATEWAY_SETUP: 3,
  EGATEWAY_DIED: 3,
  ESECCOMP: 3,
  EREGISTRY_AUTH: 3,
  ERESOLVE: 3,
  ESTORE: 3,
  EINTERNAL: 4,
  EINTERRUPTED: 130,
};

const codes = Object.keys(errorCatalogue) as ErrorCode[];

describe('the error catalogue', () => {
  it('exits by category: usage 2, environment 3, bug 4, interrupted 130; never 0 or 1', () => {
    assert.deepEqual(
      Object.fromEntries(codes.map((c) => [c, new PhonehomeError(c).exitCode])),
      EXIT_BY_CODE,
    );
  });

  it('every summary and fix is one sentence or more: capitalised, ending with a period', () => {
    for (const code of codes) {
      const { summary, fix } = errorCatalogue[code];
      for (const [what, text] of [
        ['summary', summary],
        ['fix', fix],
      ] as const) {
        assert.equal(text, text.trim(), `${code} ${what} has no stray space`);
        assert.match(text, /^([A-Z]|phonehome )/, `${code} ${what} starts a sentence`);
        assert.match(text, /\.$/, `${code} ${what} ends with a period`);
        assert.doesNotMatch(text, /\n/, `${code} ${what} is one line (formatError indents)`);
      }
      assert.notEqual(fix, summary, `${code}: the fix says what to do, not what happened`);
    }
  });

  it('every `phonehome …` command a fix names exists', () => {
    const tops = [
      doctorCommand(),
      imagesCommand(),
      policyCommand(),
      storeCommand(),
      sweepCommand(),
    ];
    const known = (words: string[]): boolean => {
      let level: readonly Command[] = tops;
      for (const w of words) {
        if (w.startsWith('-') || w.startsWith('<')) return true;
        const next = level.find((c) => c.name() === w);
        if (!next) return false;
        if (next.commands.length === 0) return true;
        level = next.commands;
      }
      return true;
    };
    let named = 0;
    for (const code of codes)
      for (const [, cmd] of errorCatalogue[code].fix.matchAll(/`phonehome ([^`]+)`/g)) {
        named++;
        const words = (cmd ?? '').split(' ');
        // `phonehome --help` and `phonehome <command> --help` name no command.
        if (words[0]?.startsWith('-') || words[0]?.startsWith('<')) continue;
        assert.ok(known(words), `${code}: phonehome ${cmd}`);
      }
    assert.ok(named >= 5, 'the fixes name commands');
  });
});

describe('PhonehomeError and formatError', () => {
  it('takes the summary as message and the fix and exit code from the catalogue', () => {
    const e = new PhonehomeError('EIMAGE_MISSING');
    assert.equal(e.message, errorCatalogue.EIMAGE_MISSING.summary);
    assert.equal(e.fix, errorCatalogue.EIMAGE_MISSING.fix);
    assert.equal(e.name, 'PhonehomeError');
    const cause = new Error('underneath');
    const own = new PhonehomeError('ESPEC', 'x@@1 is not a spec.', { fix: 'Try x@1.', cause });
    assert.equal(own.message, 'x@@1 is not a spec.');
    assert.equal(own.fix, 'Try x@1.');
    assert.equal(own.cause, cause);
    assert.equal(own.exitCode, 2);
  });

  it('prints what, each detail line indented, then the fix', () => {
    const e = new PhonehomeError('ELOCKFILE', 'lock.json is not valid JSON (line 3).', {
      detail: 'first line\nsecond line',
      fix: 'Regenerate it.',
    });
    assert.equal(
      formatError(e),
      [
        'phonehome: error ELOCKFILE: lock.json is not valid JSON (line 3).',
        '  first line',
        '  second line',
        '  fix: Regenerate it.',
      ].join('\n'),
    );
    for (const detail of [undefined, ''])
      assert.equal(
        formatError(
          new PhonehomeError('EUSAGE', 'Bad flag.', detail === undefined ? {} : { detail }),
        ),
        `phonehome: error EUSAGE: Bad flag.\n  fix: ${errorCatalogue.EUSAGE.fix}`,
      );
  });
});

describe('dockerError', () => {
  it('a missing or refused daemon is an environment error (exit 3) that says how to fix it', () => {
    for (const code of ['ENOENT', 'ECONNREFUSED']) {
      const e = dockerError(Object.assign(new Error('connect'), { code }), 'pinging');
      assert.equal(e.code, 'EDOCKER_UNREACHABLE');
      assert.equal(e.exitCode, 3);
      assert.match(formatError(e), /fix: .*dockerd/);
    }
    assert.equal(
      dockerError(Object.assign(new Error('x'), { code: 'EACCES' }), 'x').code,
      'EDOCKER_PERMISSION',
    );
    assert.equal(
      dockerError(
        { statusCode: 500, json: { message: 'write /var/lib/docker/x: no space left on device' } },
        'x',
      ).code,
      'EDISK_FULL',
    );
  });

  it('keeps its own errors as they are', () => {
    const e = new PhonehomeError('EIMAGE_MISSING');
    assert.equal(dockerError(e, 'x'), e);
  });
});
