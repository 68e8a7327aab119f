//! The modes: what gracewrap does with the sockets once it has them.
//!
//! - exec.rs: exec PROGRAM in this process (also `--lazy`, `--inetd`);
//! - accept.rs: `--accept`, one PROGRAM per connection;
//! - supervise.rs: `--supervise`, generations of PROGRAM on the sockets;
//! - resident.rs: what the two resident modes share (the start-up check,
//!   signals, starting a child gracewrap, reaping);
//! - restart.rs: `--restart`, the command that asks a supervisor to
//!   restart and waits for the outcome.

mod accept;
mod exec;
mod resident;
mod restart;
mod supervise;

pub use restart::restart;

use anyhow::Result;

use crate::cli::{Args, Mode};
use crate::exit::Status;
use crate::handoff::Handoff;
use crate::sys::user;

/// Runs PROGRAM with the sockets as `args.mode` says. Exec mode returns
/// only on failure; the resident modes return their exit status.
pub fn run(args: Args) -> Result<Status> {
    // Resolved before anything is bound: an unknown user leaves no trace.
    let target = match (&args.user, &args.group) {
        (None, None) => None,
        (user, group) => Some(user::resolve_system(user.as_deref(), group.as_deref())?),
    };
    let handoff = Handoff::prepare(&args)?;
    match &args.mode {
        &Mode::Exec { lazy, inetd } => Err(exec::run(&args, handoff, target.as_ref(), lazy, inetd)),
        &Mode::Accept {
            inetd,
            max_connections,
            per_source,
        } => {
            let limits = accept::Limits {
                inetd,
                max: max_connections,
                per_source,
            };
            accept::run(&args, handoff, limits, target.as_ref())
        }
        Mode::Supervise(sup) => supervise::run(&args, sup, handoff, target.as_ref()),
    }
}

/// `cannot change directory to DIR: REASON`, in every mode alike.
fn chdir_failure(dir: &std::ffi::OsStr, error: &std::io::Error) -> String {
    format!(
        "cannot change directory to {}: {}",
        crate::msg::quote(dir),
        crate::msg::io_reason(error)
    )
}

/// Whether the sockets are listed on stderr: with `-v`, and always when a
/// port was 0 (the user needs to learn which one it got).
fn report_sockets(args: &Args) -> bool {
    args.verbose || args.listen.iter().any(crate::spec::Spec::wants_free_port)
}
