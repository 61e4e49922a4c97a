'use strict';
// Andromeda runtime shim for Node.js: runtime protocol versions 1 and 2
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
//
// What turns a module's exports and an input into an answer is the module
// loader section below, which the browser runtime runs too.

const { pathToFileURL } = require('node:url');
const { createHash } = require('node:crypto');

// ---- andromeda module loader: begin ----
// The module loader: what turns a module's exports and an input into an
// answer. It finds the handler, calls it with its context, awaits what it
// returns, normalises the output and describes what it threw. The browser
// runtime (runtimes/browser) cuts this section out of this file, from its
// begin line to its end line, and runs it as it stands in its page, so a
// module's code gives the same answer there as here. It therefore uses
// only what every JavaScript engine has (no require, Buffer or process)
// and defines one name, loader.
const loader = (() => {
  'use strict';

  // pick finds a module's handler in its namespace ns (an ES module's
  // namespace, or what importing a CommonJS module gives: its exports as
  // default, maybe beside named exports): decide(ctx) or handle(input[,
  // ctx]), as named exports or on the default export, or a default export
  // that is a function (a handle). It returns {fn, kind, wantsCtx, test}
  // (test: the module's self-test, or null), or null when there is none.
  function pick(ns) {
    let found = null;
    for (const c of [ns, ns && ns.default]) {
      if (c && typeof c.decide === 'function') {
        found = { fn: c.decide.bind(c), kind: 'decide' };
        break;
      }
      if (c && typeof c.handle === 'function') {
        found = { fn: c.handle.bind(c), kind: 'handle', wantsCtx: c.handle.length >= 2 };
        break;
      }
    }
    if (!found && ns && typeof ns.default === 'function') found = { fn: ns.default, kind: 'handle', wantsCtx: ns.default.length >= 2 };
    if (found) found.test = pickTest(ns);
    return found;
  }

  function pickTest(ns) {
    for (const c of [ns, ns && ns.default]) {
      if (c && typeof c.test === 'function') return c.test.bind(c);
    }
    return null;
  }

  // context is the ctx a handler gets (decide gets the input with these
  // members laid over it). slot is the invocation's {ctrl, aborted}: its
  // AbortController is made only for a handler that reads its signal (most
  // do not, and making one costs on every invocation), already aborted
  // when a cancel set aborted. deadline is in Unix milliseconds, or none.
  // log and usage hand their message to send.
  function context(id, deadline, slot, send) {
    return {
      get signal() {
        if (!slot.ctrl) {
          slot.ctrl = new AbortController();
          if (slot.aborted) slot.ctrl.abort();
        }
        return slot.ctrl.signal;
      },
      deadline: deadline ? new Date(deadline) : null,
      log(message, level) {
        send({ type: 'log', id, level: level || 'info', message: String(message) });
      },
      // usage(name, amount) adds amount to the run's counter name; the
      // runner checks and sums the reports (docs/runtime-protocol.md,
      // "usage").
      usage(name, amount) {
        const n = Number(amount);
        if (Number.isFinite(n)) send({ type: 'usage', id, counters: { [String(name)]: n } });
      },
    };
  }

  // call runs module mod on input, returning its value or a promise of it.
  // ctx makes the handler's context; it is called only for a handler that
  // takes one.
  function call(mod, input, ctx) {
    if (mod.kind === 'decide') return mod.fn(Object.assign({}, input, ctx()));
    return mod.wantsCtx ? mod.fn(input, ctx()) : mod.fn(input);
  }

  // run calls module mod on input and hands what it returned (awaited when
  // it is a promise) to ok, or what it threw or rejected with to fail; a
  // plain value goes to ok at once. A value whose then misbehaves (a then
  // that calls back and then throws) may reach both: the caller answers
  // the first and drops the other.
  function run(mod, input, ctx, ok, fail) {
    let r;
    let thenable;
    try {
      r = call(mod, input, ctx);
      // A value's then may be a getter that throws, or a then that throws.
      thenable = isThenable(r);
      if (thenable) r.then(ok, fail);
    } catch (e) {
      fail(e);
      return;
    }
    if (!thenable) ok(r);
  }

  function isThenable(r) {
    return r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function';
  }

  // encode is a handler's value as the output's JSON, {json}: an array is
  // shorthand for {actions}, nothing is {}. A value JSON cannot encode (a
  // cycle, a BigInt, nesting deeper than the stack, a throwing toJSON) or
  // that is not an object gives {error}, the answer's error.
  function encode(value) {
    let out = value;
    if (Array.isArray(out)) out = { actions: out };
    if (out === undefined || out === null) out = {};
    let json;
    try {
      json = JSON.stringify(out);
    } catch (e) {
      let { message } = describe(e);
      if (e instanceof RangeError && /call stack/i.test(message)) message += ' (the output is nested too deeply)';
      return { error: { code: 'error', message: 'encode output: ' + message } };
    }
    if (typeof json !== 'string' || json[0] !== '{') {
      return { error: { code: 'error', message: `the handler returned ${typeof value}, want an object` } };
    }
    return { json };
  }

  // failure is the answer's error for what a handler threw: code oom for
  // the engine's own allocation failure, else error.
  function failure(e) {
    const { message, stack } = describe(e);
    const oom = e instanceof RangeError && /allocation failed|out of memory/i.test(message);
    return { code: oom ? 'oom' : 'error', message, stack };
  }

  // describe returns what was thrown as a message and maybe a stack, both
  // strings, whatever the value is: a getter or toString that throws, or an
  // object without a prototype, must not end the runtime.
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

  // result is the text of the result message answering id with output
  // (JSON from encode), spelled the way a runner reads without a general
  // decode; error is the text of the error message answering id with err
  // ({code, message, stack}).
  function result(id, output) {
    return '{"type":"result","id":' + JSON.stringify(id) + ',"output":' + output + '}';
  }

  function error(id, err) {
    return JSON.stringify({ type: 'error', id, error: err });
  }

  return Object.freeze({ pick, context, call, run, isThenable, encode, failure, describe, result, error });
})();
// ---- andromeda module loader: end ----

