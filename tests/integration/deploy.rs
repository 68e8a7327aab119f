//! The deployment examples, read from the files themselves so the docs
//! cannot drift: examples/Dockerfile and examples/systemd/.
//!
//! No Docker engine and no systemd as PID 1 run here, so they are run
//! without: an image's ENTRYPOINT and CMD as PID 1 of a new PID and network
//! namespace (`unshare --pid --fork --mount-proc --net`), as its USER; the
//! units through `systemd-analyze verify`, and their ExecStart= with a
//! NOTIFY_SOCKET of ours or behind systemd-socket-activate, the way systemd
//! would start them. The network namespaces let the files' own addresses
//! (`tcp::8080`) be used as they are, touching nothing outside.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::supervise::{alive, kill, manager_next_from, notify_manager, wait_for_child};
use crate::util::*;

/// `docker stop`'s grace period when nothing sets another one.
const DOCKER_STOP_GRACE: Duration = Duration::from_secs(10);

/// `10s`, `500ms`, `2m` or plain seconds, as gracewrap and systemd (the
/// subset the examples use) read them.
fn duration(text: &str) -> Duration {
    let (n, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("a duration: {text:?}"));
    match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(60 * n),
        _ => panic!("a duration: {text:?}"),
    }
}

/// The value after `option` in `argv`.
fn option<'a>(argv: &'a [String], option: &str) -> Option<&'a str> {
    let i = argv.iter().position(|a| a == option)?;
    Some(argv.get(i + 1)?.as_str())
}

/// Every `--listen` value in `argv`, in order.
fn listens(argv: &[String]) -> Vec<&str> {
    argv.windows(2)
        .filter(|w| w[0] == "--listen" || w[0] == "-l")
        .map(|w| w[1].as_str())
        .collect()
}

/// The port at the end of a SPEC or address (`http=tcp::8080` -> 8080).
fn port(spec: &str) -> &str {
    spec.rsplit(':').next().unwrap()
}

// ---------------------------------------------------------------------
// Namespaces

/// Runs `f` on a thread inside the network namespace of `pid`.
fn in_net_ns<T: Send + 'static>(pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open the netns");
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        f()
    })
    .join()
    .unwrap()
}

/// Brings up the loopback interface of the new network namespace of
/// `pid` (`ip` inherits the namespace of the thread that starts it), once
/// `pid` is in it: a just-spawned `unshare` may not have unshared yet.
fn lo_up(pid: u32) {
    use std::os::unix::fs::MetadataExt;
    let netns = |p: &str| std::fs::metadata(format!("/proc/{p}/ns/net")).map(|m| m.ino());
    wait_until("a network namespace of its own", || {
        netns(&pid.to_string()).is_ok_and(|ns| ns != netns("self").unwrap())
    });
    let status = in_net_ns(pid, || {
        Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
    });
    let status = status.expect("run ip (iproute2): run .ci/deps");
    assert!(status.success(), "ip link set lo up: {status}");
}

/// The body of an HTTP GET to `addr` inside the network namespace of
/// `pid`, once something answers there.
#[track_caller]
fn get_in(pid: u32, addr: &str) -> String {
    let mut body = Err(String::new());
    let answered = wait_until_ok(DEADLINE, || {
        let addr = addr.to_string();
        body = in_net_ns(pid, move || try_http_get(&addr));
        body.is_ok()
    });
    assert!(answered, "no answer on {addr}: {body:?}");
    body.unwrap()
}

