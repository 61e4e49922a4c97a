// The node's dashboard. Everything it shows comes from the node's API with
// the token the user gave, sent in the Authorization header: the token is
// kept in this tab's sessionStorage and never put in a URL. Text from
// services (names, outputs, log lines) is set as text, never as markup.
'use strict';

const tokenKey = 'andromeda.token';
let caller = null; // {name, role} from GET /v1/node
let nodeInfo = null;
let viewAbort = null; // aborts the current view's requests and streams

// ---- the API ----

class APIError extends Error {
  constructor(status, detail) {
    super(status + ': ' + detail);
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, opts = {}) {
  const headers = { 'Accept': 'application/json', 'Authorization': 'Bearer ' + sessionStorage.getItem(tokenKey) };
  let body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, { method: opts.method || 'GET', headers, body, signal: opts.signal, cache: 'no-store', credentials: 'omit' });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const p = await res.json(); // RFC 9457: title, detail
      detail = p.detail || p.title || detail;
    } catch (e) { /* not JSON */ }
    if (res.status === 401 && !opts.login) {
      signOut('The node no longer accepts this token: ' + detail);
    }
    throw new APIError(res.status, detail);
  }
  if (res.status === 204) return null;
  return res.json();
}

// stream reads GET path as Server-Sent Events, calling onEvent with each
// event's parsed data and id, until the stream ends or signal aborts. It
// uses fetch, not EventSource, so that the token goes in a header. onOpen,
// when given, is called once the node has answered and the stream is on.
async function stream(path, onEvent, signal, lastID, onOpen) {
  const headers = { 'Accept': 'text/event-stream', 'Authorization': 'Bearer ' + sessionStorage.getItem(tokenKey) };
  if (lastID) headers['Last-Event-ID'] = String(lastID);
  const res = await fetch(path, { headers, signal, cache: 'no-store', credentials: 'omit' });
  if (!res.ok) {
    let detail = res.statusText;
    try { const p = await res.json(); detail = p.detail || p.title || detail; } catch (e) { /* not JSON */ }
    throw new APIError(res.status, detail);
  }
  if (onOpen) onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let data = '', id = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '') + '\n';
        else if (line.startsWith('id:')) id = line.slice(3).trim();
      }
      if (!data) continue; // a comment: the heartbeat
      try { onEvent(JSON.parse(data), id); } catch (e) { console.warn('an event that is not JSON', e); }
    }
  }
}

// ---- building the page ----

// el makes an element: attrs are properties (className, href, onclick) or,
// for names with a dash, attributes; children are nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.includes('-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(word) {
  return el('span', { className: 'badge ' + String(word || '').toLowerCase() }, word || '—');
}

function table(headers, rows, empty) {
  if (!rows.length) return el('p', { className: 'empty' }, empty || 'Nothing here yet.');
  return el('table', {},
    el('thead', {}, el('tr', {}, headers.map(h => el('th', {}, h)))),
    el('tbody', {}, rows.map(cells => el('tr', {}, cells.map(c => c instanceof HTMLTableCellElement ? c : el('td', {}, c))))));
}

function kv(pairs) {
  return el('dl', { className: 'kv' }, pairs.filter(p => p[1] !== undefined && p[1] !== null && p[1] !== '').flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function json(v) {
  return el('pre', {}, typeof v === 'string' ? v : JSON.stringify(v, null, 2));
}

function link(hash, text) {
  return el('a', { href: hash }, text);
}

function when(t) {
  if (!t || t.startsWith('0001-')) return '—';
  const d = new Date(t);
  return el('time', { dateTime: t, title: d.toISOString() }, d.toLocaleString());
}

function ago(t) {
  if (!t) return '';
  const s = (Date.parse(t) - Date.now()) / 1000;
  const a = Math.abs(s);
  const txt = a < 60 ? Math.round(a) + ' s' : a < 3600 ? Math.round(a / 60) + ' min' : a < 86400 ? Math.round(a / 3600) + ' h' : Math.round(a / 86400) + ' d';
  return s >= 0 ? 'in ' + txt : txt + ' ago';
}

function dur(ns) {
  if (ns === undefined || ns === null) return '—';
  if (ns < 1e3) return ns + ' ns';
  if (ns < 1e6) return (ns / 1e3).toFixed(1) + ' µs';
  if (ns < 1e9) return (ns / 1e6).toFixed(1) + ' ms';
  return (ns / 1e9).toFixed(2) + ' s';
}

function bytes(n) {
  if (!n) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

function short(s, n = 12) {
  return s && s.length > n ? s.slice(0, n) + '…' : s;
}

function operator() {
  return caller && caller.role === 'operator';
}

function toast(text, bad) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.className = bad ? 'bad' : '';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 3500);
}

// act runs an action a button starts, disabling the button meanwhile, and
// says how it ended.
async function act(button, what, fn) {
  button.disabled = true;
  try {
    await fn();
    toast(what + ': done');
    render();
  } catch (e) {
    toast(what + ': ' + (e.detail || e.message), true);
  } finally {
    button.disabled = false;
  }
}

function show(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children.flat(Infinity).filter(Boolean));
}

