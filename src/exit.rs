//! gracewrap's exit status: the one place that decides it (EXIT STATUS in
//! man/gracewrap.1 is the contract).
//!
//! Errors travel as `anyhow::Error`. The few that decide their own status
//! are a [`Failure`] (usage errors, PROGRAM that cannot be executed); every
//! other error is gracewrap failing, 125. A resident mode ends with its
//! program's status, taken from wait(2) by [`Status::of_wait`].

use std::fmt;

use rustix::process::WaitStatus;

/// How gracewrap ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 2: bad option, bad SPEC, missing PROGRAM, conflicting options.
    Usage,
    /// 125: gracewrap itself failed (bind, fds, limits, fork...).
    Failed,
    /// 126: PROGRAM was found but could not be executed.
    CannotExecute,
    /// 127: PROGRAM was not found.
    NotFound,
    /// What the program ended with (resident modes), or 0 for a clean stop.
    Program(u8),
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Usage => 2,
            Status::Failed => 125,
            Status::CannotExecute => 126,
            Status::NotFound => 127,
            Status::Program(code) => code,
        }
    }

    /// The status an error decides: its own if it is a [`Failure`] (also
    /// under added context), else 125.
    pub fn of(err: &anyhow::Error) -> Status {
        err.downcast_ref::<Failure>()
            .map_or(Status::Failed, |f| f.status)
    }

    /// A child's end as a shell reports it: its exit code, or 128+signal.
    pub fn of_wait(status: WaitStatus) -> Status {
        Status::Program(match status.terminating_signal() {
            Some(sig) => (128 + sig).min(255) as u8,
            None => status.exit_status().unwrap_or(0) as u8,
        })
    }
}

/// An error that decides gracewrap's exit status; its message is the whole
/// line gracewrap prints (after `gracewrap: `).
#[derive(Debug)]
pub struct Failure {
    pub status: Status,
    pub message: String,
}

impl Failure {
    /// A usage error: exit status 2.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            status: Status::Usage,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::usage(e.to_string())
    }
}

#[cfg(test)]
mod tests;
