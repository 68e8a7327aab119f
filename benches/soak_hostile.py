"""The hostile local user of benches/soak.sh (HOSTILE=1).

soak.sh copies this file to a 0755 directory under /tmp and runs it as an
unprivileged user (uid and gid 65534, no supplementary groups, no
capabilities):

    python3 -I soak_hostile.py TARGETS CONNS RATE HOLD

TARGETS is a file that soak.sh (root) rewrites while the soak runs, one
target per line; it is read again whenever it changes:

    tcp HOST PORT        the public listener
    pid PID              gracewrap's own pid
    notify PATH          the NOTIFY_SOCKET of the generations (a path in
                         gracewrap's private 0700 directory)
    abstract NAME        an abstract unix socket of gracewrap's, if any
                         (NAME as /proc/net/unix shows it, without the @)

Until SIGTERM, it attacks with what any local user has:

  notify   every 50 ms, to NOTIFY_SOCKET and to each abstract socket:
           READY=1, STATUS=..., 4 KiB of junk, and FDSTORE=1 with an fd;
           every second it also tries to list the private directory and
           to read gracewrap's /proc/PID/environ (where the path is);
  signals  every 50 ms one of HUP TERM USR1 INT KILL to gracewrap's pid;
  tcp      connections to the listener, at most CONNS open at once and
           RATE new ones a second: 3 of 4 slots for connections that
           never send anything (closed after HOLD seconds; 0 = only when
           the server closes them), the rest half-closed at once
           (shutdown(SHUT_WR), then read to the end); every third new
           connection is instead reset at once (SO_LINGER 0).

On SIGTERM it prints its counts, one `NAME VALUE` per line, and exits 0.
An accepted datagram or a delivered signal is only counted here; soak.sh
decides.
"""

import array
import errno
import os
import selectors
import signal
import socket
import struct
import sys
import time

STOP = False


def on_term(_sig, _frame):
    global STOP
    STOP = True


class Counts(dict):
    def add(self, key, n=1):
        self[key] = self.get(key, 0) + n


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def load_targets(path):
    t = {"tcp": None, "pid": None, "notify": None, "abstract": []}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "tcp":
                host, port = rest.split()
                t["tcp"] = (host, int(port))
            elif kind == "pid":
                t["pid"] = int(rest)
            elif kind == "notify":
                t["notify"] = rest
            elif kind == "abstract":
                t["abstract"].append(b"\0" + os.fsencode(rest))
    return t


def notify_round(t, c, dgram, junk, spare_fd):
    rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [spare_fd]))
    dests = []
    if t["notify"]:
        dests.append(("notify", t["notify"]))
    dests += [("abstract", a) for a in t["abstract"]]
    messages = [
        b"READY=1",
        b"STATUS=hostile user was here\nREADY=1\nMAINPID=1",
        junk,
    ]
    for kind, addr in dests:
        for m in messages:
            try_send(c, kind, lambda: dgram.sendto(m, addr))
        try_send(
            c,
            kind,
            # socket.send_fds() would drop the address: sendmsg itself.
            lambda: dgram.sendmsg([b"FDSTORE=1"], [rights], 0, addr),
        )


def try_send(c, kind, send):
    c.add(kind + "_tried")
    try:
        send()
        c.add(kind + "_accepted")
    except OSError as e:
        if e.errno == errno.EACCES:
            c.add(kind + "_eacces")
        else:
            c.add(kind + "_other")
            c.add(kind + "_other_" + errname(e))


def recon(t, c):
    attempts = []
    if t["notify"]:
        attempts.append(lambda: os.listdir(os.path.dirname(t["notify"])))
    if t["pid"]:
        attempts.append(lambda: open(f"/proc/{t['pid']}/environ", "rb").read())
    for attempt in attempts:
        c.add("recon_tried")
        try:
            attempt()
            c.add("recon_succeeded")
        except PermissionError:
            c.add("recon_refused")
        except OSError as e:
            c.add("recon_other_" + errname(e))


SIGNALS = [signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGKILL]


def signal_once(t, c, i):
    if not t["pid"]:
        return
    c.add("signal_tried")
    try:
        os.kill(t["pid"], SIGNALS[i % len(SIGNALS)])
        c.add("signal_delivered")
    except PermissionError:
        c.add("signal_eperm")
    except OSError as e:
        c.add("signal_other")
        c.add("signal_other_" + errname(e))


