//! gracewrap: bind (or take over) listening sockets, put them at fd 3, 4, ...
//! with the environment sd_listen_fds(3) expects, and exec PROGRAM.
//!
//! `main` only maps the outcome to an exit status; see EXIT STATUS in
//! man/gracewrap.1 for the contract.

mod cli;
mod exec;
mod fds;
mod msg;
mod signals;
mod sockets;
mod spec;

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{Parsed, UsageError};
use crate::exec::ExecError;

/// Usage error: bad option, bad SPEC, missing PROGRAM.
const EXIT_USAGE: u8 = 2;
/// gracewrap itself failed before exec (bind, fds, limits).
const EXIT_FAILED: u8 = 125;

fn main() -> ExitCode {
    let err = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Help) => return print(cli::HELP),
        Ok(Parsed::Version) => {
            return print(concat!("gracewrap ", env!("CARGO_PKG_VERSION"), "\n"));
        }
        Ok(Parsed::Run(args)) => exec::run(args),
        Err(usage) => usage.into(),
    };
    msg::say(format_args!("{err:#}"));
    ExitCode::from(exit_code(&err))
}

/// The documented exit status for a failure.
fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        EXIT_USAGE
    } else if let Some(e) = err.downcast_ref::<ExecError>() {
        e.exit_code()
    } else {
        EXIT_FAILED
    }
}

/// `--help` and `--version` go to stdout; a closed stdout is not an error
/// worth a panic.
fn print(text: &str) -> ExitCode {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_FAILED),
    }
}
