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
//!
//! Each child is PROGRAM itself, started by [`process::spawn`]
//! (clone(CLONE_VM | CLONE_VFORK), then one execve): its argv, the PATH
//! candidates, its environment but for `REMOTE_*` and `LISTEN_PID`, the
//! credentials, all prepared once at start ([`Launch`]).

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::Errno;
use rustix::net::{SocketFlags, acceptfrom_with, sockopt};

use super::resident;
use crate::cli::{Args, program_name};
use crate::exit::Status;
use crate::handoff::Handoff;
use crate::msg::{Dur, io_reason, quote, reason, say};
use crate::protocol::{CONNECTION_NAME, REMOTE_VARS, WATCHDOG_VARS};
use crate::socket::{self, Peer, Source};
use crate::sys::process::{self, Failed, Program, Setup, SpawnError, Stack, Step};
use crate::sys::signals::{Blocked, Watch};
use crate::sys::user::Target;

/// Signals that stop the accept loop.
const STOP: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// How `--accept` serves: `--inetd`, `--max-connections`,
/// `--max-connections-per-source`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub inetd: bool,
    pub max: usize,
    pub per_source: Option<usize>,
}

/// Accepts until a stop signal; then exit status 0. The handoff's socket
/// files go when it is dropped, on every way out.
pub fn run(
    args: &Args,
    handoff: Handoff,
    limits: Limits,
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
    let launch = Launch::prepare(args, &name, limits.inetd, nofile, target, &caught)?;
    let mut stack = Stack::new()
        .map_err(|e| anyhow!("cannot map a stack for the children: {}", io_reason(&e)))?;
    // Last, once nothing else can fail: O_NONBLOCK is shared with whoever
    // gave us an inherited listener, so it is put back as it was on every
    // way out (the guard).
    let _flags = Nonblocking::set(handoff.fds())?;
    let listeners: Vec<&OwnedFd> = handoff.fds().collect();
    serve(args, &listeners, &watch, limits, &launch, &mut stack)
}

/// What every connection's child gets, prepared once: PROGRAM's argv and
/// PATH candidates, its environment without the per-connection
/// variables, the credentials and directory it takes.
struct Launch<'a> {
    args: &'a Args,
    program: Program,
    env: process::Env,
    /// The PATH PROGRAM is searched in, for messages.
    path: Option<OsString>,
    chdir: Option<CString>,
    target: Option<&'a Target>,
    inetd: bool,
    /// `LISTEN_PID` names each child (not with `--inetd` or `--no-pid`).
    own_pid: bool,
    nofile: Option<(u64, u64)>,
    caught: Vec<i32>,
}

