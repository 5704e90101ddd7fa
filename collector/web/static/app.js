// Watchpost dashboard. Plain JavaScript, no build step, nothing loaded from
// outside the collector. Every value from events is put into the page as
// text (textContent), never as HTML.
'use strict';

const MAX_ROWS = 500;     // rows kept in the live table; the oldest go first
const MAX_PENDING = 500;  // events held while the feed is paused
const STALE_NS = 30e9;    // a heartbeat older than this marks a host stale (agents beat every 10 s)

const BACKFILL = '5m';    // the live feed starts with the stored events of this window
const AUID_UNSET = 4294967295; // login uid of processes outside any login session

const state = { csrf: '', loginRequired: false, role: '', cleanup: [], errnos: {} };

// canTriage: the session may acknowledge and resolve alerts.
const canTriage = () => !state.loginRequired || state.role === 'admin';

class AuthError extends Error {}

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) e.dataset[k.slice(5)] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (r.status === 401) { showLogin(); throw new AuthError('login required'); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-Watchpost-CSRF': state.csrf },
    body: JSON.stringify(body || {}),
  });
  return r;
}

const typeName = t => (t || '').replace(/^EVENT_TYPE_/, '').toLowerCase();

function fmtTime(ns) {
  if (!ns) return '';
  const d = new Date(Number(BigInt(ns) / 1000000n));
  return d.toISOString().replace('T', ' ').replace('Z', '');
}

function fmtAge(nowNs, ns) {
  if (!ns || ns === '0') return 'never';
  const s = Number((BigInt(nowNs) - BigInt(ns)) / 1000000000n);
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return Math.floor(s / 86400) + ' d ago';
}

function fmtBytes(n) {
  n = Number(n || 0);
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

function fmtDuration(s) {
  s = Math.round(Number(s));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d';
}

// errnoName turns a negative syscall result into its name (ENOENT).
function errnoName(result) {
  const n = -Number(result || 0);
  return state.errnos[String(n)] || ('errno ' + n);
}

const sevName = s => (s || '').replace(/^SEVERITY_/, '').toLowerCase() || 'unspecified';
const stateName = s => (s || 'ALERT_STATE_OPEN').replace(/^ALERT_STATE_/, '').toLowerCase();
const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];

function sevBadge(sev) {
  const n = sevName(sev);
  return el('span', { class: 'badge sev sev-' + n }, n);
}

// timeCell is a table cell with a time that never wraps.
function timeCell(ns) {
  return el('td', { class: 'time' }, fmtTime(ns));
}

function hashParams() {
  const h = location.hash.replace(/^#\/?/, '');
  const i = h.indexOf('?');
  return { view: (i < 0 ? h : h.slice(0, i)) || 'overview', params: new URLSearchParams(i < 0 ? '' : h.slice(i + 1)) };
}

function processHref(host, pid, start, boot) {
  const p = new URLSearchParams({ host, pid: String(pid) });
  if (start && start !== '0') p.set('start', start);
  if (boot) p.set('boot', boot);
  return '#/process?' + p;
}

function procLink(ev) {
  const p = ev.process || {};
  const h = ev.header || {};
  const name = p.exe || p.comm || '?';
  return el('a', { href: processHref(h.host, p.pid, p.start_boot_ns, h.boot_id), class: 'proc', title: name },
    (p.comm || name) + ' [' + (p.pid || 0) + ']');
}

function addr(a, port) {
  if (!a && !port) return '';
  const h = a && a.includes(':') ? '[' + a + ']' : (a || '*');
  return port ? h + ':' + port : h;
}

// summary is the one-line description of an event's detail.
function summary(ev) {
  const p = ev.process || {};
  if (ev.exec) return (p.args && p.args.length ? p.args.join(' ') : p.exe || '') + (ev.exec.args_truncated ? ' …' : '');
  if (ev.file) {
    const f = ev.file;
    let s = f.path || '';
    if (f.new_path) s += ' → ' + f.new_path;
    if (f.write) s += ' (write)';
    if (f.result < 0) s += ' failed: ' + errnoName(f.result);
    return s;
  }
  if (ev.net) {
    const n = ev.net;
    let s = [n.family, n.protocol].filter(Boolean).join('/') + ' ' + addr(n.src_addr, n.src_port);
    if (n.dst_addr || n.dst_port) s += (n.direction === 'inbound' ? ' ← ' : ' → ') + addr(n.dst_addr, n.dst_port);
    if (n.bytes_sent || n.bytes_recv) s += ' sent ' + fmtBytes(n.bytes_sent) + ' recv ' + fmtBytes(n.bytes_recv);
    if (n.result < 0) s += errnoName(n.result) === 'EINPROGRESS' ? ' (in progress)' : ' failed: ' + errnoName(n.result);
    return s;
  }
  if (ev.security) {
    const x = ev.security;
    return [x.operation, x.name, x.path, x.target_comm && (x.target_comm + ' [' + x.target_pid + ']'),
      x.signal && ('signal ' + x.signal), x.new_id !== undefined && ('id ' + (x.old_id || 0) + ' → ' + x.new_id)]
      .filter(Boolean).join(' ');
  }
  if (ev.clone) return (ev.clone.thread ? 'thread ' : 'child ') + ev.clone.child_pid;
  if (ev.exit) return ev.exit.signal ? 'killed by signal ' + ev.exit.signal : 'exit ' + (ev.exit.code || 0);
  if (ev.health) return 'agent ' + (ev.health.version || '') + ', dropped ' + (ev.health.dropped || 0);
  if (ev.gap) return 'gap: ' + (ev.gap.reason || '');
  return '';
}

function industrialBadge(ev) {
  const i = ev.industrial;
  if (!i) return '';
  const t = i.protocol || (i.fieldbus ? i.fieldbus + ' ' + (i.device || '') : '') || (i.sniffing ? 'sniffing' : '');
  return t ? el('span', { class: 'badge ind' }, t) : '';
}

// userCell shows who acted: the uid, and the login uid (the human behind
// it) when the process is in a login session under another uid.
function userCell(p) {
  const uid = Number(p.uid || 0), euid = Number(p.euid || 0);
  const auid = p.auid === undefined ? 0 : Number(p.auid);
  const login = auid === AUID_UNSET ? 'none' : String(auid);
  let text = String(uid);
  if (euid !== uid) text += ' (euid ' + euid + ')';
  if (auid !== AUID_UNSET && auid !== uid) text += ' login ' + auid;
  return el('td', { class: 'user', title: 'uid ' + uid + ', euid ' + euid + ', login uid ' + login }, text);
}

// summaryCell shows at most three lines of a long detail (argv, paths);
// the whole text is in the title.
function summaryCell(text) {
  return el('td', { class: 'mono summary', title: text.length > 200 ? text : undefined }, el('div', { class: 'clamp' }, text));
}

function eventRow(ev) {
  const h = ev.header || {};
  return el('tr', { 'data-type': typeName(h.type), 'data-host': h.host || '', 'data-pid': String((ev.process || {}).pid || 0) },
    timeCell(h.time_unix_nano),
    el('td', { class: 'host' }, h.host || ''),
    el('td', {}, el('span', { class: 'badge' }, typeName(h.type))),
    el('td', { class: 'proc' }, procLink(ev)),
    userCell(ev.process || {}),
    summaryCell(summary(ev)),
    el('td', {}, industrialBadge(ev)));
}

function eventTable(id) {
  return el('table', { id, class: 'events' },
    el('thead', {}, el('tr', {}, ['time (UTC)', 'host', 'type', 'process', 'user', 'detail', 'industrial'].map(t => el('th', {}, t)))),
    el('tbody'));
}

// filterForm builds the CLI's filters; fields is a list of [name, label, placeholder].
function filterForm(id, fields, params, onSubmit, extra) {
  const f = el('form', { class: 'filters', id },
    fields.map(([name, label, ph]) => el('label', {}, label,
      el('input', { name, value: params.get(name) || '', placeholder: ph || '' }))),
    el('button', { type: 'submit', class: 'primary' }, 'Apply'), extra || []);
  f.addEventListener('submit', e => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(f)) if (v.trim() !== '') p.set(k, v.trim());
    onSubmit(p);
  });
  return f;
}

