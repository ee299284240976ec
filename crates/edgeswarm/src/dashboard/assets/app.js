// edgeswarm dashboard: a snapshot first, then JSON Merge Patch deltas over server-sent
// events (EventSource resumes with Last-Event-ID by itself). Charts are plain canvas.
// Everything from the swarm is inserted as text, never as HTML.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  const withToken = (u) => (token ? u + (u.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : u);
  const $ = (s) => document.querySelector(s);
  const WINDOW_MS = 5 * 60 * 1000;
  const PALETTE = ['#4ea1ff', '#3ecf8e', '#f5b942', '#c77dff', '#f2545b', '#5ad1e6', '#ff8c5a', '#a3d94f'];

  let state = null;
  let history = [];
  let es = null;
  let pending = false;
  let sortKey = 'id';
  let sortDir = 1;

  // ---- helpers -------------------------------------------------------------------
  function mergeApply(target, patch) {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
    if (target === null || typeof target !== 'object' || Array.isArray(target)) target = {};
    for (const k of Object.keys(patch)) {
      const v = patch[k];
      if (v === null) delete target[k];
      else target[k] = mergeApply(target[k], v);
    }
    return target;
  }
  function fmt(v, digits) {
    if (v === undefined || v === null || Number.isNaN(v)) return 'n/a';
    if (typeof v !== 'number') return String(v);
    const d = digits === undefined ? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) : digits;
    return v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: 0 });
  }
  function ms(v) { return v === undefined ? 'n/a' : fmt(v) + ' ms'; }
  function setText(sel, text) { const e = typeof sel === 'string' ? $(sel) : sel; if (e && e.textContent !== text) e.textContent = text; }
  function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
  function pill(e, status) {
    const s = String(status || 'unknown');
    e.textContent = s;
    e.className = 'pill st-' + s.replace(/\s+/g, '-');
  }
  function banner(text, bad) {
    const b = $('#banner');
    if (!text) { b.hidden = true; return; }
    b.textContent = text;
    b.className = 'banner' + (bad ? ' bad' : '');
    b.hidden = false;
  }
  function setConn(s) { pill($('#conn'), s); }
  function dur(s) {
    if (s === undefined) return 'n/a';
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + x + 's';
  }

  // ---- feed ----------------------------------------------------------------------
  function connect() {
    if (es) es.close();
    setConn('connecting');
    es = new EventSource(withToken('/events'));
    es.addEventListener('open', () => setConn('live'));
    es.addEventListener('snapshot', (e) => {
      const d = JSON.parse(e.data);
      state = d.state;
      history = d.history || [];
      banner('');
      setConn('live');
      schedule();
    });
    es.addEventListener('delta', (e) => {
      if (!state) return;
      const d = JSON.parse(e.data);
      state = mergeApply(state, d.patch);
      if (d.point) {
        history.push(d.point);
        const cut = d.point.t - WINDOW_MS;
        while (history.length && history[0].t < cut) history.shift();
      }
      setConn('live');
      schedule();
    });
    es.addEventListener('dropped', (e) => {
      const d = JSON.parse(e.data);
      banner('Resynchronising: ' + d.message);
      setConn('resyncing');
      es.close();
      setTimeout(connect, 1000);
    });
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) {
        setConn('closed');
        diagnose();
      } else {
        setConn('reconnecting');
        banner('Connection to the swarm lost; reconnecting (the page resumes where it left off).');
      }
    });
  }
  function diagnose() {
    fetch(withToken('/api/snapshot'), { cache: 'no-store' })
      .then((r) => r.json().then((j) => ({ status: r.status, body: j })))
      .then(({ status, body }) => {
        if (status === 401 || status === 403) banner(body.message || 'access refused', true);
        else banner('The live feed closed (' + status + '); retrying in 3 s.');
        if (status !== 401 && status !== 403) setTimeout(connect, 3000);
      })
      .catch(() => { banner('The dashboard server is not reachable; retrying in 3 s.', true); setTimeout(connect, 3000); });
  }
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  }

  // ---- render --------------------------------------------------------------------
  function render() {
    if (!state) return;
    setText('#node', state.node || '–');
    setText('#db', state.db || '–');
    $('#db').title = state.db || '';
    setText('#uptime', dur(state.uptime_s));
    pill($('#swarm-state'), state.swarm);
    setText('#clients', fmt((state.dashboard || {}).clients, 0));
    setText('#updated', state.ts ? new Date(state.ts).toLocaleTimeString() : '–');
    renderKpis();
    renderRegions();
    renderWriter();
    renderSearch();
    renderSeed();
    renderAgents();
    renderLog();
    renderCharts();
  }

  function kpi(id, v, s) { setText('#' + id + ' .v', v); setText('#' + id + ' .s', s); }

  function renderKpis() {
    const t = state.agent_totals || {};
    const w = state.writer || {};
    const s = state.search || {};
    const regions = Object.values(state.regions || {});
    kpi('kpi-agents', fmt(t.running, 0) + ' / ' + fmt(t.total, 0),
      fmt(t.restarting, 0) + ' restarting · ' + fmt(t.stopped, 0) + ' stopped · ' + fmt(t.restarts, 0) + ' restarts');
    kpi('kpi-tasks', fmt(t.tasks_per_s), fmt(t.tasks_done, 0) + ' done · ' + fmt(t.tasks_failed, 0) + ' failed');
    kpi('kpi-writes', fmt(w.acked_per_s, 0), 'queue ' + fmt(w.queue_depth, 0) + ' / ' + fmt(w.queue_capacity, 0));
    kpi('kpi-commit', ms(w.commit_p99_ms), 'p50 ' + ms(w.commit_p50_ms) + ' · batch ' + fmt(w.batch_mean, 1));
    kpi('kpi-search', fmt(s.qps), 'p99 ' + ms(s.p99_ms));
    const healthy = regions.filter((r) => r.status === 'healthy').length;
    const parts = Object.entries(state.regions || {}).filter(([, r]) => r.partitioned).map(([n]) => n);
    kpi('kpi-regions', regions.length ? healthy + ' / ' + regions.length : 'none',
      parts.length ? 'partitioned: ' + parts.join(', ') : regions.length ? 'no partitions' : 'local only');
    $('#kpi-regions').classList.toggle('alert', parts.length > 0);
  }

  function cell(tr, text, cls) { const td = el('td', cls, text); tr.appendChild(td); return td; }

  function renderRegions() {
    const tb = $('#regions tbody');
    const names = Object.keys(state.regions || {}).sort();
    $('#regions-empty').hidden = names.length > 0;
    const rows = new Map([...tb.querySelectorAll('tr')].map((r) => [r.dataset.region, r]));
    for (const n of names) {
      const r = state.regions[n];
      let tr = rows.get(n);
      if (!tr) { tr = el('tr'); tr.dataset.region = n; tb.appendChild(tr); }
      rows.delete(n);
      tr.textContent = '';
      cell(tr, n);
      const st = cell(tr, '', 'status');
      const p = el('span'); pill(p, r.status); st.appendChild(p);
      if (r.partitioned === undefined && r.status !== 'partitioned') st.title = 'HTTP region: no partition switch';
      cell(tr, fmt(r.link_ms, 1), 'num');
      cell(tr, fmt(r.push_rtt_ms, 1), 'num');
      cell(tr, fmt(r.lag_p99_ms, 0), 'num');
      cell(tr, fmt(r.changes_queued, 0), 'num');
      cell(tr, fmt(r.conflicts, 0), 'num');
      const pk = cell(tr, r.parked_rows === undefined ? 'n/a' : fmt(r.parked_rows, 0), r.parked_rows === undefined ? 'na num' : 'num');
      if (r.parked_rows === undefined) pk.title = 'this runtime does not park rows: every change is retried until applied';
      cell(tr, fmt(r.push_rows_per_s, 0), 'num');
      cell(tr, fmt(r.pushed_rows, 0), 'num');
      cell(tr, fmt(r.errors, 0), 'num');
      cell(tr, r.last_error || '', 'err');
    }
    for (const tr of rows.values()) tr.remove();
  }

  function renderWriter() {
    const w = state.writer || {};
    setText('#w-queue', fmt(w.queue_depth, 0) + ' / ' + fmt(w.queue_capacity, 0));
    setText('#w-batch', fmt(w.batch_last, 0) + ' / ' + fmt(w.batch_mean, 1));
    setText('#w-commit', ms(w.commit_p50_ms) + ' / ' + ms(w.commit_p99_ms));
    setText('#w-ack', ms(w.ack_p99_ms));
    setText('#w-rate', fmt(w.acked_per_s, 0));
    setText('#w-ops', fmt(w.ops_total, 0) + ' in ' + fmt(w.batches_total, 0) + ' batches');
    setText('#w-fail', fmt(w.failed_batches, 0) + ' / ' + fmt(w.rejected, 0) + ' / ' + fmt(w.writer_restarts, 0));
    setText('#w-read', fmt(w.read_queue_depth, 0));
  }

  function renderSearch() {
    const s = state.search || {};
    setText('#s-qps', fmt(s.qps));
    setText('#s-lat', ms(s.p50_ms) + ' / ' + ms(s.p99_ms));
    setText('#s-total', fmt(s.total, 0));
    setText('#s-emb', (s.embedder || 'none (lexical only)') + (s.building ? ' · building ' + s.building : ''));
    let vec = 'n/a';
    if (s.vectors_complete === true) vec = 'complete';
    else if (s.vectors_complete === false) vec = 'incomplete: ' + fmt(s.vectors_missing, 0) + ' missing, ' + fmt(s.pending, 0) + ' pending';
    if (s.last_error) vec += ' · error: ' + s.last_error;
    setText('#s-vec', vec);
    setText('#s-mode', s.mode || 'n/a');
  }

  function table(sel, t) {
    const thead = $(sel + ' thead'), tbody = $(sel + ' tbody');
    const cols = (t && t.columns) || [];
    const rows = (t && t.rows) || [];
    thead.textContent = ''; tbody.textContent = '';
    const hr = el('tr'); cols.forEach((c) => hr.appendChild(el('th', null, c))); thead.appendChild(hr);
    for (const r of rows) {
      const tr = el('tr');
      r.forEach((v) => cell(tr, v === null ? '' : typeof v === 'number' ? fmt(v, 1) : String(v), typeof v === 'number' ? 'num' : ''));
      tbody.appendChild(tr);
    }
    return rows.length;
  }

  let seedKey = '';
  function renderSeed() {
    const seed = state.seed || {};
    const key = JSON.stringify(seed);
    if (key === seedKey) return;
    seedKey = key;
    const p = seed.performance_tests, r = seed.edge_replicas;
    setText('#seed-perf-sql', p ? p.query : '');
    setText('#seed-reg-sql', r ? r.query : '');
    $('#seed-perf-empty').hidden = table('#seed-perf', p) > 0;
    $('#seed-reg-empty').hidden = table('#seed-reg', r) > 0;
  }

  function renderAgents() {
    const t = state.agent_totals || {};
    const agents = Object.entries(state.agents || {}).map(([id, a]) => Object.assign({ id }, a));
    setText('#agents-count', (t.shown < t.total ? t.shown + ' of ' : '') + fmt(t.total, 0) + ' agents');
    agents.sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      if (typeof x === 'number' || typeof y === 'number') return ((x || 0) - (y || 0)) * sortDir;
      return String(x || '').localeCompare(String(y || '')) * sortDir;
    });
    const filter = $('#agent-filter').value.trim().toLowerCase();
    const tb = $('#agents tbody');
    const frag = document.createDocumentFragment();
    for (const a of agents) {
      const tr = el('tr');
      tr.dataset.agent = a.id;
      cell(tr, a.id);
      cell(tr, a.region);
      const st = cell(tr, ''); const p = el('span'); pill(p, a.status); st.appendChild(p);
      cell(tr, fmt(a.tasks_per_s, 1), 'num');
      cell(tr, fmt(a.tasks_ok, 0), 'num');
      cell(tr, fmt(a.tasks_failed, 0), 'num');
      cell(tr, fmt(a.restarts, 0), 'num');
      cell(tr, fmt(a.mailbox, 0), 'num');
      cell(tr, a.last_error || '', 'err');
      if (filter && ![a.id, a.region, a.status, a.last_error || ''].join(' ').toLowerCase().includes(filter)) tr.classList.add('hidden');
      frag.appendChild(tr);
    }
    tb.textContent = '';
    tb.appendChild(frag);
  }

  function renderLog() {
    const ul = $('#log');
    const lines = state.log || [];
    const key = lines.length ? lines[0].ts + lines[0].text + lines.length : '';
    if (ul.dataset.key === key) return;
    ul.dataset.key = key;
    ul.textContent = '';
    if (!lines.length) { ul.appendChild(el('li', 'empty', 'No events yet: restarts, crashes and region changes appear here.')); return; }
    for (const l of lines) {
      const li = el('li', l.level);
      li.appendChild(el('time', null, new Date(l.ts).toLocaleTimeString()));
      li.appendChild(document.createTextNode(l.text));
      ul.appendChild(li);
    }
  }

  // ---- charts --------------------------------------------------------------------
  function drawChart(id, series) {
    const c = document.getElementById('ch-' + id);
    const lg = document.getElementById('lg-' + id);
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight || 170;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const L = 48, R = 8, T = 8, B = 20;
    const now = history.length ? history[history.length - 1].t : Date.now();
    // The x axis spans what is there, from one minute up to five.
    const span = Math.min(WINDOW_MS, Math.max(60 * 1000, history.length ? now - history[0].t : 0));
    const t0 = now - span;
    let max = 0;
    for (const s of series) for (const [, v] of s.points) if (v > max) max = v;
    max = niceMax(max);
    g.strokeStyle = '#263241'; g.fillStyle = '#8797a8'; g.font = '11px system-ui, sans-serif'; g.lineWidth = 1;
    g.textAlign = 'right'; g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const y = T + (h - T - B) * (1 - i / 4);
      g.beginPath(); g.moveTo(L, y + 0.5); g.lineTo(w - R, y + 0.5); g.stroke();
      g.fillText(short(max * i / 4), L - 6, y);
    }
    g.textAlign = 'center'; g.textBaseline = 'top';
    for (let m = 0; m <= 5; m++) {
      const x = L + (w - L - R) * (m / 5);
      const ago = Math.round((span * (5 - m)) / 5 / 1000);
      g.fillText(m === 5 ? 'now' : ago >= 60 && ago % 60 === 0 ? '-' + ago / 60 + 'm' : '-' + ago + 's', x, h - B + 5);
    }
    const X = (t) => L + (w - L - R) * ((t - t0) / span);
    const Y = (v) => T + (h - T - B) * (1 - v / max);
    series.forEach((s, i) => {
      g.strokeStyle = s.color || PALETTE[i % PALETTE.length];
      g.lineWidth = 1.6;
      g.beginPath();
      let started = false;
      for (const [t, v] of s.points) {
        if (t < t0) continue;
        if (v === undefined || v === null) { started = false; continue; }
        if (!started) { g.moveTo(X(t), Y(v)); started = true; } else g.lineTo(X(t), Y(v));
      }
      g.stroke();
    });
    const key = series.map((s) => s.name).join('|');
    if (lg.dataset.key !== key) {
      lg.dataset.key = key;
      lg.textContent = '';
      series.forEach((s, i) => {
        const sp = el('span'); const sw = el('i'); sw.style.background = s.color || PALETTE[i % PALETTE.length];
        sp.appendChild(sw); sp.appendChild(document.createTextNode(s.name)); lg.appendChild(sp);
      });
    }
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v * 1.05 <= m * p) return m * p;
    return 10 * p;
  }
  function short(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + 'M';
    if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + 'k';
    return v >= 10 ? v.toFixed(0) : v.toFixed(v === 0 ? 0 : 1);
  }
  function pts(k) { return history.map((p) => [p.t, p[k]]); }
  function perRegion(k) {
    const names = new Set();
    history.forEach((p) => Object.keys(p[k] || {}).forEach((n) => names.add(n)));
    return [...names].sort().map((n) => ({ name: n, points: history.map((p) => [p.t, (p[k] || {})[n]]) }));
  }
  function renderCharts() {
    drawChart('throughput', [
      { name: 'acked writes/s', points: pts('writes_s') },
      { name: 'tasks/s', points: pts('tasks_s') },
      { name: 'search qps', points: pts('search_qps') },
    ]);
    drawChart('latency', [
      { name: 'commit p99', points: pts('commit_p99_ms') },
      { name: 'search p99', points: pts('search_p99_ms') },
    ]);
    drawChart('queued', perRegion('queued'));
    drawChart('lag', perRegion('lag_p99'));
  }

  // ---- search box ----------------------------------------------------------------
  function snippet(li, text) {
    // The server marks matched terms with [ and ]; show them highlighted, as text.
    const parts = String(text).split(/(\[[^\]]*\])/);
    for (const p of parts) {
      if (p.startsWith('[') && p.endsWith(']')) li.appendChild(el('mark', null, p.slice(1, -1)));
      else if (p) li.appendChild(document.createTextNode(p));
    }
  }
  $('#search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = $('#search-q').value.trim();
    const ol = $('#search-results');
    if (!q) { setText('#search-info', 'Type some words to search the knowledge base.'); return; }
    setText('#search-info', 'Searching…');
    fetch(withToken('/api/search?limit=10&q=' + encodeURIComponent(q)), { cache: 'no-store' })
      .then((r) => r.json().then((j) => ({ ok: r.ok, j })))
      .then(({ ok, j }) => {
        ol.textContent = '';
        if (!ok) { setText('#search-info', j.message || 'search failed'); return; }
        const hits = j.hits || [];
        setText('#search-info', hits.length + ' hit' + (hits.length === 1 ? '' : 's') + ' · ' + j.mode + ' · ' + fmt(j.took_ms) + ' ms' +
          (j.fallback_reason ? ' · ' + j.fallback_reason : '') + (hits.length ? '' : ' · nothing matched; try other words'));
        for (const h of hits) {
          const li = el('li');
          li.appendChild(el('span', 'topic', h.category + ' / ' + h.topic));
          li.appendChild(el('span', 'score', 'score ' + fmt(h.score, 3)));
          const p = el('div'); snippet(p, h.snippet); li.appendChild(p);
          ol.appendChild(li);
        }
      })
      .catch((e) => setText('#search-info', 'search failed: ' + e));
  });

  // ---- table tools ---------------------------------------------------------------
  $('#agent-filter').addEventListener('input', () => render());
  document.querySelectorAll('#agents th').forEach((th) => th.addEventListener('click', () => {
    const k = th.dataset.k;
    if (sortKey === k) sortDir = -sortDir; else { sortKey = k; sortDir = th.classList.contains('num') ? -1 : 1; }
    document.querySelectorAll('#agents th').forEach((x) => x.classList.remove('asc', 'desc'));
    th.classList.add(sortDir > 0 ? 'asc' : 'desc');
    render();
  }));
  window.addEventListener('resize', () => schedule());

  connect();
})();
