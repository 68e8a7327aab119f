//! The server under test of benches/restart.sh: a program that is slow to
//! start and drains gracefully, on a socket it is handed.
//!
//! ```text
//! cargo build --release --examples
//! target/release/gracewrap --supervise -l tcp:127.0.0.1:8080 -- target/release/examples/bench_app
//! start_server --port=127.0.0.1:8080 -- target/release/examples/bench_app
//! target/release/examples/bench_app 127.0.0.1:8080      # binds it itself
//! ```
//!
//! The listening socket: fd 3 from systemd socket activation (LISTEN_FDS,
//! LISTEN_PID = our pid), else the first `host:port=fd` of Perl
//! Server::Starter's `SERVER_STARTER_PORT`, else ADDRESS bound here.
//!
//! Start-up: sleeps `BENCH_STARTUP_MS` (default 200) before serving, as a
//! program that loads its data would, then sends `READY=1` to
//! `$NOTIFY_SOCKET` when that is set (`@name` is an abstract address).
//! With `BENCH_EXTEND_MS` set, it first asks for that much more time to
//! start (`EXTEND_TIMEOUT_USEC=`). With `BENCH_WATCHDOG_MS` set, once
//! serving it sends `WATCHDOG=1` every that many milliseconds until it is
//! told to stop, if its watchdog is enabled as sd_watchdog_enabled(3)
//! reads it (`WATCHDOG_USEC` set, `WATCHDOG_PID` unset or this process);
//! if not, it says so and sends none.
//!
//! Protocol, one request per connection, answered then closed:
//! `fast\n` -> `ok PID START\n` at once; `slow\n` -> the same after 1 s
//! (`BENCH_SLOW_MS`). START is when this process started (CLOCK_REALTIME
//! microseconds): it tells generations apart when pids are reused, which
//! they are within a run (pid_max is 32768 here, and every thread of the
//! load takes one). An HTTP/1.0 `GET /` or `GET /slow` gets the same
//! line as the body of a `200 OK`, for trying it with curl.
//!
//! SIGTERM (or SIGINT): stop accepting at once, finish the requests in
//! flight, exit 0. The shared listening socket is never shut down: this
//! process only stops calling accept(2) and closes its own descriptor, so
//! connections queued in the backlog stay there for the next generation.
//!
//! The accept loop polls the socket and a self-pipe that the signal
//! handler writes to, so a SIGTERM is noticed within microseconds. For
//! that the socket is put in O_NONBLOCK mode; the flag belongs to the open
//! file description, which every generation shares, so every generation
//! must cope with EAGAIN from accept(2) (this one does: the poll wakes all
//! the generations, one of them gets the connection).
//!
//! With `BENCH_STATE_DIR` set, the state of this process is kept in the
//! file DIR/PID (`starting`, `serving`, `draining`; removed at exit),
//! written atomically, for the benchmark script to follow restarts.
#![allow(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::{Errno, FdFlags, fcntl_setfd};
use rustix::net::{SocketFlags, accept_with};

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// A duration in milliseconds from the environment, if set (and valid).
fn env_opt_ms(name: &str) -> Option<Duration> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => die(&format!("{name}={v:?}: not a number of milliseconds")),
    }
}

fn die(text: &str) -> ! {
    eprintln!("bench_app[{}]: {text}", std::process::id());
    std::process::exit(2);
}