// ---------- session ----------

function showLogin() {
  stopView();
  document.getElementById('view').replaceChildren();
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  document.getElementById('login').hidden = false;
  document.getElementById('token').focus();
}

async function signedIn(s) {
  state.csrf = s.csrf || '';
  state.loginRequired = s.login_required;
  state.role = s.role;
  document.getElementById('login').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = !s.login_required;
  document.getElementById('who').textContent = s.login_required ? s.name + ' (' + s.role + ')' : 'local access, no login';
  state.errnos = (await getJSON('api/names')).errnos;
  route();
}

async function login(e) {
  e.preventDefault();
  const err = document.getElementById('login-error');
  err.textContent = '';
  const r = await fetch('api/login', {
    method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token: document.getElementById('token').value }),
  });
  const body = await r.json();
  if (!r.ok) { err.textContent = body.error || r.statusText; return; }
  document.getElementById('token').value = '';
  await signedIn(body);
}

async function logout() {
  const r = await post('api/logout');
  if (r.status === 204 || r.status === 401) {
    state.csrf = '';
    showLogin();
  }
}

// ---------- views ----------

function stopView() {
  for (const f of state.cleanup.splice(0)) f();
}

function liveView(params) {
  const tbody = () => document.querySelector('#live-table tbody');
  const status = el('span', { class: 'status', id: 'live-status' }, 'connecting…');
  const backfillNote = el('span', { class: 'muted', id: 'live-backfill' });
  let paused = false, pending = [], discarded = 0, dropped = 0, es = null;
  const pauseBtn = el('button', { type: 'button', id: 'pause' }, 'Pause');
  const show = evs => {
    const body = tbody();
    for (const ev of evs) body.prepend(eventRow(ev));
    while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  };
  const setStatus = s => { status.textContent = s + (dropped ? ' · ' + dropped + ' events lost (slow reader)' : ''); };
  const connect = p => {
    if (es) es.close();
    const q = new URLSearchParams(p);
    if (!q.has('backfill')) q.set('backfill', BACKFILL);
    es = new EventSource('api/stream?' + q);
    es.addEventListener('ready', () => setStatus(paused ? 'paused' : 'live'));
    es.addEventListener('backfill', m => {
      const d = JSON.parse(m.data);
      tbody().replaceChildren();
      show(d.events);
      backfillNote.textContent = d.events.length ? d.events.length + (d.more ? ' most recent' : '') + ' stored events of the last ' + q.get('backfill') + ', then live' :
        'nothing stored in the last ' + q.get('backfill') + '; waiting for events';
    });
    es.addEventListener('events', m => {
      const d = JSON.parse(m.data);
      dropped += Number(d.dropped || 0);
      if (paused) {
        pending.push(...d.events);
        if (pending.length > MAX_PENDING) { discarded += pending.length - MAX_PENDING; pending = pending.slice(-MAX_PENDING); }
        setStatus('paused · ' + pending.length + ' new' + (discarded ? ', ' + discarded + ' discarded' : ''));
        return;
      }
      show(d.events);
    });
    es.addEventListener('logout', () => { es.close(); showLogin(); });
    es.addEventListener('shutdown', () => { es.close(); setStatus('collector stopped'); });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        setStatus('disconnected');
        getJSON('api/session').catch(() => {});
      } else setStatus('reconnecting…');
    };
  };
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) {
      show(pending);
      pending = []; discarded = 0;
      setStatus('live');
    } else setStatus('paused');
  });
  const form = filterForm('live-filters', [['host', 'host'], ['type', 'event type', 'exec,net_*'], ['exe', 'process', 'exe or comm'],
    ['protocol', 'industrial protocol', 'modbus']], params, p => { location.hash = '#/live?' + p; });
  document.getElementById('view').replaceChildren(
    el('h1', {}, 'Live feed'), form,
    el('div', { class: 'toolbar' }, pauseBtn,
      el('button', { type: 'button', id: 'clear', onclick: () => tbody().replaceChildren() }, 'Clear'), status,
      el('span', { class: 'muted' }, 'newest first, last ' + MAX_ROWS + ' kept'), backfillNote),
    eventTable('live-table'));
  connect(params);
  state.cleanup.push(() => { if (es) es.close(); });
}

const alertKind = k => (k || '').replace(/^ALERT_KIND_/, '').toLowerCase();

const STATUS_TEXT = { silent: 'silent', dropping: 'dropping', degraded: 'degraded', stopped: 'stopped', ok: 'ok' };

function statusBadge(hh) {
  const st = (hh && hh.status) || 'ok';
  return el('span', { class: 'badge status-' + st, title: ((hh && hh.reasons) || []).join('; ') }, STATUS_TEXT[st] || st);
}

function countersTable(h) {
  const rows = (h.drops || []).map(c => el('tr', {}, el('td', {}, c.kind), el('td', {}, c.reason), el('td', { class: 'num' }, c.count)));
  return rows.length ? el('table', { class: 'counters' }, el('thead', {}, el('tr', {}, ['kind', 'reason', 'count'].map(t => el('th', {}, t)))), el('tbody', {}, rows))
    : el('p', { class: 'muted' }, 'no counter above zero');
}

// policiesTable is the host's response policies as its last heartbeat
// reported them: mode, status, and what each blocked or would have.
function policiesTable(h) {
  const r = h.response;
  if (!r) return el('p', { class: 'muted' }, 'response is off on this host');
  const status = p => !r.enforcing ? 'kill switch on' : p.unenforceable ? 'unenforceable: ' + p.unenforceable : p.mode === 'enforce' ? 'enforced' : 'monitoring';
  const rows = (r.policies || []).map(p => el('tr', { 'data-policy': p.id },
    el('td', {}, p.id), el('td', {}, p.action), el('td', {}, p.mode), el('td', { class: 'status' }, status(p)),
    el('td', { class: 'num' }, p.acted || 0), el('td', { class: 'num' }, p.would_have || 0), el('td', { class: 'num' }, p.failed || 0)));
  return el('div', { class: 'policies' },
    r.enforcing ? null : el('p', { class: 'error' }, 'Kill switch on: nothing is enforced on this host.'),
    (r.errors || []).length ? el('p', { class: 'error' }, 'The last policy load was refused (the set below stays): ' + r.errors.join('; ')) : null,
    rows.length ? el('table', { class: 'counters' },
      el('thead', {}, el('tr', {}, ['policy', 'action', 'mode', 'status', 'blocked', 'would have', 'failed'].map(t => el('th', {}, t)))), el('tbody', {}, rows))
      : el('p', { class: 'muted' }, 'no policies'));
}

