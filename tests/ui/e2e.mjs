// The dashboard in headless Chromium, against a running offpeak with real
// data (started and seeded by tests/tests/api/ui_browser.rs, which runs this
// script and fails if it fails).
//
// It logs in through the form, loads each panel, checks every number it
// shows against the tenant API (/v1/jobs, /v1/usage) and the dashboard's
// own JSON, saves a screenshot of the Tonight chart, retries a dead job
// (accepting the confirmation) and waits to see it succeed, and cancels a
// held job (dismissing the confirmation once first). It also checks that
// the page made no request to any other origin and threw no error.
//
// Environment: UI_BASE (the scheduler's URL), OPERATOR_TOKEN, TENANT_KEYS
// (JSON array of tenant API keys), SCREENSHOT (PNG path), CHROMIUM
// (default /usr/bin/chromium), optionally SHOTS_DIR (a full-page PNG of each
// panel goes there, for people to look at). Prints `RETRIED <id>` and
// `CANCELLED <id>`.

import { chromium } from 'playwright-core';

const BASE = need('UI_BASE');
const TOKEN = need('OPERATOR_TOKEN');
const KEYS = JSON.parse(need('TENANT_KEYS'));
const SCREENSHOT = need('SCREENSHOT');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS_DIR = process.env.SHOTS_DIR || '';
const STATES = ['held', 'queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled'];
const started = Date.now();
const problems = []; // page errors, console errors, requests to other origins

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}
const log = (...a) => console.log(`[e2e +${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log('ok:', what);
}
function same(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(a === e, a === e ? `${what}: ${a.length > 160 ? `${a.slice(0, 157)}...` : a}` : `${what}: ${a} != ${e}`);
}

async function getJson(path, bearer) {
  const r = await fetch(BASE + path, { headers: { Authorization: `Bearer ${bearer}`, Accept: 'application/json' } });
  const body = await r.json();
  if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(body)}`);
  return body;
}
const ui = (path) => getJson(path, TOKEN);

// Every tenant's jobs (in `state`), through each tenant's own API.
async function tenantJobs(state) {
  const all = [];
  for (const key of KEYS) {
    let cursor = null;
    do {
      const q = new URLSearchParams({ limit: '1000' });
      if (state) q.set('state', state);
      if (cursor) q.set('cursor', cursor);
      const page = await getJson(`/v1/jobs?${q}`, key);
      all.push(...page.jobs);
      cursor = page.next_cursor;
    } while (cursor);
  }
  return all;
}

// The job as its tenant sees it (whichever tenant owns it).
async function tenantJob(id) {
  for (const key of KEYS) {
    const r = await fetch(`${BASE}/v1/jobs/${id}`, { headers: { Authorization: `Bearer ${key}` } });
    if (r.status === 200) return r.json();
  }
  throw new Error(`no tenant owns job ${id}`);
}

const hourOf = (d) => { const h = new Date(d); h.setUTCMinutes(0, 0, 0); return h; };
const fmt = (n) => Number(n).toLocaleString('en-US');

async function value(page, testid) {
  const el = page.locator(`[data-testid="${testid}"]`).first();
  await el.waitFor();
  return el.getAttribute('data-value');
}

// A card's exact number, and its text as shown.
async function cardNumber(page, testid) {
  const v = Number(await value(page, testid));
  const shown = (await page.locator(`[data-testid="${testid}"] .value`).first().textContent()).trim();
  check(shown === fmt(v), `${testid} shows ${shown}, its value ${v} formatted`);
  return v;
}

async function shot(page, name) {
  if (SHOTS_DIR) await page.screenshot({ path: `${SHOTS_DIR}/ui-${name}.png`, fullPage: true });
}

