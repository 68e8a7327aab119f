//! gracewrap in front of consumers written by others. A real HTTP request
//! goes through each.

use crate::util::*;

/// Debian's python3: the one python3-systemd (apt) installs into.
const PYTHON: &str = "/usr/bin/python3";

/// Serves one HTTP request on `sock` and exits. `{prologue}` gets `sock`
/// and `name`.
fn python_server(prologue: &str) -> String {
    format!(
        r#"
import os, socket, http.server
{prologue}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from pid %d, socket %s\n" % (os.getpid(), name)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(sock.getsockname()[:2], H, bind_and_activate=False)
srv.socket = sock
srv.handle_request()
"#
    )
}

#[test]
fn python_socket_fromfd_consumer_serves_http() {
    let script = python_server(
        r#"
assert os.environ["LISTEN_PID"] == str(os.getpid()), "LISTEN_PID is not ours"
assert os.environ["LISTEN_FDS"] == "1"
name = os.environ["LISTEN_FDNAMES"]
sock = socket.fromfd(3, socket.AF_INET, socket.SOCK_STREAM)
"#,
    );
    let mut g = Running::spawn(&mut gracewrap([
        "-l",
        "web=tcp:127.0.0.1:0",
        "--",
        PYTHON,
        "-c",
        &script,
    ]));
    let addr = g.listening_addr();
    let body = http_get(&addr);
    assert_eq!(
        body,
        format!("hello from pid {}, socket web\n", g.child.id())
    );
    assert!(g.wait().success());
}

/// libsystemd's own sd_listen_fds_with_names(), through python3-systemd.
#[test]
fn libsystemd_consumer_gets_the_sockets_and_names() {
    let check = std::process::Command::new(PYTHON)
        .args(["-c", "import systemd.daemon"])
        .output();
    assert!(
        check.is_ok_and(|o| o.status.success()),
        "python3-systemd is not installed: run .ci/deps (apt-get install python3-systemd)"
    );
    let script = python_server(
        r#"
from systemd import daemon
pairs = daemon.listen_fds_with_names(True)
assert sorted(pairs) == [3, 4], pairs
name = pairs[4]
assert pairs[3] == "unknown", pairs
assert daemon.is_socket_inet(4, socket.AF_INET, socket.SOCK_STREAM, 1, 0)
sock = socket.socket(fileno=4)
"#,
    );
    let mut g = Running::spawn(&mut gracewrap([
        "-l",
        "udp:127.0.0.1:0",
        "-l",
        "http=tcp:127.0.0.1:0",
        "--",
        PYTHON,
        "-c",
        &script,
    ]));
    let _udp = g.listening_addr();
    let addr = g.listening_addr();
    let body = http_get(&addr);
    assert_eq!(
        body,
        format!("hello from pid {}, socket http\n", g.child.id())
    );
    assert!(g.wait().success());
}
