'use strict';
// Andromeda runtime shim for Node.js: runtime protocol version 1
// (docs/runtime-protocol.md). The process driver runs
//
//   node /runtime/shim.cjs
//
// in the worker's sandbox. The shim reads newline-delimited JSON messages on
// standard input and writes them on standard output; whatever the service
// prints (console.log, process.stdout.write) goes to standard error, which
// the node keeps as the service's log. It uses nothing but Node's own
// modules and runs on Node.js 18 and later.
//
// A service is an ES module or a CommonJS module (the entry's extension and
// the nearest package.json "type" decide, as Node always does) exporting
//
//   decide(ctx)          ctx is the invocation's input plus signal, deadline, log() and usage()
//   handle(input[, ctx]) input is the contract's Input object
//
// (as named exports, or on the default export), sync or async. It returns
// the contract's Output object ({actions, emit, state, noop}); an array is
// shorthand for {actions: array}. A thrown error or rejected promise ends
// the run as crashed with the error's message and stack, and so does an
// output JSON cannot encode (a cycle, a BigInt, nesting deeper than the
// stack); the worker lives on.
//
// A service may also export test() (sync or async): its self-test, which the
// node runs at deploy and on `andromeda test NAME`. A throw or rejection
// fails it with the error's message.

const { pathToFileURL } = require('node:url');

const PROTOCOL = 1;
// How long before a shutdown's "by" the invocations still running are
// cancelled (ms): the protocol's "shortly before".
const CANCEL_BEFORE_BY = 100;
let maxLine = 8 << 20;
let maxInFlight = 64;

// The protocol owns the real standard output; the service gets stderr.
const protocolWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
globalThis.console = new console.Console({ stdout: process.stderr, stderr: process.stderr });

function send(msg) {
  protocolWrite(JSON.stringify(msg) + '\n');
}

function fatal(why) {
  process.stderr.write('andromeda node shim: ' + why + '\n');
  process.exit(1);
}

const modules = new Map(); // module id → {fn, kind, wantsCtx}
const inflight = new Map(); // invocation id → {ctrl, aborted}: ctrl made when the handler asks for its signal
let initialised = false;
let shuttingDown = false;

function pickTest(ns) {
  for (const c of [ns, ns && ns.default]) {
    if (c && typeof c.test === 'function') return c.test.bind(c);
  }
  return null;
}

function pick(ns) {
  for (const c of [ns, ns && ns.default]) {
    if (c && typeof c.decide === 'function') return { fn: c.decide.bind(c), kind: 'decide' };
    if (c && typeof c.handle === 'function') return { fn: c.handle.bind(c), kind: 'handle', wantsCtx: c.handle.length >= 2 };
  }
  if (ns && typeof ns.default === 'function') return { fn: ns.default, kind: 'handle', wantsCtx: ns.default.length >= 2 };
  return null;
}

async function init(msg) {
  if (msg.protocol !== PROTOCOL) {
    send({ type: 'error', id: msg.id, error: { code: 'init', message: `protocol ${msg.protocol} is not supported: this shim speaks ${PROTOCOL}` } });
    process.exit(1);
  }
  if (msg.max_line > 0) maxLine = msg.max_line;
  if (msg.max_in_flight > 0) maxInFlight = msg.max_in_flight;
  try {
    for (const m of msg.modules || []) {
      const ns = await import(pathToFileURL(m.entry).href);
      const found = pick(ns);
      if (!found) throw new Error(`${m.entry} exports neither decide(ctx) nor handle(input)`);
      found.test = pickTest(ns);
      modules.set(m.id, found);
    }
    if (modules.size === 0) throw new Error('init names no module');
  } catch (e) {
    send({ type: 'error', id: msg.id, error: { code: 'init', message: String((e && e.message) || e), stack: e && e.stack } });
    process.exit(1);
  }
  initialised = true;
  send({ type: 'ready', id: msg.id, protocol: PROTOCOL, runtime: 'node', version: process.version, concurrency: maxInFlight, accepts: ['test'] });
}

