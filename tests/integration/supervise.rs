//! --supervise: graceful restarts, failure handling, signals, PID-1
//! duties and sd_notify, with real processes and loopback traffic.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::util::*;

/// A deployable "binary": a script that runs the probe with `env`.
pub(crate) fn write_app(path: &Path, env: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        format!("#!/bin/sh\n{env} exec '{}' serve\n", probe().display()),
    )
    .unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap(); // atomic, like a deploy
}

/// `pid P fd N [tag T]` from one request; None if it failed.
pub(crate) fn ask(addr: &str) -> Option<(u32, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(DEADLINE)).ok()?;
    s.write_all(b"x").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let f: Vec<&str> = reply.split_whitespace().collect();
    let pid = f.get(1)?.parse().ok()?;
    let tag = if f.get(4) == Some(&"tag") {
        f.get(5).unwrap_or(&"").to_string()
    } else {
        String::new()
    };
    Some((pid, tag))
}

pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

pub(crate) fn kill(pid: u32, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig)
        .unwrap();
}

pub(crate) struct Sup {
    pub(crate) g: Running,
    pub(crate) addr: String,
    pub(crate) dir: PathBuf,
    pub(crate) app: PathBuf,
}

impl Sup {
    /// `gracewrap -s -v ARGS -l tcp:127.0.0.1:0 -- DIR/app` with app v1.
    pub(crate) fn start(name: &str, args: &[&str], v1_env: &str) -> Sup {
        let dir = temp_dir(name);
        let app = dir.join("app");
        write_app(&app, &format!("PROBE_TAG=v1 {v1_env}"));
        let mut cmd = gracewrap(["-s", "-v"]);
        cmd.args(args)
            .args(["-l", "tcp:127.0.0.1:0", "--"])
            .arg(&app)
            .env("PROBE_REPORT", dir.join("report"));
        let mut g = Running::spawn(&mut cmd);
        let addr = g.listening_addr();
        g.stderr_line("generation 1 (pid");
        Sup { g, addr, dir, app }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.g.child.id()
    }

    pub(crate) fn signal(&self, sig: rustix::process::Signal) {
        kill(self.pid(), sig);
    }

    /// Waits for "generation N (pid P) is ready..." and returns P.
    pub(crate) fn ready(&mut self, n: u32) -> u32 {
        let line = self.g.stderr_line(&format!("generation {n} (pid"));
        if line.contains(&format!("generation {n} (pid")) && line.contains("is ready") {
            return pid_in(&line, n);
        }
        let line = self.g.stderr_line("is ready");
        assert!(line.contains(&format!("generation {n} (pid")), "{line}");
        pid_in(&line, n)
    }
}

pub(crate) fn pid_in(line: &str, n: u32) -> u32 {
    let key = format!("generation {n} (pid ");
    let rest = &line[line.find(&key).unwrap() + key.len()..];
    rest[..rest.find(')').unwrap()].parse().unwrap()
}

/// Clients asking the supervisor's address in a loop until stopped.
pub(crate) struct Clients {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    pub(crate) fn start(addr: &str, n: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads = (0..n)
            .map(|_| {
                let (addr, stop, ok, failed) =
                    (addr.to_string(), stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match ask(&addr) {
                            Some(_) => ok.fetch_add(1, Ordering::SeqCst),
                            None => failed.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                })
            })
            .collect();
        let c = Clients {
            stop,
            ok,
            failed,
            threads,
        };
        c.wait_for_more(50);
        c
    }

    #[track_caller]
    pub(crate) fn wait_for_more(&self, n: usize) {
        let base = self.ok.load(Ordering::SeqCst);
        wait_until(&format!("{n} more answered requests"), || {
            self.ok.load(Ordering::SeqCst) >= base + n
        });
    }

