// The switchboard operations console: plain JavaScript, no framework, no
// CDN. It talks to /admin/session (sign-in), /admin/events (live updates,
// server-sent events) and the JSON API under /api/v1/. Everything shown
// from the network goes through textContent, never innerHTML.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
let csrf = '';
let events = null;
let openCall = null; // Call-ID shown in the call panel
let lastCalls = [];
const health = new Map(); // Call-ID -> [{t, legs:[{party, packets, mos, loss, jitter}]}]
let recordsNext = '';
let recordsRows = [];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? '' : String(k)));
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

async function api(method, path, body) {
  const opt = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET') opt.headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const res = await fetch(path, opt);
  if (res.status === 401 && path !== '/admin/session') signedOut();
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error((data && data.error) || res.statusText);
  return data;
}

function say(msg) { $('status').textContent = msg; }

function fmtDur(s) {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return (h ? h + ':' + String(m).padStart(2, '0') : m) + ':' + String(sec).padStart(2, '0');
}

function fmtTime(t) { return t ? new Date(t).toLocaleString() : '–'; }

function mosClass(m) { return m >= 4 ? 'mos-good' : m >= 3.6 ? 'mos-fair' : 'mos-bad'; }

// --- sign-in ---

function signedIn(info) {
  csrf = info.csrf;
  $('signedin').textContent = 'Signed in as ' + info.name + (info.domain ? ' · ' + info.domain : '');
  $('who').hidden = false;
  $('signin-view').hidden = true;
  $('app').hidden = false;
  startEvents();
  show('live');
}

function signedOut() {
  csrf = '';
  if (events) { events.close(); events = null; }
  $('who').hidden = true;
  $('app').hidden = true;
  $('signin-view').hidden = false;
}

$('signin').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('signin-error').textContent = '';
  try {
    signedIn(await api('POST', '/admin/session', { name: $('signin-name').value, password: $('signin-password').value }));
    $('signin-password').value = '';
  } catch (e) {
    $('signin-error').textContent = e.message === 'wrong name or password' ? 'Wrong name or password.' : e.message;
  }
});

$('signout').addEventListener('click', async () => {
  try { await api('DELETE', '/admin/session'); } catch (e) { /* signed out anyway */ }
  signedOut();
});

// --- views ---

function show(view) {
  for (const b of document.querySelectorAll('.tab')) b.setAttribute('aria-pressed', String(b.dataset.view === view));
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== view;
  if (view === 'records') loadRecords(false);
  if (view === 'users') loadUsers();
  if (view === 'bans') loadBans();
  if (view === 'charts') loadCharts();
}
for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => show(b.dataset.view));

// --- live ---

function startEvents() {
  if (events) events.close();
  events = new EventSource('/admin/events');
  events.addEventListener('update', (ev) => live(JSON.parse(ev.data)));
  events.onerror = () => say('Live updates interrupted; reconnecting…');
  events.onopen = () => say('');
}

function live(u) {
  lastCalls = u.calls || [];
  const now = Date.now();
  for (const c of lastCalls) {
    const h = health.get(c.id) || [];
    h.push({ t: now, legs: (c.legs || []).map((l) => ({ party: l.party, stream: l.stream, packets: l.packets, mos: l.mos, loss: l.loss_pct, jitter: l.jitter_ms })) });
    if (h.length > 600) h.shift();
    health.set(c.id, h);
  }
  const callsTotal = u.calls_total;
  $('calls-count').textContent = callsTotal;
  const rows = lastCalls.map((c) => {
    const legs = el('td', { class: 'mono' });
    for (const l of c.legs || []) {
      legs.append(el('div', { class: 'leg' }, `${l.party} ${l.codec || '?'} · ${l.packets} pkts · loss ${l.loss_pct.toFixed(1)}% · jitter ${l.jitter_ms.toFixed(1)} ms · MOS `,
        el('span', { class: mosClass(l.mos) }, l.mos ? l.mos.toFixed(2) : '–')));
    }
    if (!(c.legs || []).length) legs.append('not relayed');
    const label = `${c.caller} to ${c.callee}`;
    return el('tr', {},
      el('td', {}, el('button', { type: 'button', class: 'secondary', 'aria-label': 'Open call ' + label, onclick: () => openCallPanel(c.id) }, 'Open')),
      el('td', {}, label), el('td', {}, c.state), el('td', {}, fmtDur(c.duration_s)), legs);
  });
  if (callsTotal > lastCalls.length) {
    rows.push(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, `The ${lastCalls.length} oldest of ${callsTotal} calls are shown; GET /api/v1/calls lists them all.`)));
  }
  $('calls').replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No calls in progress.'))]));

  $('regs-count').textContent = u.registrations_total;
  $('regs').replaceChildren(...(u.registrations || []).map((r) => el('tr', {},
    el('td', {}, r.user), el('td', { class: 'mono' }, r.contact), el('td', {}, r.transport + (r.source ? ' from ' + r.source : '')),
    el('td', {}, r.nat ? 'yes' : 'no'), el('td', {}, r.user_agent || '–'),
    el('td', {}, fmtDur((new Date(r.expires) - now) / 1000)))));

  const allocs = u.allocations || [];
  $('turn-count').textContent = u.allocations ? allocs.length : 'off';
  $('turn').replaceChildren(...allocs.map((a) => el('tr', {},
    el('td', {}, a.user), el('td', { class: 'mono' }, a.client), el('td', {}, a.transport), el('td', { class: 'mono' }, a.relay),
    el('td', {}, fmtTime(a.created)))));

  if (u.draining) say('The switch is draining: no new calls.');
  if (openCall) {
    const c = lastCalls.find((x) => x.id === openCall);
    $('call-summary').textContent = c ? `${c.caller} to ${c.callee} · ${c.state} · ${fmtDur(c.duration_s)}` : 'The call has ended.';
    $('hangup').disabled = !c;
    drawHealth(openCall);
    if (!c && !$('call').dataset.final) { $('call').dataset.final = '1'; loadTrace(openCall); }
  }
}

