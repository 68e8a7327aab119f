//! Is a program waiting for connections on our sockets? The supervisor's
//! readiness for programs that do not speak sd_notify, read from /proc.
//!
//! A process in the generation's tree waits for connections on a passed
//! socket when one of its threads is
//!
//! - blocked in accept(2)/accept4(2) on it (`/proc/PID/task/TID/syscall`
//!   names the call and its first argument, the fd): a plain accept loop
//!   (Rust's std, Python's `socket.accept`);
//! - blocked in poll(2)/ppoll(2) or select(2)/pselect6(2) with the socket
//!   among the fds it waits to read (the fd array or set is read from
//!   `/proc/PID/mem`): Python's socketserver and http.server, gunicorn's
//!   sync workers;
//!
//! or when the process holds the socket in an epoll set for reading
//! (`/proc/PID/fdinfo/N` of the epoll fd lists each target's inode):
//! tokio, Node.js, Go, asyncio, gunicorn's gthread workers.
//!
//! Sockets are matched by inode (`socket:[INODE]`), so an fd number the
//! program moved the socket to, or a dup, counts as well. It fails safe:
//! whatever cannot be read (a process gone, /proc/PID/mem out of reach)
//! counts as not waiting, so a generation is never found ready when it is
//! not; the caller's timeout applies then.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// How a process was seen waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    Accept { pid: i32, fd: i32 },
    Poll { pid: i32, fd: i32 },
    Select { pid: i32, fd: i32 },
    Epoll { pid: i32, fd: i32 },
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (how, pid, fd) = match *self {
            Waiting::Accept { pid, fd } => ("in accept", pid, fd),
            Waiting::Poll { pid, fd } => ("polling", pid, fd),
            Waiting::Select { pid, fd } => ("in select", pid, fd),
            Waiting::Epoll { pid, fd } => ("with epoll", pid, fd),
        };
        write!(f, "pid {pid} waits for connections {how} on its fd {fd}")
    }
}

/// The most processes of one tree looked at: bounded work per look.
const MAX_PROCESSES: usize = 256;
/// The most fds of one poll/select call read from its memory.
const MAX_FDS: usize = 4096;

/// The first process in the tree rooted at `root` (itself and its
/// descendants) found waiting for connections on a socket whose inode is
/// in `sockets`.
pub fn find(root: i32, sockets: &[u64]) -> Option<Waiting> {
    let mut queue = vec![root];
    let mut seen = 0;
    while let Some(pid) = queue.pop() {
        seen += 1;
        if seen > MAX_PROCESSES {
            return None;
        }
        if let Some(w) = waiting(pid, sockets) {
            return Some(w);
        }
        queue.extend(children(pid));
    }
    None
}

/// The children of every thread of `pid`.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for tid in tasks(pid) {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    out
}

fn tasks(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn waiting(pid: i32, sockets: &[u64]) -> Option<Waiting> {
    let ours = |fd: i32| socket_inode(pid, fd).is_some_and(|ino| sockets.contains(&ino));
    for tid in tasks(pid) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")) else {
            continue;
        };
        if let Some(w) = in_syscall(pid, &text, &ours) {
            return Some(w);
        }
    }
    in_epoll(pid, sockets)
}

