//! `--accept`: one PROGRAM per connection, reaped, capped, killed with us.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::util::*;

fn p() -> String {
    probe().to_str().unwrap().to_string()
}

fn zombies_of(pid: u32) -> usize {
    children_of(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
        })
        .count()
}

/// User and system CPU time of `pid`, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After "comm)": state is field 3, utime 14 and stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn read_line(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

#[test]
fn each_connection_gets_its_own_program_with_listen_pid_and_no_zombie_stays() {
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        &p(),
        "answer",
    ]));
    let addr = g.accepting_addr();
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || read_line(&mut TcpStream::connect(&addr).unwrap()))
        })
        .collect();
    let mut pids = std::collections::HashSet::new();
    for t in threads {
        let line = t.join().unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 8, "{line:?}");
        assert_eq!(f[1], f[3], "LISTEN_PID is the child's own pid: {line}");
        assert_eq!((f[5], f[7]), ("1", "connection"), "{line}");
        pids.insert(f[1].to_string());
    }
    assert_eq!(pids.len(), 200, "one process per connection");
    let gpid = g.child.id();
    wait_until("all children reaped", || children_of(gpid).is_empty());
    assert_eq!(zombies_of(gpid), 0);
    // SIGTERM: clean stop, exit 0.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&g.child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(g.wait().code(), Some(0));
}

#[test]
fn max_connections_caps_concurrent_children_and_the_rest_wait() {
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "--max-connections",
        "2",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        &p(),
        "hold",
    ]));
    let addr = g.accepting_addr();
    let gpid = g.child.id();
    let mut a = TcpStream::connect(&addr).unwrap();
    let mut b = TcpStream::connect(&addr).unwrap();
    assert!(read_line(&mut a).starts_with("pid "));
    assert!(read_line(&mut b).starts_with("pid "));
    let mut c = TcpStream::connect(&addr).unwrap(); // queued in the backlog
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let cpu_before = cpu_ticks(gpid);
    let mut buf = [0u8; 1];
    let early = c.read(&mut buf);
    assert!(
        early.is_err(),
        "third connection served above the cap: {early:?}"
    );
    // At the cap the listener is left out of the poll: a pending
    // connection does not make gracewrap spin.
    let spent = cpu_ticks(gpid) - cpu_before;
    assert!(spent < 10, "{spent} ticks of CPU in 300 ms at the cap");
    assert_eq!(children_of(gpid).len(), 2);
    drop(a); // the first child sees EOF and exits
    assert!(
        read_line(&mut c).starts_with("pid "),
        "served once a slot is free"
    );
    assert!(children_of(gpid).len() <= 2);
    drop((b, c));
}

#[test]
fn inetd_with_accept_runs_an_echo_per_connection_on_stdin_and_stdout() {
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "--inetd",
        "-v",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "cat",
    ]));
    let addr = g.accepting_addr();
    for word in ["hello", "world"] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(format!("{word}\n").as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = String::new();
        s.read_to_string(&mut back).unwrap();
        assert_eq!(back, format!("{word}\n"));
    }
}

#[test]
fn children_get_sigterm_when_gracewrap_dies() {
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        &p(),
        "hold",
    ]));
    let addr = g.accepting_addr();
    let mut s = TcpStream::connect(&addr).unwrap();
    let line = read_line(&mut s);
    let child: i32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    g.child.kill().unwrap(); // SIGKILL: no chance to clean up
    g.wait();
    wait_until("the orphaned child to die", || {
        std::fs::read_to_string(format!("/proc/{child}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
}

#[test]
fn port_zero_prints_the_address_without_verbose() {
    let mut g = Running::spawn(&mut gracewrap(["-a", "-l", "tcp:127.0.0.1:0", "--", "cat"]));
    let line = g.stderr_line("accepting on ");
    assert!(
        line.starts_with("gracewrap: accepting on 127.0.0.1:") && line.ends_with(" (fd 3)"),
        "{line}"
    );
}

#[test]
fn accept_takes_one_fdname() {
    run(&mut gracewrap([
        "-a",
        "--fdname",
        "a:b",
        "-l",
        &quiet_spec(),
        "--",
        "cat",
    ]))
    .expect_code(2)
    .expect_stderr("gracewrap: --accept passes one connection: give --fdname one name, not 2");
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "--fdname",
        "conn",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        probe().to_str().unwrap(),
        "answer",
    ]));
    let addr = g.accepting_addr();
    let line = read_line(&mut TcpStream::connect(&addr).unwrap());
    assert!(line.ends_with(" names conn\n"), "{line}");
}