async function openCallPanel(id) {
  openCall = id;
  delete $('call').dataset.final;
  $('call').hidden = false;
  $('call-title').textContent = 'Call ' + id;
  $('message').textContent = 'Choose an arrow of the ladder to see its message.';
  await loadTrace(id);
  drawHealth(id);
  $('call').scrollIntoView({ block: 'nearest' });
}

$('close-call').addEventListener('click', () => { openCall = null; $('call').hidden = true; });

$('hangup').addEventListener('click', async () => {
  if (!openCall) return;
  try {
    await api('DELETE', '/api/v1/calls/' + encodeURIComponent(openCall));
    say('Call hung up.');
    setTimeout(() => openCall && loadTrace(openCall), 1500);
  } catch (e) { say('Hang-up failed: ' + e.message); }
});

async function loadTrace(id) {
  let t;
  try { t = await api('GET', '/api/v1/calls/' + encodeURIComponent(id) + '/trace'); } catch (e) {
    $('ladder-box').replaceChildren(el('p', { class: 'muted' }, 'No trace: ' + e.message));
    return;
  }
  drawLadder(t);
}

// drawLadder draws the call's SIP messages as arrows between the caller,
// switch and callee columns; each arrow is a button showing its message.
function drawLadder(t) {
  const cols = [90, 330, 570], top = 58, row = 30, msgs = t.messages || [];
  const h = top + row * msgs.length + 20;
  const s = svg('svg', { class: 'ladder', viewBox: `0 0 660 ${h}`, width: 660, height: h, role: 'group', 'aria-label': 'SIP ladder' });
  const defs = svg('defs');
  for (const [id, color] of [['ah', '#1f5fbf'], ['ahr', '#1b7a3d'], ['ahe', '#b3261e']]) {
    const m = svg('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerUnits: 'userSpaceOnUse', markerWidth: 10, markerHeight: 10, orient: 'auto-start-reverse' });
    m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: color }));
    defs.append(m);
  }
  s.append(defs);
  const names = ['caller', 'switch', 'callee'], addrs = [t.caller, '', t.callee];
  cols.forEach((x, i) => {
    s.append(svg('text', { x, y: 16, class: 'head' }, names[i]));
    s.append(svg('text', { x, y: 32, class: 'addr' }, addrs[i] || ''));
    s.append(svg('line', { x1: x, y1: 40, x2: x, y2: h - 8, class: 'col' }));
  });
  const t0 = msgs.length ? new Date(msgs[0].time).getTime() : 0;
  msgs.forEach((m, i) => {
    const y = top + row * i + 10, from = cols[t.from[i]], to = cols[t.to[i]];
    const label = m.status ? `${m.status} ${m.reason}` : m.method;
    const kind = m.status ? (m.status >= 400 ? 'err' : 'resp') : 'req';
    const g = svg('g', { class: 'arrow ' + kind, role: 'button', tabindex: 0,
      'aria-label': `${label} from ${names[t.from[i]]} to ${names[t.to[i]]}` });
    g.append(svg('line', { x1: from, y1: y, x2: to === from ? from + 40 : to, y2: y, 'marker-end': `url(#${kind === 'req' ? 'ah' : kind === 'resp' ? 'ahr' : 'ahe'})` }));
    g.append(svg('text', { x: (from + to) / 2, y: y - 5 }, label.length > 30 ? label.slice(0, 30) + '…' : label));
    g.append(svg('text', { x: 2, y: y + 4, class: 'time' }, '+' + ((new Date(m.time).getTime() - t0) / 1000).toFixed(3) + 's'));
    // A wide transparent target, easier to hit on a phone.
    g.append(svg('rect', { x: Math.min(from, to), y: y - 18, width: Math.max(Math.abs(to - from), 40), height: 24, fill: 'transparent' }));
    const pick = () => {
      for (const a of s.querySelectorAll('.arrow.selected')) a.classList.remove('selected');
      g.classList.add('selected');
      $('message').textContent = `${m.direction === 'in' ? 'Received' : 'Sent'} ${new Date(m.time).toISOString()} over ${m.transport}, ${m.from} → ${m.to}\n\n${m.raw}`;
    };
    g.addEventListener('click', pick);
    g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(); } });
    s.append(g);
  });
  const box = [s];
  if (t.dropped) box.push(el('p', { class: 'muted' }, `${t.dropped} more messages were not kept.`));
  $('ladder-box').replaceChildren(...box);
}

