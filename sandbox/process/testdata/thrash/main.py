"""A worker that thrashes at its memory limit, for the drivers' thrash
tests: it fills its cgroup's limit with anonymous memory up to a margin
below it, then reads a file larger than that margin, mapped, over and over.
Every page it reads evicts another it read before, so every read is a major
fault, and the kernel, which can always evict one more file page, never
kills it: without the driver's watch it runs until its deadline.

The message names the limit and the margin: {"limit": bytes, "margin":
bytes}; {"do": "ping"} answers at once. The file is data.bin beside this
one."""

import mmap
import os

hoard = []


def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def handle(input, ctx):
    op = input.get("message") or {}
    if op.get("do") == "ping":
        return {"noop": "pong"}
    target = op["limit"] - op["margin"]
    while rss_anon() < target:
        b = bytearray(1 << 20)
        b[::4096] = b"\x01" * (len(b) // 4096)
        hoard.append(b)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.bin")
    with open(path, "rb") as f:
        # Pages of the file in the page cache are charged to whoever read
        # them first: drop them, so that every page is this worker's.
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    m.madvise(mmap.MADV_RANDOM)  # no read-ahead: a fault reads one page
    total = 0
    while True:
        for off in range(0, len(m), 4096):
            total += m[off]