/// Takes ownership of an inherited descriptor.
fn adopt(fd: RawFd) -> OwnedFd {
    if fcntl_getfl(
        // SAFETY: a borrow for the duration of this call only, to check
        // that the descriptor is open before taking ownership of it.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    .is_err()
    {
        die(&format!("fd {fd} is not open"));
    }
    // SAFETY: the descriptor is open (checked above), was handed to this
    // process by its parent, and nothing else in this process owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The listening socket, from wherever it came.
fn listener() -> OwnedFd {
    let me = std::process::id().to_string();
    if std::env::var("LISTEN_PID").ok().as_deref() == Some(me.as_str())
        && let Some(n) = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
    {
        if n < 1 {
            die("LISTEN_FDS=0: no socket");
        }
        return adopt(3);
    }
    if let Ok(ports) = std::env::var("SERVER_STARTER_PORT") {
        // host:port=fd[;host:port=fd...]: the first one.
        let first = ports.split(';').next().unwrap_or("");
        let fd = first
            .rsplit_once('=')
            .and_then(|(_, fd)| fd.parse::<RawFd>().ok())
            .unwrap_or_else(|| die(&format!("bad SERVER_STARTER_PORT {ports:?}")));
        return adopt(fd);
    }
    match std::env::args().nth(1) {
        Some(addr) => match std::net::TcpListener::bind(&addr) {
            Ok(l) => l.into(),
            Err(e) => die(&format!("cannot bind {addr}: {e}")),
        },
        None => die("no socket: expected LISTEN_FDS, SERVER_STARTER_PORT or an ADDRESS argument"),
    }
}

/// sd_notify(3), the datagram part of it; nothing with `BENCH_NO_NOTIFY`
/// set (a server that never notifies, as most do).
fn notify(text: &str) {
    if std::env::var_os("BENCH_NO_NOTIFY").is_some() {
        return;
    }
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = target.as_encoded_bytes();
    let addr = match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..])
        }
        Some(b'/') => SocketAddr::from_pathname(&target),
        _ => return,
    };
    let sent = addr.and_then(|addr| {
        UnixDatagram::unbound().and_then(|s| s.send_to_addr(text.as_bytes(), &addr))
    });
    if let Err(e) = sent {
        eprintln!("bench_app[{}]: sd_notify failed: {e}", std::process::id());
    }
}

/// `WATCHDOG=1` every `every` from a thread of its own, until `stop`;
/// only if the watchdog is ours (sd_watchdog_enabled(3)).
fn ping_watchdog(every: Duration, stop: Arc<AtomicBool>) {
    let me = std::process::id().to_string();
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    let why_not = match (&usec, &pid) {
        (None, _) => Some("WATCHDOG_USEC is not set".to_string()),
        (Some(_), Some(p)) if *p != me => Some(format!("WATCHDOG_PID={p} is not this process")),
        _ => None,
    };
    if let Some(why) = why_not {
        eprintln!("bench_app[{me}]: BENCH_WATCHDOG_MS is set but {why}: no WATCHDOG=1");
        return;
    }
    let spawned = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                notify("WATCHDOG=1");
                std::thread::sleep(every);
            }
        });
    if let Err(e) = spawned {
        die(&format!("thread: {e}"));
    }
}

struct State(Option<PathBuf>);

impl State {
    fn set(&self, state: &str) {
        let Some(dir) = &self.0 else { return };
        let pid = std::process::id();
        let tmp = dir.join(format!(".{pid}.tmp"));
        let _ = std::fs::write(&tmp, format!("{state}\n"))
            .and_then(|()| std::fs::rename(&tmp, dir.join(pid.to_string())));
    }

    fn clear(&self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_file(dir.join(std::process::id().to_string()));
        }
    }
}

/// One connection: read the request, answer, close.
fn serve(mut conn: TcpStream, slow_for: Duration, reply: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut len = 0;
    // Read the whole request (a line, or HTTP headers), so that closing
    // leaves nothing unread (which would send a reset instead of a FIN).
    loop {
        match conn.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        let got = &buf[..len];
        let http = got.starts_with(b"GET ") || got.starts_with(b"HEAD ");
        let done = if http {
            got.windows(4).any(|w| w == b"\r\n\r\n") || got.windows(2).any(|w| w == b"\n\n")
        } else {
            got.contains(&b'\n')
        };
        if done || len == buf.len() {
            break;
        }
    }
    let req = &buf[..len];
    let line_end = req.iter().position(|&b| b == b'\n').unwrap_or(len);
    let first = &req[..line_end];
    let http = first.starts_with(b"GET ") || first.starts_with(b"HEAD ");
    let slow = if http {
        first.windows(6).any(|w| w == b" /slow")
    } else {
        first.starts_with(b"slow")
    };
    if slow {
        std::thread::sleep(slow_for);
    }
    let out = if http {
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )
    } else {
        reply.to_string()
    };
    let _ = conn.write_all(out.as_bytes());
}

