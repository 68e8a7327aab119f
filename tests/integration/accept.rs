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
    let mut buf = [0u8; 1];
    let early = c.read(&mut buf);
    assert!(
        early.is_err(),
        "third connection served above the cap: {early:?}"
    );
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
