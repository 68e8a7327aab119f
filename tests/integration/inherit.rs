//! Inheriting LISTEN_FDS like gracenet: nesting, matching, ordering,
//! dropping, and every garbage case of the LISTEN_* variables.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::process::Command;

use crate::util::*;

fn p() -> String {
    probe().to_str().unwrap().to_string()
}

/// A port nobody listens on right now (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn nested_gracewrap_reuses_the_same_spec_and_appends_new_ones() {
    let dir = temp_dir("nest-same");
    let a = format!("unix:{}/a.sock", dir.display());
    let b = format!("unix:{}/b.sock", dir.display());
    let g = gracewrap_path();
    // Without reuse the inner bind of `a` would find a live socket: 125.
    let out = run(&mut gracewrap([
        "-l",
        &format!("web={a}"),
        "--",
        g,
        "-l",
        &format!("web={a}"),
        "-l",
        &b,
        "--",
        &p(),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["web", "unknown"]);
    assert_eq!(r.fd(3).get("addr"), format!("{}/a.sock", dir.display()));
    assert_eq!(r.fd(4).get("addr"), format!("{}/b.sock", dir.display()));
}

#[test]
fn nested_gracewrap_keeps_positions_and_names_of_what_it_did_not_ask_for() {
    let abs = format!("@gw-nest-{}", std::process::id());
    let out = run(&mut gracewrap([
        "-l",
        "http=tcp:127.0.0.1:0",
        "-l",
        &format!("admin={abs}"),
        "--",
        gracewrap_path(),
        "-l",
        "udp:127.0.0.1:0",
        "--",
        &p(),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["http", "admin", "unknown"]);
    assert_eq!(r.fd(3).get("type"), "stream");
    assert_eq!(r.fd(4).get("addr"), abs);
    assert_eq!(r.fd(5).get("type"), "dgram");
}

#[test]
fn without_listen_inherited_sockets_are_re_exported_with_a_fixed_listen_pid() {
    let out = run(&mut gracewrap([
        "-l",
        "a=tcp:127.0.0.1:0",
        "-l",
        "b=udp:127.0.0.1:0",
        "--",
        gracewrap_path(),
        "--",
        &p(),
    ]));
    out.expect_code(0);
    out.report().assert_protocol(&["a", "b"]);
}

#[test]
fn a_set_meant_for_a_forking_wrapper_is_ignored() {
    // The usual case: a wrapper (here sh without exec) forks, so LISTEN_PID
    // names the wrapper. gracewrap must ignore such a set, like libsystemd.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; \"$@\"; exit $?",
        "sh",
    ])
    .args([
        gracewrap_path(),
        "-v",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "true",
    ]);
    with_fd_at(&mut cmd, &listener, 3);
    let out = run(&mut cmd);
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("gracewrap: ignoring LISTEN_FDS: LISTEN_PID="),
        "{out}"
    );
}