fn main() {
    let born = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let state = State(std::env::var_os("BENCH_STATE_DIR").map(PathBuf::from));
    state.set("starting");
    let startup = env_ms("BENCH_STARTUP_MS", 200);
    let slow_for = env_ms("BENCH_SLOW_MS", 1000);

    // SIGTERM/SIGINT: a flag, and a byte in a pipe that wakes the poll.
    let stop = Arc::new(AtomicBool::new(false));
    let (wake_rx, wake_tx) =
        UnixStream::pair().unwrap_or_else(|e| die(&format!("socketpair: {e}")));
    for sig in [libc::SIGTERM, libc::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .and_then(|_| signal_hook::low_level::pipe::register(sig, wake_tx.try_clone()?))
            .unwrap_or_else(|e| die(&format!("cannot handle signals: {e}")));
    }
    drop(wake_tx);
    let _ = wake_rx.set_nonblocking(true);

    let sock = listener();
    let _ = fcntl_setfd(&sock, FdFlags::CLOEXEC);
    let flags = fcntl_getfl(&sock).unwrap_or_else(|e| die(&format!("fcntl: {e}")));
    if !flags.contains(OFlags::NONBLOCK) {
        // Shared with the other generations: see the module doc.
        fcntl_setfl(&sock, flags | OFlags::NONBLOCK)
            .unwrap_or_else(|e| die(&format!("fcntl: {e}")));
    }

    // The slow start, cut short by a stop signal.
    let started = Instant::now();
    if let Some(more) = env_opt_ms("BENCH_EXTEND_MS") {
        notify(&format!("EXTEND_TIMEOUT_USEC={}", more.as_micros()));
    }
    while !stop.load(Ordering::SeqCst) {
        let left = startup.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let mut fds = [PollFd::new(&wake_rx, PollFlags::IN)];
        let ts = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let _ = poll(&mut fds, Some(&ts));
        drain_pipe(&wake_rx);
    }

    let reply = format!("ok {} {born}\n", std::process::id());
    let in_flight = Arc::new(AtomicUsize::new(0));
    if !stop.load(Ordering::SeqCst) {
        state.set("serving");
        notify("READY=1");
        if let Some(every) = env_opt_ms("BENCH_WATCHDOG_MS") {
            ping_watchdog(every, Arc::clone(&stop));
        }
    }
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [
            PollFd::new(&sock, PollFlags::IN),
            PollFd::new(&wake_rx, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => die(&format!("poll: {e}")),
        }
        if !fds[0].revents().contains(PollFlags::IN) {
            drain_pipe(&wake_rx);
            continue;
        }
        // Take what is queued, checking the flag between connections so
        // that a draining generation accepts nothing after SIGTERM.
        while !stop.load(Ordering::SeqCst) {
            let conn = match accept_with(&sock, SocketFlags::CLOEXEC) {
                Ok(c) => c,
                Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => break,
                Err(e) => {
                    // EMFILE and the like: back off a little, keep serving.
                    eprintln!("bench_app[{}]: accept: {e}", std::process::id());
                    std::thread::sleep(Duration::from_millis(1));
                    break;
                }
            };
            let conn = TcpStream::from(conn);
            in_flight.fetch_add(1, Ordering::SeqCst);
            let count = Arc::clone(&in_flight);
            let reply = reply.clone();
            let spawned = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    serve(conn, slow_for, &reply);
                    count.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                in_flight.fetch_sub(1, Ordering::SeqCst);
                eprintln!("bench_app[{}]: thread: {e}", std::process::id());
            }
        }
    }

    // Draining: our copy of the socket goes, the socket itself stays.
    state.set("draining");
    drop(sock);
    while in_flight.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    state.clear();
}

/// Empties the (non-blocking) wake-up pipe.
fn drain_pipe(mut pipe: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!(pipe.read(&mut buf), Ok(n) if n > 0) {}
}
