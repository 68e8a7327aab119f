//! The resident modes under attack and under faults (issue 12): what a
//! local user, a hostile program or a broken environment cannot do to
//! gracewrap, and what gracewrap promises in return.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// `/proc/PID/comm`, or None once the process is gone.
fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

/// Gone, or a zombie nobody reaped yet: either way no longer running.
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// The one child of `parent` once it runs `name`.
#[track_caller]
fn child_running(parent: u32, name: &str) -> u32 {
    let mut found = None;
    wait_until(&format!("a child running {name}"), || {
        found = children_of(parent)
            .into_iter()
            .find(|&c| comm(c).as_deref() == Some(name));
        found.is_some()
    });
    found.unwrap()
}

/// Kills gracewrap with SIGKILL (no chance to clean up) and checks that
/// `program` gets the parent-death signal all the same.
#[track_caller]
fn dies_with_gracewrap(gw: &mut Running, program: u32) {
    let _ = gw.child.kill();
    let _ = gw.wait();
    assert!(
        wait_until_ok(Duration::from_secs(5), || dead(program)),
        "PROGRAM (pid {program}) outlived gracewrap"
    );
}

/// The kernel clears PR_SET_PDEATHSIG when a process changes its
/// credentials, which the child does for `--user`: it must set it again,
/// or a generation survives a supervisor killed with SIGKILL.
#[test]
fn with_user_a_generation_still_dies_with_its_supervisor() {
    let mut gw = Running::spawn(&mut gracewrap([
        "-s",
        "--user",
        "nobody",
        "-l",
        &quiet_spec(),
        "--",
        "sleep",
        "100",
    ]));
    let program = child_running(gw.child.id(), "sleep");
    dies_with_gracewrap(&mut gw, program);
}

/// The same for `--accept`: the program of each connection.
#[test]
fn with_user_a_connections_program_still_dies_with_gracewrap() {
    let mut gw = Running::spawn(&mut gracewrap([
        "-a",
        "--user",
        "nobody",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "sleep",
        "100",
    ]));
    let addr = gw.accepting_addr();
    let _conn = TcpStream::connect(&addr).unwrap();
    let program = child_running(gw.child.id(), "sleep");
    dies_with_gracewrap(&mut gw, program);
}

/// Starts `gracewrap -s ARGS -- python3 -c CODE` where CODE creates
/// DIR/ready once it has set itself up; returns it with the directory.
fn supervise_python(args: &[&str], code: &str) -> (Running, std::path::PathBuf) {
    let dir = temp_dir("python");
    let ready = dir.join("ready");
    let code = format!(
        "import os, signal, sys, time\n{code}\nopen({:?}, 'w').close()\nwhile True: time.sleep(60)\n",
        ready.to_str().unwrap()
    );
    let mut cmd = gracewrap(["-s"]);
    cmd.args(args)
        .args(["-l", &quiet_spec(), "--", "python3", "-c", &code]);
    let gw = Running::spawn(&mut cmd);
    wait_until("the program is set up", || ready.exists());
    (gw, dir)
}

/// Real-time signals have no name in rustix: `--stop-signal 40` was
/// accepted and never sent, and the generation got SIGKILL after the
/// stop timeout instead.
#[test]
fn a_real_time_stop_signal_is_delivered() {
    let (mut gw, _dir) = supervise_python(
        &["--stop-signal", "40", "--stop-timeout", "20s"],
        "signal.signal(40, lambda *a: sys.exit(7))",
    );
    signal(&gw, libc::SIGTERM);
    assert_eq!(gw.wait().code(), Some(7), "{:?}", gw.stderr_seen);
}

/// `--process-group`: a generation that moves itself to another process
/// group left its own group empty, and kill(-pid) reached nobody: the
/// stop hung for good. The generation gets the signal itself as well.
#[test]
fn a_generation_that_leaves_its_process_group_can_still_be_stopped() {
    let (mut gw, _dir) = supervise_python(
        &["--process-group", "--stop-timeout", "20s"],
        "os.setpgid(0, os.getpgid(os.getppid()))",
    );
    signal(&gw, libc::SIGTERM);
    // Python dies of the SIGTERM: 128 + 15, long before the stop timeout.
    assert_eq!(gw.wait().code(), Some(143), "{:?}", gw.stderr_seen);
}

/// SIGTERM while `--restart-on-exit` waits out its back-off: gracewrap
/// exits with the status of the generation that kept failing, not 0.
#[test]
fn stopped_during_the_restart_back_off_gracewrap_exits_with_the_last_status() {
    let mut gw = Running::spawn(&mut gracewrap([
        "-s",
        "--restart-on-exit",
        "-l",
        &quiet_spec(),
        "--",
        "sh",
        "-c",
        "trap '' TERM; exit 3",
    ]));
    gw.stderr_line("exited with status 3; starting a new generation in 400ms");
    signal(&gw, libc::SIGTERM);
    assert_eq!(gw.wait().code(), Some(3), "{:?}", gw.stderr_seen);
}