// lineChart draws series [{name, color, points:[[x,y]...]}] into container.
function lineChart(container, series, yLabel) {
  const w = 600, h = 160, pad = 30;
  const s = svg('svg', { viewBox: `0 0 ${w} ${h}` });
  const xs = series.flatMap((se) => se.points.map((p) => p[0]));
  const ys = series.flatMap((se) => se.points.map((p) => p[1]));
  if (!xs.length) {
    s.append(svg('text', { x: pad, y: h / 2 }, 'No data yet.'));
    container.replaceChildren(s);
    return;
  }
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), ymax = Math.max(1, ...ys);
  const X = (x) => pad + (x - x0) / (x1 - x0) * (w - pad - 6), Y = (y) => h - 18 - y / ymax * (h - 30);
  s.append(svg('line', { x1: pad, y1: h - 18, x2: w - 4, y2: h - 18, stroke: '#d8dce3' }));
  s.append(svg('text', { x: 2, y: 12 }, String(Math.round(ymax * 100) / 100) + (yLabel ? ' ' + yLabel : '')));
  s.append(svg('text', { x: 2, y: h - 20 }, '0'));
  s.append(svg('text', { x: pad, y: h - 4 }, new Date(x0).toLocaleTimeString()));
  s.append(svg('text', { x: w - 70, y: h - 4 }, new Date(x1).toLocaleTimeString()));
  for (const se of series) {
    if (!se.points.length) continue;
    s.append(svg('polyline', { class: 'line', stroke: se.color, points: se.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ') }));
  }
  const legend = el('div', { class: 'legend' }, series.map((se) => `${se.name} (${se.color === '#1f5fbf' ? 'blue' : se.color === '#1b7a3d' ? 'green' : 'orange'})`).join(' · '));
  container.replaceChildren(s, legend);
}

function drawHealth(id) {
  const h = health.get(id) || [];
  const colors = { caller: '#1f5fbf', callee: '#1b7a3d' };
  const series = [];
  for (const party of ['caller', 'callee']) {
    series.push({ name: 'MOS of what the ' + party + ' sends', color: colors[party],
      points: h.flatMap((s) => s.legs.filter((l) => l.party === party && l.stream === 0 && l.mos).map((l) => [s.t, l.mos])) });
  }
  const last = h.length ? h[h.length - 1].legs : [];
  lineChart($('health'), series, 'MOS');
  $('health').setAttribute('aria-label', 'Media health over time: ' + (last.map((l) => `${l.party} MOS ${l.mos ? l.mos.toFixed(2) : 'none'}, loss ${l.loss.toFixed(1)}%, jitter ${l.jitter.toFixed(1)} ms`).join('; ') || 'no media yet'));
}

// --- records ---

function recordQuery() {
  const q = new URLSearchParams();
  const user = $('f-user').value.trim(), status = $('f-status').value;
  if (user) q.set('user', user);
  if (status) q.set('status', status);
  if ($('f-since').value) q.set('since', $('f-since').value);
  if ($('f-until').value) q.set('until', $('f-until').value);
  return q;
}

async function loadRecords(more) {
  const q = recordQuery();
  q.set('limit', '50');
  if (more && recordsNext) q.set('cursor', recordsNext);
  let page;
  try { page = await api('GET', '/api/v1/cdr?' + q); } catch (e) { say('Records: ' + e.message); return; }
  if (!more) recordsRows = [];
  recordsRows.push(...page.records);
  recordsNext = page.next;
  $('records-more').hidden = !recordsNext;
  $('records-body').replaceChildren(...(recordsRows.length ? recordsRows.map((r) => el('tr', {},
    el('td', {}, fmtTime(r.started)), el('td', {}, r.caller), el('td', {}, r.callee),
    el('td', {}, r.ended ? String(r.status) : 'in progress'), el('td', {}, fmtDur(r.duration_s)),
    el('td', {}, r.hangup_by || '–'), el('td', {}, r.reason || '–'), el('td', { class: 'mono' }, r.call_id))) :
    [el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'No records match.'))]));
}

