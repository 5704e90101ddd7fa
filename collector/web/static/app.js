// Watchpost dashboard. Plain JavaScript, no build step, nothing loaded from
// outside the collector. Every value from events is put into the page as
// text (textContent), never as HTML.
'use strict';

const MAX_ROWS = 500;     // rows kept in the live table; the oldest go first
const MAX_PENDING = 500;  // events held while the feed is paused
const STALE_NS = 30e9;    // a heartbeat older than this marks a host stale (agents beat every 10 s)

const state = { csrf: '', loginRequired: false, role: '', cleanup: [] };

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

function hashParams() {
  const h = location.hash.replace(/^#\/?/, '');
  const i = h.indexOf('?');
  return { view: (i < 0 ? h : h.slice(0, i)) || 'live', params: new URLSearchParams(i < 0 ? '' : h.slice(i + 1)) };
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
    if (f.result < 0) s += ' = ' + f.result;
    return s;
  }
  if (ev.net) {
    const n = ev.net;
    let s = [n.family, n.protocol].filter(Boolean).join('/') + ' ' + addr(n.src_addr, n.src_port);
    if (n.dst_addr || n.dst_port) s += (n.direction === 'inbound' ? ' ← ' : ' → ') + addr(n.dst_addr, n.dst_port);
    if (n.bytes_sent || n.bytes_recv) s += ' sent ' + fmtBytes(n.bytes_sent) + ' recv ' + fmtBytes(n.bytes_recv);
    if (n.result < 0) s += ' = ' + n.result;
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

function eventRow(ev) {
  const h = ev.header || {};
  return el('tr', { 'data-type': typeName(h.type), 'data-host': h.host || '', 'data-pid': String((ev.process || {}).pid || 0) },
    el('td', { class: 'mono' }, fmtTime(h.time_unix_nano)),
    el('td', {}, h.host || ''),
    el('td', {}, el('span', { class: 'badge' }, typeName(h.type))),
    el('td', {}, procLink(ev)),
    el('td', { class: 'mono summary' }, summary(ev)),
    el('td', {}, industrialBadge(ev)));
}

function eventTable(id) {
  return el('table', { id },
    el('thead', {}, el('tr', {}, ['time (UTC)', 'host', 'type', 'process', 'detail', 'industrial'].map(t => el('th', {}, t)))),
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

function signedIn(s) {
  state.csrf = s.csrf || '';
  state.loginRequired = s.login_required;
  state.role = s.role;
  document.getElementById('login').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = !s.login_required;
  document.getElementById('who').textContent = s.login_required ? s.name + ' (' + s.role + ')' : 'local access, no login';
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
  signedIn(body);
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
    es = new EventSource('api/stream?' + p);
    es.addEventListener('ready', () => setStatus(paused ? 'paused' : 'live'));
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
      el('span', { class: 'muted' }, 'newest first, last ' + MAX_ROWS + ' kept')),
    eventTable('live-table'));
  connect(params);
  state.cleanup.push(() => { if (es) es.close(); });
}

const ALERTS_SHOWN = 3;   // latest alert messages in a host's row

const alertKind = k => (k || '').replace(/^ALERT_KIND_/, '').toLowerCase().replace(/_/g, ' ');

// alertsCell shows an agent's alerts (newest first, as the server bounds
// them): how many, how many of each kind, and the latest messages.
function alertsCell(a) {
  if (!a) return el('td', { class: 'alerts muted', 'data-count': '0' }, 'none');
  const kinds = new Map();
  for (const x of a.alerts) kinds.set(alertKind(x.kind), (kinds.get(alertKind(x.kind)) || 0) + 1);
  const n = a.alerts.length + (a.more ? '+' : '');
  const shown = a.alerts.slice(0, ALERTS_SHOWN);
  const older = a.alerts.length - shown.length;
  return el('td', { class: 'alerts', 'data-count': String(a.alerts.length), title: a.more ? 'the ' + a.alerts.length + ' newest are counted' : undefined },
    el('span', { class: 'badge bad' }, n + (a.alerts.length === 1 && !a.more ? ' alert' : ' alerts')), ' ',
    [...kinds].map(([k, c]) => el('span', { class: 'badge kind' }, k + ' ×' + c)),
    el('ul', { class: 'alert-list' }, shown.map(x => el('li', {},
      el('span', { class: 'mono muted', title: alertKind(x.kind) }, fmtTime(x.time_unix_nano)), ' ', x.message || ''))),
    older > 0 || a.more ? el('div', { class: 'muted' }, (a.more ? 'more than ' + older : older) + ' older') : null);
}

async function hostsView() {
  const view = document.getElementById('view');
  const table = el('table', { id: 'hosts-table' },
    el('thead', {}, el('tr', {}, ['agent', 'host', 'last heartbeat', 'alerts (24 h)', 'version', 'kernel', 'capture path', 'programs',
      'produced', 'delivered', 'filtered', 'dropped', 'counters (kind/reason)', 'spool', 'stored events', 'batches stored / rejected', 'boot id', '']
      .map(t => el('th', {}, t)))), el('tbody'));
  view.replaceChildren(el('h1', {}, 'Hosts'),
    el('p', { class: 'muted' }, 'Agent health from the latest heartbeat and the alerts the collector raised in the last 24 h; refreshed every 5 s.'), table);
  const load = async () => {
    const [d, al] = await Promise.all([getJSON('api/hosts'), getJSON('api/alerts')]);
    const byAgent = new Map(al.agents.map(a => [a.agent_id, a]));
    const rows = d.hosts.map(h => {
      const stale = !h.last_seen_unix_nano || BigInt(d.now_ns) - BigInt(h.last_seen_unix_nano) > BigInt(STALE_NS);
      const drops = (h.drops || []).filter(c => Number(c.count) > 0);
      const alerts = byAgent.get(h.agent_id);
      return el('tr', { class: [stale ? 'stale' : '', alerts ? 'alerting' : ''].join(' ').trim(), 'data-agent': h.agent_id },
        el('td', {}, h.agent_id), el('td', {}, h.host),
        el('td', { class: 'hb', title: fmtTime(h.last_seen_unix_nano) },
          fmtAge(d.now_ns, h.last_seen_unix_nano), ' ', el('span', { class: 'badge ' + (stale ? 'bad' : 'ok') }, stale ? 'stale' : 'ok')),
        alertsCell(alerts),
        el('td', {}, h.version || ''), el('td', { class: 'mono' }, h.kernel || ''), el('td', {}, h.capture_path || ''),
        el('td', { class: 'num', title: (h.programs || []).join(', ') }, (h.programs || []).length),
        el('td', { class: 'num' }, h.produced || 0), el('td', { class: 'num' }, h.delivered || 0),
        el('td', { class: 'num' }, h.filtered || 0), el('td', { class: 'num' }, h.dropped || 0),
        el('td', {}, drops.length ? el('ul', {}, drops.map(c => el('li', {}, c.kind + '/' + c.reason + ': ' + c.count))) : 'none'),
        el('td', { class: 'num' }, fmtBytes(h.spool_bytes)),
        el('td', { class: 'num' }, h.events_stored || 0),
        el('td', { class: 'num' }, (h.batches_stored || 0) + ' / ' + (h.batches_rejected || 0)),
        el('td', { class: 'mono', title: h.boot_id || '' }, (h.boot_id || '').slice(0, 8)),
        el('td', {}, el('a', { href: '#/search?' + new URLSearchParams({ host: h.host }) }, 'events'), ' ',
          el('a', { href: '#/live?' + new URLSearchParams({ host: h.host }) }, 'live')));
    });
    table.tBodies[0].replaceChildren(...rows);
    if (!rows.length) table.tBodies[0].append(el('tr', {}, el('td', { colspan: 18, class: 'muted' }, 'No agent has connected yet.')));
  };
  await load();
  const t = setInterval(() => load().catch(() => {}), 5000);
  state.cleanup.push(() => clearInterval(t));
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
  status.textContent = d.events.length + ' events' + (d.more ? ', more older ones match' : '') + (q.get('before_ns') ? ' (older page)' : '');
  if (d.more) {
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
      el('td', { class: 'mono' }, (kp.args || []).join(' ')), el('td', { class: 'mono' }, ev ? fmtTime(ev.header.time_unix_nano) : ''));
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
      el('td', { class: 'num' }, u.opens), el('td', { class: 'num' }, u.writes), el('td', { class: 'num' }, u.failed), el('td', { class: 'mono' }, fmtTime(u.last_ns))))));
  const sniff = el('table', { id: 'sniffer-table' },
    el('thead', {}, el('tr', {}, ['process', 'socket', 'events', 'last'].map(t => el('th', {}, t)))),
    el('tbody', {}, d.sniffers.map(f => el('tr', {}, actorCell(f), el('td', { class: 'mono' }, f.protocol), el('td', { class: 'num' }, f.events), el('td', { class: 'mono' }, fmtTime(f.last_ns))))));
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