function failure(e) {
  if (e.name === 'AbortError') return null;
  return el('p', { className: 'error' }, e.detail ? e.status + ': ' + e.detail : String(e.message || e));
}

// ---- signing in ----

function loginView(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const input = el('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', placeholder: 'and_…', 'aria-label': 'Token' });
  const err = el('p', { className: 'error', id: 'login-error' }, message || '');
  // A form that never submits itself (the script reads it; the page's
  // policy forbids every form action): were the script to fail, the token
  // would still go nowhere, least of all into an address.
  const form = el('form', { className: 'card login', id: 'login', noValidate: true, method: 'post' },
    el('h1', {}, 'Sign in'),
    el('p', {}, 'Give a token of this node: the operator token serve printed, or one made with andromeda token create. It is kept in this tab only, and never in an address.'),
    input, err,
    el('p', {}, el('button', { type: 'submit', className: 'primary' }, 'Sign in')));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) { err.textContent = 'The token is empty.'; return; }
    sessionStorage.setItem(tokenKey, token);
    try {
      await whoAmI(true);
      input.value = '';
      if (!location.hash || location.hash === '#/login') location.hash = '#/services';
      render();
    } catch (e) {
      sessionStorage.removeItem(tokenKey);
      err.textContent = e.status === 401 ? 'The node does not accept this token.' : 'Cannot sign in: ' + (e.detail || e.message);
    }
  });
  show(form);
  input.focus();
}

async function whoAmI(login) {
  nodeInfo = await api('/v1/node', { login });
  caller = nodeInfo.caller || { name: '?', role: '?' };
  document.getElementById('who').textContent = caller.name + ' (' + caller.role + ') · ' + (nodeInfo.version || '');
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
}

function signOut(message) {
  sessionStorage.removeItem(tokenKey);
  caller = null;
  nodeInfo = null;
  if (viewAbort) viewAbort.abort();
  loginView(message);
}

// ---- services ----

function triggerText(t) {
  return t.kind === 'manual' ? 'manual' : t.kind + ' ' + (t.spec || '');
}

async function servicesView(signal) {
  const list = await api('/v1/services', { signal });
  list.sort((a, b) => a.name.localeCompare(b.name));
  const clustered = list.some(s => s.node);
  const rows = list.map(s => {
    const next = (s.triggers || []).map(t => t.next).filter(Boolean).sort()[0];
    return [
      link('#/services/' + encodeURIComponent(s.name), s.name),
      s.version,
      s.owner,
      clustered ? (s.node || '—') : undefined,
      badge(s.phase || s.status),
      s.health ? badge(s.health.healthy ? 'healthy' : 'unhealthy') : '—',
      (s.triggers || []).map(triggerText).join(', ') || '—',
      next ? ago(next) : '—',
      badge(s.decision && s.decision.verdict),
    ].filter(c => c !== undefined);
  });
  const headers = ['Name', 'Version', 'Owner', clustered ? 'Node' : undefined, 'Phase', 'Health', 'Triggers', 'Next tick', 'Decision'].filter(Boolean);
  return [el('h1', {}, 'Services'), el('div', { id: 'services' }, table(headers, rows, caller.role === 'operator' ? 'No services on this node yet: andromeda submit DIR adds one.' : 'You have no services here yet: andromeda submit DIR adds one.'))];
}