// hostDetails is the counters on demand: everything the heartbeat said.
function hostDetails(h, hh) {
  return el('div', { class: 'host-details' },
    kv([['why', (hh.reasons || []).join('; ') || 'healthy'], ['produced / delivered', (h.produced || 0) + ' / ' + (h.delivered || 0)],
      ['filtered / dropped', (h.filtered || 0) + ' / ' + (h.dropped || 0)],
      ['dropped in the last 10 min', hh.dropped_recent || 0],
      ['batches stored / rejected', (h.batches_stored || 0) + ' / ' + (h.batches_rejected || 0)],
      ['spool', fmtBytes(h.spool_bytes)], ['kernel', h.kernel], ['boot id', h.boot_id], ['heartbeat', (h.heartbeat_seq || 0) + ' at ' + fmtTime(h.last_seen_unix_nano)],
      ['programs (' + (h.programs || []).length + ')', (h.programs || []).join(', ')]]),
    el('h3', {}, 'Counters by kind and reason'), countersTable(h),
    el('h3', {}, 'Response policies'), policiesTable(h));
}

async function hostsView() {
  const view = document.getElementById('view');
  const open = new Set();
  const table = el('table', { id: 'hosts-table' },
    el('thead', {}, el('tr', {}, ['status', 'host', 'agent', 'last heartbeat', 'open alerts', 'version', 'kernel', 'capture', 'events stored', 'dropped', 'spool', '']
      .map(t => el('th', {}, t)))), el('tbody'));
  view.replaceChildren(el('h1', {}, 'Hosts'),
    el('p', { class: 'muted' }, 'Agent health from the latest heartbeat, the open alerts and the drop counters; details shows every counter. Refreshed every 5 s.'), table);
  const load = async () => {
    const d = await getJSON('api/hosts');
    const rows = [];
    d.hosts.forEach((h, i) => {
      const hh = d.health[i] || {};
      const toggle = el('button', { type: 'button', class: 'details', 'aria-expanded': String(open.has(h.agent_id)) }, open.has(h.agent_id) ? 'hide' : 'details');
      const row = el('tr', { class: 'host status-' + (hh.status || 'ok'), 'data-agent': h.agent_id, 'data-status': hh.status || 'ok' },
        el('td', {}, statusBadge(hh)), el('td', { class: 'host' }, h.host), el('td', { class: 'agent' }, h.agent_id),
        el('td', { class: 'time', title: fmtTime(h.last_seen_unix_nano) }, fmtAge(d.now_ns, h.last_seen_unix_nano)),
        el('td', { class: 'num alerts' }, hh.open_alerts ? el('a', { href: '#/alerts?' + new URLSearchParams({ agent: h.agent_id, state: 'open' }) }, String(hh.open_alerts)) : '0'),
        el('td', {}, h.version || ''), el('td', { class: 'kernel', title: h.kernel || '' }, h.kernel || ''), el('td', {}, h.capture_path || ''),
        el('td', { class: 'num' }, h.events_stored || 0), el('td', { class: 'num' + (hh.dropped_recent ? ' bad' : '') }, h.dropped || 0),
        el('td', { class: 'num' }, fmtBytes(h.spool_bytes)),
        el('td', { class: 'links' }, toggle, ' ', el('a', { href: '#/search?' + new URLSearchParams({ host: h.host }) }, 'events'), ' ',
          el('a', { href: '#/live?' + new URLSearchParams({ host: h.host }) }, 'live')));
      const details = el('tr', { class: 'details', hidden: !open.has(h.agent_id), 'data-agent': h.agent_id }, el('td', { colspan: 12 }, hostDetails(h, hh)));
      toggle.addEventListener('click', () => {
        if (open.has(h.agent_id)) open.delete(h.agent_id); else open.add(h.agent_id);
        details.hidden = !open.has(h.agent_id);
        toggle.textContent = open.has(h.agent_id) ? 'hide' : 'details';
        toggle.setAttribute('aria-expanded', String(open.has(h.agent_id)));
      });
      rows.push(row, details);
    });
    table.tBodies[0].replaceChildren(...rows);
    if (!rows.length) table.tBodies[0].append(el('tr', {}, el('td', { colspan: 12, class: 'muted' }, 'No agent has connected yet.')));
  };
  await load();
  const t = setInterval(() => load().catch(() => {}), 5000);
  state.cleanup.push(() => clearInterval(t));
}

// ---------- overview ----------

function industrialWhat(x) {
  if (x.device) return x.device + ' (' + x.fieldbus + ')' + (x.writes ? ', opened for writing' : '');
  if (!x.peer && !x.direction) return x.protocol + ' socket';
  return x.protocol + ' ' + (x.direction === 'inbound' ? '← ' + x.peer + ' on our :' + x.port : '→ ' + addr(x.peer, x.port));
}

