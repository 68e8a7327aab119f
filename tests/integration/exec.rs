use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::Command;

use crate::util::*;

#[test]
fn every_spec_family_lands_at_3_in_command_line_order() {
    let dir = temp_dir("families");
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let abs = format!("@gracewrap-test-{}", std::process::id());
    let (stream, gram, packet) = (path("s.sock"), path("g.sock"), path("p.sock"));
    let r = probe_report(&[
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
        "-l",
        &format!("unix:{stream}"),
        "-l",
        &format!("unixgram:{gram}"),
        "-l",
        &format!("unixpacket:{packet}"),
        "-l",
        &format!("unix:{abs}"),
        "-l",
        "tcp6:[::1]:0",
        "-l",
        "udp6:[::1]:0",
    ]);
    r.assert_protocol(&["unknown"; 8]);
    let expect = [
        ("stream", "inet", "1"),
        ("dgram", "inet", "0"),
        ("stream", "unix", "1"),
        ("dgram", "unix", "0"),
        ("seqpacket", "unix", "1"),
        ("stream", "unix", "1"),
        ("stream", "inet6", "1"),
        ("dgram", "inet6", "0"),
    ];
    for (i, (ty, family, listening)) in expect.iter().enumerate() {
        let fd = r.fd(3 + i as i32);
        assert_eq!(
            (fd.get("type"), fd.get("family"), fd.get("listening")),
            (*ty, *family, *listening),
            "fd {}: {fd:?}",
            3 + i
        );
    }
    assert_eq!(r.fd(3).inet().ip().to_string(), "127.0.0.1");
    assert_eq!(r.fd(5).get("addr"), stream);
    assert_eq!(r.fd(6).get("addr"), gram);
    assert_eq!(r.fd(7).get("addr"), packet);
    assert_eq!(r.fd(8).get("addr"), abs);
    assert_eq!(r.fd(9).inet().ip().to_string(), "::1");
    for f in [&stream, &gram, &packet] {
        let ft = std::fs::symlink_metadata(f).unwrap().file_type();
        assert!(ft.is_socket(), "{f} is not a socket file");
    }
}

#[test]
fn listen_pid_is_the_exec_pid_and_pidfdid_matches() {
    let mut cmd = gracewrap(["-l", "tcp:127.0.0.1:0", "--", probe().to_str().unwrap()]);
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(wait_timeout(&mut child, DEADLINE).unwrap().success());
    let r = Report::parse(&stdout).unwrap();
    assert_eq!(r.pid, pid, "exec keeps the pid");
    r.assert_protocol(&["unknown"]);
    // This kernel has pidfs (Linux >= 6.9): the id must be set and right.
    if r.pidfdid != "-" {
        assert_eq!(r.env("LISTEN_PIDFDID"), Some(r.pidfdid.as_str()));
    } else {
        assert_eq!(r.env("LISTEN_PIDFDID"), None);
    }
}

#[test]
fn names_go_to_listen_fdnames_and_unnamed_ones_are_unknown() {
    let r = probe_report(&[
        "-l",
        "http=tcp:127.0.0.1:0",
        "-l",
        "tcp:127.0.0.1:0",
        "--listen=metrics and stuff=udp:127.0.0.1:0",
        "-l",
        "=tcp:127.0.0.1:0",
    ]);
    r.assert_protocol(&["http", "unknown", "metrics and stuff", ""]);
}

#[test]
fn port_zero_prints_the_real_address_per_socket() {
    let mut g = Running::spawn(&mut gracewrap([
        "-l",
        "web=tcp:127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
        "--",
        probe().to_str().unwrap(),
        "serve",
    ]));
    let tcp = g.stderr_line("listening on ");
    let udp = g.stderr_line("listening on ");
    let port = |line: &str| -> u16 {
        let addr = line
            .split("listening on ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        addr.rsplit(':').next().unwrap().parse().unwrap()
    };
    let (tp, up) = (port(&tcp), port(&udp));
    assert_eq!(
        tcp,
        format!("gracewrap: listening on 127.0.0.1:{tp} (fd 3, name web)")
    );
    assert_eq!(
        udp,
        format!("gracewrap: listening on udp:127.0.0.1:{up} (fd 4)")
    );
    assert_ne!(tp, 0);
    // And it is the address the program really serves on.
    let mut s = TcpStream::connect(("127.0.0.1", tp)).unwrap();
    s.write_all(b"hi\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, format!("pid {} fd 3\n", g.child.id()));
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(DEADLINE)).unwrap();
    u.send_to(b"hi", ("127.0.0.1", up)).unwrap();
    let mut buf = [0; 64];
    let n = u.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], format!("pid {} fd 4\n", g.child.id()).as_bytes());
}