impl<'a> Launch<'a> {
    fn prepare(
        args: &'a Args,
        name: &str,
        inetd: bool,
        nofile: Option<(u64, u64)>,
        target: Option<&'a Target>,
        caught: &[i32],
    ) -> Result<Launch<'a>> {
        // systemd's StandardInput=socket: with --inetd no LISTEN_* at all.
        let listen = if inetd {
            Vec::new()
        } else {
            vec![
                ("LISTEN_FDS", "1".to_string()),
                ("LISTEN_FDNAMES", name.to_string()),
            ]
        };
        // gracewrap's own REMOTE_* (from an inetd of its own) and
        // WATCHDOG_* describe gracewrap, not the connection.
        let drop: Vec<&str> = REMOTE_VARS.iter().chain(&WATCHDOG_VARS).copied().collect();
        let env = super::exec::program_env(args, &listen, &drop, target);
        let path = env.get("PATH").map(OsStr::to_owned);
        let chdir = args
            .chdir
            .as_ref()
            .map(|dir| CString::new(dir.as_bytes()))
            .transpose()
            .map_err(|_| {
                anyhow!(
                    "--chdir {} holds a NUL byte",
                    quote(args.chdir.as_deref().unwrap_or_default())
                )
            })?;
        Ok(Launch {
            args,
            program: Program::new(&args.program, &args.args, path.as_deref()),
            env,
            path,
            chdir,
            target,
            inetd,
            own_pid: !inetd && !args.no_pid,
            nofile,
            caught: caught.to_vec(),
        })
    }

    /// Starts PROGRAM for `conn`; returns its pid, or says why not.
    fn start(&self, conn: &OwnedFd, peer: &Peer, stack: &mut Stack) -> Option<i32> {
        let more: Vec<CString> = match &peer.remote {
            Some((addr, port)) => vec![
                CString::new(format!("{}={addr}", REMOTE_VARS[0])).unwrap_or_default(),
                CString::new(format!("{}={port}", REMOTE_VARS[1])).unwrap_or_default(),
            ],
            None => Vec::new(),
        };
        let creds = self.target.map(Target::creds);
        // Blocked until the child has reset gracewrap's handlers (see
        // Setup).
        let blocked = Blocked::all();
        let mut setup = Setup::new(&self.caught, self.args.keep_signals, blocked.old_mask());
        setup.deathsig = true;
        setup.fd3 = Some(conn.as_raw_fd());
        setup.inetd = self.inetd;
        setup.creds = creds;
        setup.nofile = self.nofile;
        setup.chdir = self.chdir.as_deref();
        setup.own_pid = self.own_pid;
        // Here, or in a fork child (with --user), which reports for itself.
        let report = |f: Failed| say(format_args!("{} ({peer})", self.failure(f)));
        let started = process::spawn(
            &self.program,
            self.env.entries(),
            &more,
            &setup,
            stack,
            &report,
        );
        drop(blocked);
        match started {
            Ok(pid) => Some(pid),
            Err(SpawnError::Child(f)) => {
                report(f);
                None
            }
            Err(SpawnError::Fork(e)) => {
                say(format_args!(
                    "cannot start {} for a connection: {} ({peer})",
                    program_name(self.args),
                    io_reason(&e)
                ));
                None
            }
        }
    }

    /// What a child that failed before PROGRAM ran says, in the words
    /// exec mode would use.
    fn failure(&self, f: Failed) -> String {
        let error = std::io::Error::from_raw_os_error(f.errno);
        let why = io_reason(&error);
        match f.step {
            Step::Exec => {
                let cwd = self.args.chdir.as_deref().map(std::path::Path::new);
                process::exec_failure(&self.args.program, &error, self.path.as_deref(), cwd).message
            }
            Step::Chdir => {
                super::chdir_failure(self.args.chdir.as_deref().unwrap_or_default(), &error)
            }
            Step::Groups
            | Step::Gid
            | Step::Uid
            | Step::GidUnchanged
            | Step::UidUnchanged
            | Step::RootRegained => match self.target {
                Some(target) => target.drop_failure(f),
                None => format!("cannot drop privileges: {why}"),
            },
            Step::Fds => format!("cannot put the connection in place: {why}"),
            Step::Limit => format!("cannot restore RLIMIT_NOFILE: {why}"),
            Step::ParentGone => "gracewrap is gone".to_string(),
        }
    }
}

/// The connections each source has open (`--max-connections-per-source`).
/// A list, not a hash map: it holds at most `--max-connections` entries,
/// and a hash map (its random keys, hashbrown) costs 6 kB of binary.
#[derive(Debug, Default)]
struct Sources {
    open: Vec<(Source, usize)>,
    /// Connections closed at once for being over the limit.
    refused: u64,
    /// Refusals since the last line about them, and when that was.
    unsaid: u64,
    said: Option<Instant>,
}

/// The most often a refusal is reported (at -v): the rest are counted
/// into the next line.
const REFUSALS_EVERY: Duration = Duration::from_secs(1);

impl Sources {
    /// Counts a connection from `source` in, unless it has `limit`.
    fn admit(&mut self, source: Source, limit: usize) -> bool {
        match self.open.iter_mut().find(|(s, _)| *s == source) {
            Some((_, open)) if *open >= limit => false,
            Some((_, open)) => {
                *open += 1;
                true
            }
            None => {
                self.open.push((source, 1));
                true
            }
        }
    }

