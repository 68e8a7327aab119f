//! `--supervise`: gracenet's StartProcess done from the outside, for
//! unmodified programs, with tini's PID-1 duties.
//!
//! gracewrap keeps the sockets (placed once at fd 3.. in this process) and
//! runs PROGRAM as a child on them (a *generation*, started through
//! spawn.rs so that its `LISTEN_PID` is its own pid). On the restart
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
//! - every child is reaped, re-parented orphans included (gracewrap is a
//!   child subreaper when it is not PID 1).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, WaitOptions, WaitStatus, wait};

use crate::cli::{Args, Supervise, signal_name};
use crate::fds;
use crate::msg::{Dur, io_reason, reason, say};
use crate::notify::{self, Listener, Upstream};
use crate::prepare::{self, Prepared};
use crate::signals::{Blocked, Watch};
use crate::spawn::{self, Setup};

/// Signals passed on to the current generation (tini's set, minus the
/// ones gracewrap acts on).
const FORWARD: [i32; 13] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCONT,
    libc::SIGALRM,
    libc::SIGPWR,
    libc::SIGURG,
];

/// A generation that lived at least this long resets the crash backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Gen {
    id: u64,
    pid: i32,
    started: Instant,
    ready: bool,
    /// Set once the stop signal was sent: when SIGKILL follows.
    kill_at: Option<Instant>,
    killed: bool,
}

struct Supervisor<'a> {
    args: &'a Args,
    sup: Supervise,
    /// The sockets at 3.., kept open for every generation to come.
    sockets: Vec<OwnedFd>,
    names: String,
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
    status: Option<u8>,
    respawn_at: Option<Instant>,
    /// Set once the generations are gone during shutdown and other children
    /// (orphans re-parented to us, a generation's leftover workers) got the
    /// stop signal: when they get SIGKILL.
    leftovers_kill_at: Option<Instant>,
    backoff: Duration,
}

pub fn run(args: &Args, prepared: Prepared) -> Result<u8> {
    let sup = args.supervise.clone().unwrap_or_default();
    let created = prepared.created.clone();
    let pid_file = sup.pid_file.clone();
    let result = start(args, sup, prepared).and_then(|mut s| s.run());
    // gracenet never closed what it stopped using; we close everything
    // (by exiting) and remove the files we made.
    prepare::remove_created(&created);
    if let Some(path) = pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn start<'a>(args: &'a Args, sup: Supervise, prepared: Prepared) -> Result<Supervisor<'a>> {
    spawn::resolve(args)?;
    spawn::check_chdir(args)?;
    let Prepared { sockets, limit, .. } = prepared;
    let names = sockets.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    let inherited: Vec<bool> = sockets.iter().map(|s| s.inherited).collect();
    let sockets = fds::place(sockets.into_iter().map(|s| s.fd).collect())
        .map_err(|e| anyhow!("cannot move the sockets to fd 3..: {}", reason(e)))?;
    if args.verbose || args.listen.iter().any(crate::spec::Spec::wants_free_port) {
        for ((fd, name), inherited) in sockets.iter().zip(&names).zip(inherited) {
            crate::exec::report(fd, name, inherited);
        }
    }
    let mut caught = vec![sup.restart_signal, libc::SIGTERM, libc::SIGCHLD];
    caught.extend(FORWARD.iter().filter(|s| **s != sup.restart_signal));
    let watch = Watch::new(&caught)
        .map_err(|e| anyhow!("cannot set up signal handling: {}", io_reason(&e)))?;
    let notify = Listener::new()
        .map_err(|e| anyhow!("cannot create the notification socket: {}", reason(e)))?;
    let upstream = Upstream::from_env();
    if std::process::id() != 1 {
        // Orphans of PROGRAM come to us (and get reaped), as under PID 1.
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    }
    if let Some(path) = &sup.pid_file {
        write_pid_file(path)?;
    }
    limit.restore();
    let mut s = Supervisor {
        args,
        sup,
        sockets,
        names: names.join(":"),
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
        respawn_at: None,
        leftovers_kill_at: None,
        backoff: BACKOFF_FIRST,
    };
    let id = s.spawn()?;
    s.current = Some(id);
    Ok(s)
}