/// What the demo says about itself: `hello from the gracewrap demo (pid
/// P, fd N, socket "NAME")` as (P, N, NAME).
#[track_caller]
fn demo_says(body: &str) -> (u32, i32, String) {
    let inner = body
        .strip_prefix("hello from the gracewrap demo (pid ")
        .and_then(|r| r.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("not the demo: {body:?}"));
    let parts: Vec<&str> = inner.split(", ").collect();
    let pid = parts[0].parse().unwrap();
    let fd = parts[1].strip_prefix("fd ").unwrap().parse().unwrap();
    let name = parts[2]
        .strip_prefix("socket \"")
        .and_then(|n| n.strip_suffix('"'))
        .unwrap();
    (pid, fd, name.to_string())
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

/// Whether `sig` is in the signal set `field` (SigPnd, ShdPnd, SigCgt).
fn in_sigset(pid: u32, field: &str, sig: Signal) -> bool {
    let set = u64::from_str_radix(&status_field(pid, field), 16).unwrap();
    set & (1 << (sig.as_raw() - 1)) != 0
}

/// The pid `pid` has in the innermost PID namespace it is in.
fn inner_pid(pid: u32) -> u32 {
    let nspid = status_field(pid, "NSpid");
    nspid.split_whitespace().last().unwrap().parse().unwrap()
}

/// `setpriv` arguments that run the rest as `uid:gid` with no other group,
/// as Docker's `USER uid:gid` and systemd's `DynamicUser=` do.
fn as_user(uid_gid: &str) -> Vec<String> {
    let (uid, gid) = uid_gid.split_once(':').unwrap_or((uid_gid, uid_gid));
    vec![
        "setpriv".into(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
    ]
}

/// `docker run` without Docker: `argv` as PID 1 of a new PID namespace
/// (with its own /proc) and network namespace (loopback up), as `user`.
/// Returns gracewrap's run and the pid of its PID 1 as seen from here.
fn container(argv: &[OsString], user: Option<&str>, env: &[(&str, &Path)]) -> (Running, u32) {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--net"]);
    cmd.args(user.map(as_user).unwrap_or_default());
    cmd.args(argv);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let g = Running::spawn(&mut cmd);
    let init = wait_for_child(g.child.id());
    lo_up(init);
    (g, init)
}

// ---------------------------------------------------------------------
// examples/Dockerfile

/// The uid of the image's USER.
fn as_user_uid(image: &Image) -> &str {
    let user = image.user.as_deref().unwrap();
    user.split(':').next().unwrap()
}

/// One image, as `docker build --target STAGE` would make it.
#[derive(Debug, Clone, Default)]
struct Image {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    user: Option<String>,
    expose: Vec<String>,
    /// `COPY --from=binaries /out/NAME DEST`: DEST -> /out/NAME.
    files: BTreeMap<String, String>,
}

/// The stages that only provide the binaries, at /out: `build` compiles
/// them, `local` takes them from the build context, and `binaries` is
/// the one of the two that `ARG BINARIES` names.
const BINARY_STAGES: [&str; 3] = ["build", "local", "binaries"];

#[derive(Debug, Default)]
struct Dockerfile {
    /// `ARG BINARIES=...` before the first FROM, and the base of the
    /// `binaries` stage.
    binaries_default: String,
    binaries_from: String,
    /// WORKDIR and the RUN lines of the build stage.
    workdir: String,
    run: String,
    /// The build stage's `cp SRC /out/NAME`: /out/NAME -> SRC.
    outs: BTreeMap<String, String>,
    /// The local stage's `COPY NAME... /out/`: the /out/NAME it makes.
    local_outs: Vec<String>,
    /// The runtime stages, in order.
    stages: Vec<(String, Image)>,
}

/// A JSON array of strings (an exec-form ENTRYPOINT or CMD), strictly:
/// Docker runs anything else through `/bin/sh -c`, and a FROM scratch
/// image has no shell.
fn json_strings(text: &str) -> Result<Vec<String>, String> {
    let err = |why: &str| Err(format!("not a JSON array of strings ({why}): {text}"));
    let mut chars = text.trim().chars().peekable();
    let mut out = Vec::new();
    if chars.next() != Some('[') {
        return err("no [");
    }
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            Some(']') if out.is_empty() => break,
            Some('"') => {}
            _ => return err("a string expected"),
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some(c @ ('"' | '\\' | '/')) => s.push(c),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    _ => return err("an escape this parser does not take"),
                },
                Some(c) if c >= ' ' => s.push(c),
                _ => return err("unterminated string"),
            }
        }
        out.push(s);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            Some(',') => continue,
            Some(']') => break,
            _ => return err(", or ] expected"),
        }
    }
    if chars.any(|c| !c.is_whitespace()) {
        return err("text after ]");
    }
    Ok(out)
}

