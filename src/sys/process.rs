//! Processes: finding PROGRAM, executing it, and starting children.
//!
//! One PATH search serves every mode ([`search`]): the exec itself
//! ([`exec`], execvp(3)'s rules done here), the diagnosis of a failed exec
//! ([`exec_failure`]), and the resident modes' start-up check
//! ([`resolve`]). Without PATH the search uses the C library's default,
//! `/bin:/usr/bin` (glibc's `confstr(_CS_PATH)`), whatever the libc.
//!
//! A resident gracewrap starts children with [`spawn`]: clone(2) with
//! CLONE_VM | CLONE_VFORK, raw syscalls only ([`Setup`]), then execve(2)
//! of a [`Program`]. Everything the child needs (argv, envp, the PATH
//! candidates) is built before, so nothing allocates or takes a lock
//! between clone and exec.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::exit::{Failure, Status};
use crate::msg::{io_reason, quote};

/// execvp(3)'s search path when PATH is unset: glibc's
/// `confstr(_CS_PATH)`. (musl's execvp would use
/// `/usr/local/bin:/bin:/usr/bin`; gracewrap searches itself, so every
/// build behaves the same.)
pub const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// The C entry point: `c_main!(run)` defines `main(argc, argv)`, which
/// passes the arguments after `argv[0]` to `run` and exits with what it
/// returns. gracewrap has its own C `main` (`no_main`) because the Rust
/// runtime's start-up costs about 50 us for nothing an exec wrapper
/// needs; and argv comes from `main` itself because
/// `std::env::args_os()` is empty under musl without that runtime.
#[macro_export]
macro_rules! c_main {
    ($run:path) => {
        #[cfg(not(test))]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        extern "C" fn main(
            argc: ::libc::c_int,
            argv: *const *const ::libc::c_char,
        ) -> ::libc::c_int {
            // SAFETY: the C runtime passes `argc` valid NUL-terminated
            // strings in `argv`, alive for the whole process.
            let args = unsafe { $crate::sys::process::args(argc, argv) };
            ::libc::c_int::from($run(args))
        }
    };
}

/// The arguments after `argv[0]`, copied.
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings.
pub unsafe fn args(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    (1..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: i < argc, per the function's contract.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            OsStr::from_bytes(arg.to_bytes()).to_owned()
        })
        .collect()
}

/// Where execvp(3) looks for `program`: the path itself if it holds a
/// `/`, else each directory of `path` in order ([`DEFAULT_PATH`] without
/// one; an empty entry is the working directory).
pub fn search(program: &OsStr, path: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .collect()
}

/// The file [`exec`] will run for `program`, checked now: a resident
/// gracewrap fails at once with 127 or 126 instead of once per child.
/// Relative candidates are taken from `cwd` (the `--chdir` the program
/// will run in), else from ours.
pub fn resolve(
    program: &OsStr,
    path: Option<&OsStr>,
    cwd: Option<&Path>,
) -> Result<PathBuf, Failure> {
    let mut denied = false;
    for candidate in search(program, path) {
        let candidate = match cwd {
            Some(dir) if candidate.is_relative() => dir.join(candidate),
            _ => candidate,
        };
        if rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok()
            && candidate.metadata().is_ok_and(|m| m.is_file())
        {
            return Ok(candidate);
        }
        // There but not executable, or in a directory we may not search:
        // exec would say EACCES.
        denied |= match candidate.metadata() {
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::PermissionDenied,
        };
    }
    let errno = if denied { libc::EACCES } else { libc::ENOENT };
    Err(exec_failure(
        program,
        &io::Error::from_raw_os_error(errno),
        path,
        cwd,
    ))
}

/// An environment for PROGRAM, `NAME=VALUE` entries built before exec.
#[derive(Debug, Clone, Default)]
pub struct Env(Vec<CString>);