async function overviewView() {
  const view = document.getElementById('view');
  const tiles = el('div', { class: 'tiles', id: 'ov-severity' });
  const byHost = el('table', { id: 'ov-alerts' },
    el('thead', {}, el('tr', {}, ['host', ...SEVERITIES, 'latest', ''].map(t => el('th', { class: SEVERITIES.includes(t) ? 'num' : undefined }, t)))), el('tbody'));
  const hostsLine = el('p', { id: 'ov-hosts-line' });
  const hosts = el('table', { id: 'ov-hosts' },
    el('thead', {}, el('tr', {}, ['status', 'host', 'why', 'last heartbeat', ''].map(t => el('th', {}, t)))), el('tbody'));
  const ind = el('table', { id: 'ov-industrial' },
    el('thead', {}, el('tr', {}, ['first seen', 'host', 'process', 'activity', 'events', 'last'].map(t => el('th', {}, t)))), el('tbody'));
  const indNote = el('p', { class: 'muted', id: 'ov-industrial-note' });
  const alertsNote = el('p', { class: 'muted', id: 'ov-alerts-note' });
  const updated = el('span', { class: 'muted', id: 'ov-updated' });
  view.replaceChildren(el('h1', {}, 'Overview ', updated), tiles,
    el('h2', {}, 'Open alerts by host'), alertsNote, byHost,
    el('h2', {}, 'Hosts needing attention'), hostsLine, hosts,
    el('h2', {}, 'New industrial activity (last 24 h)'), indNote, ind);
  const load = async () => {
    const d = await getJSON('api/overview');
    const o = d.open_alerts;
    tiles.replaceChildren(...SEVERITIES.map(sv => el('a', { class: 'tile sev-' + sv + (o.by_severity[sv] ? ' lit' : ''), 'data-severity': sv,
      href: '#/alerts?' + new URLSearchParams({ state: 'open', severity: sv }) },
    el('span', { class: 'count' }, String(o.by_severity[sv] || 0)), el('span', { class: 'label' }, sv))),
    el('a', { class: 'tile total', href: '#/alerts?state=open', 'data-severity': 'all' }, el('span', { class: 'count' }, o.total + (o.more ? '+' : '')), el('span', { class: 'label' }, 'open alerts')));
    alertsNote.textContent = o.total ? '' : 'No open alert.';
    alertsNote.hidden = !!o.total;
    byHost.hidden = !o.total;
    byHost.tBodies[0].replaceChildren(...o.by_host.map(h => {
      const l = h.latest || {};
      return el('tr', { 'data-agent': h.agent_id },
        el('td', {}, el('a', { href: '#/hosts' }, h.host || h.agent_id)),
        ...SEVERITIES.map(sv => el('td', { class: 'num' + (h.counts[sv] ? ' sev-' + sv : '') }, h.counts[sv] ? String(h.counts[sv]) : '')),
        el('td', {}, el('span', { class: 'time' }, fmtTime(l.time_unix_nano)), ' ', el('span', { class: 'badge' }, alertKind(l.kind)), ' ', l.message || ''),
        el('td', {}, el('a', { href: '#/alerts?' + new URLSearchParams({ agent: h.agent_id, state: 'open' }) }, 'triage')));
    }));
    const hc = d.hosts.counts;
    hostsLine.textContent = d.hosts.total + (d.hosts.total === 1 ? ' host: ' : ' hosts: ') +
      ['ok', 'silent', 'dropping', 'degraded', 'stopped'].filter(k => hc[k] || k === 'ok').map(k => hc[k] + ' ' + k).join(', ') +
      (d.hosts.drops_truncated ? ' (drop rates from the most recent health events only)' : '');
    hosts.hidden = !d.hosts.attention.length;
    hosts.tBodies[0].replaceChildren(...d.hosts.attention.map(h => el('tr', { 'data-agent': h.agent_id, 'data-status': h.status },
      el('td', {}, statusBadge(h)), el('td', {}, h.host || h.agent_id), el('td', {}, h.reasons.join('; ')),
      el('td', { class: 'time', title: fmtTime(h.last_seen_ns) }, fmtAge(d.now_ns, h.last_seen_ns)),
      el('td', {}, el('a', { href: '#/hosts' }, 'host'), ' ', el('a', { href: '#/alerts?' + new URLSearchParams({ agent: h.agent_id }) }, 'alerts')))));
    const i = d.industrial;
    const items = [...i.flows, ...i.devices, ...i.sniffers].sort((a, b) => (BigInt(b.first_ns) > BigInt(a.first_ns) ? 1 : -1));
    ind.hidden = !items.length;
    indNote.replaceChildren(items.length ? 'Process, protocol and peer pairs, fieldbus devices and sniffing sockets first seen in the last 24 h (not in the 7 days before). '
      : 'Nothing new in the last 24 h: every industrial connection, fieldbus device and sniffing socket was seen in the 7 days before. ',
    i.truncated ? 'Judged from the most recent events only (more were stored). ' : '', el('a', { href: '#/industrial' }, 'All industrial activity'));
    ind.tBodies[0].replaceChildren(...items.map(x => el('tr', {},
      timeCell(x.first_ns), el('td', {}, x.host),
      el('td', {}, el('a', { href: processHref(x.host, x.pid, x.start_boot_ns, x.boot_id) }, (x.comm || '?') + ' [' + x.pid + ']'), el('div', { class: 'mono muted' }, x.exe || '')),
      el('td', { class: 'mono' }, industrialWhat(x)), el('td', { class: 'num' }, x.events !== undefined ? x.events : x.opens), timeCell(x.last_ns))));
    updated.textContent = 'as of ' + fmtTime(d.now_ns).slice(11, 19) + ' UTC';
  };
  await load();
  const t = setInterval(() => load().catch(() => {}), 10000);
  state.cleanup.push(() => clearInterval(t));
}

// ---------- alerts ----------

// ALERT_FILTERS are the alert page's filters, as [name, label, options]:
// options is a list of [value, text] for a select, or a placeholder.
const ALERT_FILTERS = [
  ['state', 'state', [['open,acknowledged', 'open or acknowledged'], ['open', 'open'], ['acknowledged', 'acknowledged'], ['resolved', 'resolved'], ['', 'any']]],
  ['severity', 'severity at least', [['', 'any'], ...SEVERITIES.map(s => [s, s])]],
  ['kind', 'kind', 'detection,missed_heartbeat'],
  ['rule', 'rule', 'wp-host-shell-by-service'], ['technique', 'technique', 'T0855'],
  ['host', 'host', ''], ['agent', 'agent', ''], ['since', 'since', '24h or RFC 3339'],
];

// ALERT_ACTIONS are the triage steps offered on selected alerts.
const ALERT_ACTIONS = [
  { id: 'ack', label: 'Acknowledge', state: 'ALERT_STATE_ACKNOWLEDGED' },
  { id: 'resolve', label: 'Resolve', state: 'ALERT_STATE_RESOLVED' },
  { id: 'reopen', label: 'Reopen', state: 'ALERT_STATE_OPEN' },
];

function alertFilterForm(params, onSubmit) {
  const f = el('form', { class: 'filters', id: 'alert-filters' },
    ALERT_FILTERS.map(([name, label, opt]) => el('label', {}, label, Array.isArray(opt)
      ? el('select', { name }, opt.map(([v, t]) => el('option', { value: v, selected: (params.get(name) || '') === v }, t)))
      : el('input', { name, value: params.get(name) || '', placeholder: opt }))),
    el('button', { type: 'submit', class: 'primary' }, 'Apply'));
  f.addEventListener('submit', e => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(f)) p.set(k, v.trim());
    for (const [k, v] of [...p]) if (v === '' && k !== 'state') p.delete(k);
    onSubmit(p);
  });
  return f;
}

function triageText(a) {
  const parts = [];
  if (a.acknowledged_by) parts.push('acknowledged by ' + a.acknowledged_by + ' ' + fmtTime(a.acknowledged_unix_nano));
  if (a.resolved_by) parts.push('resolved by ' + a.resolved_by + ' ' + fmtTime(a.resolved_unix_nano));
  return parts.join(' · ');
}

// EXCEPTION_ATTRS are what an exception made from a detection can keep.
const EXCEPTION_ATTRS = ['exe', 'ancestor', 'user', 'path', 'peer', 'host', 'unit', 'cgroup'];