async function serviceView(signal, name) {
  const s = await api('/v1/services/' + encodeURIComponent(name), { signal });
  const runs = await api('/v1/services/' + encodeURIComponent(name) + '/runs?limit=20', { signal });
  const d = s.decision || {};
  const buttons = [];
  const started = s.phase === 'started' || s.status === 'dormant';
  if (started) {
    const b = el('button', { id: 'stop' }, 'Stop');
    b.onclick = () => act(b, 'stop ' + name, () => api('/v1/services/' + encodeURIComponent(name) + '/stop', { method: 'POST', json: {} }));
    buttons.push(b);
  } else if (s.phase === 'stopped' || s.phase === 'deployed' || s.phase === 'failed') {
    const b = el('button', { id: 'start' }, 'Start');
    b.onclick = () => act(b, 'start ' + name, () => api('/v1/services/' + encodeURIComponent(name) + '/start', { method: 'POST', json: {} }));
    buttons.push(b);
  }
  let fire = null;
  if (operator()) {
    const manual = (s.triggers || []).find(t => t.kind === 'manual');
    const input = el('textarea', { id: 'fire-input', spellcheck: false, 'aria-label': 'Message' });
    input.value = manual && manual.spec && manual.spec.startsWith('{') ? manual.spec : '{}';
    const out = el('div', { id: 'fire-result' });
    const b = el('button', { id: 'fire', className: 'primary' }, 'Fire');
    b.onclick = async () => {
      let message;
      try { message = JSON.parse(input.value || 'null'); } catch (e) { toast('The message is not JSON: ' + e.message, true); return; }
      b.disabled = true;
      try {
        const run = await api('/v1/services/' + encodeURIComponent(name) + '/fire', { method: 'POST', json: { message } });
        out.replaceChildren(el('p', {}, 'Run ', link('#/runs/' + encodeURIComponent(run.id), run.id), ' ', badge(run.outcome), ' in ', dur(run.duration_ns)));
        toast('fired ' + name + ': ' + run.outcome);
        const fresh = await api('/v1/services/' + encodeURIComponent(name) + '/runs?limit=20', { signal });
        document.getElementById('service-runs').replaceChildren(runsTable(fresh.runs, false));
      } catch (e) {
        out.replaceChildren(failure(e));
      } finally {
        b.disabled = false;
      }
    };
    fire = el('div', { className: 'card' }, el('h2', {}, 'Fire by hand'), el('p', { className: 'muted' }, 'The message, as JSON:'), input, el('div', { className: 'toolbar' }, b), out);
  }
  return [
    el('h1', {}, s.name, ' ', el('span', { className: 'muted' }, s.version), ' ', badge(s.phase || s.status)),
    el('div', { className: 'toolbar' }, buttons),
    el('div', { className: 'grid2' },
      el('div', { className: 'card' }, kv([
        ['Owner', s.owner],
        ['Node', s.node],
        ['Phase', s.phase],
        ['Status', s.status_detail],
        ['Health', s.health ? (s.health.healthy ? 'healthy' : 'unhealthy, ' + s.health.consecutive_failures + ' failures in a row') : undefined],
        ['Last error', s.health && s.health.last_error],
        ['Revision', s.revision],
        ['Digest', el('code', { title: s.digest }, short(s.digest, 19))],
        ['Size', bytes(s.size_bytes) + ', ' + s.files + ' files'],
        ['Submitted', when(s.submitted_at)],
      ])),
      el('div', { className: 'card' }, el('h2', {}, 'Decision ', badge(d.verdict)), kv([
        ['Driver', d.driver],
        ['Network', d.network],
        ['Memory', d.limits && bytes(d.limits.memory_bytes)],
        ['Timeout', d.limits && d.limits.timeout_ms ? d.limits.timeout_ms + ' ms' : undefined],
        ['Concurrency', d.limits && d.limits.concurrency],
      ]), el('ul', { className: 'reasons' }, (d.reasons || []).map(r => el('li', { className: r.ok ? 'yes' : 'no' }, el('strong', {}, r.rule), ': ', r.detail))))),
    el('h2', {}, 'Triggers'),
    table(['Trigger', 'Kind', 'On', 'Next'], (s.triggers || []).map(t => [t.name, t.kind, t.spec || '', t.next ? [when(t.next), ' (', ago(t.next), ')'] : '—']), 'No triggers: it runs only when fired.'),
    fire,
    el('h2', {}, 'Recent runs'),
    el('div', { id: 'service-runs' }, runsTable(runs.runs, false)),
  ];
}

// ---- runs ----