impl Env {
    /// Ours, minus the variables in `drop`: each entry copied once, as
    /// it is (std's `vars_os` would split and copy it twice more).
    pub fn ours_without(drop: &[&str]) -> Env {
        unsafe extern "C" {
            static environ: *const *const libc::c_char;
        }
        let mut out = Vec::new();
        // SAFETY: `environ` is the C library's NULL-terminated array of
        // NUL-terminated strings. gracewrap is single-threaded and never
        // changes its own environment, so the array stays as it is while
        // it is read here.
        unsafe {
            let mut p = environ;
            while !p.is_null() && !(*p).is_null() {
                let entry = CStr::from_ptr(*p);
                if !drop.iter().any(|d| is_entry_of(entry, d.as_bytes())) {
                    out.push(entry.to_owned());
                }
                p = p.add(1);
            }
        }
        Env(out)
    }

    /// Sets `name` to `value`, replacing what was there.
    pub fn set(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Env {
        let name = name.as_ref().as_bytes();
        self.0.retain(|e| !is_entry_of(e, name));
        self.0.push(entry(OsStr::from_bytes(name), value.as_ref()));
        self
    }

    /// The entries, `NAME=VALUE`.
    pub fn entries(&self) -> &[CString] {
        &self.0
    }

    /// Removes `name`.
    pub fn unset(&mut self, name: &str) -> &mut Env {
        self.0.retain(|e| !is_entry_of(e, name.as_bytes()));
        self
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.0.iter().find_map(|e| {
            let bytes = e.to_bytes();
            is_entry_of(e, name.as_bytes()).then(|| OsStr::from_bytes(&bytes[name.len() + 1..]))
        })
    }
}

fn is_entry_of(entry: &CStr, name: &[u8]) -> bool {
    let bytes = entry.to_bytes();
    bytes.len() > name.len() && bytes.starts_with(name) && bytes[name.len()] == b'='
}

fn entry(name: &OsStr, value: &OsStr) -> CString {
    let mut e = Vec::with_capacity(name.len() + value.len() + 2);
    e.extend_from_slice(name.as_bytes());
    e.push(b'=');
    e.extend_from_slice(value.as_bytes());
    cstring(e)
}

/// Arguments and environment entries come from the OS or from our own
/// formatting, so they hold no NUL byte; one that did would be cut there.
fn cstring(mut bytes: Vec<u8>) -> CString {
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(nul);
    }
    CString::new(bytes).unwrap_or_default()
}

/// An `argv` or `envp` for execve(2): the NULL-terminated array of
/// pointers to NUL-terminated strings it owns, made before the exec (or
/// the fork) that uses it.
#[derive(Debug)]
pub struct CArray {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CArray {
    fn new(strings: Vec<CString>) -> CArray {
        // The pointers stay valid when `strings` moves: each CString owns
        // its buffer.
        let ptrs = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        CArray {
            _strings: strings,
            ptrs,
        }
    }

    fn argv<S: AsRef<OsStr>>(items: impl IntoIterator<Item = S>) -> CArray {
        CArray::new(
            items
                .into_iter()
                .map(|s| cstring(s.as_ref().as_bytes().to_vec()))
                .collect(),
        )
    }

    fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// Replaces this process with PROGRAM: execvp(3)'s rules on [`search`]'s
/// candidates ([`Program::exec`]), in the environment `env` (and its PATH,
/// as env(1) does). Returns only on failure, with the exit status and
/// message for it.
pub fn exec(program: &OsStr, args: &[OsString], env: Env) -> Failure {
    let path = env.get("PATH").map(OsStr::to_owned);
    let prepared = Program::new(program, args, path.as_deref());
    let envp = CArray::new(env.0);
    let errno = prepared.exec(envp.as_ptr());
    let error = io::Error::from_raw_os_error(errno);
    exec_failure(program, &error, path.as_deref(), None)
}

/// A program to execute, prepared before any fork: the candidates of the
/// PATH search in order, its argv, and for each candidate the argv that
/// runs it under /bin/sh should the kernel refuse it (ENOEXEC: a script
/// without `#!`). [`Program::exec`] then needs no allocation.
#[derive(Debug)]
pub struct Program {
    candidates: Vec<CString>,
    argv: CArray,
    sh: Vec<CArray>,
}

impl Program {
    /// `program` with `args`, searched in `path` as [`search`] does.
    pub fn new(program: &OsStr, args: &[OsString], path: Option<&OsStr>) -> Program {
        let candidates: Vec<CString> = search(program, path)
            .into_iter()
            .map(|c| cstring(c.into_os_string().into_vec()))
            .collect();
        let rest = || args.iter().map(OsString::as_os_str);
        let sh = candidates
            .iter()
            .map(|c| {
                let c = OsStr::from_bytes(c.to_bytes());
                CArray::argv([OsStr::new("/bin/sh"), c].into_iter().chain(rest()))
            })
            .collect();
        Program {
            candidates,
            argv: CArray::argv(std::iter::once(program).chain(rest())),
            sh,
        }
    }

    /// gracewrap itself again: /proc/self/exe, which survives the binary
    /// being replaced on disk, with `argv`.
    pub fn this_binary(argv: &[OsString]) -> Program {
        Program {
            candidates: vec![c"/proc/self/exe".to_owned()],
            argv: CArray::argv(argv),
            sh: Vec::new(),
        }
    }

    /// execve(2) of each candidate in turn, as execvp(3) does it (glibc):
    /// a candidate that is missing (ENOENT, ENOTDIR, ...) or denied
    /// (EACCES, remembered) is skipped; one the kernel cannot run
    /// (ENOEXEC) runs under /bin/sh. Returns only on failure, with the
    /// errno that explains it. Async-signal-safe: no allocation.
    fn exec(&self, envp: *const *const libc::c_char) -> i32 {
        let mut denied = false;
        let mut error = libc::ENOENT;
        for (i, file) in self.candidates.iter().enumerate() {
            // SAFETY: `file`, `argv` and `envp` are NUL-terminated strings
            // and NULL-terminated arrays of them that outlive the call.
            unsafe { libc::execve(file.as_ptr(), self.argv.as_ptr(), envp) };
            error = errno();
            if error == libc::ENOEXEC
                && let Some(sh) = self.sh.get(i)
            {
                // SAFETY: as above.
                unsafe { libc::execve(c"/bin/sh".as_ptr(), sh.as_ptr(), envp) };
                error = errno();
            }
            if error == libc::EACCES {
                denied = true;
            } else if !is_missing(error) {
                break;
            }
        }
        if denied && is_missing(error) {
            libc::EACCES
        } else {
            error
        }
    }
}

/// The errors that mean "no such candidate": the search goes on, and an
/// earlier EACCES is the answer if none is left, as in execvp(3).
fn is_missing(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT
    )
}

/// PROGRAM could not be executed: 127 if it was not found, else 126, with
/// a message that says what is really missing. ENOENT for a file that is
/// there means its `#!` interpreter or its ELF loader is missing; "no
/// such file or directory" alone would send people looking for PROGRAM.
/// (The status stays 127 then, as in bash and env(1).)
/// Relative paths are taken from `cwd` if given, else from ours.
pub fn exec_failure(
    program: &OsStr,
    error: &io::Error,
    path: Option<&OsStr>,
    cwd: Option<&Path>,
) -> Failure {
    let from_cwd = |p: PathBuf| match cwd {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    };
    let not_found = error.kind() == io::ErrorKind::NotFound;
    let status = if not_found {
        Status::NotFound
    } else {
        Status::CannotExecute
    };
    let name = quote(program);
    let searched = !program.as_bytes().contains(&b'/');
    let file = search(program, path)
        .into_iter()
        .map(from_cwd)
        .find(|p| p.metadata().is_ok_and(|m| m.is_file()));
    let message = match file {
        Some(file) if not_found => match interpreter(&file) {
            Some(interp) => format!(
                "cannot execute {name}: its interpreter {} was not found",
                quote(&interp)
            ),
            None => format!(
                "cannot execute {name}: a file it needs was not found (its ELF interpreter, the dynamic loader)"
            ),
        },
        _ if not_found && searched => format!("cannot execute {name}: not found in PATH"),
        _ if !searched && from_cwd(PathBuf::from(program)).is_dir() => {
            format!("cannot execute {name}: is a directory")
        }
        _ => format!("cannot execute {name}: {}", io_reason(error)),
    };
    Failure { status, message }
}

/// The interpreter named by the `#!` line of `file`, if it has one.
fn interpreter(file: &Path) -> Option<OsString> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(file).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let interp = line
        .split(|b| *b == b' ' || *b == b'\t')
        .find(|w| !w.is_empty())?;
    Some(OsString::from_vec(interp.to_vec()))
}