async function ratesView() {
  const view = document.getElementById('view');
  const box = el('div', { id: 'chart' });
  const note = el('p', { class: 'muted', id: 'rates-note' });
  view.replaceChildren(el('h1', {}, 'Event rate by type'),
    el('p', { class: 'muted' }, 'Events stored per second, by the collector\'s clock, since it started (last hour). Refreshed every 10 s.'), box, note);
  let plot = null, key = '';
  const draw = async () => {
    const d = await getJSON('api/rates');
    const names = Object.keys(d.series).sort();
    note.textContent = (names.length ? '' : 'No events stored in this window. ') + (d.dropped ? d.dropped + ' stored events were not counted.' : '');
    const data = [d.times, ...names.map(n => d.series[n])];
    if (plot && key === names.join(',')) { plot.setData(data); return; }
    if (plot) plot.destroy();
    key = names.join(',');
    plot = new uPlot({
      width: Math.max(400, box.clientWidth - 20), height: 360,
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length], width: 1.5, points: { show: false } }))],
      axes: [{}, { label: 'events/s' }],
      scales: { x: { time: true } },
    }, data, box);
  };
  await draw();
  const t = setInterval(() => draw().catch(() => {}), 10000);
  state.cleanup.push(() => { clearInterval(t); if (plot) plot.destroy(); });
}

const VIEWS = { live: liveView, hosts: hostsView, search: searchView, process: processView, industrial: industrialView, rates: ratesView };

function route() {
  if (!document.getElementById('login').hidden) return;
  stopView();
  const { view, params } = hashParams();
  const fn = VIEWS[view] || liveView;
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
    signedIn(await getJSON('api/session'));
  } catch (e) {
    if (!(e instanceof AuthError)) document.getElementById('view').append(el('p', { class: 'error' }, e.message));
  }
}

start();
