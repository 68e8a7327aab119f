//! `--supervise`: gracenet's StartProcess done from the outside, for
//! unmodified programs, with tini's PID-1 duties.
//!
//! gracewrap keeps the sockets (placed once at fd 3.. in this process) and
//! runs PROGRAM as a child on them (a *generation*, started through
//! resident.rs so that its `LISTEN_PID` is its own pid). On the restart
//! signal it starts a new generation on the same sockets; only when that
//! one is ready (READY=1 on our NOTIFY_SOCKET, or `--ready-delay`) does the
//! old one get the stop signal, then SIGKILL after `--stop-timeout`.
//! Connections arriving meanwhile wait in the shared listen queue: the
//! socket is never closed or re-bound, so none is refused.
//!
//! Rules, in the order the loop applies them:
//! - one new generation at a time; a restart signal during a restart is
//!   remembered (at most one) and served when the current one is settled;
//! - a new generation that exits or is not ready within `--ready-timeout`
//!   is stopped and logged; the old one keeps serving, the exit status of
//!   gracewrap is unaffected;
//! - the current generation exiting on its own ends gracewrap with its
//!   status (code, or 128+signal), unless `--restart-on-exit`;
//! - SIGTERM stops every generation (stop signal, stop timeout, SIGKILL),
//!   then gracewrap exits with the current generation's status;
//! - other signals are forwarded to the current generation;
//! - under a terminal whose foreground gracewrap holds, each generation
//!   takes that foreground in its own process group ([`Terminal`]);
//! - every child is reaped, re-parented orphans included (gracewrap is a
//!   child subreaper when it is not PID 1).

//!
//! Each generation is in one [`State`]; every deadline the supervisor
//! keeps comes from one function ([`Supervisor::deadlines`]), which both
//! the poll timeout and the timer handler use, so the two cannot drift.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::WaitStatus;

use super::resident::{self, Spawn};
use crate::cli::{Args, Ready, Supervise, program_name, signal_name};
use crate::exit::Status;
use crate::handoff::Handoff;
use crate::msg::{Dur, io_reason, reason, say};
use crate::notice::{self, Notice};
use crate::protocol::{FIRST_FD, NOTIFY_SOCKET, WATCHDOG_VAR};
use crate::sys::control::{self, Control};
use crate::sys::notify::{Listener, Upstream};
use crate::sys::pidfile::PidFile;
use crate::sys::raw::{self, monotonic_usec};
use crate::sys::signals::Watch;
use crate::sys::terminal;
use crate::sys::user::Target;
use crate::sys::waiting;

/// Signals passed on to the current generation, as tini does: every
/// signal a process can catch that means nothing to gracewrap itself. Not
/// the restart signal, SIGTERM and SIGCHLD (gracewrap acts on them), the
/// faults (they are about gracewrap's own code), SIGPIPE (ignored for its
/// messages), or the C library's own real-time signals below SIGRTMIN. Without a handler, the ones
/// whose default is to terminate (SIGXCPU, SIGPROF, SIGIO, the real-time
/// signals...) would kill gracewrap, and its generations with it.
fn forwarded(restart: i32) -> Vec<i32> {
    let named = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGSTKFLT,
        libc::SIGCONT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGURG,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGWINCH,
        libc::SIGIO,
        libc::SIGPWR,
    ];
    // The C library keeps the first real-time signals for itself (glibc
    // 32 and 33, musl 32 to 34) and refuses handlers for them.
    let realtime = libc::SIGRTMIN()..=libc::SIGRTMAX();
    named
        .into_iter()
        .chain(realtime)
        .filter(|&s| s != restart)
        .collect()
}

/// A generation that lived at least this long resets the crash backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// The most `gracewrap --restart` commands waiting at once.
const MAX_WAITERS: usize = 16;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often leftovers are looked for during the last stop: they are not
/// all ours to hear of through SIGCHLD.
const LEFTOVER_POLL: Duration = Duration::from_millis(20);

/// How often a starting generation is looked at (`--ready auto`,
/// `listen`): every LOOK_FAST for its first LOOK_FAST_FOR, then every
/// LOOK_SLOW.
const LOOK_FAST: Duration = Duration::from_millis(20);
const LOOK_FAST_FOR: Duration = Duration::from_secs(3);
const LOOK_SLOW: Duration = Duration::from_millis(200);

/// The longest a generation may ask for with `EXTEND_TIMEOUT_USEC=` or
/// `WATCHDOG_USEC=` (a larger value counts as this): a deadline must stay
/// a time the clock can hold.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The longest `LISTEN_FDNAMES` value: an environment string holds at
/// most 32 pages (MAX_ARG_STRLEN), `LISTEN_FDNAMES=` and its NUL
/// included; a longer one would make every later generation's exec fail.
const MAX_NAMES: usize = 32 * 4096 - "LISTEN_FDNAMES=".len() - 1;

/// `usec` from a generation as a duration; None for 0 and infinity
/// (`UINT64_MAX`), which systemd takes as "none" (`timestamp_is_set`).
fn usec(usec: u64) -> Option<Duration> {
    (usec != 0 && usec != u64::MAX).then(|| Duration::from_micros(usec).min(LONGEST))
}

/// Where a generation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Started, not ready yet: no READY=1, `--ready-delay` not over.
    Starting,
    /// Ready: it serves (or served) the sockets.
    Ready,
    /// It got the stop signal; SIGKILL follows at `kill_at`.
    Stopping { kill_at: Instant },
    /// It got SIGKILL; only reaping is left.
    Killed,
}

#[derive(Debug)]
struct Gen {
    id: u64,
    pid: i32,
    started: Instant,
    state: State,
    /// Its watchdog interval: `--watchdog`, or what it set with
    /// `WATCHDOG_USEC=` (None: no watchdog).
    watchdog: Option<Duration>,
    /// When it is stuck unless it sends WATCHDOG=1: set once it is ready.
    watchdog_due: Option<Instant>,
    /// The latest it may be ready (`--ready-timeout` after its start,
    /// moved out by `EXTEND_TIMEOUT_USEC=`).
    ready_by: Instant,
    /// A complaint about its notifications was said: not said again.
    warned: bool,
}

/// An fd a generation stored (`FDSTORE=1`, `--fdstore`).
#[derive(Debug)]
struct Stored {
    fd: OwnedFd,
    name: String,
    /// Dropped when it reports POLLHUP or POLLERR (not with `FDPOLL=0`).
    poll: bool,
}

/// Something the supervisor must do at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// `--ready-delay` is over for a generation still starting.
    ReadyDelay(u64),
    /// `--stop-delay` is over: stop the generations.
    StopDelay,
    /// Time to look whether the generations still starting wait for
    /// connections (`--ready auto` and `listen`).
    Look,
    /// `--ready-timeout` is over for the candidate.
    ReadyTimeout(u64),
    /// `--stop-timeout` is over for a stopping generation.
    Kill(u64),
    /// The back-off after a crash (`--restart-on-exit`) is over.
    Respawn,
    /// Look for leftovers again during the last stop; SIGKILL them once
    /// the stop timeout is over.
    Leftovers,
    /// A ready generation's watchdog is due (`--watchdog`).
    Watchdog(u64),
    /// Time to send WATCHDOG=1 to our own service manager.
    WatchdogUp,
}

