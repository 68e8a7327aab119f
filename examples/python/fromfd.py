"""An HTTP server that takes its listening socket from gracewrap (or
systemd) with nothing but the standard library: it reads LISTEN_PID,
LISTEN_FDS and LISTEN_FDNAMES itself, as sd_listen_fds_with_names(3) does.
See examples/README.md:

    gracewrap -l http=tcp:127.0.0.1:8000 -- /usr/bin/python3 examples/python/fromfd.py
"""

import http.server
import os
import socket
import sys

SD_LISTEN_FDS_START = 3


def listen_fds_with_names():
    """[(fd, name, socket)] passed to this process; [] if there are none or
    they were meant for another process (LISTEN_PID). Removes the LISTEN_*
    variables either way, so that programs we start do not take our sockets
    for theirs."""
    pid = os.environ.pop("LISTEN_PID", None)
    count = os.environ.pop("LISTEN_FDS", None)
    names = os.environ.pop("LISTEN_FDNAMES", None)
    os.environ.pop("LISTEN_PIDFDID", None)
    if pid != str(os.getpid()) or count is None:
        return []
    count = int(count)
    names = names.split(":") if names is not None else ["unknown"] * count
    if len(names) != count:
        raise ValueError("LISTEN_FDNAMES names %d sockets, LISTEN_FDS %d" % (len(names), count))
    sockets = []
    for fd, name in zip(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count), names):
        # socket.fromfd() needs the family and type; the kernel knows them.
        probe = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
        family = probe.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        kind = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        probe.close()
        # fromfd() dups the fd (the copy is close-on-exec, as every fd
        # Python opens); close the original, or programs we start would
        # inherit it.
        sockets.append((fd, name, socket.fromfd(fd, family, kind)))
        os.close(fd)
    return sockets


def main():
    sockets = listen_fds_with_names()
    if not sockets:
        sys.exit("fromfd.py: no socket passed to this process "
                 "(run it under gracewrap -l ...; LISTEN_PID must be its pid)")
    fd, name, sock = sockets[0]
    body = ('hello from fromfd.py (pid %d, fd %d, socket "%s")\n' % (os.getpid(), fd, name)).encode()

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    # bind_and_activate=False: the socket is bound and listening already.
    server = http.server.ThreadingHTTPServer(sock.getsockname(), Hello, bind_and_activate=False)
    server.socket = sock
    server.serve_forever()


if __name__ == "__main__":
    main()
