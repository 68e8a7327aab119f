//! gracewrap: bind (or take over) listening sockets, put them at fd 3, 4, ...
//! with the environment sd_listen_fds(3) expects, and exec PROGRAM.
//!
//! `run` only maps the outcome to an exit status; see EXIT STATUS in
//! man/gracewrap.1 for the contract.
//!
//! gracewrap defines the C `main` itself (`no_main`): the Rust runtime's
//! start-up (stack-overflow guard detection through /proc/self/maps, an
//! alternate signal stack, SIGPIPE ignored before we can see what our
//! caller had) costs about 50 us, a tenth of an exec wrapper's whole run,
//! and none of it is needed for a program that execs within microseconds.
//! `signals::startup` and `fds::ensure_stdio` do the two parts that matter.
#![cfg_attr(not(test), no_main)]
// The unit-test build has libtest's main instead of ours, so the entry path
// is unused there.
#![cfg_attr(test, allow(dead_code))]

mod accept;
mod cli;
mod exec;
mod fds;
mod inherit;
mod msg;
mod notify;
mod prepare;
mod signals;
mod sockets;
mod spawn;
mod spec;
mod supervise;
mod user;

use std::io::Write;

use crate::cli::{Parsed, UsageError};
use crate::exec::ExecError;

/// Usage error: bad option, bad SPEC, missing PROGRAM.
const EXIT_USAGE: u8 = 2;
/// gracewrap itself failed before exec (bind, fds, limits).
const EXIT_FAILED: u8 = 125;

#[cfg(not(test))]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    signals::startup();
    fds::ensure_stdio();
    // From main's own argv: std::env::args_os() is filled in by glibc's
    // .init_array hook only, and is empty under musl.
    let args = (1..usize::try_from(argc).unwrap_or(0)).map(|i| {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: the C runtime passes argc valid NUL-terminated strings.
        let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
        std::ffi::OsStr::from_bytes(arg.to_bytes()).to_owned()
    });
    libc::c_int::from(run(args))
}

/// Everything after start-up; returns the exit status.
fn run(args: impl Iterator<Item = std::ffi::OsString>) -> u8 {
    let err = match cli::parse(args) {
        Ok(Parsed::Help) => return print(cli::HELP),
        Ok(Parsed::Version) => {
            return print(concat!("gracewrap ", env!("CARGO_PKG_VERSION"), "\n"));
        }
        Ok(Parsed::Run(args)) => match exec::run(*args) {
            Ok(code) => return code,
            Err(e) => e,
        },
        Err(usage) => usage.into(),
    };
    msg::say(format_args!("{err:#}"));
    exit_code(&err)
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

/// `--help` and `--version` go to stdout; a closed stdout is an error
/// (exit 125), never a panic.
fn print(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => EXIT_FAILED,
    }
}