async function openTab(page, tab, readySelector) {
  await page.click(`#tabs a[data-tab="${tab}"]`);
  await page.locator(readySelector).first().waitFor();
  log(`--- ${tab}`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  log('chromium', browser.version());
  try {
    await run(browser);
  } finally {
    await browser.close();
  }
}

async function run(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(BASE) && !u.startsWith('data:')) problems.push(`request to another origin: ${u}`);
  });

  // ---- log in
  await page.goto(`${BASE}/ui/`);
  check(page.url().endsWith('/ui/login'), 'without a session /ui/ leads to the login form');
  await page.fill('#token', 'certainly-not-the-token');
  await page.click('#login-submit');
  check((await page.textContent('#login-error')).includes('not the operator token'), 'a wrong token is refused on the form');
  await page.fill('#token', TOKEN);
  await Promise.all([page.waitForURL(`${BASE}/ui/`), page.click('#login-submit')]);
  const cookie = (await context.cookies()).find((c) => c.name === 'offpeak_ui');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/ui', 'the session cookie is HttpOnly, SameSite=Strict, Path=/ui');
  // The wrong token's 401 page is logged by Chromium as a failed load; from
  // here on, nothing should fail.
  problems.length = 0;

  // ---- Tonight (the default panel)
  await page.locator('[data-testid="tonight-chart-svg"]').waitFor();
  log('--- tonight');
  const tonight = await ui('/ui/api/tonight');
  const until = new Date(tonight.until);
  const now = new Date(tonight.now);
  const held = await tenantJobs('held');
  const expectedHours = new Map();
  let dueNow = 0;
  for (const j of held) {
    const release = new Date(j.release_at);
    if (release <= now) dueNow += 1;
    if (release >= until) continue;
    const key = hourOf(release > now ? release : now).toISOString();
    expectedHours.set(key, (expectedHours.get(key) || 0) + 1);
  }
  const expectedTotal = [...expectedHours.values()].reduce((a, b) => a + b, 0);
  check(expectedTotal > 0, `the tenant API has ${held.length} held jobs, ${expectedTotal} due within 24 h`);
  same(await cardNumber(page, 'tonight-total'), expectedTotal, 'Tonight total = held jobs due within 24 h (tenant API)');
  same(await cardNumber(page, 'tonight-due-now'), dueNow, 'due now = held jobs past their release_at (tenant API)');
  const bars = await page.locator('svg[data-testid="tonight-chart-svg"] g.bar').evaluateAll((gs) => gs.map((g) => [g.getAttribute('data-key'), Number(g.getAttribute('data-total'))]));
  same(bars.length, 24, 'the chart has 24 hourly bars');
  for (const [hour, total] of bars) {
    const iso = new Date(hour).toISOString();
    check(total === (expectedHours.get(iso) || 0), `bar ${iso.slice(11, 16)} UTC shows ${total} = ${expectedHours.get(iso) || 0} from the tenant API`);
  }
  // Each bar's model segments add up, and match the JSON.
  const segments = await page.locator('svg[data-testid="tonight-chart-svg"] g.bar rect').evaluateAll((rs) => rs.map((r) => [r.parentNode.getAttribute('data-key'), r.getAttribute('data-series'), Number(r.getAttribute('data-value'))]));
  for (const [hour, model, n] of segments) {
    const bucket = tonight.hours.find((h) => h.hour === hour);
    check(bucket && bucket.by_model[model] === n, `${hour.slice(11, 16)} ${model}: ${n} as /ui/api/tonight says`);
  }
  check(await page.locator('[data-testid="tonight-chart-svg-now"]').count() === 1, 'the current time is marked on the chart');
  await page.locator('#tonight-chart').screenshot({ path: SCREENSHOT });
  await shot(page, 'tonight-page');
  log('screenshot saved to', SCREENSHOT);

  // ---- Now
  await openTab(page, 'now', '[data-testid="state-succeeded"]');
  for (const st of STATES) {
    const n = (await tenantJobs(st)).length;
    same(await cardNumber(page, `state-${st}`), n, `${st} jobs = the tenant API's count`);
  }
  const nowJson = await ui('/ui/api/now');
  same(await cardNumber(page, 'queue-ready'), nowJson.queue.ready, 'queue depth = /ui/api/now');
  same(await cardNumber(page, 'queue-consumers'), 1, 'one worker is connected');
  const since = new Date(nowJson.throughput.from);
  const finished = (await tenantJobs()).filter((j) => ['succeeded', 'failed', 'dead'].includes(j.state) && new Date(j.finished_at) >= since);
  same(await cardNumber(page, 'throughput-finished'), finished.length, 'finished in the last hour = the tenant API\'s jobs finished since then');
  const attempts = finished.reduce((a, j) => a + j.attempts, 0);
  const failedAttempts = finished.reduce((a, j) => a + (j.state === 'dead' ? j.attempts : Math.max(0, j.attempts - 1)), 0);
  const er = page.locator('[data-testid="error-rate-attempts"]');
  same([Number(await er.getAttribute('data-failed')), Number(await er.getAttribute('data-attempts'))], [failedAttempts, attempts],
    'provider error rate: failed attempts and attempts from the tenant API');
  const rateShown = (await page.locator('[data-testid="error-rate"] .value').textContent()).trim();
  same(rateShown, `${((failedAttempts / attempts) * 100).toFixed(1)}%`, 'error rate shown');
  check(await page.locator('[data-testid="throughput-sparkline"] polyline').count() === 1, 'the throughput sparkline is drawn');
  await shot(page, 'now');

  // ---- Spend
  await openTab(page, 'spend', '[data-testid="spend-credits"]');
  const spend = await ui('/ui/api/spend');
  const totals = { requests: 0, credits: 0, list_credits: 0, saved_offpeak: 0, saved_cache: 0, saved_semantic: 0, saved_preview: 0 };
  const perModel = {};
  for (const key of KEYS) {
    const u = await getJson(`/v1/usage?group_by=model&start=${spend.from}&end=${spend.until}`, key);
    for (const [model, g] of Object.entries(u.groups)) {
      perModel[model] = perModel[model] || { requests: 0, credits: 0, list_credits: 0, saved_offpeak: 0, saved_cache: 0, saved_semantic: 0 };
      // The per-model table shows every sum but the preview's (a card only).
      for (const k of Object.keys(totals)) { totals[k] += g[k]; if (k in perModel[model]) perModel[model][k] += g[k]; }
    }
  }
  check(totals.credits > 0 && totals.saved_offpeak > 0, `the usage API reports spend (${totals.credits}) and off-peak savings (${totals.saved_offpeak})`);
  same(await cardNumber(page, 'spend-credits'), totals.credits, 'credits = sum of /v1/usage over tenants');
  same(await cardNumber(page, 'spend-list'), totals.list_credits, 'list credits = /v1/usage');
  same(await cardNumber(page, 'spend-saved-offpeak'), totals.saved_offpeak, 'saved by off-peak = /v1/usage');
  same(await cardNumber(page, 'spend-saved-cache'), totals.saved_cache, 'saved by the cache = /v1/usage');
  same(await cardNumber(page, 'spend-saved-semantic'), totals.saved_semantic, 'saved by the semantic cache = /v1/usage');
  same(await cardNumber(page, 'spend-saved-preview'), totals.saved_preview, 'saved by preview first = /v1/usage');
  same(await cardNumber(page, 'spend-requests'), totals.requests, 'requests = /v1/usage');
  const rows = await page.locator('[data-testid="spend-row"]').evaluateAll((trs) => trs.map((tr) => [tr.getAttribute('data-model'),
    Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map((td) => [td.getAttribute('data-field'), Number(td.getAttribute('data-value'))]))]));
  same(Object.fromEntries(rows), Object.fromEntries(Object.keys(perModel).sort().map((m) => [m, perModel[m]])), 'per-model rows = /v1/usage per model');
  check(await page.locator('svg[data-testid="spend-chart-svg"] g.bar').count() === 30, 'the spend chart has 30 days');
  await shot(page, 'spend');

  // ---- Jobs: dead ones, then retry one
  await openTab(page, 'jobs', '[data-testid="jobs-filters"]');
  await page.selectOption('[data-testid="filter-state"]', 'dead');
  await page.click('[data-testid="jobs-search"]');
  await page.waitForFunction(() => window.location.hash.includes('state=dead'));
  await page.locator('[data-testid="jobs-count"]').waitFor();
  const dead = await tenantJobs('dead');
  check(dead.length >= 2, `the tenant API has ${dead.length} dead jobs`);
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="job-row"]').length === n, dead.length);
  const rowStates = await page.locator('[data-testid="job-row"]').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-state')));
  check(rowStates.every((s) => s === 'dead'), `the list shows the ${dead.length} dead jobs only`);
  await shot(page, 'jobs');
  same((await page.locator('[data-testid="job-row"]').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-id')))).sort(), dead.map((j) => j.id).sort(), 'dead job ids = the tenant API\'s');

  await page.locator('[data-testid="job-link"]').first().click();
  await page.locator('[data-testid="job-state"]').waitFor();
  const id = (await page.textContent('[data-testid="job-id"]')).trim();
  const before = await tenantJob(id);
  same((await page.textContent('[data-testid="job-state"]')).trim(), 'dead', `job ${id} is shown dead`);
  same((await page.textContent('[data-testid="job-attempts"]')).trim(), `${before.attempts} of ${before.max_attempts}`, 'attempts shown = the tenant API');
  same(JSON.parse(await page.textContent('[data-testid="job-error"]')), before.error, 'the error shown = the tenant API\'s');
  same(JSON.parse(await page.textContent('[data-testid="job-input"]')), before.input, 'the input shown = the tenant API\'s');
  const events = await page.locator('[data-testid="job-timeline"] li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-event')));
  check(['created', 'queued', 'started', 'finished'].every((e) => events.includes(e)), `the timeline shows ${events.join(', ')}`);
  await shot(page, 'job-dead');

  page.once('dialog', (d) => { log('confirm:', d.message()); d.accept(); });
  await page.click('[data-testid="retry"]');
  await page.waitForFunction(() => /Retried/.test(document.querySelector('[data-testid="job-message"]')?.textContent || ''));
  log('retry accepted; waiting for the job to run (the page polls)');
  await page.waitForFunction(() => document.querySelector('[data-testid="job-state"]')?.textContent === 'succeeded', null, { timeout: 30000 });
  const after = await tenantJob(id);
  same(after.state, 'succeeded', 'the tenant API says the retried job succeeded');
  check(after.result !== null && after.attempts === 1, 'it has a result, after one fresh attempt');
  await shot(page, 'job-retried');
  console.log(`RETRIED ${id}`);

  // ---- Jobs: a held job of the second tenant, cancelled after one dismissed confirmation
  const meta = await ui('/ui/api/meta');
  const tenant = meta.tenants.find((t) => t.name === 'globex');
  await page.goto(`${BASE}/ui/#/jobs?state=held&tenant=${tenant.id}`);
  await page.locator('[data-testid="job-row"]').first().waitFor();
  const listed = await page.locator('[data-testid="job-row"]').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-id')));
  const globexKey = KEYS[1];
  const globexApi = [];
  for (let cursor = null, first = true; first || cursor; first = false) {
    const p = await getJson(`/v1/jobs?state=held&limit=1000${cursor ? `&cursor=${cursor}` : ''}`, globexKey);
    globexApi.push(...p.jobs.map((j) => j.id));
    cursor = p.next_cursor;
  }
  same(listed, globexApi.slice(0, 50), 'the tenant filter lists the second tenant\'s held jobs, newest first, 50 a page, as its API does');
  if (globexApi.length > 50) {
    await page.click('[data-testid="jobs-older"]');
    await page.waitForFunction((first) => document.querySelector('[data-testid="job-row"]')?.getAttribute('data-id') === first, globexApi[50]);
    const older = await page.locator('[data-testid="job-row"]').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-id')));
    same(older, globexApi.slice(50, 100), 'the older page continues where the first ended');
    await page.click('[data-testid="jobs-newer"]');
    await page.waitForFunction((first) => document.querySelector('[data-testid="job-row"]')?.getAttribute('data-id') === first, globexApi[0]);
    log('ok: and the newer link leads back to the first page');
  }
  await page.locator('[data-testid="job-link"]').first().click();
  await page.locator('[data-testid="cancel"]').waitFor();
  const heldId = (await page.textContent('[data-testid="job-id"]')).trim();
  page.once('dialog', (d) => d.dismiss());
  await page.click('[data-testid="cancel"]');
  await page.waitForTimeout(300);
  same((await tenantJob(heldId)).state, 'held', 'dismissing the confirmation changes nothing');
  page.once('dialog', (d) => d.accept());
  await page.click('[data-testid="cancel"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="job-state"]')?.textContent === 'cancelled');
  same((await tenantJob(heldId)).state, 'cancelled', 'the tenant API says the job is cancelled');
  console.log(`CANCELLED ${heldId}`);

  check(problems.length === 0, `no page errors and no request to another origin${problems.length ? `: ${problems.join('; ')}` : ''}`);
  log('all checks passed');
}

main().catch((e) => {
  console.error(`[e2e] FAILED: ${e.stack || e}`);
  for (const p of problems) console.error(`[e2e] seen in the page: ${p}`);
  process.exit(1);
});