/// PR_SET_PDEATHSIG: SIGTERM when `parent` dies. The kernel clears it on
/// every change of credentials, so a child that drops privileges calls
/// this again afterwards; it fails if `parent` is already gone (we were
/// re-parented before the signal could be armed).
pub fn die_with_parent(parent: u32) -> anyhow::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM)).map_err(
        |e| {
            anyhow::anyhow!(
                "cannot set the parent-death signal: {}",
                crate::msg::reason(e)
            )
        },
    )?;
    let now = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if now != parent {
        anyhow::bail!("the gracewrap that started this child (pid {parent}) is gone");
    }
    Ok(())
}

/// Credentials to take ([`take_creds`]): exec mode's `--user` and
/// `--group`, and accept mode's children's.
#[derive(Debug, Clone, Copy)]
pub struct Creds<'a> {
    pub groups: &'a [u32],
    pub gid: u32,
    /// None with `--group` alone: the uid stays.
    pub uid: Option<u32>,
}

/// What a child does between fork and exec, in this order: credentials,
/// the parent-death signal, the fd moves, RLIMIT_NOFILE, the process
/// group and terminal, the directory, `LISTEN_PID`, the signal state.
/// Raw syscalls only, on memory prepared before the fork.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// Put this fd (of the parent) at fd 3 without CLOEXEC.
    pub fd3: Option<RawFd>,
    /// Put `fd3` on stdin and stdout instead (`--inetd`).
    pub inetd: bool,
    /// Put these fds (of the parent) at `extra_at`, `extra_at + 1`...
    /// without CLOEXEC (the supervisor's fd store). Each must be at
    /// `extra_at + extra.len()` or above, so that no move overwrites one
    /// still to be moved.
    pub extra: &'a [RawFd],
    pub extra_at: RawFd,
    /// Get SIGTERM when gracewrap dies (PR_SET_PDEATHSIG).
    pub deathsig: bool,
    /// Lead a new process group.
    pub new_group: bool,
    /// With `new_group`: then take the foreground of the terminal on
    /// stdin, but only from one of these process groups (0: none), the
    /// ones gracewrap may hand it on from (its own, the generation that
    /// holds it). Never from a shell that holds it while gracewrap runs
    /// in the background.
    pub terminal_from: [i32; 2],
    /// Become this user and group.
    pub creds: Option<Creds<'a>>,
    /// Set RLIMIT_NOFILE to this (soft, hard).
    pub nofile: Option<(u64, u64)>,
    /// Change to this directory (after `creds`: as the user).
    pub chdir: Option<&'a CStr>,
    /// Add `LISTEN_PID` (and `LISTEN_PIDFDID`, where the kernel has
    /// pidfs) with the child's own pid to its environment.
    pub own_pid: bool,
    /// Our pid, to notice that we died before PR_SET_PDEATHSIG took hold.
    parent: i32,
    /// Signals gracewrap catches, to reset (every signal there is, at most).
    caught: [i32; 64],
    ncaught: usize,
    /// `--keep-signals`, and the mask to give back with it.
    keep_signals: bool,
    mask: u64,
}

