//! Exec mode: sockets at 3.., the LISTEN_* environment, then execve(2) of
//! PROGRAM in this very process, so `LISTEN_PID` is simply our pid.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use crate::cli::{Args, LISTEN_VARS, UsageError};
use crate::fds;
use crate::msg::{io_reason, quote, reason, say};
use crate::prepare::{self, Prepared};
use crate::signals;
use crate::sockets;
use crate::spec::Spec;
use crate::user::Target;

/// Runs PROGRAM with the sockets: exec mode (possibly `--lazy` or
/// `--inetd`), or the resident `--accept` and `--supervise` modes, which
/// return their exit status; exec mode returns only on failure.
pub fn run(args: Args) -> Result<u8> {
    // Resolved before anything is bound: an unknown user leaves no trace.
    let target = match (&args.user, &args.group) {
        (None, None) => None,
        (user, group) => Some(crate::user::resolve_system(
            user.as_deref(),
            group.as_deref(),
        )?),
    };
    let prepared = prepare::prepare(&args)?;
    if prepared.sockets.is_empty() {
        let mut msg = "no sockets: give --listen, or run gracewrap where LISTEN_FDS is set for it"
            .to_string();
        if let Some(why) = &prepared.ignored {
            msg.push_str(&format!(" (LISTEN_FDS was ignored: {why})"));
        }
        return Err(UsageError(msg).into());
    }
    if args.accept {
        return crate::accept::run(&args, prepared);
    }
    if args.supervise.is_some() {
        return crate::supervise::run(&args, prepared);
    }
    // From here on a failure means PROGRAM never ran: the socket files
    // bound for it go again, as in the resident modes.
    let created = prepared.created.clone();
    let err = if args.inetd && prepared.sockets.len() != 1 {
        UsageError(format!(
            "--inetd without --accept takes exactly one socket, there are {} (inherited ones count)",
            prepared.sockets.len()
        ))
        .into()
    } else {
        exec_mode(&args, prepared, target.as_ref())
    };
    prepare::remove_created(&created);
    Err(err)
}

fn exec_mode(args: &Args, prepared: Prepared, target: Option<&Target>) -> anyhow::Error {
    match place_and_exec(args, prepared, target) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn place_and_exec(
    args: &Args,
    prepared: Prepared,
    target: Option<&Target>,
) -> Result<std::convert::Infallible> {
    let Prepared { sockets, limit, .. } = prepared;
    let mut names = Vec::with_capacity(sockets.len());
    let mut inherited = Vec::with_capacity(sockets.len());
    let fds: Vec<OwnedFd> = sockets
        .into_iter()
        .map(|s| {
            names.push(s.name);
            inherited.push(s.inherited);
            s.fd
        })
        .collect();
    let fds =
        fds::place(fds).map_err(|e| anyhow!("cannot move the sockets to fd 3..: {}", reason(e)))?;
    if args.verbose || args.listen.iter().any(Spec::wants_free_port) {
        for ((fd, name), inherited) in fds.iter().zip(&names).zip(&inherited) {
            report(fd, name, *inherited);
        }
    }
    if args.lazy {
        wait_for_traffic(&fds)?;
    }
    limit.restore();
    if args.inetd {
        // systemd's StandardInput=socket: the socket on stdin and stdout,
        // nothing at fd 3, no LISTEN_* variables at all.
        fds::to_stdio(&fds[0])
            .map_err(|e| anyhow!("cannot put the socket on stdin/stdout: {}", reason(e)))?;
        drop(fds);
        return Err(exec(args, &[], target));
    }
    let err = exec(
        args,
        &listen_env(fds.len(), &names.join(":"), !args.no_pid),
        target,
    );
    drop(fds);
    Err(err)
}

/// `--lazy`: block until any socket is readable (a pending connection or
/// a datagram), as systemd-socket-activate does by default.
fn wait_for_traffic(fds: &[OwnedFd]) -> Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    loop {
        match poll(&mut polls, None) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(anyhow!(
                    "cannot wait for the first connection: {}",
                    reason(e)
                ));
            }
        }
    }
}

