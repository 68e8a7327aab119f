//! Starting PROGRAM as a child while gracewrap stays resident (`--accept`,
//! and the supervisor).
//!
//! `LISTEN_PID` must be the child's pid, known only after fork(2), and
//! nothing that allocates may run between fork and exec. So the child is
//! gracewrap itself (/proc/self/exe, which survives the binary being
//! replaced on disk) in exec mode: it is handed the sockets at fd 3.. with
//! `LISTEN_PID` and [`inherit::HANDOFF_VAR`] set to our pid, adopts them,
//! sets `LISTEN_PID` to its own pid, resolves PROGRAM in PATH again (so a
//! newly deployed binary is picked up) and execs it. The one code path
//! that sets `LISTEN_*` is exec mode's; the cost is one extra execve.
//!
//! Between fork and exec the child only makes raw syscalls ([`Setup`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use crate::cli::{Args, LISTEN_VARS};
use crate::exec::ExecError;
use crate::inherit::HANDOFF_VAR;

/// Finds PROGRAM the way execvp(3) will (PATH from the environment PROGRAM
/// gets), so that a resident gracewrap can fail at once with 127 or 126
/// instead of once per connection.
pub fn resolve(args: &Args) -> Result<PathBuf, ExecError> {
    let executable = |p: &std::path::Path| {
        rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok()
            && p.metadata().is_ok_and(|m| m.is_file())
    };
    let path = args
        .setenv
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .and_then(|(_, v)| v.clone())
        .or_else(|| std::env::var_os("PATH"));
    let mut denied = false;
    for candidate in candidates(&args.program, path) {
        if executable(&candidate) {
            return Ok(candidate);
        }
        denied |= candidate.exists();
    }
    Err(ExecError {
        program: args.program.clone(),
        error: if denied {
            io::Error::from_raw_os_error(libc::EACCES)
        } else {
            io::ErrorKind::NotFound.into()
        },
    })
}

/// Where execvp(3) looks for `program`: the path itself if it holds a
/// `/`, else each directory of `path` (glibc's default without one).
pub fn candidates(program: &OsStr, path: Option<OsString>) -> Vec<PathBuf> {
    if program.as_encoded_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    let path = path.unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .collect()
}

/// `--chdir` in a resident mode: the children enter DIR; say now, not once
/// per child, if it is not a directory.
pub fn check_chdir(args: &Args) -> anyhow::Result<()> {
    match &args.chdir {
        Some(dir) if !std::path::Path::new(dir).is_dir() => Err(anyhow::anyhow!(
            "cannot change directory to {}: not a directory",
            crate::msg::quote(dir)
        )),
        _ => Ok(()),
    }
}

/// What a forked child does before exec. Raw syscalls only.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Put this fd (of the parent) at fd 3 without CLOEXEC.
    pub fd3: Option<RawFd>,
    /// Get SIGTERM when gracewrap dies (PR_SET_PDEATHSIG).
    pub deathsig: bool,
    /// Lead a new process group, and take the terminal's foreground.
    pub new_group: bool,
    /// Our pid, to notice that we died before PR_SET_PDEATHSIG took hold.
    pub parent: i32,
    /// Signals gracewrap catches, to reset (at most 16).
    pub caught: [i32; 16],
    pub ncaught: usize,
    /// `--keep-signals`, and the mask to give back with it.
    pub keep_signals: bool,
    pub mask: u64,
}

impl Setup {
    pub fn new(caught: &[i32], keep_signals: bool, mask: u64) -> Setup {
        let mut arr = [0; 16];
        let n = caught.len().min(16);
        arr[..n].copy_from_slice(&caught[..n]);
        Setup {
            fd3: None,
            deathsig: false,
            new_group: false,
            parent: std::process::id() as i32,
            caught: arr,
            ncaught: n,
            keep_signals,
            mask,
        }
    }

    /// Installs the pre-exec steps on `cmd`.
    #[allow(unsafe_code)]
    pub fn apply(self, cmd: &mut Command) {
        // SAFETY: the closure makes only async-signal-safe calls (prctl,
        // getppid, fcntl, dup2, setpgid, isatty, tcsetpgrp, rt_sigaction,
        // rt_sigprocmask) on plain data copied into it; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if self.deathsig {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                    if libc::getppid() != self.parent {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                }
                // dup2(3, 3) would keep FD_CLOEXEC: clear it instead.
                let placed = match self.fd3 {
                    Some(3) => libc::fcntl(3, libc::F_SETFD, 0),
                    Some(fd) => libc::dup2(fd, 3),
                    None => 0,
                };
                if placed < 0 {
                    return Err(io::Error::last_os_error());
                }
                if self.new_group {
                    libc::setpgid(0, 0);
                    // Every signal is still blocked here, so SIGTTOU cannot
                    // stop us for taking the foreground (tini -g does this).
                    if libc::isatty(0) == 1 {
                        libc::tcsetpgrp(0, libc::getpid());
                    }
                }
                crate::signals::child_reset(
                    &self.caught[..self.ncaught],
                    self.keep_signals,
                    Some(self.mask),
                );
                Ok(())
            });
        }
    }
}

/// A gracewrap child in exec mode that adopts `count` sockets at fd 3..
/// named `names` and execs PROGRAM (see the module doc).
pub fn gracewrap_child(args: &Args, count: usize, names: &str) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("gracewrap");
    if args.no_pid {
        cmd.arg("--no-pid");
    }
    if args.keep_signals {
        cmd.arg("--keep-signals");
    }
    if args.inetd {
        cmd.arg("--inetd");
    }
    // The child drops privileges and changes directory; we keep ours (to
    // remove socket files on exit and start the next child).
    for (flag, value) in [("--user", &args.user), ("--group", &args.group)] {
        if let Some(v) = value {
            cmd.arg(flag).arg(v);
        }
    }
    if let Some(dir) = &args.chdir {
        cmd.arg("--chdir").arg(dir);
    }
    cmd.arg("--").arg(&args.program).args(&args.args);
    let me = std::process::id().to_string();
    for var in LISTEN_VARS {
        cmd.env_remove(var);
    }
    cmd.env("LISTEN_FDS", count.to_string())
        .env("LISTEN_FDNAMES", names)
        .env("LISTEN_PID", &me)
        .env(HANDOFF_VAR, &me);
    apply_setenv(&mut cmd, args);
    cmd
}

fn apply_setenv(cmd: &mut Command, args: &Args) {
    for (name, value) in &args.setenv {
        if let Some(v) = value.clone().or_else(|| std::env::var_os(name)) {
            cmd.env(name, v);
        }
    }
}

/// For messages: PROGRAM as the user wrote it.
pub fn program_name(args: &Args) -> String {
    crate::msg::quote(OsStr::new(&args.program))
}