#[test]
fn accept_needs_listening_sockets_and_an_existing_program() {
    run(&mut gracewrap([
        "-a",
        "-l",
        &quiet_spec(),
        "--",
        "no-such-program-gracewrap",
    ]))
    .expect_code(127)
    .expect_stderr("gracewrap: cannot execute no-such-program-gracewrap: not found in PATH");
    let out = run(&mut gracewrap([
        "-a",
        "-l",
        "udp:127.0.0.1:0",
        "--",
        "true",
    ]));
    out.expect_code(125);
    assert!(
        out.stderr
            .contains("--accept needs listening sockets; udp:127.0.0.1:"),
        "{out}"
    );
}

/// Everything a connection's reply says, read to EOF.
fn reply(mut s: impl Read) -> String {
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// REMOTE_ADDR and REMOTE_PORT as systemd sets them for Accept=yes:
/// IPv4 dotted, IPv6 short, an IPv4 client of a dual-stack socket as
/// plain IPv4; with --inetd too; nothing for a unix peer; and never
/// gracewrap's own (an inetd that started it).
#[test]
fn remote_addr_and_port_name_the_peer_as_systemd_sets_them() {
    let show = "echo \"${REMOTE_ADDR-unset} ${REMOTE_PORT-unset}\"";
    for inetd in [false, true] {
        let mut cmd = gracewrap(["-a", "-v", "-l", "tcp::0"]);
        if inetd {
            cmd.arg("--inetd");
        }
        let program = if inetd {
            show.to_string()
        } else {
            format!("{show} >&3")
        };
        cmd.args(["--", "sh", "-c", &program])
            .env("REMOTE_ADDR", "192.0.2.99")
            .env("REMOTE_PORT", "1");
        let mut g = Running::spawn(&mut cmd);
        let port = port_of(&g.accepting_addr());
        for (host, shown) in [("127.0.0.1", "127.0.0.1"), ("::1", "::1")] {
            let s = TcpStream::connect((host, port)).unwrap();
            let local = s.local_addr().unwrap();
            assert_eq!(
                reply(s),
                format!("{shown} {}\n", local.port()),
                "inetd {inetd}, client {host}"
            );
        }
    }
    let dir = temp_dir("remoteunix");
    let path = dir.join("s");
    let spec = format!("unix:{}", path.display());
    let mut g = Running::spawn(
        gracewrap(["-a", "-v", "--inetd", "-l", &spec, "--", "sh", "-c", show])
            .env("REMOTE_ADDR", "192.0.2.99"),
    );
    g.accepting_addr();
    let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    assert_eq!(reply(s), "unset unset\n");
}

/// Reads one line from a connection a child holds open, or "" if it was
/// closed without one.
fn first_line(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

fn connect_from(local: &str, addr: &str) -> TcpStream {
    let to: std::net::SocketAddr = addr.parse().unwrap();
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )
    .unwrap();
    let from: std::net::SocketAddr = format!("{local}:0").parse().unwrap();
    rustix::net::bind(&sock, &from).unwrap();
    rustix::net::connect(&sock, &to).unwrap();
    TcpStream::from(sock)
}

/// --max-connections-per-source: a source at its limit has further
/// connections closed at once (no child, no wait in the backlog), others
/// are served, and the source is served again once one of its children
/// is gone; -v says so, and the total at the end.
#[test]
fn max_connections_per_source_closes_the_excess_at_once() {
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "--max-connections-per-source",
        "2",
        "-l",
        "tcp:0.0.0.0:0",
        "--",
        &p(),
        "hold",
    ]));
    let addr = format!("127.0.0.1:{}", port_of(&g.accepting_addr()));
    let gpid = g.child.id();
    let mut a = connect_from("127.0.0.1", &addr);
    let mut b = connect_from("127.0.0.1", &addr);
    assert!(first_line(&mut a).starts_with("pid "));
    assert!(first_line(&mut b).starts_with("pid "));
    let mut c = connect_from("127.0.0.1", &addr);
    let c_port = c.local_addr().unwrap().port();
    let refusing = std::time::Instant::now();
    assert_eq!(first_line(&mut c), "", "closed without a child");
    let line = g.stderr_line("closed a connection");
    assert_eq!(
        line,
        format!(
            "gracewrap: closed a connection from 127.0.0.1:{c_port}: its source has 2 open (--max-connections-per-source)"
        )
    );
    // Another source is not held back.
    let mut other = connect_from("127.0.0.2", &addr);
    assert!(first_line(&mut other).starts_with("pid "));
    assert_eq!(children_of(gpid).len(), 3);
    // A flood of refusals is counted, and said at most once a second.
    for _ in 0..20 {
        let mut d = connect_from("127.0.0.1", &addr);
        assert_eq!(first_line(&mut d), "");
    }
    // One child gone: the source is served again.
    drop(a);
    wait_until("the first child to be reaped", || {
        children_of(gpid).len() == 2
    });
    let mut e = connect_from("127.0.0.1", &addr);
    assert!(first_line(&mut e).starts_with("pid "), "served again");
    // b and e: the source is at its limit again.
    let mut f = connect_from("127.0.0.1", &addr);
    assert_eq!(first_line(&mut f), "", "b and e count, a no longer");
    let seconds = refusing.elapsed().as_secs() as usize;
    signal(&g, libc::SIGTERM);
    assert_eq!(g.wait().code(), Some(0));
    let rest = g.rest_of_stderr();
    assert!(
        rest.contains(
            &"gracewrap: 22 connection(s) were closed at once over --max-connections-per-source"
                .to_string()
        ),
        "{rest:?}"
    );
    let said = g
        .stderr_seen
        .iter()
        .filter(|l| l.contains("closed a connection"))
        .count();
    assert!(
        (1..=2 + seconds).contains(&said),
        "22 refusals in {seconds} s, {said} lines: {:?}",
        g.stderr_seen
    );
    drop((b, other));
}

