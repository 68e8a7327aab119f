//! `--accept`: gracewrap stays resident, accepts each connection and runs
//! one PROGRAM per connection, with the connection at fd 3
//! (`LISTEN_FDS=1`, `LISTEN_FDNAMES=connection`, `LISTEN_PID` = that
//! child's pid), or on stdin and stdout with `--inetd` — systemd's
//! `Accept=yes`, and systemd-socket-activate's `--accept`.
//!
//! The loop, in the order it runs:
//! 1. poll the signal pipe and, below `--max-connections`, the listeners
//!    (at the cap, connections wait in the kernel's backlog);
//! 2. SIGCHLD: reap every exited child (no zombies, whatever the load);
//! 3. SIGTERM, SIGINT, SIGHUP, SIGQUIT: stop, exit 0; children get SIGTERM
//!    from PR_SET_PDEATHSIG;
//! 4. accept what is pending on each readable listener and spawn a child.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::Errno;
use rustix::net::{SocketFlags, accept_with, sockopt};

use super::resident::{self, Spawn};
use crate::cli::{Args, program_name};
use crate::exit::Status;
use crate::handoff::Handoff;
use crate::msg::{Dur, io_reason, reason, say};
use crate::protocol::CONNECTION_NAME;
use crate::socket;
use crate::sys::signals::Watch;
use crate::sys::user::Target;

/// Signals that stop the accept loop.
const STOP: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// Accepts until a stop signal; then exit status 0. The handoff's socket
/// files go when it is dropped, on every way out.
pub fn run(
    args: &Args,
    handoff: Handoff,
    inetd: bool,
    max: usize,
    target: Option<&Target>,
) -> Result<Status> {
    for fd in handoff.fds() {
        if !sockopt::socket_acceptconn(fd).unwrap_or(false) {
            bail!(
                "--accept needs listening sockets; {} (fd {}) is not one",
                socket::describe(fd),
                fd.as_raw_fd()
            );
        }
    }
    // (cli made sure there is one name at most.)
    let name = match &args.fdnames {
        Some(names) => names[0].clone(),
        None => CONNECTION_NAME.to_string(),
    };
    resident::check(args, target)?;
    let mut caught = STOP.to_vec();
    caught.push(libc::SIGCHLD);
    let watch = resident::watch(&caught)?;
    // gracewrap keeps the RLIMIT_NOFILE it raised; each child gets the
    // caller's back.
    let nofile = handoff.original_limit();
    if super::report_sockets(args) {
        for fd in handoff.fds() {
            say(format_args!(
                "accepting on {} (fd {})",
                socket::describe(fd),
                fd.as_raw_fd()
            ));
        }
    }
    // Last, once nothing else can fail: O_NONBLOCK is shared with whoever
    // gave us an inherited listener, so it is put back as it was on every
    // way out (the guard).
    let _flags = Nonblocking::set(handoff.fds())?;
    let listeners: Vec<&OwnedFd> = handoff.fds().collect();
    let how = Serve {
        name: &name,
        inetd,
        max,
        nofile,
    };
    serve(args, &listeners, &watch, &how)
}

/// How connections are served.
struct Serve<'a> {
    name: &'a str,
    inetd: bool,
    max: usize,
    nofile: Option<(u64, u64)>,
}

/// The first pause after accept(2) ran out of fds or memory, and the
/// longest; the pause doubles while it keeps failing. The connection
/// waits in the backlog meanwhile.
const PAUSE_FIRST: Duration = Duration::from_millis(10);
const PAUSE_MAX: Duration = Duration::from_secs(1);

