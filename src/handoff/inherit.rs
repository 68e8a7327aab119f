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
//! gracewrap's own supervisor hands sockets to a child gracewrap (each
//! generation) before its pid is known: it sets `LISTEN_PID` to its own
//! pid and [`HANDOFF_VAR`] to the same value ([`crate::protocol::handoff_env`]),
//! and the child accepts the set when both equal its parent's pid.
//!
//! The rules are a pure function of the variables' bytes and of what this
//! process is (listen_vars.rs, which the property tests and the
//! `listen_env` fuzz target exercise); this module reads the real
//! environment for it and takes the fds over.

use std::env;
use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{Result, anyhow};

use super::fds;
use super::listen_vars::{self, Listen, Reader, Vars};
use crate::protocol::{FIRST_FD, HANDOFF_VAR, pidfd_id};

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

/// This process, as [`listen_vars::read`] asks about it.
struct ThisProcess;

impl Reader for ThisProcess {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn parent(&self) -> u32 {
        rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
    }

    fn pidfd_id(&self) -> Option<u64> {
        pidfd_id()
    }

    fn is_open(&self, fd: RawFd) -> bool {
        fds::is_open(fd)
    }
}

/// Reads and takes over the inherited set (fds 3..3+n become ours, with
/// FD_CLOEXEC set until they are placed). Call before anything opens fds.
pub fn take() -> Result<Inherited> {
    let [pid, pidfd_id, n, names, handoff] = [
        "LISTEN_PID",
        "LISTEN_PIDFDID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        HANDOFF_VAR,
    ]
    .map(env::var_os);
    fn bytes(v: &Option<OsString>) -> Option<&[u8]> {
        v.as_deref().map(OsStrExt::as_bytes)
    }
    let vars = Vars {
        pid: bytes(&pid),
        pidfd_id: bytes(&pidfd_id),
        fds: bytes(&n),
        names: bytes(&names),
        handoff: bytes(&handoff),
    };
    let (names, parent) = match listen_vars::read(&vars, &ThisProcess).map_err(|e| anyhow!(e.0))? {
        Listen::Nothing => return Ok(Inherited::default()),
        Listen::Ignored(why) => return Ok(ignored(why)),
        Listen::Fds { names, parent } => (names, parent),
    };
    let n = names.len();
    let mut out = Vec::with_capacity(n);
    for (i, name) in names.into_iter().enumerate() {
        let fd = FIRST_FD + i as RawFd;
        let fd = fds::adopt(fd).ok_or_else(|| anyhow!("LISTEN_FDS={n} but fd {fd} is not open"))?;
        out.push(Fd { fd, name });
    }
    Ok(Inherited {
        fds: out,
        ignored: None,
        parent,
    })
}

fn ignored(why: String) -> Inherited {
    Inherited {
        fds: Vec::new(),
        ignored: Some(why),
        parent: None,
    }
}