/// For a unix socket the source is the peer's uid (SO_PEERCRED), as in
/// systemd: root at its limit does not hold back another user.
#[test]
fn per_source_counts_unix_peers_by_uid() {
    let name = format!("gw-per-uid-{}", std::process::id());
    let spec = format!("unix:@{name}");
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "--inetd",
        "--max-connections-per-source",
        "1",
        "-l",
        &spec,
        "--",
        "sh",
        "-c",
        "echo served; read x",
    ]));
    g.accepting_addr();
    let connect = |as_nobody: bool| {
        let code = format!(
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect('\\0{name}')\nsys.stdout.write(s.makefile().readline())\n"
        );
        let mut cmd = if as_nobody {
            let mut c = std::process::Command::new("setpriv");
            // Debian's python3: the one first in PATH may be out of
            // nobody's reach.
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
            ]);
            c
        } else {
            std::process::Command::new("/usr/bin/python3")
        };
        let out = cmd.args(["-c", &code]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let holder = std::os::unix::net::UnixStream::connect_addr(
        &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut held = String::new();
    BufReader::new(&holder).read_line(&mut held).unwrap();
    assert_eq!(held, "served\n");
    assert_eq!(connect(false), "", "a second root connection is closed");
    g.stderr_line("closed a connection from uid 0: its source has 1 open");
    assert_eq!(connect(true), "served\n", "another uid is served");
}

/// With --user each child is forked (not vforked) and drops privileges
/// itself: it runs as the user, with LISTEN_PID its own pid.
#[test]
fn with_user_each_connection_runs_as_the_user_with_its_own_listen_pid() {
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "--user",
        "nobody",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "echo \"$(id -u) $(id -G) $LISTEN_PID $$\" >&3",
    ]));
    let addr = g.accepting_addr();
    for _ in 0..3 {
        let line = reply(TcpStream::connect(&addr).unwrap());
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 4, "{line:?}");
        assert_eq!((f[0], f[1]), ("65534", "65534"), "{line}");
        assert_eq!(f[2], f[3], "LISTEN_PID is the child's pid: {line}");
    }
    // Each fork was a success, counted and reaped: no complaint, and
    // no child left once the connections are done.
    let gpid = g.child.id();
    wait_until("the children to be reaped", || children_of(gpid).is_empty());
    signal(&g, libc::SIGTERM);
    assert_eq!(g.wait().code(), Some(0));
    g.rest_of_stderr(); // (into stderr_seen, with the lines read before)
    let complaints: Vec<&String> = g
        .stderr_seen
        .iter()
        .filter(|l| l.contains("cannot"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
}

/// A child that cannot execute PROGRAM (removed after start) says why in
/// exec mode's words, naming the peer; gracewrap goes on serving.
#[test]
fn a_program_gone_after_start_is_reported_with_the_peer() {
    let dir = temp_dir("acceptgone");
    let app = dir.join("app");
    write_executable(&app, "#!/bin/sh\necho here\n");
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "--inetd",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        app.to_str().unwrap(),
    ]));
    let addr = g.accepting_addr();
    assert_eq!(reply(TcpStream::connect(&addr).unwrap()), "here\n");
    std::fs::remove_file(&app).unwrap();
    let s = TcpStream::connect(&addr).unwrap();
    let port = s.local_addr().unwrap().port();
    assert_eq!(reply(s), "");
    let line = g.stderr_line("cannot execute");
    assert_eq!(
        line,
        format!(
            "gracewrap: cannot execute {}: no such file or directory (127.0.0.1:{port})",
            app.display()
        )
    );
    write_executable(&app, "#!/bin/sh\necho back\n");
    assert_eq!(reply(TcpStream::connect(&addr).unwrap()), "back\n");
}