// The protocol versions the shim speaks: 2 adds same-worker routes.
const PROTOCOL = 1;
const ROUTE_PROTOCOL = 2;
let protocol = PROTOCOL; // the version agreed at init
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

async function init(msg) {
  if (msg.protocol !== PROTOCOL && msg.protocol !== ROUTE_PROTOCOL) {
    send({ type: 'error', id: msg.id, error: { code: 'init', message: `protocol ${msg.protocol} is not supported: this shim speaks ${PROTOCOL} and ${ROUTE_PROTOCOL}` } });
    process.exit(1);
  }
  protocol = Math.max(msg.protocol, Math.min(Number(msg.max_protocol) || 0, ROUTE_PROTOCOL));
  if (msg.max_line > 0) maxLine = msg.max_line;
  if (msg.max_in_flight > 0) maxInFlight = msg.max_in_flight;
  try {
    for (const m of msg.modules || []) {
      const ns = await import(pathToFileURL(m.entry).href);
      const found = loader.pick(ns);
      if (!found) throw new Error(`${m.entry} exports neither decide(ctx) nor handle(input)`);
      modules.set(m.id, found);
    }
    if (modules.size === 0) throw new Error('init names no module');
  } catch (e) {
    send({ type: 'error', id: msg.id, error: { code: 'init', message: String((e && e.message) || e), stack: e && e.stack } });
    process.exit(1);
  }
  initialised = true;
  send({ type: 'ready', id: msg.id, protocol, runtime: 'node', version: process.version, concurrency: maxInFlight, accepts: ['test'] });
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
    const { message, stack } = loader.describe(e);
    send({ type: 'error', id: msg.id, error: { code: 'error', message, stack } });
    return;
  }
  send({ type: 'result', id: msg.id, output: { ran: true } });
}

// context returns a maker of invocation id's handler context (the
// loader's), whose logs and usage reports are sent while it is in flight.
function context(id, msg, slot) {
  return () => loader.context(id, msg.deadline, slot, (m) => {
    if (inflight.has(id)) send(m);
  });
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
  loader.run(mod, msg.input, context(id, msg, slot), (v) => settled(id, msg, v), (e) => fail(id, e));
}

// settled answers invocation id with the handler's value: at once, or,
// when the invoke has a route (protocol 2), after the hops it leads to.
function settled(id, msg, value) {
  if (!msg.route || !inflight.has(id)) return done(id, value);
  const out = loader.encode(value);
  if (out.error) return done(id, value); // done reports the encoding error
  const hops = [];
  walk(id, msg, msg.route, msg.input, value, msg.route.to, hops, { left: Number(msg.route.max) || 0 }, process.hrtime.bigint(), true)
    .catch(() => {}) // a hop's failure is in hops; anything else ends the walk
    .then(() => answer(id, out.json, hops));
}