/// `gracewrap: listening on 127.0.0.1:39211 (fd 3, name http)`.
pub fn report(fd: impl AsFd, name: &str, inherited: bool) {
    let addr = sockets::describe(fd.as_fd());
    let fd = fd.as_fd().as_raw_fd();
    let from = if inherited { ", inherited" } else { "" };
    match name {
        prepare::DEFAULT_NAME => say(format_args!("listening on {addr} (fd {fd}{from})")),
        "" => say(format_args!(
            "listening on {addr} (fd {fd}, name \"\"{from})"
        )),
        _ => say(format_args!(
            "listening on {addr} (fd {fd}, name {name}{from})"
        )),
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
pub fn pidfd_id() -> Option<u64> {
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
        if self.error.kind() == io::ErrorKind::NotFound {
            // ENOENT for a file that is there: what is missing is the
            // interpreter its `#!` line names, or the ELF dynamic loader.
            // "no such file or directory" alone sends people looking for
            // PROGRAM itself. (The status stays 127, as bash and env(1).)
            if let Some(file) = found(&self.program) {
                return match interpreter(&file) {
                    Some(interp) => write!(
                        f,
                        "cannot execute {name}: its interpreter {} was not found",
                        quote(&interp)
                    ),
                    None => write!(
                        f,
                        "cannot execute {name}: a file it needs was not found (its ELF interpreter, the dynamic loader)"
                    ),
                };
            }
        }
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

/// The regular file execvp(3) would have run for `program`: the path
/// itself if it has a slash, else the first one in PATH (as PROGRAM gets
/// it: exec mode has applied `--setenv` to our own environment by then).
fn found(program: &OsStr) -> Option<PathBuf> {
    crate::spawn::candidates(program, std::env::var_os("PATH"))
        .into_iter()
        .find(|p| p.metadata().is_ok_and(|m| m.is_file()))
}

/// The interpreter named by the `#!` line of `file`, if it has one.
fn interpreter(file: &Path) -> Option<OsString> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(file).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let interp = line
        .split(|b| *b == b' ' || *b == b'\t')
        .find(|w| !w.is_empty())?;
    Some(OsStr::from_bytes(interp).to_owned())
}

/// Replaces this process with PROGRAM, searching PATH like execvp(3) (in
/// the PATH PROGRAM will get, as env(1) does).
///
/// The environment is edited in place (gracewrap is single-threaded) and
/// execvp(3) is called directly rather than through `std::process::Command`:
/// std would reset SIGPIPE behind our back and copy the environment into a
/// map first.
fn exec(args: &Args, listen: &[(&'static str, String)], target: Option<&Target>) -> anyhow::Error {
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
    if let Some(target) = target {
        // HOME, USER, LOGNAME of the new user, unless --setenv says otherwise.
        for (name, value) in target.env() {
            if !args.setenv.iter().any(|(n, _)| n == name) {
                env::set(name, value);
            }
        }
    }
    for (name, value) in copies {
        if let Some(value) = value {
            env::set(name, value);
        }
    }
    if let Some(target) = target
        && let Err(e) = target.drop_privileges()
    {
        return e;
    }
    if let Some(dir) = &args.chdir
        && let Err(e) = std::env::set_current_dir(dir)
    {
        return anyhow!(
            "cannot change directory to {}: {}",
            quote(dir),
            io_reason(&e)
        );
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
pub mod env {
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
        let argv =
            CArray::new(std::iter::once(program).chain(args.iter().map(OsString::as_os_str)));
        // SAFETY: `argv` outlives the call and is a NULL-terminated array
        // of NUL-terminated strings, the first one PROGRAM.
        unsafe { libc::execvp(*argv.as_ptr(), argv.as_ptr()) };
        io::Error::last_os_error()
    }

    /// An `argv` or `envp` for exec: NUL-terminated strings and the
    /// NULL-terminated array of pointers to them, made before the exec
    /// (or the fork) that uses it.
    #[derive(Debug)]
    pub struct CArray {
        _strings: Vec<CString>,
        ptrs: Vec<*const libc::c_char>,
    }

    impl CArray {
        pub fn new<S: AsRef<OsStr>>(items: impl IntoIterator<Item = S>) -> CArray {
            // Arguments and environment entries come from the OS, or from
            // our own formatting: no NUL bytes.
            let strings: Vec<CString> = items
                .into_iter()
                .map(|s| CString::new(s.as_ref().as_bytes()).unwrap_or_default())
                .collect();
            // The pointers stay valid when `strings` moves: each CString
            // owns its buffer.
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

        pub fn as_ptr(&self) -> *const *const libc::c_char {
            self.ptrs.as_ptr()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn message(program: &Path) -> String {
        ExecError {
            program: program.as_os_str().to_owned(),
            error: io::Error::from_raw_os_error(libc::ENOENT),
        }
        .to_string()
    }

    #[test]
    fn a_missing_interpreter_is_named_not_the_program() {
        let dir = std::env::temp_dir().join(format!("gracewrap-exec-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("script");
        std::fs::write(&script, "#!/no/such/interp -x\necho\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let elf = dir.join("elf");
        std::fs::write(&elf, b"\x7fELF").unwrap();
        std::fs::set_permissions(&elf, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            message(&script),
            format!(
                "cannot execute {}: its interpreter /no/such/interp was not found",
                script.display()
            )
        );
        assert_eq!(
            message(&elf),
            format!(
                "cannot execute {}: a file it needs was not found (its ELF interpreter, the dynamic loader)",
                elf.display()
            )
        );
        // Not there at all: the plain messages.
        let gone = dir.join("gone");
        assert_eq!(
            message(&gone),
            format!(
                "cannot execute {}: no such file or directory",
                gone.display()
            )
        );
        assert_eq!(
            message(Path::new("gracewrap-no-such-program")),
            "cannot execute gracewrap-no-such-program: not found in PATH"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