/// A service manager that does not read its NOTIFY_SOCKET: gracewrap's
/// messages upward are dropped, never waited for. They blocked sendto(2)
/// once the queue was full (10 datagrams), and SIGTERM went unheard.
#[test]
fn a_service_manager_that_never_reads_cannot_stall_the_supervisor() {
    let dir = temp_dir("deafmanager");
    let manager = dir.join("notify.sock");
    let _deaf = std::os::unix::net::UnixDatagram::bind(&manager).unwrap();
    let ready = dir.join("ready");
    let code = format!(
        "import os, socket, time\n\
         e = os.environ['NOTIFY_SOCKET']\n\
         a = '\\0' + e[1:] if e.startswith('@') else e\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.sendto(b'READY=1', a)\n\
         for i in range(30): s.sendto(b'STATUS=line %d' % i, a)\n\
         open({:?}, 'w').close()\n\
         while True: time.sleep(60)\n",
        ready.to_str().unwrap()
    );
    let mut gw = Running::spawn(
        gracewrap(["-s", "-l", &quiet_spec(), "--", "python3", "-c", &code])
            .env("NOTIFY_SOCKET", &manager),
    );
    wait_until("the program sent its messages", || ready.exists());
    signal(&gw, libc::SIGTERM);
    assert_eq!(gw.wait().code(), Some(143), "{:?}", gw.stderr_seen);
}

/// `--chdir DIR -- ./app` runs DIR/app in every mode: the resident modes'
/// start-up check looks for it where the program will run, as exec mode's
/// exec does (they said "cannot execute ./app: entity not found").
#[test]
fn a_relative_program_is_found_in_the_chdir_directory_in_every_mode() {
    let dir = temp_dir("chdirapp");
    // Written by a child process: see write_executable (ETXTBSY).
    write_executable(&dir.join("app"), "#!/bin/sh\necho \"ran in $PWD\"\n");
    let want = format!("ran in {}\n", dir.display());
    let chdir = dir.to_str().unwrap();
    for mode in [&[][..], &["-s"][..]] {
        let mut cmd = gracewrap(mode);
        cmd.args(["--chdir", chdir, "-l", &quiet_spec(), "--", "./app"]);
        let out = run(&mut cmd);
        out.expect_code(0);
        assert_eq!(out.stdout, want, "{mode:?}");
    }
    let mut gw = Running::spawn(&mut gracewrap([
        "-a",
        "--inetd",
        "--chdir",
        chdir,
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "./app",
    ]));
    let addr = gw.accepting_addr();
    let mut answer = String::new();
    use std::io::Read;
    TcpStream::connect(&addr)
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert_eq!(answer, want);
}

/// One wording for a `--chdir` that is not there, in every mode.
#[test]
fn a_missing_chdir_directory_reads_the_same_in_every_mode() {
    let dir = temp_dir("chdirmissing");
    let missing = dir.join("missing");
    let line = format!(
        "gracewrap: cannot change directory to {}: no such file or directory",
        missing.display()
    );
    for mode in [&[][..], &["-s"][..], &["-a"][..]] {
        let mut cmd = gracewrap(mode);
        cmd.args([
            "--chdir",
            missing.to_str().unwrap(),
            "-l",
            &quiet_spec(),
            "--",
            "true",
        ]);
        run(&mut cmd).expect_code(125).expect_stderr(&line);
    }
}

/// LISTEN_FDNAMES is one environment string, which the kernel caps at
/// 128 KiB: over it, exec failed with E2BIG and gracewrap blamed PROGRAM
/// ("argument list too long", 126). It is gracewrap's doing: 125, said
/// before anything runs, in exec and supervisor mode alike. n names of 255
/// bytes make 15 + 256 n bytes with the colons and the NUL: 511 fit, 512
/// do not.
#[test]
fn names_too_long_for_the_environment_are_gracewraps_error_before_anything_runs() {
    let name = "n".repeat(255);
    let specs = |n: usize| -> Vec<String> {
        (0..n)
            .flat_map(|_| ["-l".to_string(), quiet_spec()])
            .collect()
    };
    run(gracewrap(["--fdname", &name])
        .args(specs(511))
        .args(["--", "true"]))
    .expect_code(0);
    let line = "gracewrap: LISTEN_FDNAMES for 512 sockets would be 131087 bytes, more than the 131072 the kernel allows one environment variable (MAX_ARG_STRLEN): use shorter names";
    for mode in [&[][..], &["-s"][..]] {
        run(gracewrap(mode)
            .args(["--fdname", &name])
            .args(specs(512))
            .args(["--", "true"]))
        .expect_code(125)
        .expect_stderr(line);
    }
}

