"""An HTTP server that takes its listening socket from gracewrap (or
systemd) through libsystemd's sd_listen_fds_with_names(3), as
python3-systemd wraps it (Debian: apt-get install python3-systemd, for
/usr/bin/python3). See examples/README.md:

    gracewrap -l http=tcp:127.0.0.1:8000 -- /usr/bin/python3 examples/python/systemd_daemon.py
"""

import http.server
import os
import socket
import sys

from systemd import daemon


def main():
    # {fd: name}; empty unless LISTEN_PID is this process's pid. Also
    # removes the LISTEN_* variables and sets FD_CLOEXEC on the fds.
    fds = daemon.listen_fds_with_names()
    if not fds:
        sys.exit("systemd_daemon.py: no socket passed to this process "
                 "(run it under gracewrap -l ...; LISTEN_PID must be its pid)")
    fd = min(fds)
    name = fds[fd]
    if not daemon.is_socket(fd, socket.AF_UNSPEC, socket.SOCK_STREAM, 1):
        sys.exit("systemd_daemon.py: fd %d is not a listening stream socket" % fd)
    # fileno= takes the fd as it is; family and type come from the kernel.
    sock = socket.socket(fileno=fd)
    body = ('hello from systemd_daemon.py (pid %d, fd %d, socket "%s")\n' % (os.getpid(), fd, name)).encode()

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