    /// Stops them; returns (ok, failed).
    pub(crate) fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.threads.into_iter().for_each(|t| t.join().unwrap());
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// The headline: a restart picks up a newly deployed binary, and a client
/// hammering the port meanwhile sees no refused, reset or failed request.
#[test]
fn restart_picks_up_a_replaced_binary_and_no_request_fails() {
    let mut s = Sup::start("restart", &[], "");
    let p1 = s.ready(1);
    assert_eq!(ask(&s.addr), Some((p1, "v1".into())));

    let clients = Clients::start(&s.addr, 4);
    write_app(&s.app, "PROBE_TAG=v2");
    s.signal(rustix::process::Signal::HUP);
    let p2 = s.ready(2);
    assert_ne!(p1, p2);
    wait_until("the new binary to answer", || {
        ask(&s.addr).is_some_and(|(p, t)| p == p2 && t == "v2")
    });
    wait_until("the old generation to be gone", || !alive(p1));
    clients.wait_for_more(50);
    let (ok, failed) = clients.finish();
    assert_eq!(failed, 0, "requests failed during the restart ({ok} ok)");
    // Only gen 2 is left, and it got exactly the sockets, nothing else.
    let r = Report::parse(&std::fs::read_to_string(s.dir.join("report")).unwrap()).unwrap();
    assert_eq!(r.pid, p2);
    r.assert_protocol(&["unknown"]);
    assert!(
        r.env("NOTIFY_SOCKET")
            .is_some_and(|v| v.starts_with('/') && v.ends_with("/notify"))
    );
    assert_eq!(r.env("GRACEWRAP_HANDOFF"), None);
    assert_eq!(
        (r.sigblk, r.sigign),
        (0, 0),
        "clean signal state in the generation"
    );
}

#[test]
fn a_crashing_new_generation_leaves_the_old_one_serving() {
    let mut s = Sup::start("crash", &[], "");
    let p1 = s.ready(1);
    write_app(&s.app, "PROBE_EXIT=3");
    s.signal(rustix::process::Signal::HUP);
    let line = s.g.stderr_line("before it was ready");
    assert!(
        line.contains("generation 2 (pid ") && line.contains("exited with status 3"),
        "{line}"
    );
    assert!(
        line.ends_with(&format!("generation 1 (pid {p1}) keeps serving")),
        "{line}"
    );
    assert_eq!(ask(&s.addr), Some((p1, "v1".into())));
    // gracewrap itself is unaffected and can restart again later.
    write_app(&s.app, "PROBE_TAG=v3");
    s.signal(rustix::process::Signal::HUP);
    let p3 = s.ready(3);
    wait_until("v3 answers", || ask(&s.addr) == Some((p3, "v3".into())));
}

#[test]
fn a_never_ready_generation_is_stopped_after_the_ready_timeout() {
    // --ready notify: the generation serves, but never says READY=1 (by
    // default it would be seen waiting for connections, and be ready).
    let mut s = Sup::start(
        "never-ready",
        &["--ready", "notify", "--ready-timeout", "500ms"],
        "",
    );
    let p1 = s.ready(1);
    write_app(&s.app, "PROBE_NO_NOTIFY=1 PROBE_TAG=v2");
    s.signal(rustix::process::Signal::HUP);
    let started = s.g.stderr_line("started generation 2");
    let p2 = pid_in(&started, 2);
    let line = s.g.stderr_line("was not ready within");
    assert!(
        line.contains(&format!(
            "generation 2 (pid {p2}) was not ready within 500ms"
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!("generation 1 (pid {p1}) keeps serving")),
        "{line}"
    );
    wait_until("the unready generation to be gone", || !alive(p2));
    assert_eq!(ask(&s.addr), Some((p1, "v1".into())));
}

#[test]
fn ready_delay_serves_programs_that_do_not_notify() {
    let mut s = Sup::start(
        "ready-delay",
        &["--ready-delay", "100ms"],
        "PROBE_NO_NOTIFY=1",
    );
    let p1 = s.ready(1);
    write_app(&s.app, "PROBE_NO_NOTIFY=1 PROBE_TAG=v2");
    s.signal(rustix::process::Signal::HUP);
    let p2 = s.ready(2);
    wait_until("v2 answers", || ask(&s.addr) == Some((p2, "v2".into())));
    wait_until("v1 gone", || !alive(p1));
}

#[test]
fn stop_timeout_escalates_to_sigkill() {
    let mut s = Sup::start(
        "stop-timeout",
        &["--stop-timeout", "200ms"],
        "PROBE_IGNORE_TERM=1",
    );
    let p1 = s.ready(1);
    write_app(&s.app, "PROBE_TAG=v2");
    s.signal(rustix::process::Signal::HUP);
    s.ready(2);
    s.g.stderr_line(&format!("pid {p1} did not stop within 200ms: SIGKILL"));
    let line = s.g.stderr_line(&format!("generation 1 (pid {p1})"));
    assert!(line.ends_with("was killed by SIGKILL"), "{line}");
}

#[test]
fn restart_signals_during_a_restart_are_coalesced() {
    let mut s = Sup::start("coalesce", &[], "");
    s.ready(1);
    write_app(&s.app, "PROBE_READY_AFTER_MS=300");
    s.signal(rustix::process::Signal::HUP);
    s.g.stderr_line("started generation 2");
    // Generation 2 takes 300 ms to get ready: these arrive during it.
    for _ in 0..4 {
        s.signal(rustix::process::Signal::HUP);
    }
    s.ready(2);
    s.ready(3);
    s.signal(rustix::process::Signal::TERM);
    assert!(s.g.wait().success());
    assert!(
        !s.g.stderr_seen.iter().any(|l| l.contains("generation 4")),
        "at most one restart is queued: {:?}",
        s.g.stderr_seen
    );
}

#[test]
fn signals_are_forwarded_to_the_current_generation() {
    let dir = temp_dir("forward-log");
    let log = dir.join("signals");
    let mut s = Sup::start(
        "forward",
        &[],
        &format!("PROBE_SIGNAL_LOG={}", log.display()),
    );
    s.ready(1);
    use rustix::process::Signal;
    for sig in [
        Signal::USR1,
        Signal::USR2,
        Signal::WINCH,
        Signal::QUIT,
        Signal::INT,
    ] {
        s.signal(sig);
    }
    wait_until("all five signals to reach the program", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.lines().count() == 5)
    });
    let mut got: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    got.sort();
    assert_eq!(got, ["INT", "QUIT", "USR1", "USR2", "WINCH"]);
}