/// Outside PID 1, a signal whose default action is to terminate killed
/// the supervisor when it neither handled nor forwarded it (SIGXCPU,
/// SIGPROF, SIGIO, the real-time ones...), and the generation with it
/// (through the parent-death signal). Every catchable signal that means
/// nothing to gracewrap is forwarded, as tini does.
#[test]
fn every_catchable_signal_that_is_not_gracewraps_reaches_the_generation() {
    let sigs = [
        libc::SIGSTKFLT,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        // SIGRTMIN is 34 under glibc, 35 under musl: 35 is real-time in
        // every build.
        35,
        40,
        64,
    ];
    let dir = temp_dir("forward");
    let log = dir.join("got");
    let list = sigs.map(|s| s.to_string()).join(", ");
    let (mut gw, _dir) = supervise_python(
        &[],
        &format!(
            "log = open({:?}, 'a', buffering=1)\n\
             for s in [{list}]: signal.signal(s, lambda n, f: log.write('%d\\n' % n))",
            log.to_str().unwrap()
        ),
    );
    for sig in sigs {
        // rustix has no Signal for the real-time ones: kill(1) does.
        let status = std::process::Command::new("kill")
            .args([format!("-{sig}"), gw.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_until(&format!("signal {sig} forwarded"), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .any(|l| l == sig.to_string())
        });
    }
    assert!(gw.child.try_wait().unwrap().is_none(), "gracewrap died");
    signal(&gw, libc::SIGTERM);
    assert_eq!(gw.wait().code(), Some(143), "{:?}", gw.stderr_seen);
}

/// `--keep-fds` and `--keep-signals` hold in supervisor mode as in exec
/// mode: before, the generation's gracewrap closed the kept fds, and the
/// signals the supervisor catches to forward (INT, QUIT...) reached
/// PROGRAM at their default action although the caller had ignored them.
#[test]
fn keep_fds_and_keep_signals_reach_a_generation_as_in_exec_mode() {
    let probe = probe();
    let script = format!(
        "trap '' INT QUIT USR1; exec 7</dev/null; exec {} -s --keep-fds --keep-signals -l {} -- {}",
        sh_quote(&[gracewrap_path()]),
        quiet_spec(),
        sh_quote(&[probe.to_str().unwrap()])
    );
    let r = run(std::process::Command::new("sh").args(["-c", &script]))
        .expect_code(0)
        .report();
    assert!(r.passed_fds().contains(&7), "{:?}", r.passed_fds());
    let bit = |sig: i32| 1u64 << (sig - 1);
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGUSR1] {
        assert_ne!(
            r.sigign & bit(sig),
            0,
            "signal {sig}: SigIgn {:x}",
            r.sigign
        );
    }
    // Without --keep-signals, nothing is ignored, as under systemd.
    let script = script.replace(" --keep-signals", "");
    let r = run(std::process::Command::new("sh").args(["-c", &script]))
        .expect_code(0)
        .report();
    assert_eq!(r.sigign, 0, "SigIgn {:x}", r.sigign);
}

/// A file at the `--pid-file` path is not gracewrap's to delete when
/// gracewrap fails to start: "echo data > f; gracewrap -s --pid-file f
/// ... -- /nonexistent" deleted f (a second instance that failed deleted
/// the running one's pid file the same way).
#[test]
fn a_failed_start_leaves_the_file_at_the_pid_file_path_alone() {
    let dir = temp_dir("pidkeep");
    let f = dir.join("f");
    std::fs::write(&f, "data\n").unwrap();
    run(&mut gracewrap([
        "-s",
        "--pid-file",
        f.to_str().unwrap(),
        "-l",
        &quiet_spec(),
        "--",
        "/nonexistent",
    ]))
    .expect_code(127);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "data\n");
}

/// `gracewrap -s --pid-file P -- sleep 100`, once P holds its pid.
fn supervisor_with_pid_file(p: &std::path::Path) -> Running {
    let gw = Running::spawn(&mut gracewrap([
        "-s",
        "--pid-file",
        p.to_str().unwrap(),
        "-l",
        &quiet_spec(),
        "--",
        "sleep",
        "100",
    ]));
    let mine = format!("{}\n", gw.child.id());
    wait_until("the pid file", || {
        std::fs::read_to_string(p).is_ok_and(|t| t == mine)
    });
    gw
}

/// At exit gracewrap removes the pid file only if it is still the file it
/// wrote, with what it wrote: not one someone rewrote in place, nor one
/// put there since under the same name.
#[test]
fn a_pid_file_someone_else_rewrote_is_not_removed_at_exit() {
    let dir = temp_dir("pidrewritten");
    let p = dir.join("gw.pid");
    for replace in [false, true] {
        let mut gw = supervisor_with_pid_file(&p);
        if replace {
            let other = dir.join("other");
            std::fs::write(&other, "4242\n").unwrap();
            std::fs::rename(&other, &p).unwrap();
        } else {
            std::fs::write(&p, "4242\n").unwrap();
        }
        signal(&gw, libc::SIGTERM);
        gw.wait();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "4242\n",
            "replace {replace}"
        );
        std::fs::remove_file(&p).unwrap();
    }
}

/// The temporary file of a pid file was `PATH.<pid>.tmp`, opened with
/// O_CREAT|O_TRUNC: links planted for the next pids made a root
/// gracewrap truncate and write a file it had no business with. The name
/// is unpredictable now and the file is created O_EXCL|O_NOFOLLOW.
#[test]
fn links_planted_at_the_old_temporary_names_are_never_written_through() {
    use std::os::unix::fs::PermissionsExt;
    let base = temp_dir("pidlinks");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = base.join("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The pid file goes in a directory of the service's user, who plants
    // the links: an unprivileged user.
    let dir = base.join("run");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let p = dir.join("gw.pid");
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let planted = {
        let (dir, secret) = (dir.clone(), secret.clone());
        once_as_unprivileged(move || {
            (last..last + 300)
                .filter(|pid| {
                    let link = dir.join(format!("gw.pid.{pid}.tmp"));
                    std::os::unix::fs::symlink(&secret, link).is_ok()
                })
                .count()
        })
    };
    assert_eq!(
        planted, 300,
        "the unprivileged user could not plant its links"
    );
    let mut gw = supervisor_with_pid_file(&p);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only\n");
    assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_file());
    signal(&gw, libc::SIGTERM);
    gw.wait();
    assert!(!p.exists(), "its own pid file is removed");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only\n");
}