#[test]
fn quiet_by_default_and_verbose_on_request() {
    let dir = temp_dir("quiet");
    let sock = format!("unix:{}/q.sock", dir.display());
    let out = run(&mut gracewrap(["-l", &sock, "--", "true"]));
    out.expect_code(0);
    assert_eq!(out.stderr, "");
    let out = run(&mut gracewrap([
        "-v",
        "-l",
        &format!("q={sock}"),
        "--",
        "true",
    ]));
    out.expect_code(0)
        .expect_stderr(&format!("gracewrap: listening on {sock} (fd 3, name q)"));
}

#[test]
fn empty_host_is_dual_stack_and_tcp4_tcp6_are_not() {
    let r = probe_report(&[
        "-l",
        "tcp::0",
        "-l",
        "tcp4::0",
        "-l",
        "tcp6::0",
        "-l",
        "tcp::0,v6only",
    ]);
    r.assert_protocol(&["unknown"; 4]);
    let any = r.fd(3);
    assert_eq!((any.get("family"), any.get("v6only")), ("inet6", "0"));
    assert!(any.inet().ip().is_unspecified());
    assert_eq!(r.fd(4).get("family"), "inet");
    assert_eq!(r.fd(4).inet().ip().to_string(), "0.0.0.0");
    assert_eq!(
        (r.fd(5).get("family"), r.fd(5).get("v6only")),
        ("inet6", "1")
    );
    assert_eq!(r.fd(6).get("v6only"), "1");
}

#[test]
fn dual_stack_socket_accepts_ipv4_clients_and_v6only_refuses_them() {
    let mut g = Running::spawn(&mut gracewrap([
        "-l",
        "tcp::0",
        "-l",
        "tcp6::0",
        "--",
        probe().to_str().unwrap(),
        "serve",
    ]));
    let dual: std::net::SocketAddr = g.listening_addr().parse().unwrap();
    let v6: std::net::SocketAddr = g.listening_addr().parse().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", dual.port())).expect("IPv4 client on [::]");
    s.write_all(b"x").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("fd 3\n"), "{reply}");
    // IPv4 on the tcp6 port must not reach the probe. (Another test may
    // happen to listen on 127.0.0.1 with the same port number: then it
    // answers, but not as our probe's fd 4.)
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", v6.port())) {
        let _ = s.write_all(b"x");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert_ne!(reply, format!("pid {} fd 4\n", g.child.id()));
    }
    TcpStream::connect(("::1", v6.port())).expect("IPv6 client on tcp6");
}

#[test]
fn bare_systemd_socket_activate_forms_work() {
    let dir = temp_dir("bare");
    let path = format!("{}/bare.sock", dir.display());
    let abs = format!("@gracewrap-bare-{}", std::process::id());
    let r = probe_report(&[
        "-l",
        "127.0.0.1:0",
        "-l",
        "[::1]:0",
        "-l",
        &path,
        "-l",
        &abs,
        "-l",
        "0",
    ]);
    r.assert_protocol(&["unknown"; 5]);
    assert_eq!(r.fd(3).inet().ip().to_string(), "127.0.0.1");
    assert_eq!(r.fd(4).inet().ip().to_string(), "::1");
    assert_eq!(r.fd(5).get("addr"), path);
    assert_eq!(r.fd(6).get("addr"), abs);
    assert_eq!(r.fd(7).get("family"), "inet6");
}

