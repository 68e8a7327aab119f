//! `--ready auto` (the default): a generation of a program that does not
//! speak sd_notify is ready once one of its processes waits for
//! connections on a passed socket. Real servers, each restarted with no
//! readiness option; and the ways it must fail safe.

use std::time::{Duration, Instant};

use crate::util::*;

/// A restart of `program` (gracewrap -s with no readiness option, one
/// socket on 127.0.0.1) completes: the new generation is found waiting
/// for connections, in the way `how` names ("in accept", "polling", "in
/// select", "with epoll"), and answers. Returns the time from SIGHUP to
/// the "serves now" line.
#[track_caller]
fn restarts_by_itself(program: &[&str], how: &str) -> Duration {
    restarts_with(&[], program, how)
}

/// [`restarts_by_itself`] with more options for gracewrap.
#[track_caller]
fn restarts_with(options: &[&str], program: &[&str], how: &str) -> Duration {
    let mut cmd = gracewrap(["-s", "-v"]);
    cmd.args(options);
    let mut gw = Running::spawn(cmd.args(["-l", "tcp:127.0.0.1:0", "--"]).args(program));
    let addr = gw.listening_addr();
    let first = gw.stderr_line("generation 1 (pid");
    let first = if first.contains("is ready") {
        first
    } else {
        gw.stderr_line("is ready")
    };
    assert!(first.contains(how), "{program:?}: {first}");
    answers(&addr);
    let start = Instant::now();
    signal(&gw, libc::SIGHUP);
    let line = gw.stderr_line("it serves now");
    let took = start.elapsed();
    assert!(
        line.contains("generation 2 (pid") && line.contains(how),
        "{program:?}: {line}"
    );
    answers(&addr);
    signal(&gw, libc::SIGTERM);
    gw.wait();
    took
}

/// Waits until the server answers an HTTP request. (The generation being
/// replaced may take a connection and die of the stop signal before it
/// answers: these servers do not drain.)
#[track_caller]
fn answers(addr: &str) {
    wait_until("an answer", || try_http_get(addr).is_ok());
}

/// A Python program on fd 3.
fn python(code: &'static str) -> Vec<&'static str> {
    vec!["/usr/bin/python3", "-c", code]
}

const HTTP_SERVER: &str = "
import http.server, socket, socketserver
class S(http.server.HTTPServer):
    def __init__(self):
        socketserver.BaseServer.__init__(self, None, http.server.SimpleHTTPRequestHandler)
        self.socket = socket.socket(fileno=3)
S().serve_forever()
";

const ACCEPT_LOOP: &str = "
import socket
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nhi')
    c.close()
";

const SELECT_LOOP: &str = "
import select, socket
s = socket.socket(fileno=3)
while True:
    select.select([s], [], [])
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nhi')
    c.close()
";

const ASYNCIO: &str = "
import asyncio, socket
async def answer(r, w):
    await r.read(4096)
    w.write(b'HTTP/1.0 200 OK\\r\\n\\r\\nhi')
    await w.drain()
    w.close()
async def main():
    server = await asyncio.start_server(answer, sock=socket.socket(fileno=3))
    await server.serve_forever()
asyncio.run(main())
";

/// Python's http.server (socketserver's serve_forever polls).
#[test]
fn python_http_server_restarts_with_no_option() {
    restarts_by_itself(&python(HTTP_SERVER), "polling");
}

/// A plain accept loop (Python's socket.accept).
#[test]
fn a_blocking_accept_loop_restarts_with_no_option() {
    restarts_by_itself(&python(ACCEPT_LOOP), "in accept");
}

/// select(2) on the listener.
#[test]
fn a_select_loop_restarts_with_no_option() {
    restarts_by_itself(&python(SELECT_LOOP), "in select");
}

/// asyncio: the listener in an epoll set.
#[test]
fn an_asyncio_server_restarts_with_no_option() {
    restarts_by_itself(&python(ASYNCIO), "with epoll");
}

/// Rust's std TcpListener in an accept loop (through the listenfd crate).
#[test]
fn a_rust_std_accept_loop_restarts_with_no_option() {
    let server = example("listenfd_server");
    restarts_by_itself(&[server.to_str().unwrap()], "in accept");
}

/// Node.js: `listen({fd: 3})`, libuv's epoll.
#[test]
fn a_node_server_restarts_with_no_option() {
    require("node", "nodejs");
    restarts_by_itself(
        &[
            "node",
            "-e",
            "require('http').createServer((q, r) => r.end('hi')).listen({fd: 3})",
        ],
        "with epoll",
    );
}

/// gunicorn: the master reads LISTEN_FDS and sends READY=1 itself, so
/// with no option that is what makes it ready. With `--ready listen`, the
/// processes seen waiting are its workers, children of the generation:
/// sync workers in select(2), gthread workers with epoll.
#[test]
fn gunicorn_sync_and_gthread_workers_restart_with_no_option() {
    require("gunicorn", "gunicorn");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python");
    for (class, how) in [("sync", "in select"), ("gthread", "with epoll")] {
        let program = [
            "gunicorn",
            "--chdir",
            dir,
            "--workers",
            "2",
            "--worker-class",
            class,
            "app:app",
        ];
        restarts_by_itself(&program, "READY=1");
        let took = restarts_with(&["--ready", "listen"], &program, how);
        // The first worker waits long before the master would notify.
        assert!(took < Duration::from_secs(5), "{class}: {took:?}");
    }
}

/// Fails loudly where a server is not installed (.ci/deps installs it).
fn require(command: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{command} is missing: install {package} (.ci/deps does)"
    );
}