/// Runs `f` once on a thread that changed its own credentials to uid and
/// gid 65534 (see [`as_unprivileged_thread`]); returns what it returns.
fn once_as_unprivileged<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        become_unprivileged();
        f()
    })
    .join()
    .unwrap()
}

/// This thread (only) becomes uid and gid 65534, without groups.
fn become_unprivileged() {
    use rustix::process::{Gid, Uid};
    let (uid, gid) = (Uid::from_raw(65534), Gid::from_raw(65534));
    rustix::thread::set_thread_groups(&[]).unwrap();
    rustix::thread::set_thread_res_gid(gid, gid, gid).unwrap();
    rustix::thread::set_thread_res_uid(uid, uid, uid).unwrap();
}

/// Shutdown: an orphan's own child is re-parented to gracewrap only when
/// the orphan dies, after the first round of stop signals; it got no stop
/// signal, only SIGKILL when the whole stop timeout was over (a peer
/// init's test: `python3 -c 'os.system("sleep 100")'`, then SIGTERM,
/// must end within 8 s; it took 10). Every leftover gets the stop signal
/// as soon as it is seen.
#[test]
fn leftovers_that_appear_during_the_shutdown_get_the_stop_signal_at_once() {
    let (mut gw, _dir) = supervise_python(
        &["--stop-timeout", "20s"],
        "import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 100; true'])",
    );
    wait_until("sh and sleep run", || {
        children_of(gw.child.id())
            .iter()
            .any(|&p| children_of(p).iter().any(|&c| !children_of(c).is_empty()))
    });
    let start = std::time::Instant::now();
    signal(&gw, libc::SIGTERM);
    gw.wait();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?} (the stop timeout is 20 s); {:?}",
        start.elapsed(),
        gw.stderr_seen
    );
}

/// What a replaced generation leaves behind is stopped when it exits, not
/// left running until gracewrap itself stops; the serving generation's
/// own children are not touched.
#[test]
fn a_replaced_generations_leftovers_are_stopped_when_it_exits() {
    let dir = temp_dir("replacedleftovers");
    let script = format!(
        "sleep 100 & echo $! > {d}/bg.$$; exec sleep 100",
        d = dir.display()
    );
    let mut gw = Running::spawn(&mut gracewrap([
        "-s",
        "-v",
        "--ready-delay",
        "100ms",
        "--stop-timeout",
        "20s",
        "-l",
        &quiet_spec(),
        "--",
        "sh",
        "-c",
        &script,
    ]));
    let bg = |gen_pid: &str| -> u32 {
        let path = dir.join(format!("bg.{gen_pid}"));
        let mut text = String::new();
        wait_until("the background pid", || {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            text.ends_with('\n')
        });
        text.trim().parse().unwrap()
    };
    let first = gw.stderr_line("started generation 1");
    let first_pid = first.rsplit("pid ").next().unwrap().trim_end_matches(')');
    let old_bg = bg(first_pid);
    signal(&gw, libc::SIGHUP);
    let second = gw.stderr_line("started generation 2");
    let second_pid = second.rsplit("pid ").next().unwrap().trim_end_matches(')');
    let new_bg = bg(second_pid);
    assert!(
        wait_until_ok(Duration::from_secs(5), || dead(old_bg)),
        "generation 1's leftover {old_bg} still runs; {:?}",
        gw.stderr_seen
    );
    assert!(!dead(new_bg), "the serving generation's child was stopped");
    signal(&gw, libc::SIGTERM);
    gw.wait();
}

/// Python that sends `text` to NOTIFY_SOCKET (`@` is an abstract name).
fn notify_code(text: &str) -> String {
    format!(
        "import socket\nsocket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto({text:?}.encode(), os.environ['NOTIFY_SOCKET'].replace('@', '\\0', 1))"
    )
}

/// Runs python3 CODE as uid and gid 65533 (no supplementary groups):
/// another local user. Returns its exit status and stderr.
fn as_other_user(code: &str, arg: &str) -> Output {
    run(Command::new("setpriv").args([
        "--reuid=65533",
        "--regid=65533",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        code,
        arg,
    ]))
}

