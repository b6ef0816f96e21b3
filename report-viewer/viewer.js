// The viewer of phonehome's HTML report (see src/report/html.ts): draws the page from the JSON
// in #phonehome-data. Everything in that JSON may have come from a package under test, so every
// string is written as text (append, textContent, title), never as markup, and no attribute that
// loads or links anything is ever set.
(() => {
  'use strict';
  const data = JSON.parse(document.getElementById('phonehome-data').textContent);
  const app = document.getElementById('app');

  /** An element with our own attributes and text or element children. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'title') el.title = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'data') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  // What decided an attempt, in words: the model's (src/report/model.ts DECISION_LABELS).
  const LABELS = data.labels;
  const seconds = (ms) => `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const badge = (verdict) => h('span', { class: `verdict v-${verdict}` }, verdict.toUpperCase());
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

  function legend(used) {
    const keys = Object.keys(LABELS).filter((k) => used.has(k));
    if (!keys.length) return null;
    return h(
      'p',
      { class: 'legend' },
      keys.map((k) => h('span', { class: 'key' }, h('span', { class: `dot d-${k}` }), LABELS[k])),
    );
  }

  function attemptTitle(a) {
    return [
      a.at === null ? 'time not recorded' : `at ${seconds(a.at)}`,
      a.what,
      a.package && `package ${a.package}`,
      a.process && `process ${a.process}`,
      a.times > 1 && `${a.times} times`,
    ]
      .filter(Boolean)
      .join('\n');
  }

  function timeline(t) {
    const head = h(
      'h3',
      {},
      `${t.phase}${t.identity ? ` (as ${t.identity})` : ''}`,
      h(
        'span',
        { class: 'muted' },
        ` ${t.status}${t.status === 'skipped' || t.durationMs === null ? '' : `, ${seconds(t.durationMs)}`}`,
      ),
    );
    const parts = [head];
    if (t.note) parts.push(h('p', { class: 'note' }, t.note));
    if (t.calls) parts.push(h('p', { class: 'note' }, t.calls));
    if (!t.rows.length) {
      parts.push(h('p', { class: 'muted' }, 'no egress attempts'));
      return h('section', { class: 'phase', data: { phase: t.phase } }, parts);
    }
    const rows = t.rows.map((r) => {
      const track = h('span', { class: 'track' });
      for (const a of r.attempts) {
        const dot = h('span', {
          class: `dot d-${r.decision}${a.at === null ? ' untimed' : ''}`,
          title: attemptTitle(a),
        });
        dot.style.left = `${a.at === null ? 0 : Math.min(100, (a.at / t.axisMs) * 100)}%`;
        track.append(dot);
      }
      const times = r.attempts.reduce((n, a) => n + a.times, 0);
      const summary = h(
        'summary',
        { class: 'row' },
        h(
          'span',
          { class: 'label' },
          h('span', { class: `swatch d-${r.decision}` }),
          h('span', { class: 'dest' }, r.destination),
          h('span', { class: 'muted small' }, ` ${r.package}${times > 1 ? ` ×${times}` : ''}`),
        ),
        track,
      );
      // The attempts' table is built when the row is first opened: a run can hold many.
      const list = () =>
        h(
          'table',
          { class: 'attempts' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', {}, 'when'),
              h('th', {}, 'attempt'),
              h('th', {}, 'package'),
              h('th', {}, 'process'),
            ),
          ),
          h(
            'tbody',
            {},
            r.attempts.map((a) =>
              h(
                'tr',
                {},
                h('td', { class: 'num' }, a.at === null ? '?' : seconds(a.at)),
                h('td', {}, a.what, a.times > 1 ? ` ×${a.times}` : ''),
                h('td', {}, a.package),
                h('td', { class: 'mono' }, a.process),
              ),
            ),
          ),
          r.more
            ? h(
                'caption',
                { class: 'muted small' },
                `and ${r.more} more attempt(s) to it, not drawn here (the JSON report has them all)`,
              )
            : null,
        );
      const row = h(
        'details',
        { class: `dest-row r-${r.decision}`, data: { decision: r.decision } },
        summary,
        h(
          'p',
          { class: 'because' },
          h('strong', {}, `${LABELS[r.decision]}: `),
          r.because,
          r.rule ? h('span', { class: 'muted' }, ` (${r.rule})`) : null,
        ),
      );
      let built = false;
      row.addEventListener('toggle', () => {
        if (row.open && !built) {
          built = true;
          row.append(list());
        }
      });
      return row;
    });
    const axis = h(
      'div',
      { class: 'axis' },
      h('span', { class: 'label' }),
      h(
        'span',
        { class: 'ticks' },
        h('span', {}, '0 s'),
        h('span', {}, seconds(t.axisMs / 2)),
        h('span', {}, seconds(t.axisMs)),
      ),
    );
    return h(
      'section',
      { class: 'phase', data: { phase: t.phase } },
      parts,
      h('div', { class: 'timeline' }, rows, axis),
      t.moreRows
        ? h(
            'p',
            { class: 'note' },
            `and ${t.moreRows} more destination(s) in this phase, not drawn here (the JSON report has them all)`,
          )
        : null,
    );
  }

  function copyButton(pre) {
    return h(
      'button',
      {
        type: 'button',
        class: 'copy',
        onclick: (ev) => {
          const text = pre.textContent;
          const done = () => {
            ev.target.textContent = 'copied';
            setTimeout(() => (ev.target.textContent = 'copy'), 1500);
          };
          const select = () => {
            const range = document.createRange();
            range.selectNodeContents(pre);
            const sel = window.getSelection();
            sel.removeAllRanges();
            sel.addRange(range);
            ev.target.textContent = 'selected: press Ctrl-C';
          };
          if (navigator.clipboard && window.isSecureContext)
            navigator.clipboard.writeText(text).then(done, select);
          else select();
        },
      },
      'copy',
    );
  }

  function findingsList(findings) {
    if (!findings.length) return h('p', { class: 'muted' }, 'no findings');
    return h(
      'ul',
      { class: 'findings' },
      findings.map((f) => {
        const pre = f.suggestion ? h('pre', { class: 'yaml' }, f.suggestion) : null;
        return h(
          'li',
          { class: `sev-${f.severity}`, data: { finding: f.id } },
          h('span', { class: `sev s-${f.severity}` }, f.severity),
          ' ',
          h('span', { class: 'message' }, f.message),
          pre
            ? h(
                'div',
                { class: 'suggestion' },
                h(
                  'span',
                  { class: 'muted small' },
                  'to allow it, add to the rules of your policy:',
                ),
                copyButton(pre),
                pre,
              )
            : null,
        );
      }),
    );
  }

  function packagesTable(packages) {
    if (!packages.length) return null;
    return h(
      'table',
      { class: 'packages' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, 'package'),
          h('th', {}, 'install scripts'),
          h('th', {}, 'phase'),
          h('th', {}, 'declared'),
          h('th', {}, 'reached'),
        ),
      ),
      h(
        'tbody',
        {},
        packages.flatMap((p) => {
          const phases = p.phases.length ? p.phases : [{ phase: '', declared: [], reached: [] }];
          return phases.map((x, i) =>
            h(
              'tr',
              {},
              i === 0
                ? h(
                    'td',
                    { rowspan: phases.length },
                    h('span', { class: 'mono' }, p.id),
                    p.capabilities.length
                      ? h('div', { class: 'muted small' }, p.capabilities.join(', '))
                      : null,
                  )
                : null,
              i === 0
                ? h(
                    'td',
                    { rowspan: phases.length, class: 'mono small' },
                    p.installScripts.length
                      ? p.installScripts.map((s) => h('div', {}, s))
                      : h('span', { class: 'muted' }, 'none'),
                  )
                : null,
              h('td', {}, x.phase),
              h(
                'td',
                { class: 'mono small' },
                x.declared.length
                  ? x.declared.map((d) => h('div', {}, d))
                  : h('span', { class: 'muted' }, x.phase ? 'nothing' : ''),
              ),
              h(
                'td',
                { class: 'mono small' },
                x.reached.map((d) =>
                  h(
                    'div',
                    {
                      class: d.declared ? '' : 'undeclared',
                      title: d.declared ? 'allowed by its declaration' : 'not declared',
                    },
                    d.destination,
                  ),
                ),
              ),
            ),
          );
        }),
      ),
    );
  }

  function checkSection(v) {
    const used = new Set(v.timelines.flatMap((t) => t.rows.map((r) => r.decision)));
    return h(
      'section',
      { class: 'check', data: { verdict: v.verdict } },
      h('h2', {}, badge(v.verdict), ' ', h('span', { class: 'mono' }, v.id)),
      h('p', { class: 'why' }, v.why),
      v.policy ? h('p', { class: 'muted' }, `policy: ${v.policy}`) : null,
      v.truncated
        ? h('p', { class: 'note' }, `capture bounds hit; counted without detail: ${v.truncated}`)
        : null,
      h('h3', { class: 'section' }, 'Egress attempts, by phase'),
      legend(used),
      v.timelines.map(timeline),
      v.changes.length
        ? [
            h('h3', { class: 'section' }, 'Changes since the earlier version'),
            h('pre', { class: 'changes' }, v.changes.join('\n')),
          ]
        : null,
      h('h3', { class: 'section' }, 'Findings'),
      findingsList(v.findings),
      v.moreFindings
        ? h(
            'p',
            { class: 'note' },
            `and ${v.moreFindings} more finding(s), none more severe than the last one listed (the JSON report has them all)`,
          )
        : null,
      v.packages.length
        ? [h('h3', { class: 'section' }, 'Declared and done'), packagesTable(v.packages)]
        : null,
    );
  }

  /** A table whose rows open a check view below them, built when first opened. */
  function expandable(columns, rows, viewOf, { open } = {}) {
    const tbody = h('tbody');
    const shown = [];
    const entries = rows.map((row) => {
      const cells = columns.map((c) => h('td', { class: c.class || '' }, c.cell(row)));
      const tr = h(
        'tr',
        { class: `item v-row-${row.verdict}`, tabindex: 0, data: { verdict: row.verdict } },
        cells,
      );
      const detail = h(
        'tr',
        { class: 'detail', hidden: true },
        h('td', { colspan: columns.length }),
      );
      let built = false;
      const toggle = () => {
        const view = viewOf(row);
        if (!view) return;
        if (!built) {
          detail.firstChild.append(checkSection(view));
          built = true;
        }
        detail.hidden = !detail.hidden;
        tr.classList.toggle('open', !detail.hidden);
      };
      tr.addEventListener('click', toggle);
      tr.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          toggle();
        }
      });
      return { row, tr, detail, toggle };
    });
    for (const e of entries) tbody.append(e.tr, e.detail);
    if (open) entries.filter((e) => open(e.row)).forEach((e) => e.toggle());
    shown.push(...entries);
    let sortKey = null;
    let sortDir = 1;
    const head = h(
      'tr',
      {},
      columns.map((c) =>
        h(
          'th',
          {
            class: c.sort ? 'sortable' : '',
            title: c.sort ? 'sort' : undefined,
            onclick: c.sort
              ? () => {
                  sortDir = sortKey === c ? -sortDir : 1;
                  sortKey = c;
                  const sorted = [...entries].sort((a, b) => {
                    const x = c.sort(a.row);
                    const y = c.sort(b.row);
                    return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
                  });
                  for (const e of sorted) tbody.append(e.tr, e.detail);
                }
              : undefined,
          },
          c.title,
        ),
      ),
    );
    return { table: h('table', { class: 'items' }, h('thead', {}, head), tbody), entries };
  }

  const VERDICT_RANK = { pass: 0, warn: 1, fail: 2 };
  const SEV_RANK = { '': -1, info: 0, low: 1, medium: 2, high: 3, critical: 4 };

  function auditPage(d) {
    const columns = [
      { title: 'package', class: 'mono', cell: (r) => r.id, sort: (r) => r.id },
      { title: 'verdict', cell: (r) => badge(r.verdict), sort: (r) => -VERDICT_RANK[r.verdict] },
      {
        title: 'install scripts',
        class: 'small',
        cell: (r) => r.installScripts.join(', ') || '',
        sort: (r) => -r.installScripts.length,
      },
      {
        title: 'egress',
        class: 'num',
        cell: (r) => (r.destinations ? plural(r.destinations, 'destination') : ''),
        sort: (r) => -r.destinations,
      },
      {
        title: 'findings',
        cell: (r) =>
          r.findings ? [h('span', { class: `sev s-${r.worst}` }, r.worst), ` ${r.findings}`] : '',
        sort: (r) => -SEV_RANK[r.worst] * 1000 - r.findings,
      },
      {
        title: 'dependency path',
        class: 'mono small',
        cell: (r) => [
          r.path.join(' › '),
          r.dev ? h('span', { class: 'tag' }, 'dev') : null,
          r.optional ? h('span', { class: 'tag' }, 'optional') : null,
          r.fromStore ? h('span', { class: 'tag' }, 'stored') : null,
          r.status !== 'checked' ? h('span', { class: 'tag' }, r.status) : null,
        ],
      },
    ];
    const { table, entries } = expandable(columns, d.rows, (r) => r.check);
    const verdictSel = h(
      'select',
      { id: 'filter-verdict', 'aria-label': 'verdict' },
      h('option', { value: 'all' }, 'every verdict'),
      h('option', { value: 'fail' }, 'failing only'),
      h('option', { value: 'flagged' }, 'failing or warning'),
      h('option', { value: 'pass' }, 'passing only'),
    );
    const scripts = h('input', { type: 'checkbox', id: 'filter-scripts' });
    const name = h('input', {
      type: 'search',
      id: 'filter-name',
      placeholder: 'package name',
      'aria-label': 'package name',
    });
    const count = h('span', { class: 'muted', id: 'filter-count' });
    const apply = () => {
      const v = verdictSel.value;
      const q = name.value.trim().toLowerCase();
      let n = 0;
      for (const e of entries) {
        const ok =
          (v === 'all' || (v === 'flagged' ? e.row.verdict !== 'pass' : e.row.verdict === v)) &&
          (!scripts.checked || e.row.installScripts.length > 0) &&
          (!q || e.row.id.toLowerCase().includes(q));
        e.tr.hidden = !ok;
        if (!ok) {
          e.detail.hidden = true;
          e.tr.classList.remove('open');
        }
        if (ok) n++;
      }
      count.textContent = `${n} of ${entries.length} shown`;
    };
    verdictSel.addEventListener('change', apply);
    scripts.addEventListener('change', apply);
    name.addEventListener('input', apply);
    apply();
    return [
      h(
        'ul',
        { class: 'summary' },
        d.summary.map((l) => h('li', {}, l)),
      ),
      h(
        'div',
        { class: 'filters' },
        h('label', {}, 'show ', verdictSel),
        h('label', {}, scripts, ' with install scripts only'),
        h('label', {}, 'name ', name),
        count,
      ),
      table,
    ];
  }

  function changesPage(d) {
    const columns = [
      { title: 'package', class: 'mono', cell: (r) => r.name, sort: (r) => r.name },
      { title: 'change', class: 'mono', cell: (r) => r.change },
      {
        title: 'verdict',
        cell: (r) => [badge(r.verdict), r.fromStore ? h('span', { class: 'tag' }, 'stored') : null],
        sort: (r) => -VERDICT_RANK[r.verdict],
      },
      {
        title: 'destinations added',
        class: 'mono small',
        cell: (r) => r.added.map((x) => h('div', { class: 'added' }, `+ ${x}`)),
      },
      {
        title: 'destinations removed',
        class: 'mono small',
        cell: (r) => r.removed.map((x) => h('div', { class: 'removed' }, `− ${x}`)),
      },
      { title: 'dependency path', class: 'mono small', cell: (r) => r.path.join(' › ') },
    ];
    const { table } = expandable(columns, d.changes, (r) => r.check, {
      open: (r) => r.verdict === 'fail' || d.changes.length === 1 || r.kind === 'compared',
    });
    return [
      h(
        'ul',
        { class: 'summary' },
        d.summary.map((l) => h('li', {}, l)),
      ),
      d.changes.length ? table : h('p', { class: 'muted' }, 'no package added or changed'),
    ];
  }

  const header = h(
    'header',
    {},
    h('h1', {}, badge(data.verdict), ` phonehome ${data.kind}`),
    h('p', { class: 'title mono' }, data.title),
  );
  app.append(header);
  if (data.kind === 'check') app.append(...data.checks.map(checkSection));
  else if (data.kind === 'audit') app.append(...auditPage(data));
  else app.append(...changesPage(data));
  document.body.dataset.ready = 'true';
})();