    fn release(&mut self, source: Source) {
        if let Some(i) = self.open.iter().position(|(s, _)| *s == source) {
            self.open[i].1 -= 1;
            if self.open[i].1 == 0 {
                self.open.swap_remove(i);
            }
        }
    }

    /// A connection closed for being over the limit; at -v one line, at
    /// most every [`REFUSALS_EVERY`].
    fn refuse(&mut self, peer: &Peer, limit: usize, verbose: bool) {
        self.refused += 1;
        self.unsaid += 1;
        let now = Instant::now();
        if !verbose || self.said.is_some_and(|t| now - t < REFUSALS_EVERY) {
            return;
        }
        let more = match self.unsaid - 1 {
            0 => String::new(),
            n => format!("; {n} more refused since the last line"),
        };
        say(format_args!(
            "closed a connection from {peer}: its source has {limit} open (--max-connections-per-source){more}"
        ));
        self.unsaid = 0;
        self.said = Some(now);
    }
}

/// The first pause after accept(2) ran out of fds or memory, and the
/// longest; the pause doubles while it keeps failing. The connection
/// waits in the backlog meanwhile.
const PAUSE_FIRST: Duration = Duration::from_millis(10);
const PAUSE_MAX: Duration = Duration::from_secs(1);

fn serve(
    args: &Args,
    listeners: &[&OwnedFd],
    watch: &Watch,
    limits: Limits,
    launch: &Launch<'_>,
    stack: &mut Stack,
) -> Result<Status> {
    // Each child, and the source it counts against.
    let mut children: Vec<(i32, Option<Source>)> = Vec::new();
    let mut sources = Sources::default();
    let wake = watch.fd();
    // While accept(2) lacks fds or memory, the listeners stay readable:
    // they are left out of the poll until the pause is over, instead of
    // spinning.
    let mut paused: Option<(Instant, Duration)> = None;
    loop {
        let now = Instant::now();
        let resting = paused.is_some_and(|(until, _)| now < until);
        let open = children.len() < limits.max && !resting;
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
        resident::reap(|pid, _| {
            if let Some(i) = children.iter().position(|(c, _)| *c == pid)
                && let (_, Some(source)) = children.swap_remove(i)
            {
                sources.release(source);
            }
        });
        if let Some(sig) = signals.iter().find(|s| STOP.contains(s)) {
            if args.verbose {
                say(format_args!(
                    "signal {sig}: stopping; {} connection(s) still open get SIGTERM",
                    children.len()
                ));
                if sources.refused > 0 {
                    say(format_args!(
                        "{} connection(s) were closed at once over --max-connections-per-source",
                        sources.refused
                    ));
                }
            }
            return Ok(Status::Program(0));
        }
        for (fd, _) in listeners.iter().zip(ready).filter(|(_, r)| *r) {
            let open = paused.is_none_or(|(until, _)| Instant::now() >= until);
            while children.len() < limits.max && open {
                let (conn, addr) = match acceptfrom_with(fd, SocketFlags::CLOEXEC) {
                    Ok(accepted) => {
                        paused = None;
                        accepted
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
                let peer = Peer::of(&conn, addr.as_ref());
                // Counted against its source while its child lives; over
                // the limit, closed at once (`conn` drops).
                let source = match (limits.per_source, peer.source) {
                    (Some(limit), Some(source)) => {
                        if !sources.admit(source, limit) {
                            sources.refuse(&peer, limit, args.verbose);
                            continue;
                        }
                        Some(source)
                    }
                    _ => None,
                };
                match launch.start(&conn, &peer, stack) {
                    // Reaped through SIGCHLD and wait(2).
                    Some(pid) => children.push((pid, source)),
                    None => {
                        if let Some(source) = source {
                            sources.release(source);
                        }
                    }
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
