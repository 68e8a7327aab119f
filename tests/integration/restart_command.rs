//! `gracewrap --restart --pid-file PATH`: asks the supervisor that wrote
//! PATH to restart, waits, and says how it went; safe against a stale or
//! hostile pid file.

use std::process::Command;

use crate::util::*;

/// Generation 1 serves fd 3 from an accept loop; a later generation does
/// what argv[2] says: `serve` the same, or `exit` with status 3.
const PROGRAM: &str = "
import os, socket, sys
flag, later = sys.argv[1], sys.argv[2]
first = not os.path.exists(flag)
open(flag, 'a').close()
if not first and later == 'exit':
    sys.exit(3)
s = socket.socket(fileno=3)
while True:
    s.accept()[0].close()
";

fn supervisor(later: &str) -> (Running, std::path::PathBuf) {
    let dir = temp_dir("restart-command");
    let pid_file = dir.join("gw.pid");
    let mut gw = Running::spawn(&mut gracewrap([
        "-s",
        "-v",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "/usr/bin/python3",
        "-c",
        PROGRAM,
        dir.join("started").to_str().unwrap(),
        later,
    ]));
    gw.stderr_line("generation 1 (pid");
    gw.stderr_line("is ready");
    (gw, pid_file)
}

fn restart(pid_file: &std::path::Path) -> Output {
    run(&mut gracewrap([
        "--restart",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]))
}

fn stop(gw: &mut Running) {
    let pid = rustix::process::Pid::from_raw(gw.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    gw.wait();
}

/// It waits for the new generation to be ready and prints its pid.
#[test]
fn the_restart_command_waits_and_prints_the_new_generations_pid() {
    let (mut gw, pid_file) = supervisor("serve");
    for _ in 0..3 {
        let out = restart(&pid_file);
        assert_eq!(out.code(), 0, "{out:?}");
        let pid: u32 = out.stdout.trim().parse().unwrap();
        assert!(
            children_of(gw.child.id()).contains(&pid),
            "{pid} is not a generation"
        );
        // By the time it returns, the generation serves: no restart is
        // in progress any more.
        let line = gw.stderr_line("it serves now");
        assert!(line.contains(&format!("(pid {pid}) is ready")), "{line}");
    }
    stop(&mut gw);
}

/// A restart that fails: exit 1, the reason, and the old generation
/// keeps serving.
#[test]
fn a_failed_restart_exits_1_with_the_reason() {
    let (mut gw, pid_file) = supervisor("exit");
    let out = restart(&pid_file);
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with("gracewrap: restart failed: generation 2 (pid ")
            && out.stderr.contains("exited with status 3")
            && out.stderr.contains("generation 1 (pid "),
        "{out:?}"
    );
    stop(&mut gw);
}

/// A pid file that names a process that is not a supervisor: 125, and
/// nothing is signalled. One whose name another process took first (any
/// local user can bind an abstract name): refused by the peer's pid.
#[test]
fn a_stale_or_hostile_pid_file_gets_no_restart_and_signals_nothing() {
    use std::os::linux::net::SocketAddrExt;
    let dir = temp_dir("restart-hostile");
    let pid_file = dir.join("gw.pid");
    let mut victim = Command::new("sleep").arg("100").spawn().unwrap();
    std::fs::write(&pid_file, format!("{}\n", victim.id())).unwrap();
    let out = restart(&pid_file);
    assert_eq!(out.code(), 125, "{out:?}");
    assert!(
        out.stderr.starts_with(&format!(
            "gracewrap: no gracewrap supervisor answers for pid {}",
            victim.id()
        )),
        "{out:?}"
    );
    // Someone squats the name for that pid.
    let name = format!("gracewrap-control/{}", victim.id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    let squatter = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let out = restart(&pid_file);
    assert_eq!(out.code(), 125, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "is held by pid {}; not restarting",
            std::process::id()
        )),
        "{out:?}"
    );
    drop(squatter);
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the victim was signalled"
    );
    let _ = victim.kill();
    let _ = victim.wait();
    // Not a regular file, or no pid in it.
    std::fs::write(dir.join("junk"), "hello\n").unwrap();
    let out = restart(&dir.join("junk"));
    assert_eq!(out.code(), 125, "{out:?}");
    std::os::unix::fs::symlink(&pid_file, dir.join("link")).unwrap();
    let out = restart(&dir.join("link"));
    assert_eq!(out.code(), 125, "{out:?}");
}

/// Another local user may not restart root's supervisor.
#[test]
fn another_user_is_refused() {
    let (mut gw, pid_file) = supervisor("serve");
    let out = run(Command::new("setpriv").args([
        "--reuid=65533",
        "--regid=65533",
        "--clear-groups",
        gracewrap_path(),
        "--restart",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]));
    assert_eq!(out.code(), 125, "{out:?}");
    assert!(
        out.stderr
            .contains("refused: uid 65533 may not restart this supervisor"),
        "{out:?}"
    );
    stop(&mut gw);
}
