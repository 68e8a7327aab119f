//! The `LISTEN_*` variables read by the rules of inherit.rs's table, as a
//! pure function: the variables' bytes and what the reading process is
//! (its pid, its parent, its pidfd id, which fds it has open) in, the
//! decision out. inherit.rs feeds it the real environment and then takes
//! the fds over; the property tests and the `listen_env` fuzz target
//! (fuzz/fuzz_targets/listen_env.rs, which includes this file by path)
//! feed it anything.
//!
//! Nothing here grows with `LISTEN_FDS`'s value before the last of its
//! fds was found open: a huge count costs one fcntl and an error, not
//! gigabytes of names.

use std::borrow::Cow;
use std::fmt;
use std::os::fd::RawFd;
use std::str::FromStr;

use crate::protocol::{DEFAULT_NAME, FIRST_FD};
use crate::spec::check_name;

/// The variables as the environment holds them; None when unset.
#[derive(Debug, Default, Clone, Copy)]
pub struct Vars<'a> {
    /// `LISTEN_PID`.
    pub pid: Option<&'a [u8]>,
    /// `LISTEN_PIDFDID`.
    pub pidfd_id: Option<&'a [u8]>,
    /// `LISTEN_FDS`.
    pub fds: Option<&'a [u8]>,
    /// `LISTEN_FDNAMES`.
    pub names: Option<&'a [u8]>,
    /// gracewrap's own handoff mark ([`crate::protocol::HANDOFF_VAR`]).
    pub handoff: Option<&'a [u8]>,
}

/// What [`read`] asks about the process that reads the variables, each
/// only when a rule needs it.
pub trait Reader {
    fn pid(&self) -> u32;
    /// The parent's pid (0 if there is none).
    fn parent(&self) -> u32;
    /// The pidfd inode id, None where the kernel has none (Linux < 6.9).
    fn pidfd_id(&self) -> Option<u64>;
    fn is_open(&self, fd: RawFd) -> bool;
}

/// What the variables say.
#[derive(Debug, PartialEq, Eq)]
pub enum Listen {
    /// No `LISTEN_PID` or no `LISTEN_FDS`: nothing inherited.
    Nothing,
    /// Meant for another process: nothing inherited, and why.
    Ignored(String),
    /// Fds `FIRST_FD..FIRST_FD + names.len()` are ours, with these names
    /// (each one passes [`check_name`]); the last one is open. `parent`
    /// is the resident gracewrap that handed them over, if one did.
    Fds {
        names: Vec<String>,
        parent: Option<u32>,
    },
}

/// Variables that are wrong: the message gracewrap prints.
#[derive(Debug, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A value as text for a message: bytes that are not UTF-8 replaced.
fn text(value: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(value)
}

/// A value as a number, the way `str::parse` reads it.
fn number<T: FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Reads the variables (see the table in inherit.rs).
pub fn read(vars: &Vars<'_>, me: &impl Reader) -> Result<Listen, Error> {
    let Some(pid_value) = vars.pid else {
        return Ok(Listen::Nothing);
    };
    let pid: u32 = number(pid_value).filter(|&p| p > 0).ok_or_else(|| {
        Error(format!(
            "LISTEN_PID={} is not a process id",
            text(pid_value)
        ))
    })?;
    let own = me.pid();
    let handoff = vars.handoff == Some(pid_value) && pid == me.parent();
    if pid != own && !handoff {
        return Ok(Listen::Ignored(format!(
            "LISTEN_PID={pid} is not gracewrap's pid ({own})"
        )));
    }
    if let Some(id_value) = vars.pidfd_id.filter(|_| !handoff) {
        let id: u64 = number(id_value)
            .ok_or_else(|| Error(format!("LISTEN_PIDFDID={} is not a number", text(id_value))))?;
        // Without pidfd inode ids (Linux < 6.9) there is nothing to compare.
        if let Some(own) = me.pidfd_id()
            && own != id
        {
            return Ok(Listen::Ignored(format!(
                "LISTEN_PIDFDID={id} is not gracewrap's pidfd id ({own}): the pid was reused"
            )));
        }
    }
    let Some(n_value) = vars.fds else {
        return Ok(Listen::Nothing);
    };
    let n: i64 = number(n_value)
        .ok_or_else(|| Error(format!("LISTEN_FDS={} is not a number", text(n_value))))?;
    let max = i32::MAX - FIRST_FD;
    if n <= 0 || n > i64::from(max) {
        return Err(Error(format!(
            "LISTEN_FDS={} is out of range (1 to {max})",
            text(n_value)
        )));
    }
    let n = n as usize;
    // The last fd first, before anything proportional to n is allocated
    // or done: a huge LISTEN_FDS fails at once, not after gigabytes of
    // names or a million fcntl calls.
    let last = FIRST_FD + n as RawFd - 1;
    if !me.is_open(last) {
        return Err(Error(format!("LISTEN_FDS={n} but fd {last} is not open")));
    }
    let names = match vars.names {
        None => vec![DEFAULT_NAME.to_string(); n],
        Some(value) => {
            // Bytes, not text: a name with a byte that is not UTF-8 is
            // reported as that byte. Counted before any name is copied.
            let count = value.split(|&b| b == b':').count();
            if count != n {
                return Err(Error(format!(
                    "LISTEN_FDNAMES has {count} names for LISTEN_FDS={n} fds (libsystemd refuses this too)"
                )));
            }
            value
                .split(|&b| b == b':')
                .map(|name| check_name(name).map(str::to_owned))
                .collect::<Result<Vec<String>, _>>()
                .map_err(|e| Error(format!("LISTEN_FDNAMES: {e}")))?
        }
    };
    Ok(Listen::Fds {
        names,
        parent: handoff.then_some(pid),
    })
}

#[cfg(test)]
mod tests;