/// The step of [`Setup`] a child failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// gracewrap died before the parent-death signal was armed.
    ParentGone,
    /// Moving an fd into place (dup2).
    Fds,
    Limit,
    Groups,
    Gid,
    Uid,
    /// set*id said yes, but the ids are not the ones asked for.
    GidUnchanged,
    UidUnchanged,
    /// After dropping to a user other than root, root could be regained.
    RootRegained,
    Chdir,
    /// execve(2) of every candidate ([`Program::exec`]).
    Exec,
}

/// Why a child never ran its program: the step and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    pub step: Step,
    pub errno: i32,
}

impl Failed {
    /// The child's exit status: 127 or 126 for the exec, as a shell has
    /// it; 125 for a step before.
    fn status(self) -> i32 {
        match self.step {
            Step::Exec if is_missing(self.errno) => 127,
            Step::Exec => 126,
            _ => 125,
        }
    }
}

fn check(rc: libc::c_long, step: Step) -> Result<(), Failed> {
    if rc < 0 {
        Err(Failed {
            step,
            errno: errno(),
        })
    } else {
        Ok(())
    }
}

/// Takes `creds` for good, in this order: supplementary groups, gid,
/// uid; then checks, as setpriv and gosu do, that the ids are the ones
/// asked for and, for a user other than root, that root cannot be
/// regained. The one privilege drop of gracewrap: exec mode's
/// ([`crate::sys::user::Target::drop_privileges`]) and accept mode's
/// children ([`Setup::creds`]).
///
/// Raw syscalls, which change the calling thread only: the C library's
/// wrappers would change every thread of the process through signals
/// (glibc's setxid broadcast, musl's __synccall), which a vfork child
/// must not do. gracewrap is single-threaded wherever it calls this, so
/// the thread is the process. Async-signal-safe; no allocation.
pub fn take_creds(creds: Creds<'_>) -> Result<(), Failed> {
    let groups = creds.groups;
    let gid = creds.gid;
    // SAFETY: set*id and get*id syscalls; setgroups reads `groups`, which
    // outlives the call.
    unsafe {
        check(
            libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
            Step::Groups,
        )?;
        check(libc::syscall(libc::SYS_setresgid, gid, gid, gid), Step::Gid)?;
        if let Some(uid) = creds.uid {
            check(libc::syscall(libc::SYS_setresuid, uid, uid, uid), Step::Uid)?;
        }
        let is = |nr, want: u32| libc::syscall(nr) == libc::c_long::from(want);
        if !is(libc::SYS_getgid, gid) || !is(libc::SYS_getegid, gid) {
            return Err(Failed {
                step: Step::GidUnchanged,
                errno: libc::EPERM,
            });
        }
        if let Some(uid) = creds.uid {
            if !is(libc::SYS_getuid, uid) || !is(libc::SYS_geteuid, uid) {
                return Err(Failed {
                    step: Step::UidUnchanged,
                    errno: libc::EPERM,
                });
            }
            if uid != 0 && libc::syscall(libc::SYS_setresuid, 0, 0, 0) == 0 {
                return Err(Failed {
                    step: Step::RootRegained,
                    errno: libc::EPERM,
                });
            }
        }
    }
    Ok(())
}