/// The NOTIFY_SOCKET was an abstract name: every local user could send
/// to it (and flood it). It is now a file in a directory of mode 0700
/// owned by the generations' user, removed at exit; the generations (as
/// that user) reach it, another user does not.
#[test]
fn the_notification_socket_is_reachable_by_the_generations_user_only() {
    for (user, uid) in [(None, 0), (Some("nobody"), 65534)] {
        let mut cmd = gracewrap(["-s", "-v"]);
        if let Some(user) = user {
            cmd.args(["--user", user]);
        }
        let code = format!(
            "import os, sys, time\nprint('NOTIFY_SOCKET=' + os.environ['NOTIFY_SOCKET'], file=sys.stderr, flush=True)\n{}\ntime.sleep(100)",
            notify_code("READY=1")
        );
        cmd.args(["-l", &quiet_spec(), "--", "/usr/bin/python3", "-c", &code]);
        let mut gw = Running::spawn(&mut cmd);
        let line = gw.stderr_line("NOTIFY_SOCKET=");
        let path = std::path::PathBuf::from(line.split_once('=').unwrap().1);
        assert!(path.is_absolute(), "{user:?}: {line}");
        // The generation, as the generations' user, got through: "is ready".
        assert!(gw.stderr_line("is ready").contains("generation 1 (pid"));
        let dir = path.parent().unwrap().to_owned();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid()),
            (0o700, uid),
            "{user:?}: {dir:?}"
        );
        let send = "import socket, sys\nsocket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', sys.argv[1])";
        let other = as_other_user(send, path.to_str().unwrap());
        assert!(
            other.code() != 0 && other.stderr.contains("PermissionError"),
            "{user:?}: another user could send: {other:?}"
        );
        signal(&gw, libc::SIGTERM);
        gw.wait();
        assert!(!dir.exists(), "{user:?}: {dir:?} left behind");
    }
}

