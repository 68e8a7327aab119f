//! The consumers in examples/README.md, each run by the command the README
//! shows: the test reads the command from the README, so the two cannot
//! drift apart. A real HTTP request goes through each, and the answer has
//! to name the process gracewrap started.

use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use rustix::process::Signal;

use crate::supervise::{alive, kill};
use crate::util::*;

/// The `<!-- test: NAME -->` markers of examples/README.md, each the id of
/// one test below. A `sh` block in the README without one of these in
/// front of it fails [`every_readme_command_is_tested`].
const TESTED: &[&str] = &[
    "python-fromfd",
    "python-systemd",
    "gunicorn",
    "gunicorn-bind-fd",
    "gunicorn-supervised",
    "listenfd",
];

/// The address every README command uses, and the `curl` that follows it.
const README_ADDR: &str = "127.0.0.1:8000";
const README_CURL: &str = "$ curl http://127.0.0.1:8000/";
/// What the test listens on instead: a port the kernel picks, which
/// gracewrap prints.
const TEST_ADDR: &str = "127.0.0.1:0";

fn readme() -> String {
    repo_file("examples/README.md")
}

/// What examples/README.md holds, in order, prose left out.
#[derive(Debug, PartialEq)]
enum Item {
    /// `<!-- test: NAME -->`
    Marker(String),
    /// A fenced block: its info string and its lines.
    Block(String, Vec<String>),
}

fn items(text: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line
            .strip_prefix("<!-- test: ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            out.push(Item::Marker(name.to_string()));
        } else if let Some(info) = line.strip_prefix("```") {
            let body = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .map(str::to_string)
                .collect();
            out.push(Item::Block(info.to_string(), body));
        }
    }
    out
}

/// One README example: the command, and the answer its `curl` shows.
#[derive(Debug)]
struct Example {
    command: String,
    answer: String,
}

/// The example after `<!-- test: {name} -->`: a `sh` block with one
/// command, then a `console` block with the `curl` and its answer.
#[track_caller]
fn readme_example(name: &str) -> Example {
    assert!(TESTED.contains(&name), "{name} is not in TESTED");
    let items = items(&readme());
    let at = items
        .iter()
        .position(|i| *i == Item::Marker(name.to_string()))
        .unwrap_or_else(|| panic!("examples/README.md has no <!-- test: {name} --> marker"));
    let (Some(Item::Block(sh, command)), Some(Item::Block(console, output))) =
        (items.get(at + 1), items.get(at + 2))
    else {
        panic!("examples/README.md: {name}: expected a sh block, then a console block")
    };
    assert_eq!((sh.as_str(), console.as_str()), ("sh", "console"), "{name}");
    let [command] = command.as_slice() else {
        panic!("examples/README.md: {name}: the sh block must be one command: {command:?}")
    };
    let [curl, answer @ ..] = output.as_slice() else {
        panic!("examples/README.md: {name}: empty console block")
    };
    assert_eq!(curl, README_CURL, "examples/README.md: {name}");
    assert_eq!(
        command.matches(README_ADDR).count(),
        1,
        "examples/README.md: {name}: the command must listen on {README_ADDR}: {command}"
    );
    Example {
        command: command.clone(),
        answer: answer.iter().map(|l| format!("{l}\n")).collect(),
    }
}

/// The numbers in `answer` where `expected` has one of 4 digits or more
/// (a pid, different on every run); None unless everything else is equal.
fn pids_in(expected: &str, answer: &str) -> Option<Vec<u32>> {
    fn split(s: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let mut start = 0;
        for (i, c) in s.char_indices().skip(1) {
            let prev = s[..i].chars().next_back().unwrap();
            if prev.is_ascii_digit() != c.is_ascii_digit() {
                parts.push(&s[start..i]);
                start = i;
            }
        }
        parts.push(&s[start..]);
        parts
    }
    let (want, got) = (split(expected), split(answer));
    if want.len() != got.len() {
        return None;
    }
    let mut pids = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        let is_pid = w.len() >= 4 && w.bytes().all(|b| b.is_ascii_digit());
        if is_pid && g.bytes().all(|b| b.is_ascii_digit()) {
            pids.push(g.parse().ok()?);
        } else if w != g {
            return None;
        }
    }
    Some(pids)
}

