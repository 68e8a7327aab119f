//! Exec mode: sockets at 3.., the LISTEN_* environment, then execve(2) of
//! PROGRAM in this very process, so `LISTEN_PID` is simply our pid.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

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
/// say so up front. Port 0 may repeat (each gets its own port). Sorting,
/// not a pairwise scan: a thousand specs must stay cheap.
fn check_duplicates(specs: &[Spec]) -> Result<(), UsageError> {
    let mut addrs: Vec<&Addr> = specs
        .iter()
        .filter(|s| !s.wants_free_port())
        .map(|s| &s.addr)
        .collect();
    addrs.sort_unstable();
    match addrs.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(UsageError(format!(
            "{} is given twice",
            String::from_utf8_lossy(&w[0].to_bytes())
        ))),
        None => Ok(()),
    }
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

/// Replaces this process with PROGRAM, searching PATH like execvp(3) (in
/// the PATH PROGRAM will get, as env(1) does).
///
/// The environment is edited in place (gracewrap is single-threaded) and
/// execvp(3) is called directly rather than through `std::process::Command`:
/// std would reset SIGPIPE behind our back and copy the environment into a
/// map first.
fn exec(args: &Args, listen: &[(&'static str, String)]) -> anyhow::Error {
    let copies: Vec<(&OsString, Option<OsString>)> = args
        .setenv
        .iter()
        .map(|(name, value)| (name, value.clone().or_else(|| std::env::var_os(name))))
        .collect();
    for var in LISTEN_VARS {
        env::remove(var);
    }
    for (name, value) in listen {
        env::set(name, value);
    }
    for (name, value) in copies {
        if let Some(value) = value {
            env::set(name, value);
        }
    }
    signals::prepare_for_exec(args.keep_signals);
    let error = env::execvp(&args.program, &args.args);
    signals::after_failed_exec();
    ExecError {
        program: args.program.clone(),
        error,
    }
    .into()
}

/// The few unsafe calls exec needs.
#[allow(unsafe_code)]
mod env {
    use std::ffi::{CString, OsStr, OsString};
    use std::io;
    use std::os::unix::ffi::OsStrExt;

    pub fn set(name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        // SAFETY: gracewrap has a single thread, so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var(name, value) }
    }

    pub fn remove(name: impl AsRef<OsStr>) {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(name) }
    }

    /// execvp(3); returns only on failure.
    pub fn execvp(program: &OsStr, args: &[OsString]) -> io::Error {
        // Arguments come from argv, so they hold no NUL bytes.
        let cstr = |s: &OsStr| CString::new(s.as_bytes()).unwrap_or_default();
        let argv: Vec<CString> = std::iter::once(program)
            .chain(args.iter().map(OsString::as_os_str))
            .map(cstr)
            .collect();
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: `argv` and `ptrs` outlive the call; `ptrs` is a
        // NULL-terminated array of NUL-terminated strings.
        unsafe { libc::execvp(argv[0].as_ptr(), ptrs.as_ptr()) };
        io::Error::last_os_error()
    }
}
