//! Exec mode: sockets at 3.., the LISTEN_* environment, then execve(2) of
//! PROGRAM in this very process, so `LISTEN_PID` is simply our pid.

use std::ffi::OsString;
use std::os::fd::OwnedFd;

use anyhow::{Result, anyhow};

use crate::cli::Args;
use crate::exit::Failure;
use crate::handoff::Handoff;
use crate::msg::{io_reason, quote, reason};
use crate::protocol::{LISTEN_VARS, listen_env};
use crate::sys::process::{self, Env};
use crate::sys::signals;
use crate::sys::user::Target;

/// Places the sockets and execs PROGRAM; returns only why it could not.
/// The caller's `handoff` goes with the error: dropping it removes the
/// socket files bound for PROGRAM, which never ran.
pub fn run(
    args: &Args,
    mut handoff: Handoff,
    target: Option<&Target>,
    lazy: bool,
    inetd: bool,
) -> anyhow::Error {
    match place_and_exec(args, &mut handoff, target, lazy, inetd) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn place_and_exec(
    args: &Args,
    handoff: &mut Handoff,
    target: Option<&Target>,
    lazy: bool,
    inetd: bool,
) -> Result<std::convert::Infallible> {
    if inetd && handoff.len() != 1 {
        return Err(Failure::usage(format!(
            "--inetd without --accept takes exactly one socket, there are {} (inherited ones count)",
            handoff.len()
        ))
        .into());
    }
    handoff.place()?;
    if super::report_sockets(args) {
        handoff.report();
    }
    if lazy {
        wait_for_traffic(handoff.fds())?;
    }
    handoff.restore_limit();
    let listen = if inetd {
        // systemd's StandardInput=socket: the socket on stdin and stdout,
        // nothing at fd 3, no LISTEN_* variables at all.
        handoff.onto_stdio()?;
        Vec::new()
    } else {
        listen_env(handoff.len(), &handoff.names(), !args.no_pid)
    };
    let env = program_env(args, &listen, target);
    if let Some(target) = target {
        target.drop_privileges()?;
        // The kernel clears the parent-death signal on a change of
        // credentials: a resident gracewrap's child sets it again, and
        // checks that the parent did not die in between.
        if let Some(parent) = handoff.parent() {
            process::die_with_parent(parent)?;
        }
    }
    if let Some(dir) = &args.chdir {
        std::env::set_current_dir(dir).map_err(|e| {
            anyhow!(
                "cannot change directory to {}: {}",
                quote(dir),
                io_reason(&e)
            )
        })?;
    }
    signals::prepare_for_exec(args.keep_signals);
    let failure = process::exec(&args.program, &args.args, env);
    signals::after_failed_exec();
    Err(failure.into())
}

/// PROGRAM's environment: ours without the `LISTEN_*` variables we were
/// given, then `listen`, then HOME, USER and LOGNAME of `--user` (unless
/// `--setenv` sets them), then `--setenv` (a bare NAME copies our value).
fn program_env(args: &Args, listen: &[(&'static str, String)], target: Option<&Target>) -> Env {
    let mut env = Env::ours_without(&LISTEN_VARS);
    for (name, value) in listen {
        env.set(name, value);
    }
    if let Some(target) = target {
        for (name, value) in target.env() {
            if !args.setenv.iter().any(|(n, _)| n == name) {
                env.set(name, value);
            }
        }
    }
    for (name, value) in &args.setenv {
        let value: Option<OsString> = value.clone().or_else(|| std::env::var_os(name));
        if let Some(value) = value {
            env.set(name, value);
        }
    }
    env
}

/// `--lazy`: block until any socket is readable (a pending connection or
/// a datagram), as systemd-socket-activate does by default.
fn wait_for_traffic<'a>(fds: impl Iterator<Item = &'a OwnedFd>) -> Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut polls: Vec<PollFd<'_>> = fds.map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
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
