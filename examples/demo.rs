//! A small HTTP server that takes its listening sockets the systemd way
//! instead of binding them. Copy `listen_fds_with_names` into your program:
//! it is sd_listen_fds_with_names(3) with `unset_environment` set.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/gracewrap --listen http=tcp::8080 -- target/release/examples/demo
//! ```
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::io::{Errno, FdFlags, fcntl_setfd};
use rustix::net::{SocketFlags, SocketType, accept_with, sockopt};
use rustix::process::PidfdFlags;

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

/// Answers every connection with one line naming us. Returns only if
/// accept(2) fails for good.
fn serve(listener: OwnedFd, name: String) {
    let fd = listener.as_raw_fd();
    let pid = std::process::id();
    let body = format!("hello from the gracewrap demo (pid {pid}, fd {fd}, socket {name:?})\n");
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    loop {
        let conn = match accept_with(&listener, SocketFlags::CLOEXEC) {
            Ok(conn) => conn,
            Err(Errno::INTR | Errno::CONNABORTED) => continue,
            Err(e) => return eprintln!("demo: accept on fd {fd}: {e}"),
        };
        // A slow client holds this socket's thread for 5 s at most.
        let five = Some(Duration::from_secs(5));
        let _ = sockopt::set_socket_timeout(&conn, sockopt::Timeout::Recv, five);
        let mut conn = std::fs::File::from(conn);
        // Read the whole request head: closing with unread data sends a RST.
        let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
            match conn.read(&mut buf) {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        if !head.is_empty() {
            let _ = conn.write_all(reply.as_bytes());
        }
    }
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

fn main() {
    let sockets = listen_fds_with_names().unwrap_or_else(|e| {
        eprintln!("demo: {e}");
        std::process::exit(1)
    });
    if sockets.is_empty() {
        eprintln!("demo: no sockets passed (run it under gracewrap --listen ...)");
        std::process::exit(1);
    }
    let mut threads = Vec::new();
    for (fd, name) in sockets {
        if sockopt::socket_type(&fd) == Ok(SocketType::STREAM)
            && sockopt::socket_acceptconn(&fd) == Ok(true)
        {
            threads.push(std::thread::spawn(move || serve(fd, name)));
        } else {
            eprintln!(
                "demo: fd {} ({name:?}) is not a listening stream socket, skipped",
                fd.as_raw_fd()
            );
        }
    }
    if threads.is_empty() {
        eprintln!("demo: no listening stream socket to serve");
        std::process::exit(1);
    }
    if let Err(e) = notify_ready() {
        eprintln!("demo: cannot send READY=1 to NOTIFY_SOCKET: {e}");
    }
    // Each thread runs until its accept(2) fails; with none left, give up.
    threads.into_iter().for_each(|t| drop(t.join()));
    eprintln!("demo: no socket left to serve");
    std::process::exit(1);
}
