//! `gracewrap --restart --pid-file PATH`: asks the supervisor that wrote
//! PATH to restart, waits, and says how it went (see sys/control.rs for
//! how each side knows the other).
//!
//! - 0: the new generation is ready and serves; its pid on stdout.
//! - 1: the restart failed (the new generation died or was not ready in
//!   time; the old one keeps serving), the reason on stderr.
//! - 125: no supervisor answers for that pid, or it refused.

use std::io::Write;
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use crate::exit::Status;
use crate::msg::{quote, reason, say};
use crate::sys::control::{self, Unreachable};
use crate::sys::pidfile;

pub fn restart(pid_file: &Path) -> Result<Status> {
    let pid = pidfile::read(pid_file)?;
    let shown = quote(pid_file.as_os_str());
    let answer = control::request(pid).map_err(|e| match e {
        Unreachable::Nobody(e) => anyhow!(
            "no gracewrap supervisor answers for pid {pid} (from --pid-file {shown}): {}",
            reason(e)
        ),
        Unreachable::Impostor(other) => anyhow!(
            "the control socket of pid {pid} (from --pid-file {shown}) is held by pid {other}; not restarting"
        ),
        Unreachable::NoAnswer => {
            anyhow!("the supervisor (pid {pid}) went away before the restart was over")
        }
    })?;
    let (word, rest) = answer.split_once(' ').unwrap_or((&answer, ""));
    match word {
        "ok" => {
            // "ok GENERATION PID"
            let new_pid = rest.split(' ').nth(1).unwrap_or_default();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{new_pid}").and_then(|()| out.flush());
            Ok(Status::Program(0))
        }
        "failed" => {
            say(format_args!("restart failed: {rest}"));
            Ok(Status::Program(1))
        }
        "refused" => bail!("the supervisor (pid {pid}) refused: {rest}"),
        _ => bail!(
            "the supervisor (pid {pid}) gave an answer gracewrap does not know: {}",
            quote(answer.as_ref())
        ),
    }
}
