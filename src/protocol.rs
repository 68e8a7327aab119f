//! The socket-activation protocol's names and numbers (sd_listen_fds(3),
//! sd_notify(3)), and the one place that writes the `LISTEN_*` variables.
//! A leaf: it knows nothing of the rest of gracewrap.

use std::os::fd::RawFd;

/// `SD_LISTEN_FDS_START` from sd-daemon.h: the first passed fd.
pub const FIRST_FD: RawFd = 3;

/// The name of a socket nobody named, as libsystemd reports it.
pub const DEFAULT_NAME: &str = "unknown";

/// The name a connection gets in `--accept` mode, as under systemd's
/// `Accept=yes`.
pub const CONNECTION_NAME: &str = "connection";

/// The variable a service manager's notification socket comes in.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Marks a set of sockets gracewrap hands to its own child gracewrap (the
/// resident modes); holds the parent's pid. See handoff/inherit.rs.
pub const HANDOFF_VAR: &str = "GRACEWRAP_HANDOFF";

/// With a handoff: the RLIMIT_NOFILE (`SOFT HARD`) gracewrap's caller
/// had, for the child gracewrap to give PROGRAM (the resident gracewrap
/// keeps the one it raised to hold the sockets).
pub const NOFILE_VAR: &str = "GRACEWRAP_NOFILE";

/// With a handoff from the supervisor: `--watchdog` in microseconds, for
/// the child gracewrap to turn into `WATCHDOG_USEC` and a `WATCHDOG_PID`
/// naming PROGRAM ([`watchdog_env`]), a pid the supervisor cannot know.
pub const WATCHDOG_VAR: &str = "GRACEWRAP_WATCHDOG";

/// sd_watchdog_enabled(3)'s variables: a resident gracewrap's describe
/// gracewrap itself, so its children never inherit them.
pub const WATCHDOG_VARS: [&str; 2] = ["WATCHDOG_USEC", "WATCHDOG_PID"];

/// What `--accept` tells each connection's program about its peer, as
/// systemd does for `Accept=yes` services (IP and vsock peers only).
pub const REMOTE_VARS: [&str; 2] = ["REMOTE_ADDR", "REMOTE_PORT"];

/// Variables gracewrap owns: removed from the environment PROGRAM
/// inherits, set only here, never settable with `--setenv`.
pub const LISTEN_VARS: [&str; 8] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "LISTEN_FDS_FIRST_FD",
    HANDOFF_VAR,
    NOFILE_VAR,
    WATCHDOG_VAR,
];

/// The `LISTEN_*` variables for a program that will run as this very
/// process (exec mode: `LISTEN_PID` is our pid, since exec keeps it).
/// Without `with_pid` (`--no-pid`), `LISTEN_PID` and `LISTEN_PIDFDID` are
/// left out.
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

/// `WATCHDOG_USEC` and `WATCHDOG_PID` (our pid, which exec keeps) from
/// the supervisor's [`WATCHDOG_VAR`], if it is a number of microseconds;
/// `WATCHDOG_PID` is left out without `with_pid` (`--no-pid`), as
/// `LISTEN_PID` is.
pub fn watchdog_env(usec: Option<&str>, with_pid: bool) -> Vec<(&'static str, String)> {
    let Some(usec) = usec.filter(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit())) else {
        return Vec::new();
    };
    let mut env = vec![(WATCHDOG_VARS[0], usec.to_string())];
    if with_pid {
        env.push((WATCHDOG_VARS[1], std::process::id().to_string()));
    }
    env
}

/// The variables a resident gracewrap gives its child gracewrap, whose pid
/// it cannot know before fork(2): `LISTEN_PID` and [`HANDOFF_VAR`] name
/// us, the parent, and the child takes the set over only when both equal
/// its parent's pid (then sets `LISTEN_PID` to its own with [`listen_env`]).
pub fn handoff_env(count: usize, names: &str) -> [(&'static str, String); 4] {
    let me = std::process::id().to_string();
    [
        ("LISTEN_FDS", count.to_string()),
        ("LISTEN_FDNAMES", names.to_string()),
        ("LISTEN_PID", me.clone()),
        (HANDOFF_VAR, me),
    ]
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
