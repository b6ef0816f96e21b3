import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import {
  forMarkdown,
  forMarkdownCode,
  forTerminal,
  forYamlString,
  markdownFence,
} from '../../../src/core/escape.js';

/** Anything a terminal or a reader would not show as itself. */
const RAW =
  // eslint-disable-next-line no-control-regex -- controls are what it looks for
  /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\u{e0000}-\u{e007f}]/u;

/** Undo forTerminal, to show that it loses nothing. */
function unescapeTerminal(s: string): string {
  return s.replace(/\\(?:x([0-9a-f]{2})|u\{([0-9a-f]+)\}|u([0-9a-f]{4})|([\\nrt]))/g, (...m) => {
    const [, x, braced, u, named] = m as (string | undefined)[];
    if (named) return { '\\': '\\', n: '\n', r: '\r', t: '\t' }[named] ?? '';
    return String.fromCodePoint(parseInt((x ?? braced ?? u) as string, 16));
  });
}

describe('forTerminal', () => {
  it('shows C0 controls as escapes, with names for newline, carriage return and tab', () => {
    assert.equal(forTerminal('a\x1b[2K\rPASS'), 'a\\x1b[2K\\rPASS');
    assert.equal(forTerminal('one\ntwo\tthree'), 'one\\ntwo\\tthree');
    assert.equal(forTerminal('\x00\x07\x08\x0b\x0c\x1f'), '\\x00\\x07\\x08\\x0b\\x0c\\x1f');
    for (let c = 0; c < 0x20; c++) assert.doesNotMatch(forTerminal(String.fromCharCode(c)), RAW);
  });

  it('shows DEL and every C1 control (the 8-bit CSI included)', () => {
    assert.equal(forTerminal('\x7f'), '\\x7f');
    assert.equal(forTerminal('\x9b2J'), '\\x9b2J');
    assert.equal(forTerminal('\x85'), '\\x85');
    for (let c = 0x7f; c <= 0x9f; c++)
      assert.equal(forTerminal(String.fromCharCode(c)), `\\x${c.toString(16)}`);
  });

  it('shows bidirectional controls', () => {
    assert.equal(forTerminal('evil\u202etxt.exe'), 'evil\\u202etxt.exe');
    for (const c of [
      0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068,
      0x2069,
    ])
      assert.equal(forTerminal(String.fromCharCode(c)), `\\u${c.toString(16).padStart(4, '0')}`);
  });

  it('shows invisible format characters and line separators', () => {
    assert.equal(
      forTerminal('a\u200bb\u200cc\u200dd\ufeffe\u2028f\u2029g\u00adh\u2060i'),
      'a\\u200bb\\u200cc\\u200dd\\ufeffe\\u2028f\\u2029g\\xadh\\u2060i',
    );
    // Tag characters hide ASCII text beyond the BMP.
    assert.equal(forTerminal('x\u{e0041}\u{e007f}'), 'x\\u{e0041}\\u{e007f}');
  });

  it('shows every character that draws nothing or a blank, so one name cannot pass for another', () => {
    // Variation selectors, the combining grapheme joiner, Khmer and Hangul fillers, a musical
    // format control, supplementary variation selectors, spaces other than ASCII's, blank Braille.
    for (const c of [
      '\u034f',
      '\u17b4',
      '\u180b',
      '\ufe0f',
      '\u2065',
      '\u{e0100}',
      '\u{1d173}',
      '\u3164',
      '\u115f',
      '\u1160',
      '\uffa0',
      '\u00a0',
      '\u2003',
      '\u3000',
      '\u2800',
    ]) {
      const shown = forTerminal(`lodash${c}`);
      assert.notEqual(shown, `lodash${c}`, `U+${c.codePointAt(0)?.toString(16)}`);
      assert.match(shown, /^lodash\\(x|u)/);
      assert.equal(unescapeTerminal(shown), `lodash${c}`);
    }
    assert.equal(forTerminal('a b'), 'a b', 'the ASCII space stays');
  });

  it('shows lone surrogates, which no encoding can write, and keeps pairs', () => {
    assert.equal(forTerminal('a\ud800b'), 'a\\ud800b');
    assert.equal(forTerminal('a\udc00'), 'a\\udc00');
    assert.equal(forTerminal('😀'), '😀');
  });

  it('writes a backslash as \\\\, so an escape can only come from the character it names', () => {
    assert.equal(forTerminal('\\x1b'), '\\\\x1b');
    assert.notEqual(forTerminal('\\x1b'), forTerminal('\x1b'));
    assert.equal(forTerminal('C:\\path\\n'), 'C:\\\\path\\\\n');
    for (const s of ['\\x1b', '\x1b', '\\\x1b', 'a\\nb', 'a\nb', '\\u202e', '\u202e', '\\\\'])
      assert.equal(unescapeTerminal(forTerminal(s)), s);
  });

  it('leaves plain ASCII and other scripts alone', () => {
    for (const s of [
      'cdn.example.com:443',
      '@scope/pkg@1.2.3-beta.1',
      'node install.js --flag="a b"',
      'Grüße, 日本語, العربية, עברית, emoji 🚀',
      '',
    ])
      assert.equal(forTerminal(s), s);
  });
});