#[test]
fn relative_unix_path_is_bound_in_the_working_directory() {
    let dir = temp_dir("relative");
    let out = run(gracewrap([
        "-l",
        "unix:./rel.sock",
        "-l",
        "./rel2.sock",
        "--",
        probe().to_str().unwrap(),
    ])
    .current_dir(&dir));
    out.expect_code(0);
    out.report().assert_protocol(&["unknown"; 2]);
    assert!(
        std::fs::symlink_metadata(dir.join("rel.sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert!(
        std::fs::symlink_metadata(dir.join("rel2.sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
}

#[test]
fn socket_options_reuseaddr_reuseport() {
    let r = probe_report(&[
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "tcp:127.0.0.1:0,reuseport",
        "-l",
        "udp:127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0,reuseport",
    ]);
    let flags = |fd: i32| {
        (
            r.fd(fd).get("reuseaddr").to_string(),
            r.fd(fd).get("reuseport").to_string(),
        )
    };
    assert_eq!(
        flags(3),
        ("1".into(), "0".into()),
        "TCP always has SO_REUSEADDR, reuseport is opt-in"
    );
    assert_eq!(flags(4), ("1".into(), "1".into()));
    assert_eq!(
        flags(5),
        ("0".into(), "0".into()),
        "UDP gets no SO_REUSEADDR (it would let two binds share the port)"
    );
    assert_eq!(flags(6), ("0".into(), "1".into()));
}

/// The listen backlog is what `ss -ltn` shows as Send-Q of a listener.
#[test]
fn backlog_defaults_to_the_kernel_maximum_and_is_settable() {
    let mut g = Running::spawn(&mut gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "tcp:127.0.0.1:0,backlog=7",
        "--",
        probe().to_str().unwrap(),
        "serve",
    ]));
    let a = g.listening_addr();
    let b = g.listening_addr();
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    let ss = Command::new("ss")
        .args(["-ltnH"])
        .output()
        .expect("ss (iproute2)");
    let ss = String::from_utf8_lossy(&ss.stdout);
    let send_q = |addr: &str| -> String {
        ss.lines()
            .find(|l| l.split_whitespace().nth(3) == Some(addr))
            .unwrap_or_else(|| panic!("{addr} not in ss output:\n{ss}"))
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    assert_eq!(send_q(&a), somaxconn.trim());
    assert_eq!(send_q(&b), "7");
}

/// Stray fds at 3, 4, 5 (what a VS Code terminal or `make -j` leave open)
/// must neither break the placement nor reach PROGRAM.
#[test]
fn stray_fds_in_the_socket_range_are_closed() {
    let probe = probe();
    let script = format!(
        "exec 3</dev/null 4>/dev/null 5</dev/null 9</dev/null; exec {} -l tcp:127.0.0.1:0 -l udp:127.0.0.1:0 -- {}",
        sh_quote(&[gracewrap_path()]),
        sh_quote(&[probe.to_str().unwrap()])
    );
    let out = run(Command::new("sh").args(["-c", &script]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown", "unknown"]);
    assert_eq!(r.fd(3).get("type"), "stream");
    assert_eq!(r.fd(4).get("type"), "dgram");
}

#[test]
fn keep_fds_keeps_fds_above_the_range_and_refuses_collisions() {
    let probe = probe();
    let g = sh_quote(&[gracewrap_path()]);
    let p = sh_quote(&[probe.to_str().unwrap()]);
    let out = run(Command::new("sh").args([
        "-c",
        &format!("exec 7</dev/null 9>/dev/null; exec {g} --keep-fds -l tcp:127.0.0.1:0 -l tcp:127.0.0.1:0 -- {p}"),
    ]));
    out.expect_code(0);
    let r = out.report();
    // Exactly these: the harness's own fds never reach children (util.rs).
    assert_eq!(r.passed_fds(), [3, 4, 7, 9]);
    assert_eq!(r.fd(7).get("kind"), "chr");
    assert!(r.fd(3).is_socket() && r.fd(4).is_socket());
    let out = run(Command::new("sh").args([
        "-c",
        &format!(
            "exec 4</dev/null; exec {g} --keep-fds -l tcp:127.0.0.1:0 -l tcp:127.0.0.1:0 -- {p}"
        ),
    ]));
    out.expect_code(125).expect_stderr(
        "gracewrap: fd 4 is open and would be replaced by socket 2; close it or drop --keep-fds",
    );
}

#[test]
fn closed_stdin_does_not_attract_a_socket() {
    let probe = probe();
    let out = run(Command::new("sh").args([
        "-c",
        &format!(
            "exec <&- ; exec {} -l tcp:127.0.0.1:0 -- {}",
            sh_quote(&[gracewrap_path()]),
            sh_quote(&[probe.to_str().unwrap()])
        ),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown"]);
    assert!(
        !r.fd(0).is_socket(),
        "fd 0 must not be a socket: {:?}",
        r.fd(0)
    );
}

#[test]
fn a_hundred_sockets() {
    let mut args = Vec::new();
    for i in 0..100 {
        args.push("-l".to_string());
        args.push(format!("s{i}=tcp:127.0.0.1:0"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = probe_report(&args);
    let names: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    r.assert_protocol(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut ports: Vec<u16> = (3..103).map(|fd| r.fd(fd).inet().port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 100);
}

/// 1000 listeners under the common desktop soft limit of 1024: gracewrap
/// raises the soft limit for its own work and PROGRAM gets 1024 back.
#[test]
fn a_thousand_sockets_under_a_soft_nofile_limit_of_1024() {
    let mut script = format!("ulimit -Sn 1024 && exec {}", sh_quote(&[gracewrap_path()]));
    for _ in 0..1000 {
        script.push_str(" -l tcp:127.0.0.1:0");
    }
    script.push_str(&format!(" -- {}", sh_quote(&[probe().to_str().unwrap()])));
    let out = run(Command::new("sh").args(["-c", &script]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown"; 1000]);
    assert_eq!(r.nofile_soft, "1024");
}

#[test]
fn fd_spec_passes_an_inherited_socket_on_without_rebinding() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cmd = gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "inh=fd:7",
        "--",
        probe().to_str().unwrap(),
    ]);
    with_fd_at(&mut cmd, &listener, 7);
    let out = run(&mut cmd);
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown", "inh"]);
    assert_eq!(r.fd(4).inet(), addr, "the very same socket, not a new bind");
    assert!(
        !r.fds.contains_key(&7),
        "the original fd 7 is moved, not duplicated"
    );
}

#[test]
fn fd_spec_on_stdin_duplicates_and_keeps_stdin() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let out = run(gracewrap(["-l", "fd:0", "--", probe().to_str().unwrap()])
        .stdin(std::os::fd::OwnedFd::from(listener)));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown"]);
    assert_eq!(r.fd(3).inet(), addr);
    assert_eq!(r.fd(0).inet(), addr, "stdin stays");
}

#[test]
fn environment_passes_through_minus_inherited_listen_variables() {
    let mut cmd = gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "-E",
        "SET_BY_FLAG=yes=really",
        "--setenv",
        "COPIED",
        "-E",
        "NOT_IN_OUR_ENV",
        "--",
        probe().to_str().unwrap(),
    ]);
    cmd.env("GRACEWRAP_TEST_PASSTHROUGH", "kept")
        .env("COPIED", "from-gracewrap")
        .env_remove("NOT_IN_OUR_ENV")
        .env("LISTEN_FDS", "7")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDNAMES", "a:b:c:d:e:f:g")
        .env("LISTEN_PIDFDID", "12345")
        .env("LISTEN_FDS_FIRST_FD", "9");
    let out = run(&mut cmd);
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown"]);
    assert_ne!(r.env("LISTEN_PIDFDID"), Some("12345"));
    assert_eq!(r.env("GRACEWRAP_TEST_PASSTHROUGH"), Some("kept"));
    assert_eq!(r.env("SET_BY_FLAG"), Some("yes=really"));
    assert_eq!(r.env("COPIED"), Some("from-gracewrap"));
    assert_eq!(r.env("NOT_IN_OUR_ENV"), None);
}

#[test]
fn no_pid_leaves_listen_pid_unset() {
    let r = probe_report(&["--no-pid", "-l", "tcp:127.0.0.1:0"]);
    assert_eq!(r.env("LISTEN_PID"), None);
    assert_eq!(r.env("LISTEN_PIDFDID"), None);
    assert_eq!(r.env("LISTEN_FDS"), Some("1"));
    assert_eq!(r.env("LISTEN_FDNAMES"), Some("unknown"));
}

/// PROGRAM starts like a systemd service: no signal blocked, none ignored,
/// whatever the caller left behind (here: the test harness's posix_spawn
/// leaves glibc's signals 32 and 33 ignored, sh ignores USR1, and SIGTERM
/// is blocked).
#[test]
fn signal_mask_and_dispositions_reach_the_program_clean() {
    let script = |extra: &str| {
        format!(
            "trap '' USR1; exec {} {extra} -l {} -- {}",
            sh_quote(&[gracewrap_path()]),
            quiet_spec(),
            sh_quote(&[probe().to_str().unwrap()])
        )
    };
    let mut cmd = Command::new("sh");
    with_blocked(cmd.args(["-c", &script("")]), libc::SIGTERM);
    let r = run(&mut cmd).expect_code(0).report();
    assert_eq!(r.sigblk, 0, "SigBlk");
    assert_eq!(r.sigign, 0, "SigIgn");

    // --keep-signals: like env(1), pass them through (SIGPIPE excepted).
    let mut cmd = Command::new("sh");
    with_blocked(cmd.args(["-c", &script("--keep-signals")]), libc::SIGTERM);
    let r = run(&mut cmd).expect_code(0).report();
    let bit = |sig: i32| 1u64 << (sig - 1);
    assert_eq!(r.sigblk, bit(libc::SIGTERM), "SigBlk");
    assert_ne!(r.sigign & bit(libc::SIGUSR1), 0, "SigIgn {:x}", r.sigign);
    assert_eq!(
        r.sigign & bit(libc::SIGPIPE),
        0,
        "SIGPIPE is always default"
    );
}

#[test]
fn program_exit_status_is_passed_through() {
    run(&mut gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]))
    .expect_code(7);
}

#[test]
fn program_found_through_path() {
    let out = run(&mut gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "sh",
        "-c",
        "echo $LISTEN_FDS",
    ]));
    out.expect_code(0);
    assert_eq!(out.stdout, "1\n");
}

#[test]
fn stale_unix_socket_is_replaced() {
    let dir = temp_dir("stale");
    let path = dir.join("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // the file stays, nobody listens
    let spec = format!("unix:{}", path.display());
    let r = probe_report(&["-l", &spec]);
    r.assert_protocol(&["unknown"]);
    assert_eq!(r.fd(3).get("addr"), path.to_str().unwrap());
}

#[test]
fn live_unix_socket_is_address_in_use_and_stays() {
    let dir = temp_dir("live");
    let path = dir.join("live.sock");
    let live = UnixListener::bind(&path).unwrap();
    let spec = format!("unix:{}", path.display());
    run(&mut gracewrap(["-l", &spec, "--", "true"]))
        .expect_code(125)
        .expect_stderr(&format!(
            "gracewrap: cannot bind {spec}: address already in use (a server is listening on it)"
        ));
    // Still the same, still serving.
    std::os::unix::net::UnixStream::connect(&path).expect("the live socket still works");
    drop(live);
    // A live datagram socket, probed with a datagram socket.
    let gpath = dir.join("live.dgram");
    let _g = UnixDatagram::bind(&gpath).unwrap();
    let gspec = format!("unixgram:{}", gpath.display());
    run(&mut gracewrap(["-l", &gspec, "--", "true"]))
        .expect_code(125)
        .expect_stderr(&format!(
            "gracewrap: cannot bind {gspec}: address already in use (a server is listening on it)"
        ));
}

/// A start that fails after binding (a later spec, a usage error found
/// once the sockets exist, PROGRAM missing) removes the socket files it
/// bound, and only those: PROGRAM never ran to own them.
#[test]
fn a_failed_start_removes_the_socket_files_it_bound() {
    let dir = temp_dir("failed-start");
    let ours = dir.join("ours.sock");
    let spec = format!("unix:{}", ours.display());
    let cases: &[(&[&str], i32)] = &[
        (
            &["-l", &spec, "-l", "unix:/nonexistent-dir/x.sock", "true"],
            125,
        ),
        (&["--fdname", "a:b", "-l", &spec, "true"], 2),
        (&["-l", &spec, "--", "no-such-program-gracewrap"], 127),
        (&["-s", "-l", &spec, "--", "no-such-program-gracewrap"], 127),
    ];
    for (args, code) in cases {
        let out = run(&mut gracewrap(*args));
        out.expect_code(*code);
        assert!(
            !ours.exists(),
            "{args:?} left {} behind\n{out}",
            ours.display()
        );
    }
    // What was there before and is not ours stays: a live socket that
    // made the start fail.
    let theirs = dir.join("theirs.sock");
    let _live = UnixListener::bind(&theirs).unwrap();
    let tspec = format!("unix:{}", theirs.display());
    run(&mut gracewrap(["-l", &spec, "-l", &tspec, "true"])).expect_code(125);
    assert!(!ours.exists());
    std::os::unix::net::UnixStream::connect(&theirs).expect("their socket still serves");
}

/// On a kernel without close_range(2) (before Linux 5.9) the stray fds in
/// the socket range are closed all the same, one by one as
/// /proc/self/fd lists them.
#[test]
fn without_close_range_stray_fds_in_the_socket_range_are_still_closed() {
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let mut cmd = gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
        "--",
        probe().to_str().unwrap(),
    ]);
    for fd in [3, 4, 5, 9] {
        with_fd_at(&mut cmd, &devnull, fd);
    }
    with_failing_syscalls(
        &mut cmd,
        &[Fail {
            nr: libc::SYS_close_range,
            errno: libc::ENOSYS,
            if_arg_set: None,
        }],
    );
    let out = run(&mut cmd);
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown", "unknown"]);
    assert_eq!(r.fd(3).get("type"), "stream");
    assert_eq!(r.fd(4).get("type"), "dgram");
}

/// setrlimit(2) refused (a seccomp policy, a container runtime): the
/// `want`ed raise is only a wish; if the soft limit already covers what
/// the sockets need, gracewrap goes on with it.
#[test]
fn a_refused_raise_of_the_fd_limit_is_no_error_when_the_soft_limit_suffices() {
    let mut cmd = gracewrap(["-l", "tcp:127.0.0.1:0", "--", probe().to_str().unwrap()]);
    with_nofile(&mut cmd, 10, 1000);
    with_failing_syscalls(&mut cmd, &refuse_setrlimit());
    let out = run(&mut cmd);
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown"]);
    assert_eq!(r.nofile_soft, "10");
}

/// setrlimit(2) refused and the soft limit too low for the sockets: the
/// error names the soft limit, before anything is bound.
#[test]
fn a_refused_raise_of_the_fd_limit_is_an_error_when_the_soft_limit_is_too_low() {
    let mut cmd = gracewrap(["-l", "tcp:127.0.0.1:0", "--", probe().to_str().unwrap()]);
    with_nofile(&mut cmd, 4, 1000);
    with_failing_syscalls(&mut cmd, &refuse_setrlimit());
    run(&mut cmd).expect_code(125).expect_stderr(
        "gracewrap: 1 sockets need 5 file descriptors, but RLIMIT_NOFILE allows only 4",
    );
}

/// setrlimit(2) and prlimit64(2) with a new limit fail with EPERM;
/// reading the limits still works.
fn refuse_setrlimit() -> [Fail; 2] {
    [
        Fail {
            nr: libc::SYS_setrlimit,
            errno: libc::EPERM,
            if_arg_set: None,
        },
        Fail {
            nr: libc::SYS_prlimit64,
            errno: libc::EPERM,
            if_arg_set: Some(2),
        },
    ]
}

/// Sockets that already sit in their slots are placed where they are:
/// stdio, the sockets and one spare fd (what gracewrap asks
/// RLIMIT_NOFILE for) are enough, no copy above the range is made.
#[test]
fn sockets_already_in_their_slots_need_no_fd_beyond_the_reserved_one() {
    let mut cmd = gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
        "--",
        probe().to_str().unwrap(),
    ]);
    with_nofile(&mut cmd, 6, 6);
    let out = run(&mut cmd);
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown", "unknown"]);
    assert_eq!(r.nofile_soft, "6");
}

/// A socket inside the range but in another one's slot moves just above
/// the range, to the spare fd: with fd:4 (for slot 3) and fd:7 (for slot
/// 4), fds 0-5 are all it takes.
#[test]
fn a_socket_in_another_slot_moves_just_above_the_range() {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cmd = gracewrap(["-l", "fd:4", "-l", "fd:7", "--", probe().to_str().unwrap()]);
    with_fd_at(&mut cmd, &a, 4);
    with_fd_at(&mut cmd, &b, 7);
    with_nofile(&mut cmd, 6, 6);
    let out = run(&mut cmd);
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown", "unknown"]);
    assert_eq!(r.fd(3).inet(), a.local_addr().unwrap());
    assert_eq!(r.fd(4).inet(), b.local_addr().unwrap());
}

/// A soft fd limit that holds the sockets but not their copies is raised
/// for gracewrap's own work: 20 fd:N sockets handed over in reverse order
/// all move, which takes fds up to 42, under a soft limit of 31. PROGRAM
/// gets the caller's limit back.
#[test]
fn a_soft_fd_limit_without_room_to_move_the_sockets_is_raised_while_gracewrap_moves_them() {
    let listeners: Vec<TcpListener> = (0..20)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut args: Vec<String> = Vec::new();
    // fd:22 goes to slot 3, fd:21 to slot 4, ..., fd:3 to slot 22.
    for fd in (3..23).rev() {
        args.push("-l".into());
        args.push(format!("fd:{fd}"));
    }
    let mut cmd = gracewrap(&args);
    cmd.arg("--").arg(probe());
    for (i, l) in listeners.iter().enumerate() {
        with_fd_at(&mut cmd, l, 3 + i as i32);
    }
    with_nofile(&mut cmd, 31, 4096);
    let out = run(&mut cmd);
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown"; 20]);
    for (i, l) in listeners.iter().enumerate() {
        assert_eq!(r.fd(22 - i as i32).inet(), l.local_addr().unwrap());
    }
    assert_eq!(r.nofile_soft, "31");
}

/// While it holds n sockets, gracewrap's own soft fd limit is stdio, the
/// sockets, one spare, a copy of each socket and 16 more: 24 for two.
/// (Seen while `--lazy` waits for traffic, before the limit goes back.)
#[test]
fn while_it_holds_the_sockets_gracewraps_fd_limit_has_room_for_a_copy_of_each() {
    let mut cmd = gracewrap([
        "-v",
        "--lazy",
        "-l",
        &quiet_spec(),
        "-l",
        &quiet_spec(),
        "--",
        "true",
    ]);
    with_nofile(&mut cmd, 20, 4096);
    let mut g = Running::spawn(&mut cmd);
    g.stderr_line("(fd 4)");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", g.child.id())).unwrap();
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    assert_eq!(soft, "24", "{limits}");
}

/// LISTEN_FDNAMES may fill one environment string to the last byte the
/// kernel takes (MAX_ARG_STRLEN, 131072 with the NUL): 1579 names of 82
/// bytes make exactly that, and PROGRAM runs.
#[test]
fn names_that_fill_an_environment_string_to_the_last_byte_still_reach_the_program() {
    let name = "n".repeat(82);
    let mut cmd = gracewrap(["--fdname", &name]);
    for _ in 0..1579 {
        cmd.args(["-l", &quiet_spec()]);
    }
    cmd.args(["--", "true"]);
    assert_eq!("LISTEN_FDNAMES=".len() + 1579 * 83 - 1 + 1, 131_072);
    run(&mut cmd).expect_code(0);
}
