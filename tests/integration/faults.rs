//! Faults and load (issue 6): a storm of restart signals, generations that
//! misbehave (ignore SIGTERM, leave grandchildren, close their socket, die
//! before they are ready), and --accept under 2000 concurrent connections.
//! Each checks what is documented, and that gracewrap leaks neither fds
//! nor zombies nor memory on the way: /proc/PID/fd of gracewrap, its
//! zombie children, and its RssAnon, before and after.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rustix::process::Signal;

use crate::supervise::{Clients, Sup, alive, ask, kill, pid_in, write_app};
use crate::util::*;

/// Open fds of `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A `/proc/PID/status` field in kB (VmRSS, RssAnon).
fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} for {pid}"))
}

/// The state letter of `pid` (R, S, Z...) from /proc/PID/stat.
fn state(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next()?.trim_start().chars().next())
        .unwrap_or('?')
}

fn zombies(pid: u32) -> usize {
    children_of(pid)
        .into_iter()
        .filter(|c| state(*c) == 'Z')
        .count()
}

/// Whether `sig` is pending for `pid` (thread or process-wide).
fn signal_pending(pid: u32, sig: i32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("SigPnd:\t")
                .or_else(|| l.strip_prefix("ShdPnd:\t"))
        })
        .any(|mask| u64::from_str_radix(mask.trim(), 16).unwrap_or(0) & (1 << (sig - 1)) != 0)
}

/// Waits until the supervisor has exactly one child, sleeps in poll(2)
/// and has no `sig` pending: no restart in flight or queued.
#[track_caller]
fn settled(gw: u32, sig: i32) {
    wait_until("the supervisor to settle on one generation", || {
        children_of(gw).len() == 1 && state(gw) == 'S' && !signal_pending(gw, sig)
    });
}

/// Checks from the -v log that restarts ran one at a time: no generation
/// starts while another new one is not yet ready, and none failed.
/// Returns the number of generations started.
#[track_caller]
fn one_restart_at_a_time(lines: &[String]) -> usize {
    let mut in_flight: Option<u32> = None;
    let mut started = 0;
    for line in lines {
        if let Some(rest) = line.strip_prefix("gracewrap: started generation ") {
            let n: u32 = rest.split(' ').next().unwrap().parse().unwrap();
            started += 1;
            if n > 1 {
                assert_eq!(
                    in_flight, None,
                    "generation {n} started while {in_flight:?} was not ready:\n{lines:#?}"
                );
                in_flight = Some(n);
            }
        } else if line.contains(") is ready") {
            let n: u32 = line
                .strip_prefix("gracewrap: generation ")
                .and_then(|r| r.split(' ').next()?.parse().ok())
                .unwrap();
            if in_flight == Some(n) {
                in_flight = None;
            }
        }
        assert!(
            !line.contains("before it was ready") && !line.contains("was not ready within"),
            "a restart failed: {line}"
        );
    }
    started
}

/// 1000 SIGHUPs in a burst: merged into at most one restart in flight
/// (and one queued), the clients see no failed request, and gracewrap
/// ends with the same fds, no zombie and the same anonymous memory.
#[test]
fn a_storm_of_1000_restart_signals_restarts_one_at_a_time_and_loses_nothing() {
    let mut s = Sup::start("storm", &[], "");
    let gw = s.pid();
    s.ready(1);
    // One restart first, so that "before" is a supervisor that has
    // restarted (its allocations for that are made).
    s.signal(Signal::HUP);
    s.ready(2);
    settled(gw, libc::SIGHUP);
    let (fds0, anon0, rss0) = (
        fd_count(gw),
        status_kb(gw, "RssAnon"),
        status_kb(gw, "VmRSS"),
    );

    let clients = Clients::start(&s.addr, 4);
    for _ in 0..1000 {
        s.signal(Signal::HUP);
    }
    settled(gw, libc::SIGHUP);
    clients.wait_for_more(50);
    let (fds1, anon1, rss1) = (
        fd_count(gw),
        status_kb(gw, "RssAnon"),
        status_kb(gw, "VmRSS"),
    );
    assert_eq!(zombies(gw), 0);
    let (ok, failed) = clients.finish();
    assert_eq!(failed, 0, "requests failed during the storm ({ok} ok)");
    assert_eq!(fds1, fds0, "gracewrap's fds before and after the storm");
    assert!(
        anon1 <= anon0 + 64,
        "RssAnon grew from {anon0} to {anon1} kB (VmRSS {rss0} -> {rss1})"
    );

    s.signal(Signal::TERM);
    s.g.rest_of_stderr();
    assert_eq!(s.g.wait().code(), Some(0));
    let started = one_restart_at_a_time(&s.g.stderr_seen);
    // The burst made at least one restart, and far fewer than 1000.
    assert!(
        (3..=20).contains(&started),
        "{started} generations for 1000 signals:\n{:#?}",
        s.g.stderr_seen
    );
}

