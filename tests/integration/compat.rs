//! systemd-socket-activate's command line through gracewrap: -d,
//! --seqpacket, --fdname, -E, --inetd, --lazy, --now, vsock, and a
//! libsystemd consumer behind it.

use std::net::{TcpStream, UdpSocket};
use std::process::Command;

use crate::util::*;

fn p() -> String {
    probe().to_str().unwrap().to_string()
}

#[test]
fn datagram_turns_bare_specs_into_datagram_sockets() {
    let dir = temp_dir("dgram");
    let path = format!("{}/d.sock", dir.display());
    let r = probe_report(&[
        "-d",
        "-l",
        "127.0.0.1:0",
        "-l",
        &path,
        "-l",
        "tcp:127.0.0.1:0",
    ]);
    r.assert_protocol(&["unknown"; 3]);
    assert_eq!(
        (r.fd(3).get("type"), r.fd(3).get("family")),
        ("dgram", "inet")
    );
    assert_eq!(
        (r.fd(4).get("type"), r.fd(4).get("family")),
        ("dgram", "unix")
    );
    assert_eq!(
        r.fd(5).get("type"),
        "stream",
        "an explicit TYPE: wins over -d"
    );
}

#[test]
fn seqpacket_turns_bare_unix_specs_into_seqpacket_sockets() {
    let abs = format!("@gw-seq-{}", std::process::id());
    let r = probe_report(&["--seqpacket", "-l", &abs]);
    r.assert_protocol(&["unknown"]);
    assert_eq!(r.fd(3).get("type"), "seqpacket");
}

#[test]
fn now_is_accepted_and_is_the_default() {
    let r = probe_report(&["--now", "-l", "127.0.0.1:0", "--fdname=web", "-E", "X=1"]);
    r.assert_protocol(&["web"]);
    assert_eq!(r.env("X"), Some("1"));
}

#[test]
fn vsock_listener_where_the_kernel_has_af_vsock() {
    let out = run(&mut gracewrap(["-l", "vsock::0", "--", &p()]));
    if out.stderr.contains("this kernel has no AF_VSOCK") {
        out.expect_code(125);
        return;
    }
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown"]);
    assert_eq!(r.fd(3).get("family"), "vsock");
    assert!(
        r.fd(3).get("addr").starts_with("4294967295:"),
        "{:?}",
        r.fd(3)
    );
}

/// `--inetd` without `--accept`: the listening socket is stdin and stdout,
/// no LISTEN_* variables (systemd's StandardInput=socket).
#[test]
fn inetd_puts_the_single_socket_on_stdin_and_stdout() {
    let dir = temp_dir("inetd");
    let report = dir.join("report");
    let out =
        run(gracewrap(["--inetd", "-l", &quiet_spec(), "--", &p()]).env("PROBE_REPORT", &report));
    out.expect_code(0);
    let r = Report::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(r.fd(0).is_socket() && r.fd(1).is_socket(), "{:#?}", r.fds);
    assert_eq!(r.fd(0).get("listening"), "1");
    assert!(
        r.passed_fds().is_empty(),
        "nothing at fd 3..: {:?}",
        r.passed_fds()
    );
    assert_eq!(r.env("LISTEN_FDS"), None);
    assert_eq!(r.env("LISTEN_PID"), None);
}

#[test]
fn lazy_waits_for_the_first_connection_then_execs() {
    let dir = temp_dir("lazy");
    let report = dir.join("report");
    let mut g = Running::spawn(
        gracewrap(["--lazy", "-l", "tcp:127.0.0.1:0", "--", &p()]).env("PROBE_REPORT", &report),
    );
    let addr = g.listening_addr();
    // Blocked in poll(2): still gracewrap, no report.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", g.child.id())).unwrap();
    assert_eq!(comm.trim(), "gracewrap");
    assert!(!report.exists());
    let _c = TcpStream::connect(&addr).unwrap();
    wait_until("the probe to run", || report.exists());
    assert!(g.wait().success());
    Report::parse(&std::fs::read_to_string(&report).unwrap())
        .unwrap()
        .assert_protocol(&["unknown"]);
}

#[test]
fn lazy_also_wakes_on_a_datagram() {
    let dir = temp_dir("lazy-dgram");
    let report = dir.join("report");
    let mut g = Running::spawn(
        gracewrap(["--lazy", "-d", "-l", "127.0.0.1:0", "--", &p()]).env("PROBE_REPORT", &report),
    );
    let addr = g.listening_addr();
    let addr = addr.strip_prefix("udp:").unwrap();
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"wake", addr)
        .unwrap();
    wait_until("the probe to run", || report.exists());
    assert!(g.wait().success());
}

/// A systemd-socket-activate command line, unchanged, in front of a
/// libsystemd consumer (python3-systemd), with a real request.
#[test]
fn ssa_command_line_in_front_of_libsystemd() {
    let script = r#"
import os, socket
from systemd import daemon
fds = daemon.listen_fds_with_names()
assert fds == {3: "web"}, fds
assert daemon.is_socket_inet(3, socket.AF_INET, socket.SOCK_DGRAM), "not UDP"
assert os.environ["GREETING"] == "hi"
s = socket.socket(fileno=3)
data, peer = s.recvfrom(100)
s.sendto(b"libsystemd got " + data, peer)
"#;
    let mut g = Running::spawn(&mut gracewrap([
        "-l",
        "127.0.0.1:0",
        "--datagram",
        "--fdname=web",
        "-E",
        "GREETING=hi",
        "--now",
        "/usr/bin/python3",
        "-c",
        script,
    ]));
    let addr = g.listening_addr();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(DEADLINE)).unwrap();
    u.send_to(b"ping", addr.strip_prefix("udp:").unwrap())
        .unwrap();
    let mut buf = [0; 100];
    let n = u.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"libsystemd got ping");
    assert!(g.wait().success());
}

/// The same socket, first through systemd-socket-activate, then gracewrap:
/// both command lines give the consumer the same view.
#[test]
fn ssa_and_gracewrap_give_the_same_protocol_view() {
    let dir = temp_dir("same-view");
    let ssa_sock = dir.join("ssa.sock");
    let ssa_report = dir.join("ssa.report");
    let mut ssa = Running::spawn(
        Command::new("/usr/bin/systemd-socket-activate")
            .args(["-l", ssa_sock.to_str().unwrap(), "--fdname=x"])
            .arg(format!("-EPROBE_REPORT={}", ssa_report.display()))
            .arg(p()),
    );
    let _c = connect_when_listening(&ssa_sock);
    wait_until("ssa report", || ssa_report.exists());
    ssa.wait();
    let gw_sock = dir.join("gw.sock");
    let gw_report = dir.join("gw.report");
    run(
        gracewrap(["-l", gw_sock.to_str().unwrap(), "--fdname=x", &p()])
            .env("PROBE_REPORT", &gw_report),
    )
    .expect_code(0);
    let a = Report::parse(&std::fs::read_to_string(&ssa_report).unwrap()).unwrap();
    let b = Report::parse(&std::fs::read_to_string(&gw_report).unwrap()).unwrap();
    a.assert_protocol(&["x"]);
    b.assert_protocol(&["x"]);
    for key in ["type", "family", "listening", "cloexec"] {
        assert_eq!(a.fd(3).get(key), b.fd(3).get(key), "{key}");
    }
    // The documented differences: gracewrap passes the whole environment
    // (SSA a minimal one) and keeps the umask's socket mode (SSA: 0644).
    assert!(
        b.env.len() > a.env.len(),
        "gracewrap passes the full environment"
    );
}
