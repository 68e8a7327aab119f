//! What the two resident modes (`--accept`, `--supervise`) share: the
//! start-up check, the signal watch, reaping; and starting a supervisor
//! generation.
//!
//! A generation is gracewrap itself again (/proc/self/exe) in exec mode
//! ([`Args::child_argv`]): it is handed the sockets at fd 3.. with
//! [`handoff_env`], takes them over, sets `LISTEN_PID` to its own pid,
//! drops privileges, searches PATH again (so a newly deployed PROGRAM is
//! picked up) and execs it. That extra execve is nothing next to a
//! generation's life. `--accept` pays one exec per connection instead:
//! it prepares PROGRAM's exec once and starts it directly (accept.rs).

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;

use anyhow::{Result, anyhow};
use rustix::process::{WaitOptions, WaitStatus, wait};

use crate::cli::Args;
use crate::msg::io_reason;
use crate::protocol::{LISTEN_VARS, NOFILE_VAR, handoff_env};
use crate::sys::process::{self, Env, Program, Setup, SpawnError, Stack};
use crate::sys::signals::{Blocked, Watch};
use crate::sys::user::Target;

/// Checks now what every child would fail on, so that a resident
/// gracewrap fails at once (125, 127, 126) instead of once per child (and
/// exec mode before it drops privileges for good), with
/// the words exec mode would use: `--chdir` names a directory that can be
/// entered, and PROGRAM is found by the very search its exec will make,
/// in the PATH it will get, from the directory it will run in.
///
/// With `--user`/`--group`, the checks run as that user: what it cannot
/// reach fails here, not in every child.
pub fn check(args: &Args, target: Option<&Target>) -> Result<()> {
    match target {
        Some(target) => target.with_ids(|| check_as_we_are(args))?,
        None => check_as_we_are(args),
    }
}

fn check_as_we_are(args: &Args) -> Result<()> {
    if let Some(dir) = &args.chdir {
        let fail = |e: &std::io::Error| anyhow!(super::chdir_failure(dir, e));
        let meta = std::fs::metadata(dir).map_err(|e| fail(&e))?;
        if !meta.is_dir() {
            return Err(fail(&std::io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        // chdir(2) needs search permission on the directory itself.
        rustix::fs::access(dir.as_os_str(), rustix::fs::Access::EXEC_OK)
            .map_err(|e| fail(&e.into()))?;
    }
    let cwd = args.chdir.as_deref().map(std::path::Path::new);
    process::resolve(&args.program, program_path(args).as_deref(), cwd)?;
    Ok(())
}

/// The PATH PROGRAM will get: the last `--setenv PATH`, else ours.
fn program_path(args: &Args) -> Option<OsString> {
    args.setenv
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .and_then(|(_, v)| v.clone())
        .or_else(|| std::env::var_os("PATH"))
}

/// Handlers for `signals`, each waking the returned watch's fd.
pub fn watch(signals: &[i32]) -> Result<Watch> {
    Watch::new(signals).map_err(|e| anyhow!("cannot set up signal handling: {}", io_reason(&e)))
}

/// A generation to start: which of our fds it gets (the sockets are at
/// 3.. in this process already), and how.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// How many fds it gets at 3.. (the sockets, then `extra`), and
    /// their `LISTEN_FDNAMES`.
    pub count: usize,
    pub names: &'a str,
    /// More fds for it, after the sockets (the supervisor's fd store):
    /// see [`Setup::extra`].
    pub extra: &'a [RawFd],
    /// More variables for the child, which win over `--setenv`.
    pub env: &'a [(&'a str, &'a OsStr)],
    /// Lead a new process group.
    pub new_group: bool,
    /// Then take the terminal's foreground, if one of these groups holds
    /// it ([`Setup::terminal_from`]).
    pub terminal_from: [i32; 2],
    /// The RLIMIT_NOFILE (soft, hard) the child gets, when gracewrap
    /// raised its own ([`crate::handoff::Handoff::original_limit`]).
    pub nofile: Option<(u64, u64)>,
}

/// Starts a child gracewrap that hands the sockets to PROGRAM; returns
/// its pid, or why fork or the steps before exec failed. It gets SIGTERM
/// should we die (PR_SET_PDEATHSIG).
pub fn spawn(args: &Args, watch: &Watch, how: &Spawn<'_>) -> std::io::Result<i32> {
    let reserved: Vec<&str> = how.env.iter().map(|(name, _)| *name).collect();
    let mut env = Env::ours_without(&LISTEN_VARS);
    for (name, value) in handoff_env(how.count, how.names) {
        env.set(name, value);
    }
    if let Some((soft, hard)) = how.nofile {
        env.set(NOFILE_VAR, format!("{soft} {hard}"));
    }
    for (name, value) in how.env {
        env.set(name, value);
    }
    let program = Program::this_binary(&args.child_argv(&reserved));
    let mut stack = Stack::new()?;
    // Blocked until the child has reset gracewrap's handlers (see Setup).
    let blocked = Blocked::all();
    let mut setup = Setup::new(&watch.signals(), args.keep_signals, blocked.old_mask());
    setup.deathsig = true;
    setup.extra = how.extra;
    setup.extra_at = crate::protocol::FIRST_FD + (how.count - how.extra.len()) as RawFd;
    setup.new_group = how.new_group;
    setup.terminal_from = how.terminal_from;
    // No credentials here (the child gracewrap drops them), so `report`
    // is never called: a failure comes back from the vfork child.
    let pid = process::spawn(&program, env.entries(), &[], &setup, &mut stack, &|_| {});
    drop(blocked);
    pid.map_err(|e| match e {
        SpawnError::Fork(e) => e,
        SpawnError::Child(f) => std::io::Error::from_raw_os_error(f.errno),
    })
}

/// Reaps every child that has exited, without blocking.
pub fn reap(mut exited: impl FnMut(i32, WaitStatus)) {
    loop {
        // wait(2), not waitpid(None): rustix maps None to pid 0, "my
        // process group", which misses children in other groups (a
        // --process-group generation, a re-parented orphan).
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => exited(pid.as_raw_nonzero().get(), status),
            Ok(None) | Err(_) => return,
        }
    }
}
