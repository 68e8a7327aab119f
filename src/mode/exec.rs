//! Exec mode: sockets at 3.., the LISTEN_* environment, then execve(2) of
//! PROGRAM in this very process, so `LISTEN_PID` is simply our pid.

use std::ffi::OsString;
use std::os::fd::OwnedFd;

use anyhow::{Result, anyhow};

use crate::cli::Args;
use crate::exit::Failure;
use crate::handoff::Handoff;
use crate::msg::{io_reason, reason};
use crate::protocol::{LISTEN_VARS, WATCHDOG_VAR, WATCHDOG_VARS, listen_env, watchdog_env};
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
    if lazy && let Some(sig) = wait_for_traffic(handoff.fds())? {
        // Stopped before any traffic: the socket files gracewrap bound go
        // (PROGRAM never had them), then the signal takes its course.
        handoff.remove_created();
        signals::die_of(sig);
    }
    handoff.restore_limit();
    let mut listen = if inetd {
        // systemd's StandardInput=socket: the socket on stdin and stdout,
        // nothing at fd 3, no LISTEN_* variables at all.
        handoff.onto_stdio()?;
        Vec::new()
    } else {
        listen_env(handoff.len(), &handoff.names(), !args.no_pid)
    };
    // A resident gracewrap's WATCHDOG_* were gracewrap's, not PROGRAM's;
    // the supervisor's --watchdog comes in WATCHDOG_VAR.
    let from_resident = handoff.parent().is_some();
    if from_resident {
        let usec = std::env::var(WATCHDOG_VAR).ok();
        listen.extend(watchdog_env(usec.as_deref(), !args.no_pid));
    }
    let drop: &[&str] = if from_resident { &WATCHDOG_VARS } else { &[] };
    let env = program_env(args, &listen, drop, target);
    if let Some(target) = target {
        // What would fail once privileges are dropped (PROGRAM or
        // `--chdir` out of the user's reach) fails now, while gracewrap
        // can still remove the socket files it bound as root.
        super::resident::check(args, Some(target))?;
        target.drop_privileges()?;
        // The kernel clears the parent-death signal on a change of
        // credentials: a resident gracewrap's child sets it again, and
        // checks that the parent did not die in between.
        if let Some(parent) = handoff.parent() {
            process::die_with_parent(parent)?;
        }
    }
    if let Some(dir) = &args.chdir {
        std::env::set_current_dir(dir).map_err(|e| anyhow!(super::chdir_failure(dir, &e)))?;
    }
    signals::prepare_for_exec(args.keep_signals);
    let failure = process::exec(&args.program, &args.args, env);
    signals::after_failed_exec();
    Err(failure.into())
}

/// PROGRAM's environment: ours without the `LISTEN_*` variables we were
/// given and those in `drop`, then `listen`, then HOME, USER and LOGNAME
/// of `--user` (unless `--setenv` sets them), then `--setenv` (a bare
/// NAME copies our value).
pub(super) fn program_env(
    args: &Args,
    listen: &[(&'static str, String)],
    drop: &[&str],
    target: Option<&Target>,
) -> Env {
    let mut env = Env::ours_without(&LISTEN_VARS);
    for name in drop {
        env.unset(name);
    }
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

/// `--lazy`: blocks until any socket is readable (a pending connection or
/// a datagram), as systemd-socket-activate does by default. SIGTERM,
/// SIGINT or SIGHUP (those at their default action) end the wait: returns
/// the signal, for the caller to clean up and die of it.
fn wait_for_traffic<'a>(fds: impl Iterator<Item = &'a OwnedFd>) -> Result<Option<i32>> {
    use rustix::event::{PollFd, PollFlags, poll};
    let stops: Vec<i32> = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP]
        .into_iter()
        .filter(|&sig| signals::is_default(sig))
        .collect();
    let watch = signals::Watch::new(&stops)
        .map_err(|e| anyhow!("cannot set up signal handling: {}", io_reason(&e)))?;
    let wake = watch.fd();
    let mut polls: Vec<PollFd<'_>> = fds.map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    polls.push(PollFd::new(&wake, PollFlags::IN));
    loop {
        match poll(&mut polls, None) {
            Ok(_) => {
                if let Some(&sig) = watch.take().first() {
                    return Ok(Some(sig));
                }
                let traffic = polls[..polls.len() - 1]
                    .iter()
                    .any(|p| !p.revents().is_empty());
                if traffic {
                    return Ok(None);
                }
            }
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
