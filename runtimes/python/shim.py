"""Andromeda runtime shim for Python: runtime protocol versions 1 and 2.

See docs/runtime-protocol.md. The process driver runs

    python3 -I -S -B /runtime/shim.py

in the worker's sandbox. The shim reads newline-delimited JSON messages on
standard input and writes them on standard output; whatever the service
prints goes to standard error, which the node keeps as the service's log.
It uses nothing but the standard library and runs on Python 3.8 and later.

A service is a module (the entry file) defining

    decide(ctx)            ctx is the invocation's input (a dict whose keys are
                           also attributes) with log(), usage(), deadline and cancelled
    handle(input[, ctx])   input is the contract's Input as a dict

as a plain function or a coroutine function. It returns the contract's
Output as a dict ({"actions", "emit", "state", "noop"}); a list is shorthand
for {"actions": list}. A raised exception ends the run as crashed with its
message and traceback (MemoryError as oom), and so does an output json
cannot encode (a cycle, NaN, nesting deeper than the recursion limit); the
worker lives on. An input nested deeper than the recursion limit lets json
decode is answered bad_input.

A module may also define test() (plain or coroutine): its self-test, which
the node runs at deploy and on `andromeda test NAME`; a raised exception
fails it with its message.

Plain functions run one at a time on the main thread, so the worker tells
the runner it takes one invocation at a time (a cancel cannot stop them: the
runner kills the worker instead). Coroutine functions run as asyncio tasks,
as many at once as the runner allows, and a cancel cancels the task.
"""

import importlib.util
import json
import os
import re
import sys
import time

# asyncio, inspect and traceback are imported when needed: they
# cost tens of milliseconds of start-up a plain service should not pay.
NO_TEST = object()  # call_test's answer for a module without test()
CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect


def is_coroutine_function(fn):
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return code is not None and bool(code.co_flags & CO_COROUTINE)


def is_awaitable(value):
    return hasattr(value, "__await__")

# The protocol versions the shim speaks: 2 adds same-worker routes.
PROTOCOL = 1
ROUTE_PROTOCOL = 2
RUN_ID_ALPHABET = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")


def module_run_id(route, module, message):
    """The run id the node gives a module's run for a message of a flow
    run: the flow run's time (route["run_time"], 6 bytes in hex) and the
    first 6 bytes of sha256(flow run, module, message), in the run ids'
    base32."""
    import base64
    import hashlib

    key = "%s\0%s\0%s" % (route.get("flow_run", ""), module, message)
    raw = bytes.fromhex(route.get("run_time") or "000000000000") + hashlib.sha256(key.encode("utf-8")).digest()[:6]
    return base64.b32encode(raw).rstrip(b"=").translate(RUN_ID_ALPHABET).decode()

# How long before a shutdown's "by" the invocations still running are
# cancelled (seconds): the protocol's "shortly before".
CANCEL_BEFORE_BY = 0.1

# How the process driver spells the start of an invoke message; the id is
# read from it when the message cannot be decoded (input nested deeper than
# Python's recursion limit lets json decode).
INVOKE_ID = re.compile(rb'\{"type":"invoke","id":"((?:[^"\\]|\\.)*)"')


def describe(e):
    """The message of exception e, whatever its __str__ does."""
    try:
        return str(e) or type(e).__name__
    except Exception:  # noqa: BLE001 - a broken __str__ must not kill the worker
        return type(e).__name__


