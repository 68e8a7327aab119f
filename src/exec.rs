//! Exec mode: sockets at 3.., the LISTEN_* environment, then execve(2) of
//! PROGRAM in this very process, so `LISTEN_PID` is simply our pid.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Result, anyhow, bail};

use crate::cli::{Args, LISTEN_VARS, UsageError};
use crate::fds::{self, TakeError};
use crate::msg::{io_reason, quote, reason, say};
use crate::signals;
use crate::sockets;
use crate::spec::{Addr, Spec};

/// The name a socket without NAME= gets in `LISTEN_FDNAMES`: the same
/// default libsystemd reports when no names are given at all.
pub const DEFAULT_NAME: &str = "unknown";

/// Runs exec mode. Returns only on failure.
pub fn run(args: Args) -> anyhow::Error {
    match prepare_and_exec(args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn prepare_and_exec(args: Args) -> Result<std::convert::Infallible> {
    check_duplicates(&args.listen)?;
    if args.listen.is_empty() {
        return Err(UsageError("no sockets: give at least one --listen".into()).into());
    }
    let n = args.listen.len();
    // Room for stdio and the sockets, better also for their copies while
    // they move, and some slack.
    let need = 3 + n as u64 + 1;
    let limit = fds::reserve(need, need + n as u64 + 16).map_err(|hard| {
        anyhow!("{n} sockets need {need} file descriptors, but RLIMIT_NOFILE allows only {hard}")
    })?;

    // Inherited sockets named with fd:N are taken first, so that closing
    // everything else cannot touch them.
    let mut taken: Vec<Option<OwnedFd>> = Vec::with_capacity(n);
    for spec in &args.listen {
        taken.push(match spec.addr {
            Addr::Fd(fd) => Some(take_fd(fd)?),
            _ => None,
        });
    }
    let ours: Vec<RawFd> = taken.iter().flatten().map(|fd| fd.as_raw_fd()).collect();
    if args.keep_fds {
        if let Some(fd) = fds::occupied_slots(n, &ours).first() {
            bail!(
                "fd {fd} is open and would be replaced by socket {}; close it or drop --keep-fds",
                fd - fds::FIRST + 1
            );
        }
    } else {
        fds::close_others(&ours);
    }

    let mut sockets = Vec::with_capacity(n);
    for (spec, taken) in args.listen.iter().zip(taken) {
        sockets.push(match taken {
            Some(fd) => fd,
            None => sockets::open(&spec.addr, &spec.opts)?,
        });
    }
    let sockets = fds::place(sockets)
        .map_err(|e| anyhow!("cannot move the sockets to fd 3..: {}", reason(e)))?;

    if args.verbose || args.listen.iter().any(Spec::wants_free_port) {
        for (spec, fd) in args.listen.iter().zip(&sockets) {
            report(fd, spec.name.as_deref());
        }
    }
    let names: Vec<&str> = args
        .listen
        .iter()
        .map(|s| s.name.as_deref().unwrap_or(DEFAULT_NAME))
        .collect();
    limit.restore();
    let err = exec(
        &args,
        &listen_env(sockets.len(), &names.join(":"), !args.no_pid),
    );
    drop(sockets);
    Err(err)
}

/// Two specs for the same address would fail with EADDRINUSE half-way;
/// say so up front. Port 0 may repeat (each gets its own port).
fn check_duplicates(specs: &[Spec]) -> Result<(), UsageError> {
    for (i, a) in specs.iter().enumerate() {
        if a.wants_free_port() {
            continue;
        }
        if specs[..i].iter().any(|b| b.addr == a.addr) {
            let what = match a.addr {
                Addr::Fd(fd) => format!("fd:{fd}"),
                _ => String::from_utf8_lossy(&a.addr.to_bytes()).into_owned(),
            };
            return Err(UsageError(format!("{what} is given twice")));
        }
    }
    Ok(())
}

fn take_fd(fd: RawFd) -> Result<OwnedFd> {
    fds::take(fd).map_err(|e| match e {
        TakeError::NotOpen => anyhow!("fd:{fd}: fd {fd} is not open"),
        TakeError::NotSocket => anyhow!("fd:{fd}: fd {fd} is not a socket"),
        TakeError::Other(e) => anyhow!("fd:{fd}: {}", reason(e)),
    })
}

/// `gracewrap: listening on 127.0.0.1:39211 (fd 3, name http)`.
fn report(fd: &OwnedFd, name: Option<&str>) {
    let addr = sockets::describe(fd);
    let fd = fd.as_raw_fd();
    match name {
        Some(name) => say(format_args!("listening on {addr} (fd {fd}, name {name})")),
        None => say(format_args!("listening on {addr} (fd {fd})")),
    }
}

/// The LISTEN_* variables for a program that will run as this process.
pub fn listen_env(count: usize, names: &str, with_pid: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![("LISTEN_FDS", count.to_string())];
    if with_pid {
        env.push(("LISTEN_PID", std::process::id().to_string()));
        if let Some(id) = pidfd_id() {
            env.push(("LISTEN_PIDFDID", id.to_string()));
        }
    }
    env.push(("LISTEN_FDNAMES", names.to_string()));
    env
}

/// The inode number of a pidfd for this process, which identifies it
/// without the pid-reuse race (pidfs, Linux 6.9+). systemd sets
/// `LISTEN_PIDFDID` from the same number. None on older kernels, where
/// pidfds share one anonymous inode.
fn pidfd_id() -> Option<u64> {
    const PIDFS_MAGIC: u64 = 0x5049_4446;
    let pid = rustix::process::getpid();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    let fs = rustix::fs::fstatfs(&pidfd).ok()?;
    if fs.f_type as u64 != PIDFS_MAGIC {
        return None;
    }
    rustix::fs::fstat(&pidfd).ok().map(|st| st.st_ino)
}

/// PROGRAM could not be executed: exit status 126, or 127 if not found.
#[derive(Debug)]
pub struct ExecError {
    pub program: OsString,
    pub error: io::Error,
}

impl ExecError {
    pub fn exit_code(&self) -> u8 {
        if self.error.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = quote(&self.program);
        let searched = !self.program.as_encoded_bytes().contains(&b'/');
        if self.error.kind() == io::ErrorKind::NotFound && searched {
            return write!(f, "cannot execute {name}: not found in PATH");
        }
        let is_dir = std::fs::metadata(&self.program).is_ok_and(|m| m.is_dir());
        if is_dir && !searched {
            return write!(f, "cannot execute {name}: is a directory");
        }
        write!(f, "cannot execute {name}: {}", io_reason(&self.error))
    }
}

impl std::error::Error for ExecError {}

/// Replaces this process with PROGRAM.
///
/// `CommandExt::exec` rather than a raw execve(2): it searches PATH like
/// execvp(3) and resets SIGPIPE, which the Rust runtime ignores, to its
/// default. The rest of the signal state is reset in [`signals::reset_all`]
/// unless `--keep-signals`.
fn exec(args: &Args, listen: &[(&'static str, String)]) -> anyhow::Error {
    let mut cmd = Command::new(&args.program);
    cmd.args(&args.args);
    for var in LISTEN_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(listen.iter().map(|(k, v)| (k, v)));
    for (name, value) in &args.setenv {
        match value {
            Some(v) => {
                cmd.env(name, v);
            }
            None => {
                if let Some(v) = std::env::var_os(name) {
                    cmd.env(name, v);
                }
            }
        }
    }
    if !args.keep_signals {
        signals::reset_all();
    }
    let error = cmd.exec();
    signals::ignore_sigpipe();
    ExecError {
        program: args.program.clone(),
        error,
    }
    .into()
}