impl Dockerfile {
    fn read() -> Dockerfile {
        let text = repo_file("examples/Dockerfile");
        // Logical lines: comments dropped, `\` continuations joined.
        let mut lines = Vec::new();
        let mut pending = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => pending.push_str(part),
                None => {
                    pending.push_str(line);
                    lines.push(std::mem::take(&mut pending));
                }
            }
        }
        assert!(pending.is_empty(), "a continuation at the end of the file");
        let mut d = Dockerfile::default();
        let mut current = String::new();
        for line in lines {
            let (instr, rest) = line.split_once(char::is_whitespace).unwrap();
            let rest = rest.trim();
            let instr = instr.to_ascii_uppercase();
            if instr == "ARG" && current.is_empty() {
                let value = rest.strip_prefix("BINARIES=");
                d.binaries_default = value.unwrap_or_else(|| panic!("{line}")).into();
                continue;
            }
            if instr == "FROM" {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let [base, as_, name] = words[..] else {
                    panic!("FROM without AS: {line}")
                };
                assert!(as_.eq_ignore_ascii_case("as"), "{line}");
                current = name.to_string();
                if name == "binaries" {
                    d.binaries_from = base.to_string();
                }
                if !BINARY_STAGES.contains(&name) {
                    let image = d
                        .stages
                        .iter()
                        .find(|(n, _)| n == base)
                        .map(|(_, i)| i.clone())
                        .unwrap_or_default();
                    d.stages.push((name.to_string(), image));
                }
                continue;
            }
            if current == "build" {
                match instr.as_str() {
                    "WORKDIR" => d.workdir = rest.to_string(),
                    "RUN" => {
                        d.run.push_str(rest);
                        for command in rest.split("&&") {
                            let words: Vec<&str> = command.split_whitespace().collect();
                            if let ["cp", src, dest] = words[..] {
                                d.outs.insert(dest.to_string(), src.to_string());
                            }
                        }
                    }
                    "COPY" => {}
                    _ => panic!("unexpected in the build stage: {line}"),
                }
                continue;
            }
            if current == "local" {
                let words: Vec<&str> = rest.split_whitespace().collect();
                match (instr.as_str(), words.split_last()) {
                    ("COPY", Some((&"/out/", names))) => d
                        .local_outs
                        .extend(names.iter().map(|n| format!("/out/{n}"))),
                    _ => panic!("unexpected in the local stage: {line}"),
                }
                continue;
            }
            assert_ne!(
                current, "binaries",
                "the binaries stage is only a FROM: {line}"
            );
            let image = &mut d.stages.last_mut().expect("a stage").1;
            let json = |what: &str| json_strings(rest).unwrap_or_else(|e| panic!("{what}: {e}"));
            match instr.as_str() {
                "COPY" => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    let ["--from=binaries", src, dest] = words[..] else {
                        panic!("COPY other than one file from the binaries stage: {line}")
                    };
                    image.files.insert(dest.to_string(), src.to_string());
                }
                "USER" => image.user = Some(rest.to_string()),
                "EXPOSE" => image.expose.push(rest.to_string()),
                // As Docker does: an ENTRYPOINT clears the inherited CMD.
                "ENTRYPOINT" => (image.entrypoint, image.cmd) = (Some(json("ENTRYPOINT")), None),
                "CMD" => image.cmd = Some(json("CMD")),
                _ => panic!("unexpected in a runtime stage: {line}"),
            }
        }
        d
    }

    fn image(&self, stage: &str) -> &Image {
        &self
            .stages
            .iter()
            .find(|(n, _)| n == stage)
            .unwrap_or_else(|| panic!("no stage {stage} in examples/Dockerfile"))
            .1
    }

    /// The build's output directory in the build stage, from WORKDIR.
    fn release_dir(&self) -> String {
        let words: Vec<&str> = self.run.split_whitespace().collect();
        let target = words
            .windows(2)
            .find(|w| w[0] == "--target")
            .map(|w| w[1])
            .expect("cargo build --target");
        format!("target/{target}/release/")
    }

    /// What cargo built, relative to its release directory, for a file
    /// the image COPYs from /out: `gracewrap` or `examples/NAME`.
    fn built<'a>(&'a self, out: &str) -> &'a str {
        let src = self
            .outs
            .get(out)
            .unwrap_or_else(|| panic!("{out}: the build stage puts nothing there"));
        src.strip_prefix(&self.release_dir())
            .unwrap_or_else(|| panic!("cp {src}: not in {}", self.release_dir()))
    }

    /// The binary cargo built here for a file the image COPYs to `dest`.
    fn local(&self, image: &Image, dest: &str) -> PathBuf {
        let src = &image.files[dest];
        let built = self.built(src);
        match built.strip_prefix("examples/") {
            Some(name) => example(name),
            None => {
                assert_eq!(built, "gracewrap", "COPY {src}");
                gracewrap_path().into()
            }
        }
    }

    /// `docker run IMAGE [CMD...]`'s argv with the image's files mapped to
    /// the binaries cargo built.
    fn argv(&self, stage: &str, cmd: Option<Vec<String>>) -> Vec<OsString> {
        let image = self.image(stage);
        let entrypoint = image.entrypoint.clone().expect("an ENTRYPOINT");
        let cmd = cmd.or_else(|| image.cmd.clone()).expect("a CMD");
        entrypoint
            .into_iter()
            .chain(cmd)
            .map(|a| match image.files.contains_key(&a) {
                true => self.local(image, &a).into_os_string(),
                false => a.into(),
            })
            .collect()
    }
}