describe('forMarkdown', () => {
  it('escapes the terminal classes first, and the escapes render as the terminal shows them', () => {
    assert.equal(forMarkdown('a\x1bb'), 'a\\\\x1bb');
    assert.equal(forMarkdown('a\nb'), 'a\\\\nb');
    assert.doesNotMatch(forMarkdown('x\u202e\x9b\n\r'), RAW);
    assert.equal(forMarkdown('\\'), '\\\\\\\\');
  });

  it('backslash-escapes the characters that make HTML, links, images, code and emphasis', () => {
    assert.equal(forMarkdown('<img src=x>'), '\\<img src=x\\>');
    assert.equal(forMarkdown('[x](y)'), '\\[x\\]\\(y\\)');
    assert.equal(forMarkdown('![i](y)'), '\\!\\[i\\]\\(y\\)');
    assert.equal(forMarkdown('`code`'), '\\`code\\`');
    assert.equal(forMarkdown('*a* _b_ ~c~'), '\\*a\\* \\_b\\_ \\~c\\~');
    assert.equal(forMarkdown('&#x202e;'), '\\&#x202e;');
    assert.equal(forMarkdown('$x$'), '\\$x\\$');
  });

  it('escapes a pipe, so it cannot end a table cell', () => {
    assert.equal(forMarkdown('a|b'), 'a\\|b');
    assert.equal(forMarkdown('a\\|b'), 'a\\\\\\\\\\|b');
  });

  it('breaks autolinks: schemes, www., e-mail addresses', () => {
    assert.equal(forMarkdown('https://evil.example/x'), 'https\\://evil.example/x');
    assert.equal(forMarkdown('see www.evil.example'), 'see www\\.evil.example');
    assert.equal(forMarkdown('WWW.evil.example'), 'WWW\\.evil.example');
    // An empty comment splits the address (GFM finds addresses after resolving escapes).
    assert.equal(forMarkdown('me@evil.example'), 'me@<!-- -->evil.example');
    assert.equal(forMarkdown('mailto:me@evil.example'), 'mailto:me@<!-- -->evil.example');
    assert.equal(forMarkdown('@ alone'), '@ alone');
    assert.doesNotMatch(forMarkdown('[x](https://evil.example)'), /\]\(http/);
  });

  it('escapes what makes a block at the start of a line', () => {
    assert.equal(forMarkdown('# PASS'), '\\# PASS');
    assert.equal(forMarkdown('  ## PASS'), '  \\## PASS');
    assert.equal(forMarkdown('- item'), '\\- item');
    assert.equal(forMarkdown('+ item'), '\\+ item');
    assert.equal(forMarkdown('==='), '\\===');
    assert.equal(forMarkdown('1. item'), '1\\. item');
    assert.equal(forMarkdown('12.'), '12\\.');
    assert.equal(forMarkdown('> quote'), '\\> quote');
    // Elsewhere they mean nothing and stay.
    assert.equal(forMarkdown('a # b - c + d 1. e'), 'a # b - c + d 1. e');
  });

  it('leaves names, versions and hosts as they read', () => {
    for (const s of [
      'upgrade-beacon',
      'cdn.upgrade-stats.example:443',
      '1.0.0 → 1.1.0',
      '2.0.0',
      'Grüße 日本語 🚀',
      'quiet-lib',
    ])
      assert.equal(forMarkdown(s), s);
  });
});

describe('forMarkdownCode', () => {
  it('fences plain text with one backtick', () => {
    assert.equal(forMarkdownCode('cdn.example:443'), '`cdn.example:443`');
    assert.equal(forMarkdownCode('<img src=x>'), '`<img src=x>`');
  });

  it('uses a fence longer than any run of backticks in the text', () => {
    assert.equal(forMarkdownCode('a`b'), '``a`b``');
    assert.equal(forMarkdownCode('a``b`c'), '```a``b`c```');
    assert.equal(forMarkdownCode('x````y'), '`````x````y`````');
  });

  it('pads with spaces when the text starts or ends with a backtick', () => {
    assert.equal(forMarkdownCode('`a'), '`` `a ``');
    assert.equal(forMarkdownCode('a`'), '`` a` ``');
    assert.equal(forMarkdownCode('`'), '`` ` ``');
    // CommonMark strips one space from each side when both have one: keep the text's.
    assert.equal(forMarkdownCode(' a '), '`  a  `');
    assert.equal(forMarkdownCode('  '), '`  `');
  });

  it('escapes for the terminal inside (code spans take no backslash escapes)', () => {
    assert.equal(forMarkdownCode('a\x1b[2K\rb', { inTable: false }), '`a\\x1b[2K\\rb`');
    assert.equal(forMarkdownCode('a\nb\u202e'), '`a\\nb\\u202e`');
    assert.doesNotMatch(forMarkdownCode('\x9b\u2066\x00'), RAW);
  });

  it('escapes pipes in a table cell, and only there', () => {
    assert.equal(forMarkdownCode('a|b'), '`a\\|b`');
    assert.equal(forMarkdownCode('a|b', { inTable: true }), '`a\\|b`');
    assert.equal(forMarkdownCode('a|b', { inTable: false }), '`a|b`');
  });

  it('writes an empty text as a one-space span', () => {
    assert.equal(forMarkdownCode(''), '` `');
  });
});

describe('markdownFence', () => {
  it('is at least three backticks and longer than any run in the lines', () => {
    assert.equal(markdownFence(['rules:', '  - allow: [a]']), '```');
    assert.equal(markdownFence(['```', 'x']), '````');
    assert.equal(markdownFence(['a `````` b']), '```````');
  });
});

describe('forYamlString', () => {
  it('is a YAML double-quoted scalar that reads back as the exact value', () => {
    for (const s of [
      'cdn.example.com:443',
      'a\nb',
      'evil\u202e\x9b\x7f\x1b[2K',
      '\u2028\u2029\ufeff\u200b',
      'tag\u{e0041}',
      'quote " and \\ backslash',
      '😀 日本語',
    ]) {
      const y = forYamlString(s);
      assert.doesNotMatch(y, RAW, JSON.stringify(y));
      assert.equal(parse(`v: ${y}`).v, s);
    }
  });

  it('is JSON too', () => {
    const s = 'a\u202eb\x9b';
    assert.equal(JSON.parse(forYamlString(s)), s);
  });
});