$('records-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadRecords(false); });
$('records-more').addEventListener('click', () => loadRecords(true));

$('export').addEventListener('click', async () => {
  // Every record matching the filters, page by page.
  const rows = [];
  let cursor = '';
  do {
    const q = recordQuery();
    q.set('limit', '1000');
    if (cursor) q.set('cursor', cursor);
    const page = await api('GET', '/api/v1/cdr?' + q);
    rows.push(...page.records);
    cursor = page.next;
  } while (cursor && rows.length < 100000);
  const cols = ['started', 'answered', 'ended', 'caller', 'callee', 'call_id', 'status', 'duration_s', 'hangup_by', 'reason', 'media'];
  const cell = (v) => { const s = v == null ? '' : String(v); return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; };
  const csv = [cols.join(','), ...rows.map((r) => cols.map((c) => cell(r[c])).join(','))].join('\r\n') + '\r\n';
  const a = el('a', { href: URL.createObjectURL(new Blob([csv], { type: 'text/csv' })), download: 'switchboard-calls.csv' });
  document.body.append(a);
  a.click();
  a.remove();
  say(`Exported ${rows.length} records.`);
});

// --- users ---

async function loadUsers() {
  let users;
  try { users = await api('GET', '/api/v1/users'); } catch (e) { say('Users: ' + e.message); return; }
  $('users-body').replaceChildren(...users.map((u) => {
    const pw = el('input', { type: 'password', 'aria-label': 'New password for ' + u.name, autocomplete: 'new-password' });
    const setPw = el('button', { type: 'button', class: 'secondary', 'aria-label': 'Set password of ' + u.name, onclick: async () => {
      if (!pw.value) { say('Type the new password first.'); return; }
      try { await api('PUT', '/api/v1/users/' + encodeURIComponent(u.name), { password: pw.value }); pw.value = ''; say(`Password of ${u.name} changed.`); } catch (e) { say(e.message); }
    } }, 'Set');
    const del = el('button', { type: 'button', class: 'danger', 'aria-label': 'Delete user ' + u.name, onclick: async () => {
      if (!confirm(`Delete user ${u.name}?`)) return;
      try { await api('DELETE', '/api/v1/users/' + encodeURIComponent(u.name)); say(`User ${u.name} deleted.`); loadUsers(); } catch (e) { say(e.message); }
    } }, 'Delete');
    return el('tr', {}, el('td', {}, u.name), el('td', {}, fmtTime(u.created)), el('td', {}, pw, ' ', setPw), el('td', {}, del));
  }));
}

$('user-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('u-name').value.trim();
  try {
    await api('POST', '/api/v1/users', { name, password: $('u-password').value });
    $('u-name').value = '';
    $('u-password').value = '';
    say(`User ${name} added.`);
    loadUsers();
  } catch (e) { say('Add user: ' + e.message); }
});

// --- bans ---

async function loadBans() {
  let bans;
  try { bans = await api('GET', '/api/v1/bans'); } catch (e) { say('Bans: ' + e.message); return; }
  $('bans-body').replaceChildren(...(bans.length ? bans.map((b) => el('tr', {},
    el('td', {}, b.kind), el('td', { class: 'mono' }, b.key), el('td', {}, fmtTime(b.until)),
    el('td', {}, el('button', { type: 'button', 'aria-label': 'Lift ban of ' + b.key, onclick: async () => {
      try { await api('DELETE', '/api/v1/bans/' + encodeURIComponent(b.key)); say(`Ban of ${b.key} lifted.`); loadBans(); } catch (e) { say(e.message); }
    } }, 'Lift')))) : [el('tr', {}, el('td', { colspan: 4, class: 'muted' }, 'No bans.'))]));
}

// --- charts ---

async function loadCharts() {
  let st;
  try { st = await api('GET', '/api/v1/stats'); } catch (e) { say('Stats: ' + e.message); return; }
  const pts = st.points || [];
  const P = (f) => pts.map((p) => [new Date(p.time).getTime(), f(p)]);
  lineChart($('chart-calls'), [{ name: 'calls in progress', color: '#1f5fbf', points: P((p) => p.calls) }]);
  lineChart($('chart-regs'), [{ name: 'registrations', color: '#1b7a3d', points: P((p) => p.registrations) }]);
  lineChart($('chart-new'), [{ name: `new calls per ${st.interval_s}s`, color: '#a66300', points: P((p) => p.new_calls) }]);
}
setInterval(() => { if (!$('charts').hidden && !$('app').hidden) loadCharts(); }, 10000);

// --- start: signed in already? ---

api('GET', '/admin/session').then(signedIn, () => signedOut());