/// Generations that ignore SIGTERM are killed after --stop-timeout, one
/// restart after another, and nothing of them stays in gracewrap.
#[test]
fn generations_that_ignore_sigterm_are_killed_and_leave_nothing() {
    let mut s = Sup::start(
        "ignore-term",
        &["--stop-timeout", "100ms"],
        "PROBE_IGNORE_TERM=1",
    );
    let gw = s.pid();
    let mut old = s.ready(1);
    let fds0 = fd_count(gw);
    for n in 2..=4 {
        s.signal(Signal::HUP);
        let new = s.ready(n);
        s.g.stderr_line(&format!("pid {old} did not stop within 100ms: SIGKILL"));
        let line =
            s.g.stderr_line(&format!("generation {} (pid {old})", n - 1));
        assert!(line.ends_with("was killed by SIGKILL"), "{line}");
        settled(gw, libc::SIGHUP);
        assert!(!alive(old));
        assert_eq!(zombies(gw), 0);
        assert_eq!(fd_count(gw), fds0, "after restart {n}");
        assert!(ask(&s.addr).is_some_and(|(p, _)| p == new));
        old = new;
    }
}

/// A generation that forks grandchildren and exits at once: with
/// --restart-on-exit the next one starts, and the grandchildren, which
/// are re-parented to gracewrap (subreaper), are reaped when they exit.
#[test]
fn a_generation_that_leaves_grandchildren_and_exits_is_replaced_and_they_are_reaped() {
    let dir = temp_dir("grandchildren");
    let app = dir.join("app");
    let marker = dir.join("forked");
    // Forks three grandchildren and exits, unless it did so last time;
    // then it serves.
    std::fs::write(
        &app,
        format!(
            "#!/bin/sh\nif [ -e '{m}' ]; then rm '{m}'; exec '{p}' serve; fi\n: > '{m}'\n\
             (sleep 0.3) & (sleep 0.3) & (sleep 0.3) &\nexit 0\n",
            m = marker.display(),
            p = probe().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut g = Running::spawn(
        gracewrap([
            "-s",
            "-v",
            "--restart-on-exit",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
        ])
        .arg(&app)
        .env("PROBE_REPORT", dir.join("report")),
    );
    let addr = g.listening_addr();
    let gw = g.child.id();
    let mut fds = Vec::new();
    for round in 0..2 {
        let forker = 1 + 2 * round;
        let line = g.stderr_line(&format!("generation {forker} (pid"));
        assert!(line.contains("started generation"), "{line}");
        let line = g.stderr_line("starting a new generation in");
        assert!(
            line.contains(&format!("generation {forker} (pid")) && line.contains("status 0"),
            "{line}"
        );
        let server = pid_in(
            &g.stderr_line(&format!("generation {} (pid", forker + 1)),
            forker + 1,
        );
        wait_until("the server to answer", || {
            ask(&addr).is_some_and(|(p, _)| p == server)
        });
        // Only the server is left once the grandchildren exited and were
        // reaped; none of them stays a zombie.
        wait_until("the grandchildren to be reaped", || {
            children_of(gw) == [server]
        });
        assert_eq!(zombies(gw), 0);
        fds.push(fd_count(gw));
        // Round two: the server dies, the next generation forks again.
        kill(server, Signal::KILL);
    }
    assert_eq!(fds[0], fds[1], "gracewrap's fds after each round");
}

/// A generation that closes its fd 3 closes only its own copy: gracewrap
/// keeps the socket, connections wait in its queue, and the next
/// generation serves them.
#[test]
fn a_generation_that_closes_fd_3_does_not_close_the_socket() {
    let mut s = Sup::start("close-fd3", &[], "");
    let gw = s.pid();
    s.ready(1);
    settled(gw, libc::SIGHUP);
    let fds0 = fd_count(gw);
    // v2 closes its fd 3, says READY=1 all the same, and idles.
    write_app(&s.app, "PROBE_CLOSE_FDS=1");
    s.signal(Signal::HUP);
    let p2 = s.ready(2);
    settled(gw, libc::SIGHUP);
    assert_eq!(children_of(gw), [p2]);
    // A client now waits in the listen queue, not refused.
    let addr = s.addr.clone();
    let waiting = std::thread::spawn(move || ask(&addr));
    wait_until("the connection to be queued", || {
        queued(&s.addr) >= 1 || waiting.is_finished()
    });
    write_app(&s.app, "PROBE_TAG=v3");
    s.signal(Signal::HUP);
    let p3 = s.ready(3);
    assert_eq!(
        waiting.join().unwrap(),
        Some((p3, "v3".into())),
        "the queued connection is served by the next generation"
    );
    settled(gw, libc::SIGHUP);
    assert_eq!(zombies(gw), 0);
    assert_eq!(fd_count(gw), fds0);
}

/// Connections waiting in the accept queue of the listener at `addr`
/// (ss(8)'s Recv-Q of a listening socket), from /proc/net/tcp.
fn queued(addr: &str) -> usize {
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let listening = *f.get(3)? == "0A";
            let rx = usize::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()?;
            (local_port == port && listening).then_some(rx)
        })
        .sum()
}