/// The terminal on stdin, when gracewrap starts in its foreground (a
/// shell ran it as a foreground command). Each generation then leads a
/// process group of its own, as with `--process-group`, and takes the
/// foreground from the one before: the terminal's signals (SIGINT from
/// Ctrl-C, SIGQUIT, SIGTSTP from Ctrl-Z, SIGWINCH) reach the generation
/// once, and gracewrap, now in the background, not at all (it used to
/// pass on a second copy). Ctrl-Z stops the generation only, as it did
/// before: gracewrap keeps running ("Under a terminal" in the man page).
/// gracewrap ignores SIGTTOU meanwhile, as tini does: with `stty tostop`,
/// its messages and its handing the foreground on from the background
/// would get SIGTTOU, and its handler, again and again.
#[derive(Debug)]
struct Terminal {
    /// gracewrap's process group, in the foreground at the start.
    ours: i32,
    /// The group gracewrap left the foreground to: a generation's (its
    /// pid), or `ours`. A generation takes the foreground only from
    /// `ours` or `given`, never from a shell that took it back.
    given: i32,
}

impl Terminal {
    fn at_start() -> Option<Terminal> {
        let ours = terminal::own_group()?;
        (terminal::foreground() == Some(ours)).then_some(Terminal { ours, given: ours })
    }

    /// Hands the foreground to `group`, if it is still where gracewrap
    /// left it.
    fn hand_to(&mut self, group: i32) {
        if group != self.given
            && terminal::foreground() == Some(self.given)
            && terminal::give(group)
        {
            self.given = group;
        }
    }
}

impl Drop for Terminal {
    /// The foreground goes back to gracewrap's group when it exits: a
    /// shell without job control (a script) reads from the terminal
    /// again; one with job control takes it back itself anyway.
    fn drop(&mut self) {
        self.hand_to(self.ours);
    }
}

struct Supervisor<'a> {
    args: &'a Args,
    sup: &'a Supervise,
    /// The terminal whose foreground the generations take, if any.
    terminal: Option<Terminal>,
    /// The sockets, at 3.. in this process, for every generation to come.
    handoff: Handoff,
    names: String,
    /// Removed when the supervisor is dropped, if it is still ours.
    _pid_file: Option<PidFile>,
    watch: Watch,
    notify: Listener,
    upstream: Option<Upstream>,
    gens: Vec<Gen>,
    /// The serving generation.
    current: Option<u64>,
    /// A new generation waiting to become ready.
    candidate: Option<u64>,
    pending_restart: bool,
    next_id: u64,
    announced: bool,
    shutting_down: bool,
    /// Exit status to return once every generation is gone.
    status: Option<Status>,
    /// How the last serving generation ended: the exit status when
    /// gracewrap is stopped while none serves (the back-off of
    /// `--restart-on-exit`).
    last_exit: Option<Status>,
    respawn_at: Option<Instant>,
    /// Children that are not generations (orphans re-parented to us, the
    /// workers a generation left behind) that got the stop signal, each
    /// with the time it gets SIGKILL if it is still there.
    leftovers: Vec<(i32, Instant)>,
    backoff: Duration,
    /// Whether a notification from outside the generations was reported.
    stranger_said: bool,
    /// Where `gracewrap --restart` asks (with `--pid-file`).
    control: Option<Control>,
    /// The `--restart` commands waiting, each with the first generation
    /// whose outcome answers it.
    waiters: Vec<(std::os::fd::OwnedFd, u64)>,
    /// The uid the generations run as, with `--user`.
    generations_uid: Option<u32>,
    /// When `--stop-delay` ends, during a shutdown.
    stop_at: Option<Instant>,
    /// The inodes of the sockets, to see a generation wait on them.
    inodes: Vec<u64>,
    /// A generation has sent READY=1: `--ready auto` waits for READY=1
    /// alone from then on.
    notifies: bool,
    last_look: Instant,
    /// The children gracewrap had when it started (forked by the shell
    /// that exec'd it): never taken for leftovers.
    inherited: Vec<i32>,
    /// The address of each socket that was listening at the start (see
    /// `relisten`).
    listening: Vec<Option<rustix::net::SocketAddrAny>>,
    /// The fd store (`--fdstore`), newest first, as systemd keeps it.
    store: Vec<Stored>,
    /// Stored fds are kept at this number or above: above every place
    /// a child gets them at (see [`Setup::extra`](crate::sys::process::Setup)).
    store_floor: RawFd,
    /// The watchdog interval our own service manager asked for
    /// (`WATCHDOG_USEC` for us), and when WATCHDOG=1 last went up.
    up_watchdog: Option<Duration>,
    up_pinged: Instant,
    /// WATCHDOG=1 is being withheld upward (said once when it starts).
    up_withheld: bool,
    /// RELOADING=1 went upward, and READY=1 has not followed yet.
    reloading: bool,
}

/// Supervises until the last generation is gone; returns its status.
/// The pid file (if gracewrap wrote it) and the handoff's socket files go
/// on every way out, when the supervisor is dropped.
pub fn run(
    args: &Args,
    sup: &Supervise,
    handoff: Handoff,
    target: Option<&Target>,
) -> Result<Status> {
    start(args, sup, handoff, target).and_then(|mut s| s.run())
}

