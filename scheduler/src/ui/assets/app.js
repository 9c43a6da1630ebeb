// offpeak's operator dashboard: four panels (Tonight, Now, Spend, Jobs) and
// a job's page, drawn from the JSON under /ui/api/ and refreshed every few
// seconds while the tab is visible. Hand-written, no dependencies, no build
// step: the scheduler serves this file as it is.
//
// Rules kept throughout:
// - Text from the server (tenant names, inputs, errors) only ever goes in
//   through textContent (the h() helper), never as HTML.
// - No inline styles or scripts (the page's Content-Security-Policy forbids
//   them): SVG uses presentation attributes, colours go through the CSSOM.
// - Every number shown also sits, exact, in a data-value attribute, and
//   elements the end-to-end test reads carry data-testid.
'use strict';

(() => {
  const SVG = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
  const SAVED_COLOUR = '#d9e6d2';
  const main = document.getElementById('main');
  const statusEl = document.getElementById('status');

  let meta = null; // GET /ui/api/meta
  let view = null; // { refresh: async () => void } of the panel on screen
  let timer = null;
  let busy = false;
  let generation = 0; // bumps on navigation: stale answers are dropped

  // ------------------------------------------------------------ helpers

  function build(ns, tag, attrs, children) {
    const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') el.textContent = String(v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const h = (tag, attrs, ...children) => build(null, tag, attrs, children);
  const s = (tag, attrs, ...children) => build(SVG, tag, attrs, children);

  const fmt = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
  const pad = (n) => String(n).padStart(2, '0');
  function utc(iso, withSeconds = true) {
    if (!iso) return '–';
    const d = new Date(iso);
    const t = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return withSeconds ? `${t}:${pad(d.getUTCSeconds())}` : t;
  }
  const hourLabel = (iso) => pad(new Date(iso).getUTCHours());
  const percent = (r) => (r === null || r === undefined ? '–' : `${(r * 100).toFixed(1)}%`);
  const shortId = (id) => id.slice(0, 8) + '…' + id.slice(-4);

  function colourOf(model) {
    const models = (meta && meta.models) || [];
    let i = models.indexOf(model);
    if (i < 0) i = models.length + [...model].reduce((a, c) => a + c.charCodeAt(0), 0);
    return PALETTE[i % PALETTE.length];
  }

  function swatch(colour) {
    const el = h('span', { class: 'swatch' });
    el.style.backgroundColor = colour; // CSSOM, allowed by the CSP
    return el;
  }

  function card(label, value, testid, extra) {
    return h('div', { class: 'card stat', 'data-testid': testid, 'data-value': value === null || value === undefined ? '' : value },
      h('div', { class: 'label', text: label }),
      h('div', { class: 'value', text: typeof value === 'number' ? fmt(value) : value === null || value === undefined ? '–' : value }),
      extra ? h('div', { class: 'extra muted' }, extra) : null);
  }

  function stateBadge(state, testid) {
    return h('span', { class: `badge state-${state}`, 'data-testid': testid, text: state });
  }

  // Calls a JSON endpoint; a 401 means the session ended: back to the login.
  async function api(path, options = {}) {
    const headers = { Accept: 'application/json', ...(options.headers || {}) };
    const resp = await fetch(path, { ...options, credentials: 'same-origin', headers });
    if (resp.status === 401) {
      window.location.assign('/ui/login');
      throw new Error('session ended; log in again');
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (!resp.ok) {
      const e = new Error((body && body.error && body.error.message) || `HTTP ${resp.status}`);
      e.status = resp.status;
      e.code = body && body.error && body.error.code;
      throw e;
    }
    return body;
  }

  // Changes carry the anti-CSRF header the server requires.
  const change = (path, body) => api(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Offpeak-UI': '1' },
    body: JSON.stringify(body || {}),
  });

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle('error', Boolean(isError));
  }

  function replace(el, ...children) {
    el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  }

  // A y-axis top and tick step that look round: 1, 2, 5 × 10^k.
  function niceScale(max, ticks = 4) {
    if (max <= 0) return { top: ticks, step: 1 };
    const raw = max / ticks;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((m) => m >= raw);
    return { top: step * Math.ceil(max / step), step };
  }

  // A stacked bar chart. bars: [{ key, label, total, segments: [{ value, colour, title, series }] }].
  function stackedBars({ bars, width = 960, height = 300, marker = null, testid, yLabel }) {
    const m = { top: 28, right: 12, bottom: 28, left: 48 };
    const w = width - m.left - m.right;
    const ht = height - m.top - m.bottom;
    const max = Math.max(0, ...bars.map((b) => b.segments.reduce((a, x) => a + x.value, 0)));
    const { top, step } = niceScale(max);
    const band = w / Math.max(1, bars.length);
    const y = (v) => m.top + ht - (v / top) * ht;
    const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'data-testid': testid, 'aria-label': yLabel });
    for (let v = 0; v <= top + 1e-9; v += step) {
      svg.appendChild(s('line', { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: 'grid' }));
      svg.appendChild(s('text', { x: m.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick', text: fmt(Math.round(v)) }));
    }
    svg.appendChild(s('text', { x: 4, y: 12, class: 'tick', text: yLabel }));
    bars.forEach((b, i) => {
      const x = m.left + i * band + band * 0.12;
      const bw = band * 0.76;
      const g = s('g', { class: 'bar', 'data-key': b.key, 'data-total': b.total });
      let acc = 0;
      for (const seg of b.segments) {
        if (seg.value <= 0) continue;
        const rect = s('rect', { x, y: y(acc + seg.value), width: bw, height: Math.max(0.5, y(acc) - y(acc + seg.value)), fill: seg.colour, 'data-series': seg.series, 'data-value': seg.value },
          s('title', { text: seg.title }));
        g.appendChild(rect);
        acc += seg.value;
      }
      if (b.total > 0) g.appendChild(s('text', { x: x + bw / 2, y: y(acc) - 3, 'text-anchor': 'middle', class: 'bar-total', text: fmt(b.total) }));
      svg.appendChild(g);
      if (b.label) svg.appendChild(s('text', { x: x + bw / 2, y: height - m.bottom + 16, 'text-anchor': 'middle', class: 'tick', text: b.label }));
    });
    if (marker) {
      const x = m.left + marker.position * band;
      svg.appendChild(s('line', { x1: x, x2: x, y1: m.top - 12, y2: m.top + ht, class: 'now-line', 'data-testid': `${testid}-now` }));
      svg.appendChild(s('text', { x: x + 4, y: m.top - 4, class: 'now-label', text: marker.label }));
    }
    return svg;
  }

  function legend(items) {
    return h('div', { class: 'legend' }, items.map(([colour, name]) => h('span', { class: 'legend-item' }, swatch(colour), name)));
  }

  // ------------------------------------------------------------ Tonight

  function tonightView() {
    const root = h('section', { class: 'panel', 'data-testid': 'panel-tonight' });
    replace(main, root);
    return {
      async refresh() {
        const t = await api('/ui/api/tonight');
        const now = new Date(t.now);
        const bars = t.hours.map((hr) => ({
          key: hr.hour,
          label: hourLabel(hr.hour),
          total: hr.total,
          segments: t.models.map((mod) => ({
            value: hr.by_model[mod] || 0,
            colour: colourOf(mod),
            series: mod,
            title: `${hourLabel(hr.hour)}:00 UTC · ${mod}: ${fmt(hr.by_model[mod] || 0)} job(s)`,
          })),
        }));
        const position = (now - new Date(t.from)) / 3600e3;
        const chart = stackedBars({
          bars, testid: 'tonight-chart-svg', yLabel: 'held jobs',
          marker: { position, label: `now ${pad(now.getUTCHours())}:${pad(now.getUTCMinutes())} UTC` },
        });
        const busiest = t.hours.filter((hr) => hr.total > 0);
        replace(root,
          h('h1', { text: 'Tonight' }),
          h('p', { class: 'muted', text: `Held jobs by the UTC hour in which they become due, ${utc(t.from, false)} to ${utc(t.until, false)} UTC, stacked by model. Each job waits for ${meta.window} in its own timezone.` }),
          h('div', { class: 'cards' },
            card('due in the next 24 h', t.total, 'tonight-total'),
            card('due now, awaiting release', t.due_now, 'tonight-due-now'),
            card('due later than 24 h', t.later, 'tonight-later')),
          h('div', { class: 'card chart-card', id: 'tonight-chart', 'data-testid': 'tonight-chart' },
            h('div', { class: 'chart-title', text: 'Held jobs by due hour (UTC)' }),
            chart,
            legend(t.models.map((mod) => [colourOf(mod), mod]))),
          h('h2', { text: 'Hours with work' }),
          busiest.length === 0 ? h('p', { class: 'muted', 'data-testid': 'tonight-empty', text: 'Nothing is held for the next 24 hours.' }) :
            h('table', { class: 'table', 'data-testid': 'tonight-table' },
              h('thead', {}, h('tr', {}, h('th', { text: 'hour (UTC)' }), h('th', { class: 'num', text: 'jobs' }), h('th', { text: 'models' }), h('th', { text: 'timezones (windows opening)' }))),
              h('tbody', {}, busiest.map((hr) => h('tr', { 'data-testid': 'tonight-row', 'data-hour': hr.hour, 'data-value': hr.total },
                h('td', { text: `${utc(hr.hour, false)}` }),
                h('td', { class: 'num', text: fmt(hr.total) }),
                h('td', {}, Object.entries(hr.by_model).map(([mod, n]) => h('span', { class: 'chip' }, swatch(colourOf(mod)), `${mod} ${fmt(n)}`))),
                h('td', { class: 'muted', text: Object.entries(hr.by_timezone).sort((a, b) => b[1] - a[1]).map(([tz, n]) => `${tz} ${fmt(n)}`).join(', ') }))))));
      },
    };
  }

  // ------------------------------------------------------------ Now

  function sparkline(points, testid) {
    const width = 300, height = 48, pad_ = 2;
    const max = Math.max(1, ...points.map((p) => p.finished));
    const x = (i) => pad_ + (i / Math.max(1, points.length - 1)) * (width - 2 * pad_);
    const y = (v) => height - pad_ - (v / max) * (height - 2 * pad_);
    const line = points.map((p, i) => `${x(i).toFixed(1)},${y(p.finished).toFixed(1)}`).join(' ');
    const area = `${x(0)},${height - pad_} ${line} ${x(points.length - 1)},${height - pad_}`;
    return s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'sparkline', 'data-testid': testid, role: 'img', 'aria-label': 'jobs finished per minute, last hour' },
      s('polygon', { points: area, class: 'spark-area' }),
      s('polyline', { points: line, class: 'spark-line' }),
      s('title', { text: `jobs finished per minute over the last hour (peak ${max})` }));
  }

  function nowView() {
    const root = h('section', { class: 'panel', 'data-testid': 'panel-now' });
    replace(main, root);
    return {
      async refresh() {
        const n = await api('/ui/api/now');
        const q = n.queue;
        const er = n.error_rate;
        replace(root,
          h('h1', { text: 'Now' }),
          h('h2', { text: 'Jobs by state' }),
          h('div', { class: 'cards' }, meta.states.map((st) => {
            const c = card(st, n.states[st] || 0, `state-${st}`);
            c.classList.add(`state-card`, `state-${st}`);
            return h('a', { href: `#/jobs?state=${st}`, class: 'card-link' }, c);
          })),
          h('h2', { text: 'Queue and workers' }),
          h('div', { class: 'cards' },
            card('queue depth (ready batches)', q ? q.ready : null, 'queue-ready', q ? null : n.queue_error),
            card('workers connected', q ? q.consumers : null, 'queue-consumers', q ? 'consumers of the batch queue' : n.queue_error),
            card('finished in the last hour', n.throughput.finished, 'throughput-finished',
              [sparkline(n.throughput.per_minute, 'throughput-sparkline'),
                h('div', { text: `${fmt(n.throughput.succeeded)} succeeded · ${fmt(n.throughput.failed)} failed · ${fmt(n.throughput.dead)} dead` })]),
            card('provider error rate, last hour', percent(er.rate), 'error-rate',
              [h('div', { 'data-testid': 'error-rate-attempts', 'data-failed': er.failed_attempts, 'data-attempts': er.attempts, text: `${fmt(er.failed_attempts)} of ${fmt(er.attempts)} attempts failed` }),
                h('div', { class: 'definition', text: `Defined as ${er.definition}.` })])));
        root.querySelector('[data-testid="error-rate"]').setAttribute('data-value', er.rate === null ? '' : er.rate);
      },
    };
  }

  // ------------------------------------------------------------ Spend

  function spendView() {
    const root = h('section', { class: 'panel', 'data-testid': 'panel-spend' });
    replace(main, root);
    return {
      async refresh() {
        const sp = await api('/ui/api/spend');
        const byDay = new Map(sp.days.map((d) => [d, []]));
        for (const r of sp.rows) (byDay.get(r.day) || []).push(r);
        const bars = sp.days.map((d) => {
          const rows = byDay.get(d) || [];
          const credits = rows.reduce((a, r) => a + r.credits, 0);
          const saved = rows.reduce((a, r) => a + r.saved_offpeak + r.saved_cache + r.saved_semantic, 0);
          return {
            key: d,
            label: d.slice(8),
            total: credits,
            segments: sp.models.map((mod) => {
              const r = rows.find((x) => x.model === mod);
              return { value: r ? r.credits : 0, colour: colourOf(mod), series: mod, title: `${d} · ${mod}: ${fmt(r ? r.credits : 0)} credits` };
            }).concat([{ value: saved, colour: SAVED_COLOUR, series: 'saved', title: `${d} · saved: ${fmt(saved)} credits (off-peak + caches)` }]),
          };
        });
        const tot = sp.totals;
        replace(root,
          h('h1', { text: 'Spend' }),
          h('p', { class: 'muted', text: `Credits per model per UTC day, ${sp.days[0]} to ${sp.days[sp.days.length - 1]}, from the usage ledger (what GET /v1/usage reads), every tenant's. The pale part of a bar is what the off-peak price and the caches (exact and semantic) saved against the list price.` }),
          h('div', { class: 'cards' },
            card('credits charged', tot.credits, 'spend-credits'),
            card('at list price', tot.list_credits, 'spend-list'),
            card('saved by the off-peak price', tot.saved_offpeak, 'spend-saved-offpeak'),
            card('saved by the cache', tot.saved_cache, 'spend-saved-cache'),
            card('saved by the semantic cache', tot.saved_semantic, 'spend-saved-semantic'),
            card('saved by preview first', tot.saved_preview, 'spend-saved-preview'),
            card('requests', tot.requests, 'spend-requests')),
          h('div', { class: 'card chart-card', 'data-testid': 'spend-chart' },
            h('div', { class: 'chart-title', text: 'Credits per day (UTC)' }),
            stackedBars({ bars, testid: 'spend-chart-svg', yLabel: 'credits' }),
            legend(sp.models.map((mod) => [colourOf(mod), mod]).concat([[SAVED_COLOUR, 'saved (off-peak + caches)']]))),
          h('h2', { text: 'By model' }),
          h('table', { class: 'table', 'data-testid': 'spend-table' },
            h('thead', {}, h('tr', {}, ['model', 'requests', 'credits', 'list credits', 'saved off-peak', 'saved cache', 'saved semantic'].map((c, i) => h('th', { class: i ? 'num' : null, text: c })))),
            h('tbody', {}, sp.models.map((mod) => {
              const u = sp.by_model[mod];
              return h('tr', { 'data-testid': 'spend-row', 'data-model': mod },
                h('td', {}, swatch(colourOf(mod)), mod),
                ['requests', 'credits', 'list_credits', 'saved_offpeak', 'saved_cache', 'saved_semantic'].map((k) => h('td', { class: 'num', 'data-field': k, 'data-value': u[k], text: fmt(u[k]) })));
            }))));
      },
    };
  }

  // ------------------------------------------------------------ Jobs

  const JOB_FILTERS = ['tenant', 'model', 'state', 'from', 'to', 'q', 'limit', 'cursor'];

  function jobsView(params) {
    const root = h('section', { class: 'panel', 'data-testid': 'panel-jobs' });
    const select = (name, label, options) => h('label', {}, label,
      h('select', { name, 'data-testid': `filter-${name}` },
        h('option', { value: '', text: 'all' }),
        options.map(([v, t]) => h('option', { value: v, text: t, selected: params.get(name) === v }))));
    const input = (name, label, type, placeholder) => h('label', {}, label,
      h('input', { name, type, placeholder, value: params.get(name) || '', 'data-testid': `filter-${name}` }));
    const form = h('form', { class: 'filters card', 'data-testid': 'jobs-filters' },
      select('tenant', 'tenant', meta.tenants.map((t) => [t.id, t.name])),
      select('model', 'model', meta.models.map((m) => [m, m])),
      select('state', 'state', meta.states.map((st) => [st, st])),
      input('from', 'created from (UTC)', 'datetime-local'),
      input('to', 'created before (UTC)', 'datetime-local'),
      input('q', 'job id or user id', 'search', 'id or user_id'),
      h('label', {}, 'per page', h('select', { name: 'limit' }, ['25', '50', '100', '250'].map((v) => h('option', { value: v, text: v, selected: (params.get('limit') || '50') === v })))),
      h('button', { type: 'submit', 'data-testid': 'jobs-search', text: 'Search' }));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      const q = (data.get('q') || '').trim();
      if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(q)) {
        window.location.hash = `#/jobs/${q.toLowerCase()}`;
        return;
      }
      const next = new URLSearchParams();
      for (const [k, v] of data.entries()) if (v) next.set(k, v);
      window.location.hash = `#/jobs?${next}`;
    });
    const results = h('div', { 'data-testid': 'jobs-results' });
    replace(root, h('h1', { text: 'Jobs' }), form, results);
    replace(main, root);
    // Newer pages: the cursors that led here, kept in history.state.
    const trail = (history.state && history.state.trail) || [];
    return {
      async refresh() {
        const q = new URLSearchParams();
        for (const k of ['tenant', 'model', 'state', 'limit', 'cursor']) if (params.get(k)) q.set(k, params.get(k));
        for (const k of ['from', 'to']) if (params.get(k)) q.set(k, params.get(k));
        if (params.get('q')) q.set('user_id', params.get('q'));
        const page = await api(`/ui/api/jobs?${q}`);
        const pageLink = (cursor, label, testid, newTrail) => {
          const p = new URLSearchParams(params);
          if (cursor) p.set('cursor', cursor); else p.delete('cursor');
          return h('a', { href: `#/jobs?${p}`, class: 'button', 'data-testid': testid, text: label, onclick: () => { history.replaceState({ trail: trail }, ''); pendingTrail = newTrail; } });
        };
        replace(results,
          h('p', { class: 'muted', 'data-testid': 'jobs-count', 'data-value': page.jobs.length, text: `${page.jobs.length} job(s) on this page, newest first${params.get('cursor') ? ' (older page)' : ''}.` }),
          h('table', { class: 'table jobs', 'data-testid': 'jobs-table' },
            h('thead', {}, h('tr', {}, ['created (UTC)', 'job', 'tenant', 'model', 'state', 'priority', 'timezone', 'due (UTC)', 'attempts', 'credits'].map((c) => h('th', { text: c })))),
            h('tbody', {}, page.jobs.map((j) => h('tr', { 'data-testid': 'job-row', 'data-id': j.id, 'data-state': j.state },
              h('td', { text: utc(j.created_at) }),
              h('td', {}, h('a', { href: `#/jobs/${j.id}`, class: 'mono', 'data-testid': 'job-link', text: shortId(j.id) })),
              h('td', { text: j.tenant }),
              h('td', {}, swatch(colourOf(j.model)), j.model),
              h('td', {}, stateBadge(j.state)),
              h('td', { text: j.priority }),
              h('td', { text: j.timezone }),
              h('td', { text: utc(j.release_at) }),
              h('td', { class: 'num', text: `${j.attempts}/${j.max_attempts}` }),
              h('td', { class: 'num', text: j.credits === null ? '–' : `${fmt(j.credits)}${j.cache_hit ? ' (cache)' : ''}` }))))),
          h('div', { class: 'pager' },
            trail.length ? pageLink(trail[trail.length - 1], '← newer', 'jobs-newer', trail.slice(0, -1)) : null,
            page.next_cursor ? pageLink(page.next_cursor, 'older →', 'jobs-older', trail.concat([params.get('cursor') || ''])) : null));
      },
    };
  }
  let pendingTrail = null;

  function webhooksView() {
    const root = h('section', { class: 'panel', 'data-testid': 'panel-webhooks' });
    replace(main, root);
    return {
      async refresh() {
        const w = await api('/ui/api/webhooks');
        const age = w.oldest_pending_seconds > 0 ? `oldest ${Math.round(w.oldest_pending_seconds)} s` : 'none waiting';
        const health = (e) => (!e.enabled ? 'disabled' : e.failing_since ? 'failing' : 'ok');
        replace(root,
          h('h1', { text: 'Webhooks' }),
          h('div', { class: 'cards' },
            card('deliveries pending', w.pending, 'webhooks-pending', age),
            card('events to fan out', w.events_waiting, 'webhooks-events-waiting'),
            card('deliveries given up', w.failed, 'webhooks-failed'),
            card('endpoints disabled', w.endpoints_disabled, 'webhooks-disabled')),
          h('table', { class: 'table', 'data-testid': 'webhooks-table' },
            h('thead', {}, h('tr', {}, ['tenant', 'endpoint', 'url', 'events', 'health', 'pending', 'delivered', 'given up', 'last error'].map((c) => h('th', { text: c })))),
            h('tbody', {}, w.endpoints.map((e) => h('tr', { 'data-testid': 'webhook-row', 'data-id': e.id, 'data-health': health(e) },
              h('td', { text: e.tenant }),
              h('td', { class: 'mono', text: shortId(e.id) }),
              h('td', { class: 'mono', text: e.url }),
              h('td', { text: e.events.join(', ') }),
              h('td', { title: e.disabled_reason || (e.failing_since ? `failing since ${utc(e.failing_since)} UTC` : '') },
                h('span', { class: `badge health-${health(e)}`, text: health(e) }),
                e.disabled_reason ? h('div', { class: 'muted', text: e.disabled_reason }) : null),
              h('td', { class: 'num', text: fmt(e.pending) }),
              h('td', { class: 'num', text: fmt(e.delivered) }),
              h('td', { class: 'num', text: fmt(e.failed) }),
              h('td', { class: 'muted', text: e.last_error || '' }))))));
      },
    };
  }

  function jobView(id) {
    const root = h('section', { class: 'panel', 'data-testid': 'panel-job' });
    const message = h('p', { class: 'message', 'data-testid': 'job-message', 'aria-live': 'polite' });
    replace(main, root);
    const pre = (v, testid) => h('pre', { class: 'json', 'data-testid': testid, text: v === null || v === undefined ? '–' : JSON.stringify(v, null, 2) });
    let acting = false;
    async function act(kind, confirmText, body) {
      if (acting || !window.confirm(confirmText)) return;
      acting = true;
      try {
        const r = await change(`/ui/api/jobs/${id}/${kind}`, body);
        message.textContent = kind === 'retry' ? `Retried: the job is ${r.job.state} again, due ${utc(r.job.release_at)} UTC.` : `Cancelled.`;
        message.classList.remove('error');
      } catch (e) {
        message.textContent = `${kind} refused: ${e.message}`;
        message.classList.add('error');
      } finally {
        acting = false;
      }
      await refreshNow();
    }
    return {
      async refresh() {
        const p = await api(`/ui/api/jobs/${id}`);
        const j = p.job;
        const created = new Date(j.created_at);
        const since = (at) => {
          const secs = Math.round((new Date(at) - created) / 1000);
          if (secs === 0) return '';
          const a = Math.abs(secs);
          const txt = a < 120 ? `${a} s` : a < 7200 ? `${Math.round(a / 60)} min` : `${(a / 3600).toFixed(1)} h`;
          return secs < 0 ? `−${txt}` : `+${txt}`;
        };
        const nowBox = h('input', { type: 'checkbox', 'data-testid': 'retry-now' });
        const actions = h('div', { class: 'actions' },
          p.can_retry ? [
            h('button', { type: 'button', 'data-testid': 'retry', text: 'Retry', onclick: () => act('retry',
              `Retry job ${j.id}? It goes back to held with fresh attempts and runs ${nowBox.checked || j.priority === 'normal' ? 'at once' : `in its next off-peak window (${j.timezone})`}.`,
              { now: nowBox.checked }) }),
            h('label', { class: 'inline' }, nowBox, j.priority === 'normal' ? ' at once (normal priority always is)' : ' release at once instead of in the next window')] : null,
          p.can_cancel ? h('button', { type: 'button', class: 'danger', 'data-testid': 'cancel', text: 'Cancel job',
            onclick: () => act('cancel', `Cancel job ${j.id}? It will not run.`) }) : null,
          !p.can_retry && !p.can_cancel ? h('span', { class: 'muted', text: `A ${j.state} job can be neither retried nor cancelled.` }) : null);
        replace(root,
          h('p', {}, h('a', { href: '#/jobs', text: '← jobs' })),
          h('h1', {}, 'Job ', h('span', { class: 'mono', 'data-testid': 'job-id', text: j.id }), ' ', stateBadge(j.state, 'job-state')),
          actions,
          message,
          h('div', { class: 'grid2' },
            h('div', { class: 'card' },
              h('h2', { text: 'Details' }),
              h('dl', { class: 'facts' }, [
                ['tenant', p.tenant], ['model', j.model + (j.use_case ? ` (use case ${j.use_case})` : '')], ['priority', j.priority],
                ['timezone', j.timezone], ['user', j.user_id || '–'],
                ['attempts', `${j.attempts} of ${j.max_attempts}`, 'job-attempts'],
                ['credits', j.credits === null ? '–' : `${fmt(j.credits)}${j.cache_hit ? ' (cache hit)' : ''}`, 'job-credits'],
                ['window closes', j.window_closes_at ? `${utc(j.window_closes_at)} UTC` : '–'],
                ['batch', p.batch ? `${p.batch.id} (${p.batch.job_count} jobs${p.batch.republished ? `, republished ${p.batch.republished}×` : ''})` : '–'],
              ].map(([k, v, testid]) => [h('dt', { text: k }), h('dd', { text: v, 'data-testid': testid })]))),
            h('div', { class: 'card' },
              h('h2', { text: 'Timeline (UTC)' }),
              h('ol', { class: 'timeline', 'data-testid': 'job-timeline' }, p.timeline.map((e) => h('li', { 'data-event': e.event },
                h('span', { class: 'event', text: e.event }), h('span', { class: 'mono', text: utc(e.at) }), h('span', { class: 'muted', text: since(e.at) })))))),
          h('h2', { text: 'Error' }), pre(j.error, 'job-error'),
          h('h2', { text: 'Input' }), pre(j.input, 'job-input'),
          h('h2', { text: 'Result' }), pre(j.result, 'job-result'),
          j.metadata ? [h('h2', { text: 'Metadata' }), pre(j.metadata, 'job-metadata')] : null);
      },
    };
  }

  // ------------------------------------------------------------ routing and polling

  function route() {
    const hash = window.location.hash.replace(/^#\/?/, '');
    const [path, query] = hash.split('?');
    const params = new URLSearchParams(query || '');
    const parts = path.split('/').filter(Boolean);
    const tab = parts[0] || 'tonight';
    for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.tab === tab);
    generation += 1;
    if (pendingTrail !== null) { history.replaceState({ trail: pendingTrail }, ''); pendingTrail = null; }
    if (tab === 'jobs' && parts[1]) view = jobView(parts[1]);
    else if (tab === 'jobs') view = jobsView(new URLSearchParams([...params].filter(([k]) => JOB_FILTERS.includes(k))));
    else if (tab === 'now') view = nowView();
    else if (tab === 'spend') view = spendView();
    else if (tab === 'webhooks') view = webhooksView();
    else view = tonightView();
    refreshNow();
  }

  async function refreshNow() {
    const mine = generation;
    const v = view;
    busy = true;
    try {
      await v.refresh();
      if (mine === generation) {
        setStatus(`updated ${utc(new Date().toISOString())} UTC`, false);
        document.body.dataset.loaded = String(mine); // the e2e test waits for this
      }
    } catch (e) {
      if (mine === generation) setStatus(`update failed: ${e.message}`, true);
    } finally {
      busy = false;
    }
  }

  function tick() {
    // Nothing to do while hidden, while a request is out, or while the
    // operator is typing in a filter.
    if (document.visibilityState !== 'visible' || busy) return;
    const active = document.activeElement;
    if (active && ['INPUT', 'SELECT'].includes(active.tagName)) return;
    refreshNow();
  }

  async function start() {
    try {
      meta = await api('/ui/api/meta');
    } catch (e) {
      setStatus(`could not load: ${e.message}`, true);
      return;
    }
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', tick);
    timer = setInterval(tick, meta.poll_ms);
    route();
  }

  start();
  void timer;
})();
