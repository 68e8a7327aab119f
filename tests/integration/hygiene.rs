//! Unix socket files (mode, owner, group, mkdir), privilege drop, and the
//! per-socket options, read back from the kernel. Root-only cases: these
//! tests run as root (CI does), like `setpriv` needs.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::util::*;

fn p() -> String {
    probe().to_str().unwrap().to_string()
}

/// Runs `python3 -c connect(path)` as uid/gid 65534; true if it connected.
fn nobody_can_connect(path: &std::path::Path) -> (bool, String) {
    let out = run(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1]); print('ok')\nexcept OSError as e:\n print(e.strerror)",
        path.to_str().unwrap(),
    ]));
    let text = out.stdout.trim().to_string();
    (text == "ok", text)
}

fn gid_of(group: &str) -> u32 {
    let text = std::fs::read_to_string("/etc/group").unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == group).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no group {group}"))
}

#[test]
fn mode_owner_and_group_are_applied_and_read_back() {
    let dir = temp_dir("mode");
    let path = dir.join("s.sock");
    let r = probe_report(&[
        "-l",
        &format!(
            "unix:{},mode=0660,owner=nobody,group=daemon",
            path.display()
        ),
    ]);
    r.assert_protocol(&["unknown"]);
    let m = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o660);
    assert_eq!((m.uid(), m.gid()), (65534, gid_of("daemon")));
    // owner= alone: the owner's primary group, as systemd's SocketUser=.
    let path2 = dir.join("t.sock");
    probe_report(&["-l", &format!("unix:{},owner=nobody", path2.display())]);
    let m = std::fs::symlink_metadata(&path2).unwrap();
    assert_eq!((m.uid(), m.gid()), (65534, 65534));
    // Neither mode nor owner: what bind(2) gives, 0777 minus the umask.
    let path3 = dir.join("u.sock");
    let out = run(Command::new("sh").args([
        "-c",
        &format!(
            "umask 027 && exec {} -l unix:{} -- true",
            sh_quote(&[gracewrap_path()]),
            path3.display()
        ),
    ]));
    out.expect_code(0);
    assert_eq!(
        std::fs::symlink_metadata(&path3).unwrap().mode() & 0o777,
        0o750
    );
}

#[test]
fn an_unprivileged_user_connects_only_when_the_mode_allows() {
    let dir = temp_dir("connect-perm");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (mode, allowed) in [("0666", true), ("0660", false), ("0600", false)] {
        let path = dir.join(format!("{mode}.sock"));
        let mut g = Running::spawn(&mut gracewrap([
            "-s",
            "-v",
            "-l",
            &format!("unix:{},mode={mode}", path.display()),
            "--",
            &p(),
            "serve",
        ]));
        g.stderr_line("generation 1 (pid");
        let (ok, why) = nobody_can_connect(&path);
        assert_eq!(ok, allowed, "mode {mode}: {why}");
        if !allowed {
            assert_eq!(why, "Permission denied", "mode {mode}");
        }
    }
}

