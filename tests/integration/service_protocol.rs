//! The rest of systemd's service protocol in the supervisor (issue 14):
//! the watchdog both ways, the fd store, EXTEND_TIMEOUT_USEC=, and what
//! goes up to gracewrap's own service manager. The generations are
//! Python programs notifying through python3-systemd's
//! `systemd.daemon.notify()` (libsystemd's sd_pid_notify_with_fds) and
//! systemd's own `systemd-notify`; gracewrap's service manager is a fake
//! one here ([`Manager`]) that records what arrives, with timestamps.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// One generation program for every test: what it does is chosen by its
/// first argument, and by whether `FLAG` exists (it is created by the
/// first generation that looks), so the first and later generations can
/// differ. It writes `pid ENV...` lines to `LOG`.
const GEN: &str = r#"
import ctypes, os, select, signal, sys, time
from systemd import daemon
mode, flag, log = sys.argv[1], sys.argv[2], sys.argv[3]
first = not os.path.exists(flag)
open(flag, "a").close()
def note(text):
    with open(log, "a") as f:
        f.write("%d %s\n" % (os.getpid(), text))
env = lambda k: os.environ.get(k, "-")
usec = ctypes.c_uint64(0)
lib = ctypes.CDLL("libsystemd.so.0")
enabled = lib.sd_watchdog_enabled(0, ctypes.byref(usec))
note("start first=%s WATCHDOG_USEC=%s WATCHDOG_PID=%s enabled=%d/%d LISTEN_FDS=%s LISTEN_FDNAMES=%s" % (
    first, env("WATCHDOG_USEC"), env("WATCHDOG_PID"), enabled, usec.value,
    env("LISTEN_FDS"), env("LISTEN_FDNAMES")))
def ping_forever(every):
    while True:
        daemon.notify("WATCHDOG=1")
        note("ping")
        time.sleep(every)
if mode == "stops-pinging":
    daemon.notify("READY=1")
    if first:
        for _ in range(3):
            daemon.notify("WATCHDOG=1"); time.sleep(0.1)
        note("silent")
        time.sleep(3600)
    ping_forever(0.1)
elif mode == "trigger":
    daemon.notify("READY=1")
    if first:
        daemon.notify("WATCHDOG=trigger")
    time.sleep(3600)
elif mode == "own-interval":
    daemon.notify("READY=1\nWATCHDOG_USEC=" + ("0" if first else "200000"))
    note("set")
    time.sleep(3600)
elif mode == "slow-start":
    time.sleep(1.5)
    daemon.notify("READY=1")
    note("ready")
    ping_forever(0.1)
elif mode == "slow-restart":
    if not first:
        time.sleep(1.5)
    daemon.notify("READY=1")
    note("ready")
    ping_forever(0.1)
elif mode == "hang-after-first":
    if first:
        daemon.notify("READY=1")
    time.sleep(3600)
elif mode == "extend-start":
    if not first:
        daemon.notify("EXTEND_TIMEOUT_USEC=5000000")
        time.sleep(1.5)
    daemon.notify("READY=1")
    time.sleep(3600)
elif mode == "extend-stop":
    def on_term(*_):
        daemon.notify("EXTEND_TIMEOUT_USEC=5000000")
        note("stopping")
        time.sleep(1.5)
        note("stopped")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    daemon.notify("READY=1")
    while True:
        time.sleep(3600)
elif mode == "relay":
    daemon.notify("READY=1\nSTATUS=all good\nERRNO=5\nBUSERROR=org.example.Failed")
    time.sleep(3600)