// detectionDetails explains a detection: the rule, why it fired and the
// process it fired on.
function detectionDetails(a) {
  const x = a.detection, p = a.process || {};
  return kv([['rule', x.rule_id + ' · ' + (x.title || '')], ['level', x.level], ['techniques', (x.techniques || []).join(', ')],
    ['source', x.source], ['correlation', x.correlation ? x.correlation + ' of ' + (x.count || 0) : ''],
    ['matched', (x.matches || []).map(m => m.field + ' = ' + m.value).join(' · ')],
    ['process', (p.exe || p.comm || '') + ' [' + (p.pid || 0) + '] ' + (p.args || []).join(' ')],
    ['uid / login uid', (p.uid || 0) + ' / ' + (p.auid === undefined ? '' : p.auid)],
    ['ancestry', (a.ancestry || []).map(an => (an.exe || an.comm || '?') + ' [' + an.pid + ']').join(' ← ')],
    ['cgroup', x.cgroup]]);
}

// exceptionForm turns a detection into an exception for its rule and the
// alert's values of the attributes ticked, sent to its agent or all.
function exceptionForm(a) {
  const boxes = EXCEPTION_ATTRS.map(x => el('input', { type: 'checkbox', name: 'by', value: x, checked: x === 'exe' }));
  const scope = el('select', { name: 'scope' }, el('option', { value: 'agent' }, 'on ' + a.agent_id), el('option', { value: 'all' }, 'on every agent'));
  const comment = el('input', { name: 'comment', placeholder: 'why (kept with the exception)', maxlength: 512 });
  const status = el('span', { class: 'status exception-status' });
  const send = el('button', { type: 'submit', class: 'primary' }, 'Add an exception');
  const f = el('form', { class: 'filters exception-form', id: 'exception-form-' + a.id },
    el('span', {}, 'Stop ' + a.detection.rule_id + ' alerting where it has this alert\'s'),
    EXCEPTION_ATTRS.map((x, i) => el('label', { class: 'check' }, boxes[i], x)), scope, comment, send, status);
  f.addEventListener('submit', async e => {
    e.preventDefault();
    const by = boxes.filter(b => b.checked).map(b => b.value);
    const r = await post('api/exception-add', { alert_id: String(a.id), by, all_agents: scope.value === 'all', comment: comment.value.trim() });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { status.textContent = 'error: ' + (body.error || r.statusText); return; }
    send.disabled = true;
    status.textContent = 'exception ' + body.exception.id + ' sent to ' + (body.agent_id || 'every agent') + ' (command ' + body.command_seq + ')';
  });
  return f;
}

async function alertDetails(a, cell) {
  cell.replaceChildren(el('p', { class: 'status' }, 'loading the events behind the alert…'));
  const d = await getJSON('api/alert-events?id=' + a.id);
  const t = eventTable('alert-events-' + a.id);
  t.tBodies[0].append(...d.events.map(eventRow));
  cell.replaceChildren(
    a.detection ? detectionDetails(a) : '',
    a.detection && canTriage() ? exceptionForm(a) : '',
    kv([['alert', alertKind(a.kind) + ' #' + a.id], ['message', a.message], ['agent / host', a.agent_id + ' / ' + a.host],
      ['raised', fmtTime(a.time_unix_nano)], ['boot / instance', (a.boot_id || '') + ' / ' + (a.instance_id || '')], ['count', a.count],
      ['programs', (a.programs || []).join(', ')], ['drops', (a.drops || []).map(c => c.kind + '/' + c.reason + ' +' + c.count).join(', ')],
      ['triage', triageText(a) || 'not yet'], ['note', a.note]]),
    el('h3', {}, 'Events behind it (' + d.events.length + (d.more ? '+' : '') + ')' + (d.missing ? ', ' + d.missing + ' no longer stored' : '')),
    el('p', { class: 'muted' }, 'The agent\'s ' + (d.search.type ? d.search.type.replace(/,/g, ', ') + ' ' : '') + 'events from ' + fmtTime(Date.parse(d.search.since) * 1e6) +
      ' to ' + fmtTime(Date.parse(d.search.until) * 1e6) + ' UTC. ', el('a', { href: '#/search?' + new URLSearchParams(d.search) }, 'Open in Search')),
    d.events.length ? t : el('p', { class: 'muted' }, 'No stored event in this window.'));
}

async function alertsView(params) {
  const view = document.getElementById('view');
  if (!params.has('state')) params.set('state', 'open,acknowledged');
  const status = el('span', { class: 'status', id: 'alerts-status' });
  const note = el('input', { id: 'triage-note', placeholder: 'note (optional)', maxlength: 1024 });
  const all = el('input', { type: 'checkbox', id: 'alerts-all', title: 'select every alert shown' });
  const actions = ALERT_ACTIONS.map(a => el('button', { type: 'button', 'data-action': a.id, id: 'triage-' + a.id }, a.label));
  const older = el('button', { type: 'button', id: 'alerts-older', hidden: true }, 'Older →');
  const table = el('table', { id: 'alerts-table' },
    el('thead', {}, el('tr', {}, el('th', {}, all), ['severity', 'time (UTC)', 'host', 'alert', 'message', 'count', 'state', ''].map(t => el('th', {}, t)))), el('tbody'));
  view.replaceChildren(el('h1', {}, 'Alerts'), alertFilterForm(params, p => { location.hash = '#/alerts?' + p; }),
    el('div', { class: 'toolbar', id: 'triage-bar', hidden: !canTriage() }, 'Selected:', ...actions, note),
    el('div', { class: 'toolbar' }, status, older), table);
  status.textContent = 'loading…';
  let d;
  try {
    d = await getJSON('api/alert-list?' + params);
  } catch (e) {
    if (!(e instanceof AuthError)) status.textContent = 'error: ' + e.message;
    return;
  }
  const rows = [];
  for (const a of d.alerts) {
    const box = el('input', { type: 'checkbox', class: 'pick', value: a.id, hidden: !canTriage() });
    const detailCell = el('td', { colspan: 9 });
    const detail = el('tr', { class: 'details', hidden: true, 'data-id': a.id }, detailCell);
    const more = el('button', { type: 'button', class: 'details' }, 'events');
    more.addEventListener('click', () => {
      detail.hidden = !detail.hidden;
      more.textContent = detail.hidden ? 'events' : 'hide';
      if (!detail.hidden) alertDetails(a, detailCell).catch(e => { if (!(e instanceof AuthError)) detailCell.textContent = 'error: ' + e.message; });
    });
    const st = stateName(a.state);
    rows.push(el('tr', { class: 'alert state-' + st, 'data-id': a.id, 'data-state': st, 'data-severity': sevName(a.severity) },
      el('td', {}, box), el('td', {}, sevBadge(a.severity)), timeCell(a.time_unix_nano), el('td', { class: 'host' }, a.host || a.agent_id),
      el('td', { class: a.detection ? 'rule' : '' }, a.detection ? a.detection.rule_id : alertKind(a.kind)), el('td', { class: 'message' }, a.message || ''), el('td', { class: 'num' }, a.count || ''),
      el('td', { class: 'state', title: triageText(a) + (a.note ? ' · ' + a.note : '') }, st, a.acknowledged_by || a.resolved_by ? el('div', { class: 'muted' }, 'by ' + (a.resolved_by || a.acknowledged_by)) : ''),
      el('td', {}, more)), detail);
  }
  table.tBodies[0].replaceChildren(...rows);
  if (!rows.length) table.tBodies[0].append(el('tr', {}, el('td', { colspan: 9, class: 'muted' }, 'No alert matches.')));
  status.textContent = d.alerts.length + ' alerts' + (d.more ? ', more older ones match' : '');
  if (d.more) {
    older.hidden = false;
    older.onclick = () => { const p = new URLSearchParams(params); p.set('before_id', d.next_before_id); location.hash = '#/alerts?' + p; };
  }
  all.addEventListener('change', () => { for (const b of table.querySelectorAll('input.pick')) b.checked = all.checked; });
  for (const [i, a] of ALERT_ACTIONS.entries()) {
    actions[i].addEventListener('click', async () => {
      const ids = [...table.querySelectorAll('input.pick:checked')].map(b => b.value);
      if (!ids.length) { status.textContent = 'select alerts first'; return; }
      const r = await post('api/alert-update', { ids, state: a.state, note: note.value.trim() });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) { status.textContent = 'error: ' + (body.error || r.statusText); return; }
      route();
    });
  }
}