/// Both runtime stages are what the docs say, in the exec form (which a
/// FROM scratch image needs: Docker runs anything else through /bin/sh),
/// and run only what the build stage built and the image COPYs.
#[test]
fn dockerfile_stages_are_exec_form_and_run_what_the_build_stage_built() {
    let d = Dockerfile::read();
    let names: Vec<&str> = d.stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["exec", "supervise"],
        "supervise is the last stage, the default of `docker build`"
    );
    assert!(
        d.run.contains("target-feature=+crt-static"),
        "a static build, for FROM scratch: {}",
        d.run
    );
    assert_eq!(d.workdir, "/src");
    // The one-command build by default; BINARIES=local takes the same
    // files from the context.
    assert_eq!(d.binaries_default, "build");
    assert_eq!(d.binaries_from, "${BINARIES}");
    let outs: Vec<&String> = d.outs.keys().collect();
    let mut local: Vec<&String> = d.local_outs.iter().collect();
    local.sort();
    assert_eq!(
        local, outs,
        "the local stage copies what the build stage makes"
    );
    for (stage, image) in &d.stages {
        let entrypoint = image.entrypoint.as_ref().expect("an ENTRYPOINT");
        let cmd = image.cmd.as_ref().unwrap_or_else(|| {
            panic!("{stage}: no CMD (an ENTRYPOINT clears the one the stage inherited)")
        });
        // Everything it runs is COPY'd in, and built by the build stage.
        for path in [&entrypoint[0], &cmd[0]] {
            assert!(image.files.contains_key(path), "{stage}: {path} not COPY'd");
        }
        for src in image.files.values() {
            let built = d.built(src);
            let flag = match built.strip_prefix("examples/") {
                Some(name) => format!("--example {name}"),
                None => format!("--bin {built}"),
            };
            assert!(d.run.contains(&flag), "{stage}: COPY {src}, but no {flag}");
        }
        assert!(
            d.local(image, &entrypoint[0]).ends_with("gracewrap"),
            "{stage}: gracewrap is the ENTRYPOINT"
        );
        assert_eq!(entrypoint.last().map(String::as_str), Some("--"), "{stage}");
        assert_eq!(image.expose, ["8080"], "{stage}");
        assert_eq!(
            listens(entrypoint)
                .iter()
                .map(|l| port(l))
                .collect::<Vec<_>>(),
            ["8080"],
            "{stage}: the --listen port is the EXPOSEd one"
        );
        let user = image.user.as_deref().expect("a USER");
        assert!(
            user.split(':').all(|id| id.parse::<u32>().is_ok()),
            "{stage}: USER {user}: numeric, as FROM scratch has no /etc/passwd"
        );
        let supervised = entrypoint.iter().any(|a| a == "--supervise");
        assert_eq!(supervised, stage == "supervise", "{stage}: {entrypoint:?}");
        if supervised {
            // The generations, then the leftovers: two stop timeouts.
            let stop = duration(option(entrypoint, "--stop-timeout").unwrap_or("10s"));
            assert!(
                2 * stop < DOCKER_STOP_GRACE,
                "{stage}: 2 x --stop-timeout must end before docker stop's SIGKILL"
            );
        }
    }
}

/// The exec stage as PID 1: the demo itself is PID 1 and gets the socket
/// at fd 3. It has a SIGTERM handler (the kernel delivers to PID 1 only
/// the signals it handles), so `docker stop` ends it at once: it drains
/// and exits 0, long before Docker's SIGKILL.
#[test]
fn docker_exec_stage_the_demo_is_pid_1_and_docker_stop_ends_it_at_once() {
    let d = Dockerfile::read();
    let image = d.image("exec");
    let (mut g, init) = container(&d.argv("exec", None), image.user.as_deref(), &[]);
    let addr = format!("127.0.0.1:{}", image.expose[0]);
    assert_eq!(demo_says(&get_in(init, &addr)), (1, 3, "http".into()));
    assert_eq!(inner_pid(init), 1);
    let uid = status_field(init, "Uid");
    assert!(
        uid.starts_with(&format!("{}\t", as_user_uid(image))),
        "{uid}"
    );
    assert!(
        in_sigset(init, "SigCgt", Signal::TERM),
        "the demo handles SIGTERM"
    );
    let stopped = Instant::now();
    kill(init, Signal::TERM);
    assert_eq!(g.wait().code(), Some(0), "{:?}", g.stderr_seen);
    assert!(
        stopped.elapsed() < DOCKER_STOP_GRACE / 5,
        "docker stop took {:?}",
        stopped.elapsed()
    );
}

/// `docker run IMAGE /probe serve` under the exec stage, the probe with
/// no SIGTERM handler (`PROBE_DEFAULT_TERM`), as a server not written to
/// be PID 1: SIGTERM from outside or inside the namespace does not stop
/// it (the kernel drops it), nor does SIGKILL from inside; only SIGKILL
/// from outside (Docker's, after its grace period) ends it.
#[test]
fn docker_exec_stage_a_pid_1_without_a_sigterm_handler_is_not_stopped_by_it() {
    let d = Dockerfile::read();
    let image = d.image("exec");
    let cmd = vec![probe().display().to_string(), "serve".into()];
    let (mut g, init) = container(
        &d.argv("exec", Some(cmd)),
        image.user.as_deref(),
        &[("PROBE_DEFAULT_TERM", Path::new("1"))],
    );
    let addr = format!("127.0.0.1:{}", image.expose[0]);
    // `pid P fd N`: the probe's answer.
    let probe_pid = || -> u32 {
        let body = get_in(init, &addr);
        let f: Vec<&str> = body.split_whitespace().collect();
        assert_eq!((f[0], f[2], f[3]), ("pid", "fd", "3"), "{body:?}");
        f[1].parse().unwrap()
    };
    assert_eq!(probe_pid(), 1);
    assert!(
        !in_sigset(init, "SigCgt", Signal::TERM) && !in_sigset(init, "SigIgn", Signal::TERM),
        "SIGTERM at its default action"
    );

    let still_serving = |after: &str| {
        // The kernel drops the signal in kill(2), unless the main thread
        // has it blocked just then (observed: a main thread in
        // pthread_create, which blocks every signal for a moment); then it
        // stays pending until a thread takes it and discards it. Either
        // way, once nothing is pending, a fatal signal would have ended
        // the process: an answer after that means it was not fatal.
        wait_until(&format!("no SIGTERM pending after {after}"), || {
            !in_sigset(init, "ShdPnd", Signal::TERM) && !in_sigset(init, "SigPnd", Signal::TERM)
        });
        assert_eq!(probe_pid(), 1, "after {after}");
        assert!(alive(init), "after {after}");
    };
    kill(init, Signal::TERM);
    still_serving("SIGTERM from outside");
    for sig in ["-TERM", "-KILL"] {
        let out = run(Command::new("nsenter").args([
            "--target",
            &init.to_string(),
            "--pid",
            "--",
            "/bin/kill",
            sig,
            "1",
        ]));
        out.expect_code(0); // sent, and the kernel dropped it
        still_serving(&format!("kill {sig} 1 inside the namespace"));
    }
    kill(init, Signal::KILL);
    g.wait();
    assert!(!alive(init), "SIGKILL from outside ends PID 1");
}

