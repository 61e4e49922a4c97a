"""The Python implementation of the sandboxtest conformance guest (see the
sandboxtest package documentation for the protocol), run by the process
driver's Python shim. Its handler is a coroutine function, so that the shim
runs invocations as asyncio tasks, concurrently, and a cancel cancels the
task of a wait; the operations that block (spin, sleep, balloon) block the
event loop, as a plain function would."""

import asyncio
import json
import os
import socket
import time

hoard = []  # ballooned memory, kept reachable


async def handle(input, ctx):
    op = input.get("message")
    if isinstance(op, str):
        try:
            op = json.loads(op)
        except ValueError as e:
            return {"noop": "bad message: %s" % e}
    op = op or {}
    do = op.get("do")
    if do == "echo":
        return {"emit": [{"topic": "echo", "message": op.get("data")}]}
    if do == "input":
        return {"emit": [{"topic": "input", "message": input}]}
    if do == "noop":
        return {"noop": op.get("reason")}
    if do == "nothing":
        return {}
    if do == "panic":
        raise RuntimeError("conformance panic")
    if do == "exit":
        os._exit(op.get("code", 0))
    if do == "spin":
        while True:
            pass
    if do == "sleep":
        while True:
            time.sleep(3600)
    if do == "balloon":
        while True:
            b = bytearray(1 << 20)
            b[::4096] = b"\x01" * (len(b) // 4096)
            hoard.append(b)
    if do == "wait":
        await asyncio.Event().wait()  # until the runner cancels the task
    if do == "log":
        ctx.log(op.get("message"), op.get("level") or "info")
        return {"noop": "logged"}
    if do == "fill":
        return {"noop": "x" * op.get("size", 0)}
    if do == "alloc":
        b = bytearray(op.get("size", 0))  # MemoryError
        b[::4096] = b"\x01" * len(range(0, len(b), 4096))
        hoard.append(b)
        return {"noop": "alloc: ok: %d bytes" % len(b)}
    if do == "readfile":
        try:
            with open(op["path"], "rb") as f:
                return {"noop": "readfile: ok: %d bytes" % len(f.read())}
        except OSError as e:
            return {"noop": "readfile: error: %s" % e}
    if do == "writefile":
        try:
            with open(op["path"], "w") as f:
                f.write("x")
            return {"noop": "writefile: ok"}
        except OSError as e:
            return {"noop": "writefile: error: %s" % e}
    if do == "dial":
        host, _, port = op["addr"].rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1) as s:
                s.sendall(b"hello")
            return {"noop": "dial: ok"}
        except OSError as e:
            return {"noop": "dial: error: %s" % e}
    if do == "env":
        import sys
        return {"emit": [{"topic": "env", "message": {"env": ["%s=%s" % kv for kv in os.environ.items()], "args": sys.argv}}]}
    return {"noop": "unknown op %s" % do}