const SEARCH_FIELDS = [['host', 'host'], ['agent', 'agent'], ['type', 'event type', 'exec,file_*'], ['pid', 'pid'],
  ['exe', 'process', 'exe or comm'], ['path', 'path prefix', '/etc/'], ['port', 'port'], ['protocol', 'industrial protocol'],
  ['since', 'since', '1h or RFC 3339'], ['until', 'until'], ['text', 'text'], ['limit', 'page size', '100']];

async function searchView(params) {
  const view = document.getElementById('view');
  const status = el('span', { class: 'status', id: 'search-status' });
  const newer = el('button', { type: 'button', id: 'newer', hidden: !params.get('before_ns') }, '← Newer');
  const older = el('button', { type: 'button', id: 'older', hidden: true }, 'Older →');
  view.replaceChildren(el('h1', {}, 'Search'),
    filterForm('search-filters', SEARCH_FIELDS, params, p => { location.hash = '#/search?' + p; }),
    el('div', { class: 'toolbar' }, newer, older, status), eventTable('search-table'));
  const q = new URLSearchParams(params);
  status.textContent = 'searching…';
  let d;
  try {
    d = await getJSON('api/events?' + q);
  } catch (e) {
    if (!(e instanceof AuthError)) status.textContent = 'error: ' + e.message;
    return;
  }
  document.querySelector('#search-table tbody').replaceChildren(...d.events.map(eventRow));
  status.textContent = d.events.length + ' events' + (d.cost_limited ? ', the search stopped after ' + d.rows_scanned + ' stored rows (the collector\'s query limits): older ones may match; narrow the time range or the filter' :
    d.more ? ', more older ones match' : '') + (q.get('before_ns') ? ' (older page)' : '');
  if (d.more && d.next_before_ns) {
    older.hidden = false;
    older.onclick = () => { const p = new URLSearchParams(params); p.set('before_ns', d.next_before_ns); location.hash = '#/search?' + p; };
  }
  newer.onclick = () => history.back();
}

function kv(pairs) {
  return el('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== undefined && v !== '' && v !== null)
    .flatMap(([k, v]) => [el('dt', {}, k), el('dd', { class: 'mono' }, v)]));
}

async function processView(params) {
  const view = document.getElementById('view');
  view.replaceChildren(el('h1', {}, 'Process'), el('p', { class: 'status' }, 'loading…'));
  let d;
  try {
    d = await getJSON('api/process?' + params);
  } catch (e) {
    if (!(e instanceof AuthError)) view.replaceChildren(el('h1', {}, 'Process'), el('p', { class: 'error' }, e.message));
    return;
  }
  const p = d.process || {};
  const anc = d.ancestry.map(a => el('li', {}, el('a', { href: processHref(d.host, a.pid, '', d.boot_id) }, (a.comm || a.exe || '?') + ' [' + a.pid + ']'),
    ' ', el('span', { class: 'mono muted' }, (a.args || []).join(' ') || a.exe || ''), ' uid ' + (a.uid || 0)));
  const kids = d.children.map(c => {
    const ev = c.event;
    const kp = ev ? ev.process || {} : {};
    return el('tr', {}, el('td', {}, ev ? procLink(ev) : String(c.pid)), el('td', { class: 'mono' }, kp.exe || ''),
      el('td', { class: 'mono' }, (kp.args || []).join(' ')), ev ? timeCell(ev.header.time_unix_nano) : el('td'));
  });
  const section = (title, id, evs) => {
    const t = eventTable(id);
    t.tBodies[0].append(...evs.slice().reverse().map(eventRow));
    return [el('h2', {}, title + ' (' + evs.length + ')'), evs.length ? t : el('p', { class: 'muted' }, 'none stored')];
  };
  view.replaceChildren(
    el('h1', { id: 'process-title' }, (p.comm || '?') + ' [' + d.pid + '] on ' + d.host),
    kv([['executable', p.exe], ['arguments', (p.args || []).join(' ')], ['pid / ppid', p.pid + ' / ' + (p.ppid || 0)],
      ['uid / euid / login uid', (p.uid || 0) + ' / ' + (p.euid || 0) + ' / ' + (p.auid || 0)], ['session', p.session_id],
      ['cwd', p.cwd], ['tty', p.tty], ['container', p.container], ['start (boot ns)', p.start_boot_ns], ['boot id', d.boot_id]]),
    d.truncated ? el('p', { class: 'muted' }, 'Only the most recent events of this pid are shown.') : '',
    el('h2', {}, 'Ancestry (parent first)'), anc.length ? el('ol', { class: 'chain', id: 'ancestry' }, anc) : el('p', { class: 'muted' }, 'not recorded'),
    el('h2', {}, 'Children (' + kids.length + ')'),
    kids.length ? el('table', { id: 'children' }, el('thead', {}, el('tr', {}, ['process', 'executable', 'arguments', 'time'].map(t => el('th', {}, t)))), el('tbody', {}, kids))
      : el('p', { class: 'muted' }, 'none stored'),
    ...section('Files', 'files', d.files), ...section('Connections', 'connections', d.net), ...section('Other events', 'other', d.other));
}