/// A connection's program gets stdio, its connection at fd 3, and no
/// other fd of gracewrap's (listeners, signal pipe, other connections).
#[test]
fn a_connections_program_has_no_fd_but_stdio_and_its_connection() {
    let list = "import os; fds = sorted(int(f) for f in os.listdir('/proc/self/fd')); os.write(3, (' '.join(map(str, fds)) + '\\n').encode())";
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "-v",
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "python3",
        "-c",
        list,
    ]));
    let addr = g.accepting_addr();
    let _held = TcpStream::connect(&addr).unwrap();
    // listdir's own fd is the lowest free one: 4.
    assert_eq!(reply(TcpStream::connect(&addr).unwrap()), "0 1 2 3 4\n");
}

/// LISTEN_PID names each connection's child, except with --no-pid (then
/// neither pid variable) and --inetd (then no LISTEN_* at all), as in
/// exec mode.
#[test]
fn listen_pid_is_left_out_with_no_pid_and_inetd() {
    let show = "echo \"${LISTEN_PID-unset} ${LISTEN_PIDFDID-unset} ${LISTEN_FDS-unset} ${LISTEN_FDNAMES-unset}\"";
    for (flag, want) in [
        ("--no-pid", "unset unset 1 connection\n"),
        ("--inetd", "unset unset unset unset\n"),
    ] {
        let program = if flag == "--inetd" {
            show.to_string()
        } else {
            format!("{show} >&3")
        };
        let mut g = Running::spawn(&mut gracewrap([
            "-a",
            "-v",
            flag,
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            "sh",
            "-c",
            &program,
        ]));
        let addr = g.accepting_addr();
        assert_eq!(reply(TcpStream::connect(&addr).unwrap()), want, "{flag}");
    }
}

