// The browser runtime's module worker: the Node.js shim's module loader
// (above, cut out of runtimes/node/shim.cjs) and what the page hands it.
// It loads modules from their source with a CommonJS wrapper, runs their
// invocations one message at a time as they come (several may be awaiting
// at once), and answers each with exactly one result or error, spelled as
// the runtime protocol spells them. It posts [id, text] to the page: id is
// the invocation an answer ends, or null for a log or usage message.
(() => {
  'use strict';
  const post = self.postMessage.bind(self);
  const encoder = new TextEncoder();
  const MAX_LOG = 64 << 10; // a log line's longest message, in UTF-16 units
  const modules = new Map(); // module key → {name, mod, config} or {name, error}
  const inflight = new Map(); // invocation id → its slot ({ctrl, aborted})
  let maxMessage = 8 << 20;

  self.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'config':
        if (msg.max_message > 0) maxMessage = msg.max_message;
        break;
      case 'reset':
        modules.clear();
        break;
      case 'load':
        load(msg);
        break;
      case 'unload':
        modules.delete(msg.module);
        break;
      case 'invoke':
        invoke(msg);
        break;
      case 'cancel':
        cancel(msg.id);
        break;
      default:
    }
  };

  // evaluate runs a module's source as Node runs a CommonJS file: in a
  // function of exports, require, module, __filename and __dirname, with
  // this the exports. require is an error naming the module: a module
  // here has nothing to require.
  function evaluate(name, code) {
    const module = { exports: {}, id: name };
    const require = (what) => {
      throw new Error(`module ${name}: require(${JSON.stringify(String(what))}): the browser runtime has no modules to require`);
    };
    const fn = new Function('exports', 'require', 'module', '__filename', '__dirname',
      code + '\n//# sourceURL=andromeda-module:' + encodeURIComponent(name));
    fn.call(module.exports, module.exports, require, module, name + '.js', '.');
    return module.exports;
  }

  function load(msg) {
    const name = String(msg.name);
    let entry;
    try {
      const mod = loader.pick({ default: evaluate(name, String(msg.code)) });
      if (!mod) throw new Error(`module ${name} exports neither decide(ctx) nor handle(input)`);
      const config = msg.config && typeof msg.config === 'object' && !Array.isArray(msg.config) ? msg.config : null;
      entry = { name, mod, config };
    } catch (e) {
      // Not every error of loading says what it is in its message (a
      // SyntaxError does not): its kind goes first.
      const error = loader.failure(e);
      try {
        if (e instanceof Error && e.name !== 'Error' && !error.message.startsWith(e.name)) error.message = e.name + ': ' + error.message;
      } catch {
        // a name getter that throws: the message alone
      }
      entry = { name, error };
    }
    modules.set(msg.module, entry);
  }

  function invoke(msg) {
    const id = msg.id;
    if (typeof id !== 'string' || inflight.has(id)) return;
    const input = msg.input;
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      post([id, loader.error(id, { code: 'bad_input', message: `the input must be a JSON object, not ${input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input}` })]);
      return;
    }
    const entry = modules.get(msg.module);
    if (!entry) {
      post([id, loader.error(id, { code: 'error', message: `no module ${JSON.stringify(msg.module)}` })]);
      return;
    }
    if (entry.error) {
      post([id, loader.error(id, { code: 'init', message: `module ${entry.name} did not load: ${entry.error.message}`, stack: entry.error.stack })]);
      return;
    }
    if (entry.config && (input.config === undefined || (input.config && typeof input.config === 'object' && !Array.isArray(input.config)))) {
      input.config = Object.assign({}, entry.config, input.config);
    }
    const slot = { ctrl: null, aborted: false };
    inflight.set(id, slot);
    const ctx = () => loader.context(id, msg.deadline, slot, (m) => {
      if (inflight.get(id) !== slot) return;
      if (typeof m.message === 'string' && m.message.length > MAX_LOG) m.message = m.message.slice(0, MAX_LOG) + ' …(cut)';
      post([null, JSON.stringify(m)]);
    });
    loader.run(entry.mod, input, ctx, (v) => done(id, slot, v), (e) => fail(id, slot, e));
  }

  function done(id, slot, value) {
    if (inflight.get(id) !== slot) return; // cancelled meanwhile
    inflight.delete(id);
    const out = loader.encode(value);
    if (out.error) {
      post([id, loader.error(id, out.error)]);
      return;
    }
    const text = loader.result(id, out.json);
    if (!fits(text)) {
      post([id, loader.error(id, { code: 'error', message: `output of ${encoder.encode(out.json).length} bytes exceeds the message limit of ${maxMessage} bytes` })]);
      return;
    }
    post([id, text]);
  }

  function fail(id, slot, e) {
    if (inflight.get(id) !== slot) return;
    inflight.delete(id);
    post([id, loader.error(id, loader.failure(e))]);
  }

  // cancel ends invocation id: the handler is not running (this message
  // is), it waits on a promise; its signal is aborted and a later answer
  // dropped.
  function cancel(id) {
    const slot = inflight.get(id);
    if (!slot) return;
    inflight.delete(id);
    slot.aborted = true;
    if (slot.ctrl) slot.ctrl.abort();
    post([id, loader.error(id, { code: 'cancelled', message: 'cancelled by the runner' })]);
  }

  // fits reports whether text is at most maxMessage bytes of UTF-8.
  function fits(text) {
    return text.length * 3 <= maxMessage || encoder.encode(text).length <= maxMessage;
  }
})();