async function industrialView(params) {
  const view = document.getElementById('view');
  if (!params.get('since')) params.set('since', '24h');
  view.replaceChildren(el('h1', {}, 'Industrial'),
    filterForm('industrial-filters', [['host', 'host'], ['protocol', 'industrial protocol'], ['since', 'since', '24h']], params,
      p => { location.hash = '#/industrial?' + p; }),
    el('p', { class: 'status' }, 'loading…'));
  let d;
  try {
    d = await getJSON('api/industrial?' + params);
  } catch (e) {
    if (!(e instanceof AuthError)) view.lastChild.textContent = 'error: ' + e.message;
    return;
  }
  const actorKey = a => a.host + '\u0000' + a.exe + '\u0000' + a.comm;
  const actorCell = a => el('td', {}, el('a', { href: processHref(a.host, a.pid, a.start_boot_ns, a.boot_id) }, (a.comm || '?') + ' [' + a.pid + ']'),
    el('div', { class: 'mono muted' }, a.host + ' · ' + (a.exe || '')));
  // Protocol matrix: one row per process, one column per protocol, peers in the cells.
  const protos = [...new Set(d.flows.map(f => f.protocol))].sort();
  const rows = new Map();
  for (const f of d.flows) {
    const k = actorKey(f);
    if (!rows.has(k)) rows.set(k, { actor: f, cells: new Map() });
    const r = rows.get(k);
    r.actor = f;
    if (!r.cells.has(f.protocol)) r.cells.set(f.protocol, []);
    r.cells.get(f.protocol).push(f);
  }
  const flowItem = f => el('li', { class: 'mono', title: 'last ' + fmtTime(f.last_ns) },
    (f.direction === 'inbound' ? '← ' + f.peer + ' (our :' + f.port + ')' : '→ ' + addr(f.peer, f.port)) + ' ×' + f.events +
    (Number(f.bytes_sent) || Number(f.bytes_recv) ? ' · ' + fmtBytes(f.bytes_sent) + ' out / ' + fmtBytes(f.bytes_recv) + ' in' : ''));
  const cell = (r, p) => el('td', {}, r.cells.has(p) ? el('ul', {}, r.cells.get(p).map(flowItem)) : '');
  const matrix = el('table', { class: 'matrix', id: 'protocol-matrix' },
    el('thead', {}, el('tr', {}, el('th', {}, 'process'), protos.map(p => el('th', {}, p)))),
    el('tbody', {}, [...rows.values()].map(r => el('tr', {}, actorCell(r.actor), protos.map(p => cell(r, p))))));
  const devices = el('table', { id: 'fieldbus-table' },
    el('thead', {}, el('tr', {}, ['process', 'device', 'fieldbus', 'opens', 'for writing', 'failed', 'last'].map(t => el('th', {}, t)))),
    el('tbody', {}, d.devices.map(u => el('tr', {}, actorCell(u), el('td', { class: 'mono' }, u.device), el('td', {}, u.fieldbus),
      el('td', { class: 'num' }, u.opens), el('td', { class: 'num' }, u.writes), el('td', { class: 'num' }, u.failed), timeCell(u.last_ns)))));
  const sniff = el('table', { id: 'sniffer-table' },
    el('thead', {}, el('tr', {}, ['process', 'socket', 'events', 'last'].map(t => el('th', {}, t)))),
    el('tbody', {}, d.sniffers.map(f => el('tr', {}, actorCell(f), el('td', { class: 'mono' }, f.protocol), el('td', { class: 'num' }, f.events), timeCell(f.last_ns)))));
  view.lastChild.replaceWith(
    el('h2', {}, 'Industrial protocols by process'),
    protos.length ? matrix : el('p', { class: 'muted' }, 'No network event tagged with an industrial protocol in this window.'),
    d.net_truncated ? el('p', { class: 'muted' }, 'Built from the most recent network events only (more matched).') : '',
    el('h2', {}, 'Fieldbus devices opened'),
    d.devices.length ? devices : el('p', { class: 'muted' }, 'No fieldbus device opened in this window.'),
    d.file_truncated ? el('p', { class: 'muted' }, 'Built from the most recent device opens only (more matched).') : '',
    el('h2', {}, 'Packet and raw sockets (possible sniffing)'),
    d.sniffers.length ? sniff : el('p', { class: 'muted' }, 'None in this window.'));
}

const PALETTE = ['#0b5cad', '#c2410c', '#15803d', '#7e22ce', '#b91c1c', '#0e7490', '#a16207', '#be185d', '#4d7c0f', '#1e40af', '#9a3412', '#475569'];

async function ratesView(params) {
  const view = document.getElementById('view');
  const box = el('div', { id: 'chart' });
  const note = el('p', { class: 'muted', id: 'rates-note' });
  const pick = el('select', { id: 'rates-class' });
  const cls = params.get('class') || '';
  view.replaceChildren(el('h1', {}, 'Event rates'),
    el('p', { class: 'muted' }, 'Events stored per second, by the collector\'s clock, since it started (up to an hour), by event class; pick a class to see its event types. Refreshed every 10 s.'),
    el('div', { class: 'toolbar' }, el('label', {}, 'show ', pick)), box, note);
  pick.addEventListener('change', () => { location.hash = '#/rates' + (pick.value ? '?' + new URLSearchParams({ class: pick.value }) : ''); });
  let plot = null, key = '';
  const draw = async () => {
    const d = await getJSON('api/rates' + (cls ? '?' + new URLSearchParams({ class: cls }) : ''));
    const classes = [...new Set([...d.classes, cls].filter(Boolean))];
    pick.replaceChildren(el('option', { value: '', selected: !cls }, 'every class'),
      ...classes.map(c => el('option', { value: c, selected: c === cls }, c + ' by type')));
    const names = d.order;
    note.textContent = (names.length ? '' : 'No events stored in this window. ') + (d.dropped ? d.dropped + ' stored events were not counted.' : '');
    const data = [d.times, ...names.map(n => d.series[n])];
    box.dataset.series = names.join(',');
    if (plot && key === names.join(',')) { plot.setData(data); return; }
    if (plot) plot.destroy();
    key = names.join(',');
    plot = new uPlot({
      width: Math.max(400, box.clientWidth - 20), height: 360,
      legend: { live: false },
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: false } }))],
      axes: [{}, { label: 'events/s', size: 60 }],
      scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
    }, data, box);
  };
  await draw();
  const t = setInterval(() => draw().catch(() => {}), 10000);
  state.cleanup.push(() => { clearInterval(t); if (plot) plot.destroy(); });
}

// ---------- policies ----------

// responseWhat is what a response event acted on.
function responseWhat(ev) {
  const r = ev.response || {};
  if (r.dst_addr || r.dst_port) return (r.protocol || '') + ' ' + addr(r.dst_addr, r.dst_port) + (r.send ? ' (send)' : '');
  if (r.device) return (r.dev_kind || '') + ' device ' + r.device + ' ' + (r.access || []).join(',');
  if (r.family) return r.family + ' ' + (r.sock_type || '') + ' socket';
  if (r.rule_id) return 'rule ' + r.rule_id;
  return r.exe || (ev.process || {}).exe || '';
}

// policyState is what a policy does on its host now (as `watchpost policies` says).
const policyState = (r, p) => !r.enforcing ? 'kill switch on' : p.unenforceable ? 'unenforceable: ' + p.unenforceable
  : p.mode === 'enforce' ? 'enforced' : 'monitoring';

// policyCommand sends a policy command and says what became of it.
async function policyCommand(body, status) {
  status.textContent = 'sending…';
  const r = await post('api/policy-command', body);
  const b = await r.json().catch(() => ({}));
  if (!r.ok) { status.textContent = 'error: ' + (b.error || r.statusText); return false; }
  status.textContent = (b.status === 'COMMAND_STATUS_APPLIED' ? 'applied' : b.message || 'sent') + ' (command ' + b.command_seq + ')';
  return true;
}

