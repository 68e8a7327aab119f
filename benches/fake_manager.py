#!/usr/bin/env python3
"""benches/fake_manager.py - a service manager's notify side, for benchmarks.

    fake_manager.py [--watchdog-usec USEC] [--no-watchdog-pid] [--log PATH]
                    [--summary PATH] -- COMMAND [ARG...]

Runs COMMAND as systemd runs a Type=notify service with WatchdogSec=:
binds a unix datagram socket (in a fresh private directory) with
SO_PASSCRED, and starts COMMAND with NOTIFY_SOCKET=<that socket>,
WATCHDOG_USEC=USEC (default 2000000, a 2 s watchdog) and WATCHDOG_PID=<the
pid of COMMAND> (through `sh -c 'WATCHDOG_PID=$$ exec ...'`; with
--no-watchdog-pid it is unset instead). Every datagram is recorded with the
time it arrived (CLOCK_MONOTONIC, microseconds since COMMAND was started)
and the pid that sent it (SCM_CREDENTIALS), one line each in --log:
`T_US PID TEXT` (TEXT with newlines as \\n). It acts on none of them: it
only watches.

SIGTERM or SIGINT is passed on to COMMAND (the time noted, as `stop`),
and the manager exits, with COMMAND's status, once COMMAND has exited.
COMMAND exiting before it was told to stop is an error (exit status 1 if
COMMAND's own was 0).

Then the summary, `key=value` lines in --summary (default: stdout) and one
line for humans on stderr:

  datagrams, from_others   all datagrams; those from a pid other than
                           COMMAND's (systemd's NotifyAccess=main would drop
                           them; counted, not analysed further)
  pings                    WATCHDOG=1 from COMMAND
  first_ping_ms            from the start of COMMAND to its first WATCHDOG=1
  max_gap_ms, max_gap_at_s the largest interval between consecutive
                           WATCHDOG=1 (the start-to-first one included), and
                           when it ended (s since the start)
  gap_p50_ms, gap_p99_ms   the same intervals' median and 99th percentile
  last_ping_to_stop_ms     from the last WATCHDOG=1 to the stop signal
  late                     intervals (all of the above) longer than 1.2 half
                           intervals: a ping that should have come did not
  misses                   intervals longer than USEC: where systemd's
                           watchdog would have fired
  ready, reloading, stopping, extend_timeout, status, watchdog_other,
  other                    counts of READY=1, RELOADING=1, STOPPING=1,
                           EXTEND_TIMEOUT_USEC=, STATUS=, WATCHDOG= other
                           than 1, and datagrams with none of these
  exit_status              COMMAND's (128+N for a signal N)

Needs Python 3 (stdlib) on Linux.
"""

import argparse
import array
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

UCRED = struct.Struct("iII")  # pid_t pid; uid_t uid; gid_t gid
MAX_FDS = 253  # SCM_MAX_FD


def now_us(t0):
    return (time.monotonic_ns() - t0) // 1000