/// Six senders flood the notification socket with 4 KiB datagrams (root
/// processes outside the generations: the only others that can reach it
/// now). gracewrap read until the queue was empty and kept every
/// message, so its memory grew without bound and it did not get back to
/// its signals. Now it reads a bounded batch per wake-up and keeps
/// nothing: its memory stays put and SIGTERM is obeyed at once.
#[test]
fn a_notification_flood_neither_grows_the_supervisor_nor_delays_its_signals() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let code = "import os, sys, time
print('NOTIFY_SOCKET=' + os.environ['NOTIFY_SOCKET'], file=sys.stderr, flush=True)
time.sleep(100)";
    let mut gw = Running::spawn(&mut gracewrap([
        "-s",
        "-l",
        &quiet_spec(),
        "--",
        "python3",
        "-c",
        code,
    ]));
    let line = gw.stderr_line("NOTIFY_SOCKET=");
    let value = line.split_once('=').unwrap().1.to_string();
    let addr = match value.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name).unwrap(),
        None => SocketAddr::from_pathname(&value).unwrap(),
    };
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..6)
        .map(|_| {
            let (addr, stop, sent) = (addr.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let sock = UnixDatagram::unbound().unwrap();
                sock.set_write_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let junk = [b'x'; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if sock.send_to_addr(&junk, &addr).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let rss_kb = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let mut peak = 0;
    wait_until("100,000 datagrams were sent", || {
        peak = peak.max(rss_kb());
        sent.load(Ordering::Relaxed) >= 100_000 || peak >= 50_000
    });
    signal(&gw, libc::SIGTERM);
    let exited = wait_timeout(&mut gw.child, Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    senders.into_iter().for_each(|t| t.join().unwrap());
    assert!(peak < 50_000, "the supervisor grew to {peak} kB");
    assert!(
        exited.is_some(),
        "SIGTERM unheard under the flood; stderr {:?}",
        gw.stderr_seen
    );
}

/// With nowhere to make a private directory (/run, /tmp and /dev/shm
/// read-only, as in a read-only container image), the notification socket
/// falls back to an abstract name, says so with -v, and still works.
#[test]
fn without_a_writable_runtime_directory_notifications_still_work() {
    // The binary may live under /tmp (a CI checkout there): it is opened
    // before the mounts hide it, and run through its fd.
    let script = format!(
        "set -e; exec 9<{}; for d in /run /tmp /dev/shm; do mount -t tmpfs -o ro tmpfs $d; done; exec {}",
        sh_quote(&[gracewrap_path()]),
        sh_quote(&[
            "/proc/self/fd/9",
            "-s",
            "-v",
            "-l",
            &quiet_spec(),
            "--",
            "/usr/bin/python3",
            "-c",
            &format!(
                "import os, time\n{}\ntime.sleep(100)",
                notify_code("READY=1")
            ),
        ])
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_remove("TMPDIR")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("RUNTIME_DIRECTORY");
    let mut gw = Running::spawn(&mut cmd);
    gw.stderr_line("an abstract name (no directory could be made");
    gw.stderr_line("generation 1 (pid");
    gw.stderr_line("is ready");
    signal(&gw, libc::SIGTERM);
    assert_eq!(gw.wait().code(), Some(143), "{:?}", gw.stderr_seen);
}

/// Runs `attack` on a thread of this test process that has changed its
/// own credentials (rustix's set*id are the raw syscalls, which change
/// only the calling thread) to uid and gid 65534: another local user, racing gracewrap as fast as a
/// syscall loop can. It runs until `stop` is set.
fn as_unprivileged_thread(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut attack: impl FnMut() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        become_unprivileged();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            attack();
        }
    })
}

/// The owner of a directory swaps the directory `mkdir=0777` just made
/// for a symlink to a root-only directory. gracewrap chmodded the new
/// directory by its path, following the link: the root-only directory
/// became 0777, and the socket was bound in it. Now the directory is set
/// up through its fd (opened O_NOFOLLOW, checked to be gracewrap's own):
/// the link is refused, nothing else changes mode.
#[test]
fn mkdir_never_changes_what_a_swapped_in_symlink_points_at() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let base = temp_dir("mkdir-race");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = base.join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let shared = base.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
    let new = shared.join("new");
    let moved = shared.join("moved");
    let swap = {
        let (new, moved, secret) = (new.clone(), moved.clone(), secret.clone());
        // Renaming within one directory needs no permission on the
        // directory moved, only on the one it is in.
        move || {
            std::fs::rename(&new, &moved).is_ok()
                && std::os::unix::fs::symlink(&secret, &new).is_ok()
        }
    };
    let spec = format!("unix:{}/sock,mkdir=0777", new.display());
    race(swap, || {
        let _ = std::fs::remove_file(&new).or_else(|_| std::fs::remove_dir_all(&new));
        let _ = std::fs::remove_dir_all(&moved);
        let out = run(&mut gracewrap(["-l", &spec, "--", "true"]));
        let mode = std::fs::metadata(&secret).unwrap().mode() & 0o7777;
        // bind(2) takes a path: when the swap comes just before it, the
        // socket file lands in the other directory (the residual the man
        // page's SECURITY states; gracewrap fails if it sees it, but a link
        // that was there before it started is the user's to it). What must
        // never happen is a change of mode.
        let _ = std::fs::remove_file(secret.join("sock"));
        if mode != 0o700 {
            return Err(format!(
                "the root-only directory is now {mode:o}; gracewrap said {:?}",
                out.stderr
            ));
        }
        Ok(())
    });
}

/// Races gracewrap against `swap`, run over and over by another local
/// user (an unprivileged thread), for 400 rounds or until 100 swaps
/// succeeded. `round` runs gracewrap once and says what it got wrong.
/// Fails if the attacker never swapped anything: then the test proved
/// nothing.
fn race(
    mut swap: impl FnMut() -> bool + Send + 'static,
    mut round: impl FnMut() -> Result<(), String>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let attacker = {
        let swaps = swaps.clone();
        as_unprivileged_thread(stop.clone(), move || {
            if swap() {
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut lost = Ok(());
    for _ in 0..400 {
        lost = round();
        if lost.is_err() || swaps.load(Ordering::Relaxed) >= 100 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    attacker.join().unwrap();
    if let Err(why) = lost {
        panic!("{why}");
    }
    assert!(
        swaps.load(Ordering::Relaxed) > 0,
        "the attacker never swapped anything: the test proved nothing"
    );
}

/// `owner=` and `mode=` went through the path after bind(2): the owner
/// of a directory on the way who swapped it for a link to another
/// directory, just after the bind, had gracewrap chown and chmod another
/// service's socket (here a root-only one) instead. Now the file bound is
/// opened once (`O_PATH`, in the directory's fd) and changed through that
/// fd; a path that no longer leads to it fails the start.
#[test]
fn owner_and_mode_change_only_the_socket_gracewrap_bound() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let base = temp_dir("owner-race");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim_dir = base.join("victim");
    std::fs::create_dir(&victim_dir).unwrap();
    let victim = victim_dir.join("sock");
    let _service = std::os::unix::net::UnixListener::bind(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let shared = base.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
    let d = shared.join("d");
    let moved = shared.join("moved");
    let swap = {
        let (d, moved, victim_dir) = (d.clone(), moved.clone(), victim_dir.clone());
        // Right after gracewrap's bind: the socket file appears.
        move || {
            std::fs::symlink_metadata(d.join("sock")).is_ok()
                && std::fs::rename(&d, &moved).is_ok()
                && std::os::unix::fs::symlink(&victim_dir, &d).is_ok()
        }
    };
    let spec = format!("unix:{}/sock,owner=nobody,mode=0666", d.display());
    race(swap, || {
        // The attacker may still be finishing its last swap.
        wait_until("a fresh directory", || {
            let _ = std::fs::remove_file(&d).or_else(|_| std::fs::remove_dir_all(&d));
            let _ = std::fs::remove_dir_all(&moved);
            std::fs::create_dir(&d).is_ok()
        });
        let out = run(&mut gracewrap(["-l", &spec, "--", "true"]));
        let m = std::fs::symlink_metadata(&victim).unwrap();
        if (m.uid(), m.mode() & 0o777) != (0, 0o600) {
            return Err(format!(
                "the other service's socket is now uid {} mode {:o}; gracewrap said {:?}",
                m.uid(),
                m.mode() & 0o777,
                out.stderr
            ));
        }
        Ok(())
    });
}

/// The directories `mkdir` created go with the socket file: after a
/// failed start, and when a resident gracewrap exits. (Only the empty
/// ones gracewrap made: an existing directory, or one someone put a file
/// in, stays.)
#[test]
fn the_directories_mkdir_made_are_removed_with_the_socket() {
    let dir = temp_dir("mkdir-cleanup");
    let spec = format!("unix:{}/a/b/sock,mkdir", dir.display());
    run(&mut gracewrap(["-l", &spec, "--", "/nonexistent"])).expect_code(127);
    assert!(
        !dir.join("a").exists(),
        "a failed start left {:?}",
        dir.join("a")
    );

    let mut gw = Running::spawn(&mut gracewrap(["-s", "-l", &spec, "--", "sleep", "100"]));
    child_running(gw.child.id(), "sleep");
    assert!(dir.join("a/b/sock").exists());
    std::fs::write(dir.join("a/mine"), "").unwrap();
    signal(&gw, libc::SIGTERM);
    gw.wait();
    assert!(!dir.join("a/b").exists(), "the supervisor left a/b");
    assert!(
        dir.join("a/mine").exists(),
        "a file someone put there was removed"
    );
}

/// `--lazy` waits for the first connection before it execs PROGRAM; a
/// SIGTERM (or SIGINT, SIGHUP) meanwhile killed gracewrap at once and
/// left the socket file it bound. Now it removes the file, then dies of
/// the same signal.
#[test]
fn a_lazy_gracewrap_stopped_before_any_traffic_removes_its_socket_file() {
    use std::os::unix::process::ExitStatusExt;
    let dir = temp_dir("lazy-stop");
    let sock = dir.join("sock");
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let spec = format!("unix:{}", sock.display());
        let mut gw = Running::spawn(&mut gracewrap(["--lazy", "-l", &spec, "--", "true"]));
        // Waiting in poll(2): the signal handling is set up.
        let wchan = format!("/proc/{}/wchan", gw.child.id());
        wait_until("gracewrap waits", || {
            std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("poll"))
        });
        assert!(sock.exists());
        signal(&gw, sig);
        assert_eq!(gw.wait().signal(), Some(sig), "{:?}", gw.stderr_seen);
        assert!(!sock.exists(), "signal {sig} left {sock:?}");
    }
}

/// With `--user`, exec mode dropped privileges and then failed to exec a
/// PROGRAM (or enter a `--chdir`) that user cannot reach: as that user it
/// could no longer remove the socket file it had bound in a root-only
/// directory. Now PROGRAM and `--chdir` are checked as the user while
/// gracewrap is still root: the same error and status, nothing left.
#[test]
fn with_user_a_program_out_of_reach_fails_before_the_drop_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("root-only");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let app = dir.join("app");
    write_executable(&app, "#!/bin/sh\nexit 0\n");
    let sock = dir.join("sock");
    let spec = format!("unix:{}", sock.display());
    let app = app.to_str().unwrap();
    let dir_s = dir.to_str().unwrap();
    for (extra, code, line) in [
        (
            vec![],
            126,
            format!("gracewrap: cannot execute {app}: permission denied"),
        ),
        (
            vec!["-s"],
            126,
            format!("gracewrap: cannot execute {app}: permission denied"),
        ),
        (
            vec!["--chdir", dir_s],
            125,
            format!("gracewrap: cannot change directory to {dir_s}: permission denied"),
        ),
    ] {
        let mut cmd = gracewrap(["--user", "nobody", "-l", &spec]);
        cmd.args(&extra).args(["--", app]);
        run(&mut cmd).expect_code(code).expect_stderr(&line);
        assert!(!sock.exists(), "{extra:?} left {sock:?}");
    }
}

/// The soft RLIMIT_NOFILE in /proc/PID/limits.
fn nofile_soft(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// gracewrap raises its soft RLIMIT_NOFILE to hold many sockets. A
/// resident gracewrap put it back down for itself at once, so it was left
/// with no room for connections, pipes and the notify socket. Now it
/// keeps the raised limit and gives each generation the caller's (or the
/// raised one, said, where the sockets reach past the caller's).
#[test]
fn a_resident_gracewrap_keeps_the_raised_fd_limit_and_programs_get_the_callers() {
    for (sockets, past) in [(40, false), (70, true)] {
        let mut cmd = gracewrap(["-s"]);
        for _ in 0..sockets {
            cmd.args(["-l", "tcp:127.0.0.1:0"]);
        }
        cmd.args(["--", "sleep", "100"]);
        with_nofile(&mut cmd, 64, 4096);
        let mut gw = Running::spawn(&mut cmd);
        let program = child_running(gw.child.id(), "sleep");
        let own = nofile_soft(gw.child.id());
        assert!(own > 64, "{sockets}: gracewrap's own limit is {own}");
        // Past the caller's limit, PROGRAM could not even load its shared
        // libraries: it keeps the raised one, and gracewrap says so.
        let want = if past { own } else { 64 };
        assert_eq!(nofile_soft(program), want, "{sockets}: PROGRAM's limit");
        signal(&gw, libc::SIGTERM);
        gw.wait();
        let said = gw
            .rest_of_stderr()
            .into_iter()
            .chain(gw.stderr_seen.clone())
            .any(|l| l.contains("past the RLIMIT_NOFILE soft limit of 64 the program would get"));
        assert_eq!(said, past, "{sockets}: {:?}", gw.stderr_seen);
    }
}

/// accept(2) failing with EMFILE leaves the listener readable: accept
/// mode went straight back to it, printing a line and burning a core
/// for as long as the connection waited. Now it says so once and pauses
/// accepting (10 ms, doubling up to 1 s) while it lasts.
#[test]
fn accept_out_of_fds_pauses_instead_of_spinning() {
    let mut cmd = gracewrap(["-a", "-l", "tcp:127.0.0.1:0", "--", "true"]);
    with_nofile(&mut cmd, 6, 6);
    let mut gw = Running::spawn(&mut cmd);
    let addr = gw.accepting_addr();
    let _waiting = TcpStream::connect(&addr).unwrap();
    // glibc says "too many open files", musl "no file descriptors available".
    gw.stderr_line("pausing accept");
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = stat.rsplit_once(") ").unwrap().1;
        let f: Vec<&str> = rest.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = ticks(gw.child.id());
    // A measurement window, not a synchronisation: what does gracewrap
    // do with one second of a connection it cannot accept?
    std::thread::sleep(Duration::from_secs(1));
    let used = ticks(gw.child.id()) - before;
    let lines = gw.lines_so_far();
    assert!(used <= 10, "{used} ticks of CPU in one second");
    assert!(
        lines.iter().filter(|l| l.contains("cannot accept")).count() <= 1,
        "{} lines: {:?}",
        lines.len(),
        &lines[..lines.len().min(5)]
    );
}

/// Two paths to one socket file (through a symlinked directory): the
/// second bind found gracewrap's own first socket listening and said "a
/// server is listening on it". Now the first spec is named.
#[test]
fn two_paths_to_one_socket_file_name_the_first_spec() {
    let dir = temp_dir("two-paths");
    std::fs::create_dir(dir.join("real")).unwrap();
    std::os::unix::fs::symlink(dir.join("real"), dir.join("link")).unwrap();
    let (a, b) = (
        format!("unix:{}/real/s.sock", dir.display()),
        format!("unix:{}/link/s.sock", dir.display()),
    );
    run(&mut gracewrap(["-l", &a, "-l", &b, "--", "true"]))
        .expect_code(2)
        .expect_stderr(&format!(
            "gracewrap: cannot bind {b}: {a}, given before it, holds that address"
        ));
    assert!(
        !dir.join("real/s.sock").exists(),
        "the first socket file stayed"
    );
}

/// A gracewrap message is one write(2): it was three ("gracewrap: ", the
/// text, "\n"), and a generation writing to the same stderr could land in
/// the middle of it.
#[test]
fn a_message_is_one_write() {
    let out = run(Command::new("strace").args([
        "-f",
        "-e",
        "trace=write",
        "-e",
        "signal=none",
        gracewrap_path(),
        "-l",
        "tcp:1.2.3.4.5:1",
        "--",
        "true",
    ]));
    let writes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("write(2,"))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0].contains("gracewrap: invalid --listen"),
        "{writes:?}"
    );
}

/// A socket file whose process bound it without listening (yet) is not
/// stale, though connect(2) is refused: gracewrap replaced it. Now a
/// path a live socket is bound at (/proc/net/unix) is "in use"; once that
/// process closes it, the file is stale and replaced.
#[test]
fn a_socket_bound_without_listening_by_a_live_process_is_not_stale() {
    let dir = temp_dir("bound-not-listening");
    let path = dir.join("s.sock");
    let spec = format!("unix:{}", path.display());
    // A stream socket, bound, never listening.
    let fd = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        None,
    )
    .unwrap();
    rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(&path).unwrap()).unwrap();
    run(&mut gracewrap(["-l", &spec, "--", "true"]))
        .expect_code(125)
        .expect_stderr(&format!(
            "gracewrap: cannot bind {spec}: address already in use (a process has it bound, without listening on it)"
        ));
    assert!(path.exists());
    drop(fd);
    run(&mut gracewrap(["-l", &spec, "--", "true"])).expect_code(0);
}