/// The supervise stage as PID 1: gracewrap is PID 1 and the demo pid 2;
/// SIGHUP from outside (`docker kill -s HUP`) brings a new demo on the
/// same socket; SIGTERM (`docker stop`) ends it with the demo's status,
/// 0 as the demo drains on the SIGTERM gracewrap passes on.
#[test]
fn docker_supervise_stage_gracewrap_is_pid_1_restarts_on_hup_exits_with_the_demos_status() {
    let d = Dockerfile::read();
    let image = d.image("supervise");
    let (mut g, init) = container(&d.argv("supervise", None), image.user.as_deref(), &[]);
    let addr = format!("127.0.0.1:{}", image.expose[0]);
    assert_eq!(demo_says(&get_in(init, &addr)), (2, 3, "http".into()));
    assert_eq!(inner_pid(init), 1);
    assert_eq!(status_field(init, "Name"), "gracewrap");
    let first = children_of(init);
    assert_eq!(first.len(), 1, "one demo, gracewrap's only child");
    assert_eq!(inner_pid(first[0]), 2);

    kill(init, Signal::HUP);
    wait_until("a new demo to answer", || {
        demo_says(&get_in(init, &addr)).0 != 2
    });
    wait_until("the first demo to be gone", || !alive(first[0]));

    kill(init, Signal::TERM);
    assert_eq!(g.wait().code(), Some(0), "{:?}", g.stderr_seen);
}

/// `docker run IMAGE /probe serve` (the CMD replaced) under each stage:
/// LISTEN_PID names the program in its own namespace, 1 in exec mode, 2
/// (then the new generation's pid) under --supervise. A program with a
/// SIGTERM handler does get SIGTERM as PID 1.
#[test]
fn docker_run_with_another_cmd_listen_pid_is_the_programs_own() {
    let d = Dockerfile::read();
    for stage in ["exec", "supervise"] {
        let image = d.image(stage);
        let dir = temp_dir(&format!("docker-{stage}"));
        // USER nobody writes the report.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let report = dir.join("report");
        let cmd = vec![probe().display().to_string(), "serve".into()];
        let (mut g, init) = container(
            &d.argv(stage, Some(cmd)),
            image.user.as_deref(),
            &[("PROBE_REPORT", &report)],
        );
        let read = || Report::parse(&std::fs::read_to_string(&report).ok()?);
        let mut r = Report::default();
        wait_until("the probe's report", || {
            read().is_some_and(|x| {
                r = x;
                true
            })
        });
        r.assert_protocol(&["http"]);
        assert_eq!(r.fd(3).get("addr").split(' ').next(), Some("[::]:8080"));
        assert_eq!(r.uid.to_string(), as_user_uid(image));
        if stage == "exec" {
            assert_eq!((r.pid, r.ppid), (1, 0), "the program is PID 1");
            wait_until("the probe's SIGTERM handler", || {
                in_sigset(init, "SigCgt", Signal::TERM)
            });
            kill(init, Signal::TERM);
            assert_eq!(g.wait().code(), Some(0), "it drained and exited 0");
            continue;
        }
        assert_eq!((r.pid, r.ppid), (2, 1), "the program is gracewrap's child");
        kill(init, Signal::HUP);
        wait_until("the new generation's report", || {
            read().is_some_and(|x| {
                r = x;
                r.pid != 2
            })
        });
        r.assert_protocol(&["http"]);
        assert_eq!(r.ppid, 1);
        kill(init, Signal::TERM);
        assert_eq!(g.wait().code(), Some(0), "the probe drains on SIGTERM");
    }
}

// ---------------------------------------------------------------------
// examples/systemd

const UNITS: [&str; 3] = [
    "gracewrap-demo.service",
    "gracewrap-demo-activated.socket",
    "gracewrap-demo-activated.service",
];