/// A child that asked to become the user checks that it did, as exec
/// mode does: set*id faked to succeed without effect (seccomp) leaves it
/// root, and it refuses to run PROGRAM, saying so with the peer.
#[test]
fn a_child_whose_privilege_drop_did_not_happen_does_not_run() {
    for (nr, says) in [
        (libc::SYS_setresgid, "the gid did not change"),
        (libc::SYS_setresuid, "the uid did not change"),
    ] {
        let mut cmd = gracewrap([
            "-a",
            "-v",
            "--user",
            "nobody",
            "--inetd",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            "id",
            "-u",
        ]);
        let fake = Fail {
            nr,
            errno: 0,
            if_arg_set: None,
        };
        let mut g = Running::spawn(with_failing_syscalls(&mut cmd, &[fake]));
        let addr = g.accepting_addr();
        let s = TcpStream::connect(&addr).unwrap();
        let port = s.local_addr().unwrap().port();
        assert_eq!(reply(s), "", "nothing ran as root");
        assert_eq!(
            g.stderr_line("cannot drop privileges"),
            format!("gracewrap: cannot drop privileges to nobody: {says} (127.0.0.1:{port})")
        );
    }
}

/// Where the kernel has no pidfs (pidfd_open(2) refused here by
/// seccomp), a connection's program gets LISTEN_PID and no
/// LISTEN_PIDFDID, and the rest of its environment intact.
#[test]
fn without_pidfds_listen_pid_stays_and_listen_pidfdid_goes() {
    let mut cmd = gracewrap([
        "-a",
        "-v",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "echo \"$LISTEN_PID $$ ${LISTEN_PIDFDID-unset} $LISTEN_FDS $LISTEN_FDNAMES $REMOTE_ADDR ${KEPT-lost}\" >&3",
    ]);
    cmd.env("KEPT", "kept");
    let fake = Fail {
        nr: libc::SYS_pidfd_open,
        errno: libc::ENOSYS,
        if_arg_set: None,
    };
    let mut g = Running::spawn(with_failing_syscalls(&mut cmd, &[fake]));
    let addr = g.accepting_addr();
    let line = reply(TcpStream::connect(&addr).unwrap());
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 7, "{line:?}");
    assert_eq!(f[0], f[1], "LISTEN_PID is the child's: {line}");
    assert_eq!(
        f[2..],
        ["unset", "1", "connection", "127.0.0.1", "kept"],
        "{line}"
    );
}

/// clone(2) and fork(2) failing (EAGAIN: the process limit) for a
/// connection: it is closed, the reason said with the peer, and
/// gracewrap goes on accepting.
#[test]
fn a_fork_that_fails_closes_the_connection_and_says_why() {
    let mut cmd = gracewrap(["-a", "-v", "-l", "tcp:127.0.0.1:0", "--", "true"]);
    let fail = |nr| Fail {
        nr,
        errno: libc::EAGAIN,
        if_arg_set: None,
    };
    let fails = [
        fail(libc::SYS_fork),
        fail(libc::SYS_clone),
        fail(libc::SYS_clone3),
    ];
    let mut g = Running::spawn(with_failing_syscalls(&mut cmd, &fails));
    let addr = g.accepting_addr();
    for _ in 0..2 {
        let s = TcpStream::connect(&addr).unwrap();
        let port = s.local_addr().unwrap().port();
        assert_eq!(reply(s), "");
        assert_eq!(
            g.stderr_line("cannot start"),
            format!(
                "gracewrap: cannot start true for a connection: resource temporarily unavailable (127.0.0.1:{port})"
            )
        );
    }
    assert!(children_of(g.child.id()).is_empty());
}