fn start<'a>(
    args: &'a Args,
    sup: &'a Supervise,
    mut handoff: Handoff,
    target: Option<&Target>,
) -> Result<Supervisor<'a>> {
    resident::check(args, target)?;
    if sup.fdstore > 0 {
        // Each stored fd is held above the places the children get them
        // at: twice the store.
        handoff
            .reserve_more(2 * sup.fdstore as u64)
            .map_err(|most| {
                anyhow!(
                    "--fdstore {} needs {} more file descriptors, but RLIMIT_NOFILE allows only {most}",
                    sup.fdstore,
                    2 * sup.fdstore
                )
            })?;
    }
    handoff.place()?;
    if super::report_sockets(args) {
        handoff.report();
    }
    let terminal = Terminal::at_start();
    // Under a terminal, SIGTTOU is ignored, not passed on (see Terminal).
    let ignore_ttou = terminal.is_some() && sup.restart_signal != libc::SIGTTOU;
    let mut caught = vec![sup.restart_signal, libc::SIGTERM, libc::SIGCHLD];
    caught.extend(
        forwarded(sup.restart_signal)
            .into_iter()
            .filter(|&s| !(ignore_ttou && s == libc::SIGTTOU)),
    );
    let mut watch = resident::watch(&caught)?;
    if ignore_ttou {
        watch.ignore(libc::SIGTTOU);
    }
    // The generations' user owns the notification socket's directory.
    let owner = target.map(|t| {
        let uid = t.uid.unwrap_or(rustix::process::geteuid().as_raw());
        (uid, t.gid)
    });
    let notify = Listener::new(owner)
        .map_err(|e| anyhow!("cannot create the notification socket: {}", reason(e)))?;
    if args.verbose {
        let value = crate::msg::quote(&notify.env_value);
        if notify.is_private() {
            say(format_args!("notification socket: {value}"));
        } else {
            say(format_args!(
                "notification socket: {value}, an abstract name (no directory could be made for a private one); notifications from processes outside the generations are ignored"
            ));
        }
    }
    let upstream = Upstream::from_env();
    // sd_watchdog_enabled(3): only with somewhere to send WATCHDOG=1.
    let up_watchdog = upstream.as_ref().and_then(|_| {
        let var = |name| std::env::var_os(name);
        let (usec, pid) = (var("WATCHDOG_USEC"), var("WATCHDOG_PID"));
        notice::watchdog_enabled(
            usec.as_ref().map(|v| v.as_encoded_bytes()),
            pid.as_ref().map(|v| v.as_encoded_bytes()),
            std::process::id(),
        )
    });
    if let Some(every) = up_watchdog
        && args.verbose
    {
        say(format_args!(
            "the service manager's watchdog is {}: WATCHDOG=1 goes up every {} while a generation serves",
            Dur(every),
            Dur(every / 2)
        ));
    }
    if std::process::id() != 1 {
        // Orphans of PROGRAM come to us (and get reaped), as under PID 1.
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    }
    let pid_file = match &sup.pid_file {
        Some(path) => Some(PidFile::write(path, std::process::id())?),
        None => None,
    };
    // gracewrap keeps the RLIMIT_NOFILE it raised; each generation gets
    // the caller's back (Spawn::nofile).
    let names = handoff.names();
    let store_floor = FIRST_FD + (handoff.len() + sup.fdstore) as RawFd;
    let mut s = Supervisor {
        args,
        sup,
        terminal,
        handoff,
        names,
        _pid_file: pid_file,
        watch,
        notify,
        upstream,
        gens: Vec::new(),
        current: None,
        candidate: None,
        pending_restart: false,
        next_id: 1,
        announced: false,
        shutting_down: false,
        status: None,
        last_exit: None,
        respawn_at: None,
        leftovers: Vec::new(),
        backoff: BACKOFF_FIRST,
        stranger_said: false,
        control: None,
        waiters: Vec::new(),
        generations_uid: target.and_then(|t| t.uid),
        stop_at: None,
        inherited: own_children(),
        inodes: Vec::new(),
        notifies: false,
        last_look: Instant::now(),
        listening: Vec::new(),
        store: Vec::new(),
        store_floor,
        up_watchdog,
        up_pinged: Instant::now(),
        up_withheld: false,
        reloading: false,
    };
    if sup.pid_file.is_some() {
        match Control::bind() {
            Ok(control) => s.control = Some(control),
            Err(e) => say(format_args!(
                "gracewrap --restart cannot reach this supervisor: its control socket: {}",
                reason(e)
            )),
        }
    }
    s.inodes = s
        .handoff
        .fds()
        .filter_map(|fd| rustix::fs::fstat(fd).ok())
        .map(|st| st.st_ino)
        .collect();
    s.listening = s
        .handoff
        .fds()
        .map(|fd| {
            rustix::net::sockopt::socket_acceptconn(fd)
                .unwrap_or(false)
                .then(|| rustix::net::getsockname(fd).ok())
                .flatten()
        })
        .collect();
    let id = s.spawn()?;
    s.current = Some(id);
    Ok(s)
}

fn describe(status: WaitStatus) -> String {
    match status.terminating_signal() {
        Some(sig) => format!("was killed by {}", signal_name(sig)),
        None => format!("exited with status {}", status.exit_status().unwrap_or(0)),
    }
}