function runsTable(runs, withService) {
  return table(['Run', withService ? 'Service' : undefined, 'Trigger', 'Outcome', 'Started', 'Took'].filter(Boolean),
    runs.map(r => [
      link('#/runs/' + encodeURIComponent(r.id), r.id),
      withService ? link('#/services/' + encodeURIComponent(r.service), r.service) : undefined,
      r.trigger.kind + (r.trigger.name ? ' ' + r.trigger.name : ''),
      badge(r.outcome),
      when(r.start),
      el('td', { className: 'num' }, dur(r.duration_ns)),
    ].filter(c => c !== undefined)), 'No runs yet.');
}

async function runsView(signal) {
  const page = await api('/v1/runs?limit=50', { signal });
  const refresh = el('button', { id: 'refresh' }, 'Refresh');
  refresh.onclick = () => render();
  return [el('h1', {}, 'Runs'), el('div', { className: 'toolbar' }, refresh, el('span', { className: 'muted' }, 'The 50 newest runs you may see.')), el('div', { id: 'runs' }, runsTable(page.runs, true))];
}

async function runView(signal, id) {
  const first = await api('/v1/runs/' + encodeURIComponent(id), { signal });
  // The service's own route adds the executions and the signed usage.
  const r = await api('/v1/services/' + encodeURIComponent(first.service) + '/runs/' + encodeURIComponent(id), { signal });
  const out = r.output || {};
  const usage = r.usage || {};
  const logs = el('pre', { id: 'run-logs' }, 'reading…');
  readLogs(r, logs, signal);
  return [
    el('h1', {}, 'Run ', el('code', {}, r.id), ' ', badge(r.outcome)),
    el('div', { className: 'grid2' },
      el('div', { className: 'card' }, kv([
        ['Service', link('#/services/' + encodeURIComponent(r.service), r.service + ' ' + r.version)],
        ['Trigger', r.trigger.kind + (r.trigger.name ? ' ' + r.trigger.name : '') + (r.trigger.topic ? ' on ' + r.trigger.topic : '') + (r.trigger.publisher ? ' from ' + r.trigger.publisher : '')],
        ['Flow', r.trigger.flow ? [link('#/flows/' + encodeURIComponent(r.trigger.flow.flow), r.trigger.flow.flow), ' module ' + r.trigger.flow.module + ', run ' + r.trigger.flow.run] : undefined],
        ['Node', r.node],
        ['Started', when(r.start)],
        ['Took', dur(r.duration_ns)],
        ['Attempts', r.attempts > 1 ? r.attempts : undefined],
        ['Revision', r.revision],
        ['No-op', r.noop_reason],
        ['Error', r.error ? el('span', { className: 'bad' }, r.error) : undefined],
        ['Truncated', r.truncated ? 'its output was dropped to keep the record bounded' : undefined],
      ])),
      el('div', { className: 'card' }, el('h2', {}, 'Usage'), kv([
        ['Wall', dur(usage.wall_ns)],
        ['CPU', usage.cpu_ns ? dur(usage.cpu_ns) : undefined],
        ['Peak memory', usage.peak_memory_bytes ? bytes(usage.peak_memory_bytes) + (usage.memory_scope ? ' (' + usage.memory_scope + ')' : '') : undefined],
        ['Cold start', usage.start_ns ? dur(usage.start_ns) : undefined],
        ['Network', usage.network_rx_bytes || usage.network_tx_bytes ? bytes(usage.network_rx_bytes) + ' in, ' + bytes(usage.network_tx_bytes) + ' out' : undefined],
        ['Counters', usage.counters ? Object.entries(usage.counters).map(([k, v]) => k + '=' + v).join(', ') : undefined],
        ['Signed usage', r.usage_record ? 'yes: andromeda verify usage ' + r.id : undefined],
      ]))),
    el('h2', {}, 'Input'),
    r.input !== undefined ? el('div', { id: 'run-input' }, json(r.input)) : el('p', { className: 'muted' }, r.input_bytes ? 'Not kept: ' + bytes(r.input_bytes) + ', over 16 KiB.' : 'None.'),
    el('h2', {}, 'Output'),
    r.output ? json(out) : el('p', { className: 'muted' }, 'None.'),
    el('h2', {}, 'Actions and their executions'),
    table(['Actions', 'Kind', 'Target', 'State', 'Attempts', 'Answer'], (r.executions || []).map(x => [(x.actions || []).join(', '), x.kind, x.target || x.endpoint || '', badge(x.state), String(x.attempts), x.error ? el('span', { className: 'bad' }, x.error) : x.status ? 'HTTP ' + x.status : x.sequence ? 'event ' + x.sequence : '']), 'No actions.'),
    (out.actions || []).length ? [el('h2', {}, 'Actions asked for'), json(out.actions)] : null,
    (r.emitted || []).length ? [el('h2', {}, 'Emitted'), table(['Topic', 'Sequence', 'Error'], r.emitted.map(e => [e.topic, e.seq ? String(e.seq) : '—', e.error || '']))] : null,
    el('h2', {}, 'Logs'),
    logs,
  ];
}