impl Setup<'_> {
    pub fn new(caught: &[i32], keep_signals: bool, mask: u64) -> Setup<'static> {
        let mut arr = [0; 64];
        let n = caught.len().min(64);
        arr[..n].copy_from_slice(&caught[..n]);
        Setup {
            fd3: None,
            inetd: false,
            extra: &[],
            extra_at: 0,
            deathsig: false,
            new_group: false,
            terminal_from: [0; 2],
            creds: None,
            nofile: None,
            chdir: None,
            own_pid: false,
            parent: std::process::id() as i32,
            caught: arr,
            ncaught: n,
            keep_signals,
            mask,
        }
    }

    /// The steps up to the signal state, in the child.
    fn run_in_child(&self) -> Result<(), Failed> {
        // SAFETY: async-signal-safe calls only (take_creds' raw set*id
        // syscalls, prctl, getppid, fcntl, dup2, prlimit64, setpgid,
        // tcgetpgrp, getpid, tcsetpgrp, chdir), on plain data that the
        // parent keeps alive across the fork (`creds.groups`, `extra`,
        // `chdir` are borrowed from it); nothing allocates.
        unsafe {
            if let Some(creds) = self.creds {
                take_creds(creds)?;
            }
            // After the credentials, which clear it.
            if self.deathsig {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                if libc::getppid() != self.parent {
                    return Err(Failed {
                        step: Step::ParentGone,
                        errno: libc::ESRCH,
                    });
                }
            }
            match (self.fd3, self.inetd) {
                (Some(fd), true) => {
                    // The connection stays CLOEXEC where it is: it closes
                    // on exec, and only stdin and stdout remain.
                    check(libc::dup2(fd, 0).into(), Step::Fds)?;
                    check(libc::dup2(fd, 1).into(), Step::Fds)?;
                }
                // dup2(3, 3) would keep FD_CLOEXEC: clear it instead.
                (Some(3), false) => check(libc::fcntl(3, libc::F_SETFD, 0).into(), Step::Fds)?,
                (Some(fd), false) => check(libc::dup2(fd, 3).into(), Step::Fds)?,
                (None, _) => {}
            }
            // Every source is above every target (see `extra`): no move
            // overwrites an fd still to be moved.
            for (i, &fd) in self.extra.iter().enumerate() {
                check(libc::dup2(fd, self.extra_at + i as RawFd).into(), Step::Fds)?;
            }
            if let Some((soft, hard)) = self.nofile {
                // The kernel's struct rlimit64, whatever the libc's types.
                #[repr(C)]
                struct Rlimit64 {
                    cur: u64,
                    max: u64,
                }
                let limit = Rlimit64 {
                    cur: soft,
                    max: hard,
                };
                let none: *mut Rlimit64 = std::ptr::null_mut();
                check(
                    libc::syscall(
                        libc::SYS_prlimit64,
                        0,
                        libc::RLIMIT_NOFILE,
                        &raw const limit,
                        none,
                    ),
                    Step::Limit,
                )?;
            }
            if self.new_group {
                libc::setpgid(0, 0);
                // Every signal is still blocked here, so SIGTTOU cannot
                // stop us for taking the foreground (tini -g does this).
                // tcgetpgrp fails (-1) unless stdin is our controlling
                // terminal.
                let holder = libc::tcgetpgrp(0);
                if holder > 0 && self.terminal_from.contains(&holder) {
                    libc::tcsetpgrp(0, libc::getpid());
                }
            }
            if let Some(dir) = self.chdir {
                check(libc::chdir(dir.as_ptr()).into(), Step::Chdir)?;
            }
        }
        Ok(())
    }

    /// Resets the signal state for the program, last before exec: until
    /// then every signal stays blocked, so no handler of gracewrap's can
    /// run in the child.
    fn reset_signals(&self) {
        crate::sys::signals::child_reset(
            &self.caught[..self.ncaught],
            self.keep_signals,
            Some(self.mask),
        );
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The stack a `clone(CLONE_VM | CLONE_VFORK)` child runs on until it
/// execs: mapped once, with a guard page below it, and reused by every
/// child (the parent is suspended while one uses it).
#[derive(Debug)]
pub struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

/// Room for [`Setup`]'s steps and [`Program::exec`], which use little.
const STACK_SIZE: usize = 64 * 1024;

impl Stack {
    pub fn new() -> io::Result<Stack> {
        // SAFETY: sysconf has no memory effects.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = STACK_SIZE + page;
        // SAFETY: a new private anonymous mapping; nothing else refers to
        // the range.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // The lowest page: an overflow faults instead of writing into
        // whatever lies below. SAFETY: the first page of our own mapping.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The top, where a downward-growing stack starts (16-byte aligned:
    /// mmap returns page-aligned memory).
    fn top(&mut self) -> *mut libc::c_void {
        // SAFETY: one past the end of our mapping, which clone(2) takes as
        // the initial stack pointer.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our mapping; no child runs on it once spawn returned.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Why [`spawn`] started nothing.
#[derive(Debug)]
pub enum SpawnError {
    /// clone(2) or fork(2) failed (EAGAIN: too many processes).
    Fork(io::Error),
    /// The child failed at a step before its program ran.
    Child(Failed),
}

/// The prefixes of the entries a child completes with its pid and pidfd
/// id (see `run_child`).
const PID_PREFIX: &[u8] = b"LISTEN_PID=";
const PIDFDID_PREFIX: &[u8] = b"LISTEN_PIDFDID=";

/// What the child gets, all of it prepared by the parent.
struct ChildArgs<'a> {
    setup: &'a Setup<'a>,
    program: &'a Program,
    envp: *mut *const libc::c_char,
    /// With `own_pid`: where in `envp` the two pid entries are.
    pid_at: usize,
    pid_entry: *mut u8,
    pidfd_entry: *mut u8,
    /// Where a vfork child leaves its failure for the parent.
    failed: *mut Option<Failed>,
}

/// Starts `program` in a child with the environment `env` then `more`,
/// after the steps of `setup`. Returns its pid once it runs `program`,
/// or why it does not.
///
/// How: clone(2) with CLONE_VM | CLONE_VFORK, as posix_spawn(3) does in
/// glibc and musl: no page tables are copied (fork(2) of a resident
/// gracewrap costs more than the exec that follows), the parent sleeps
/// until the child has exec'd or exited, and a failure comes back
/// through the memory they share. The child runs on [`Stack`] with every
/// signal blocked, so no handler of ours can run on shared memory, and
/// does only [`Setup`]'s raw syscalls and [`Program::exec`]: nothing
/// allocates or takes a lock.
///
/// With a uid in `setup.creds`, fork(2) instead, and the parent does not
/// wait: a child that has become the user can be stopped by that user
/// (SIGSTOP) before it execs, and a parent suspended by CLONE_VFORK would
/// then stop serving. Such a child reports its own failure with
/// `report` (a fork child may allocate: gracewrap is single-threaded)
/// and [`spawn`] returns its pid.
pub fn spawn(
    program: &Program,
    env: &[CString],
    more: &[CString],
    setup: &Setup<'_>,
    stack: &mut Stack,
    report: &dyn Fn(Failed),
) -> Result<i32, SpawnError> {
    let mut ptrs: Vec<*const libc::c_char> = Vec::with_capacity(env.len() + more.len() + 3);
    ptrs.extend(env.iter().chain(more).map(|e| e.as_ptr()));
    let pid_at = ptrs.len();
    let mut pid_entry = [0u8; 32];
    let mut pidfd_entry = [0u8; 40];
    pid_entry[..PID_PREFIX.len()].copy_from_slice(PID_PREFIX);
    pidfd_entry[..PIDFDID_PREFIX.len()].copy_from_slice(PIDFDID_PREFIX);
    if setup.own_pid {
        ptrs.push(pid_entry.as_ptr().cast());
        ptrs.push(pidfd_entry.as_ptr().cast());
    }
    ptrs.push(std::ptr::null());
    let mut failed: Option<Failed> = None;
    let args = ChildArgs {
        setup,
        program,
        envp: ptrs.as_mut_ptr(),
        pid_at,
        pid_entry: pid_entry.as_mut_ptr(),
        pidfd_entry: pidfd_entry.as_mut_ptr(),
        failed: &raw mut failed,
    };
    if setup.creds.is_some_and(|c| c.uid.is_some()) {
        // SAFETY: gracewrap is single-threaded, so the child may run any
        // code; it runs the steps and exec, or reports and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let f = run_child(&args);
            report(f);
            // SAFETY: _exit(2) ends the child without running anything
            // of the parent's.
            unsafe { libc::_exit(f.status()) }
        }
        return if pid < 0 {
            Err(SpawnError::Fork(io::Error::last_os_error()))
        } else {
            Ok(pid)
        };
    }
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    // SAFETY: the child runs `vfork_child` on `stack`, which nothing else
    // uses, with `args`, which lives on our frame; CLONE_VFORK suspends us
    // until it has exec'd or exited, so all it borrows outlives it, and
    // nothing of ours runs meanwhile.
    let pid = unsafe {
        libc::clone(
            vfork_child,
            stack.top(),
            flags,
            (&raw const args).cast_mut().cast(),
        )
    };
    if pid < 0 {
        return Err(SpawnError::Fork(io::Error::last_os_error()));
    }
    // The child wrote `failed` (through `args.failed`) before it exited.
    match failed {
        Some(f) => Err(SpawnError::Child(f)),
        None => Ok(pid),
    }
}

extern "C" fn vfork_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` on the suspended parent's frame
    // (see `spawn`).
    let args = unsafe { &*arg.cast::<ChildArgs<'_>>() };
    let f = run_child(args);
    // SAFETY: the parent's `failed`, which it reads once we are gone;
    // then _exit(2), never a return into the parent's code.
    unsafe {
        *args.failed = Some(f);
        libc::_exit(f.status())
    }
}

/// The child: the steps, its own pid, the signal state, exec. Returns
/// only why it did not exec.
fn run_child(args: &ChildArgs<'_>) -> Failed {
    if let Err(f) = args.setup.run_in_child() {
        return f;
    }
    if args.setup.own_pid {
        // SAFETY: the pid entries and `envp` are the parent's buffers,
        // prepared for this (see `spawn`), in memory we own or share
        // with a suspended parent: each entry has 21 bytes after its
        // prefix (32 = 11 + 21, 40 > 15 + 21), and `pid_at + 1` is the
        // LISTEN_PIDFDID slot, before the final NULL.
        unsafe {
            let pid = libc::getpid() as u64;
            let at = args.pid_entry.add(PID_PREFIX.len()).cast::<[u8; 21]>();
            write_number(&mut *at, pid);
            match pidfd_id() {
                Some(id) => {
                    let at = args
                        .pidfd_entry
                        .add(PIDFDID_PREFIX.len())
                        .cast::<[u8; 21]>();
                    write_number(&mut *at, id);
                }
                // The entry goes: the array ends there.
                None => *args.envp.add(args.pid_at + 1) = std::ptr::null(),
            }
        }
    }
    args.setup.reset_signals();
    Failed {
        step: Step::Exec,
        errno: args.program.exec(args.envp.cast_const()),
    }
}

/// Writes `n` in decimal and a NUL at the start of `out`, as a pid entry
/// of [`spawn`] needs; no allocation.
fn write_number(out: &mut [u8; 21], mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    out[len] = 0;
}

/// The inode number of a pidfd for this process (pidfs, Linux 6.9+), as
/// [`crate::protocol::pidfd_id`] finds it, with raw syscalls only.
fn pidfd_id() -> Option<u64> {
    const PIDFS_MAGIC: i64 = 0x5049_4446;
    // SAFETY: pidfd_open, fstatfs, fstat and close on an fd we opened,
    // into local structs.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as libc::c_int;
        if fd < 0 {
            return None;
        }
        // The raw syscalls: musl has no fstatfs64, and its wrappers are
        // no better than these.
        let mut fs: libc::statfs = std::mem::zeroed();
        let mut st: libc::stat = std::mem::zeroed();
        let ok = libc::syscall(libc::SYS_fstatfs, fd, &raw mut fs) == 0
            && fs.f_type as i64 == PIDFS_MAGIC
            && libc::syscall(libc::SYS_fstat, fd, &raw mut st) == 0;
        libc::close(fd);
        ok.then_some(st.st_ino as u64)
    }
}

#[cfg(test)]
mod tests;
