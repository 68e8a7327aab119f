//! File descriptor numbers: the only module that knows about fds 3.. and
//! the only one that names raw fd numbers it did not get from the kernel.
//!
//! The protocol (sd_listen_fds(3)) wants the n sockets at exactly
//! 3, 4, ..., 3+n-1 without FD_CLOEXEC, and nothing else is promised about
//! other fds. gracewrap closes every other inherited fd >= 3 before binding
//! (as systemd-socket-activate does), so new sockets land in their slots
//! without moving; [`place`] still handles any arrangement.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use rustix::io::{Errno, FdFlags, fcntl_dupfd_cloexec, fcntl_getfd, fcntl_setfd};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::protocol::FIRST_FD as FIRST;

/// Opens /dev/null on any of fds 0-2 that is closed, as the Rust runtime
/// would (gracewrap skips the runtime's start-up, see main.rs): otherwise a
/// socket could land on fd 2 and an error message go into it.
pub fn ensure_stdio() {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let fds: Vec<BorrowedFd<'static>> = (0..FIRST)
        .map(|fd| {
            // SAFETY: poll only looks at the numbers (POLLNVAL if closed).
            unsafe { BorrowedFd::borrow_raw(fd) }
        })
        .collect();
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::empty()))
        .collect();
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if poll(&mut polls, Some(&now)).is_err() {
        return;
    }
    let closed: Vec<RawFd> = (0..FIRST)
        .filter(|&i| polls[i as usize].revents().contains(PollFlags::NVAL))
        .collect();
    for _ in closed {
        // open(2) returns the lowest free number, i.e. the closed one
        // (they are handled in increasing order). Deliberately not
        // CLOEXEC: PROGRAM gets it as its stdio.
        if let Ok(fd) = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        ) {
            let _ = fd.into_raw_fd();
        }
    }
}