/// A generation that calls shutdown(2) on the shared listener stops it
/// for every generation to come: the next one got EINVAL from accept and
/// the service was gone. The supervisor now checks before it starts a
/// generation, listens again, and says so.
#[test]
fn a_listener_shut_down_by_a_generation_listens_again_for_the_next() {
    let dir = temp_dir("shutdown");
    let flag = dir.join("shut");
    let code = format!(
        "import os, socket, time
s = socket.socket(fileno=3)
if not os.path.exists({flag:?}):
    s.shutdown(socket.SHUT_RDWR)
    open({flag:?}, 'w').close()
    time.sleep(100)
while True:
    c, _ = s.accept()
    c.sendall(b'ok')
    c.close()",
        flag = flag.to_str().unwrap()
    );
    let mut gw = Running::spawn(&mut gracewrap([
        "-s",
        "-v",
        "--ready-delay",
        "50ms",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "python3",
        "-c",
        &code,
    ]));
    let addr = gw.listening_addr();
    wait_until("generation 1 shut the listener down", || flag.exists());
    assert!(TcpStream::connect(&addr).is_err(), "still listening");
    signal(&gw, libc::SIGHUP);
    gw.stderr_line("had stopped listening (shut down by a generation?): listening on it again");
    gw.stderr_line("generation 2 (pid");
    let mut reply = String::new();
    use std::io::Read;
    TcpStream::connect(&addr)
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    assert_eq!(reply, "ok");
}