elif mode == "store":
    # Three memfds in one message, named m; FDPOLL=0 (a memfd never
    # hangs up anyway).
    if first:
        fds = []
        for i in range(3):
            fd = os.memfd_create("m%d" % i)
            os.write(fd, b"kept %d" % i)
            fds.append(fd)
        daemon.notify("FDSTORE=1\nFDNAME=m\nFDPOLL=0", fds=fds)
        # A pipe's write end sent without FDSTORE=1: gracewrap must close
        # it, so the read end sees EOF once ours is closed too.
        r, w = os.pipe()
        daemon.notify("STATUS=not stored", fds=[w])
        os.close(w)
        ready = select.select([r], [], [], 10)[0]
        note("pipe " + ("eof" if ready and os.read(r, 1) == b"" else "still open"))
    else:
        n = int(env("LISTEN_FDS"))
        for fd in range(4, 3 + n):
            note("fd %d holds %r" % (fd, os.pread(fd, 10, 0)))
    daemon.notify("READY=1")
    time.sleep(3600)
elif mode == "store-remove":
    if first:
        r, w = os.pipe()
        a = os.memfd_create("a")
        daemon.notify("FDSTORE=1\nFDNAME=gone", fds=[r])
        daemon.notify("FDSTORE=1\nFDNAME=a", fds=[a])
        daemon.notify("FDSTORE=1\nFDNAME=a", fds=[a])
        daemon.notify("FDSTOREREMOVE=1\nFDNAME=nothing-by-that-name")
        note("stored")
        # The write end goes: the read end in the store hangs up.
        os.close(w)
    daemon.notify("READY=1")
    time.sleep(3600)
elif mode == "fifo":
    fd = os.open(sys.argv[4], os.O_WRONLY)
    daemon.notify("FDSTORE=1\nFDNAME=fifo\nFDPOLL=0", fds=[fd])
    os.close(fd)
    daemon.notify("READY=1")
    time.sleep(3600)
elif mode == "store-exit":
    # 200 memfds, one message each, then exit at once.
    if first:
        daemon.notify("READY=1")
        for i in range(200):
            daemon.notify("FDSTORE=1\nFDNAME=e%d" % i, fds=[os.memfd_create("e")])
        sys.exit(0)
    daemon.notify("READY=1")
    time.sleep(3600)
elif mode == "store-long-names":
    # 600 memfds named with 255 bytes each: 153 kB of names.
    if first:
        for i in range(600):
            name = ("n%03d" % i).ljust(255, "x")
            daemon.notify("FDSTORE=1\nFDNAME=" + name, fds=[os.memfd_create("n")])
        note("stored")
    daemon.notify("READY=1")
    time.sleep(3600)
elif mode == "systemd-notify":
    os.system("systemd-notify --ready --status=from-systemd-notify")
    note("notified")
    time.sleep(3600)
"#;

/// A directory with the generation program, its flag and its log.
struct Gen {
    dir: PathBuf,
}

impl Gen {
    fn new(name: &str) -> Gen {
        let dir = temp_dir(name);
        std::fs::write(dir.join("g.py"), GEN).unwrap();
        Gen { dir }
    }

    /// The command line after `--` for `mode`.
    fn argv(&self, mode: &str) -> Vec<String> {
        let p = |f: &str| self.dir.join(f).to_string_lossy().into_owned();
        vec![
            "/usr/bin/python3".into(),
            p("g.py"),
            mode.into(),
            p("flag"),
            p("log"),
        ]
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Waits for a log line that contains `needle`; returns it.
    #[track_caller]
    fn wait_log(&self, needle: &str) -> String {
        let mut found = String::new();
        wait_until(
            &format!("{needle:?} in the generations' log"),
            || match self.log().lines().find(|l| l.contains(needle)) {
                Some(l) => {
                    found = l.to_string();
                    true
                }
                None => false,
            },
        );
        found
    }

    /// How many log lines from `pid` contain `needle`.
    fn count(&self, pid: &str, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with(&format!("{pid} ")) && l.contains(needle))
            .count()
    }
}

/// gracewrap -s -v OPTIONS -l tcp:127.0.0.1:0 -- the generation in `mode`.
fn supervise(g: &Gen, options: &[&str], mode: &str) -> Command {
    let mut cmd = gracewrap(["-s", "-v"]);
    cmd.args(options)
        .args(["-l", "tcp:127.0.0.1:0", "--"])
        .args(g.argv(mode))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    cmd
}