fn serve(args: &Args, listeners: &[&OwnedFd], watch: &Watch, how: &Serve<'_>) -> Result<Status> {
    let mut children: Vec<i32> = Vec::new();
    let wake = watch.fd();
    // While accept(2) lacks fds or memory, the listeners stay readable:
    // they are left out of the poll until the pause is over, instead of
    // spinning.
    let mut paused: Option<(Instant, Duration)> = None;
    loop {
        let now = Instant::now();
        let resting = paused.is_some_and(|(until, _)| now < until);
        let open = children.len() < how.max && !resting;
        let mut polls = vec![PollFd::new(&wake, PollFlags::IN)];
        if open {
            polls.extend(listeners.iter().map(|fd| PollFd::new(*fd, PollFlags::IN)));
        }
        let timeout = paused
            .filter(|_| resting)
            .map(|(until, _)| Timespec::try_from(until - now).unwrap_or_default());
        match poll(&mut polls, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => bail!("poll failed: {}", reason(e)),
        }
        let ready: Vec<bool> = polls
            .iter()
            .skip(1)
            .map(|p| !p.revents().is_empty())
            .collect();
        drop(polls);
        let signals = watch.take();
        resident::reap(|pid, _| children.retain(|&c| c != pid));
        if let Some(sig) = signals.iter().find(|s| STOP.contains(s)) {
            if args.verbose {
                say(format_args!(
                    "signal {sig}: stopping; {} connection(s) still open get SIGTERM",
                    children.len()
                ));
            }
            return Ok(Status::Program(0));
        }
        for (fd, _) in listeners.iter().zip(ready).filter(|(_, r)| *r) {
            let open = paused.is_none_or(|(until, _)| Instant::now() >= until);
            while children.len() < how.max && open {
                let conn = match accept_with(fd, SocketFlags::CLOEXEC) {
                    Ok(conn) => {
                        paused = None;
                        conn
                    }
                    Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => break,
                    Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)) => {
                        let pause = paused.map_or(PAUSE_FIRST, |(_, p)| (p * 2).min(PAUSE_MAX));
                        if paused.is_none() {
                            say(format_args!(
                                "cannot accept on fd {}: {}; pausing accept (from {} up to {}) until it works again",
                                fd.as_raw_fd(),
                                reason(e),
                                Dur(PAUSE_FIRST),
                                Dur(PAUSE_MAX)
                            ));
                        }
                        paused = Some((Instant::now() + pause, pause));
                        break;
                    }
                    Err(e) => {
                        say(format_args!(
                            "cannot accept on fd {}: {}",
                            fd.as_raw_fd(),
                            reason(e)
                        ));
                        break;
                    }
                };
                // The connection goes to fd 3; with --inetd the child
                // gracewrap moves it on to stdin and stdout.
                let how = Spawn {
                    fd3: Some(conn.as_fd().as_raw_fd()),
                    count: 1,
                    extra: &[],
                    names: how.name,
                    inetd: how.inetd,
                    env: &[],
                    new_group: false,
                    terminal_from: [0; 2],
                    nofile: how.nofile,
                };
                match resident::spawn(args, watch, &how) {
                    // Reaped through SIGCHLD and wait(2).
                    Ok(pid) => children.push(pid),
                    Err(e) => say(format_args!(
                        "cannot start {} for a connection: {}",
                        program_name(args),
                        io_reason(&e)
                    )),
                }
                // `conn` closes here: the child has its own copy.
            }
        }
    }
}

/// Sets O_NONBLOCK on the listeners (the loop must never block in
/// accept: another process may take a connection first), and puts each
/// one's file status flags back as they were when dropped, or when
/// setting them fails half-way.
struct Nonblocking<'a>(Vec<(&'a OwnedFd, OFlags)>);

impl<'a> Nonblocking<'a> {
    fn set(fds: impl Iterator<Item = &'a OwnedFd>) -> Result<Nonblocking<'a>> {
        let mut guard = Nonblocking(Vec::new());
        for fd in fds {
            let fail = |e| {
                anyhow!(
                    "cannot make fd {} non-blocking: {}",
                    fd.as_raw_fd(),
                    reason(e)
                )
            };
            let old = fcntl_getfl(fd).map_err(fail)?;
            fcntl_setfl(fd, old | OFlags::NONBLOCK).map_err(fail)?;
            guard.0.push((fd, old));
        }
        Ok(guard)
    }
}

impl Drop for Nonblocking<'_> {
    fn drop(&mut self) {
        for (fd, old) in &self.0 {
            let _ = fcntl_setfl(fd, *old);
        }
    }
}
