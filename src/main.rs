//! gracewrap: bind (or take over) listening sockets, put them at fd 3, 4, ...
//! with the environment sd_listen_fds(3) expects, and exec or supervise
//! PROGRAM.
//!
//! The layers, each using only those below it (`.ci/structure` checks):
//!
//! ```text
//! main      parse -> mode::run -> exit status
//! mode      exec, accept, supervise (+ resident: what the last two share)
//! handoff   inherited sockets, the plan, fd placement: one Handoff value
//! socket    open one Spec: inet, unix files, options
//! cli       argv -> Args with a Mode
//! spec      the SPEC grammar
//! sys       processes, signals, users, sd_notify, raw calls
//! protocol  LISTEN_* and NOTIFY_SOCKET names, FIRST_FD
//! notice    sd_notify datagrams, read as systemd reads them (pure)
//! exit msg  the exit status; how messages are worded
//! ```
#![cfg_attr(not(test), no_main)]
// The unit-test build has libtest's main instead of ours, so the entry path
// is unused there.
#![cfg_attr(test, allow(dead_code))]

mod cli;
mod exit;
mod handoff;
mod mode;
mod msg;
mod notice;
mod protocol;
mod socket;
mod spec;
mod sys;

use std::ffi::OsString;
use std::io::Write;

use crate::cli::Parsed;
use crate::exit::Status;

// The C entry point (see sys/process.rs for why gracewrap has its own).
c_main!(run);

/// Everything, given the arguments after `argv[0]`; returns the exit
/// status. First the two start-up duties the skipped Rust runtime would
/// have done: SIGPIPE ignored for our own messages (remembering the
/// caller's), and fds 0-2 open.
fn run(argv: Vec<OsString>) -> u8 {
    sys::signals::startup();
    handoff::ensure_stdio();
    let result = match cli::parse(argv) {
        Ok(Parsed::Help) => return print(cli::HELP),
        Ok(Parsed::Version) => {
            return print(concat!("gracewrap ", env!("CARGO_PKG_VERSION"), "\n"));
        }
        Ok(Parsed::Run(args)) => mode::run(*args),
        Ok(Parsed::Restart(pid_file)) => mode::restart(&pid_file),
        Err(usage) => Err(usage.into()),
    };
    match result {
        Ok(status) => status.code(),
        Err(err) => {
            msg::say(format_args!("{err:#}"));
            Status::of(&err).code()
        }
    }
}

/// `--help` and `--version` go to stdout; a closed stdout is an error
/// (exit 125), never a panic.
fn print(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => Status::Failed.code(),
    }
}