/// The pid in a line naming `generation N (pid P)`.
fn pid_of(line: &str, generation: u32) -> String {
    let key = format!("generation {generation} (pid ");
    let rest = &line[line.find(&key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
    rest[..rest.find(')').unwrap()].to_string()
}

/// A fake service manager: a datagram socket that records every message
/// with the time it arrived.
struct Manager {
    path: PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Manager {
    fn new(dir: &Path) -> Manager {
        let path = dir.join("manager.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let record = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                record.lock().unwrap().push((Instant::now(), text));
            }
        });
        Manager { path, got }
    }

    /// Runs `cmd` as this manager's service, with a watchdog of `watchdog`.
    fn serve(&self, cmd: &mut Command, watchdog: Option<Duration>) {
        cmd.env("NOTIFY_SOCKET", &self.path);
        if let Some(w) = watchdog {
            cmd.env("WATCHDOG_USEC", w.as_micros().to_string());
        }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.got.lock().unwrap().clone()
    }

    /// The times WATCHDOG=1 arrived.
    fn pings(&self) -> Vec<Instant> {
        self.messages()
            .into_iter()
            .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(t, _)| t)
            .collect()
    }

    #[track_caller]
    fn wait_for(&self, what: &str) -> Instant {
        let mut at = None;
        wait_until(&format!("{what:?} at the service manager"), || {
            at = self
                .messages()
                .into_iter()
                .find(|(_, m)| m.contains(what))
                .map(|(t, _)| t);
            at.is_some()
        });
        at.unwrap()
    }
}

/// The largest gap between `start` and the pings up to `end`, and between
/// consecutive ones.
fn largest_gap(start: Instant, pings: &[Instant], end: Instant) -> Duration {
    let mut last = start;
    let mut most = Duration::ZERO;
    for &t in pings
        .iter()
        .filter(|&&t| t <= end)
        .chain(std::iter::once(&end))
    {
        most = most.max(t.saturating_duration_since(last));
        last = last.max(t);
    }
    most
}

#[test]
fn each_generation_gets_its_own_watchdog_variables() {
    let g = Gen::new("wd-vars");
    // gracewrap's own WATCHDOG_* (meant for it) never reach a generation.
    let mut cmd = supervise(&g, &["--watchdog", "2s"], "own-interval");
    cmd.env("WATCHDOG_USEC", "999").env("WATCHDOG_PID", "1");
    let mut gw = Running::spawn(&mut cmd);
    let ready = gw.stderr_line("is ready");
    let pid = pid_of(&ready, 1);
    let line = g.wait_log("start");
    // libsystemd's sd_watchdog_enabled() agrees: enabled, 2 s.
    assert_eq!(
        line,
        format!(
            "{pid} start first=True WATCHDOG_USEC=2000000 WATCHDOG_PID={pid} enabled=1/2000000 LISTEN_FDS=1 LISTEN_FDNAMES=unknown"
        )
    );
    drop(gw);
    // Without --watchdog: neither variable.
    let g = Gen::new("wd-none");
    let mut cmd = supervise(&g, &[], "relay");
    cmd.env("WATCHDOG_USEC", "999").env("WATCHDOG_PID", "1");
    let _gw = Running::spawn(&mut cmd);
    let line = g.wait_log("start");
    assert!(
        line.contains("WATCHDOG_USEC=- WATCHDOG_PID=- enabled=0/0"),
        "{line}"
    );
}