/// Runs `example`'s command as a user would from the repository root,
/// with the gracewrap under test first in `PATH` and port 0 instead of
/// the README's 8000; returns it running and the address gracewrap
/// printed.
fn start(example: &Example) -> (Running, String) {
    let command = example.command.replace(README_ADDR, TEST_ADDR);
    let bin = Path::new(gracewrap_path()).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    // `exec`: the pid the test knows is the one gracewrap gets, and with
    // it the consumer's in exec mode.
    let mut g = Running::spawn(
        Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", path),
    );
    let addr = g.listening_addr();
    (g, addr)
}

/// Sends the README's request to `addr` and returns the pids in the
/// answer, which must otherwise be the README's answer. Without an answer,
/// fails with what the command printed.
#[track_caller]
fn ask(example: &Example, g: &mut Running, addr: &str) -> Vec<u32> {
    let body = try_http_get(addr).unwrap_or_else(|e| {
        g.kill_group();
        panic!(
            "{e}\n  command: {}\n  its stderr: {:#?}",
            example.command,
            g.rest_of_stderr()
        )
    });
    pids_in(&example.answer, &body).unwrap_or_else(|| {
        panic!(
            "the answer is not the one examples/README.md shows\n  readme: {:?}\n  got:    {body:?}",
            example.answer
        )
    })
}

/// SIGTERM to what the command started: it exits (cleanly, or killed by
/// that very signal) and nothing serves on `addr` any more.
#[track_caller]
fn stop(mut g: Running, addr: &str) {
    kill(g.child.id(), Signal::TERM);
    let status = g.wait();
    assert!(
        status.success() || status.signal() == Some(Signal::TERM.as_raw()),
        "{status}; stderr {:?}",
        g.stderr_seen
    );
    wait_until("the socket to close", || TcpStream::connect(addr).is_err());
}

/// Fails, naming .ci/deps, unless `cmd` runs and succeeds.
#[track_caller]
fn require(cmd: &mut Command, package: &str) {
    let ok = cmd.output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{package} is missing ({cmd:?} failed): run .ci/deps (apt-get install {package})"
    );
}

fn require_python() {
    require(Command::new("/usr/bin/python3").arg("-V"), "python3");
}

fn require_gunicorn() {
    require(Command::new("gunicorn").arg("--version"), "gunicorn");
}

/// Runs the example whose consumer answers with its own pid first, in
/// the process the command started (exec mode all the way).
fn check_exec_mode(name: &str) {
    let example = readme_example(name);
    let (mut g, addr) = start(&example);
    let pids = ask(&example, &mut g, &addr);
    assert_eq!(pids.first(), Some(&g.child.id()), "{pids:?}");
    stop(g, &addr);
}

#[test]
fn every_readme_command_is_tested() {
    let items = items(&readme());
    let mut markers = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Marker(name) => markers.push(name.as_str()),
            Item::Block(info, lines) if info == "sh" => assert!(
                matches!(i.checked_sub(1).map(|j| &items[j]), Some(Item::Marker(_))),
                "examples/README.md: a sh block without a <!-- test: NAME --> marker: {lines:?}"
            ),
            Item::Block(..) => {}
        }
    }
    markers.sort_unstable();
    let mut tested = TESTED.to_vec();
    tested.sort_unstable();
    assert_eq!(markers, tested, "the README's markers and TESTED differ");
}

#[test]
fn answers_match_the_readme_but_for_pids() {
    let want = "hello (master 4242, worker 4243, fd 3)\n";
    assert_eq!(
        pids_in(want, "hello (master 17, worker 123456, fd 3)\n"),
        Some(vec![17, 123456])
    );
    assert_eq!(pids_in(want, "hello (master 17, worker 18, fd 4)\n"), None);
    assert_eq!(pids_in(want, "hello (master 17, worker x, fd 3)\n"), None);
    assert_eq!(pids_in(want, "hello (master 17, worker 18, fd 3)"), None);
}

/// Plain Python, reading the LISTEN_* variables itself.
#[test]
fn python_fromfd_example() {
    require_python();
    check_exec_mode("python-fromfd");
}