/// Writes our pid to `path` atomically (a temporary file, then rename).
fn write_pid_file(path: &PathBuf) -> Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let write = std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, path));
    write.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!(
            "cannot write --pid-file {}: {}",
            path.display(),
            io_reason(&e)
        )
    })
}

/// 128+signal, or the exit code, as a shell reports it.
fn exit_code(status: WaitStatus) -> u8 {
    if let Some(sig) = status.terminating_signal() {
        (128 + sig).min(255) as u8
    } else {
        status.exit_status().unwrap_or(0) as u8
    }
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

    fn up(&self, text: &str) {
        if let Some(u) = &self.upstream {
            u.send(text);
        }
    }

    /// Starts a new generation; returns its id.
    fn spawn(&mut self) -> Result<u64> {
        let mut cmd = spawn::gracewrap_child(self.args, self.sockets.len(), &self.names);
        cmd.env("NOTIFY_SOCKET", &self.notify.env_value);
        let blocked = Blocked::all();
        let mut setup = Setup::new(
            &self.watch.signals(),
            self.args.keep_signals,
            blocked.old_mask(),
        );
        setup.deathsig = true;
        setup.new_group = self.sup.process_group;
        let pid = cmd.spawn(&setup).map_err(|e| {
            anyhow!(
                "cannot start {}: {}",
                spawn::program_name(self.args),
                io_reason(&e)
            )
        })?;
        drop(blocked);
        let id = self.next_id;
        self.next_id += 1;
        self.gens.push(Gen {
            id,
            pid,
            started: Instant::now(),
            ready: false,
            kill_at: None,
            killed: false,
        });
        if self.args.verbose {
            say(format_args!("started {}", self.label(id)));
        }
        Ok(id)
    }

    /// kill(2) to a generation, or to its process group with
    /// `--process-group`.
    fn signal(&self, pid: i32, sig: i32) {
        kill(pid, sig, self.sup.process_group);
    }

    /// Sends the stop signal to a generation (SIGKILL follows later).
    fn stop(&mut self, id: u64) {
        let (sig, timeout) = (self.sup.stop_signal, self.sup.stop_timeout);
        let Some(g) = self.generation_mut(id) else {
            return;
        };
        if g.kill_at.is_some() {
            return;
        }
        g.kill_at = Some(Instant::now() + timeout);
        let pid = g.pid;
        self.signal(
            pid,
            if timeout.is_zero() {
                libc::SIGKILL
            } else {
                sig
            },
        );
        if timeout.is_zero()
            && let Some(g) = self.generation_mut(id)
        {
            g.killed = true;
        }
    }

    /// A restart: tells the service manager we are reloading (READY=1
    /// follows when it is over, however it ends), then starts a generation.
    fn start_restart(&mut self) {
        if self.shutting_down {
            return;
        }
        if self.args.verbose {
            // Here, not at the signal, so that a queued restart says so too.
            say(format_args!("restarting"));
        }
        self.up(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            notify::monotonic_usec()
        ));
        self.start_generation();
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
                self.up(&format!("READY=1\nSTATUS=restart failed: {e:#}"));
            }
        }
    }

    fn on_ready(&mut self, id: u64) {
        let Some(g) = self.generation_mut(id) else {
            return;
        };
        if g.ready || g.kill_at.is_some() {
            return;
        }
        g.ready = true;
        let label = self.label(id);
        if self.candidate == Some(id) {
            self.candidate = None;
            let old = self.current.replace(id);
            if let Some(old) = old {
                if self.args.verbose {
                    say(format_args!(
                        "{label} is ready; stopping {}",
                        self.label(old)
                    ));
                }
                self.stop(old);
            }
            self.up(&format!("READY=1\nSTATUS=serving: {label}"));
            if std::mem::take(&mut self.pending_restart) {
                self.start_restart();
            }
        } else if self.current == Some(id) {
            if self.args.verbose {
                say(format_args!("{label} is ready"));
            }
            if !self.announced {
                self.announced = true;
                self.up(&format!(
                    "READY=1\nMAINPID={}\nSTATUS=serving: {label}",
                    std::process::id()
                ));
            } else {
                self.up(&format!("STATUS=serving: {label}"));
            }
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

    fn on_notify(&mut self) {
        for m in self.notify.drain() {
            let Some(id) = self.owner(m.pid) else {
                continue;
            };
            if m.has("READY=1") {
                self.on_ready(id);
            }
            if let Some(status) = m.get("STATUS").filter(|_| self.current == Some(id)) {
                self.up(&format!("STATUS={}: {status}", self.label(id)));
            }
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

    fn shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.pending_restart = false;
        self.respawn_at = None;
        self.up("STOPPING=1");
        let ids: Vec<u64> = self.gens.iter().map(|g| g.id).collect();
        for id in ids {
            self.stop(id);
        }
    }

    fn reap(&mut self) {
        loop {
            // wait(2), not waitpid(None): rustix maps None to pid 0, "my
            // process group", which misses --process-group generations and
            // orphans from other groups.
            let (pid, status) = match wait(WaitOptions::NOHANG) {
                Ok(Some(x)) => x,
                Ok(None) | Err(_) => return,
            };
            let pid = pid.as_raw_nonzero().get();
            let Some(pos) = self.gens.iter().position(|g| g.pid == pid) else {
                continue; // a re-parented orphan: reaped, nothing else to do
            };
            let g = self.gens.remove(pos);
            let label = format!("generation {} (pid {})", g.id, g.pid);
            if self.candidate == Some(g.id) {
                self.candidate = None;
                say(format_args!(
                    "{label} {} before it was ready; {} keeps serving",
                    describe(status),
                    self.current.map_or("nothing".into(), |c| self.label(c))
                ));
                self.up(&format!(
                    "READY=1\nSTATUS=restart failed: {label} {}",
                    describe(status)
                ));
                if std::mem::take(&mut self.pending_restart) {
                    self.start_restart();
                }
            } else if self.current == Some(g.id) {
                self.current = None;
                if self.shutting_down {
                    self.status = Some(exit_code(status));
                } else if self.sup.restart_on_exit {
                    self.backoff = if g.started.elapsed() >= STABLE_AFTER {
                        BACKOFF_FIRST
                    } else {
                        self.backoff
                    };
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
                    self.status = Some(exit_code(status));
                    self.shutdown();
                }
            } else if self.args.verbose {
                say(format_args!("{label} {}", describe(status)));
            }
        }
    }

    /// Deadlines: ready delays, the ready timeout, stop timeouts, respawn.
    fn on_timers(&mut self, now: Instant) {
        let delay = self.sup.ready_delay;
        let due: Vec<u64> = self
            .gens
            .iter()
            .filter(|g| {
                !g.ready && g.kill_at.is_none() && delay.is_some_and(|d| now >= g.started + d)
            })
            .map(|g| g.id)
            .collect();
        for id in due {
            self.on_ready(id);
        }
        if let Some(id) = self.candidate
            && self
                .generation(id)
                .is_some_and(|g| now >= g.started + self.sup.ready_timeout)
        {
            self.candidate = None;
            let label = self.label(id);
            say(format_args!(
                "{label} was not ready within {} (no READY=1 on NOTIFY_SOCKET; --ready-delay serves programs that do not notify); stopping it, {} keeps serving",
                Dur(self.sup.ready_timeout),
                self.current.map_or("nothing".into(), |c| self.label(c))
            ));
            self.up(&format!(
                "READY=1\nSTATUS=restart failed: {label} not ready"
            ));
            self.stop(id);
            if std::mem::take(&mut self.pending_restart) {
                self.start_restart();
            }
        }
        let overdue: Vec<i32> = self
            .gens
            .iter_mut()
            .filter(|g| !g.killed && g.kill_at.is_some_and(|t| now >= t))
            .map(|g| {
                g.killed = true;
                g.pid
            })
            .collect();
        for pid in overdue {
            if self.args.verbose {
                say(format_args!(
                    "pid {pid} did not stop within {}: SIGKILL",
                    Dur(self.sup.stop_timeout)
                ));
            }
            self.signal(pid, libc::SIGKILL);
        }
        if self.respawn_at.is_some_and(|t| now >= t) {
            self.respawn_at = None;
            // Not a reload: no RELOADING=1 for the service manager.
            if !self.shutting_down {
                self.start_generation();
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut times: Vec<Instant> = Vec::new();
        for g in &self.gens {
            if let (false, None, Some(d)) = (g.ready, g.kill_at, self.sup.ready_delay) {
                times.push(g.started + d);
            }
            if let Some(t) = g.kill_at.filter(|_| !g.killed) {
                times.push(t);
            }
        }
        if let Some(g) = self.candidate.and_then(|id| self.generation(id)) {
            times.push(g.started + self.sup.ready_timeout);
        }
        times.extend(self.respawn_at);
        if let Some(t) = self.leftovers_kill_at {
            // Poll for leftovers that exit on their own (they are not ours
            // to be told about through a generation), and the SIGKILL.
            times.push(t.min(Instant::now() + Duration::from_millis(20)));
        }
        times.into_iter().min()
    }

    /// Once every generation is gone: nothing of ours may outlive us. Any
    /// other child (an orphan re-parented to us, a worker its generation
    /// left behind) gets the stop signal, then SIGKILL after the stop
    /// timeout. True when there is nothing left.
    fn finish_leftovers(&mut self, now: Instant) -> bool {
        let left = own_children();
        if left.is_empty() {
            return true;
        }
        match self.leftovers_kill_at {
            None => {
                if self.args.verbose {
                    say(format_args!(
                        "stopping {} leftover process(es): {left:?}",
                        left.len()
                    ));
                }
                self.leftovers_kill_at = Some(now + self.sup.stop_timeout);
                for pid in left {
                    kill(pid, self.sup.stop_signal, false);
                }
            }
            Some(t) if now >= t => {
                for pid in left {
                    kill(pid, libc::SIGKILL, false);
                }
            }
            Some(_) => {}
        }
        false
    }

    fn run(&mut self) -> Result<u8> {
        loop {
            if self.gens.is_empty()
                && (self.shutting_down || self.respawn_at.is_none() && self.current.is_none())
                && self.finish_leftovers(Instant::now())
            {
                return Ok(self.status.unwrap_or(0));
            }
            let timeout = self.next_deadline().map(|t| {
                let d = t.saturating_duration_since(Instant::now());
                Timespec {
                    tv_sec: d.as_secs() as i64,
                    tv_nsec: i64::from(d.subsec_nanos()),
                }
            });
            {
                let wake = self.watch.fd();
                let note = self.notify.fd();
                let mut polls = [
                    PollFd::new(&wake, PollFlags::IN),
                    PollFd::new(&note, PollFlags::IN),
                ];
                match poll(&mut polls, timeout.as_ref()) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(anyhow!("poll failed: {}", reason(e))),
                }
            }
            // Notifications before reaping: a generation that said READY=1
            // and then died is still counted as having been ready.
            self.on_notify();
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

/// kill(2) to `pid`, or to its process group. A process already gone
/// (ESRCH) is fine.
fn kill(pid: i32, sig: i32, group: bool) {
    let (Some(pid), Some(sig)) = (
        Pid::from_raw(pid),
        rustix::process::Signal::from_named_raw(sig),
    ) else {
        return;
    };
    let _ = if group {
        rustix::process::kill_process_group(pid, sig)
    } else {
        rustix::process::kill_process(pid, sig)
    };
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