#[test]
fn sigterm_stops_every_generation_and_exits_with_the_program_status() {
    let mut s = Sup::start("sigterm", &[], "");
    let p1 = s.ready(1);
    s.signal(rustix::process::Signal::TERM);
    assert_eq!(
        s.g.wait().code(),
        Some(0),
        "the probe drains and exits 0 on SIGTERM"
    );
    assert!(!alive(p1));

    let mut s = Sup::start(
        "sigterm-kill",
        &["--stop-timeout", "100ms"],
        "PROBE_IGNORE_TERM=1",
    );
    let p1 = s.ready(1);
    s.signal(rustix::process::Signal::TERM);
    assert_eq!(
        s.g.wait().code(),
        Some(128 + 9),
        "SIGKILL after the stop timeout: 128+9"
    );
    assert!(!alive(p1));
}

#[test]
fn program_crash_ends_gracewrap_with_its_status() {
    let mut s = Sup::start("crash-exit", &[], "");
    let p1 = s.ready(1);
    kill(p1, rustix::process::Signal::SEGV);
    assert_eq!(s.g.wait().code(), Some(128 + 11));
}

#[test]
fn restart_on_exit_starts_a_new_generation() {
    let mut s = Sup::start("respawn", &["--restart-on-exit"], "");
    let p1 = s.ready(1);
    kill(p1, rustix::process::Signal::KILL);
    let line = s.g.stderr_line("starting a new generation in");
    assert!(line.contains("was killed by SIGKILL"), "{line}");
    let p2 = s.ready(2);
    wait_until("the new generation to answer", || {
        ask(&s.addr).is_some_and(|(p, _)| p == p2)
    });
}

