//! `--fdstore`: what a generation stores with `FDSTORE=1` reaches the
//! generations started after it, after the sockets, in `LISTEN_FDS` and
//! `LISTEN_FDNAMES`; `FDSTOREREMOVE=1` and hang-ups take it out again.
//! Real programs: examples/fdstore_echo.py (standard library only), and
//! generations that store through python3-systemd's `daemon.notify`
//! (libsystemd's sd_pid_notify_with_fds).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use rustix::process::Signal;

use crate::supervise::{kill, pid_in};
use crate::util::*;

const ECHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fdstore_echo.py");

/// Sends `text` on `conn` and reads the answer, `gen <pid>: <text>`;
/// returns the pid.
#[track_caller]
fn echo(conn: &mut TcpStream, text: &str) -> u32 {
    conn.write_all(text.as_bytes()).unwrap();
    let tail = format!(": {text}");
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with(tail.as_bytes()) {
        let n = conn
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("no answer to {text:?} ({e}); got {reply:?}"));
        assert!(
            n > 0,
            "connection closed before the answer to {text:?}; got {reply:?}"
        );
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8(reply).unwrap();
    let pid = reply
        .strip_prefix("gen ")
        .and_then(|r| r.strip_suffix(&tail))
        .and_then(|p| p.parse().ok());
    pid.unwrap_or_else(|| panic!("not an answer to {text:?}: {reply:?}"))
}

/// The text of `line` between `before` and `after`.
#[track_caller]
fn between<'a>(line: &'a str, before: &str, after: &str) -> &'a str {
    let rest = &line[line.find(before).unwrap_or_else(|| panic!("{line}")) + before.len()..];
    &rest[..rest.find(after).unwrap_or_else(|| panic!("{line}"))]
}

/// A connection examples/fdstore_echo.py accepted and stored is served
/// by the next generation after the one that accepted it has exited:
/// the same TCP connection, answered by another pid. When the client
/// leaves, the generation that sees it removes the connection from the
/// store.
#[test]
fn a_client_stays_connected_across_a_restart() {
    let mut gw = Running::spawn(&mut gracewrap([
        "-s",
        "-v",
        "--fdstore",
        "16",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "/usr/bin/python3",
        ECHO,
    ]));
    let addr = gw.listening_addr();
    gw.stderr_line("generation 1 (pid");
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let first = echo(&mut conn, "a");

    // Stored as soon as it was accepted; the restart must come after.
    let stored = gw.stderr_line("stored a connection from ");
    let name = between(&stored, " as ", " for the next generations").to_string();
    assert!(name.starts_with("conn-"), "{stored}");
    assert!(stored.contains("from generation 1 (pid"), "{stored}");

    kill(gw.child.id(), Signal::HUP);
    let ready = gw.stderr_line("it serves now");
    let second = pid_in(&ready, 2);
    assert_eq!(pid_in(&ready, 1), first, "{ready}");
    assert_ne!(second, first, "{ready}");
    // The old generation is gone: only the new one can answer now.
    let gone = gw.stderr_line(&format!("generation 1 (pid {first}) "));
    assert!(
        gone.contains(" exited ") || gone.contains(" was killed by "),
        "{gone}"
    );

    assert_eq!(
        echo(&mut conn, "b"),
        second,
        "answered by the wrong process"
    );

    drop(conn);
    let removed = gw.stderr_line("removed ");
    assert_eq!(
        removed,
        format!(
            "gracewrap: removed 1 stored fd(s) named {name} (FDSTOREREMOVE=1 from generation 2 (pid {second}))"
        )
    );

    kill(gw.child.id(), Signal::TERM);
    let status = gw.wait();
    assert!(status.success(), "{status}; stderr {:?}", gw.stderr_seen);
}

/// A generation that stores fds through python3-systemd and writes what
/// it was passed to DIR/PID. MODE `memfd`: generation 1 stores a memfd
/// with data in it as `x` (`FDPOLL=0`); `pipes`: it stores two pipe read
/// ends with data in them, `polled` and `kept` (`FDPOLL=0`), and closes
/// their write ends, so both hang up. Later generations read every
/// stored fd and write what they read, as `NAME=DATA`.
const STORER: &str = r#"
import os, signal, sys
from systemd import daemon
out, mode = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
names = os.environ["LISTEN_FDNAMES"].split(":")
report = ["LISTEN_FDS=" + os.environ["LISTEN_FDS"], "LISTEN_FDNAMES=" + ":".join(names)]
if len(names) == 1:
    if mode == "memfd":
        fd = os.memfd_create("x")
        os.write(fd, b"written by generation 1")
        assert daemon.notify("FDSTORE=1\nFDNAME=x\nFDPOLL=0", fds=[fd])
        os.close(fd)
    else:
        for name, poll in (("polled", ""), ("kept", "\nFDPOLL=0")):
            r, w = os.pipe()
            os.write(w, b"through " + name.encode())
            assert daemon.notify("FDSTORE=1\nFDNAME=" + name + poll, fds=[r])
            os.close(r)
            os.close(w)