/// From `/proc/PID/task/TID/syscall` ("NR ARG0 ARG1 ... SP PC", the
/// arguments in hex; "running" or "-1 ..." outside a call).
fn in_syscall(pid: i32, text: &str, ours: &dyn Fn(i32) -> bool) -> Option<Waiting> {
    let mut fields = text.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    let args: Vec<u64> = fields
        .take(6)
        .filter_map(|a| u64::from_str_radix(a.strip_prefix("0x")?, 16).ok())
        .collect();
    if args.len() < 2 {
        return None;
    }
    let call = Call::of(nr)?;
    match call {
        Call::Accept => {
            let fd = i32::try_from(args[0]).ok()?;
            ours(fd).then_some(Waiting::Accept { pid, fd })
        }
        Call::Poll => {
            let n = usize::try_from(args[1]).ok()?.min(MAX_FDS);
            let mut buf = vec![0u8; n * 8];
            read_memory(pid, args[0], &mut buf)?;
            buf.chunks_exact(8).find_map(|p| {
                let fd = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
                let events = i16::from_ne_bytes([p[4], p[5]]);
                (events & libc::POLLIN != 0 && fd >= 0 && ours(fd))
                    .then_some(Waiting::Poll { pid, fd })
            })
        }
        Call::Select => {
            let nfds = usize::try_from(args[0]).ok()?.min(MAX_FDS);
            if args[1] == 0 {
                return None; // no read set
            }
            let mut set = vec![0u8; nfds.div_ceil(8)];
            read_memory(pid, args[1], &mut set)?;
            (0..nfds)
                .filter(|&fd| set[fd / 8] & (1 << (fd % 8)) != 0)
                .filter_map(|fd| i32::try_from(fd).ok())
                .find(|&fd| ours(fd))
                .map(|fd| Waiting::Select { pid, fd })
        }
    }
}

/// The calls a server waits for connections in.
#[derive(Debug, Clone, Copy)]
enum Call {
    Accept,
    Poll,
    Select,
}

impl Call {
    fn of(nr: i64) -> Option<Call> {
        #[cfg(target_arch = "x86_64")]
        match nr {
            libc::SYS_poll => return Some(Call::Poll),
            libc::SYS_select => return Some(Call::Select),
            _ => {}
        }
        match nr {
            libc::SYS_accept | libc::SYS_accept4 => Some(Call::Accept),
            libc::SYS_ppoll => Some(Call::Poll),
            libc::SYS_pselect6 => Some(Call::Select),
            _ => None,
        }
    }
}

/// Reads `buf.len()` bytes at `addr` of process `pid` (the same access as
/// ptrace: our own children, or root).
fn read_memory(pid: i32, addr: u64, buf: &mut [u8]) -> Option<()> {
    let mem = File::open(format!("/proc/{pid}/mem")).ok()?;
    mem.read_exact_at(buf, addr).ok()
}

/// The inode of the socket at `fd` of `pid` (`socket:[INODE]`).
fn socket_inode(pid: i32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// An epoll fd of `pid` that watches one of `sockets` for reading.
fn in_epoll(pid: i32, sockets: &[u64]) -> Option<Waiting> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for entry in fds.flatten() {
        let is_epoll = std::fs::read_link(entry.path())
            .is_ok_and(|l| l.as_os_str() == "anon_inode:[eventpoll]");
        if !is_epoll {
            continue;
        }
        let Some(epfd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")) else {
            continue;
        };
        if let Some(fd) = epoll_target(&info, sockets) {
            return Some(Waiting::Epoll { pid, fd });
        }
    }
    None
}

/// In an epoll fd's fdinfo, a target watched for reading whose inode is
/// one of `sockets`: its fd number. Lines read
/// `tfd:        3 events:       19 data: ... pos:0 ino:a1b2 sdev:8`.
fn epoll_target(info: &str, sockets: &[u64]) -> Option<i32> {
    info.lines().find_map(|line| {
        let rest = line.strip_prefix("tfd:")?;
        let mut words = rest.split_whitespace();
        let fd: i32 = words.next()?.parse().ok()?;
        let mut events = None;
        let mut ino = None;
        while let Some(w) = words.next() {
            match w {
                "events:" => events = u32::from_str_radix(words.next()?, 16).ok(),
                _ => {
                    if let Some(hex) = w.strip_prefix("ino:") {
                        ino = u64::from_str_radix(hex, 16).ok();
                    }
                }
            }
        }
        let reading = events? & libc::EPOLLIN as u32 != 0;
        (reading && sockets.contains(&ino?)).then_some(fd)
    })
}

#[cfg(test)]
mod tests;
