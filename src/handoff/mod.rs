//! The sockets PROGRAM gets, from the command line and the inherited set
//! to fds 3.. ([`Handoff`]): inherited ones read the way libsystemd reads
//! them (inherit.rs, its rules a pure function in listen_vars.rs), matched
//! against `--listen` and bound (plan.rs), then placed (fds.rs, the one
//! module that moves raw fd numbers).

mod fds;
mod inherit;
mod listen_vars;
mod plan;

use std::borrow::Cow;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Result, anyhow};

pub use fds::ensure_stdio;

use crate::cli::Args;
use crate::msg::{reason, say};
use crate::protocol::DEFAULT_NAME;
use crate::socket;

/// One socket PROGRAM will get.
#[derive(Debug)]
struct Socket {
    fd: OwnedFd,
    /// Borrowed for the default name: no allocation per unnamed socket.
    name: Cow<'static, str>,
    inherited: bool,
}

/// The sockets in fd order (3, 4, ...), and everything gracewrap changed
/// to get them: the socket files it bound and the RLIMIT_NOFILE it raised.
///
/// Dropping it closes the sockets and removes the files it created. Exec
/// mode never drops it on success (execve(2) replaces the process, and the
/// files are PROGRAM's from then on); every failure, and the end of a
/// resident mode, drops it.
#[derive(Debug)]
pub struct Handoff {
    sockets: Vec<Socket>,
    /// The socket files and `mkdir` directories gracewrap created, in
    /// the order it created them.
    created: Vec<crate::socket::Made>,
    limit: fds::NofileLimit,
    /// The supervisor (`--supervise`) that handed us the sockets, when we
    /// are its child.
    parent: Option<u32>,
}

impl Handoff {
    /// Takes over the inherited sockets, binds the rest (see plan.rs).
    /// Fails with a usage error when there is no socket at all.
    pub fn prepare(args: &Args) -> Result<Handoff> {
        plan::prepare(args)
    }

    fn new(limit: fds::NofileLimit) -> Handoff {
        Handoff {
            sockets: Vec::new(),
            created: Vec::new(),
            limit,
            parent: None,
        }
    }

    /// The pid of the resident gracewrap whose child we are, if we are.
    pub fn parent(&self) -> Option<u32> {
        self.parent
    }

    /// How many sockets PROGRAM gets (`LISTEN_FDS`).
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// The sockets, in fd order.
    pub fn fds(&self) -> impl Iterator<Item = &OwnedFd> {
        self.sockets.iter().map(|s| &s.fd)
    }

    /// `LISTEN_FDNAMES`: the names in fd order, `:`-separated.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.sockets.iter().map(|s| s.name.as_ref()).collect();
        names.join(":")
    }

    /// Moves the sockets to fds 3, 4, ... without FD_CLOEXEC.
    pub fn place(&mut self) -> Result<()> {
        let sockets = std::mem::take(&mut self.sockets);
        let mut fds = Vec::with_capacity(sockets.len());
        let rest: Vec<(Cow<'static, str>, bool)> = sockets
            .into_iter()
            .map(|s| {
                fds.push(s.fd);
                (s.name, s.inherited)
            })
            .collect();
        let placed = fds::place(fds)
            .map_err(|e| anyhow!("cannot move the sockets to fd 3..: {}", reason(e)))?;
        self.sockets = placed
            .into_iter()
            .zip(rest)
            .map(|(fd, (name, inherited))| Socket {
                fd,
                name,
                inherited,
            })
            .collect();
        Ok(())
    }

    /// `--inetd`: the (one, placed) socket becomes stdin and stdout, and
    /// leaves fd 3.
    pub fn onto_stdio(&mut self) -> Result<()> {
        if let Some(first) = self.sockets.first() {
            fds::to_stdio(&first.fd)
                .map_err(|e| anyhow!("cannot put the socket on stdin/stdout: {}", reason(e)))?;
        }
        self.sockets.clear();
        Ok(())
    }

    /// `listening on 127.0.0.1:39211 (fd 3, name http)` for each socket.
    pub fn report(&self) {
        for s in &self.sockets {
            let addr = socket::describe(s.fd.as_fd());
            let fd = s.fd.as_raw_fd();
            let from = if s.inherited { ", inherited" } else { "" };
            match s.name.as_ref() {
                DEFAULT_NAME => say(format_args!("listening on {addr} (fd {fd}{from})")),
                "" => say(format_args!(
                    "listening on {addr} (fd {fd}, name \"\"{from})"
                )),
                name => say(format_args!(
                    "listening on {addr} (fd {fd}, name {name}{from})"
                )),
            }
        }
    }

    /// Removes the socket files and directories gracewrap created (those
    /// still as it made them), now rather than on drop.
    pub fn remove_created(&mut self) {
        // Innermost first: a directory is empty once its socket is gone.
        for c in self.created.drain(..).rev() {
            c.remove();
        }
    }

    /// Puts back the RLIMIT_NOFILE soft limit gracewrap found, for PROGRAM
    /// (gracewrap raised it to hold the sockets), right before exec;
    /// unless the sockets reach past it, where PROGRAM could open nothing
    /// at all (not even its shared libraries): then PROGRAM keeps the
    /// raised one, and gracewrap says so.
    pub fn restore_limit(&mut self) {
        if let Some((soft, _)) = self.limit.original() {
            let last = crate::protocol::FIRST_FD as u64 + self.sockets.len() as u64 - 1;
            if last >= soft {
                crate::msg::say(format_args!(
                    "the sockets take fds up to {last}, past the RLIMIT_NOFILE soft limit of {soft} the program would get: it keeps the raised limit of {}",
                    fds::soft_limit().map_or("unlimited".to_string(), |l| l.to_string())
                ));
                return;
            }
        }
        self.limit.restore();
    }

    /// The RLIMIT_NOFILE (soft, hard) gracewrap found, if it raised its
    /// own: a resident gracewrap keeps the raised one and gives each child
    /// this one.
    pub fn original_limit(&self) -> Option<(u64, u64)> {
        self.limit.original()
    }

    /// Makes room for `more` fds besides the sockets (the supervisor's fd
    /// store, which holds each fd at a number above all the sockets and
    /// the store's places: see mode/supervise.rs), keeping the caller's
    /// limit as the one children get back. Errors with the most RLIMIT_NOFILE
    /// allows.
    pub fn reserve_more(&mut self, more: u64) -> Result<(), u64> {
        // Stdio, the sockets, the fds the supervisor opens, and slack.
        let need = 3 + self.len() as u64 + more + 64;
        let raised = fds::reserve(need, need)?;
        if self.limit.original().is_none() {
            self.limit = raised;
        }
        Ok(())
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.remove_created();
    }
}