async function readLogs(r, pre, signal) {
  const lines = [];
  try {
    await stream('/v1/services/' + encodeURIComponent(r.service) + '/logs?run=' + encodeURIComponent(r.id), ev => {
      if (ev.kind === 'run.log' || ev.line !== undefined) lines.push((ev.stream ? ev.stream + ' ' : '') + (ev.line || ''));
    }, signal);
    pre.textContent = lines.length ? lines.join('\n') : 'No log lines.';
  } catch (e) {
    if (e.name !== 'AbortError') pre.textContent = 'Cannot read the logs: ' + (e.detail || e.message);
  }
}

// ---- live ----

async function liveView(signal) {
  const dot = el('span', { className: 'live-dot', id: 'live-dot' });
  const state = el('span', { id: 'live-state' }, 'connecting…');
  const body = el('tbody', { id: 'live-events' });
  const tbl = el('table', {}, el('thead', {}, el('tr', {}, ['Time', 'Event', 'Service', 'Run', 'Outcome', 'Detail'].map(h => el('th', {}, h)))), body);
  let last = 0;
  const add = (ev, id) => {
    if (id) last = id;
    body.prepend(el('tr', {},
      el('td', {}, new Date(ev.time).toLocaleTimeString()),
      el('td', {}, ev.kind),
      el('td', {}, ev.service ? link('#/services/' + encodeURIComponent(ev.service), ev.service) : ''),
      el('td', {}, ev.run ? link('#/runs/' + encodeURIComponent(ev.run), ev.run) : ''),
      el('td', {}, ev.outcome ? badge(ev.outcome) : ev.phase ? badge(ev.phase) : ''),
      el('td', {}, ev.detail || ev.line || '')));
    while (body.children.length > 500) body.lastChild.remove();
  };
  (async () => {
    let wait = 500;
    while (!signal.aborted) {
      try {
        await stream('/v1/watch', add, signal, last, () => {
          dot.className = 'live-dot on';
          state.textContent = 'live: what happens on the node as it is stored';
          wait = 500;
        });
        state.textContent = 'the node ended the stream; connecting again';
      } catch (e) {
        if (e.name === 'AbortError' || signal.aborted) return;
        state.textContent = 'disconnected (' + (e.detail || e.message) + '); trying again';
      }
      dot.className = 'live-dot';
      await new Promise(res => setTimeout(res, wait));
      wait = Math.min(wait * 2, 10000);
    }
  })();
  return [el('h1', {}, 'Live'), el('div', { className: 'toolbar' }, dot, state), tbl];
}

// ---- flows ----

async function flowsView(signal) {
  const flows = await api('/v1/flows', { signal });
  return [el('h1', {}, 'Flows'), table(['Flow', 'Version', 'Owner', 'Running', 'Modules', 'Queued', 'In flight'],
    flows.map(f => [link('#/flows/' + encodeURIComponent(f.id), f.id), f.version, f.owner, badge(f.running ? 'started' : 'stopped'), String(f.modules.length), String(f.queued), String(f.in_flight)]),
    'No flows: andromeda flow apply FILE adds one.')];
}