/// libsystemd's sd_listen_fds_with_names(), through python3-systemd.
#[test]
fn python_systemd_example() {
    require(
        Command::new("/usr/bin/python3").args(["-c", "import systemd.daemon"]),
        "python3-systemd",
    );
    check_exec_mode("python-systemd");
}

/// gunicorn reads LISTEN_FDS itself: the master is the process gracewrap
/// became, the worker its child.
#[test]
fn gunicorn_example() {
    require_gunicorn();
    let example = readme_example("gunicorn");
    let (mut g, addr) = start(&example);
    let pids = ask(&example, &mut g, &addr);
    assert_eq!(pids[0], g.child.id(), "master {pids:?}");
    stop(g, &addr);
}

/// `--bind fd://3` under `--no-pid`: gunicorn leaves LISTEN_FDS alone.
#[test]
fn gunicorn_bind_fd_example() {
    require_gunicorn();
    let example = readme_example("gunicorn-bind-fd");
    assert!(example.command.contains("--no-pid ") && example.command.contains("--bind fd://3"));
    let (mut g, addr) = start(&example);
    let pids = ask(&example, &mut g, &addr);
    assert_eq!(pids[0], g.child.id(), "master {pids:?}");
    stop(g, &addr);
}

/// The pitfall the README explains: the same command without `--no-pid`
/// makes gunicorn take fd 3 twice, and it exits.
#[test]
fn gunicorn_bind_fd_without_no_pid_fails() {
    require_gunicorn();
    let example = readme_example("gunicorn-bind-fd");
    let example = Example {
        command: example.command.replace("--no-pid ", ""),
        ..example
    };
    let (mut g, _addr) = start(&example);
    let status = g.wait();
    let stderr = g.rest_of_stderr();
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l == "OSError: [Errno 9] Bad file descriptor"),
        "{stderr:?}"
    );
}

/// Under the supervisor the gunicorn master is gracewrap's child, and a
/// SIGHUP replaces it with a new master on the same socket.
#[test]
fn gunicorn_supervised_example() {
    require_gunicorn();
    let example = readme_example("gunicorn-supervised");
    let (mut g, addr) = start(&example);
    let supervisor = g.child.id();
    let first = ask(&example, &mut g, &addr)[0];
    assert!(
        children_of(supervisor).contains(&first),
        "master {first} is not gracewrap's child: {:?}",
        children_of(supervisor)
    );
    kill(supervisor, Signal::HUP);
    let mut second = first;
    wait_until("a new gunicorn master to answer", || {
        second = ask(&example, &mut g, &addr)[0];
        second != first
    });
    assert!(
        children_of(supervisor).contains(&second),
        "master {second} is not gracewrap's child: {:?}",
        children_of(supervisor)
    );
    wait_until("the old gunicorn master to exit", || !alive(first));
    stop(g, &addr);
}

/// `cargo run` execs the example, so the server is the process gracewrap
/// became and LISTEN_PID names it.
#[test]
fn listenfd_example() {
    // Build first, with the profile `cargo run` uses, so that the request
    // below does not wait for a compiler (the README's command would build
    // it just the same).
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "listenfd_server"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example listenfd_server");
    assert!(
        status.success(),
        "cargo build --example listenfd_server failed"
    );
    check_exec_mode("listenfd");
}

/// What the README says about listenfd and LISTEN_PID: it takes the
/// sockets with LISTEN_PID unset (`--no-pid`), and ignores them when
/// LISTEN_PID names another process (here the shell that forks it).
#[test]
fn listenfd_takes_sockets_without_listen_pid_but_not_for_another_pid() {
    let server = example("listenfd_server");
    let server = server.to_str().unwrap();
    let mut g = Running::spawn(&mut gracewrap([
        "--no-pid",
        "-l",
        "http=tcp:127.0.0.1:0",
        "--",
        server,
    ]));
    let addr = g.listening_addr();
    assert_eq!(
        http_get(&addr),
        format!(
            "hello from listenfd_server (pid {}, fd 3, socket \"http\")\n",
            g.child.id()
        )
    );

    let out = run(&mut gracewrap([
        "-l",
        "http=tcp:127.0.0.1:0",
        "--",
        "sh",
        "-c",
        &format!("{}; exit $?", sh_quote(&[server])),
    ]));
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("listenfd_server: no socket passed to this process"),
        "{out}"
    );
}