class Context(dict):
    """The invocation's input with the helpers of the invocation."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def log(self, message, level="info"):
        self._worker.send({"type": "log", "id": self._id, "level": level, "message": str(message)})

    def usage(self, name, amount):
        """Add amount to the run's usage counter name; the runner checks and
        sums the reports (docs/runtime-protocol.md, "usage")."""
        try:
            n = float(amount)
        except (TypeError, ValueError):
            return
        if n == n and n not in (float("inf"), float("-inf")):
            self._worker.send({"type": "usage", "id": self._id, "counters": {str(name): n}})

    @property
    def cancelled(self):
        return self._id in self._worker.cancelled


class Worker:
    def __init__(self):
        # The protocol owns the real standard output; the service gets stderr.
        self.out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        try:
            sys.stderr.reconfigure(line_buffering=True)  # the default from 3.9 on
        except AttributeError:
            pass
        sys.stdout = sys.stderr
        # The protocol's pipes are read and written with os.read and
        # os.write on their descriptors: no buffered file object between a
        # line and its system call.
        self.out_fd = self.out.fileno()
        self.in_fd = sys.stdin.fileno()
        self.pending = b""  # read past the last line returned
        self.max_line = 8 << 20
        self.max_in_flight = 64
        self.modules = {}
        self.cancelled = set()

    # --- output ---------------------------------------------------------

    def write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.out_fd, view):]

    def send(self, msg):
        self.write(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace") + b"\n")

    def error(self, id, code, message, stack=None):
        err = {"code": code, "message": message}
        if stack:
            err["stack"] = stack
        self.send({"type": "error", "id": id, "error": err})

    def encode(self, value):
        """The handler's value as the output's JSON (bytes), or (code,
        message) when it cannot be encoded."""
        out = value
        if isinstance(out, (list, tuple)):
            out = {"actions": list(out)}
        if out is None:
            out = {}
        if not isinstance(out, dict):
            return ("error", "the handler returned %s, want a dict" % type(value).__name__)
        try:
            try:
                return json.dumps(out, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: escape them
                return json.dumps(out, separators=(",", ":"), allow_nan=False).encode("ascii")
        except RecursionError:
            return ("error", "encode output: nested deeper than Python's recursion limit (%d)" % sys.getrecursionlimit())
        except MemoryError:
            return ("oom", "encode output: out of memory")
        except Exception as e:  # noqa: BLE001 - TypeError, ValueError (circular, NaN), or what a value's methods raise
            return ("error", "encode output: %s" % describe(e))

    def result(self, id, value, hops=None):
        data = self.encode(value)
        if isinstance(data, tuple):
            self.error(id, data[0], data[1])
            return
        head = b'{"type":"result","id":' + json.dumps(id).encode() + b',"output":' + data
        line = head + b"}\n"
        if hops:
            parts = []
            for h in hops:
                meta = json.dumps({k: h[k] for k in ("run_id", "module", "from", "emit", "wire", "ns", "gap_ns")}, separators=(",", ":")).encode()
                tail = b',"output":' + h["output"] if "output" in h else b',"error":' + json.dumps(h["error"]).encode()
                parts.append(meta[:-1] + tail + b"}")
            with_hops = head + b',"hops":[' + b",".join(parts) + b"]}\n"
            if len(with_hops) <= self.max_line:  # else the node routes the emits itself
                line = with_hops
        if len(line) > self.max_line:
            self.error(id, "error", "output of %d bytes exceeds the line limit of %d bytes" % (len(data), self.max_line))
            return
        self.write(line)

    def walk(self, msg, inp, value, to, hops, budget, sent_at, first):
        """Same-worker routes (protocol 2), a generator: for each emit of a
        module's value on a port the route names, the modules it leads to
        run here, in emit order, each given the message as the Python value
        the sender emitted (a deep copy for every destination after the
        first); what each returns goes on along its own route. It yields
        the awaitables handlers return and is sent their values. sent_at
        is when the sender's handler returned (perf_counter_ns): a hop's
        gap_ns is the time from it to the hop's handler starting. first
        says every sender so far took its own sender's first emit: a
        destination's id0, derived by the node, is then its run id for the
        first emit."""
        if not to or not isinstance(value, dict) or not isinstance(value.get("emit"), list):
            return
        route = msg["route"]
        trig = inp.get("trigger") or {}
        flow = trig.get("flow") or {}
        for i, em in enumerate(value["emit"]):
            if not isinstance(em, dict) or not isinstance(em.get("port"), str) or not isinstance(to.get(em["port"]), list):
                continue
            for j, d in enumerate(to[em["port"]]):
                if budget[0] <= 0 or msg["id"] in self.cancelled:
                    return
                budget[0] -= 1
                message = em.get("message")
                if j > 0:
                    import copy

                    message = copy.deepcopy(message)
                msg_id = "%s.%d.%d" % (inp.get("run_id", ""), i, d.get("wire", 0))
                run_id = d["id0"] if first and i == 0 and d.get("id0") else module_run_id(route, d.get("module", ""), msg_id)
                hin = dict(inp)
                hin.update(run_id=run_id, message=message, config=d.get("config") or {})
                hin["trigger"] = dict(trig, name=d.get("name"), flow=dict(flow, module=d.get("module"), port=d.get("port"), message=msg_id, **{"from": flow.get("module")}))
                hop = {"run_id": run_id, "module": d.get("module"), "from": inp.get("run_id", ""), "emit": i, "wire": d.get("wire", 0)}
                t0 = time.perf_counter_ns()
                hop["gap_ns"] = t0 - sent_at
                v = None
                try:
                    v = self.call(dict(msg, input=hin))
                    if is_awaitable(v):
                        v = yield v
                    data = self.encode(v)
                    if isinstance(data, tuple):
                        hop["error"] = {"code": data[0], "message": data[1]}
                    else:
                        hop["output"] = data
                except Exception as e:  # MemoryError included: reported as oom
                    hop["error"] = {"code": "oom" if isinstance(e, MemoryError) else "error", "message": describe(e)}
                t1 = time.perf_counter_ns()
                hop["ns"] = t1 - t0
                hops.append(hop)
                if "output" in hop and d.get("to"):
                    yield from self.walk(msg, hin, v, d["to"], hops, budget, t1, first and i == 0)

    def routed(self, msg, value):
        """The generator of msg's hops on value, and the list it fills."""
        hops = []
        route = msg.get("route")
        return self.walk(msg, msg["input"], value, route.get("to"), hops, [int(route.get("max") or 0)], time.perf_counter_ns(), True), hops

    def failure(self, id, e, code=None):
        code = code or ("oom" if isinstance(e, MemoryError) else "error")
        message = describe(e)
        try:
            import traceback

            stack = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        except Exception:  # noqa: BLE001 - a broken exception still gets its answer
            stack = None
        self.error(id, code, message, stack)

    # --- input ----------------------------------------------------------

    def readline(self):
        buf = self.pending
        i = buf.find(b"\n")
        if i >= 0:
            self.pending = buf[i + 1:]
            return buf[:i + 1]
        parts, size = [buf], len(buf)
        while True:
            if size > self.max_line:
                self.fatal("a line longer than max_line (%d bytes)" % self.max_line)
            chunk = os.read(self.in_fd, 1 << 16)
            if not chunk:
                if size == 0:
                    return None
                self.fatal("a last line without a newline")
            i = chunk.find(b"\n")
            if i >= 0:
                parts.append(chunk[:i + 1])
                self.pending = chunk[i + 1:]
                line = b"".join(parts)
                if len(line) > self.max_line + 1:
                    self.fatal("a line longer than max_line (%d bytes)" % self.max_line)
                return line
            parts.append(chunk)
            size += len(chunk)

    def fatal(self, why):
        sys.stderr.write("andromeda python shim: %s\n" % why)
        sys.stderr.flush()
        os._exit(1)

    def decode(self, line):
        """Returns the message on line, or None when the line is not a
        message (not a JSON object, or nested deeper than Python's recursion
        limit lets json decode): it has been answered bad_input, with the id
        when one can be read from the start of the line, else ""."""
        try:
            msg = json.loads(line)
            if isinstance(msg, dict):
                return msg
            why = "a message must be a JSON object, not %s" % type(msg).__name__
        except RecursionError:
            why = "input nested deeper than Python's recursion limit (%d) lets it decode" % sys.getrecursionlimit()
        except ValueError as e:
            why = "undecodable message: %s" % e
        id = ""
        m = INVOKE_ID.match(line)
        if m is not None:
            try:
                id = json.loads(b'"' + m.group(1) + b'"')
            except ValueError:
                id = ""
        self.error(id, "bad_input", why)
        return None

    def check_invoke(self, msg):
        """Answers bad_input and returns False for an invoke without a
        string id or whose input is not an object."""
        id = msg.get("id")
        if not isinstance(id, str):
            self.error("", "bad_input", "an invoke's id must be a string")
            return False
        if not isinstance(msg.get("input"), dict):
            self.error(id, "bad_input", "the input must be a JSON object, not %s" % type(msg.get("input")).__name__)
            return False
        return True

    # --- modules --------------------------------------------------------

    def init(self, msg):
        if msg.get("protocol") not in (PROTOCOL, ROUTE_PROTOCOL):
            self.error(msg.get("id"), "init", "protocol %r is not supported: this shim speaks %d and %d" % (msg.get("protocol"), PROTOCOL, ROUTE_PROTOCOL))
            os._exit(1)
        offered = msg.get("max_protocol")
        self.protocol = max(msg["protocol"], min(offered if isinstance(offered, int) else 0, ROUTE_PROTOCOL))
        if msg.get("max_line", 0) > 0:
            self.max_line = msg["max_line"]
        if msg.get("max_in_flight", 0) > 0:
            self.max_in_flight = msg["max_in_flight"]
        try:
            for m in msg.get("modules") or []:
                self.modules[m["id"]] = self.load(m)
            if not self.modules:
                raise RuntimeError("init names no module")
        except BaseException as e:  # noqa: B902 - a module may raise anything, SystemExit included
            self.failure(msg.get("id"), e, "init")
            self.out.flush()
            os._exit(1)
        self.is_async = any(m["async"] for m in self.modules.values())
        concurrency = self.max_in_flight if self.is_async else 1
        self.send({"type": "ready", "id": msg.get("id"), "protocol": self.protocol, "runtime": "python",
                   "version": sys.version.split()[0], "concurrency": concurrency,
                   "accepts": ["test"]})

    def load(self, m):
        entry = m["entry"]
        sys.path.insert(0, os.path.dirname(entry))
        for p in m.get("paths") or []:
            sys.path.insert(1, p)
        name = os.path.splitext(os.path.basename(entry))[0]
        spec = importlib.util.spec_from_file_location(name, entry)
        if spec is None:
            raise ImportError("cannot load %s" % entry)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        for kind in ("decide", "handle"):
            fn = getattr(module, kind, None)
            if callable(fn):
                wants_ctx = False
                if kind == "handle":
                    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
                    if code is not None:
                        bound = 1 if hasattr(fn, "__self__") else 0
                        wants_ctx = code.co_argcount - bound >= 2 or bool(code.co_flags & 0x04)  # *args
                test = getattr(module, "test", None)
                return {"fn": fn, "kind": kind, "ctx": wants_ctx, "async": is_coroutine_function(fn),
                        "test": test if callable(test) else None}
        raise AttributeError("%s defines neither decide(ctx) nor handle(input)" % entry)

    def call(self, msg):
        """Calls the handler; returns its value, maybe an awaitable."""
        mod = self.modules.get(msg.get("module") or "main")
        if mod is None:
            raise LookupError("no module %r" % msg.get("module"))
        inp = msg.get("input")
        ctx = Context(inp if isinstance(inp, dict) else {})
        object.__setattr__(ctx, "_worker", self)
        object.__setattr__(ctx, "_id", msg["id"])
        deadline = msg.get("deadline")
        object.__setattr__(ctx, "deadline", deadline / 1000.0 if deadline else None)
        if mod["kind"] == "decide":
            return mod["fn"](ctx)
        if mod["ctx"]:
            return mod["fn"](inp, ctx)
        return mod["fn"](inp)

    def call_test(self, msg):
        """Calls the module's test(); returns NO_TEST when it has none, else
        its value, maybe an awaitable."""
        mod = self.modules.get(msg.get("module") or "main")
        if mod is None:
            raise LookupError("no module %r" % msg.get("module"))
        if mod["test"] is None:
            return NO_TEST
        return mod["test"]()

    def tested(self, id, ran):
        self.send({"type": "result", "id": id, "output": {"ran": ran is not NO_TEST}})

    # --- serving --------------------------------------------------------

    def serve_sync(self):
        loop = None
        while True:
            line = self.readline()
            if line is None:
                return
            msg = self.decode(line)
            if msg is None:
                continue
            kind = msg.get("type")
            if kind == "invoke":
                if not self.check_invoke(msg):
                    continue
                id = msg.get("id")
                try:
                    value = self.call(msg)
                    if is_awaitable(value):
                        import asyncio

                        loop = loop or asyncio.new_event_loop()
                        value = loop.run_until_complete(value)
                except Exception as e:  # MemoryError included: reported as oom
                    self.failure(id, e)
                    continue
                hops = None
                if isinstance(msg.get("route"), dict):
                    gen, hops = self.routed(msg, value)
                    aw = first(gen)
                    if aw is not None:  # a hop's handler returned an awaitable
                        import asyncio

                        loop = loop or asyncio.new_event_loop()
                        loop.run_until_complete(drive(gen, aw))
                self.result(id, value, hops)
            elif kind == "test":
                id = msg.get("id")
                try:
                    value = self.call_test(msg)
                    if is_awaitable(value):
                        import asyncio

                        loop = loop or asyncio.new_event_loop()
                        value = loop.run_until_complete(value)
                except Exception as e:  # noqa: BLE001 - the test's failure is its answer
                    self.failure(id, e)
                    continue
                self.tested(id, value)
            elif kind == "shutdown":
                return  # nothing runs: exit, reading no further
            # cancel: the invocation it names has already ended, since
            # handlers run on this thread; unknown types are ignored.

    async def serve_async(self):
        import asyncio

        loop = asyncio.get_running_loop()
        tasks = {}
        stop = asyncio.Event()  # set by close once nothing runs
        closer = None  # after shutdown or the end of input: refuse invocations

        def start(id, coro):
            task = loop.create_task(coro)
            if not task.done():
                tasks[id] = task
                task.add_done_callback(lambda _t: tasks.pop(id, None))

        def closing(by):
            nonlocal closer
            if closer is None:
                closer = loop.create_task(self.close(tasks, by, stop))

        def dispatch(line):
            msg = self.decode(line)
            if msg is None:
                return
            kind = msg.get("type")
            if kind == "invoke":
                if not self.check_invoke(msg):
                    return
                id = msg["id"]
                if closer is not None:
                    self.error(id, "unavailable", "the worker is shutting down")
                    return
                start(id, self.run_task(msg))
            elif kind == "test":
                start(msg.get("id"), self.run_test_task(msg))
            elif kind == "cancel":
                task = tasks.get(msg.get("id"))
                if task is not None:
                    self.cancelled.add(msg.get("id"))
                    task.cancel()
            elif kind == "shutdown":
                closing(msg.get("by"))

        # The loop watches the input pipe itself (add_reader): one read of
        # what is there each time it is readable, cut into lines, each
        # handled at once. No reader thread and no queue: handing every
        # line from a thread to the loop cost a wake-up of the loop, the
        # interpreter's lock and a turn of the loop per message.
        parts = []  # the start of a line not yet ended
        size = [0]  # its bytes

        def take(chunk):
            pos = 0
            while True:
                i = chunk.find(b"\n", pos)
                if i < 0:
                    break
                line = chunk[pos:i + 1]
                if parts:
                    parts.append(line)
                    line = b"".join(parts)
                    parts.clear()
                    size[0] = 0
                if len(line) > self.max_line + 1:
                    self.fatal("a line longer than max_line (%d bytes)" % self.max_line)
                dispatch(line)
                pos = i + 1
            if pos < len(chunk):
                parts.append(chunk[pos:])
                size[0] += len(chunk) - pos
                if size[0] > self.max_line:
                    self.fatal("a line longer than max_line (%d bytes)" % self.max_line)

        def readable():
            try:
                chunk = os.read(self.in_fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError as e:  # called again and again otherwise
                self.fatal("read the protocol's input: %s" % e)
            if chunk:
                take(chunk)
                return
            loop.remove_reader(self.in_fd)
            if parts:
                self.fatal("a last line without a newline")
            closing(None)

        take(self.pending)  # read past init's line
        self.pending = b""
        loop.add_reader(self.in_fd, readable)
        await stop.wait()
        loop.remove_reader(self.in_fd)

    async def close(self, tasks, by, stop):
        """Waits for the tasks in flight, cancels those still running
        CANCEL_BEFORE_BY seconds before by (Unix milliseconds), then sets
        stop."""
        import asyncio

        if tasks:
            timeout = None
            if by:
                timeout = max(0.0, by / 1000.0 - time.time() - CANCEL_BEFORE_BY)
            _, pending = await asyncio.wait(list(tasks.values()), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=CANCEL_BEFORE_BY / 2)
        stop.set()

    async def run_task(self, msg):
        import asyncio

        id = msg.get("id")
        hops = None
        try:
            value = self.call(msg)
            if is_awaitable(value):
                value = await value
            if isinstance(msg.get("route"), dict):
                gen, hops = self.routed(msg, value)
                aw = first(gen)
                if aw is not None:
                    await drive(gen, aw)
        except asyncio.CancelledError:
            self.error(id, "cancelled", "cancelled by the runner")
            return
        except Exception as e:  # MemoryError included: reported as oom
            self.failure(id, e)
            return
        finally:
            self.cancelled.discard(id)
        self.result(id, value, hops)

    async def run_test_task(self, msg):
        id = msg.get("id")
        try:
            value = self.call_test(msg)
            if is_awaitable(value):
                value = await value
        except Exception as e:  # noqa: BLE001 - the test's failure is its answer
            self.failure(id, e)
            return
        self.tested(id, value)


def first(gen):
    """Runs a hop walk (Worker.walk) up to the first awaitable a handler
    returns, or to its end (None): plain handlers never need a loop."""
    try:
        return next(gen)
    except StopIteration:
        return None


async def drive(gen, aw):
    """Runs a hop walk on from awaitable aw: each awaited value is sent
    back to it, each failure thrown back into it (the hop's error)."""
    import asyncio

    while True:
        try:
            got = await aw
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the hop's failure, thrown back to it
            try:
                aw = gen.throw(e)
            except StopIteration:
                return
            continue
        try:
            aw = gen.send(got)
        except StopIteration:
            return


def main():
    w = Worker()
    line = w.readline()
    if line is None:
        return
    try:
        msg = json.loads(line)
    except ValueError:
        msg = None
    if not isinstance(msg, dict) or msg.get("type") != "init":
        w.fatal("first message must be init, got %.100r" % line)
    w.init(msg)
    if w.is_async:
        import asyncio

        asyncio.run(w.serve_async())
    else:
        w.serve_sync()
    w.out.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
