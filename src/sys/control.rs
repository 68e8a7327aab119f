//! `gracewrap --restart --pid-file PATH`: how the restart command reaches
//! the supervisor that wrote PATH, and how each side knows the other.
//!
//! The supervisor listens on the abstract unix socket
//! `gracewrap-control/PID` (its own pid). Nothing else is needed to find
//! it, no file can go stale, and it goes away with the process.
//!
//! - The supervisor takes a request only from root, from its own user, or
//!   from the generations' user, by the connecting process's credentials
//!   as the kernel recorded them (SO_PEERCRED).
//! - The command believes only the process whose pid the pid file holds:
//!   another process that took the name first (abstract names are open to
//!   every local user) is found out by SO_PEERCRED and refused, so a stale
//!   or hostile pid file can at worst make the command fail: it never
//!   signals anything.
//!
//! The protocol is one line each way: connecting asks for a restart; the
//! supervisor answers when it is over, `ok GENERATION PID`, `failed WHY`
//! or `refused WHY`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType, accept_with,
    bind, connect, listen, recv, send, socket_with, sockopt,
};

/// The abstract name of the control socket of the supervisor `pid`.
fn address(pid: u32) -> rustix::io::Result<SocketAddrUnix> {
    SocketAddrUnix::new_abstract_name(format!("gracewrap-control/{pid}").as_bytes())
}

/// The supervisor's side.
#[derive(Debug)]
pub struct Control {
    sock: OwnedFd,
}

/// A restart request, accepted.
#[derive(Debug)]
pub struct Request {
    pub conn: OwnedFd,
    /// Who asked (SO_PEERCRED).
    pub uid: u32,
    pub pid: i32,
}

impl Control {
    /// Listens on `gracewrap-control/OUR_PID`.
    pub fn bind() -> rustix::io::Result<Control> {
        let sock = socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        bind(&sock, &address(std::process::id())?)?;
        listen(&sock, 16)?;
        Ok(Control { sock })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// The next request waiting, if any.
    pub fn accept(&self) -> Option<Request> {
        loop {
            match accept_with(&self.sock, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(conn) => {
                    let Ok(cred) = sockopt::socket_peercred(&conn) else {
                        continue;
                    };
                    return Some(Request {
                        uid: cred.uid.as_raw(),
                        pid: cred.pid.as_raw_nonzero().get(),
                        conn,
                    });
                }
                Err(Errno::INTR | Errno::CONNABORTED) => continue,
                Err(_) => return None,
            }
        }
    }
}

/// Sends the answer line to whoever asked; never blocks, never raises
/// SIGPIPE (a command that went away just misses it).
pub fn answer(conn: &OwnedFd, line: &str) {
    let mut text = line.replace('\n', " ");
    text.push('\n');
    let _ = send(
        conn,
        text.as_bytes(),
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    );
}

/// Why the command could not get an answer.
#[derive(Debug)]
pub enum Unreachable {
    /// Nobody listens for that pid.
    Nobody(Errno),
    /// Another process holds the name: its pid.
    Impostor(i32),
    /// The connection broke before an answer.
    NoAnswer,
}

/// Asks the supervisor `pid` for a restart and waits for its answer line.
pub fn request(pid: u32) -> Result<String, Unreachable> {
    let sock = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(Unreachable::Nobody)?;
    let addr = address(pid).map_err(Unreachable::Nobody)?;
    connect(&sock, &addr).map_err(Unreachable::Nobody)?;
    let cred = sockopt::socket_peercred(&sock).map_err(|_| Unreachable::NoAnswer)?;
    let peer = cred.pid.as_raw_nonzero().get();
    if u32::try_from(peer).ok() != Some(pid) {
        return Err(Unreachable::Impostor(peer));
    }
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while line.len() < 4096 {
        match recv(&sock, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) => break,
            Ok((n, _)) => {
                line.extend_from_slice(&buf[..n]);
                if line.contains(&b'\n') {
                    break;
                }
            }
            Err(Errno::INTR) => {}
            Err(_) => return Err(Unreachable::NoAnswer),
        }
    }
    let end = line
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(Unreachable::NoAnswer)?;
    Ok(String::from_utf8_lossy(&line[..end]).into_owned())
}