#[test]
fn pid_file_is_written_and_removed() {
    let dir = temp_dir("pidfile");
    let pid_file = dir.join("gw.pid");
    let mut s = Sup::start(
        "pidfile-sup",
        &["--pid-file", pid_file.to_str().unwrap()],
        "",
    );
    s.ready(1);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", s.pid())
    );
    s.signal(rustix::process::Signal::TERM);
    s.g.wait();
    assert!(!pid_file.exists());
}

#[test]
fn unix_socket_files_it_created_are_removed_on_exit() {
    let dir = temp_dir("cleanup");
    let sock = dir.join("s.sock");
    let mut g = Running::spawn(&mut gracewrap([
        "-s",
        "-v",
        "-l",
        &format!("unix:{}", sock.display()),
        "--",
        probe().to_str().unwrap(),
        "serve",
    ]));
    g.stderr_line("generation 1 (pid");
    assert!(sock.exists());
    kill(g.child.id(), rustix::process::Signal::TERM);
    g.wait();
    assert!(
        !sock.exists(),
        "gracewrap removes the socket file it made when it exits"
    );
    // --accept too.
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "-l",
        &format!("unix:{}", sock.display()),
        "--",
        "cat",
    ]));
    g.stderr_line("accepting on");
    assert!(sock.exists());
    kill(g.child.id(), rustix::process::Signal::TERM);
    assert_eq!(g.wait().code(), Some(0));
    assert!(!sock.exists());
}

/// A NOTIFY_SOCKET in `dir`, as a service manager listens on it: the
/// kernel names the sender of each message (SO_PASSCRED), as for systemd.
pub(crate) fn notify_manager(dir: &Path) -> (PathBuf, UnixDatagram) {
    let path = dir.join("notify.sock");
    let manager = UnixDatagram::bind(&path).unwrap();
    manager.set_read_timeout(Some(DEADLINE)).unwrap();
    rustix::net::sockopt::set_socket_passcred(&manager, true).unwrap();
    (path, manager)
}

/// The next notification, within the deadline.
fn manager_next(manager: &UnixDatagram) -> String {
    manager_next_from(manager).1
}

/// The next notification and the pid of its sender (what systemd checks
/// against `NotifyAccess=`), within the deadline.
pub(crate) fn manager_next_from(manager: &UnixDatagram) -> (u32, String) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = [0u8; 4096];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = rustix::net::recvmsg(manager, &mut iov, &mut control, RecvFlags::empty())
        .expect("a notification");
    let pid = control
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmCredentials(cred) => Some(cred.pid.as_raw_pid() as u32),
            _ => None,
        })
        .expect("the sender's credentials");
    (pid, String::from_utf8_lossy(&buf[..msg.bytes]).into_owned())
}