// confirmStep asks before a step that can stop production: the button
// opens a box that says what it does; only its own button sends it.
function confirmStep(label, warning, yes, send) {
  const box = el('span', { class: 'confirm', hidden: true });
  const open = el('button', { type: 'button', class: 'switch' }, label);
  const ok = el('button', { type: 'button', class: 'primary confirm-yes' }, yes);
  const no = el('button', { type: 'button', class: 'confirm-no' }, 'Cancel');
  box.append(el('span', { class: 'error' }, warning), ' ', ok, ' ', no);
  open.addEventListener('click', () => { box.hidden = false; open.hidden = true; });
  no.addEventListener('click', () => { box.hidden = true; open.hidden = false; });
  ok.addEventListener('click', () => { ok.disabled = true; send().finally(() => { ok.disabled = false; }); });
  return el('span', { class: 'step' }, open, box);
}

function latestList(evs) {
  if (!evs || !evs.length) return el('span', { class: 'muted' }, 'none yet');
  return el('ul', { class: 'latest' }, evs.map(ev => {
    const out = (ev.response || {}).outcome || '';
    return el('li', { 'data-outcome': out }, el('span', { class: 'time' }, fmtTime((ev.header || {}).time_unix_nano)), ' ',
      el('span', { class: out.startsWith('would') ? 'badge' : 'badge bad' }, out), ' ', procLink(ev), ' ', responseWhat(ev));
  }));
}

function hostPolicies(hp, reload) {
  const h = hp.host, r = h.policies;
  const status = el('span', { class: 'status policy-status' });
  const send = body => policyCommand(Object.assign({ agent_id: h.agent_id }, body), status).then(ok => { if (ok) reload(); });
  const alerts = '#/alerts?' + new URLSearchParams({ agent: h.agent_id, kind: 'response,response_would_have', state: '' });
  const events = '#/search?' + new URLSearchParams({ agent: h.agent_id, type: hp.types });
  const head = el('h2', {}, h.host || h.agent_id, ' ', el('span', { class: 'muted' }, h.agent_id + (h.online ? '' : ' · offline, as last reported ' + fmtTime(h.last_seen_unix_nano))));
  const sec = el('section', { class: 'host-policies', 'data-agent': h.agent_id }, head);
  if (!r) { sec.append(el('p', { class: 'muted' }, 'response is off on this host')); return sec; }
  let ks = '';
  if (canTriage()) {
    ks = r.enforcing
      ? el('button', { type: 'button', id: 'kill-on-' + h.agent_id, class: 'kill-switch' }, 'Turn the kill switch on (stop enforcing everything)')
      : confirmStep('Turn the kill switch off', 'Every policy in enforce mode starts blocking again on this host.', 'Yes, enforce again', () => send({ kill_switch: false }));
    if (r.enforcing) ks.addEventListener('click', () => send({ kill_switch: true }));
  }
  sec.append(el('div', { class: 'toolbar' }, el('span', { class: 'kill ' + (r.enforcing ? 'off' : 'on') }, r.enforcing ? 'kill switch off' : 'Kill switch on: nothing is enforced on this host.'), ks, status,
    el('a', { href: events }, 'response events'), el('a', { href: alerts }, 'response alerts')));
  if ((r.errors || []).length) sec.append(el('p', { class: 'error' }, 'The last policy load was refused (the set below stays): ' + r.errors.join('; ')));
  const rows = (r.policies || []).map(p => {
    const other = p.mode === 'enforce' ? 'monitor' : 'enforce';
    let ctl = '';
    if (canTriage()) {
      ctl = other === 'enforce'
        ? confirmStep('Enforce', 'Enforce ' + p.id + ' on ' + (h.host || h.agent_id) + '? It then ' + (p.action.startsWith('kill') ? 'kills' : 'blocks') +
          ' for real; a false block can stop production.', 'Yes, enforce', () => send({ set_mode: { id: p.id, mode: 'enforce' } }))
        : el('button', { type: 'button', class: 'switch' }, 'Back to monitor');
      if (other === 'monitor') ctl.addEventListener('click', () => send({ set_mode: { id: p.id, mode: 'monitor' } }));
    }
    return el('tr', { class: 'policy', 'data-policy': p.id, 'data-mode': p.mode },
      el('td', { class: 'mono' }, p.id), el('td', {}, p.action), el('td', { class: 'mode' }, p.mode),
      el('td', { class: 'enforceable' }, p.unenforceable ? 'no: ' + p.unenforceable : 'yes'), el('td', { class: 'status' }, policyState(r, p)),
      el('td', { class: 'num acted' }, p.acted || 0), el('td', { class: 'num would' }, p.would_have || 0), el('td', { class: 'num' }, p.failed || 0),
      el('td', { class: 'latest' }, latestList((hp.latest || {})[p.id])), el('td', { class: 'links' }, ctl));
  });
  sec.append(rows.length ? el('table', { class: 'policies-table' },
    el('thead', {}, el('tr', {}, ['policy', 'action', 'mode', 'enforceable here', 'status', 'blocked', 'would have', 'failed', 'latest', ''].map(t => el('th', {}, t)))),
    el('tbody', {}, rows)) : el('p', { class: 'muted' }, 'no policies'));
  return sec;
}

async function policiesView() {
  const view = document.getElementById('view');
  const list = el('div', { id: 'policies' });
  view.replaceChildren(el('h1', {}, 'Policies'),
    el('p', { class: 'muted' }, 'Each host\'s response policies as its last heartbeat reported them: the mode, whether the host\'s kernel can enforce them, ' +
      'what each blocked or would have blocked since the agent started, and the latest of those. Refreshed every 5 s.'), list);
  const load = async () => {
    const d = await getJSON('api/policies');
    list.replaceChildren(...d.hosts.map(hp => hostPolicies(hp, () => setTimeout(() => load().catch(() => {}), 300))));
    if (!d.hosts.length) list.append(el('p', { class: 'muted' }, 'No agent has connected yet.'));
  };
  await load();
  // A refresh never replaces a confirmation box that is open.
  const t = setInterval(() => { if (!list.querySelector('.confirm:not([hidden])')) load().catch(() => {}); }, 5000);
  state.cleanup.push(() => clearInterval(t));
}

const VIEWS = { overview: overviewView, alerts: alertsView, live: liveView, hosts: hostsView, search: searchView, process: processView,
  industrial: industrialView, rates: ratesView, policies: policiesView };

function route() {
  if (!document.getElementById('login').hidden) return;
  stopView();
  const { view, params } = hashParams();
  const fn = VIEWS[view] || overviewView;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === view);
  Promise.resolve(fn(params)).catch(e => {
    if (!(e instanceof AuthError)) document.getElementById('view').append(el('p', { class: 'error' }, e.message));
  });
}

async function start() {
  document.getElementById('login-form').addEventListener('submit', e => { login(e).catch(err => { document.getElementById('login-error').textContent = err.message; }); });
  document.getElementById('logout').addEventListener('click', () => { logout().catch(() => {}); });
  window.addEventListener('hashchange', route);
  try {
    await signedIn(await getJSON('api/session'));
  } catch (e) {
    if (!(e instanceof AuthError)) document.getElementById('view').append(el('p', { class: 'error' }, e.message));
  }
}

start();
