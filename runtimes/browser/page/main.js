'use strict';
// The browser runtime's page (runtimes/browser; its doc.go describes the
// protocol). It connects to the node over a WebSocket, authenticates with
// the token of its address's fragment, announces itself as a JavaScript
// runtime and hands what the node sends to its module worker (worker.js,
// the Node.js shim's module loader and a CommonJS wrapper), whose answers
// it sends back. Modules run in the worker, not here: they cannot read
// the token, the page or its storage, and a module that never stops can
// be ended by restarting the worker while the page stays connected.
(() => {
  const PROTOCOL = 1;
  const KEY_TOKEN = 'andromeda.browser.token';
  const KEY_RUNTIME = 'andromeda.browser.runtime';
  const KEY_NAME = 'andromeda.browser.name';
  // Closes a reconnect cannot fix: a refused token, a protocol the node
  // does not speak, another page that took this runtime's id.
  const FINAL = new Set([1002, 1003, 1008, 4000]);
  // How the node spells the start of its messages, read without parsing
  // an invoke's input here (the worker parses it).
  const HEAD = /^\{"type":"(\w+)","id":"([^"\\]*)"/;

  const base = location.pathname.replace(/\/+$/, '');
  const $ = (id) => document.getElementById(id);

  // The token comes in the fragment (#token=…), which browsers never send
  // to a server, and is kept in this tab's session storage so that a
  // reload reconnects; the fragment is then taken out of the address bar.
  // The runtime's id is kept there too: a reload, or a page opened again
  // in this tab, is the same runtime. #runtime=ID and #name=NAME choose
  // them.
  const frag = new URLSearchParams(location.hash.slice(1));
  for (const [k, key] of [['token', KEY_TOKEN], ['runtime', KEY_RUNTIME], ['name', KEY_NAME]]) {
    if (frag.has(k)) sessionStorage.setItem(key, frag.get(k));
  }
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  const token = sessionStorage.getItem(KEY_TOKEN) || '';
  let runtime = sessionStorage.getItem(KEY_RUNTIME);
  if (!runtime) {
    const b = crypto.getRandomValues(new Uint8Array(8));
    runtime = 'b-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    sessionStorage.setItem(KEY_RUNTIME, runtime);
  }
  const name = sessionStorage.getItem(KEY_NAME) || 'browser';
  $('runtime').textContent = runtime;
  $('name').textContent = name;

  let ws = null; // the open connection, or null
  let welcome = null; // the node's welcome on it: the handshake is done
  let attempts = 0; // failed connections in a row
  let worker = null;
  const loads = new Map(); // module key → its load message, for a restarted worker
  const inflight = new Map(); // invocation id → its cancel's grace timer, or 0
  let answered = 0;

  function setState(state, text, reason) {
    const el = $('state');
    el.dataset.state = state;
    el.textContent = text;
    $('reason').hidden = !reason;
    $('reason').textContent = reason || '';
    show();
  }

  let showing = false;
  function show() {
    if (showing) return;
    showing = true;
    setTimeout(() => {
      showing = false;
      $('modules').textContent = loads.size;
      $('inflight').textContent = inflight.size;
      $('answered').textContent = answered;
    }, 200);
  }

  function send(text) {
    if (ws && welcome && ws.readyState === WebSocket.OPEN) ws.send(text);
  }

  function startWorker() {
    worker = new Worker(base + '/worker.js', { name: 'andromeda modules' });
    worker.onmessage = (ev) => {
      const [id, text] = ev.data;
      if (id !== null) { // an answer: only for what is still in flight
        if (!inflight.has(id)) return;
        clearTimeout(inflight.get(id));
        inflight.delete(id);
        answered++;
        show();
      }
      send(text);
    };
    // A module's error outside its handler (a timer's callback that
    // throws) does not end the worker; it goes to the console.
    worker.onerror = (ev) => {
      ev.preventDefault();
      console.error('andromeda browser runtime: a module threw outside its handler:', ev.message);
    };
    if (welcome) worker.postMessage(JSON.stringify({ type: 'config', max_message: welcome.max_message }));
    for (const text of loads.values()) worker.postMessage(text);
  }

  // restartWorker ends the worker and what runs in it (each invocation in
  // flight is answered with an error: cancelled for the one whose cancel
  // was not heeded) and starts a new one with the same modules.
  function restartWorker(why, cancelled) {
    worker.terminate();
    for (const [id, timer] of inflight) {
      clearTimeout(timer);
      send(JSON.stringify({ type: 'error', id, error: { code: id === cancelled ? 'cancelled' : 'error', message: why } }));
    }
    inflight.clear();
    startWorker();
    show();
  }

  function receive(text) {
    if (typeof text !== 'string') return;
    const head = HEAD.exec(text);
    let msg = null;
    let type;
    let id;
    if (head) {
      [, type, id] = head;
    } else {
      try {
        msg = JSON.parse(text);
      } catch {
        return;
      }
      if (!msg || typeof msg !== 'object') return;
      type = msg.type;
      id = msg.id;
    }
    if (!welcome) {
      if (type !== 'welcome') return;
      welcome = msg || JSON.parse(text);
      attempts = 0;
      // A new connection starts with no module loaded: the node sends
      // each again before its first invocation.
      loads.clear();
      worker.postMessage(JSON.stringify({ type: 'reset' }));
      worker.postMessage(JSON.stringify({ type: 'config', max_message: welcome.max_message }));
      setState('connected', 'Connected as runtime ' + runtime);
      return;
    }
    switch (type) {
      case 'invoke':
        inflight.set(id, 0);
        worker.postMessage(text);
        show();
        break;
      case 'load':
      case 'unload': {
        const m = msg || JSON.parse(text);
        if (type === 'load') loads.set(m.module, text);
        else loads.delete(m.module);
        worker.postMessage(text);
        show();
        break;
      }
      case 'cancel': {
        if (!inflight.has(id) || inflight.get(id)) break;
        worker.postMessage(text);
        const grace = welcome.cancel_grace_ms;
        inflight.set(id, setTimeout(() => {
          if (inflight.has(id)) restartWorker(`the module worker was restarted: invocation ${id} did not stop within ${grace}ms of its cancel`, id);
        }, grace));
        break;
      }
      default: // messages of later versions are ignored
    }
  }

  // dropInflight ends what runs for a connection that is gone: the node
  // has failed it already, and answers it no more.
  function dropInflight() {
    for (const [id, timer] of inflight) {
      clearTimeout(timer);
      worker.postMessage(JSON.stringify({ type: 'cancel', id }));
    }
    inflight.clear();
    show();
  }

  function connect() {
    setState('connecting', 'Connecting…');
    const url = new URL(base + '/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const sock = new WebSocket(url);
    ws = sock;
    sock.onopen = () => {
      sock.send(JSON.stringify({ type: 'auth', id: 'auth', token }));
      sock.send(JSON.stringify({ type: 'hello', id: 'hello', runtime, name, version: navigator.userAgent, languages: ['javascript'], protocol: PROTOCOL }));
    };
    sock.onmessage = (ev) => {
      if (sock === ws) receive(ev.data);
    };
    sock.onclose = (ev) => {
      if (sock !== ws) return;
      ws = null;
      welcome = null;
      dropInflight();
      if (FINAL.has(ev.code)) {
        setState('refused', 'Refused by the node', ev.reason || `closed with status ${ev.code}`);
        return;
      }
      attempts++;
      const wait = Math.min(10000, 250 * 2 ** Math.min(attempts, 6)) * (0.75 + Math.random() / 2);
      setState('disconnected', `Disconnected; connecting again in ${(wait / 1000).toFixed(1)} s`, ev.reason || '');
      setTimeout(connect, wait);
    };
  }

  // A page the browser hides to keep it (its back-forward cache) would
  // hold its connection frozen, answering nothing: it closes it instead,
  // so the node fails what is in flight at once, and connects again if
  // the browser shows it again.
  addEventListener('pagehide', () => {
    const sock = ws;
    if (!sock) return;
    ws = null;
    welcome = null;
    dropInflight();
    sock.close(1000, 'the page went away');
  });
  addEventListener('pageshow', (ev) => {
    if (ev.persisted && token && !ws) connect();
  });

  startWorker();
  if (!token) {
    setState('refused', 'No token', 'Open this page as …/runtime/browser#token=TOKEN, with a token of the runtime role.');
  } else {
    connect();
  }
})();