#[test]
fn a_generation_that_stops_pinging_is_replaced() {
    let g = Gen::new("wd-miss");
    let mut gw = Running::spawn(&mut supervise(
        &g,
        &["--watchdog", "500ms"],
        "stops-pinging",
    ));
    let addr = gw.listening_addr();
    let first = pid_of(&gw.stderr_line("generation 1 (pid"), 1);
    g.wait_log(&format!("{first} silent"));
    let line = gw.stderr_line("watchdog:");
    assert!(
        line.contains(&format!(
            "watchdog: generation 1 (pid {first}) sent no WATCHDOG=1 for 500ms; stopping it, generation 2 (pid"
        )) && line.ends_with(") takes over"),
        "{line}"
    );
    let second = pid_of(&line, 2);
    gw.stderr_line(&format!("generation 1 (pid {first}) was killed by SIGTERM"));
    // The sockets stayed: a connection is accepted meanwhile.
    std::net::TcpStream::connect(&addr).unwrap();
    // Generation 2 pings every 100 ms: 20 pings (4 of its intervals) and
    // it is still there.
    wait_until("20 pings from generation 2", || {
        g.count(&second, "ping") >= 20
    });
    let later: Vec<String> = gw.lines_so_far();
    assert!(!later.iter().any(|l| l.contains("watchdog:")), "{later:?}");
}

#[test]
fn watchdog_trigger_replaces_at_once() {
    let g = Gen::new("wd-trigger");
    let start = Instant::now();
    let mut gw = Running::spawn(&mut supervise(&g, &["--watchdog", "1h"], "trigger"));
    let line = gw.stderr_line("watchdog:");
    assert!(
        line.contains("generation 1 (pid")
            && line.contains("sent WATCHDOG=trigger; stopping it, generation 2"),
        "{line}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
    gw.stderr_line("generation 2 (pid");
}

#[test]
fn watchdog_usec_from_the_program_sets_its_own_interval() {
    let g = Gen::new("wd-own");
    let mut gw = Running::spawn(&mut supervise(&g, &["--watchdog", "300ms"], "own-interval"));
    let first = pid_of(&gw.stderr_line("generation 1 (pid"), 1);
    g.wait_log(&format!("{first} set"));
    // WATCHDOG_USEC=0 turned its watchdog off: five of --watchdog's
    // intervals pass without a replacement.
    let set = Instant::now();
    wait_until("1.5 s", || set.elapsed() >= Duration::from_millis(1500));
    let so_far = gw.lines_so_far();
    assert!(
        !so_far.iter().any(|l| l.contains("watchdog:")),
        "{so_far:?}"
    );
    // The next generation sets 200 ms and never pings: replaced.
    signal(&gw, libc::SIGHUP);
    gw.stderr_line("it serves now");
    let line = gw.stderr_line("watchdog:");
    assert!(
        line.contains("generation 2 (pid") && line.contains("sent no WATCHDOG=1 for 200ms"),
        "{line}"
    );
}

#[test]
fn a_starting_generation_is_not_held_to_the_watchdog() {
    let g = Gen::new("wd-slow");
    let mut gw = Running::spawn(&mut supervise(&g, &["--watchdog", "300ms"], "slow-start"));
    let first = pid_of(&gw.stderr_line("generation 1 (pid"), 1);
    // It takes 1.5 s (five intervals) to be ready, then pings.
    gw.stderr_line("is ready (READY=1)");
    wait_until("pings", || g.count(&first, "ping") >= 10);
    let so_far = gw.lines_so_far();
    assert!(
        !so_far.iter().any(|l| l.contains("watchdog:")),
        "{so_far:?}"
    );
}

#[test]
fn the_upward_watchdog_is_fed_through_a_slow_restart() {
    let g = Gen::new("wd-up");
    let manager = Manager::new(&g.dir);
    let mut cmd = supervise(&g, &["--watchdog", "1s"], "slow-restart");
    manager.serve(&mut cmd, Some(Duration::from_millis(600)));
    let start = Instant::now();
    let mut gw = Running::spawn(&mut cmd);
    gw.stderr_line("the service manager's watchdog is 600ms: WATCHDOG=1 goes up every 300ms");
    manager.wait_for("READY=1");
    // The new generation takes 1.5 s to be ready (2.5 of the service
    // manager's intervals): the old one serves, WATCHDOG=1 goes on.
    signal(&gw, libc::SIGHUP);
    manager.wait_for("RELOADING=1");
    gw.stderr_line("it serves now");
    let end = Instant::now() + Duration::from_millis(700);
    wait_until("0.7 s more", || Instant::now() >= end);
    let pings = manager.pings();
    let gap = largest_gap(start, &pings, end);
    assert!(
        gap < Duration::from_millis(600),
        "largest gap {gap:?} in {} pings",
        pings.len()
    );
    assert!(pings.len() >= 5, "{} pings", pings.len());
}

#[test]
fn the_upward_watchdog_stops_while_nothing_healthy_serves() {
    let g = Gen::new("wd-up-stuck");
    let manager = Manager::new(&g.dir);
    // Generation 1 is ready, then stuck; generation 2 never gets ready.
    let mut cmd = supervise(
        &g,
        &[
            "--watchdog",
            "300ms",
            "--ready-timeout",
            "1s",
            "--ready",
            "notify",
        ],
        "hang-after-first",
    );
    manager.serve(&mut cmd, Some(Duration::from_millis(400)));
    let mut gw = Running::spawn(&mut cmd);
    manager.wait_for("READY=1");
    gw.stderr_line("watchdog: generation 1");
    let line = gw.stderr_line("not sending WATCHDOG=1");
    assert!(
        line.contains("while generation 2 (pid") && line.contains("is not ready in time"),
        "{line}"
    );
    let withheld = Instant::now();
    wait_until("1 s", || withheld.elapsed() >= Duration::from_secs(1));
    let late: Vec<Instant> = manager
        .pings()
        .into_iter()
        .filter(|&t| t > withheld)
        .collect();
    assert!(late.is_empty(), "{} pings after the line", late.len());
}

#[test]
fn the_upward_watchdog_follows_watchdog_pid() {
    // WATCHDOG_PID naming another process: not meant for gracewrap.
    let g = Gen::new("wd-up-pid");
    let manager = Manager::new(&g.dir);
    let mut cmd = supervise(&g, &[], "relay");
    manager.serve(&mut cmd, Some(Duration::from_millis(200)));
    cmd.env("WATCHDOG_PID", "1");
    let _gw = Running::spawn(&mut cmd);
    let ready = manager.wait_for("READY=1");
    wait_until("0.5 s", || ready.elapsed() >= Duration::from_millis(500));
    assert!(manager.pings().is_empty());
    // Naming gracewrap itself (sh execs it): fed.
    let g = Gen::new("wd-up-pid-ok");
    let manager = Manager::new(&g.dir);
    let mut inner = supervise(&g, &[], "relay");
    let argv: Vec<String> = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("WATCHDOG_PID=$$ exec {}", sh_quote(&argv))]);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    manager.serve(&mut cmd, Some(Duration::from_millis(200)));
    let _gw = Running::spawn(&mut cmd);
    wait_until("3 pings", || manager.pings().len() >= 3);
    let _ = &mut inner;
}