/// New generations that die before they are ready, again and again: each
/// is reaped and logged, the old one keeps serving every request, and
/// gracewrap's fds stay as they were.
#[test]
fn generations_that_exit_during_the_readiness_wait_leave_nothing() {
    let mut s = Sup::start("exit-early", &[], "");
    let gw = s.pid();
    let p1 = s.ready(1);
    settled(gw, libc::SIGHUP);
    let fds0 = fd_count(gw);
    let clients = Clients::start(&s.addr, 2);
    write_app(&s.app, "PROBE_EXIT=3");
    for n in 2..=11 {
        s.signal(Signal::HUP);
        let line = s.g.stderr_line("before it was ready");
        assert!(
            line.contains(&format!("generation {n} (pid "))
                && line.ends_with(&format!("exited with status 3 before it was ready; generation 1 (pid {p1}) keeps serving")),
            "{line}"
        );
    }
    settled(gw, libc::SIGHUP);
    clients.wait_for_more(20);
    let (ok, failed) = clients.finish();
    assert_eq!(failed, 0, "{ok} ok");
    assert_eq!(children_of(gw), [p1]);
    assert_eq!(zombies(gw), 0);
    assert_eq!(fd_count(gw), fds0);
}

/// --accept under 2000 concurrent short connections: every one is
/// served, at most --max-connections children live at any time, and
/// afterwards gracewrap has no child, no zombie, and its fds back.
#[test]
fn accept_mode_under_2000_concurrent_connections_keeps_its_cap_and_leaks_nothing() {
    const CONNECTIONS: usize = 2000;
    const CAP: usize = 16;
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "--max-connections",
        &CAP.to_string(),
        "-l",
        "tcp:127.0.0.1:0,backlog=4096",
        "--",
        probe().to_str().unwrap(),
        "hold",
    ]));
    let addr = g.accepting_addr();
    let gw = g.child.id();
    let fds0 = fd_count(gw);

    // Count gracewrap's live children the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (stop, most) = (stop.clone(), most.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let live = children_of(gw)
                    .into_iter()
                    .filter(|c| state(*c) != 'Z')
                    .count();
                most.fetch_max(live, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    // All connections at once; each reads its child's line, holds the
    // connection a moment, and closes it, which ends the child.
    let barrier = Arc::new(std::sync::Barrier::new(CONNECTIONS));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (addr, barrier) = (addr.clone(), barrier.clone());
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    barrier.wait();
                    let mut s = TcpStream::connect(&addr).ok()?;
                    s.set_read_timeout(Some(DEADLINE * 2)).ok()?;
                    let mut line = String::new();
                    BufReader::new(&mut s).read_line(&mut line).ok()?;
                    std::thread::sleep(Duration::from_millis(5));
                    let _ = s.write_all(b"bye");
                    drop(s);
                    line.starts_with("pid ").then_some(())
                })
                .unwrap()
        })
        .collect();
    let served = clients
        .into_iter()
        .filter_map(|c| c.join().unwrap_or(None))
        .count();
    wait_until("every child to be reaped", || children_of(gw).is_empty());
    stop.store(true, Ordering::SeqCst);
    monitor.join().unwrap();
    let most = most.load(Ordering::SeqCst);
    assert_eq!(served, CONNECTIONS, "connections served");
    assert!(most <= CAP, "{most} children at once, cap {CAP}");
    assert!(most >= CAP / 2, "the load never came near the cap ({most})");
    assert_eq!(zombies(gw), 0);
    assert_eq!(fd_count(gw), fds0, "gracewrap's fds back to the start");
    kill(gw, Signal::TERM);
    assert_eq!(g.wait().code(), Some(0));
}

/// fork(2) failing (EAGAIN: the process limit) when the first generation
/// starts: a clear error and 125, never a "generation" with pid -1 that
/// gracewrap would wait on, or signal (kill(-1) reaches every process).
#[test]
fn a_fork_that_fails_is_an_error_not_a_generation() {
    let mut cmd = gracewrap(["-s", "-l", &quiet_spec(), "--", "true"]);
    let fail = |nr| Fail {
        nr,
        errno: libc::EAGAIN,
        if_arg_set: None,
    };
    // glibc forks with clone(2), musl with fork(2); clone3(2) for good
    // measure.
    with_failing_syscalls(
        &mut cmd,
        &[
            fail(libc::SYS_fork),
            fail(libc::SYS_clone),
            fail(libc::SYS_clone3),
        ],
    );
    run(&mut cmd)
        .expect_code(125)
        .expect_stderr("gracewrap: cannot start true: resource temporarily unavailable");
}