class Tcp:
    """The pool of hostile connections."""

    def __init__(self, c, conns, rate, hold):
        self.c, self.conns, self.rate, self.hold = c, conns, rate, hold
        self.sel = selectors.DefaultSelector()
        self.open = {}  # socket -> [kind, state, since]
        self.by_kind = {"idle": 0, "halfclose": 0, "reset": 0}
        self.tokens = 0.0
        self.last = time.monotonic()
        self.serial = 0

    def kind_for_new(self):
        self.serial += 1
        if self.serial % 3 == 0:
            return "reset"
        idle_cap = self.conns * 3 // 4
        if self.serial % 3 == 1 and self.by_kind["idle"] < idle_cap:
            return "idle"
        if self.by_kind["halfclose"] < self.conns - idle_cap:
            return "halfclose"
        if self.by_kind["idle"] < idle_cap:
            return "idle"
        return None

    def fill(self, addr, now):
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        while self.tokens >= 1 and len(self.open) < self.conns:
            kind = self.kind_for_new()
            if kind is None:
                break
            self.tokens -= 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            if kind == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            err = s.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                self.c.add("tcp_connect_failed")
                self.c.add("tcp_connect_failed_" + errno.errorcode.get(err, str(err)))
                s.close()
                continue
            self.open[s] = [kind, "connecting", now]
            self.by_kind[kind] += 1
            self.sel.register(s, selectors.EVENT_WRITE)
            self.c["tcp_max_open"] = max(self.c.get("tcp_max_open", 0), len(self.open))

    def close(self, s):
        kind = self.open.pop(s)[0]
        self.by_kind[kind] -= 1
        self.sel.unregister(s)
        s.close()

    def step(self, timeout, now):
        for key, _ in self.sel.select(timeout):
            s = key.fileobj
            kind, state, _ = self.open[s]
            if state == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.c.add("tcp_connect_failed")
                    self.c.add("tcp_connect_failed_" + errno.errorcode.get(err, str(err)))
                    self.close(s)
                    continue
                self.c.add("tcp_opened")
                self.c.add("tcp_" + kind)
                if kind == "reset":
                    self.close(s)  # SO_LINGER 0: an RST
                    continue
                if kind == "halfclose":
                    s.shutdown(socket.SHUT_WR)
                self.open[s] = [kind, "open", now]
                self.sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                self.c.add("tcp_reset_by_server")
                self.close(s)
                continue
            except BlockingIOError:
                continue
            if data:
                self.c.add("tcp_answered_" + kind)
                continue
            self.c.add("tcp_closed_by_server_" + kind)
            self.close(s)
        if self.hold > 0:
            for s, (kind, state, since) in list(self.open.items()):
                if kind == "idle" and state == "open" and now - since >= self.hold:
                    self.c.add("tcp_idle_held_to_the_end")
                    self.close(s)


def stamp(path):
    """Changes whenever soak.sh renames a new TARGETS into place."""
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns)


def main():
    targets_path = sys.argv[1]
    conns, rate, hold = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    c = Counts(uid=os.getuid(), gid=os.getgid(), groups=len(os.getgroups()))
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.setblocking(False)
    junk = os.urandom(4096)
    spare_fd = os.open("/dev/null", os.O_RDONLY)
    tcp = Tcp(c, conns, rate, hold)
    t = load_targets(targets_path)
    seen = stamp(targets_path)
    start = time.monotonic()
    next_notify = next_signal = next_recon = start
    i = 0
    while not STOP:
        now = time.monotonic()
        st = stamp(targets_path)
        if st != seen:
            seen, t = st, load_targets(targets_path)
        if now >= next_notify:
            notify_round(t, c, dgram, junk, spare_fd)
            next_notify += 0.05
        if now >= next_signal:
            signal_once(t, c, i)
            i += 1
            next_signal += 0.05
        if now >= next_recon:
            recon(t, c)
            next_recon += 1.0
        if t["tcp"]:
            tcp.fill(t["tcp"], now)
        wake = min(next_notify, next_signal) - time.monotonic()
        tcp.step(max(0.0, min(wake, 0.01)), time.monotonic())
    c["abstract_targets"] = len(t["abstract"])
    c["tcp_open_at_the_end"] = len(tcp.open)
    c["seconds"] = round(time.monotonic() - start)
    for k in sorted(c):
        print(k, c[k])


if __name__ == "__main__":
    main()