// graph draws a flow's modules as boxes in columns by their distance from
// the entry modules, and its wires as curves between them.
function graph(f) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const mod = w => w.split(':')[0];
  const ids = f.modules.map(m => m.id);
  const into = new Map(ids.map(id => [id, 0]));
  for (const w of f.wires) if (!w.loop) into.set(mod(w.to), (into.get(mod(w.to)) || 0) + 1);
  const depth = new Map();
  const queue = ids.filter(id => !into.get(id));
  queue.forEach(id => depth.set(id, 0));
  for (let i = 0; i < queue.length; i++) {
    for (const w of f.wires) {
      if (w.loop || mod(w.from) !== queue[i]) continue;
      const to = mod(w.to), d = depth.get(queue[i]) + 1;
      if (!depth.has(to) || depth.get(to) < d && d <= ids.length) {
        depth.set(to, d);
        queue.push(to);
      }
    }
  }
  ids.forEach(id => { if (!depth.has(id)) depth.set(id, 0); });
  const cols = new Map();
  const pos = new Map();
  const W = 170, H = 46, GX = 70, GY = 24;
  for (const m of f.modules) {
    const c = depth.get(m.id);
    const row = cols.get(c) || 0;
    cols.set(c, row + 1);
    pos.set(m.id, { x: 20 + c * (W + GX), y: 20 + row * (H + GY) });
  }
  const width = 40 + Math.max(...[...cols.keys()].map(c => c + 1), 1) * (W + GX) - GX;
  const height = 40 + Math.max(...cols.values(), 1) * (H + GY) - GY;
  const root = svg('svg', { class: 'flow', id: 'flow-graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'The flow\'s modules and wires' });
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'head' }));
  const defs = svg('defs', {});
  defs.append(marker);
  root.append(defs);
  for (const w of f.wires) {
    const a = pos.get(mod(w.from)), b = pos.get(mod(w.to));
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const mx = (x1 + x2) / 2;
    const d = x2 > x1 ? `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` : `M${x1},${y1} C${x1 + 60},${y1 - 60} ${x2 - 60},${y2 - 60} ${x2},${y2}`;
    const p = svg('path', { d, class: w.loop ? 'loop' : '', 'marker-end': 'url(#arrow)' });
    p.append(svg('title', {}, w.from + ' → ' + w.to + (w.loop ? ' (loop, at most ' + w.loop + ')' : '')));
    root.append(p);
  }
  for (const m of f.modules) {
    const p = pos.get(m.id);
    const g = svg('g', { transform: `translate(${p.x},${p.y})`, 'data-module': m.id });
    g.append(svg('rect', { width: W, height: H, rx: 6, class: m.away ? 'away' : '' }));
    g.append(svg('text', { x: 10, y: 19 }, m.id));
    g.append(svg('text', { x: 10, y: 36, class: 'sub' }, (m.service || m.language || '') + (m.runtime ? ' · ' + m.runtime : '')));
    root.append(g);
  }
  return root;
}

async function flowView(signal, id) {
  const f = await api('/v1/flows/' + encodeURIComponent(id), { signal });
  const runs = await api('/v1/flows/' + encodeURIComponent(id) + '/runs?limit=20', { signal });
  const buttons = [];
  const path = '/v1/flows/' + encodeURIComponent(id);
  if (f.running) {
    const b = el('button', { id: 'flow-stop' }, 'Stop');
    b.onclick = () => act(b, 'stop ' + id, () => api(path + '/stop', { method: 'POST', json: {} }));
    buttons.push(b);
  } else {
    const b = el('button', { id: 'flow-start' }, 'Start');
    b.onclick = () => act(b, 'start ' + id, () => api(path + '/start', { method: 'POST', json: {} }));
    buttons.push(b);
  }
  const input = el('textarea', { id: 'flow-input', spellcheck: false, 'aria-label': 'Message' });
  input.value = '{}';
  const fire = el('button', { id: 'flow-fire', className: 'primary', disabled: !f.running }, 'Fire');
  fire.onclick = () => {
    let message;
    try { message = JSON.parse(input.value || 'null'); } catch (e) { toast('The message is not JSON: ' + e.message, true); return; }
    act(fire, 'fire ' + id, () => api(path + '/fire', { method: 'POST', json: { message, wait: '10s' } }));
  };
  return [
    el('h1', {}, f.id, ' ', el('span', { className: 'muted' }, f.version), ' ', badge(f.running ? 'started' : 'stopped')),
    el('div', { className: 'toolbar' }, buttons),
    graph(f),
    el('h2', {}, 'Modules'),
    table(['Module', 'Service', 'Runtime', 'Waiting', 'Ran', 'Failed', 'Last minute'], f.modules.map(m => [m.id, m.service ? link('#/services/' + encodeURIComponent(m.service), m.service) : (m.language || ''), m.runtime + (m.away ? ' (away)' : ''), String(m.waiting || 0), String(m.ran || 0), String(m.failed || 0), String(m.last_minute || 0)])),
    (f.triggers || []).length ? [el('h2', {}, 'Triggers'), table(['Trigger', 'Kind', 'On', 'Module', 'Next'], f.triggers.map(t => [t.name, t.kind, t.on, t.module || 'entry modules', t.next ? ago(t.next) : '—']))] : null,
    el('div', { className: 'card' }, el('h2', {}, 'Fire'), input, el('div', { className: 'toolbar' }, fire, f.running ? null : el('span', { className: 'muted' }, 'Start the flow to fire it.'))),
    el('h2', {}, 'Recent flow runs'),
    table(['Flow run', 'Outcome', 'Started', 'Took', 'Steps', 'Error'], runs.map(r => [r.id, badge(r.outcome), when(r.start), el('td', { className: 'num' }, dur(r.duration_ns)),
      (r.steps || []).map((s, i) => [i ? ', ' : '', s.run ? link('#/runs/' + encodeURIComponent(s.run), s.module) : s.module]), r.error || '']), 'No flow runs yet.'),
  ];
}

