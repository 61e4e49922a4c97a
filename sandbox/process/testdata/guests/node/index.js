'use strict';
// The Node.js implementation of the sandboxtest conformance guest (see the
// sandboxtest package documentation for the protocol), run by the process
// driver's Node.js shim.
const fs = require('node:fs');
const net = require('node:net');

const hoard = []; // ballooned memory, kept reachable

exports.handle = function handle(input, ctx) {
  let op;
  try {
    op = typeof input.message === 'string' ? JSON.parse(input.message) : input.message;
  } catch (e) {
    return { noop: 'bad message: ' + e.message };
  }
  op = op || {};
  switch (op.do) {
    case 'echo':
      return { emit: [{ topic: 'echo', message: op.data === undefined ? null : op.data }] };
    case 'input':
      return { emit: [{ topic: 'input', message: input }] };
    case 'noop':
      return { noop: op.reason };
    case 'nothing':
      return {};
    case 'panic':
      throw new Error('conformance panic');
    case 'exit':
      process.exit(op.code);
      break;
    case 'spin':
      for (;;) { /* never yields */ }
    case 'sleep':
      return (async () => { for (;;) await new Promise((r) => setTimeout(r, 2 ** 31 - 1)); })();
    case 'balloon':
      for (;;) hoard.push(Buffer.alloc(1 << 20, 1));
    case 'wait':
      // Waits until the runner cancels: the shim aborts ctx.signal.
      return new Promise((resolve, reject) => {
        const timer = setInterval(() => {}, 2 ** 31 - 1);
        ctx.signal.addEventListener('abort', () => { clearInterval(timer); reject(new Error('cancelled')); });
      });
    case 'log':
      ctx.log(op.message, op.level);
      return { noop: 'logged' };
    case 'fill':
      return { noop: 'x'.repeat(op.size) };
    case 'alloc': {
      const b = new Uint8Array(new ArrayBuffer(op.size)); // RangeError: Array buffer allocation failed
      for (let i = 0; i < b.length; i += 4096) b[i] = 1;
      hoard.push(b);
      return { noop: `alloc: ok: ${b.byteLength} bytes` };
    }
    case 'readfile':
      try {
        const b = fs.readFileSync(op.path);
        return { noop: `readfile: ok: ${b.length} bytes` };
      } catch (e) {
        return { noop: 'readfile: error: ' + e.message };
      }
    case 'writefile':
      try {
        fs.writeFileSync(op.path, 'x');
        return { noop: 'writefile: ok' };
      } catch (e) {
        return { noop: 'writefile: error: ' + e.message };
      }
    case 'dial':
      return new Promise((resolve) => {
        const i = op.addr.lastIndexOf(':');
        const sock = net.connect({ host: op.addr.slice(0, i), port: Number(op.addr.slice(i + 1)), timeout: 1000 });
        const fail = (e) => { sock.destroy(); resolve({ noop: 'dial: error: ' + (e ? e.message : 'timeout') }); };
        sock.on('connect', () => { sock.end('hello'); resolve({ noop: 'dial: ok' }); });
        sock.on('timeout', () => fail(null));
        sock.on('error', fail);
      });
    case 'env':
      return { emit: [{ topic: 'env', message: { env: Object.entries(process.env).map(([k, v]) => `${k}=${v}`), args: process.argv } }] };
    default:
      return { noop: 'unknown op ' + op.do };
  }
};