/// Generation 1 serves fd 3 from an accept loop; later generations do
/// what MODE (argv[2]) says: `sleep`, `own` (accept on a socket of their
/// own), `notify` (send READY=1, then accept: generation 1 does too).
const LATER: &str = "
import os, socket, sys, time
flag, mode = sys.argv[1], sys.argv[2]
first = not os.path.exists(flag)
open(flag, 'a').close()
if mode == 'notify' and first:
    addr = os.environ['NOTIFY_SOCKET'].replace('@', '\\0', 1)
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', addr)
if not first and mode == 'sleep':
    time.sleep(100)
s = socket.socket(fileno=3)
if not first and mode == 'own':
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen()
while True:
    s.accept()[0].close()
";

/// Restarts a LATER program in `mode` with --ready-timeout 1s; returns
/// the line that says the restart failed.
fn later_generation_fails(mode: &str, options: &[&str]) -> String {
    let dir = temp_dir("later");
    let flag = dir.join("started");
    let mut cmd = gracewrap(["-s", "-v"]);
    cmd.args(options);
    let mut gw = Running::spawn(cmd.args([
        "--ready-timeout",
        "1s",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "/usr/bin/python3",
        "-c",
        LATER,
        flag.to_str().unwrap(),
        mode,
    ]));
    let addr = gw.listening_addr();
    gw.stderr_line("is ready");
    signal(&gw, libc::SIGHUP);
    let line = gw.stderr_line("was not ready within 1s");
    // The old generation keeps serving.
    assert!(std::net::TcpStream::connect(&addr).is_ok(), "{mode}");
    signal(&gw, libc::SIGTERM);
    gw.wait();
    line
}

/// It fails safe: a generation that waits on no passed socket (it sleeps,
/// or serves a socket of its own) is not ready; the restart fails after
/// --ready-timeout, says why, and the old generation keeps serving.
#[test]
fn a_generation_not_waiting_on_the_sockets_is_never_ready() {
    for mode in ["sleep", "own"] {
        let line = later_generation_fails(mode, &[]);
        assert!(
            line.contains("not seen waiting for connections on the sockets"),
            "{mode}: {line}"
        );
    }
}

/// Once a generation has sent READY=1, --ready auto waits for READY=1
/// alone: a later generation that only accepts is not taken for ready
/// (it may not be done starting), and the message says why.
#[test]
fn after_a_ready_1_later_generations_are_awaited_for_ready_1_only() {
    let line = later_generation_fails("notify", &[]);
    assert!(line.contains("which an earlier generation sent"), "{line}");
}

/// --ready notify: READY=1 only, as before --ready existed: a
/// generation that accepts but does not notify is not ready.
#[test]
fn ready_notify_does_not_look_at_the_sockets() {
    let line = later_generation_fails("notify", &["--ready", "notify"]);
    assert!(line.contains("(no READY=1 on NOTIFY_SOCKET)"), "{line}");
}

/// The README's supervisor example runs as written, with a server that
/// does not notify and no option a newcomer would not know to add (only
/// the port, the pid file's directory and the server are the test's).
#[test]
fn the_readmes_supervisor_example_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block: String = readme
        .split("### Supervisor mode\n\n```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the README's supervisor mode example")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = temp_dir("readme-supervisor");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (name, version) in [("server", "v1"), ("server.new", "v2")] {
        write_executable(
            &dir.join(name),
            &format!(
                "#!/usr/bin/python3
import socket
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\n{version}')
    c.close()
"
            ),
        );
    }
    let pid_file = dir.join("server.pid");
    let script = block
        .replace("tcp::8080", &format!("tcp:127.0.0.1:{port}"))
        .replace("/tmp/server.pid", &pid_file.to_string_lossy());
    // A person types the second line a while after the first; the test
    // waits for the pid file instead. And it stops what it started, even
    // when a line fails.
    let (first, rest) = script.split_once('\n').unwrap();
    let script = format!(
        "set -e\n{first}\ngw=$!\ntrap 'kill $gw 2>/dev/null || true' EXIT\n\
         while [ ! -e {pid} ]; do sleep 0.05; done\n{rest}\nkill $gw\nwait $gw || true",
        pid = pid_file.display()
    );
    // gracewrap from this build; then the test stops the supervisor.
    let bin = std::path::Path::new(gracewrap_path()).parent().unwrap();
    let out = run(std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(&dir)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display())));
    assert_eq!(out.code(), 0, "{script}\n{out:?}");
    let pid: u32 = out.stdout.trim().parse().expect("the new generation's pid");
    assert!(pid > 0);
    assert!(out.stderr.contains("it serves now"), "{out:?}");
}

/// A mio event loop (tokio's building block): the listener in an epoll
/// set.
#[test]
fn a_mio_event_loop_restarts_with_no_option() {
    let server = example("mio_server");
    restarts_by_itself(&[server.to_str().unwrap()], "with epoll");
}