// ---- nodes ----

async function nodesView(signal) {
  let nodes;
  try {
    nodes = await api('/v1/nodes', { signal });
  } catch (e) {
    if (e.status !== 404) throw e;
    nodes = null;
  }
  const me = [el('h1', {}, 'Nodes'), el('div', { className: 'card' }, el('h2', {}, 'This node'), kv([
    ['Version', nodeInfo.version],
    ['Started', when(nodeInfo.started)],
    ['Bus', nodeInfo.bus],
    ['Data', nodeInfo.data_dir],
    ['Services', nodeInfo.services],
    ['Key', el('code', {}, short(nodeInfo.node_key, 24))],
    ['Drivers', (nodeInfo.drivers || []).map(d => d.name + (d.enabled ? '' : ' (off' + (d.reason ? ': ' + d.reason : '') + ')')).join(', ')],
  ]))];
  if (!nodes) return [me, el('p', { className: 'muted' }, 'This node runs alone.')];
  return [me, el('h2', {}, 'Cluster'), table(['Node', 'Health', 'Heartbeat', 'API', 'Services', 'Drivers', 'Labels', 'Version'],
    nodes.map(n => [n.name, badge(n.health), Math.round(n.beat_age_ms) + ' ms ago', n.api, n.services + (n.services_max ? ' / ' + n.services_max : ''), (n.drivers || []).join(', '), Object.entries(n.labels || {}).map(([k, v]) => k + '=' + v).join(', '), n.version]))];
}

// ---- routing ----

const routes = [
  [/^#\/services$/, servicesView, 'services'],
  [/^#\/services\/([^/]+)$/, serviceView, 'services'],
  [/^#\/runs$/, runsView, 'runs'],
  [/^#\/runs\/([^/]+)$/, runView, 'runs'],
  [/^#\/live$/, liveView, 'live'],
  [/^#\/flows$/, flowsView, 'flows'],
  [/^#\/flows\/([^/]+)$/, flowView, 'flows'],
  [/^#\/nodes$/, nodesView, 'nodes'],
];

async function render() {
  if (viewAbort) viewAbort.abort();
  if (!sessionStorage.getItem(tokenKey)) {
    loginView();
    return;
  }
  if (!caller) {
    try {
      await whoAmI(false);
    } catch (e) {
      // A refused token showed the sign-in form (signOut); anything else
      // is said, with the way back.
      if (e.status !== 401) {
        const again = el('button', { id: 'again' }, 'Try again');
        again.onclick = () => render();
        show(el('h1', {}, 'The node does not answer'), failure(e), again);
      }
      return;
    }
  }
  const hash = location.hash || '#/services';
  const route = routes.find(([re]) => re.test(hash));
  if (!route) {
    location.hash = '#/services';
    return;
  }
  const [re, view, nav] = route;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === nav);
  const abort = new AbortController();
  viewAbort = abort;
  const args = hash.match(re).slice(1).map(decodeURIComponent);
  try {
    const content = await view(abort.signal, ...args);
    if (viewAbort === abort) {
      show(content);
      document.body.dataset.view = nav;
      document.body.dataset.loaded = hash;
    }
  } catch (e) {
    if (viewAbort === abort && e.name !== 'AbortError' && caller) {
      show(el('h1', {}, 'Cannot show this page'), failure(e));
      document.body.dataset.loaded = hash;
    }
  }
}

document.getElementById('logout').addEventListener('click', () => signOut('Signed out.'));
window.addEventListener('hashchange', render);
render();
