/**
 * Escaping for output. Why: most of what a report says came from the package under test (its
 * name and version, the hosts and SNI it reached, HTTP paths, command lines, the stderr of a
 * failing install step, finding messages and policy suggestions that embed them), and a hostile
 * package chooses those strings. Written raw to a terminal, an escape sequence in a DNS name can
 * erase the real verdict and print "PASS" over it; bidirectional overrides can make text read
 * backwards. Written raw into Markdown (a pull request comment), a pipe ends a table cell, a
 * backtick ends a code span, and HTML, images, links and emphasis render as the package wants.
 *
 * So the renderers escape every such string when they write it, and only then: the report data,
 * its JSON and SARIF stay exactly what was observed (JSON.stringify escapes controls itself).
 * Text phonehome lays out over several lines (a suggestion's YAML) is escaped line by line by the
 * renderer; a newline inside a single value is shown as `\n`.
 *
 * Pure: no I/O.
 */

/**
 * What a reader must see as an escape instead of the character itself: a backslash (so that every
 * backslash in the output starts an escape, and `\x1b` can only come from an ESC), C0 controls
 * (newline, carriage return and tab included), DEL, C1 controls, the bidirectional controls
 * (ALM, LRM, RLM, LRE..RLO, LRI..PDI), invisible format characters (soft hyphen, Mongolian vowel
 * separator, zero-width space, non-joiner and joiner, word joiner and invisible operators, the
 * deprecated format controls, byte-order mark, interlinear annotation controls, tag characters),
 * the line and paragraph separators, and lone surrogates (which no encoding can write); and
 * beyond those lists, every default-ignorable code point and format character Unicode knows
 * (variation selectors, the combining grapheme joiner, Hangul and Khmer fillers, musical format
 * controls, …), every space but the ASCII one (no-break, em, ideographic, …) and the blank
 * Braille pattern: characters that draw nothing, or draw a blank, so that a name holding one
 * would read as another name.
 */
const UNSAFE =
  // eslint-disable-next-line no-control-regex -- matching controls is its purpose
  /[\\\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\u{e0001}\u{e0020}-\u{e007f}]|[\ud800-\udfff]|[\p{Default_Ignorable_Code_Point}\p{Cf}\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u2800]/gu;

const NAMED: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c: string): string {
  const named = NAMED[c];
  if (named) return named;
  const cp = c.codePointAt(0) ?? 0;
  const hex = cp.toString(16);
  if (cp <= 0xff) return `\\x${hex.padStart(2, '0')}`;
  if (cp <= 0xffff) return `\\u${hex.padStart(4, '0')}`;
  return `\\u{${hex}}`;
}

/**
 * Text for a terminal line: every control, bidirectional control and invisible format character
 * shown as an escape (`\x1b`, `\n`, `\u202e`, `\u{e0041}`), and a backslash as `\\`, so the
 * output is one line and says exactly what the input held. Other text (any script, emoji) is
 * unchanged.
 */
export function forTerminal(s: string): string {
  // Past three combining marks on one letter (more than any script stacks), the rest are shown as
  // escapes: a pile of them draws over the lines around it.
  return s
    .replace(UNSAFE, escapeChar)
    .replace(/(\p{M}{3})(\p{M}+)/gu, (_, kept: string, rest: string) =>
      kept.concat([...rest].map(escapeChar).join('')),
    );
}

/**
 * Characters that mean something to GitHub-flavoured Markdown wherever they are, backslash-escaped
 * (CommonMark lets any ASCII punctuation be escaped, and `\|` keeps a pipe inside a table cell):
 * backslash, backtick (code spans), `*` `_` `~` (emphasis, strikethrough), `[` `]` `!` (links,
 * images), `<` `>` (HTML, autolinks, quotes), `&` (entities such as `&#x202e;`), `|` (cells),
 * `$` (math), `(` `)` (link destinations). A colon before `//` and the dot after `www` are escaped
 * so that `https://…` and `www.…` are not autolinked. Dots, hyphens, plus and hash signs elsewhere
 * do nothing and are left alone, so that names, versions and hosts read as they are; at the start
 * of the text (which a renderer may put at the start of a line) they are escaped too.
 */