def percentile(values, q):
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def receive(sock):
    """One datagram, or None when there is none: (text, sender pid)."""
    try:
        data, anc, _flags, _addr = sock.recvmsg(
            4096, socket.CMSG_SPACE(UCRED.size) + socket.CMSG_SPACE(MAX_FDS * 4)
        )
    except (BlockingIOError, InterruptedError):
        return None
    pid = -1
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = UCRED.unpack(payload[: UCRED.size])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    return data.decode("utf-8", "replace"), pid


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--watchdog-usec", type=int, default=2_000_000)
    ap.add_argument("--no-watchdog-pid", action="store_true")
    ap.add_argument("--log")
    ap.add_argument("--summary")
    ap.add_argument("command", nargs="+")
    a = ap.parse_args()
    usec = a.watchdog_usec

    tmp = tempfile.mkdtemp(prefix="fake_manager.")
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(path)
    sock.setblocking(False)
    log = open(a.log, "w", encoding="utf-8") if a.log else None

    env = dict(os.environ)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
        env.pop(name, None)
    env["NOTIFY_SOCKET"] = path
    env["WATCHDOG_USEC"] = str(usec)
    argv = a.command
    if not a.no_watchdog_pid:
        argv = ["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"] + argv

    records = []  # (t_us, pid, text)
    stop_at = None
    stop_signal = [0]  # logged by the main loop (no I/O in the handler)
    t0 = time.monotonic_ns()
    child = subprocess.Popen(argv, env=env)
    main_pid = child.pid
    if log:
        log.write("0 %d start %s\n" % (main_pid, " ".join(a.command)))

    def on_signal(signum, _frame):
        nonlocal stop_at
        if stop_at is None:
            stop_at = now_us(t0)
            stop_signal[0] = signum
        try:
            os.kill(main_pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def drain():
        while True:
            got = receive(sock)
            if got is None:
                return
            text, pid = got
            t = now_us(t0)
            records.append((t, pid, text))
            if log:
                log.write("%d %d %s\n" % (t, pid, text.replace("\n", "\\n")))

    status = None
    while status is None:
        try:
            select.select([sock], [], [], 0.05)
        except InterruptedError:
            pass
        if stop_signal[0] and log:
            log.write("%d %d stop (signal %d)\n" % (stop_at, main_pid, stop_signal[0]))
            stop_signal[0] = 0
        drain()
        status = child.poll()
    drain()
    end = now_us(t0)
    if log:
        log.write("%d %d exit %d\n" % (end, main_pid, status))
        log.close()
    sock.close()
    os.unlink(path)
    os.rmdir(tmp)
    if status < 0:
        status = 128 - status

    # The analysis: what systemd's side would have seen from the main pid.
    counts = dict.fromkeys(
        ("ready", "reloading", "stopping", "extend_timeout", "status", "watchdog_other", "other"), 0
    )
    pings = []
    others = 0
    for t, pid, text in records:
        if pid != main_pid:
            others += 1
            continue
        lines = text.split("\n")
        keys = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in lines if "=" in line}
        hit = False
        for key, value, name in (
            ("READY", "1", "ready"),
            ("RELOADING", "1", "reloading"),
            ("STOPPING", "1", "stopping"),
        ):
            if keys.get(key) == value:
                counts[name] += 1
                hit = True
        if "EXTEND_TIMEOUT_USEC" in keys:
            counts["extend_timeout"] += 1
            hit = True
        if "STATUS" in keys:
            counts["status"] += 1
            hit = True
        if "WATCHDOG" in keys:
            hit = True
            if keys["WATCHDOG"] == "1":
                pings.append(t)
            else:
                counts["watchdog_other"] += 1
        if not hit:
            counts["other"] += 1

    gaps = []  # (length_us, end_us)
    prev = 0
    for t in pings:
        gaps.append((t - prev, t))
        prev = t
    tail = (stop_at if stop_at is not None else end) - prev
    every = [g for g, _ in gaps] + [tail]
    biggest = max(gaps) if gaps else (0, 0)
    out = {
        "datagrams": len(records),
        "from_others": others,
        "pings": len(pings),
        "first_ping_ms": "%.1f" % (pings[0] / 1000) if pings else "-",
        "max_gap_ms": "%.1f" % (biggest[0] / 1000),
        "max_gap_at_s": "%.3f" % (biggest[1] / 1e6),
        "gap_p50_ms": "%.1f" % (percentile([g for g, _ in gaps], 0.5) / 1000),
        "gap_p99_ms": "%.1f" % (percentile([g for g, _ in gaps], 0.99) / 1000),
        "last_ping_to_stop_ms": "%.1f" % (tail / 1000),
        "late": sum(g > usec // 2 * 1.2 for g in every),
        "misses": sum(g > usec for g in every),
        **counts,
        "exit_status": status,
        "watchdog_usec": usec,
        "duration_s": "%.3f" % (end / 1e6),
    }
    text = "".join("%s=%s\n" % kv for kv in out.items())
    if a.summary:
        with open(a.summary, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    print(
        "fake_manager: upward watchdog: %d pings, largest gap %s ms, misses %d (WATCHDOG_USEC=%d)"
        % (len(pings), out["max_gap_ms"], out["misses"], usec),
        file=sys.stderr,
    )
    if stop_at is None:
        print(
            "fake_manager: %s exited (status %d) before it was told to stop" % (a.command[0], status),
            file=sys.stderr,
        )
        return status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
