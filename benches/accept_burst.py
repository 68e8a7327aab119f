#!/usr/bin/env python3
"""benches/accept_burst.py - N connections at once against an accept loop.

usage: accept_burst.py PORT N EXPECT

Opens N connections to 127.0.0.1:PORT all at once, reads each to EOF and
prints one line of figures: how many got EXPECT, how many did not (lost),
and the time from the start to each one's EOF (p50, p99, max) in ms.
Standard library only.
"""

import asyncio
import resource
import sys
import time


async def one(port, expect, t0):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = await reader.read()
        writer.close()
        ok = data == expect
    except OSError:
        ok = False
    return ok, time.monotonic() - t0


async def main(port, n, expect):
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(port, expect, t0) for _ in range(n)))
    waits = sorted(t for ok, t in results if ok)
    lost = n - len(waits)
    if not waits:
        print(f"served 0 lost {lost}")
        return 1
    pick = lambda q: waits[min(len(waits) - 1, int(len(waits) * q))] * 1000
    print(
        f"served {len(waits)} lost {lost} "
        f"p50_ms {pick(0.5):.0f} p99_ms {pick(0.99):.0f} max_ms {waits[-1] * 1000:.0f}"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    port, n, expect = int(sys.argv[1]), int(sys.argv[2]), (sys.argv[3] + "\n").encode()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    sys.exit(asyncio.run(main(port, n, expect)))
