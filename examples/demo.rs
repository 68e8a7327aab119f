//! A small HTTP server that takes its listening sockets the systemd way
//! instead of binding them. Copy `listen_fds_with_names` into your program:
//! it is sd_listen_fds_with_names(3) with `unset_environment` set.
//!
//! On SIGTERM or SIGINT it drains: it stops accepting, answers every
//! request it has accepted, and exits 0. So `gracewrap -s` replaces it
//! without losing a request, and `docker stop` ends it at once when it is
//! PID 1 (the kernel would drop a SIGTERM it had no handler for).
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/gracewrap --listen http=tcp::8080 -- target/release/examples/demo
//! ```
//!
//! `demo --leave-orphan` first leaves a process behind the way a careless
//! server does (a grandchild whose parent exits without waiting; it exits
//! 2 s later), for PID 1 to reap: .ci/container checks that gracewrap
//! does, in a real container.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread::Scope;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::{Errno, FdFlags, fcntl_setfd};
use rustix::net::{SocketFlags, SocketType, accept_with, sockopt};
use rustix::process::PidfdFlags;
use signal_hook::consts::{SIGINT, SIGTERM};

/// `SD_LISTEN_FDS_START`: the first passed socket is always fd 3.
const FIRST: RawFd = 3;
const VARS: [&str; 4] = [
    "LISTEN_PID",
    "LISTEN_PIDFDID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// The sockets passed to this process, with their names; none if they were
/// meant for another process. Removes the LISTEN_* variables either way, so
/// that programs we start do not take our sockets for theirs.
fn listen_fds_with_names() -> Result<Vec<(OwnedFd, String)>, String> {
    let [pid, pidfdid, fds, names] = VARS.map(|v| std::env::var(v).ok());
    for var in VARS {
        // SAFETY: no other thread exists yet that could read the environment.
        unsafe { std::env::remove_var(var) };
    }
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(Vec::new());
    };
    // The pid check: a wrapper sets it for the process it execs. The pidfd
    // id, where the kernel has one (pidfs), also rules out pid reuse.
    let pidfd_id = rustix::process::pidfd_open(rustix::process::getpid(), PidfdFlags::empty())
        .ok()
        .filter(|p| rustix::fs::fstatfs(p).is_ok_and(|s| s.f_type as u64 == 0x5049_4446))
        .and_then(|p| rustix::fs::fstat(p).ok().map(|st| st.st_ino));
    if pid.parse() != Ok(std::process::id())
        || pidfdid
            .zip(pidfd_id)
            .is_some_and(|(want, have)| want.parse() != Ok(have))
    {
        return Ok(Vec::new());
    }
    let n: RawFd = match fds.parse() {
        Ok(n) if n > 0 && n <= RawFd::MAX - FIRST => n,
        _ => return Err(format!("LISTEN_FDS={fds:?} is not a positive number")),
    };
    let names: Vec<String> = match names {
        Some(names) => names.split(':').map(str::to_owned).collect(),
        None => vec!["unknown".to_owned(); n as usize],
    };
    if names.len() != n as usize {
        let count = names.len();
        return Err(format!(
            "LISTEN_FDNAMES names {count} sockets, LISTEN_FDS {n}"
        ));
    }
    let mut sockets = Vec::new();
    for (fd, name) in (FIRST..FIRST + n).zip(names) {
        // SAFETY: only fcntl(2) sees the borrow; it fails with EBADF if the
        // fd is not open.
        fcntl_setfd(unsafe { BorrowedFd::borrow_raw(fd) }, FdFlags::CLOEXEC)
            .map_err(|e| format!("fd {fd} from LISTEN_FDS: {e}"))?;
        // SAFETY: the fd is open (fcntl worked) and the protocol gives it to
        // this process; nothing else in it has taken ownership.
        sockets.push((unsafe { OwnedFd::from_raw_fd(fd) }, name));
    }
    Ok(sockets)
}

/// How long a client has from its connect to send its request head,
/// before and after a stop signal; under the 4 s `--stop-timeout` of
/// examples/Dockerfile.
const REQUEST_TIME: Duration = Duration::from_secs(3);
/// After a stop signal, a connection that has sent nothing is idle and is
/// closed, but not sooner than this after its accept: a client sends its
/// request right after connecting, so it may be on its way.
const FIRST_BYTE_TIME: Duration = Duration::from_millis(500);

/// Accepts connections on `listener` and answers each on a thread of its
/// own, until a stop signal makes `stop` readable. Returns whether that is
/// why it returned (and not a failed accept(2)).
fn serve<'s>(s: &'s Scope<'s, '_>, listener: OwnedFd, name: String, stop: &'s UnixStream) -> bool {
    let fd = listener.as_raw_fd();
    let pid = std::process::id();
    let body = format!("hello from the gracewrap demo (pid {pid}, fd {fd}, socket {name:?})\n");
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // Non-blocking: under `gracewrap -s`, two generations share the socket
    // for a moment, and the one that loses the race for a connection must
    // not hang in accept(2). (The flag is shared as well: it belongs to the
    // open file description, which every generation inherits.)
    if let Ok(flags) = fcntl_getfl(&listener) {
        let _ = fcntl_setfl(&listener, flags | OFlags::NONBLOCK);
    }
    loop {
        if wait(listener.as_fd(), Some(stop), None).1 {
            return true; // the signal: accept nothing more
        }
        let conn = match accept_with(&listener, SocketFlags::CLOEXEC) {
            Ok(conn) => File::from(conn),
            Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => continue,
            Err(e) => {
                eprintln!("demo: accept on fd {fd}: {e}");
                return false;
            }
        };
        let reply = reply.clone();
        let thread =
            std::thread::Builder::new().spawn_scoped(s, move || answer(conn, &reply, stop));
        if let Err(e) = thread {
            eprintln!("demo: no thread for a connection on fd {fd}: {e}");
        }
    }
}