#[test]
fn extend_timeout_keeps_a_slow_candidate_and_goes_up() {
    let g = Gen::new("extend-start");
    let manager = Manager::new(&g.dir);
    let mut cmd = supervise(
        &g,
        &["--ready-timeout", "500ms", "--ready", "notify"],
        "extend-start",
    );
    manager.serve(&mut cmd, None);
    let mut gw = Running::spawn(&mut cmd);
    manager.wait_for("READY=1");
    signal(&gw, libc::SIGHUP);
    // Ready after 1.5 s, three times --ready-timeout, having asked for 5 s.
    let line = gw.stderr_line("generation 2 (pid");
    let line = if line.contains("serves now") {
        line
    } else {
        gw.stderr_line("generation 2 (pid")
    };
    let line = if line.contains("serves now") || line.contains("not ready") {
        line
    } else {
        gw.stderr_line("generation 2 (pid")
    };
    assert!(line.contains("it serves now"), "{line}");
    // gracewrap was reloading meanwhile: its manager got the extension.
    manager.wait_for("EXTEND_TIMEOUT_USEC=5000000");
}

#[test]
fn extend_timeout_holds_off_sigkill_while_stopping() {
    let g = Gen::new("extend-stop");
    let manager = Manager::new(&g.dir);
    let mut cmd = supervise(&g, &["--stop-timeout", "300ms"], "extend-stop");
    manager.serve(&mut cmd, None);
    let mut gw = Running::spawn(&mut cmd);
    manager.wait_for("READY=1");
    signal(&gw, libc::SIGTERM);
    manager.wait_for("STOPPING=1");
    manager.wait_for("EXTEND_TIMEOUT_USEC=5000000");
    // It exits 0 after 1.5 s, five times --stop-timeout: not SIGKILLed.
    assert_eq!(gw.wait().code(), Some(0));
    g.wait_log("stopped");
}