/// Borrows an fd number for a query (fcntl, getsockopt) that fails with
/// EBADF if the number is not open.
fn peek<T>(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>) -> T) -> T {
    // SAFETY: the borrow lives only for `f`, which makes queries that do
    // not close or replace the fd; on a closed number they fail with EBADF.
    f(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// True if `fd` is an open file descriptor.
pub fn is_open(fd: RawFd) -> bool {
    fd >= 0 && peek(fd, |b| fcntl_getfd(b).is_ok())
}

/// Why an `fd:N` argument cannot be used.
#[derive(Debug)]
pub enum TakeError {
    NotOpen,
    NotSocket,
    Other(Errno),
}

/// Takes over the inherited socket at `fd` (from `fd:N`), which gracewrap
/// then owns and will move to its slot. Fds 0-2 are duplicated instead, so
/// stdin/stdout/stderr stay as they are.
///
/// The caller must not take the same number twice.
pub fn take(fd: RawFd) -> Result<OwnedFd, TakeError> {
    if !is_open(fd) {
        return Err(TakeError::NotOpen);
    }
    match peek(fd, |b| rustix::net::sockopt::socket_type(b)) {
        Ok(_) => {}
        Err(Errno::NOTSOCK) => return Err(TakeError::NotSocket),
        Err(e) => return Err(TakeError::Other(e)),
    }
    if fd < FIRST {
        return peek(fd, |b| fcntl_dupfd_cloexec(b, FIRST)).map_err(TakeError::Other);
    }
    adopt(fd).ok_or(TakeError::NotOpen)
}

/// Takes ownership of the inherited fd `fd` (>= 3), setting FD_CLOEXEC
/// until it is placed, as sd_listen_fds(3) does. None if it is not open.
///
/// The caller must not adopt the same number twice.
pub fn adopt(fd: RawFd) -> Option<OwnedFd> {
    debug_assert!(fd >= FIRST);
    peek(fd, |b| fcntl_setfd(b, FdFlags::CLOEXEC)).ok()?;
    // SAFETY: the fd is open (fcntl succeeded), nothing in this process
    // owns it (gracewrap opens no fds before adopting inherited ones, and
    // callers never adopt one number twice), so this becomes its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes every fd >= 3 except those in `keep`, so the sockets gracewrap
/// creates next land at 3, 4, ... and nothing else leaks into PROGRAM.
pub fn close_others(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd >= FIRST).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = FIRST as u32;
    for &k in &keep {
        if (k as u32) > from {
            close_range(from, k as u32 - 1);
        }
        from = k as u32 + 1;
    }
    close_range(from, u32::MAX);
}

/// `close_range(first, last, 0)` (Linux 5.9), with a fallback that closes
/// what /proc/self/fd lists.
fn close_range(first: u32, last: u32) {
    // SAFETY: close_range takes plain integers. The fds it closes are
    // inherited ones that nothing in gracewrap owns (see `close_others`).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if rc == 0 {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own fd was closed when `dir` was consumed; closing
    // its number again below just fails with EBADF.
    for fd in fds.into_iter().filter(|fd| (first..=last).contains(fd)) {
        // SAFETY: as above; a number that is no longer open gives EBADF.
        unsafe { libc::close(fd as i32) };
    }
}

/// Numbers in 3..3+n that are open but not in `ours`: fds the caller left
/// us (with `--keep-fds`) that the sockets would replace.
pub fn occupied_slots(n: usize, ours: &[RawFd]) -> Vec<RawFd> {
    (FIRST..FIRST + n as RawFd)
        .filter(|fd| !ours.contains(fd) && is_open(*fd))
        .collect()
}

/// Places `fds` at 3, 4, ... in order and clears FD_CLOEXEC on exactly
/// those fds. Returns the fds at their new numbers (still owned, so a
/// failed exec closes them).
///
/// Two phases, because a source may sit in another source's slot: first
/// every source that is inside the range but not in its own slot moves
/// above it, then each one is duplicated into its (now free) slot. A source
/// already in its slot stays; `dup2(fd, fd)` would keep FD_CLOEXEC, so the
/// flag is cleared explicitly instead.
///
/// Every other fd in the range must be closed beforehand ([`close_others`],
/// or checked with [`occupied_slots`]).
pub fn place(fds: Vec<OwnedFd>) -> Result<Vec<OwnedFd>, Errno> {
    let end = FIRST + fds.len() as RawFd;
    let slot = |i: usize| FIRST + i as RawFd;
    let fds = fds
        .into_iter()
        .enumerate()
        .map(|(i, fd)| {
            let raw = fd.as_raw_fd();
            if raw != slot(i) && (FIRST..end).contains(&raw) {
                fcntl_dupfd_cloexec(&fd, end) // the old number closes on drop
            } else {
                Ok(fd)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    fds.into_iter()
        .enumerate()
        .map(|(i, fd)| {
            if fd.as_raw_fd() == slot(i) {
                fcntl_setfd(&fd, FdFlags::empty())?;
                return Ok(fd);
            }
            // F_DUPFD_CLOEXEC returns the lowest free number >= slot; the
            // slot is free, so that is the slot itself. (rustix offers no
            // plain F_DUPFD on Linux, hence the extra fcntl.)
            let placed = fcntl_dupfd_cloexec(fd.as_fd(), slot(i))?;
            if placed.as_raw_fd() != slot(i) {
                return Err(Errno::BADF);
            }
            fcntl_setfd(&placed, FdFlags::empty())?;
            Ok(placed)
        })
        .collect()
}

/// `--inetd`: the socket becomes stdin and stdout (dup2 keeps neither
/// CLOEXEC); the fd at 3 is closed when `fd` is dropped.
pub fn to_stdio(fd: &OwnedFd) -> Result<(), Errno> {
    for target in [0, 1] {
        // SAFETY: fds 0 and 1 are always open (ensure_stdio) and owned by
        // nobody in gracewrap; dup2 replaces them atomically, and the
        // OwnedFd is released again without closing.
        let mut stdio = unsafe { OwnedFd::from_raw_fd(target) };
        let result = rustix::io::dup2(fd, &mut stdio);
        let _ = stdio.into_raw_fd();
        result?;
    }
    Ok(())
}

/// The RLIMIT_NOFILE soft limit gracewrap found, to be restored for PROGRAM
/// after gracewrap raised it for its own work.
#[derive(Debug)]
pub struct NofileLimit(Option<Rlimit>);

/// Makes room for `want` open fds, and at least `need`: raises the soft
/// RLIMIT_NOFILE (up to the hard limit) when it is lower. systemd does the
/// same and gives services the original soft limit back. Errors with the
/// hard limit when even that is below `need`.
pub fn reserve(need: u64, want: u64) -> Result<NofileLimit, u64> {
    let lim = getrlimit(Resource::Nofile);
    let at_least = |limit: Option<u64>, n: u64| limit.is_none_or(|l| l >= n);
    if at_least(lim.current, want) {
        return Ok(NofileLimit(None));
    }
    if !at_least(lim.maximum, need) {
        return Err(lim.maximum.unwrap_or(u64::MAX));
    }
    let current = Some(lim.maximum.map_or(want, |hard| hard.min(want)));
    let raised = Rlimit {
        current,
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Ok(NofileLimit(Some(lim))),
        Err(_) if at_least(lim.current, need) => Ok(NofileLimit(None)),
        Err(_) => Err(lim.current.unwrap_or(u64::MAX)),
    }
}

/// The soft RLIMIT_NOFILE now (None: unlimited).
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

impl NofileLimit {
    /// Makes [`NofileLimit::restore`] put back this (soft, hard) limit
    /// (RLIM_INFINITY for none) instead of the one we found.
    pub fn restore_to(&mut self, soft: u64, hard: u64) {
        let lim = |l: u64| (l != libc::RLIM_INFINITY).then_some(l);
        self.0 = Some(Rlimit {
            current: lim(soft),
            maximum: lim(hard),
        });
    }

    /// The (soft, hard) limit gracewrap found, if it raised the soft one:
    /// what its children get back (RLIM_INFINITY for no limit).
    pub fn original(&self) -> Option<(u64, u64)> {
        self.0.as_ref().map(|lim| {
            let raw = |l: Option<u64>| l.unwrap_or(libc::RLIM_INFINITY);
            (raw(lim.current), raw(lim.maximum))
        })
    }

    /// Puts the original soft limit back (before exec). Fds above it stay
    /// open; the limit only affects new ones.
    pub fn restore(&mut self) {
        if let Some(lim) = self.0.take() {
            let _ = setrlimit(Resource::Nofile, lim);
        }
    }
}