// runTest answers a test message: the module's test() passed (or it has
// none) in a result, or failed in an error.
async function runTest(msg) {
  const mod = modules.get(msg.module || 'main');
  if (!mod) {
    sendError(msg.id, 'error', `no module ${JSON.stringify(msg.module)}`);
    return;
  }
  if (!mod.test) {
    send({ type: 'result', id: msg.id, output: { ran: false } });
    return;
  }
  try {
    await mod.test();
  } catch (e) {
    const { message, stack } = describe(e);
    send({ type: 'error', id: msg.id, error: { code: 'error', message, stack } });
    return;
  }
  send({ type: 'result', id: msg.id, output: { ran: true } });
}

function context(id, msg, slot) {
  return {
    // The AbortController is made only for a handler that reads its signal
    // (most do not, and making one costs on every invocation).
    get signal() {
      if (!slot.ctrl) {
        slot.ctrl = new AbortController();
        if (slot.aborted) slot.ctrl.abort();
      }
      return slot.ctrl.signal;
    },
    deadline: msg.deadline ? new Date(msg.deadline) : null,
    log(message, level) {
      if (inflight.has(id)) send({ type: 'log', id, level: level || 'info', message: String(message) });
    },
    // usage(name, amount) adds amount to the run's counter name; the runner
    // checks and sums the reports (docs/runtime-protocol.md, "usage").
    usage(name, amount) {
      const n = Number(amount);
      if (inflight.has(id) && Number.isFinite(n)) send({ type: 'usage', id, counters: { [String(name)]: n } });
    },
  };
}

function invoke(msg) {
  const id = msg.id;
  if (typeof id !== 'string') {
    sendError('', 'bad_input', "an invoke's id must be a string");
    return;
  }
  const input = msg.input;
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    sendError(id, 'bad_input', `the input must be a JSON object, not ${input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input}`);
    return;
  }
  if (shuttingDown) {
    send({ type: 'error', id, error: { code: 'unavailable', message: 'the worker is shutting down' } });
    return;
  }
  const mod = modules.get(msg.module || 'main');
  if (!mod) {
    send({ type: 'error', id, error: { code: 'error', message: `no module ${JSON.stringify(msg.module)}` } });
    return;
  }
  const slot = { ctrl: null, aborted: false };
  inflight.set(id, slot);
  let r;
  let thenable;
  try {
    if (mod.kind === 'decide') {
      r = mod.fn(Object.assign({}, msg.input, context(id, msg, slot)));
    } else {
      r = mod.wantsCtx ? mod.fn(msg.input, context(id, msg, slot)) : mod.fn(msg.input);
    }
    // A value's then may be a getter that throws, or a then that throws.
    thenable = r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function';
    if (thenable) r.then((v) => done(id, v), (e) => fail(id, e));
  } catch (e) {
    fail(id, e);
    return;
  }
  if (!thenable) done(id, r);
}

// describe returns what was thrown as a message and maybe a stack, both
// strings, whatever the value is: a getter or toString that throws, or an
// object without a prototype, must not end the worker.
function describe(e) {
  let message;
  let stack;
  try {
    message = String((e && e.message) || e);
  } catch {
    message = 'a thrown value that cannot be converted to a string';
  }
  try {
    stack = e && typeof e.stack === 'string' ? e.stack : undefined;
  } catch {
    stack = undefined;
  }
  return { message, stack };
}

function done(id, value) {
  if (!inflight.delete(id)) return; // cancelled meanwhile
  let json;
  try {
    let out = value;
    if (Array.isArray(out)) out = { actions: out };
    if (out === undefined || out === null) out = {};
    json = JSON.stringify(out); // throws on a cycle, a BigInt, deep nesting, a throwing toJSON
  } catch (e) {
    let { message } = describe(e);
    if (e instanceof RangeError && /call stack/i.test(message)) message += ' (the output is nested too deeply)';
    sendError(id, 'error', 'encode output: ' + message);
    return finishIfDone();
  }
  if (typeof json !== 'string' || json[0] !== '{') {
    sendError(id, 'error', `the handler returned ${typeof value}, want an object`);
    return finishIfDone();
  }
  const line = '{"type":"result","id":' + JSON.stringify(id) + ',"output":' + json + '}\n';
  if (Buffer.byteLength(line) > maxLine) {
    sendError(id, 'error', `output of ${Buffer.byteLength(json)} bytes exceeds the line limit of ${maxLine} bytes`);
  } else {
    protocolWrite(line);
  }
  finishIfDone();
}

