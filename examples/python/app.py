"""A WSGI application for gunicorn, which takes the listening socket from
gracewrap itself: through LISTEN_FDS, or with --bind fd://3 under
gracewrap --no-pid. See examples/README.md:

    gracewrap -l http=tcp:127.0.0.1:8000 -- gunicorn --chdir examples/python app:app
"""

import os


def app(environ, start_response):
    # This runs in a worker; its parent is the gunicorn master, the process
    # gracewrap started. gunicorn removes LISTEN_PID and LISTEN_FDS but
    # leaves LISTEN_FDNAMES.
    body = ('hello from gunicorn (master %d, worker %d, socket "%s")\n' % (
        os.getppid(), os.getpid(), os.environ.get("LISTEN_FDNAMES", "unknown"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