/// The sd_notify sequence a systemd Type=notify service manager sees.
#[test]
fn sd_notify_upward_ready_reloading_stopping() {
    let dir = temp_dir("notify");
    let (path, manager) = notify_manager(&dir);
    let next = || manager_next(&manager);
    let mut g = Running::spawn(
        gracewrap([
            "-s",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            probe().to_str().unwrap(),
            "serve",
        ])
        .env("NOTIFY_SOCKET", &path)
        .env("PROBE_REPORT", dir.join("report")),
    );
    let gw = g.child.id();
    let m = next();
    assert!(m.starts_with("READY=1\n"), "{m}");
    assert!(m.contains(&format!("\nMAINPID={gw}\n")), "{m}");
    assert!(m.contains("STATUS=serving: generation 1 (pid "), "{m}");
    kill(gw, rustix::process::Signal::HUP);
    let m = next();
    assert!(m.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{m}");
    let usec: u64 = m.lines().nth(1).unwrap()["MONOTONIC_USEC=".len()..]
        .parse()
        .unwrap();
    assert!(usec > 0);
    let m = next();
    assert!(
        m.starts_with("READY=1\nSTATUS=serving: generation 2 (pid "),
        "{m}"
    );
    kill(gw, rustix::process::Signal::TERM);
    assert_eq!(next(), "STOPPING=1");
    g.wait();
}

/// A crash with --restart-on-exit is not a reload: no RELOADING=1 (which
/// would leave the service manager waiting for a READY=1).
#[test]
fn sd_notify_after_a_crash_is_a_status_not_a_reload() {
    let dir = temp_dir("notify-crash");
    let (path, manager) = notify_manager(&dir);
    let next = || manager_next(&manager);
    let mut g = Running::spawn(
        gracewrap([
            "-s",
            "-v",
            "--restart-on-exit",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            probe().to_str().unwrap(),
            "serve",
        ])
        .env("NOTIFY_SOCKET", &path)
        .env("PROBE_REPORT", dir.join("report")),
    );
    let line = g.stderr_line("generation 1 (pid");
    assert!(next().starts_with("READY=1\n"));
    kill(pid_in(&line, 1), rustix::process::Signal::KILL);
    let m = next();
    assert!(m.starts_with("STATUS=serving: generation 2 (pid "), "{m}");
}

/// As PID 1 (unshare --pid), orphans left by PROGRAM are reaped and a
/// program killed by a signal makes gracewrap exit 128+signal.
#[test]
fn as_pid_1_orphans_are_reaped_and_signal_deaths_give_128_plus() {
    let dir = temp_dir("pid1");
    let fifo = dir.join("fifo");
    make_fifo(&fifo);
    let mut g = Running::spawn(
        Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                gracewrap_path(),
                "-s",
                "-v",
                "-l",
                "tcp:127.0.0.1:0",
                "--",
            ])
            .arg(probe())
            .arg("serve")
            .env("PROBE_SPAWN_ORPHAN", &fifo)
            .env("PROBE_REPORT", dir.join("report")),
    );
    let line = g.stderr_line("generation 1 (pid");
    assert!(
        line.contains("(pid 2)"),
        "the first child of PID 1 is pid 2: {line}"
    );
    // Find gracewrap (PID 1 inside) from outside: unshare's child.
    let gw = wait_for_child(g.child.id());
    let report = dir.join("report");
    wait_until("the generation to report", || report.exists());
    let r = Report::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        r.ppid, 1,
        "inside the namespace the generation's parent is PID 1"
    );
    // The orphan (`read` of the fifo) was re-parented to gracewrap.
    wait_until("the orphan to be re-parented to gracewrap", || {
        children_of(gw).len() == 2
    });
    std::fs::write(&fifo, "go\n").unwrap(); // the orphan exits
    wait_until("the orphan to be reaped (no zombie)", || {
        children_of(gw).len() == 1
    });
    let generation = children_of(gw)[0];
    kill(generation, rustix::process::Signal::USR1);
    assert_eq!(g.wait().code(), Some(128 + 10), "{:?}", g.stderr_seen);
}

/// `gracewrap -s` whose generation leaves an orphan (a `read` of the
/// returned fifo) behind; returns once the orphan is gracewrap's child.
fn supervise_an_orphan_maker(dir: &Path) -> (Running, PathBuf) {
    let fifo = dir.join("fifo");
    make_fifo(&fifo);
    let mut g = Running::spawn(
        gracewrap([
            "-s",
            "-v",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            probe().to_str().unwrap(),
            "serve",
        ])
        .env("PROBE_SPAWN_ORPHAN", &fifo)
        .env("PROBE_REPORT", dir.join("report")),
    );
    g.stderr_line("generation 1 (pid");
    let gw = g.child.id();
    wait_until("the orphan to be re-parented to gracewrap", || {
        children_of(gw).len() == 2
    });
    (g, fifo)
}

/// Outside a PID namespace gracewrap is a child subreaper: same duty.
#[test]
fn orphans_are_reaped_outside_pid_1_too() {
    let dir = temp_dir("subreaper");
    let (g, fifo) = supervise_an_orphan_maker(&dir);
    let gw = g.child.id();
    std::fs::write(&fifo, "go\n").unwrap();
    wait_until("the orphan to be reaped", || children_of(gw).len() == 1);
}

