//! Sockets handed to gracewrap itself through `LISTEN_FDS`, read the way
//! libsystemd's `sd_listen_fds_with_names()` reads them (sd-daemon.c):
//!
//! | situation | sd_listen_fds | gracewrap |
//! |---|---|---|
//! | `LISTEN_PID` unset | 0 | nothing inherited |
//! | `LISTEN_PID` not a pid | -EINVAL | error, exit 125 |
//! | `LISTEN_PID` another process's | 0 | nothing inherited (said with -v) |
//! | `LISTEN_PIDFDID` not a number | error | error, exit 125 |
//! | `LISTEN_PIDFDID` another process's | 0 | nothing inherited (said with -v) |
//! | `LISTEN_FDS` unset | 0 | nothing inherited |
//! | `LISTEN_FDS` not a number, <= 0, > INT_MAX-3 | -EINVAL | error, exit 125 |
//! | an fd in 3..3+n not open | -EBADF (fd_cloexec) | error naming the fd |
//! | `LISTEN_FDNAMES` count != `LISTEN_FDS` | -EINVAL | error |
//! | `LISTEN_FDNAMES` unset | names "unknown" | names "unknown" |
//!
//! The fds need not be sockets: systemd's file descriptor store passes
//! memfds and other fds the same way. gracewrap passes those on untouched
//! but never matches a `--listen` against them.
//!
//! gracewrap's own supervisor and accept mode hand sockets to a child
//! gracewrap before its pid is known: they set `LISTEN_PID` to their own
//! pid and [`HANDOFF_VAR`] to the same value ([`crate::protocol::handoff_env`]),
//! and the child accepts the set when both equal its parent's pid.

use std::env;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{Result, anyhow, bail};

use super::fds;
use crate::protocol::{DEFAULT_NAME, FIRST_FD, HANDOFF_VAR, pidfd_id};
use crate::spec::check_name;

/// One inherited fd.
#[derive(Debug)]
pub struct Fd {
    pub fd: OwnedFd,
    pub name: String,
}

/// What `LISTEN_*` said, and why it was ignored if it was.
#[derive(Debug, Default)]
pub struct Inherited {
    pub fds: Vec<Fd>,
    /// Set when LISTEN_FDS was present but meant for another process.
    pub ignored: Option<String>,
    /// The resident gracewrap that handed the set to us, its child.
    pub parent: Option<u32>,
}

fn var(name: &str) -> Option<String> {
    env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Reads and takes over the inherited set (fds 3..3+n become ours, with
/// FD_CLOEXEC set until they are placed). Call before anything opens fds.
pub fn take() -> Result<Inherited> {
    let Some(pid_text) = var("LISTEN_PID") else {
        return Ok(Inherited::default());
    };
    let pid: u32 = pid_text
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| anyhow!("LISTEN_PID={pid_text} is not a process id"))?;
    let me = std::process::id();
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    let handoff = var(HANDOFF_VAR).is_some_and(|v| v == pid_text) && pid == parent;
    if pid != me && !handoff {
        return Ok(ignored(format!(
            "LISTEN_PID={pid} is not gracewrap's pid ({me})"
        )));
    }
    if let Some(id_text) = var("LISTEN_PIDFDID").filter(|_| !handoff) {
        let id: u64 = id_text
            .parse()
            .map_err(|_| anyhow!("LISTEN_PIDFDID={id_text} is not a number"))?;
        // Without pidfd inode ids (Linux < 6.9) there is nothing to compare.
        if let Some(own) = pidfd_id()
            && own != id
        {
            return Ok(ignored(format!(
                "LISTEN_PIDFDID={id} is not gracewrap's pidfd id ({own}): the pid was reused"
            )));
        }
    }
    let Some(n_text) = var("LISTEN_FDS") else {
        return Ok(Inherited::default());
    };
    let n: i64 = n_text
        .parse()
        .map_err(|_| anyhow!("LISTEN_FDS={n_text} is not a number"))?;
    if n <= 0 || n > i64::from(i32::MAX - FIRST_FD) {
        bail!(
            "LISTEN_FDS={n_text} is out of range (1 to {})",
            i32::MAX - FIRST_FD
        );
    }
    let n = n as usize;
    // The last fd first, before anything proportional to n is allocated
    // or done: a huge LISTEN_FDS fails at once, not after gigabytes of
    // names or a million fcntl calls.
    let last = FIRST_FD + n as RawFd - 1;
    if !fds::is_open(last) {
        bail!("LISTEN_FDS={n} but fd {last} is not open");
    }
    let names: Vec<String> = match env::var_os("LISTEN_FDNAMES") {
        None => vec![DEFAULT_NAME.to_string(); n],
        Some(text) => {
            // Bytes, not text: a name with a byte that is not UTF-8 is
            // reported as that byte.
            let names = text
                .as_bytes()
                .split(|&b| b == b':')
                .map(|name| check_name(name).map(str::to_owned))
                .collect::<Result<Vec<String>, _>>();
            let count = text.as_bytes().split(|&b| b == b':').count();
            if count != n {
                bail!(
                    "LISTEN_FDNAMES has {count} names for LISTEN_FDS={n} fds (libsystemd refuses this too)"
                );
            }
            names.map_err(|e| anyhow!("LISTEN_FDNAMES: {e}"))?
        }
    };
    let mut out = Vec::with_capacity(n);
    for (i, name) in names.into_iter().enumerate() {
        let fd = FIRST_FD + i as RawFd;
        let fd = fds::adopt(fd).ok_or_else(|| anyhow!("LISTEN_FDS={n} but fd {fd} is not open"))?;
        out.push(Fd { fd, name });
    }
    Ok(Inherited {
        fds: out,
        ignored: None,
        parent: handoff.then_some(pid),
    })
}

fn ignored(why: String) -> Inherited {
    Inherited {
        fds: Vec::new(),
        ignored: Some(why),
        parent: None,
    }
}