#[test]
fn status_errno_and_buserror_go_up() {
    let g = Gen::new("relay");
    let manager = Manager::new(&g.dir);
    let mut cmd = supervise(&g, &[], "relay");
    manager.serve(&mut cmd, None);
    let mut gw = Running::spawn(&mut cmd);
    let pid = pid_of(&gw.stderr_line("generation 1 (pid"), 1);
    manager.wait_for(&format!(
        "STATUS=generation 1 (pid {pid}): all good\nERRNO=5\nBUSERROR=org.example.Failed"
    ));
    // MAINPID stays gracewrap's.
    manager.wait_for(&format!("MAINPID={}", gw.child.id()));
}

#[test]
fn systemd_notify_works_from_a_generation() {
    let g = Gen::new("systemd-notify");
    let mut gw = Running::spawn(&mut supervise(&g, &["--ready", "notify"], "systemd-notify"));
    gw.stderr_line("generation 1 (pid");
    gw.stderr_line("is ready (READY=1)");
    // It waited for its barrier (BARRIER=1 with an fd gracewrap closes),
    // and went on.
    g.wait_log("notified");
}

/// Restarts with SIGHUP and returns the start line the new generation
/// logged (`start first=False ... LISTEN_FDS=N LISTEN_FDNAMES=...`) once
/// it serves.
fn restart_and_read_start(g: &Gen, gw: &mut Running) -> String {
    signal(gw, libc::SIGHUP);
    gw.stderr_line("it serves now");
    g.wait_log("start first=False")
}

#[test]
fn the_fd_store_keeps_up_to_its_size_and_passes_them_on() {
    let g = Gen::new("store");
    let mut gw = Running::spawn(&mut supervise(&g, &["--fdstore", "2"], "store"));
    let first = pid_of(&gw.stderr_line("generation 1 (pid"), 1);
    let full = gw.stderr_line("the fd store is full");
    assert_eq!(
        full,
        format!(
            "gracewrap: generation 1 (pid {first}) sent fds with FDSTORE=1, but the fd store is full (--fdstore 2): 1 closed (no more is said about its notifications)"
        )
    );
    // The fd sent without FDSTORE=1 was closed.
    assert_eq!(g.wait_log("pipe"), format!("{first} pipe eof"));
    gw.stderr_line("is ready");
    let start = restart_and_read_start(&g, &mut gw);
    assert!(
        start.ends_with("LISTEN_FDS=3 LISTEN_FDNAMES=unknown:m:m"),
        "{start}"
    );
    // Newest first, as systemd: the second and first memfd.
    g.wait_log("fd 5 holds");
    let log = g.log();
    assert!(log.contains("fd 4 holds b'kept 1'"), "{log}");
    assert!(log.contains("fd 5 holds b'kept 0'"), "{log}");
}

#[test]
fn the_fd_store_is_off_by_default() {
    let g = Gen::new("store-off");
    let mut gw = Running::spawn(&mut supervise(&g, &[], "store"));
    let line = gw.stderr_line("FDSTORE=1");
    assert!(
        line.contains("the fd store is off (--fdstore 0): closed"),
        "{line}"
    );
    gw.stderr_line("is ready");
    let start = restart_and_read_start(&g, &mut gw);
    assert!(
        start.ends_with("LISTEN_FDS=1 LISTEN_FDNAMES=unknown"),
        "{start}"
    );
}