#[test]
fn mkdir_creates_missing_parents_with_the_mode_and_leaves_existing_ones() {
    let dir = temp_dir("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let path = dir.join("a/b/s.sock");
    let r = probe_report(&["-l", &format!("unix:{},mkdir=0750", path.display())]);
    r.assert_protocol(&["unknown"]);
    for d in ["a", "a/b"] {
        assert_eq!(
            std::fs::metadata(dir.join(d)).unwrap().mode() & 0o7777,
            0o750,
            "{d}"
        );
    }
    assert_eq!(
        std::fs::metadata(&dir).unwrap().mode() & 0o7777,
        0o711,
        "existing parent untouched"
    );
    let path = dir.join("c/s.sock");
    probe_report(&["-l", &format!("unix:{},mkdir", path.display())]);
    assert_eq!(
        std::fs::metadata(dir.join("c")).unwrap().mode() & 0o7777,
        0o755,
        "default mode"
    );
    // A file where a directory should be: an error, and the file stays.
    std::fs::write(dir.join("file"), "keep").unwrap();
    let addr = format!("unix:{}/file/s.sock", dir.display());
    run(&mut gracewrap([
        "-l",
        &format!("{addr},mkdir"),
        "--",
        "true",
    ]))
    .expect_code(125)
    .expect_stderr(&format!(
        "gracewrap: cannot bind {addr}: {}/file exists and is not a directory",
        dir.display()
    ));
    assert_eq!(std::fs::read_to_string(dir.join("file")).unwrap(), "keep");
}

#[test]
fn unknown_owner_or_group_is_an_error_before_anything_is_bound() {
    let dir = temp_dir("owner-unknown");
    let addr = format!("unix:{}/s.sock", dir.display());
    run(&mut gracewrap([
        "-l",
        &format!("{addr},owner=no-such-user-gw"),
        "--",
        "true",
    ]))
    .expect_code(125)
    .expect_stderr(&format!(
        "gracewrap: cannot bind {addr}: owner=no-such-user-gw: no such user in /etc/passwd"
    ));
    run(&mut gracewrap([
        "-l",
        &format!("{addr},group=no-such-group-gw"),
        "--",
        "true",
    ]))
    .expect_code(125)
    .expect_stderr(&format!(
        "gracewrap: cannot bind {addr}: group=no-such-group-gw: no such group in /etc/group"
    ));
    assert!(!dir.join("s.sock").exists());
}

/// The classic: bind port 80 as root, then run the program as nobody,
/// still holding the listener.
#[test]
fn port_80_then_user_nobody() {
    let r = probe_report(&["--user", "nobody", "-l", "tcp:127.80.0.1:80"]);
    r.assert_protocol(&["unknown"]);
    assert_eq!(r.fd(3).inet().to_string(), "127.80.0.1:80");
    assert_eq!((r.uid, r.gid), (65534, 65534));
    assert_eq!(r.groups, [65534]);
    assert_eq!(r.capeff, 0, "no capability left");
    assert_eq!(r.env("USER"), Some("nobody"));
    assert_eq!(r.env("LOGNAME"), Some("nobody"));
    assert_eq!(r.env("HOME"), Some("/nonexistent"));
}

#[test]
fn user_group_forms() {
    let daemon = gid_of("daemon");
    let r = probe_report(&["--user", "nobody:daemon", "-l", &quiet_spec()]);
    assert_eq!(
        (r.uid, r.gid, r.groups.clone()),
        (65534, daemon, vec![daemon])
    );
    let r = probe_report(&["--user", "nobody", "--group", "daemon", "-l", &quiet_spec()]);
    assert_eq!((r.uid, r.gid), (65534, daemon));
    // A uid without a passwd entry: gid = uid, never gid 0 by accident.
    let r = probe_report(&["--user", "4242", "-l", &quiet_spec()]);
    assert_eq!((r.uid, r.gid, r.groups.clone()), (4242, 4242, vec![4242]));
    assert_eq!(r.env("HOME"), Some("/"));
    // --group alone keeps the uid.
    let r = probe_report(&["--group", "daemon", "-l", &quiet_spec()]);
    assert_eq!((r.uid, r.gid), (0, daemon));
    // --setenv wins over the user's HOME.
    let r = probe_report(&[
        "--user",
        "nobody",
        "-E",
        "HOME=/custom",
        "-l",
        &quiet_spec(),
    ]);
    assert_eq!(r.env("HOME"), Some("/custom"));
    assert_eq!(r.env("USER"), Some("nobody"));
}

#[test]
fn unknown_user_fails_before_binding() {
    let dir = temp_dir("user-unknown");
    let spec = format!("unix:{}/s.sock", dir.display());
    run(&mut gracewrap([
        "--user",
        "no-such-user-gw",
        "-l",
        &spec,
        "--",
        "true",
    ]))
    .expect_code(125)
    .expect_stderr("gracewrap: --user no-such-user-gw: no such user in /etc/passwd");
    run(&mut gracewrap([
        "--user",
        "nobody:no-such-group-gw",
        "-l",
        &spec,
        "--",
        "true",
    ]))
    .expect_code(125)
    .expect_stderr("gracewrap: --group no-such-group-gw: no such group in /etc/group");
    assert!(!dir.join("s.sock").exists(), "nothing was bound");
}

#[test]
fn chdir_after_dropping_privileges() {
    let r = probe_report(&["--chdir", "/tmp", "-l", &quiet_spec()]);
    assert_eq!(r.cwd, "/tmp");
    let dir = temp_dir("chdir-private");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let d = dir.to_str().unwrap();
    run(&mut gracewrap([
        "--user",
        "nobody",
        "--chdir",
        d,
        "-l",
        &quiet_spec(),
        "--",
        "true",
    ]))
    .expect_code(125)
    .expect_stderr(&format!(
        "gracewrap: cannot change directory to {d}: permission denied"
    ));
}

#[test]
fn resident_modes_drop_privileges_in_the_children_only() {
    let dir = temp_dir("sup-user");
    // nobody writes the report here.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let report = dir.join("report");
    let mut g = Running::spawn(
        gracewrap([
            "-s",
            "-v",
            "--user",
            "nobody",
            "--chdir",
            "/",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            &p(),
            "serve",
        ])
        .env("PROBE_REPORT", &report),
    );
    g.stderr_line("generation 1 (pid");
    wait_until("the generation to report", || report.exists());
    let r = Report::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!((r.uid, r.cwd.as_str()), (65534, "/"));
    r.assert_protocol(&["unknown"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", g.child.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().nth(1) == Some("0"),
        "the supervisor keeps root: {uid}"
    );

    // --accept --inetd: the per-connection program runs as nobody too.
    let mut g = Running::spawn(&mut gracewrap([
        "-a",
        "--inetd",
        "--user",
        "nobody",
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "id",
        "-u",
    ]));
    let addr = g.accepting_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    assert_eq!(out, "65534\n");
}

/// Every per-socket option, read back with getsockopt(2) by the probe.
#[test]
fn socket_options_are_set_and_read_back() {
    let r = probe_report(&[
        "-l",
        "tcp:127.0.0.1:0,freebind,rcvbuf=100000,sndbuf=64k,nodelay,keepalive,defer_accept=5,fastopen=16,bind_device=lo,mark=7",
        "-l",
        "tcp:127.0.0.1:0",
        "-l",
        "udp:192.0.2.1:0,freebind",
        "-l",
        &format!("{},rcvbuf=50000", quiet_spec()),
    ]);
    r.assert_protocol(&["unknown"; 4]);
    let a = r.fd(3);
    for (key, want) in [
        ("freebind", "1"),
        ("nodelay", "1"),
        ("keepalive", "1"),
        ("fastopen", "16"),
        ("mark", "7"),
        ("dev", "lo"),
    ] {
        assert_eq!(a.get(key), want, "{key}: {a:?}");
    }
    // The kernel doubles buffer sizes and rounds TCP_DEFER_ACCEPT up to
    // its retransmission schedule.
    assert_eq!(a.get("rcvbuf"), "200000");
    assert_eq!(a.get("sndbuf"), "131072");
    assert!(a.get("defer_accept").parse::<u32>().unwrap() >= 5, "{a:?}");
    let b = r.fd(4);
    for (key, want) in [
        ("freebind", "0"),
        ("nodelay", "0"),
        ("keepalive", "0"),
        ("fastopen", "0"),
        ("mark", "0"),
        ("dev", "-"),
        ("defer_accept", "0"),
    ] {
        assert_eq!(b.get(key), want, "{key} default: {b:?}");
    }
    // freebind: an address this host does not have.
    assert_eq!(r.fd(5).inet().ip().to_string(), "192.0.2.1");
    assert_eq!(r.fd(5).get("freebind"), "1");
    assert_eq!(r.fd(6).get("rcvbuf"), "100000");
}

#[test]
fn privileged_socket_options_say_what_they_need() {
    let out = run(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        gracewrap_path(),
        "-l",
        "tcp:127.0.0.1:0,mark=1",
        "--",
        "true",
    ]));
    out.expect_code(125);
    assert!(
        out.stderr
            .contains("permission denied (needs CAP_NET_ADMIN)"),
        "{out}"
    );
}