/// Reads the request head, then answers. Once `stop` is readable, an idle
/// connection is closed (see [`FIRST_BYTE_TIME`]), and a request that has
/// begun to arrive is still answered, within [`REQUEST_TIME`].
fn answer(mut conn: File, reply: &str, stop: &UnixStream) {
    let accepted = Instant::now();
    let mut stop = Some(stop); // None once the signal came
    // Read the whole request head: closing with unread data sends a RST.
    let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        let idle = stop.is_none() && head.is_empty();
        let deadline = accepted + if idle { FIRST_BYTE_TIME } else { REQUEST_TIME };
        match wait(conn.as_fd(), stop, Some(deadline)) {
            (true, _) => match conn.read(&mut buf) {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            },
            (false, true) => stop = None,
            (false, false) => return, // too slow, or idle after the signal
        }
    }
    if !head.is_empty() {
        let _ = conn.write_all(reply.as_bytes());
    }
}

/// Waits until `fd` has something to read (or hung up), `stop` is readable
/// (a stop signal came), or `deadline` passes: (fd ready, stop ready).
fn wait(fd: BorrowedFd<'_>, stop: Option<&UnixStream>, deadline: Option<Instant>) -> (bool, bool) {
    let mut fds = vec![PollFd::new(&fd, PollFlags::IN)];
    fds.extend(stop.map(|stop| PollFd::new(stop, PollFlags::IN)));
    let left = || {
        deadline.and_then(|d| Timespec::try_from(d.saturating_duration_since(Instant::now())).ok())
    };
    // EINTR: a signal came (poll(2) is never restarted); look again.
    while poll(&mut fds, left().as_ref()) == Err(Errno::INTR) {}
    let ready = |i: usize| fds.get(i).is_some_and(|p| !p.revents().is_empty());
    (ready(0), ready(1))
}

/// sd_notify(3) `READY=1`, if a supervisor set `NOTIFY_SOCKET`.
fn notify_ready() -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let addr = match path.as_encoded_bytes() {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name)?,
        _ => SocketAddr::from_pathname(&path)?,
    };
    UnixDatagram::unbound()?
        .send_to_addr(b"READY=1", &addr)
        .map(drop)
}

/// `--leave-orphan`: starts a child (`--orphan-parent`) that starts a
/// grandchild (`--orphan`) and exits at once, so the grandchild is
/// re-parented to PID 1 (or the nearest subreaper), which must reap it
/// when it exits 2 s later. Returns for the demo's own run.
fn orphan_roles(sockets_taken: bool) {
    use std::process::Command;
    match (std::env::args().nth(1).as_deref(), sockets_taken) {
        (Some("--orphan"), false) => {
            std::thread::sleep(Duration::from_secs(2));
            std::process::exit(0)
        }
        (Some("--orphan-parent"), false) => {
            let _ = Command::new("/proc/self/exe").arg("--orphan").spawn();
            std::process::exit(0) // without waiting for it
        }
        // After the sockets are taken (CLOEXEC): the orphan holds none.
        (Some("--leave-orphan"), true) => {
            if let Err(e) = Command::new("/proc/self/exe")
                .arg("--orphan-parent")
                .status()
            {
                eprintln!("demo: cannot leave an orphan: {e}");
            }
        }
        _ => {}
    }
}

fn main() {
    orphan_roles(false);
    let sockets = listen_fds_with_names().unwrap_or_else(|e| {
        eprintln!("demo: {e}");
        std::process::exit(1)
    });
    orphan_roles(true);
    if sockets.is_empty() {
        eprintln!("demo: no sockets passed (run it under gracewrap --listen ...)");
        std::process::exit(1);
    }
    // SIGTERM and SIGINT write a byte to `stop`'s peer. Nobody reads it, so
    // from then on `stop` stays readable, and every poll(2) here sees it.
    let (stop, signalled) = UnixStream::pair().unwrap_or_else(|e| {
        eprintln!("demo: socketpair: {e}");
        std::process::exit(1)
    });
    for sig in [SIGTERM, SIGINT] {
        let handled = signalled
            .try_clone()
            .and_then(|peer| signal_hook::low_level::pipe::register(sig, peer));
        if let Err(e) = handled {
            eprintln!("demo: cannot handle signal {sig}: {e}");
            std::process::exit(1);
        }
    }
    let mut listeners = Vec::new();
    for (fd, name) in sockets {
        if sockopt::socket_type(&fd) == Ok(SocketType::STREAM)
            && sockopt::socket_acceptconn(&fd) == Ok(true)
        {
            listeners.push((fd, name));
        } else {
            eprintln!(
                "demo: fd {} ({name:?}) is not a listening stream socket, skipped",
                fd.as_raw_fd()
            );
        }
    }
    if listeners.is_empty() {
        eprintln!("demo: no listening stream socket to serve");
        std::process::exit(1);
    }
    // The scope ends once every thread started in it has: the accept
    // loops, which return at the signal, and the requests in flight.
    let stop = &stop;
    let stopped = std::thread::scope(|s| {
        let loops: Vec<_> = listeners
            .into_iter()
            .map(|(fd, name)| s.spawn(move || serve(s, fd, name, stop)))
            .collect();
        if let Err(e) = notify_ready() {
            eprintln!("demo: cannot send READY=1 to NOTIFY_SOCKET: {e}");
        }
        let stopped: Vec<bool> = loops
            .into_iter()
            .map(|l| l.join().unwrap_or(false))
            .collect();
        stopped.contains(&true)
    });
    if !stopped {
        // Every accept(2) failed for good.
        eprintln!("demo: no socket left to serve");
        std::process::exit(1);
    }
}