const MARKDOWN_SPECIAL = /[\\`*_~[\]!<>&|$()]|:(?=\/\/)|(?<=[wW]{3})\./g;

/**
 * An `@` before a name. GFM finds e-mail autolinks (`me@evil.example`, `mailto:…`, `xmpp:…`) in
 * text after escapes are resolved, so `\@` does not stop them; an empty HTML comment after the
 * `@` splits the text in two nodes, and GitHub shows nothing of it.
 */
const MARKDOWN_AT = /@(?=[\w-])/g;

/**
 * At the start of a line (after up to three spaces): headings, bullets, thematic breaks and setext
 * underlines, and ordered list items (digits and a dot before a space: `1.0.0` is no list item).
 */
const MARKDOWN_LINE_START = /^( {0,3})(?:([#+=-])|(\d+)\.(?= |$))/;

/**
 * Text for a Markdown paragraph or table cell: escaped for the terminal first (so it is one line
 * and controls are visible), then every Markdown special backslash-escaped, so no HTML, link,
 * image, autolink, emphasis or math can come from it and a pipe cannot end a cell. The result
 * renders as the terminal escape would print.
 *
 * Not prevented: GitHub's #references and :emoji: are found in the rendered text, after Markdown,
 * and so may be @mentions (the comment after an `@` splits that text too, but only GitHub can
 * tell); only a code span (forMarkdownCode) surely keeps them out.
 */
export function forMarkdown(s: string): string {
  return forTerminal(s)
    .replace(MARKDOWN_SPECIAL, (c) => `\\${c}`)
    .replace(MARKDOWN_AT, '@<!-- -->')
    .replace(MARKDOWN_LINE_START, (_m, indent: string, mark?: string, digits?: string) =>
      mark !== undefined ? `${indent}\\${mark}` : `${indent}${digits}\\.`,
    );
}

/**
 * An inline code span holding the text (fences included): escaped for the terminal, fenced by a
 * run of backticks longer than any run in the text (CommonMark's rule), padded with a space when
 * the text starts or ends with a backtick (or starts and ends with a space, which CommonMark
 * would strip). In a table cell (the default) pipes are written `\|`: GFM splits cells before it
 * finds code spans, and removes the backslash. Outside a table pass `{ inTable: false }`, or the
 * backslash shows.
 */
export function forMarkdownCode(s: string, opts: { inTable?: boolean } = {}): string {
  let t = forTerminal(s);
  if (opts.inTable ?? true) t = t.replace(/\|/g, '\\|');
  if (t === '') return '` `';
  const longest = (t.match(/`+/g) ?? []).reduce((n, run) => Math.max(n, run.length), 0);
  const fence = '`'.repeat(longest + 1);
  const pad =
    t.startsWith('`') ||
    t.endsWith('`') ||
    (t.startsWith(' ') && t.endsWith(' ') && t.trim() !== '')
      ? ' '
      : '';
  return `${fence}${pad}${t}${pad}${fence}`;
}

/**
 * A fence for a Markdown code block around these lines: at least three backticks, and more than
 * the longest run of backticks in them, so no line of the block can close it.
 */
export function markdownFence(lines: string[]): string {
  const longest = lines
    .flatMap((l) => l.match(/`+/g) ?? [])
    .reduce((n, r) => Math.max(n, r.length), 0);
  return '`'.repeat(Math.max(3, longest + 1));
}

/**
 * A YAML double-quoted scalar for text a policy file embeds: JSON.stringify's escapes are YAML's,
 * and what JSON leaves raw (DEL, C1 controls, bidirectional and invisible format characters, line
 * separators) is written as `\uXXXX` too (tag characters, beyond the BMP, as YAML's `\UXXXXXXXX`;
 * without them the result is also a JSON string), so the file holds the exact value and nothing
 * hidden.
 */
export function forYamlString(s: string): string {
  return JSON.stringify(s).replace(UNSAFE, (c) => {
    if (c === '\\') return c;
    const cp = c.codePointAt(0) ?? 0;
    return cp <= 0xffff
      ? `\\u${cp.toString(16).padStart(4, '0')}`
      : `\\U${cp.toString(16).padStart(8, '0')}`;
  });
}
