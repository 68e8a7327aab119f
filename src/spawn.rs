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
use std::path::PathBuf;

use crate::cli::{Args, LISTEN_VARS};
use crate::exec::ExecError;
use crate::exec::env::CArray;
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

    /// The steps, in the forked child. Returns an errno on failure.
    #[allow(unsafe_code)]
    fn run_in_child(&self) -> Result<(), i32> {
        // SAFETY: async-signal-safe calls only (prctl, getppid, fcntl,
        // dup2, setpgid, isatty, tcsetpgrp, and raw rt_sigaction and
        // rt_sigprocmask in child_reset), on plain data; nothing allocates.
        unsafe {
            if self.deathsig {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                if libc::getppid() != self.parent {
                    return Err(libc::ESRCH);
                }
            }
            // dup2(3, 3) would keep FD_CLOEXEC: clear it instead.
            let placed = match self.fd3 {
                Some(3) => libc::fcntl(3, libc::F_SETFD, 0),
                Some(fd) => libc::dup2(fd, 3),
                None => 0,
            };
            if placed < 0 {
                return Err(errno());
            }
            if self.new_group {
                libc::setpgid(0, 0);
                // Every signal is still blocked here, so SIGTTOU cannot
                // stop us for taking the foreground (tini -g does this).
                if libc::isatty(0) == 1 {
                    libc::tcsetpgrp(0, libc::getpid());
                }
            }
        }
        crate::signals::child_reset(
            &self.caught[..self.ncaught],
            self.keep_signals,
            Some(self.mask),
        );
        Ok(())
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A child to start: its argv and environment, complete before fork(2) so
/// that the child only makes syscalls. (std's `Command` would do the same
/// with a map of the environment; this is all gracewrap needs of it, at a
/// tenth of its code.)
#[derive(Debug)]
pub struct Child {
    argv: Vec<OsString>,
    /// `NAME=VALUE` entries.
    env: Vec<OsString>,
}

impl Child {
    /// `/proc/self/exe` with our environment minus the `LISTEN_*` variables.
    fn gracewrap() -> Child {
        let env = std::env::vars_os()
            .filter(|(name, _)| !LISTEN_VARS.iter().any(|v| name == v))
            .map(|(name, value)| entry(&name, &value))
            .collect();
        Child {
            argv: vec!["gracewrap".into()],
            env,
        }
    }

    fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Child {
        self.argv.push(arg.as_ref().to_owned());
        self
    }

    /// Sets `name` to `value`, replacing what was there.
    pub fn env(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Child {
        let name = name.as_ref();
        let prefix = entry(name, OsStr::new(""));
        self.env
            .retain(|e| !e.as_encoded_bytes().starts_with(prefix.as_encoded_bytes()));
        self.env.push(entry(name, value.as_ref()));
        self
    }

    /// fork(2), `setup` in the child, execve(2) of /proc/self/exe (which
    /// survives the binary being replaced on disk). Returns the child's pid
    /// once it has exec'd, or why it could not: the child writes its errno
    /// to a CLOEXEC pipe, which an exec closes.
    #[allow(unsafe_code)]
    pub fn spawn(&self, setup: &Setup) -> io::Result<i32> {
        use std::os::fd::AsRawFd;
        let (argv, env) = (CArray::new(&self.argv), CArray::new(&self.env));
        let (status_r, status_w) = io::pipe()?;
        let w = status_w.as_raw_fd();
        // SAFETY: gracewrap is single-threaded, so the child may run any
        // code; it runs only syscalls on memory prepared above, and ends in
        // execve or _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let err = match setup.run_in_child() {
                // SAFETY: NULL-terminated arrays of NUL-terminated strings
                // that outlive the call.
                Ok(()) => unsafe {
                    libc::execve(c"/proc/self/exe".as_ptr(), argv.as_ptr(), env.as_ptr());
                    errno()
                },
                Err(e) => e,
            };
            // SAFETY: a write of 4 bytes from a local, then _exit(2).
            unsafe {
                libc::write(w, (&raw const err).cast(), 4);
                libc::_exit(127)
            }
        }
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(status_w);
        let mut buf = [0u8; 4];
        let n = loop {
            match rustix::io::read(&status_r, &mut buf) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.unwrap_or(0),
            }
        };
        if n == 0 {
            return Ok(pid);
        }
        // It failed before exec: reap it, say why.
        let _ = rustix::process::waitpid(
            rustix::process::Pid::from_raw(pid),
            rustix::process::WaitOptions::empty(),
        );
        Err(io::Error::from_raw_os_error(i32::from_ne_bytes(buf)))
    }
}

fn entry(name: &OsStr, value: &OsStr) -> OsString {
    let mut e = name.to_owned();
    e.push("=");
    e.push(value);
    e
}

/// A gracewrap child in exec mode that adopts `count` sockets at fd 3..
/// named `names` and execs PROGRAM (see the module doc).
pub fn gracewrap_child(args: &Args, count: usize, names: &str) -> Child {
    let mut cmd = Child::gracewrap();
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
    cmd.arg("--").arg(&args.program);
    for arg in &args.args {
        cmd.arg(arg);
    }
    let me = std::process::id().to_string();
    cmd.env("LISTEN_FDS", count.to_string())
        .env("LISTEN_FDNAMES", names)
        .env("LISTEN_PID", &me)
        .env(HANDOFF_VAR, &me);
    for (name, value) in &args.setenv {
        if let Some(v) = value.clone().or_else(|| std::env::var_os(name)) {
            cmd.env(name, v);
        }
    }
    cmd
}

/// For messages: PROGRAM as the user wrote it.
pub fn program_name(args: &Args) -> String {
    crate::msg::quote(OsStr::new(&args.program))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error pipe: a step that fails in the child comes back as the
    /// spawn's error (dup2 of an fd that is not open: EBADF).
    #[test]
    fn a_child_that_fails_before_exec_reports_why() {
        let mut setup = Setup::new(&[], false, 0);
        setup.fd3 = Some(999_999);
        let err = Child::gracewrap().spawn(&setup).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    }

    #[test]
    fn env_replaces_a_variable_by_its_exact_name() {
        let mut child = Child {
            argv: vec![],
            env: vec!["A=1".into(), "AB=2".into(), "LISTEN_FDS=9".into()],
        };
        child.env("A", "3").env("LISTEN_FDS", "1");
        assert_eq!(child.env, ["AB=2", "A=3", "LISTEN_FDS=1"]);
    }
}