/// Where the units expect the binaries, and the ones cargo built.
fn installed(path: &str) -> Option<PathBuf> {
    match path {
        "/usr/local/bin/gracewrap" => Some(gracewrap_path().into()),
        "/usr/local/bin/gracewrap-demo" => Some(example("demo")),
        _ => None,
    }
}

/// A unit file's settings: (section, key, value) in order, continuation
/// lines joined as systemd joins them.
struct Unit {
    name: &'static str,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    fn read(name: &'static str) -> Unit {
        let text = repo_file(&format!("examples/systemd/{name}"));
        let mut entries = Vec::new();
        let (mut section, mut pending) = (String::new(), String::new());
        for line in text.lines() {
            let line = line.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
                continue;
            }
            if let Some(part) = line.strip_suffix('\\') {
                pending.push_str(part);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let line = std::mem::take(&mut pending);
            if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = s.to_string();
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}: {line}"));
            entries.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
        Unit { name, entries }
    }

    /// The one value of `key` in `section`.
    #[track_caller]
    fn get(&self, section: &str, key: &str) -> &str {
        let values: Vec<&str> = self
            .entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect();
        match values[..] {
            [v] => v,
            _ => panic!("{}: [{section}] {key}= {values:?}", self.name),
        }
    }

    /// A command line of [Service] (ExecStart=, ExecReload=), split as
    /// systemd splits it, `$MAINPID` replaced by `mainpid`. Only the plain
    /// form is taken (no quotes, specifiers or prefixes), so that the
    /// split is systemd's.
    fn command(&self, key: &str, mainpid: Option<u32>) -> Vec<String> {
        let line = self.get("Service", key);
        assert!(
            !line.contains(['"', '\'', '%']) && !line.starts_with(['-', '@', '+', '!', ':']),
            "{}: {key}= beyond what this test parses: {line}",
            self.name
        );
        line.split_whitespace()
            .map(|w| match (w, mainpid) {
                ("$MAINPID", Some(pid)) => pid.to_string(),
                _ => {
                    assert!(!w.contains('$'), "{}: {key}=: {w}", self.name);
                    w.to_string()
                }
            })
            .collect()
    }

    /// ExecStart= as systemd would run it here: the installed paths mapped
    /// to cargo's binaries, behind `setpriv` to uid 65534 for DynamicUser=
    /// (a uid of nobody's, as systemd picks one of its own).
    fn exec_start(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        if self.get("Service", "DynamicUser") == "yes" {
            argv.extend(as_user("65534").into_iter().map(OsString::from));
        }
        for a in self.command("ExecStart", None) {
            argv.push(installed(&a).map_or(a.into(), PathBuf::into_os_string));
        }
        argv
    }
}

fn systemd_analyze() -> &'static str {
    let path = "/usr/bin/systemd-analyze";
    assert!(
        Path::new(path).exists(),
        "{path} is needed: run .ci/deps (it installs the systemd package)"
    );
    path
}

/// `systemd-analyze verify` on `units` in `dir`; its output (empty for
/// units it has nothing to say about).
fn verify(dir: &Path, units: &[&str]) -> Output {
    run(Command::new(systemd_analyze())
        .arg("verify")
        .args(units.iter().map(|u| dir.join(u))))
}

/// systemd-analyze verify accepts the units without a word: it exits 0
/// and prints nothing. (It exits 0 after an unknown key or a bad value
/// too, only printing a warning: the broken copy shows the check sees
/// those.) The binaries must exist for it, so the units are checked in a
/// copy with /usr/local/bin/ pointing at cargo's.
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = temp_dir("units");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["gracewrap", "gracewrap-demo"] {
        let path = format!("/usr/local/bin/{name}");
        std::os::unix::fs::symlink(installed(&path).unwrap(), bin.join(name)).unwrap();
    }
    let prefix = format!("{}/", bin.display());
    for name in UNITS {
        let text = repo_file(&format!("examples/systemd/{name}"));
        std::fs::write(dir.join(name), text.replace("/usr/local/bin/", &prefix)).unwrap();
    }
    let out = verify(&dir, &UNITS);
    assert!(
        out.code() == 0 && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {UNITS:?}\n{out}"
    );

    // The check can fail: a misspelt key in a copy.
    let good = std::fs::read_to_string(dir.join(UNITS[0])).unwrap();
    assert!(good.contains("\nKillMode="));
    std::fs::write(
        dir.join("broken.service"),
        good.replace("\nKillMode=", "\nKilMode="),
    )
    .unwrap();
    let out = verify(&dir, &["broken.service"]);
    assert!(out.stderr.contains("Unknown key 'KilMode'"), "{out}");

    // The supervised service's stop: gracewrap's two stop timeouts (the
    // generations, then leftovers) end before systemd's.
    let unit = Unit::read("gracewrap-demo.service");
    let argv = unit.command("ExecStart", None);
    let stop = duration(option(&argv, "--stop-timeout").unwrap_or("10s"));
    let systemd_stop = duration(unit.get("Service", "TimeoutStopSec"));
    assert!(
        2 * stop < systemd_stop,
        "{argv:?}: TimeoutStopSec={systemd_stop:?}"
    );
}

