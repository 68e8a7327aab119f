//! `--accept`: gracewrap stays resident, accepts each connection and runs
//! one PROGRAM per connection, with the connection at fd 3
//! (`LISTEN_FDS=1`, `LISTEN_FDNAMES=connection`, `LISTEN_PID` = that
//! child's pid), or on stdin and stdout with `--inetd` — systemd's
//! `Accept=yes`, and systemd-socket-activate's `--accept`.
//!
//! The loop, in the order it runs:
//! 1. poll the signal pipe and, below `--max-connections`, the listeners
//!    (at the cap, connections wait in the kernel's backlog);
//! 2. SIGCHLD: reap every exited child (no zombies, whatever the load);
//! 3. SIGTERM, SIGINT, SIGHUP, SIGQUIT: stop, exit 0; children get SIGTERM
//!    from PR_SET_PDEATHSIG;
//! 4. accept what is pending on each readable listener and spawn a child.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Result, anyhow, bail};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::net::{SocketFlags, accept_with, sockopt};
use rustix::process::{Pid, WaitOptions, wait};

use crate::cli::{Args, UsageError};
use crate::msg::{io_reason, reason, say};
use crate::prepare::Prepared;
use crate::signals::{Blocked, Watch};
use crate::spawn::{self, Setup};

/// The name the connection gets in `LISTEN_FDNAMES`, as under systemd.
const CONNECTION_NAME: &str = "connection";

/// Signals that stop the accept loop.
const STOP: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

pub fn run(args: &Args, prepared: Prepared) -> Result<u8> {
    let created = prepared.created.clone();
    let result = serve(args, prepared);
    // Resident: the socket files we bound are ours to remove.
    crate::prepare::remove_created(&created);
    result
}

fn serve(args: &Args, prepared: Prepared) -> Result<u8> {
    let listeners: Vec<OwnedFd> = prepared.sockets.into_iter().map(|s| s.fd).collect();
    for fd in &listeners {
        if !sockopt::socket_acceptconn(fd).unwrap_or(false) {
            bail!(
                "--accept needs listening sockets; {} (fd {}) is not one",
                crate::sockets::describe(fd),
                fd.as_raw_fd()
            );
        }
    }
    // Only once all of them passed: O_NONBLOCK is shared with whoever gave
    // us an inherited listener, so a refused start must not leave it set.
    for fd in &listeners {
        // The listeners stay in gracewrap (CLOEXEC: no child sees them).
        // Non-blocking, so a connection another process accepted first
        // cannot stall the loop.
        rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK).map_err(|e| {
            anyhow!(
                "cannot make fd {} non-blocking: {}",
                fd.as_raw_fd(),
                reason(e)
            )
        })?;
    }
    let name = match &args.fdnames {
        Some(names) if names.len() == 1 => names[0].clone(),
        Some(names) => {
            return Err(UsageError(format!(
                "--accept passes one connection: give --fdname one name, not {}",
                names.len()
            ))
            .into());
        }
        None => CONNECTION_NAME.to_string(),
    };
    spawn::resolve(args)?;
    spawn::check_chdir(args)?;
    let mut caught = STOP.to_vec();
    caught.push(libc::SIGCHLD);
    let watch = Watch::new(&caught)
        .map_err(|e| anyhow!("cannot set up signal handling: {}", io_reason(&e)))?;
    prepared.limit.restore();
    if args.verbose || args.listen.iter().any(crate::spec::Spec::wants_free_port) {
        for fd in &listeners {
            say(format_args!(
                "accepting on {} (fd {})",
                crate::sockets::describe(fd),
                fd.as_raw_fd()
            ));
        }
    }

    let mut children: Vec<i32> = Vec::new();
    let wake = watch.fd();
    loop {
        let open = children.len() < args.max_connections;
        let mut polls = vec![PollFd::new(&wake, PollFlags::IN)];
        if open {
            polls.extend(listeners.iter().map(|fd| PollFd::new(fd, PollFlags::IN)));
        }
        match poll(&mut polls, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => bail!("poll failed: {}", reason(e)),
        }
        let ready: Vec<bool> = polls
            .iter()
            .skip(1)
            .map(|p| !p.revents().is_empty())
            .collect();
        drop(polls);
        let signals = watch.take();
        reap(&mut children);
        if let Some(sig) = signals.iter().find(|s| STOP.contains(s)) {
            if args.verbose {
                say(format_args!(
                    "signal {sig}: stopping; {} connection(s) still open get SIGTERM",
                    children.len()
                ));
            }
            return Ok(0);
        }
        for (fd, _) in listeners.iter().zip(ready).filter(|(_, r)| *r) {
            while children.len() < args.max_connections {
                let conn = match accept_with(fd, SocketFlags::CLOEXEC) {
                    Ok(conn) => conn,
                    Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => break,
                    Err(e) => {
                        say(format_args!(
                            "cannot accept on fd {}: {}",
                            fd.as_raw_fd(),
                            reason(e)
                        ));
                        break;
                    }
                };
                match start(args, &name, &conn, &watch) {
                    Ok(pid) => children.push(pid),
                    Err(e) => say(format_args!(
                        "cannot start {} for a connection: {e:#}",
                        spawn::program_name(args)
                    )),
                }
                // `conn` closes here: the child has its own copy.
            }
        }
    }
}

/// Starts one child for `conn`; returns its pid.
fn start(args: &Args, name: &str, conn: &OwnedFd, watch: &Watch) -> Result<i32> {
    let blocked = Blocked::all();
    let mut setup = Setup::new(&watch.signals(), args.keep_signals, blocked.old_mask());
    setup.deathsig = true;
    // The connection goes to fd 3; with --inetd the child gracewrap moves
    // it on to stdin and stdout.
    setup.fd3 = Some(conn.as_fd().as_raw_fd());
    let pid = spawn::gracewrap_child(args, 1, name)
        .spawn(&setup)
        .map_err(|e| anyhow!("{}", io_reason(&e)))?;
    drop(blocked);
    // The child is reaped through SIGCHLD and wait(2).
    Ok(pid)
}

/// Reaps every child that has exited.
fn reap(children: &mut Vec<i32>) {
    loop {
        // wait(2), not waitpid(None): rustix maps None to pid 0, "my process
        // group", which misses children in other groups.
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, _status))) => {
                let pid = Pid::as_raw(Some(pid));
                children.retain(|&c| c != pid);
            }
            Ok(None) | Err(_) => return,
        }
    }
}