function fail(id, e) {
  if (!inflight.delete(id)) return;
  const { message, stack } = describe(e);
  const oom = e instanceof RangeError && /allocation failed|out of memory/i.test(message);
  send({ type: 'error', id, error: { code: oom ? 'oom' : 'error', message, stack } });
  finishIfDone();
}

function sendError(id, code, message) {
  send({ type: 'error', id, error: { code, message } });
}

function cancel(id) {
  const slot = inflight.get(id);
  if (!slot) return;
  // The handler is not running (this message is): it waits on a promise.
  // Abort its signal and end the invocation; a later result is dropped.
  inflight.delete(id);
  slot.aborted = true;
  if (slot.ctrl) slot.ctrl.abort();
  sendError(id, 'cancelled', 'cancelled by the runner');
  finishIfDone();
}

function shutdown(by) {
  shuttingDown = true;
  if (by > 0) {
    setTimeout(() => {
      for (const id of [...inflight.keys()]) cancel(id);
      process.exit(0);
    }, Math.max(0, by - Date.now() - CANCEL_BEFORE_BY)).unref();
  }
  finishIfDone();
}

function finishIfDone() {
  if (shuttingDown && inflight.size === 0) process.exit(0);
}

// INVOKE_ID reads the id from the start of a line spelled the way the
// process driver writes an invoke, for a line that is no message.
const INVOKE_ID = /^\{"type":"invoke","id":"((?:[^"\\]|\\.)*)"/;

// badLine answers a line that is not a message: bad_input, with the id when
// one can be read from its start, else "".
function badLine(line, why) {
  let id = '';
  const m = INVOKE_ID.exec(line);
  if (m) {
    try { id = JSON.parse('"' + m[1] + '"'); } catch { id = ''; }
  }
  sendError(id, 'bad_input', why);
}

async function handle(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    if (!initialised) fatal('undecodable message: ' + e.message);
    badLine(line, 'undecodable message: ' + e.message);
    return;
  }
  const isObject = msg !== null && typeof msg === 'object' && !Array.isArray(msg);
  if (!initialised) {
    if (!isObject || msg.type !== 'init') fatal('first message must be init, got ' + line.slice(0, 100));
    await init(msg);
    return;
  }
  if (!isObject) {
    badLine(line, 'a message must be a JSON object');
    return;
  }
  switch (msg.type) {
    case 'invoke': invoke(msg); break;
    case 'cancel': cancel(msg.id); break;
    case 'test': runTest(msg); break;
    case 'shutdown': shutdown(msg.by); break;
    default: break; // unknown types are ignored
  }
}

// Lines arrive in chunks; messages are handled in order, and nothing is
// handled before init has loaded the modules.
let pending = [];
let pendingLen = 0;
let queue = Promise.resolve();
let ready = false; // init done: handle lines synchronously
process.stdin.on('data', (chunk) => {
  let start = 0;
  for (;;) {
    const nl = chunk.indexOf(10, start);
    if (nl < 0) {
      if (start < chunk.length) {
        pending.push(chunk.subarray(start));
        pendingLen += chunk.length - start;
        if (pendingLen > maxLine) fatal(`a line longer than max_line (${maxLine} bytes)`);
      }
      return;
    }
    let line = chunk.subarray(start, nl);
    if (pendingLen > 0) {
      pending.push(line);
      line = Buffer.concat(pending);
      pending = [];
      pendingLen = 0;
    }
    start = nl + 1;
    const text = line.toString('utf8');
    if (ready) {
      handle(text);
    } else {
      queue = queue.then(() => handle(text)).then(() => { ready = initialised; });
    }
  }
});
process.stdin.on('end', () => {
  queue.then(() => shutdown(0));
});