/// The first child of `pid`, once there is one: the PID 1 that
/// `unshare --pid --fork` started, seen from outside.
pub(crate) fn wait_for_child(pid: u32) -> u32 {
    let mut child = 0;
    wait_until("unshare's child", || {
        child = children_of(pid).first().copied().unwrap_or(0);
        child != 0
    });
    child
}

#[test]
fn process_group_mode_signals_the_whole_group() {
    let dir = temp_dir("pgroup");
    let log = dir.join("signals");
    // The program runs the probe as a child of a shell (not exec): only a
    // signal to the group reaches the probe.
    let script = dir.join("app");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nPROBE_SIGNAL_LOG='{}' '{}' serve\n",
            log.display(),
            probe().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut g = Running::spawn(
        gracewrap([
            "-s",
            "-v",
            "--process-group",
            "--ready-delay",
            "50ms",
            "--stop-timeout",
            "500ms",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
        ])
        .arg(&script)
        .env("PROBE_REPORT", dir.join("report"))
        // The leftover probe gets the stop signal as soon as the shell
        // dies: ignoring it (SIGKILL after 500 ms) leaves its signal log
        // thread the time to write USR2 down.
        .env("PROBE_IGNORE_TERM", "1"),
    );
    g.stderr_line("generation 1 (pid");
    wait_until("the probe to start", || dir.join("report").exists());
    let grandchild = Report::parse(&std::fs::read_to_string(dir.join("report")).unwrap())
        .unwrap()
        .pid;
    // The probe reports before it sets up its handlers: wait for them.
    wait_until("the probe to catch USR2", || {
        std::fs::read_to_string(format!("/proc/{grandchild}/status")).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .is_some_and(|m| m & (1 << (libc::SIGUSR2 - 1)) != 0)
        })
    });
    kill(g.child.id(), rustix::process::Signal::USR2);
    wait_until("USR2 to reach the grandchild", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("USR2"))
    });
    // USR2 killed the shell (the generation): gracewrap stops, and the
    // shell's child it left behind is stopped too, not orphaned.
    assert_eq!(g.wait().code(), Some(128 + 12));
    assert!(
        !alive(grandchild),
        "the generation's leftover process outlived gracewrap"
    );
}

#[test]
fn leftover_orphans_are_stopped_before_gracewrap_exits() {
    let dir = temp_dir("leftovers");
    let (mut g, _fifo) = supervise_an_orphan_maker(&dir);
    let gw = g.child.id();
    let orphan = children_of(gw)
        .into_iter()
        .find(|&c| {
            !g.stderr_seen
                .iter()
                .any(|l| l.contains(&format!("pid {c})")))
        })
        .unwrap();
    kill(gw, rustix::process::Signal::TERM);
    let line = g.stderr_line("leftover process");
    assert!(line.contains(&orphan.to_string()), "{line}");
    assert_eq!(g.wait().code(), Some(0));
    assert!(!alive(orphan), "the orphan outlived gracewrap");
}

/// `--process-group` under a terminal: the generation leads its own group
/// and takes the terminal's foreground, as tini -g does, so that the
/// terminal's signals (Ctrl-C) reach it. Run in a real pseudo-terminal
/// (Python's pty module); the generation reports its process group and
/// the terminal's foreground group from /proc/self/stat.
#[test]
fn with_process_group_a_generation_under_a_terminal_takes_the_foreground() {
    let driver = "import os, pty, sys\n\
        pid, fd = pty.fork()\n\
        if pid == 0:\n    os.execvp(sys.argv[1], sys.argv[1:])\n\
        out = b''\n\
        while True:\n    try:\n        d = os.read(fd, 4096)\n    except OSError:\n        break\n    if not d:\n        break\n    out += d\n\
        _, status = os.waitpid(pid, 0)\n\
        sys.stdout.write(out.decode(errors='replace'))\n\
        sys.exit(os.waitstatus_to_exitcode(status))\n";
    let out = run(Command::new("python3").args([
        "-c",
        driver,
        gracewrap_path(),
        "-s",
        "--process-group",
        "-l",
        &quiet_spec(),
        "--",
        "cat",
        "/proc/self/stat",
    ]));
    out.expect_code(0);
    // pid (comm) state ppid pgrp session tty_nr tpgid ...
    let stat = out.stdout.trim();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let pid = stat.split(' ').next().unwrap();
    assert!(fields.len() > 5, "{out}");
    let (pgrp, tpgid) = (fields[2], fields[5]);
    assert_eq!(pgrp, pid, "leads its own group\n{out}");
    assert_eq!(tpgid, pgrp, "holds the terminal's foreground\n{out}");
}