#[test]
fn stored_fds_are_dropped_on_hangup_and_kept_once() {
    let g = Gen::new("store-remove");
    let mut gw = Running::spawn(&mut supervise(&g, &["--fdstore", "8"], "store-remove"));
    gw.stderr_line("stored a pipe as gone for");
    // The rest in any order: the read end hangs up once the write end is
    // closed, which gracewrap may see before or after it reads the
    // messages sent before that, and READY=1.
    let mut wanted = vec![
        "stored a file as a for",
        "removed 0 stored fd(s) named nothing-by-that-name",
        // Its write end closed: the stored read end hung up.
        "stored fd gone hung up: closed",
        "is ready",
    ];
    while !wanted.is_empty() {
        let line = gw.stderr_line("");
        wanted.retain(|w| !line.contains(w));
    }
    // The memfd sent twice was stored once; the pipe is gone.
    let start = restart_and_read_start(&g, &mut gw);
    assert!(
        start.ends_with("LISTEN_FDS=2 LISTEN_FDNAMES=unknown:a"),
        "{start}"
    );
}

#[test]
fn stored_fds_are_closed_when_gracewrap_exits() {
    let g = Gen::new("store-fifo");
    let fifo = g.dir.join("fifo");
    make_fifo(&fifo);
    // Ours is the read end, opened first (non-blocking) so that the
    // generation's open for writing does not wait.
    use std::os::unix::fs::OpenOptionsExt;
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut cmd = supervise(&g, &["--fdstore", "1", "--stop-timeout", "0"], "fifo");
    cmd.arg(&fifo);
    let mut gw = Running::spawn(&mut cmd);
    gw.stderr_line("stored a pipe as fifo for");
    gw.stderr_line("is ready");
    use std::io::Read;
    let mut buf = [0u8; 8];
    // The generation closed its copy; gracewrap's keeps the FIFO open.
    let err = reader.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    signal(&gw, libc::SIGTERM);
    gw.wait();
    assert_eq!(reader.read(&mut buf).unwrap(), 0, "EOF: no writer left");
}

#[test]
fn an_fd_store_the_fd_limit_cannot_hold_fails_at_start() {
    let g = Gen::new("store-limit");
    let mut cmd = supervise(&g, &["--fdstore", "4096"], "relay");
    with_nofile(&mut cmd, 1024, 1024);
    let out = run(&mut cmd);
    out.expect_code(125).expect_stderr(
        "gracewrap: --fdstore 4096 needs 8192 more file descriptors, but RLIMIT_NOFILE allows only 1024",
    );
    // Nothing started.
    assert!(g.log().is_empty());
}

#[test]
fn fds_stored_just_before_an_exit_are_kept() {
    // The messages a generation queued before it exited were read after
    // it was forgotten, as a stranger's: some of the 200 fds were lost in
    // about one run in four. Three runs.
    for run in 0..3 {
        let g = Gen::new(&format!("store-exit-{run}"));
        let mut gw = Running::spawn(&mut supervise(
            &g,
            &["--fdstore", "300", "--restart-on-exit"],
            "store-exit",
        ));
        gw.stderr_line("generation 2 (pid");
        let start = g.wait_log("start first=False");
        assert!(start.contains(" LISTEN_FDS=201 "), "run {run}: {start}");
    }
}

#[test]
fn stored_names_must_fit_in_listen_fdnames() {
    let g = Gen::new("store-long-names");
    let mut gw = Running::spawn(&mut supervise(
        &g,
        &["--fdstore", "600"],
        "store-long-names",
    ));
    let line = gw.stderr_line("would make LISTEN_FDNAMES longer");
    assert!(
        line.contains("131056 bytes an environment string can hold"),
        "{line}"
    );
    g.wait_log("stored");
    gw.stderr_line("is ready");
    // The next generation starts: its exec does not fail with E2BIG.
    let start = restart_and_read_start(&g, &mut gw);
    let n: usize = start
        .split(" LISTEN_FDS=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((500..600).contains(&n), "{n}");
}