/// gracewrap-demo.service run as systemd would (a NOTIFY_SOCKET, a clean
/// environment): READY=1 with MAINPID, from the main pid (NotifyAccess=main
/// accepts it); its ExecReload= gives RELOADING=1, READY=1 and a new demo;
/// the SIGTERM of KillMode=mixed gives STOPPING=1 and exit status 0 (the
/// demo drains); SuccessExitStatus= also takes 143, the status of a
/// server that dies of SIGTERM.
#[test]
fn systemd_notify_service_reports_to_systemd_from_its_main_pid() {
    let unit = Unit::read("gracewrap-demo.service");
    assert_eq!(unit.get("Service", "Type"), "notify");
    assert_eq!(unit.get("Service", "NotifyAccess"), "main");
    assert_eq!(
        unit.get("Service", "KillMode"),
        "mixed",
        "SIGTERM to the main process only, as below"
    );
    let argv = unit.exec_start();
    let dir = temp_dir("notify-service");
    let (path, manager) = notify_manager(&dir);
    // systemd's notify socket: anyone may send (DynamicUser= does).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut g = Running::spawn(
        Command::new("unshare")
            .arg("--net")
            .args(&argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("NOTIFY_SOCKET", &path),
    );
    let main = g.child.id(); // unshare execs: the service's main process
    lo_up(main);
    let next = || {
        let (pid, m) = manager_next_from(&manager);
        assert_eq!(pid, main, "{m:?} not from the main process");
        m
    };
    let m = next();
    assert!(m.starts_with("READY=1\n"), "{m}");
    assert!(m.contains(&format!("\nMAINPID={main}\n")), "{m}");

    let listen = listens(&unit.command("ExecStart", None))[0].to_string();
    let addr = format!("127.0.0.1:{}", port(&listen));
    let (first, fd, name) = demo_says(&get_in(main, &addr));
    assert_eq!((fd, name.as_str()), (3, "http"));

    let reload = unit.command("ExecReload", Some(main));
    run(Command::new(&reload[0]).args(&reload[1..])).expect_code(0);
    let m = next();
    assert!(m.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{m}");
    let m = next();
    assert!(m.starts_with("READY=1\n"), "{m}");
    // The old demo, stopped as READY=1 goes up, may still take a request
    // or two before its SIGTERM handler runs; it answers them (it drains).
    wait_until("a new demo to answer after the reload", || {
        demo_says(&get_in(main, &addr)).0 != first
    });

    kill(main, Signal::TERM);
    assert_eq!(next(), "STOPPING=1");
    assert_eq!(g.wait().code(), Some(0), "{:?}", g.stderr_seen);
    let success = unit.get("Service", "SuccessExitStatus");
    assert!(
        success.split_whitespace().any(|s| s == "143"),
        "SuccessExitStatus={success}"
    );
}

/// gracewrap-demo-activated.service behind systemd-socket-activate with
/// the .socket's ListenStream= and FileDescriptorName=: the demo gets the
/// inherited socket at fd 3 with its name, reused for the `--listen` that
/// names it (binding its port again would fail: the port is taken), and
/// gracewrap's own metrics socket at fd 4; its READY=1 comes from the main
/// process, as Type=notify needs.
#[test]
fn systemd_socket_unit_socket_at_fd_3_and_gracewraps_own_at_fd_4() {
    let socket = Unit::read("gracewrap-demo-activated.socket");
    let listen = socket.get("Socket", "ListenStream");
    let name = socket.get("Socket", "FileDescriptorName");
    let service = Unit::read("gracewrap-demo-activated.service");
    assert_eq!(service.get("Service", "Type"), "notify");
    let specs = listens(&service.command("ExecStart", None))
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    assert_eq!(specs.len(), 2, "{specs:?}");
    assert!(
        specs[0].starts_with(&format!("{name}=")) && port(&specs[0]) == port(listen),
        "the first --listen names the inherited socket (ListenStream={listen}), \
         and binds its port when started by hand: {specs:?}"
    );
    let (own_name, own_addr) = specs[1].split_once("=tcp:").unwrap();

    let ssa = "/usr/bin/systemd-socket-activate";
    assert!(Path::new(ssa).exists(), "{ssa} is needed: run .ci/deps");
    let dir = temp_dir("socket-unit");
    let (path, manager) = notify_manager(&dir);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut g = Running::spawn(
        Command::new("unshare")
            .args(["--net", ssa, "-l", listen])
            .arg(format!("--fdname={name}"))
            .arg(format!("-ENOTIFY_SOCKET={}", path.display()))
            .args(service.exec_start()),
    );
    let main = g.child.id(); // unshare and systemd-socket-activate exec
    lo_up(main);
    // systemd 252's socket-activate execs at the first connection, as
    // systemd starts the service; the demo answers it.
    let addr = format!("127.0.0.1:{}", port(listen));
    assert_eq!(demo_says(&get_in(main, &addr)), (main, 3, name.to_string()));
    assert_eq!(
        demo_says(&get_in(main, own_addr)),
        (main, 4, own_name.to_string())
    );
    let (pid, m) = manager_next_from(&manager);
    assert_eq!((pid, m.as_str()), (main, "READY=1"));
    kill(main, Signal::TERM);
    g.wait();
}

// examples/kubernetes

/// The Deployment's container, as PyYAML reads it: command, args, and
/// the other fields that must agree with the image, as strings.
struct Pod {
    command: Vec<String>,
    args: Vec<String>,
    grace: u64,
    user: String,
    port: String,
    port_name: String,
    probe_port: String,
    image: String,
    read_only_root: bool,
    mounts: Vec<String>,
}

fn read_deployment() -> Pod {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/deployment.yaml");
    let script = r#"
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert len(docs) == 1 and docs[0]["apiVersion"] == "apps/v1" and docs[0]["kind"] == "Deployment", docs
spec = docs[0]["spec"]["template"]["spec"]
assert docs[0]["spec"]["selector"]["matchLabels"].items() <= docs[0]["spec"]["template"]["metadata"]["labels"].items()
(c,) = spec["containers"]
sc, p = spec["securityContext"], c["ports"][0]
for v in (c["command"], c["args"],
          [str(spec["terminationGracePeriodSeconds"]), f'{sc["runAsUser"]}:{sc["runAsGroup"]}',
           str(p["containerPort"]), p["name"], str(c["readinessProbe"]["httpGet"]["port"]),
           c["image"], str(c["securityContext"]["readOnlyRootFilesystem"])],
          [m["mountPath"] for m in c.get("volumeMounts", [])]):
    print(json.dumps(v))
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("/usr/bin/python3 (with python3-yaml: .ci/deps)");
    assert!(
        out.status.success(),
        "{} does not parse: {out:?}",
        path.display()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<String>> = text.lines().map(|l| json_strings(l).unwrap()).collect();
    let [command, args, fields, mounts] = &lines[..] else {
        panic!("{text}")
    };
    Pod {
        command: command.clone(),
        args: args.clone(),
        grace: fields[0].parse().unwrap(),
        user: fields[1].clone(),
        port: fields[2].clone(),
        port_name: fields[3].clone(),
        probe_port: fields[4].clone(),
        image: fields[5].clone(),
        read_only_root: fields[6] == "True",
        mounts: mounts.clone(),
    }
}

/// examples/kubernetes/deployment.yaml is valid YAML and a Deployment
/// (PyYAML reads it), and its container runs what the supervise stage of
/// examples/Dockerfile has: the ENTRYPOINT with `--stop-delay` and
/// `--pid-file` added and nothing else changed, the CMD as `args`, its
/// user and port; the grace period outlasts the stop delay and both
/// stop timeouts; the pid file is on a volume, the root being read-only.
/// (.ci/container runs this command in the image and restarts it with
/// `gracewrap --restart`, as the README there says.)
#[test]
fn kubernetes_deployment_runs_the_supervise_image_as_built() {
    let d = Dockerfile::read();
    let image = d.image("supervise");
    let pod = read_deployment();
    assert!(pod.image.ends_with(":supervise"), "{}", pod.image);
    let entrypoint = image.entrypoint.as_ref().unwrap();
    let mut added = Vec::new();
    let mut rest = Vec::new();
    let mut words = pod.command.iter();
    while let Some(w) = words.next() {
        if w == "--stop-delay" || w == "--pid-file" {
            added.push((w.as_str(), words.next().unwrap().as_str()));
        } else {
            rest.push(w.clone());
        }
    }
    assert_eq!(
        &rest, entrypoint,
        "the image's ENTRYPOINT, two options added"
    );
    assert_eq!(
        added,
        [("--stop-delay", "5s"), ("--pid-file", "/run/gracewrap/pid")]
    );
    assert_eq!(
        Some(&pod.args),
        image.cmd.as_ref(),
        "args are the image's CMD"
    );
    assert_eq!(Some(pod.user.as_str()), image.user.as_deref());
    assert_eq!(image.expose, [pod.port.as_str()], "containerPort");
    assert!(
        pod.probe_port == pod.port_name || pod.probe_port == pod.port,
        "the readiness probe asks the demo's port"
    );
    let delay = duration(added[0].1);
    let stop = duration(option(entrypoint, "--stop-timeout").unwrap_or("10s"));
    assert!(
        delay + 2 * stop < Duration::from_secs(pod.grace),
        "terminationGracePeriodSeconds {} must outlast {delay:?} + 2 x {stop:?}",
        pod.grace
    );
    let pid_dir = Path::new(added[1].1).parent().unwrap().to_str().unwrap();
    assert!(pod.read_only_root);
    assert!(
        pod.mounts.iter().any(|m| m == pid_dir),
        "{pid_dir} is a volume"
    );
}