/// `--stop-delay`: on SIGTERM the service manager hears STOPPING=1 at
/// once, the generation keeps serving for the delay (load balancers
/// drain), then it is stopped; a second SIGTERM cuts the delay short.
#[test]
fn stop_delay_keeps_serving_after_sigterm_and_a_second_sigterm_stops_at_once() {
    use std::time::{Duration, Instant};
    let dir = temp_dir("stop-delay");
    let upstream = UnixDatagram::bind(dir.join("notify")).unwrap();
    upstream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let serve = "import socket
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\nhi')
    c.close()";
    for (delay, second) in [("1s", false), ("60s", true)] {
        let mut g = Running::spawn(
            gracewrap(["-s", "--stop-delay", delay, "-l", "tcp:127.0.0.1:0", "--"])
                .args(["/usr/bin/python3", "-c", serve])
                .env("NOTIFY_SOCKET", dir.join("notify")),
        );
        let addr = g.listening_addr();
        let mut buf = [0u8; 4096];
        // READY=1 once the generation waits for connections.
        let n = upstream.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
        let start = Instant::now();
        kill(g.child.id(), rustix::process::Signal::TERM);
        let n = upstream.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1"));
        g.stderr_line(&format!("stopping in {delay} (--stop-delay)"));
        // Still serving.
        assert!(
            try_http_get(&addr).is_ok(),
            "{delay}: not serving during the delay"
        );
        if second {
            kill(g.child.id(), rustix::process::Signal::TERM);
            g.stderr_line("SIGTERM again: stopping now");
        }
        let status = g.wait();
        assert_eq!(status.code(), Some(143), "{delay}: {:?}", g.stderr_seen);
        let took = start.elapsed();
        if second {
            assert!(took < Duration::from_secs(10), "{delay}: took {took:?}");
        } else {
            assert!(
                took >= Duration::from_secs(1),
                "{delay}: stopped after {took:?}"
            );
        }
    }
}

/// A process the shell started before it exec'd gracewrap is gracewrap's
/// child, but not a leftover of a generation: `exec gracewrap -s ...
/// 2> >(cat > LOG)` lost its log after the first restart, when the
/// replaced generation's "leftovers" (every other child) got SIGTERM.
#[test]
fn a_child_from_before_the_supervisor_started_is_not_a_leftover() {
    let dir = temp_dir("inherited-child");
    let log = dir.join("log");
    let script = format!(
        "exec {} -s -v -l tcp:127.0.0.1:0 -- /usr/bin/python3 -c {} 2> >(exec cat > {})",
        sh_quote(&[gracewrap_path()]),
        sh_quote(&[
            "import socket\ns = socket.socket(fileno=3)\nwhile True: s.accept()[0].close()"
        ]),
        sh_quote(&[log.to_str().unwrap()]),
    );
    // Running: its process group is killed when the test ends, however.
    let g = Running::spawn(Command::new("bash").args(["-c", &script]));
    let gw = g.child.id();
    let lines = |text: &str| std::fs::read_to_string(&log).map_or(0, |l| l.matches(text).count());
    wait_until("generation 1 ready", || lines("is ready") >= 1);
    for n in 1..=2 {
        kill(gw, rustix::process::Signal::HUP);
        // The replaced generation's end is still logged: cat is alive.
        wait_until("the replaced generation's end in the log", || {
            lines("was killed by SIGTERM") >= n
        });
    }
    // And gracewrap does not wait for cat at exit: cat is not its to stop.
    kill(gw, rustix::process::Signal::TERM);
    let mut g = g;
    assert_eq!(g.wait().code(), Some(143));
}