// Same-worker routes (protocol 2). For each emit of a module's value on a
// port the route names, the modules it leads to run here, one after the
// other in emit order, each given the message as the JavaScript value the
// sender emitted (a clone for every destination after the first, as
// Node-RED does); what each returns goes on along its own route.
// sentAt is when the sender's handler returned: a hop's gap_ns is the
// time from it to the hop's handler starting (the hand-over, and the hops
// before it on other wires of the same sender). first says every sender
// so far took its own sender's first emit: a destination's id0, derived
// by the node, is then its run id for the first emit.
async function walk(id, msg, route, input, value, to, hops, budget, sentAt, first) {
  if (!to || value === null || typeof value !== 'object' || Array.isArray(value) || !Array.isArray(value.emit)) return;
  const from = input.trigger && input.trigger.flow ? input.trigger.flow.module : '';
  const mod = modules.get(msg.module || 'main');
  const slot = inflight.get(id);
  for (let i = 0; i < value.emit.length; i++) {
    const em = value.emit[i];
    if (!em || typeof em.port !== 'string' || em.port === '' || !Array.isArray(to[em.port])) continue;
    let firstDest = true;
    for (const d of to[em.port]) {
      if (budget.left <= 0 || !inflight.has(id)) return;
      budget.left--;
      const message = firstDest ? em.message : structuredClone(em.message);
      firstDest = false;
      const msgID = input.run_id + '.' + i + '.' + d.wire;
      const runID = first && i === 0 && d.id0 ? d.id0 : moduleRunID(route, d.module, msgID);
      const flow = Object.assign({}, input.trigger.flow, { module: d.module, port: d.port, message: msgID, from });
      const hin = Object.assign({}, input, {
        run_id: runID, message, config: d.config || {},
        trigger: Object.assign({}, input.trigger, { name: d.name, flow }),
      });
      const hop = { run_id: runID, module: d.module, from: input.run_id, emit: i, wire: d.wire };
      const t0 = process.hrtime.bigint();
      hop.gap = t0 - sentAt;
      let v;
      try {
        v = loader.call(mod, hin, context(id, msg, slot));
        if (loader.isThenable(v)) v = await v;
        const out = loader.encode(v);
        if (out.error) hop.error = out.error;
        else hop.output = out.json;
      } catch (e) {
        hop.error = loader.failure(e);
      }
      if (hop.error) v = undefined;
      const t1 = process.hrtime.bigint();
      hop.ns = Number(t1 - t0);
      hops.push(hop);
      if (hop.output !== undefined && d.to) await walk(id, msg, route, hin, v, d.to, hops, budget, t1, first && i === 0);
    }
  }
}

// moduleRunID is the run id the node gives a module's run for a message
// of a flow run: the flow run's time (route.run_time, 6 bytes in hex) and
// the first 6 bytes of sha256(flow run, module, message), in the run ids'
// base32.
function moduleRunID(route, module, message) {
  const sum = createHash('sha256').update(route.flow_run + '\0' + module + '\0' + message).digest();
  return base32(Buffer.concat([Buffer.from(route.run_time || '000000000000', 'hex'), sum.subarray(0, 6)]));
}

const RUN_ID_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

function base32(buf) {
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const b of buf) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += RUN_ID_ALPHABET[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += RUN_ID_ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

// answer sends invocation id's result with its hops (protocol 2). A line
// over max_line drops the hops (the node then routes the emits itself)
// before it fails the invocation.
function answer(id, out, hops) {
  if (!inflight.delete(id)) return; // cancelled meanwhile
  let line = '{"type":"result","id":' + JSON.stringify(id) + ',"output":' + out;
  if (hops.length > 0) {
    line += ',"hops":[' + hops.map((h) => '{"run_id":' + JSON.stringify(h.run_id) + ',"module":' + JSON.stringify(h.module) +
      ',"from":' + JSON.stringify(h.from) + ',"emit":' + h.emit + ',"wire":' + h.wire + ',"ns":' + h.ns + ',"gap_ns":' + h.gap +
      (h.error ? ',"error":' + JSON.stringify(h.error) : ',"output":' + h.output) + '}').join(',') + ']';
  }
  line += '}\n';
  if (hops.length > 0 && Buffer.byteLength(line) > maxLine) {
    line = '{"type":"result","id":' + JSON.stringify(id) + ',"output":' + out + '}\n';
  }
  if (Buffer.byteLength(line) > maxLine) {
    sendError(id, 'error', `output of ${Buffer.byteLength(out)} bytes exceeds the line limit of ${maxLine} bytes`);
  } else {
    protocolWrite(line);
  }
  finishIfDone();
}

function done(id, value) {
  if (!inflight.delete(id)) return; // cancelled meanwhile
  const out = loader.encode(value);
  if (out.error) {
    protocolWrite(loader.error(id, out.error) + '\n');
    return finishIfDone();
  }
  const line = loader.result(id, out.json) + '\n';
  if (Buffer.byteLength(line) > maxLine) {
    sendError(id, 'error', `output of ${Buffer.byteLength(out.json)} bytes exceeds the line limit of ${maxLine} bytes`);
  } else {
    protocolWrite(line);
  }
  finishIfDone();
}

function fail(id, e) {
  if (!inflight.delete(id)) return;
  protocolWrite(loader.error(id, loader.failure(e)) + '\n');
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
