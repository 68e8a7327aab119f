//! Processes: finding PROGRAM, executing it, and starting children.
//!
//! One PATH search serves every mode ([`search`]): the exec itself
//! ([`exec`], execvp(3)'s rules done here), the diagnosis of a failed exec
//! ([`exec_failure`]), and the resident modes' start-up check
//! ([`resolve`]). Without PATH the search uses the C library's default,
//! `/bin:/usr/bin` (glibc's `confstr(_CS_PATH)`), whatever the libc.
//!
//! A resident gracewrap starts children with [`Child::spawn`]: fork(2),
//! raw syscalls only ([`Setup`]), then execve(2). Everything the child
//! needs (argv, envp) is built before the fork, so nothing allocates or
//! takes a lock between fork and exec.
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
/// candidates, in the environment `env` (and its PATH, as env(1) does).
/// Like glibc: a candidate that is missing (ENOENT, ENOTDIR, ...) or
/// denied (EACCES, remembered) is skipped; a file the kernel cannot run
/// (ENOEXEC: a script without `#!`) runs under /bin/sh. Returns only on
/// failure, with the exit status and message for it.
pub fn exec(program: &OsStr, args: &[OsString], env: Env) -> Failure {
    let path = env.get("PATH").map(OsStr::to_owned);
    let candidates = search(program, path.as_deref());
    let argv = CArray::argv(std::iter::once(program).chain(args.iter().map(OsString::as_os_str)));
    let envp = CArray::new(env.0);
    let mut denied = false;
    let mut error = io::Error::from_raw_os_error(libc::ENOENT);
    for candidate in &candidates {
        let file = cstring(candidate.as_os_str().as_bytes().to_vec());
        // SAFETY: `file`, `argv` and `envp` are NUL-terminated strings and
        // NULL-terminated arrays of them that outlive the call.
        unsafe { libc::execve(file.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOEXEC) {
            let sh = CArray::argv(
                [OsStr::new("/bin/sh"), candidate.as_os_str()]
                    .into_iter()
                    .chain(args.iter().map(OsString::as_os_str)),
            );
            // SAFETY: as above.
            unsafe { libc::execve(c"/bin/sh".as_ptr(), sh.as_ptr(), envp.as_ptr()) };
            error = io::Error::last_os_error();
        }
        if error.raw_os_error() == Some(libc::EACCES) {
            denied = true;
        } else if !is_missing(&error) {
            break;
        }
    }
    if denied && is_missing(&error) {
        error = io::Error::from_raw_os_error(libc::EACCES);
    }
    exec_failure(program, &error, path.as_deref(), None)
}

/// The errors that mean "no such candidate": the search goes on, and an
/// earlier EACCES is the answer if none is left, as in execvp(3).
fn is_missing(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT)
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

/// What a forked child does before exec. Raw syscalls only.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// Put this fd (of the parent) at fd 3 without CLOEXEC.
    pub fd3: Option<RawFd>,
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
    /// Our pid, to notice that we died before PR_SET_PDEATHSIG took hold.
    parent: i32,
    /// Signals gracewrap catches, to reset (every signal there is, at most).
    caught: [i32; 64],
    ncaught: usize,
    /// `--keep-signals`, and the mask to give back with it.
    keep_signals: bool,
    mask: u64,
}

impl Setup<'_> {
    pub fn new(caught: &[i32], keep_signals: bool, mask: u64) -> Setup<'static> {
        let mut arr = [0; 64];
        let n = caught.len().min(64);
        arr[..n].copy_from_slice(&caught[..n]);
        Setup {
            fd3: None,
            extra: &[],
            extra_at: 0,
            deathsig: false,
            new_group: false,
            terminal_from: [0; 2],
            parent: std::process::id() as i32,
            caught: arr,
            ncaught: n,
            keep_signals,
            mask,
        }
    }

    /// The steps, in the forked child. Returns an errno on failure.
    fn run_in_child(&self) -> Result<(), i32> {
        // SAFETY: async-signal-safe calls only (prctl, getppid, fcntl,
        // dup2, setpgid, tcgetpgrp, getpid, tcsetpgrp, and raw
        // rt_sigaction and rt_sigprocmask in child_reset), on plain data
        // (`terminal_from` is an array in `self`, `extra` a slice the
        // parent keeps alive across fork); nothing allocates.
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
            // Every source is above every target (see `extra`): no move
            // overwrites an fd still to be moved.
            for (i, &fd) in self.extra.iter().enumerate() {
                if libc::dup2(fd, self.extra_at + i as RawFd) < 0 {
                    return Err(errno());
                }
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
        }
        crate::sys::signals::child_reset(
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

/// A child to start: gracewrap itself again (/proc/self/exe, which
/// survives the binary being replaced on disk) with these arguments and
/// this environment.
#[derive(Debug)]
pub struct Child {
    pub argv: Vec<OsString>,
    pub env: Env,
}

impl Child {
    /// fork(2), `setup` in the child, execve(2) of /proc/self/exe. Returns
    /// the child's pid once it has exec'd, or why it could not: the child
    /// writes its errno to a CLOEXEC pipe, which an exec closes.
    pub fn spawn(&self, setup: &Setup<'_>) -> io::Result<i32> {
        use std::os::fd::AsRawFd;
        let argv = CArray::argv(&self.argv);
        let envp = CArray::new(self.env.0.clone());
        let (status_r, mut status_w) = io::pipe()?;
        if !setup.extra.is_empty() {
            // Above the fds the child places: a failure is reported on
            // this pipe, never written into a stored fd.
            let above = setup.extra_at + setup.extra.len() as RawFd;
            status_w = rustix::io::fcntl_dupfd_cloexec(&status_w, above)?.into();
        }
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
                    libc::execve(c"/proc/self/exe".as_ptr(), argv.as_ptr(), envp.as_ptr());
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

#[cfg(test)]
mod tests;
