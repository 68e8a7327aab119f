//! examples/demo.rs, the server of the README's quick start and of both
//! stages of examples/Dockerfile, drains on SIGTERM: a restart under
//! `gracewrap -s` loses no request, and in exec mode (the exec stage's
//! PID 1) it exits 0 at once, after the request it has in hand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::supervise::{kill, pid_in};
use crate::util::*;

/// Well under the 3 s the demo gives a client to send its request, and
/// under the 4 s `--stop-timeout` of examples/Dockerfile's supervise
/// stage: an exit this soon after SIGTERM did not wait for an idle
/// connection to time out.
const PROMPT: Duration = Duration::from_secs(2);

/// `curl` in loops (3 clients, a new connection per request) while the
/// demo is restarted 20 times under `gracewrap -s`: not one request
/// fails, and every replaced demo exits 0. Readiness: the demo sends
/// READY=1 to the NOTIFY_SOCKET that `-s` gives it, so no `--ready-delay`.
/// Each SIGHUP waits until the previous restart is over (the new
/// generation ready, the old one exited), and until the clients got
/// answers from the new one.
#[test]
fn the_demo_loses_no_request_across_restarts() {
    let mut g =
        Running::spawn(gracewrap(["-s", "-v", "-l", "tcp:127.0.0.1:0", "--"]).arg(example("demo")));
    let addr = g.listening_addr();
    let mut old = pid_in(&g.stderr_line("is ready"), 1);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (addr, stop, ok) = (addr.clone(), stop.clone(), ok.clone());
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match try_http_get(&addr) {
                        Ok(body) if body.starts_with("hello from the gracewrap demo") => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(body) => failed.push(format!("not the demo: {body:?}")),
                        Err(e) => failed.push(e),
                    }
                }
                failed
            })
        })
        .collect();
    let more_answers = |n: usize| {
        let base = ok.load(Ordering::SeqCst);
        wait_until(&format!("{n} more answers"), || {
            ok.load(Ordering::SeqCst) >= base + n
        });
    };

    let mut exits = Vec::new();
    for n in 2..=21 {
        more_answers(20);
        kill(g.child.id(), Signal::HUP);
        let ready = g.stderr_line(&format!(
            "it serves now; stopping generation {} (pid {old})",
            n - 1
        ));
        let new = pid_in(&ready, n);
        exits.push(g.stderr_line(&format!("generation {} (pid {old}) ", n - 1)));
        old = new;
    }
    more_answers(20);
    stop.store(true, Ordering::SeqCst);
    let failed: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let ok = ok.load(Ordering::SeqCst);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across 20 restarts: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    for exit in &exits {
        assert!(exit.ends_with("exited with status 0"), "{exit}");
    }
    kill(g.child.id(), Signal::TERM);
    assert_eq!(g.wait().code(), Some(0), "{:?}", g.stderr_seen);
}

/// Exec mode, as the README's quick start and the exec stage of
/// examples/Dockerfile run it: the demo has accepted an idle connection
/// and one whose request is half sent when SIGTERM comes. The idle one is
/// closed at once, the rest of the request, sent after the signal, gets
/// the whole answer, and the demo exits 0 promptly.
#[test]
fn the_demo_finishes_the_request_in_hand_and_exits_0_on_sigterm() {
    let mut g = Running::spawn(gracewrap(["-l", "tcp:127.0.0.1:0", "--"]).arg(example("demo")));
    let addr = g.listening_addr();
    let demo = g.child.id(); // exec mode: gracewrap became the demo
    http_get(&addr); // serving

    // A pre-connect (a browser's) or a pooled connection: nothing sent.
    let mut idle = TcpStream::connect(&addr).unwrap();
    wait_until("the demo to accept the idle connection", || {
        accepted(demo, &idle)
    });
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: te").unwrap();
    wait_until("the demo to accept the half-sent request", || {
        accepted(demo, &half)
    });

    kill(demo, Signal::TERM);
    let signalled = Instant::now();
    // The idle connection is closed without an answer; by then the demo
    // has seen the signal.
    idle.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::new();
    let closed = idle.read_to_end(&mut got);
    assert!(
        matches!(closed, Ok(0)),
        "the idle connection: {closed:?} {got:?}"
    );
    let idle_closed_after = signalled.elapsed();

    half.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reply = String::new();
    let answered = half
        .write_all(b"st\r\n\r\n")
        .and_then(|()| half.read_to_string(&mut reply));
    assert!(
        answered.is_ok()
            && reply.starts_with("HTTP/1.1 200 OK\r\n")
            && reply.contains("\r\n\r\nhello from the gracewrap demo (pid "),
        "the request in hand, completed after SIGTERM: {answered:?} {reply:?}"
    );

    let status = g.wait();
    let exited_after = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status:?} {:?}", g.stderr_seen);
    assert!(
        idle_closed_after < PROMPT && exited_after < PROMPT,
        "idle connection closed {idle_closed_after:?}, exit {exited_after:?} after SIGTERM"
    );
}

/// Whether `pid` has accepted the server side of `client`'s connection:
/// the socket from the server's address to `client`'s (in
/// /proc/PID/net/tcp, inode 0 while it waits in the listen queue) is one
/// of its fds.
fn accepted(pid: u32, client: &TcpStream) -> bool {
    // /proc/net/tcp's `0100007F:9C40`: the address as the u32 in memory.
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    };
    let (server, me) = (
        hex(client.peer_addr().unwrap()),
        hex(client.local_addr().unwrap()),
    );
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let Some(inode) = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&server.as_str()) && f.get(2) == Some(&me.as_str()))
            .then(|| f[9].to_string())
    }) else {
        return false;
    };
    let socket = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == socket.as_str()))
    })
}