else:
    for fd, name in enumerate(names[1:], 4):
        data = os.pread(fd, 100, 0) if mode == "memfd" else os.read(fd, 100)
        report.append(name + "=" + data.decode())
with open(os.path.join(out, "tmp"), "w") as f:
    f.write("\n".join(report) + "\n")
os.rename(os.path.join(out, "tmp"), os.path.join(out, str(os.getpid())))
assert daemon.notify("READY=1")
while True:
    signal.pause()
"#;

/// `gracewrap -s -v --fdstore 4` on one TCP socket running [`STORER`] in
/// `mode`, with its reports in `dir`; returns it and generation 1's pid
/// once that one started.
fn storer(dir: &Path, mode: &str) -> (Running, u32) {
    let mut gw = Running::spawn(
        gracewrap(["-s", "-v", "--fdstore", "4", "-l", "tcp:127.0.0.1:0", "--"])
            .args(["/usr/bin/python3", "-c", STORER])
            .arg(dir)
            .arg(mode),
    );
    let line = gw.stderr_line("started generation 1 (pid");
    (gw, pid_in(&line, 1))
}

/// The stderr lines of `gw` up to the one where each of `needles` has
/// been seen, in any order.
#[track_caller]
fn lines_until(gw: &mut Running, needles: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    while !needles
        .iter()
        .all(|n| lines.iter().any(|l: &String| l.contains(n)))
    {
        lines.push(gw.stderr_line(""));
    }
    lines
}

/// What generation `pid` wrote to `dir` (it does before READY=1).
#[track_caller]
fn report(dir: &Path, pid: u32) -> String {
    std::fs::read_to_string(dir.join(pid.to_string()))
        .unwrap_or_else(|e| panic!("no report from pid {pid}: {e}"))
}

/// Restarts and returns the new generation's pid once it serves and the
/// old one has exited.
fn restart(gw: &mut Running, old: u32) -> u32 {
    kill(gw.child.id(), Signal::HUP);
    let ready = gw.stderr_line("it serves now");
    gw.stderr_line(&format!("generation 1 (pid {old}) "));
    pid_in(&ready, 2)
}

fn stop(mut gw: Running) {
    kill(gw.child.id(), Signal::TERM);
    let status = gw.wait();
    assert!(status.success(), "{status}; stderr {:?}", gw.stderr_seen);
}

/// Generation `first` got the socket alone; after a restart the next one
/// reports `want` (its LISTEN_* and what its stored fds hold); then
/// gracewrap stops cleanly.
#[track_caller]
fn the_next_generation_reports(mut gw: Running, dir: &Path, first: u32, want: &str) {
    assert_eq!(report(dir, first), "LISTEN_FDS=1\nLISTEN_FDNAMES=unknown\n");
    let second = restart(&mut gw, first);
    assert_eq!(report(dir, second), want);
    stop(gw);
    let _ = std::fs::remove_dir_all(dir);
}

/// A memfd stored with libsystemd's sd_pid_notify_with_fds is fd 4 of
/// the next generation, after the socket, named `x`, and holds what
/// generation 1 wrote to it.
#[test]
fn a_stored_memfd_reaches_the_next_generation() {
    let dir = temp_dir("fdstore-memfd");
    let (mut gw, first) = storer(&dir, "memfd");
    let stored = gw.stderr_line("stored ");
    assert!(
        stored.contains("stored a file as x for the next generations"),
        "{stored}"
    );
    gw.stderr_line(&format!("generation 1 (pid {first}) is ready"));
    the_next_generation_reports(
        gw,
        &dir,
        first,
        "LISTEN_FDS=2\nLISTEN_FDNAMES=unknown:x\nx=written by generation 1\n",
    );
}

/// A stored pipe whose other end is closed hangs up: gracewrap closes it,
/// unless it was stored with `FDPOLL=0`, and the next generation gets
/// only that one, with the data still in it.
#[test]
fn a_stored_fd_that_hangs_up_is_dropped_unless_fdpoll_0() {
    let dir = temp_dir("fdstore-pipes");
    let (mut gw, first) = storer(&dir, "pipes");
    // The hang-up is seen at the next wake-up: before `kept` arrives,
    // or after, or after READY=1.
    let polled = "stored a pipe as polled for the next generations";
    let hung_up = "stored fd polled hung up: closed";
    let ready = format!("generation 1 (pid {first}) is ready");
    let lines = lines_until(
        &mut gw,
        &[polled, "stored a pipe as kept ", hung_up, &ready],
    );
    let at = |text: &str| lines.iter().position(|l| l.contains(text));
    assert!(at(polled) < at(hung_up), "{lines:#?}");
    the_next_generation_reports(
        gw,
        &dir,
        first,
        "LISTEN_FDS=2\nLISTEN_FDNAMES=unknown:kept\nkept=through kept\n",
    );
}
