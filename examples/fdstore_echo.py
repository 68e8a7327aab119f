"""An echo server whose client connections survive a restart: it hands
each one to the next generation through the fd store. Python 3 standard
library only (no python3-systemd). Run it under the supervisor:

    gracewrap -s -v --fdstore 16 -l tcp:127.0.0.1:8000 -- /usr/bin/python3 examples/fdstore_echo.py

then `nc 127.0.0.1 8000`, type a line, `kill -HUP <gracewrap's pid>`, and
type another line on the same connection: the pid in the answer changes.
(tests/integration/fdstore.rs does just that.)

The protocol, as under systemd (sd_notify(3), sd_listen_fds(3)):

- The listening socket is fd 3. Stored fds follow it, one each at 4, 5,
  ... (newest first), counted in LISTEN_FDS and named in LISTEN_FDNAMES
  (colon-separated) by the FDNAME= they were stored with. Here every name
  that starts with "conn-" is a client connection a generation before us
  accepted.
- `FDSTORE=1` + `FDNAME=name` with the fd attached (SCM_RIGHTS) on
  $NOTIFY_SOCKET: gracewrap keeps a copy of the connection open and passes
  it to every generation started after that. It closes it on its own only
  if the connection reports POLLHUP or POLLERR (a reset; `FDPOLL=0` would
  turn that off), not when the client merely closes its end.
- `FDSTOREREMOVE=1` + `FDNAME=name`: gracewrap closes every stored fd of
  that name. Send it when a connection ends, or the store fills up
  (--fdstore N) with dead connections.
- A name is printable ASCII without ':', at most 255 bytes, and should be
  unique: FDSTOREREMOVE=1 closes all fds of a name. Here: "conn-", our
  pid, a random tag (a pid comes back some day) and a counter.

The caveat: the old and the new generation run side by side during a
restart, until the new one sends READY=1 and the old one gets SIGTERM.
Both hold the connections stored before the restart and wait on them;
each chunk a client sends is read by exactly one of them, whichever
reads first, and that one answers. A client that waits for each answer
before it sends again is served by either generation during the restart,
and by the new one alone once the old one has exited. (A client that
sends again before the answer may get its answers out of order
meanwhile.) That is why reads here never block: the other generation may
have read the chunk a wake-up was for. And a connection the old
generation accepts after the new one started is not in the new one's
store: only the generation after that gets it, and until then nobody
answers it.

On SIGTERM we exit at once and do not call shutdown(2) on anything: a
shutdown would end the connection for every process holding it, the
store and the new generation included. Plain close(2), or just exiting,
only drops our own reference.
"""

import os
import secrets
import selectors
import signal
import socket
import sys

SD_LISTEN_FDS_START = 3


def sd_notify(message, fds=()):
    """sd_pid_notify_with_fds(3) in a few lines: one datagram to
    $NOTIFY_SOCKET (a path, or an abstract name written with a leading
    '@'), the fds attached as SCM_RIGHTS. The supervisor learns our pid
    from the kernel (SO_PASSCRED), so nothing else is needed."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    ancillary = []
    if fds:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS,
                          b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendmsg([message.encode()], ancillary, 0, path)


def passed_fds():
    """[(fd, name)] from LISTEN_FDS and LISTEN_FDNAMES, if they are meant
    for us (LISTEN_PID); the variables are removed either way, so that a
    program we start does not take our fds for its own."""
    pid = os.environ.pop("LISTEN_PID", None)
    count = int(os.environ.pop("LISTEN_FDS", "0"))
    names = os.environ.pop("LISTEN_FDNAMES", "")
    os.environ.pop("LISTEN_PIDFDID", None)
    if pid != str(os.getpid()):
        return []
    names = names.split(":") if names else ["unknown"] * count
    return list(zip(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count), names))


def main():
    fds = passed_fds()
    if not fds:
        sys.exit("fdstore_echo.py: no socket passed (run it under gracewrap -s -l ...)")
    # Exit at once on SIGTERM: no shutdown(2), no goodbye to the clients
    # (see above). os._exit skips every cleanup.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    sel = selectors.DefaultSelector()
    # Non-blocking: the other generation may accept the connection that
    # woke us. (O_NONBLOCK is shared with every process holding the
    # listener; all generations of this program want it anyway.)
    listener = socket.socket(fileno=fds[0][0])
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    for fd, name in fds[1:]:
        if name.startswith("conn-"):
            # Already stored under this name: nothing to send.
            conn = socket.socket(fileno=fd)
            conn.set_inheritable(False)
            sel.register(conn, selectors.EVENT_READ, name)
        else:
            os.close(fd)  # not ours to serve; the store keeps its copy

    prefix = "conn-%d-%s-" % (os.getpid(), secrets.token_hex(4))
    accepted = 0
    sd_notify("READY=1")
    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue  # the other generation took it
                accepted += 1
                name = prefix + str(accepted)
                # At once: a restart may come before the client speaks.
                sd_notify("FDSTORE=1\nFDNAME=" + name, [conn.fileno()])
                sel.register(conn, selectors.EVENT_READ, name)
                continue
            conn, name = key.fileobj, key.data
            try:
                chunk = conn.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue  # the other generation read it
            except ConnectionError:
                chunk = b""
            if chunk:
                try:
                    conn.sendall(b"gen %d: %s" % (os.getpid(), chunk))
                    continue
                except OSError:
                    pass  # the client is gone: forget it, as at EOF
            # The client is done: out of the store, then closed (close,
            # not shutdown: another generation may hold it too).
            sd_notify("FDSTOREREMOVE=1\nFDNAME=" + name)
            sel.unregister(conn)
            conn.close()


if __name__ == "__main__":
    main()