#[test]
fn name_match_comes_first_then_address() {
    let dir = temp_dir("byname");
    let a = format!("unix:{}/a.sock", dir.display());
    let b = format!("unix:{}/b.sock", dir.display());
    let out = run(&mut gracewrap([
        "-l",
        &format!("http={a}"),
        "--",
        gracewrap_path(),
        "-l",
        &format!("http={b}"),
        "--",
        &p(),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["http"]);
    assert_eq!(r.fd(3).get("addr"), format!("{}/a.sock", dir.display()));
    assert!(
        !dir.join("b.sock").exists(),
        "matched by name: nothing new is bound"
    );
}

#[test]
fn an_unnamed_inherited_socket_takes_the_name_of_the_spec_that_matches_it() {
    let dir = temp_dir("adopt-name");
    let a = format!("unix:{}/a.sock", dir.display());
    let out = run(&mut gracewrap([
        "-l",
        &a,
        "--",
        gracewrap_path(),
        "-l",
        &format!("web={a}"),
        "--",
        &p(),
    ]));
    out.expect_code(0);
    out.report().assert_protocol(&["web"]);
}

#[test]
fn relative_and_absolute_unix_paths_match() {
    let dir = temp_dir("relmatch");
    let out = run(gracewrap([
        "-l",
        "unix:./r.sock",
        "--",
        gracewrap_path(),
        "-l",
        &format!("unix:{}/r.sock", dir.display()),
        "--",
        &p(),
    ])
    .current_dir(&dir));
    out.expect_code(0);
    out.report().assert_protocol(&["unknown"]);
}

/// gracenet's isSameAddr: 0.0.0.0:p and [::]:p are the same listener.
#[test]
fn unspecified_ipv4_and_ipv6_addresses_match() {
    let port = free_port();
    let out = run(&mut gracewrap([
        "-l",
        &format!("tcp4::{port}"),
        "--",
        gracewrap_path(),
        "-l",
        &format!("tcp6::{port}"),
        "--",
        &p(),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown"]);
    assert_eq!(r.fd(3).inet().to_string(), format!("0.0.0.0:{port}"));
}

#[test]
fn port_zero_never_matches_an_inherited_socket() {
    let out = run(&mut gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        gracewrap_path(),
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        &p(),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown", "unknown"]);
    assert_ne!(r.fd(3).inet(), r.fd(4).inet());
}

#[test]
fn different_types_at_the_same_address_do_not_match() {
    let port = free_port();
    let out = run(&mut gracewrap([
        "-l",
        &format!("tcp:127.0.0.1:{port}"),
        "--",
        gracewrap_path(),
        "-l",
        &format!("udp:127.0.0.1:{port}"),
        "--",
        &p(),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown", "unknown"]);
    assert_eq!(
        (r.fd(3).get("type"), r.fd(4).get("type")),
        ("stream", "dgram")
    );
}

/// gracenet's bug ("never closes listeners it stops using") fixed:
/// --inherited=drop closes what nobody asked for and compacts the rest.
#[test]
fn inherited_drop_closes_unrequested_sockets_and_compacts() {
    let abs = |n: &str| format!("@gw-drop-{}-{n}", std::process::id());
    let out = run(&mut gracewrap([
        "-l",
        &format!("a={}", abs("a")),
        "-l",
        &format!("b={}", abs("b")),
        "-l",
        &format!("c={}", abs("c")),
        "-l",
        &format!("d={}", abs("d")),
        "--",
        gracewrap_path(),
        "--inherited=drop",
        "-l",
        "inherit:c",
        "-l",
        "fd:4",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        &p(),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["b", "c", "unknown"]);
    assert_eq!(r.fd(3).get("addr"), abs("b"));
    assert_eq!(r.fd(4).get("addr"), abs("c"));
    // The dropped ones are really closed: their names are free again.
    for n in ["a", "d"] {
        use std::os::linux::net::SocketAddrExt;
        let name = abs(n);
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap();
        UnixListener::bind_addr(&addr).unwrap_or_else(|e| panic!("{name} still bound: {e}"));
    }
}

#[test]
fn name_equals_inherit_renames_the_inherited_socket() {
    let out = run(&mut gracewrap([
        "-l",
        &format!("http={}", quiet_spec()),
        "--",
        gracewrap_path(),
        "-l",
        "web=inherit:http",
        "--",
        &p(),
    ]));
    out.expect_code(0);
    out.report().assert_protocol(&["web"]);
}

#[test]
fn inherit_name_that_is_missing_is_an_error_naming_it() {
    run(&mut gracewrap([
        "-l",
        "a=tcp:127.0.0.1:0",
        "-l",
        "b=udp:127.0.0.1:0",
        "--",
        gracewrap_path(),
        "-l",
        "inherit:zz",
        "--",
        "true",
    ]))
    .expect_code(125);
    let out = run(&mut gracewrap([
        "-l",
        &format!("a={}", quiet_spec()),
        "-l",
        &format!("b={}", quiet_spec()),
        "--",
        gracewrap_path(),
        "-l",
        "inherit:zz",
        "--",
        "true",
    ]));
    out.expect_code(125)
        .expect_stderr("gracewrap: inherit:zz: no inherited socket is named zz (inherited: a, b)");
    run(&mut gracewrap(["-l", "inherit:zz", "--", "true"]))
        .expect_code(125)
        .expect_stderr(
            "gracewrap: inherit:zz: nothing was inherited (no LISTEN_FDS for gracewrap)",
        );
}

#[test]
fn under_systemd_socket_activate_names_come_from_fdname() {
    let ssa = "/usr/bin/systemd-socket-activate";
    assert!(
        std::path::Path::new(ssa).exists(),
        "{ssa} is needed: run .ci/deps (apt-get install systemd)"
    );
    let dir = temp_dir("ssa");
    let path = dir.join("ssa.sock");
    let report = dir.join("report");
    let mut cmd = Command::new(ssa);
    // (systemd-socket-activate passes a minimal environment: -E it.)
    cmd.args(["-l", path.to_str().unwrap(), "--fdname=web"])
        .arg(format!("-EPROBE_REPORT={}", report.display()))
        .arg(gracewrap_path())
        .args([
            "-l",
            &format!("web=unix:{}", path.display()),
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            &p(),
        ]);
    let mut g = Running::spawn(&mut cmd);
    // systemd 252 has no --now: it execs on the first connection.
    let _c = connect_when_listening(&path);
    wait_until("probe report", || report.exists());
    assert!(g.wait().success());
    let r = Report::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    r.assert_protocol(&["web", "unknown"]);
    assert_eq!(r.fd(3).get("addr"), path.to_str().unwrap());
}

#[test]
fn a_non_socket_inherited_fd_is_passed_on_untouched() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let out = run(&mut activated(
        &[&file],
        &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "stored")],
        &["-l", "tcp:127.0.0.1:0", "--", &p()],
    ));
    out.expect_code(0);
    let r = out.report();
    assert_eq!(r.passed_fds(), [3, 4]);
    assert_eq!(r.fd(3).get("kind"), "chr");
    assert!(r.fd(4).is_socket());
    assert_eq!(r.env("LISTEN_FDNAMES"), Some("stored:unknown"));
    assert_eq!(r.env("LISTEN_PID"), Some(r.pid.to_string().as_str()));
}

/// Where libsystemd silently returns 0, gracewrap silently inherits
/// nothing (and says why with -v).
#[test]
fn listen_variables_for_someone_else_are_ignored() {
    let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
    // LISTEN_FDS unset: nothing inherited, fd 3 is a stray and closed.
    let out = run(&mut activated(
        &[&l1],
        &[],
        &["-l", "udp:127.0.0.1:0", "--", &p()],
    ));
    out.expect_code(0);
    out.report().assert_protocol(&["unknown"]);
    assert_eq!(out.report().fd(3).get("type"), "dgram");
    // LISTEN_PID of another process.
    let out = run(gracewrap(["-v", "-l", "udp:127.0.0.1:0", "--", &p()])
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1"));
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("gracewrap: ignoring LISTEN_FDS: LISTEN_PID=1 is not gracewrap's pid"),
        "{out}"
    );
    out.report().assert_protocol(&["unknown"]);
    // LISTEN_PIDFDID of another process: refused where the kernel has
    // pidfd inode ids (the probe finds out for itself), and skipped where
    // it has none. Either way the outcome is decided, not accepted both
    // ways.
    let kernel_has_ids = probe_report(&["-l", &quiet_spec()]).pidfdid != "-";
    let out = run(&mut activated(
        &[&l1],
        &[("LISTEN_FDS", "1"), ("LISTEN_PIDFDID", "1")],
        &["-v", "--", "true"],
    ));
    if kernel_has_ids {
        out.expect_code(2);
        assert!(
            out.stderr
                .contains("LISTEN_PIDFDID=1 is not gracewrap's pidfd id"),
            "{out}"
        );
    } else {
        out.expect_code(0);
    }
}

#[test]
fn fdname_names_all_passed_sockets_in_fd_order() {
    let r = probe_report(&[
        "--fdname=a:b",
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
    ]);
    r.assert_protocol(&["a", "b"]);
    let r = probe_report(&[
        "--fdname",
        "same",
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
    ]);
    r.assert_protocol(&["same", "same"]);
    run(&mut gracewrap([
        "--fdname=a:b:c",
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "udp:127.0.0.1:0",
        "--",
        "true",
    ]))
    .expect_code(2);
}

/// `fd:3` where fd 3 is an inherited socket names that socket: it is
/// reused, once, with the spec's name, not taken a second time.
#[test]
fn fd_n_naming_an_inherited_socket_reuses_it_once() {
    let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(&mut activated(
        &[&l1],
        &[("LISTEN_FDS", "1")],
        &["-l", "web=fd:3", "--", &p()],
    ));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["web"]);
    assert_eq!(r.fd(3).inet(), l1.local_addr().unwrap());
}

/// Every fd:N outside the inherited set must be open as the caller left
/// it: with inherited sockets at 3 and 4, a closed fd 5 is refused even
/// though taking fd:0 would put a copy of stdin there.
#[test]
fn a_closed_fd_just_above_the_inherited_set_is_refused_before_fd_0_is_copied_there() {
    let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
    let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let stdin = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = activated(
        &[&l1, &l2],
        &[("LISTEN_FDS", "2")],
        &["-l", "fd:0", "-l", "fd:5", "--", "true"],
    );
    cmd.stdin(std::os::fd::OwnedFd::from(stdin));
    run(&mut cmd)
        .expect_code(125)
        .expect_stderr("gracewrap: fd:5: fd 5 is not open");
}

/// An inherited socket on the same host but another port is not what a
/// spec asks for: the spec gets its own socket.
#[test]
fn an_inherited_socket_on_another_port_of_the_same_host_is_not_reused() {
    let port = free_port();
    let out = run(&mut gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        gracewrap_path(),
        "-l",
        &format!("tcp:127.0.0.1:{port}"),
        "--",
        &p(),
    ]));
    out.expect_code(0);
    let r = out.report();
    r.assert_protocol(&["unknown", "unknown"]);
    assert_ne!(r.fd(3).inet().port(), port);
    assert_eq!(r.fd(4).inet().port(), port);
}

/// A nested gracewrap given the very spec its parent bound reuses the
/// inherited socket instead of binding the address again (which would
/// fail: in use), for every kind of address: `localhost` (127.0.0.1, and
/// ::1 for tcp6), an IPv4 and an IPv6 literal, an abstract unix name, a vsock port
/// (where the kernel has AF_VSOCK).
#[test]
fn the_same_spec_nested_reuses_the_inherited_socket_for_every_address_kind() {
    let specs: [fn() -> String; 6] = [
        || format!("tcp:localhost:{}", free_port()),
        || format!("tcp:127.0.0.1:{}", free_port()),
        || format!("tcp6:localhost:{}", free_port()),
        || format!("tcp:[::1]:{}", free_port()),
        || format!("unix:@gw-reuse-{}", std::process::id()),
        || format!("vsock::{}", 40_000 + std::process::id() % 20_000),
    ];
    for make in specs {
        // A port free_port() found can be taken by another test before the
        // outer gracewrap binds it: then a new one. A nested gracewrap that
        // failed to reuse its socket fails every time.
        let (spec, out) = (0..5)
            .map(|_| {
                let spec = make();
                let out = run(&mut gracewrap([
                    "-l",
                    &spec,
                    "--",
                    gracewrap_path(),
                    "-l",
                    &spec,
                    "--",
                    &p(),
                ]));
                (spec, out)
            })
            .find(|(_, out)| !out.stderr.contains("address already in use"))
            .unwrap_or_else(|| panic!("{}: the address was in use five times", make()));
        let spec = &spec;
        if spec.starts_with("vsock") && out.stderr.contains("this kernel has no AF_VSOCK") {
            continue;
        }
        out.expect_code(0);
        let r = out.report();
        r.assert_protocol(&["unknown"]);
        let addr = r.fd(3).get("addr").to_string();
        let want = match spec.split(':').next().unwrap() {
            "tcp6" => "[::1]:",
            _ if spec.contains("[::1]") => "[::1]:",
            "tcp" => "127.0.0.1:",
            "unix" => "@gw-reuse-",
            _ => "4294967295:",
        };
        assert!(addr.starts_with(want), "{spec}: {addr}");
    }
}
