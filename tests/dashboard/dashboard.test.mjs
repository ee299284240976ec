// The dashboard in a real headless browser (Debian `chromium` driven by npm
// `playwright-core`, which downloads no browser), against a real
// `edgeswarm demo --dashboard 127.0.0.1:PORT` process built from this workspace.
//
// Asserts: the page renders; its figures change while the swarm runs; a region
// partition made with `edgeswarm regions partition` shows on the page within 2 s; the
// search box returns hits; no console errors. With DASHBOARD_SCREENSHOT=path it saves a
// screenshot of the running page there (docs/dashboard.png comes from such a run).
//
// node tests/dashboard/dashboard.test.mjs   (env: EDGESWARM_BIN, CHROMIUM, PLAYWRIGHT_CORE_DIR)
import { spawn, execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import assert from 'node:assert/strict';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.EDGESWARM_BIN || join(ROOT, 'target/debug/edgeswarm');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PW_DIR = process.env.PLAYWRIGHT_CORE_DIR || join(ROOT, '.ci/tools/node_modules/playwright-core');
const { chromium } = createRequire(import.meta.url)(PW_DIR);
const REGION = 'eu-central-1';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function log(...a) { console.log('[dashboard test]', ...a); }

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
    s.on('error', rej);
  });
}

function run(args, cwd) {
  return new Promise((res, rej) => {
    execFile(BIN, args, { cwd, timeout: 30000 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`edgeswarm ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else res(stdout);
    });
  });
}

async function waitHttp(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { const r = await fetch(url); if (r.ok) return; } catch { /* not up yet */ }
    await sleep(200);
  }
  throw new Error(`${url} did not answer within ${ms} ms`);
}

const failures = [];
let passed = 0;
async function step(name, f) {
  const t = Date.now();
  try { await f(); passed += 1; log(`ok   ${name} (${Date.now() - t} ms)`); } catch (e) { failures.push(name); log(`FAIL ${name}: ${e.stack || e}`); }
}

const work = mkdtempSync(join(tmpdir(), 'edgeswarm-dash-'));
const profile = mkdtempSync(join(tmpdir(), 'edgeswarm-chromium-'));
const db = join(work, 'home.db');
const port = await freePort();
const base = `http://127.0.0.1:${port}/`;
let demo, browser;
try {
  demo = spawn(BIN, ['demo', '--db', db, '--agents', '24', '--seconds', '60', '--no-progress', '--embedder', 'hash', '--dashboard', `127.0.0.1:${port}`], {
    cwd: work, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'error' },
  });
  let demoErr = '';
  demo.stderr.on('data', (d) => { demoErr += d; });
  demo.on('exit', (code) => { if (code) log(`demo exited with ${code}: ${demoErr.slice(-2000)}`); });
  await waitHttp(base + 'api/snapshot', 60000);

  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 1800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const page = browser.pages()[0] || (await browser.newPage());
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('data:')) external.push(r.url()); });

  await step('the page renders from a snapshot', async () => {
    await page.goto(base, { waitUntil: 'load' });
    assert.equal(await page.title(), 'edgeswarm dashboard');
    await page.waitForFunction(() => document.querySelector('#conn').textContent === 'live', null, { timeout: 10000 });
    await page.waitForFunction(() => document.querySelectorAll('#regions tbody tr').length === 4, null, { timeout: 10000 });
    await page.waitForFunction(() => document.querySelectorAll('#agents tbody tr').length === 24, null, { timeout: 15000 });
    const kpi = await page.textContent('#kpi-agents .v');
    assert.match(kpi, /^\d+ \/ 24$/);
    // The demo runs with --embedder hash: the search panel names it.
    assert.match(await page.textContent('#s-emb'), /hash/);
    for (const id of ['throughput', 'latency', 'queued', 'lag']) {
      const w = await page.$eval('#ch-' + id, (c) => c.width);
      assert.ok(w > 100, `chart ${id} is drawn (width ${w})`);
    }
  });

  await step('figures change while the swarm runs', async () => {
    const read = () => page.evaluate(() => ({
      ops: Number(document.querySelector('#w-ops').textContent.split(' ')[0].replace(/,/g, '')),
      tasks: Number(document.querySelector('#kpi-tasks .s').textContent.split(' ')[0].replace(/,/g, '')),
      updated: document.querySelector('#updated').textContent,
    }));
    const a = await read();
    await sleep(2500);
    const b = await read();
    assert.ok(b.ops > a.ops, `writes committed grew: ${a.ops} -> ${b.ops}`);
    assert.ok(b.tasks > a.tasks, `tasks done grew: ${a.tasks} -> ${b.tasks}`);
    assert.notEqual(a.updated, b.updated);
    const points = await page.evaluate(() => document.querySelector('#ch-throughput') !== null);
    assert.ok(points);
  });

  await step(`a partition of ${REGION} shows on the page within 2 s`, async () => {
    const sel = `#regions tbody tr[data-region="${REGION}"] td.status`;
    assert.notEqual(await page.textContent(sel), 'partitioned');
    const t0 = Date.now();
    await run(['regions', '--db', db, 'partition', REGION], work);
    const t1 = Date.now();
    await page.waitForFunction((s) => document.querySelector(s).textContent === 'partitioned', sel, { timeout: 2000 });
    const t2 = Date.now();
    log(`partition visible ${t2 - t1} ms after the command returned (${t2 - t0} ms after it started)`);
    assert.match(await page.textContent('#kpi-regions .s'), new RegExp('partitioned: ' + REGION));
  });

  await step('the search box returns hits', async () => {
    await page.fill('#search-q', 'batched writes regional caching');
    await page.click('#search-form button');
    await page.waitForFunction(() => document.querySelectorAll('#search-results li').length > 0, null, { timeout: 10000 });
    const first = await page.textContent('#search-results li');
    assert.match(first, /edge-computing/);
    assert.match(await page.textContent('#search-info'), /\d+ hits?/);
  });

  if (process.env.DASHBOARD_SCREENSHOT) {
    await sleep(20000); // more chart points
    await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
    log(`screenshot saved to ${process.env.DASHBOARD_SCREENSHOT}`);
  }

  await step('healing shows too', async () => {
    await run(['regions', '--db', db, 'heal', REGION], work);
    const sel = `#regions tbody tr[data-region="${REGION}"] td.status`;
    await page.waitForFunction((s) => document.querySelector(s).textContent !== 'partitioned', sel, { timeout: 3000 });
  });

  await step('no console errors and no request leaves the page\'s origin', async () => {
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(external, []);
  });
} catch (e) {
  failures.push('setup');
  log(`FAIL setup: ${e.stack || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (demo && demo.exitCode === null) demo.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
}
if (failures.length) {
  log(`failed: ${failures.join('; ')}`);
}
// The plain closing line CI runners read.
console.log(`dashboard: ${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