impl Supervisor<'_> {
    fn generation(&self, id: u64) -> Option<&Gen> {
        self.gens.iter().find(|g| g.id == id)
    }

    fn generation_mut(&mut self, id: u64) -> Option<&mut Gen> {
        self.gens.iter_mut().find(|g| g.id == id)
    }

    fn label(&self, id: u64) -> String {
        match self.generation(id) {
            Some(g) => format!("generation {} (pid {})", g.id, g.pid),
            None => format!("generation {id}"),
        }
    }

    fn serving(&self) -> String {
        self.current.map_or("nothing".into(), |c| self.label(c))
    }

    /// A message to our own service manager, if we have one: best effort
    /// (see [`Upstream::send`]); a dropped one is said with -v.
    fn up(&self, text: &str) {
        if let Some(u) = &self.upstream
            && let Err(e) = u.send(text)
            && self.args.verbose
        {
            let first = text.lines().next().unwrap_or_default();
            say(format_args!(
                "not told to the service manager ({}): {}",
                reason(e),
                crate::msg::quote(OsStr::new(first))
            ));
        }
    }

    /// READY=1 and `rest` to our own service manager: the end of our start
    /// or of a restart.
    fn up_ready(&mut self, rest: &str) {
        self.reloading = false;
        self.up(&format!("READY=1\n{rest}"));
    }

    /// `gracewrap --restart` requests: a few per wake-up, each from root,
    /// our own user or the generations' user (SO_PEERCRED), each waiting
    /// for the outcome of the restart it asked for (or of the one after
    /// the restart in progress).
    fn on_control(&mut self) {
        for _ in 0..MAX_WAITERS {
            let Some(req) = self.control.as_ref().and_then(Control::accept) else {
                return;
            };
            let me = rustix::process::geteuid().as_raw();
            if req.uid != 0 && req.uid != me && Some(req.uid) != self.generations_uid {
                control::answer(
                    &req.conn,
                    &format!("refused uid {} may not restart this supervisor", req.uid),
                );
                continue;
            }
            if self.shutting_down {
                control::answer(&req.conn, "failed gracewrap is stopping");
                continue;
            }
            if self.waiters.len() >= MAX_WAITERS {
                control::answer(&req.conn, "failed too many restart requests are waiting");
                continue;
            }
            if self.args.verbose {
                say(format_args!(
                    "restart requested by pid {} (gracewrap --restart)",
                    req.pid
                ));
            }
            let first = self.candidate.map_or(self.next_id, |c| c + 1);
            self.waiters.push((req.conn, first));
            self.on_restart_signal();
        }
    }

    /// Tells the `--restart` commands waiting for generation `id` (or an
    /// earlier one) how it went.
    fn answer(&mut self, id: u64, line: &str) {
        self.waiters.retain(|(conn, first)| {
            let done = *first <= id;
            if done {
                control::answer(conn, line);
            }
            !done
        });
    }

    /// Whether a starting generation is looked at for waiting on the
    /// sockets.
    fn detecting(&self) -> bool {
        match self.sup.ready {
            Ready::Auto => !self.notifies,
            Ready::Listen => true,
            Ready::Notify | Ready::Delay(_) => false,
        }
    }

    fn ready_delay(&self) -> Duration {
        match self.sup.ready {
            Ready::Delay(d) => d,
            _ => Duration::ZERO,
        }
    }

    /// What a starting generation is waited for, for messages.
    fn awaited(&self) -> String {
        match self.sup.ready {
            Ready::Auto if self.notifies => {
                "READY=1 (an earlier generation sent it: --ready auto waits for it alone now)"
                    .into()
            }
            Ready::Auto => "READY=1 or for it to wait for connections on the sockets".into(),
            Ready::Notify => "READY=1".into(),
            Ready::Listen => "it to wait for connections on the sockets".into(),
            Ready::Delay(d) => format!("READY=1 or {}", Dur(d)),
        }
    }

    /// Why a generation that timed out was not ready, for messages.
    fn not_ready_because(&self) -> String {
        match self.sup.ready {
            Ready::Auto if self.notifies => {
                "no READY=1, which an earlier generation sent; --ready listen counts it ready once it waits for connections".into()
            }
            Ready::Auto | Ready::Listen => {
                "no READY=1, and not seen waiting for connections on the sockets: see --ready in gracewrap(1)".into()
            }
            Ready::Notify => "no READY=1 on NOTIFY_SOCKET".into(),
            Ready::Delay(_) => "no READY=1".into(),
        }
    }

    /// A generation that called shutdown(2) on a shared listener stopped
    /// it for every generation to come (the socket is one, in every
    /// process): each listener that was listening when gracewrap started
    /// and no longer is listens again, and gracewrap says so. (Its backlog
    /// is the kernel's maximum, gracewrap's default.)
    fn relisten(&self) {
        use rustix::net::{bind, listen, sockopt::socket_acceptconn};
        for (fd, was) in self.handoff.fds().zip(&self.listening) {
            let Some(addr) = was else { continue };
            if socket_acceptconn(fd).unwrap_or(true) {
                continue;
            }
            let what = format!(
                "{} (fd {})",
                crate::socket::describe(fd),
                std::os::fd::AsRawFd::as_raw_fd(fd)
            );
            // shutdown(2) also lets go of a port the kernel chose (port
            // 0), though getsockname(2) still shows it: bound again to the
            // address it had, or listen(2) would pick another port. EINVAL:
            // it is still bound.
            let again = match bind(fd, addr) {
                Ok(()) | Err(rustix::io::Errno::INVAL) => listen(fd, i32::MAX),
                Err(e) => Err(e),
            };
            match again {
                Ok(()) => say(format_args!(
                    "{what} had stopped listening (shut down by a generation?): listening on it again"
                )),
                Err(e) => say(format_args!(
                    "{what} has stopped listening, and cannot listen again: {}",
                    reason(e)
                )),
            }
        }
    }

    /// Whether each generation leads a process group of its own, which
    /// gets every signal meant for the generation: `--process-group`, or
    /// under a terminal.
    fn new_group(&self) -> bool {
        self.sup.process_group || self.terminal.is_some()
    }

    /// Starts a new generation; returns its id.
    fn spawn(&mut self) -> Result<u64> {
        self.relisten();
        let notify = self.notify.env_value.clone();
        let watchdog: Option<OsString> = self
            .sup
            .watchdog
            .map(|d| d.as_micros().max(1).to_string().into());
        let mut env: Vec<(&str, &OsStr)> = vec![(NOTIFY_SOCKET, &notify)];
        if let Some(usec) = &watchdog {
            env.push((WATCHDOG_VAR, usec));
        }
        // The fd store follows the sockets, named as stored.
        let extra: Vec<RawFd> = self.store.iter().map(|s| s.fd.as_raw_fd()).collect();
        let names = if self.store.is_empty() {
            self.names.clone()
        } else {
            let sockets = (self.handoff.len() > 0).then_some(self.names.as_str());
            sockets
                .into_iter()
                .chain(self.store.iter().map(|s| s.name.as_str()))
                .collect::<Vec<&str>>()
                .join(":")
        };
        let how = Spawn {
            count: self.handoff.len() + extra.len(),
            extra: &extra,
            names: &names,
            env: &env,
            new_group: self.new_group(),
            terminal_from: self.terminal.as_ref().map_or([0; 2], |t| [t.ours, t.given]),
            nofile: self.handoff.original_limit(),
        };
        let pid = resident::spawn(self.args, &self.watch, &how).map_err(|e| {
            anyhow!(
                "cannot start {}: {}",
                program_name(self.args),
                io_reason(&e)
            )
        })?;
        if let Some(t) = &mut self.terminal
            && terminal::foreground() == Some(pid)
        {
            t.given = pid;
        }
        let id = self.next_id;
        self.next_id += 1;
        let now = Instant::now();
        self.gens.push(Gen {
            id,
            pid,
            started: now,
            state: State::Starting,
            watchdog: self.sup.watchdog,
            watchdog_due: None,
            ready_by: now + self.sup.ready_timeout,
            warned: false,
        });
        if self.args.verbose {
            say(format_args!("started {}", self.label(id)));
        }
        Ok(id)
    }

    /// kill(2) to a generation, or to its process group when it leads
    /// one ([`Supervisor::new_group`]).
    fn signal(&self, pid: i32, sig: i32) {
        kill(pid, sig, self.new_group());
    }

    /// Sends the stop signal to a generation (SIGKILL follows later), or
    /// SIGKILL at once with `--stop-timeout 0`.
    fn stop(&mut self, id: u64) {
        let (sig, timeout) = (self.sup.stop_signal, self.sup.stop_timeout);
        let Some(g) = self.generation_mut(id) else {
            return;
        };
        if matches!(g.state, State::Stopping { .. } | State::Killed) {
            return;
        }
        let (state, sig) = if timeout.is_zero() {
            (State::Killed, libc::SIGKILL)
        } else {
            (
                State::Stopping {
                    kill_at: Instant::now() + timeout,
                },
                sig,
            )
        };
        g.state = state;
        let pid = g.pid;
        self.signal(pid, sig);
    }

    /// A restart: tells the service manager we are reloading (READY=1
    /// follows when it is over, however it ends), then starts a generation.
    fn start_restart(&mut self) {
        if self.shutting_down {
            return;
        }
        self.up(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        self.reloading = true;
        self.start_generation();
        // Here, not at the signal, so that a queued restart says so too.
        if let Some(id) = self.candidate {
            say(format_args!(
                "restarting: started {}; waiting for {} (up to {})",
                self.label(id),
                self.awaited(),
                Dur(self.sup.ready_timeout)
            ));
        }
    }

    /// Starts a new generation: the current one if there is none (after a
    /// crash with --restart-on-exit), else the candidate.
    fn start_generation(&mut self) {
        match self.spawn() {
            Ok(id) => {
                if self.current.is_none() {
                    self.current = Some(id);
                } else {
                    self.candidate = Some(id);
                }
            }
            Err(e) if self.current.is_none() => {
                // Nothing serves: keep trying (fork can fail for a while).
                say(format_args!("{e:#}; trying again in {}", Dur(self.backoff)));
                self.respawn_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => {
                say(format_args!("restart failed: {e:#}"));
                self.answer(self.next_id, &format!("failed {e:#}"));
                self.up_ready(&format!("STATUS=restart failed: {e:#}"));
            }
        }
    }

    /// Starting -> Ready (`why`: what showed it, for the message). A
    /// ready candidate replaces the current generation, which gets the
    /// stop signal; that ends a restart, which is always said.
    fn on_ready(&mut self, id: u64, why: &str) {
        let Some(g) = self.generation_mut(id) else {
            return;
        };
        if g.state != State::Starting {
            return;
        }
        g.state = State::Ready;
        // The watchdog counts from now (systemd arms it at READY=1 too).
        g.watchdog_due = g
            .watchdog
            .and_then(|every| Instant::now().checked_add(every));
        let pid = g.pid;
        let label = self.label(id);
        self.answer(id, &format!("ok {id} {pid}"));
        if self.candidate == Some(id) {
            self.candidate = None;
            let old = self.current.replace(id);
            if let Some(old) = old {
                say(format_args!(
                    "{label} is ready ({why}): it serves now; stopping {}",
                    self.label(old)
                ));
                self.stop(old);
            }
            self.up_ready(&format!("STATUS=serving: {label}"));
            if std::mem::take(&mut self.pending_restart) {
                self.start_restart();
            }
        } else if self.current == Some(id) {
            if self.args.verbose {
                say(format_args!("{label} is ready ({why})"));
            }
            if !self.announced {
                self.announced = true;
                self.up_ready(&format!(
                    "MAINPID={}\nSTATUS=serving: {label}",
                    std::process::id()
                ));
            } else if self.reloading {
                // A restart whose candidate took over when the generation
                // it was to replace went away.
                self.up_ready(&format!("STATUS=serving: {label}"));
            } else {
                self.up(&format!("STATUS=serving: {label}"));
            }
        }
    }

    /// The candidate is gone (it exited, or was not ready in time): the
    /// current generation keeps serving, and a queued restart starts.
    fn candidate_failed(&mut self, why: &str) {
        let id = self.candidate.take().unwrap_or(self.next_id);
        self.answer(
            id,
            &format!("failed {why}; {} keeps serving", self.serving()),
        );
        // It took the terminal's foreground: back to the one serving.
        if let Some(pid) = self.current.and_then(|c| self.generation(c)).map(|g| g.pid)
            && let Some(t) = &mut self.terminal
        {
            t.hand_to(pid);
        }
        self.up_ready(&format!("STATUS=restart failed: {why}"));
        if std::mem::take(&mut self.pending_restart) {
            self.start_restart();
        }
    }

    /// The generation `pid` belongs to: its main process, or a descendant
    /// of it (a program that notifies from a worker).
    fn owner(&self, pid: i32) -> Option<u64> {
        let mut p = pid;
        for _ in 0..32 {
            if let Some(g) = self.gens.iter().find(|g| g.pid == p) {
                return Some(g.id);
            }
            p = parent_of(p)?;
            if p <= 1 {
                return None;
            }
        }
        None
    }

    /// Handles what the generations sent: at most [`crate::sys::notify::BATCH`]
    /// datagrams, so a flood waits its turn behind signals and timers.
    /// Messages from processes that are not in a generation are dropped
    /// (the first one is said with -v), their fds closed.
    /// Returns how many datagrams were read.
    fn on_notify(&mut self) -> usize {
        let mut got = Vec::new();
        let read = self
            .notify
            .read(|d| got.push((d.pid, d.bytes.to_vec(), d.truncated, d.fds)));
        let mut stranger = None;
        // Each sender's generation is looked up once per batch: a flood
        // from one process costs one walk up /proc per batch.
        let mut owners: Vec<(i32, Option<u64>)> = Vec::new();
        for (pid, bytes, truncated, fds) in got {
            let owner = match owners.iter().find(|(p, _)| *p == pid) {
                Some(&(_, owner)) => owner,
                None => {
                    let owner = self.owner(pid);
                    owners.push((pid, owner));
                    owner
                }
            };
            let Some(id) = owner else {
                stranger = Some(pid);
                continue;
            };
            match notice::parse(&bytes, truncated) {
                Ok(n) => self.on_notice(id, &n, fds),
                Err(why) => self.complain(
                    id,
                    &format!("sent a notification that is ignored as a whole: {why}"),
                ),
            }
        }
        if let Some(pid) = stranger
            && !std::mem::replace(&mut self.stranger_said, true)
            && self.args.verbose
        {
            say(format_args!(
                "ignored a notification from pid {pid}, which is not in a generation (not said again)"
            ));
        }
        read
    }

    /// Says something wrong about what generation `id` sent, once per
    /// generation: a program that repeats the mistake cannot flood the log.
    fn complain(&mut self, id: u64, what: &str) {
        let label = self.label(id);
        if let Some(g) = self.generation_mut(id)
            && !std::mem::replace(&mut g.warned, true)
        {
            say(format_args!(
                "{label} {what} (no more is said about its notifications)"
            ));
        }
    }

    /// One message from generation `id`, with the fds sent along, in
    /// systemd's order (service_notify_message): READY=1, STATUS=,
    /// ERRNO=, BUSERROR=, EXTEND_TIMEOUT_USEC=, WATCHDOG=,
    /// WATCHDOG_USEC=, the fd store.
    fn on_notice(&mut self, id: u64, n: &Notice<'_>, fds: Vec<OwnedFd>) {
        if !n.invalid.is_empty() {
            self.complain(
                id,
                &format!(
                    "sent an invalid {}: ignored",
                    n.invalid
                        .iter()
                        .map(|k| format!("{k}="))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if n.ready && self.sup.ready != Ready::Listen {
            self.notifies = true;
            self.on_ready(id, "READY=1");
        }
        if self.current == Some(id) {
            // What systemd would show for the service, from the one serving.
            let label = self.label(id);
            let mut relay = Vec::new();
            relay.extend(n.status.map(|t| format!("STATUS={label}: {t}")));
            relay.extend(n.errno.map(|e| format!("ERRNO={e}")));
            relay.extend(n.bus_error.map(|e| format!("BUSERROR={e}")));
            if !relay.is_empty() {
                self.up(&relay.join("\n"));
            }
        }
        if let Some(u) = n.extend_usec {
            self.extend(id, u);
        }
        let now = Instant::now();
        if let Some(g) = self.generation_mut(id) {
            if let Some(u) = n.watchdog_usec {
                // As systemd's WATCHDOG_USEC= override: a new interval,
                // counted from now; 0 turns the watchdog off.
                g.watchdog = usec(u);
            }
            if (n.watchdog_ping || n.watchdog_usec.is_some()) && g.state == State::Ready {
                g.watchdog_due = g.watchdog.and_then(|every| now.checked_add(every));
            }
        }
        let mut fds = fds;
        if n.fdstore_remove {
            match n.fdname {
                Some(name) => self.unstore(id, name),
                None => self.complain(id, "sent FDSTOREREMOVE=1 without a valid FDNAME=: ignored"),
            }
        } else if n.fdstore {
            fds = self.keep(id, fds, n.fdname, !n.no_fdpoll);
        }
        if !fds.is_empty() && self.args.verbose {
            say(format_args!(
                "{} sent {} fd(s) without FDSTORE=1, or more than the store takes: closed",
                self.label(id),
                fds.len()
            ));
        }
        drop(fds);
        if n.watchdog_trigger {
            self.replace_stuck(id, "sent WATCHDOG=trigger");
        }
    }

    /// `EXTEND_TIMEOUT_USEC=` from generation `id`: whatever deadline it
    /// is under (ready, stop, watchdog) moves to `usec` from now, if that
    /// is later, as systemd's service_extend_timeout() does; passed on
    /// upward where systemd's own timeout for gracewrap runs meanwhile
    /// (its start, a restart, its stop).
    fn extend(&mut self, id: u64, usec_value: u64) {
        let Some(by) = usec(usec_value) else { return };
        let Some(to) = Instant::now().checked_add(by) else {
            return;
        };
        let (announced, candidate, current) = (self.announced, self.candidate, self.current);
        let shutting_down = self.shutting_down;
        let Some(g) = self.generation_mut(id) else {
            return;
        };
        let relay = match &mut g.state {
            State::Starting => {
                g.ready_by = g.ready_by.max(to);
                candidate == Some(id) || (current == Some(id) && !announced)
            }
            State::Stopping { kill_at } => {
                *kill_at = (*kill_at).max(to);
                shutting_down
            }
            State::Ready => {
                if let Some(due) = &mut g.watchdog_due {
                    *due = (*due).max(to);
                }
                false
            }
            State::Killed => false,
        };
        if relay {
            self.up(&format!("EXTEND_TIMEOUT_USEC={usec_value}"));
        }
    }

    /// Keeps the fds generation `id` sent with `FDSTORE=1`, newest first,
    /// as systemd's service_add_fd_store(): up to `--fdstore` of them, an
    /// fd already stored (the same open file) only once. Returns those it
    /// did not keep, to be closed.
    fn keep(&mut self, id: u64, fds: Vec<OwnedFd>, name: Option<&str>, poll: bool) -> Vec<OwnedFd> {
        let max = self.sup.fdstore;
        if max == 0 {
            if !fds.is_empty() {
                self.complain(
                    id,
                    "sent fds with FDSTORE=1, but the fd store is off (--fdstore 0): closed",
                );
            }
            return fds;
        }
        let name = name.unwrap_or(notice::STORED_NAME);
        let mut names_len = self.names_len();
        let mut rest = fds.into_iter();
        for fd in rest.by_ref() {
            // systemd's order: the limit first, then an fd already stored.
            let full = self.store.len() >= max;
            if !full
                && self
                    .store
                    .iter()
                    .any(|s| crate::sys::raw::same_file(s.fd.as_fd(), fd.as_fd()))
            {
                continue;
            }
            let refused = if full {
                Some(format!("the fd store is full (--fdstore {max})"))
            } else if names_len + 1 + name.len() > MAX_NAMES {
                Some(format!(
                    "their names would make LISTEN_FDNAMES longer than the {MAX_NAMES} bytes an environment string can hold"
                ))
            } else {
                None
            };
            if let Some(why) = refused {
                let left = 1 + rest.len();
                self.complain(
                    id,
                    &format!("sent fds with FDSTORE=1, but {why}: {left} closed"),
                );
                return std::iter::once(fd).chain(rest).collect();
            }
            let fd = match rustix::io::fcntl_dupfd_cloexec(&fd, self.store_floor) {
                Ok(high) => high,
                Err(e) => {
                    say(format_args!(
                        "cannot store an fd from {}: {}",
                        self.label(id),
                        reason(e)
                    ));
                    continue;
                }
            };
            if self.args.verbose {
                say(format_args!(
                    "stored {} as {} for the next generations (from {}; {} of {max} stored)",
                    what_fd(&fd),
                    crate::msg::quote(OsStr::new(name)),
                    self.label(id),
                    self.store.len() + 1
                ));
            }
            names_len += 1 + name.len();
            self.store.insert(
                0,
                Stored {
                    fd,
                    name: name.to_string(),
                    poll,
                },
            );
        }
        Vec::new()
    }

    /// The length of `LISTEN_FDNAMES`'s value with the fd store.
    fn names_len(&self) -> usize {
        self.names.len() + self.store.iter().map(|s| 1 + s.name.len()).sum::<usize>()
    }

    /// `FDSTOREREMOVE=1`: every stored fd named `name` is closed.
    fn unstore(&mut self, id: u64, name: &str) {
        let before = self.store.len();
        self.store.retain(|s| s.name != name);
        if self.args.verbose {
            say(format_args!(
                "removed {} stored fd(s) named {} (FDSTOREREMOVE=1 from {})",
                before - self.store.len(),
                crate::msg::quote(OsStr::new(name)),
                self.label(id)
            ));
        }
    }

    /// Generation `id` is stuck (its watchdog ran out, or it said so with
    /// WATCHDOG=trigger): replaced as a restart replaces a generation,
    /// but without waiting, since it serves no more. A new generation
    /// starts (or the one a restart had started takes over) and the stuck
    /// one gets the stop signal, then SIGKILL. A candidate that is stuck
    /// is a failed restart; one already stopping is left to its stop.
    fn replace_stuck(&mut self, id: u64, why: &str) {
        let label = self.label(id);
        if self.current == Some(id) {
            if self.shutting_down {
                say(format_args!("watchdog: {label} {why}; stopping it"));
                self.stop(id);
                return;
            }
            self.stop(id);
            self.current = None;
            if let Some(next) = self.candidate.take() {
                say(format_args!(
                    "watchdog: {label} {why}; stopping it, {} (started by the restart in progress) takes over",
                    self.label(next)
                ));
                self.current = Some(next);
            } else {
                self.start_generation();
                say(format_args!(
                    "watchdog: {label} {why}; stopping it, {} takes over",
                    self.serving()
                ));
            }
            self.up(&format!("STATUS=watchdog: {label} {why}; replaced"));
        } else if self.candidate == Some(id)
            && self
                .generation(id)
                .is_some_and(|g| g.state == State::Starting)
        {
            say(format_args!(
                "watchdog: {label} {why} before it was ready; stopping it, {} keeps serving",
                self.serving()
            ));
            self.stop(id);
            self.candidate_failed(&format!("{label} {why}"));
        }
    }

    /// Why WATCHDOG=1 must not go up now, if it must not: nothing
    /// serves, or the generation serving is stuck (its own watchdog ran
    /// out) or not ready in time. Before gracewrap's own READY=1,
    /// systemd's start timeout covers a slow first generation.
    fn unhealthy(&self) -> Option<String> {
        let now = Instant::now();
        let Some(g) = self.current.and_then(|c| self.generation(c)) else {
            return Some("no generation serves".into());
        };
        let label = self.label(g.id);
        match g.state {
            State::Ready => g
                .watchdog_due
                .filter(|&due| now >= due)
                .map(|_| format!("{label} is stuck (its watchdog ran out)")),
            State::Starting if !self.announced || now < g.ready_by => None,
            State::Starting => Some(format!("{label} is not ready in time")),
            State::Stopping { .. } | State::Killed => Some(format!("{label} is stopping")),
        }
    }

    fn on_restart_signal(&mut self) {
        if self.shutting_down {
            return;
        }
        if self.candidate.is_some() {
            if !self.pending_restart && self.args.verbose {
                say(format_args!("restart requested during a restart: queued"));
            }
            self.pending_restart = true;
            return;
        }
        self.start_restart();
    }

    /// SIGTERM: stop everything, after `--stop-delay` if a generation
    /// serves (a second SIGTERM cuts the delay short). The service
    /// manager hears STOPPING=1 at once, so that load balancers drain
    /// while the generation still answers.
    fn shutdown(&mut self) {
        if self.shutting_down {
            if self.stop_at.take().is_some() {
                say(format_args!("SIGTERM again: stopping now"));
                self.stop_all();
            }
            return;
        }
        self.shutting_down = true;
        self.pending_restart = false;
        self.respawn_at = None;
        self.answer(u64::MAX, "failed gracewrap is stopping");
        self.up("STOPPING=1");
        // A restart in progress is abandoned: its generation never served.
        if let Some(id) = self.candidate.take() {
            self.stop(id);
        }
        let delay = self.sup.stop_delay;
        if !delay.is_zero() && self.current.is_some() {
            say(format_args!(
                "stopping in {} (--stop-delay); {} serves meanwhile; SIGTERM again stops at once",
                Dur(delay),
                self.serving()
            ));
            self.stop_at = Some(Instant::now() + delay);
            return;
        }
        self.stop_all();
    }

    fn stop_all(&mut self) {
        let ids: Vec<u64> = self.gens.iter().map(|g| g.id).collect();
        for id in ids {
            self.stop(id);
        }
    }

    fn reap(&mut self) {
        let mut exited = Vec::new();
        resident::reap(|pid, status| exited.push((pid, status)));
        // What a generation sent before it exited is queued by now: read
        // while it is still known, or it would count as a stranger's (a
        // READY=1, or fds stored just before the exit, lost). Bounded: a
        // flood from others cannot hold the loop here.
        if exited
            .iter()
            .any(|(pid, _)| self.gens.iter().any(|g| g.pid == *pid))
        {
            for _ in 0..16 {
                if self.on_notify() < crate::sys::notify::BATCH {
                    break;
                }
            }
        }
        for (pid, status) in exited {
            self.inherited.retain(|&p| p != pid);
            // Not a generation: a re-parented orphan, reaped; nothing else.
            if let Some(pos) = self.gens.iter().position(|g| g.pid == pid) {
                let g = self.gens.remove(pos);
                self.on_exit(g, status);
            }
        }
    }

    fn on_exit(&mut self, g: Gen, status: WaitStatus) {
        let label = format!("generation {} (pid {})", g.id, g.pid);
        if self.candidate == Some(g.id) {
            say(format_args!(
                "{label} {} before it was ready; {} keeps serving",
                describe(status),
                self.serving()
            ));
            self.candidate_failed(&format!("{label} {}", describe(status)));
        } else if self.current == Some(g.id) {
            self.current = None;
            self.last_exit = Some(Status::of_wait(status));
            if self.shutting_down {
                self.status = Some(Status::of_wait(status));
            } else if self.sup.restart_on_exit {
                if g.started.elapsed() >= STABLE_AFTER {
                    self.backoff = BACKOFF_FIRST;
                }
                say(format_args!(
                    "{label} {}; starting a new generation in {}",
                    describe(status),
                    Dur(self.backoff)
                ));
                if let Some(next) = self.candidate.take() {
                    self.current = Some(next);
                } else {
                    self.respawn_at = Some(Instant::now() + self.backoff);
                }
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            } else {
                if self.args.verbose {
                    say(format_args!("{label} {}; stopping", describe(status)));
                }
                self.status = Some(Status::of_wait(status));
                self.shutdown();
            }
        } else {
            if self.args.verbose {
                say(format_args!("{label} {}", describe(status)));
            }
            // A replaced generation is gone: what it left behind is ours
            // now, and is stopped the same way.
            self.stop_leftovers(self.strays(), Instant::now());
        }
    }

    /// Every pending deadline, in the order they are handled when several
    /// are due at once. The one source of truth for the poll timeout
    /// ([`Supervisor::next_deadline`]) and the timers ([`Supervisor::on_timers`]).
    fn deadlines(&self, now: Instant) -> Vec<(Instant, Timer)> {
        let mut out = Vec::new();
        if self.detecting() {
            // Often at first (a restart should complete within a moment of
            // the program's own start-up), then less.
            let young = self.gens.iter().any(|g| {
                g.state == State::Starting
                    && now.saturating_duration_since(g.started) < LOOK_FAST_FOR
            });
            if self.gens.iter().any(|g| g.state == State::Starting) {
                let every = if young { LOOK_FAST } else { LOOK_SLOW };
                out.push((self.last_look + every, Timer::Look));
            }
        }
        if let Ready::Delay(delay) = self.sup.ready {
            out.extend(
                self.gens
                    .iter()
                    .filter(|g| g.state == State::Starting)
                    .map(|g| (g.started + delay, Timer::ReadyDelay(g.id))),
            );
        }
        if let Some(g) = self.candidate.and_then(|id| self.generation(id))
            && g.state == State::Starting
        {
            out.push((g.ready_by, Timer::ReadyTimeout(g.id)));
        }
        out.extend(
            self.gens
                .iter()
                .filter_map(|g| match (g.state, g.watchdog_due) {
                    (State::Ready, Some(due)) => Some((due, Timer::Watchdog(g.id))),
                    _ => None,
                }),
        );
        if let Some(every) = self.up_watchdog {
            out.push((self.up_pinged + every / 2, Timer::WatchdogUp));
        }
        out.extend(self.gens.iter().filter_map(|g| match g.state {
            State::Stopping { kill_at } => Some((kill_at, Timer::Kill(g.id))),
            _ => None,
        }));
        out.extend(self.respawn_at.map(|t| (t, Timer::Respawn)));
        out.extend(self.stop_at.map(|t| (t, Timer::StopDelay)));
        if let Some(t) = self.leftovers.iter().map(|(_, t)| *t).min() {
            // Due at the first kill time; woken before that to look for
            // leftovers again (not all are ours to hear of by SIGCHLD).
            out.push((t, Timer::Leftovers));
            out.push(((now + LEFTOVER_POLL).min(t), Timer::Leftovers));
        }
        out
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.deadlines(now).into_iter().map(|(t, _)| t).min()
    }

    /// Handles every deadline that is due.
    fn on_timers(&mut self, now: Instant) {
        if !self.leftovers.is_empty() {
            // Forget the leftovers that are gone (and reaped).
            let here = own_children();
            self.leftovers.retain(|(pid, _)| here.contains(pid));
        }
        let mut due: Vec<Timer> = self
            .deadlines(now)
            .into_iter()
            .filter(|(t, _)| now >= *t)
            .map(|(_, timer)| timer)
            .collect();
        due.dedup();
        for timer in due {
            self.fire(timer);
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::ReadyDelay(id) => {
                let why = format!("{} after its start", Dur(self.ready_delay()));
                self.on_ready(id, &why)
            }
            Timer::StopDelay => {
                self.stop_at = None;
                self.stop_all();
            }
            Timer::Look => {
                self.last_look = Instant::now();
                let starting: Vec<(u64, i32)> = self
                    .gens
                    .iter()
                    .filter(|g| g.state == State::Starting)
                    .map(|g| (g.id, g.pid))
                    .collect();
                for (id, pid) in starting {
                    if let Some(w) = waiting::find(pid, &self.inodes) {
                        self.on_ready(id, &w.to_string());
                    }
                }
            }
            Timer::ReadyTimeout(id) => {
                // Ready by a delay that fell due in the same pass: fine.
                if self.candidate != Some(id)
                    || self
                        .generation(id)
                        .is_none_or(|g| g.state != State::Starting)
                {
                    return;
                }
                let label = self.label(id);
                let extended = self
                    .generation(id)
                    .filter(|g| g.ready_by > g.started + self.sup.ready_timeout)
                    .map_or(String::new(), |g| {
                        format!(
                            ", extended to {} by EXTEND_TIMEOUT_USEC=",
                            Dur(g.ready_by - g.started)
                        )
                    });
                say(format_args!(
                    "{label} was not ready within {}{extended} ({}); stopping it, {} keeps serving",
                    Dur(self.sup.ready_timeout),
                    self.not_ready_because(),
                    self.serving()
                ));
                self.stop(id);
                self.candidate_failed(&format!("{label} not ready"));
            }
            Timer::Kill(id) => {
                let Some(g) = self.generation_mut(id) else {
                    return;
                };
                if !matches!(g.state, State::Stopping { .. }) {
                    return;
                }
                g.state = State::Killed;
                let pid = g.pid;
                if self.args.verbose {
                    say(format_args!(
                        "pid {pid} did not stop within {}: SIGKILL",
                        Dur(self.sup.stop_timeout)
                    ));
                }
                self.signal(pid, libc::SIGKILL);
            }
            Timer::Respawn => {
                self.respawn_at = None;
                // Not a reload: no RELOADING=1 for the service manager.
                if !self.shutting_down {
                    self.start_generation();
                }
            }
            Timer::Watchdog(id) => {
                let Some(g) = self.generation(id) else { return };
                if let (State::Ready, Some(due), Some(every)) =
                    (g.state, g.watchdog_due, g.watchdog)
                    && Instant::now() >= due
                {
                    self.replace_stuck(id, &format!("sent no WATCHDOG=1 for {}", Dur(every)));
                }
            }
            Timer::WatchdogUp => {
                self.up_pinged = Instant::now();
                // systemd's watchdog does not run while a service stops.
                if self.shutting_down {
                    return;
                }
                match self.unhealthy() {
                    None => {
                        self.up_withheld = false;
                        self.up("WATCHDOG=1");
                    }
                    Some(why) => {
                        if !std::mem::replace(&mut self.up_withheld, true) {
                            say(format_args!(
                                "not sending WATCHDOG=1 to the service manager while {why}"
                            ));
                        }
                    }
                }
            }
            Timer::Leftovers => {
                // on_timers has just dropped the ones that are gone.
                let now = Instant::now();
                for (pid, _) in self.leftovers.iter().filter(|(_, t)| now >= *t) {
                    kill(*pid, libc::SIGKILL, false);
                }
            }
        }
    }

    /// Once every generation is gone: nothing of ours may outlive us. Any
    /// other child (an orphan re-parented to us, a worker its generation
    /// left behind) gets the stop signal, then SIGKILL after the stop
    /// timeout ([`Timer::Leftovers`]). True when there is nothing left.
    fn finish_leftovers(&mut self, now: Instant) -> bool {
        let children = self.strays();
        if children.is_empty() {
            return true;
        }
        self.stop_leftovers(children, now);
        false
    }

    /// Our children, but those we had before the supervisor started: a
    /// process the shell forked before it exec'd gracewrap (`exec
    /// gracewrap -s ... 2> >(logger)`) is the caller's, not a leftover of
    /// a generation, and is left alone.
    fn strays(&self) -> Vec<i32> {
        let mut children = own_children();
        children.retain(|pid| !self.inherited.contains(pid));
        children
    }

    /// Sends the stop signal to every child that is not a generation and
    /// has not had it yet, as soon as it is seen (an orphan's own child is
    /// re-parented to us only once the orphan dies), and gives it the stop
    /// timeout before SIGKILL.
    fn stop_leftovers(&mut self, children: Vec<i32>, now: Instant) {
        let new: Vec<i32> = children
            .into_iter()
            .filter(|pid| !self.gens.iter().any(|g| g.pid == *pid))
            .filter(|pid| !self.leftovers.iter().any(|(p, _)| p == pid))
            .collect();
        if new.is_empty() {
            return;
        }
        if self.args.verbose {
            say(format_args!(
                "stopping {} leftover process(es): {new:?}",
                new.len()
            ));
        }
        for pid in new {
            kill(pid, self.sup.stop_signal, false);
            self.leftovers.push((pid, now + self.sup.stop_timeout));
        }
    }

    /// Drops the polled stored fds that hung up (`hung_up`: one flag per
    /// stored fd with `poll`, in store order).
    fn drop_hung_up(&mut self, hung_up: &[bool]) {
        if !hung_up.contains(&true) {
            return;
        }
        let mut flags = hung_up.iter();
        let verbose = self.args.verbose;
        self.store.retain(|s| {
            let gone = s.poll && flags.next() == Some(&true);
            if gone && verbose {
                say(format_args!(
                    "stored fd {} hung up: closed",
                    crate::msg::quote(OsStr::new(&s.name))
                ));
            }
            !gone
        });
    }

    fn run(&mut self) -> Result<Status> {
        loop {
            if self.gens.is_empty()
                && (self.shutting_down || self.respawn_at.is_none() && self.current.is_none())
                && self.finish_leftovers(Instant::now())
            {
                return Ok(self.status.or(self.last_exit).unwrap_or(Status::Program(0)));
            }
            let hung_up: Vec<bool>;
            let timeout = self.next_deadline(Instant::now()).map(|t| {
                let d = t.saturating_duration_since(Instant::now());
                Timespec {
                    tv_sec: d.as_secs() as i64,
                    tv_nsec: i64::from(d.subsec_nanos()),
                }
            });
            {
                let wake = self.watch.fd();
                let note = self.notify.fd();
                let mut polls = vec![
                    PollFd::new(&wake, PollFlags::IN),
                    PollFd::new(&note, PollFlags::IN),
                ];
                let control = self.control.as_ref().map(Control::fd);
                if let Some(control) = &control {
                    polls.push(PollFd::new(control, PollFlags::IN));
                }
                // Stored fds: no events asked for, so only POLLHUP and
                // POLLERR (a peer gone) wake us, as in systemd.
                let first_stored = polls.len();
                polls.extend(
                    self.store
                        .iter()
                        .filter(|s| s.poll)
                        .map(|s| PollFd::new(&s.fd, PollFlags::empty())),
                );
                match poll(&mut polls, timeout.as_ref()) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(anyhow!("poll failed: {}", reason(e))),
                }
                hung_up = polls[first_stored..]
                    .iter()
                    .map(|p| p.revents().intersects(PollFlags::HUP | PollFlags::ERR))
                    .collect();
            }
            self.drop_hung_up(&hung_up);
            // Notifications before reaping: a generation that said READY=1
            // and then died is still counted as having been ready.
            let _ = self.on_notify();
            self.on_control();
            for sig in self.watch.take() {
                if sig == libc::SIGCHLD {
                    continue;
                } else if sig == self.sup.restart_signal {
                    self.on_restart_signal();
                } else if sig == libc::SIGTERM {
                    self.shutdown();
                } else if let Some(pid) =
                    self.current.and_then(|c| self.generation(c)).map(|g| g.pid)
                {
                    self.signal(pid, sig);
                }
            }
            self.reap();
            self.on_timers(Instant::now());
        }
    }
}

/// kill(2) to `pid`, or to its process group; any signal number, the
/// real-time ones included. A generation that left its own group
/// (`setpgid`) gets the signal itself as well, so it can always be
/// stopped. A process already gone (ESRCH) is fine.
fn kill(pid: i32, sig: i32, group: bool) {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    if group {
        let _ = raw::kill(-pid, sig);
        if rustix::process::getpgid(Some(p)).is_ok_and(|g| g == p) {
            return;
        }
    }
    let _ = raw::kill(pid, sig);
}

/// What a stored fd is, for messages.
fn what_fd(fd: &OwnedFd) -> String {
    use rustix::fs::FileType;
    let Ok(st) = rustix::fs::fstat(fd) else {
        return "an fd".into();
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Fifo => "a pipe".into(),
        FileType::RegularFile => "a file".into(),
        FileType::Directory => "a directory".into(),
        FileType::CharacterDevice | FileType::BlockDevice => "a device".into(),
        FileType::Socket => {
            let me = crate::socket::describe(fd);
            if rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false) {
                format!("the listening socket {me}")
            } else if let Ok(Some(peer)) = rustix::net::getpeername(fd) {
                match std::net::SocketAddr::try_from(peer) {
                    Ok(peer) => format!("a connection from {peer} to {me}"),
                    Err(_) => format!("a connection to {me}"),
                }
            } else {
                format!("the socket {me}")
            }
        }
        _ => "an fd".into(),
    }
}

/// Our children, zombies included (/proc/self/task/*/children).
fn own_children() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
    }
    out
}

/// The parent pid of `pid`, from /proc/PID/stat.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip to the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}
