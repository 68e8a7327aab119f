//! The supervisor under a terminal (issue 13): one Ctrl-C reaches the
//! generation once, a restarted generation takes the terminal in turn, a
//! background gracewrap leaves it to the shell, `stty tostop` does not
//! stop gracewrap's messages, and the shell gets the terminal back.
//!
//! Each test runs `sh -c SCRIPT` in a real pseudo-terminal: a small
//! Python relay (`pty.fork`) copies the terminal's output to its stdout
//! and what the test writes on its stdin to the terminal, so that
//! `\x03` is a Ctrl-C typed at the keyboard.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::util::{
    DEADLINE, children_of, gracewrap_path, quiet_spec, sh_quote, temp_dir, wait_timeout,
    wait_until, wait_until_ok,
};

const PYTHON: &str = "/usr/bin/python3";

/// The relay: runs argv[1..] in a new session on a pseudo-terminal, copies
/// its output to stdout and our stdin to it, exits with its status.
const RELAY: &str = r#"
import os, pty, select, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
inputs = [fd, 0]
while True:
    ready, _, _ = select.select(inputs, [], [])
    if 0 in ready:
        data = os.read(0, 4096)
        if data:
            os.write(fd, data)
        else:
            inputs.remove(0)
    if fd in ready:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        os.write(1, data)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// A Python server stand-in, run as PROGRAM with a directory: it writes
/// one line per signal it gets (INT, USR1) to DIR/log-PID, and
/// DIR/ready-PID holding its parent's pid (the supervisor) once its
/// handlers are in place; if DIR/fail exists, it exits 1 at once instead.
/// SIGUSR2 makes it raise KeyboardInterrupt, as an unhandled Ctrl-C
/// would: Python prints the traceback and dies of SIGINT.
const APP: &str = r#"
import os, signal, sys
d, me = sys.argv[1], os.getpid()
if os.path.exists(os.path.join(d, 'fail')):
    sys.exit(1)
def note(what):
    with open(os.path.join(d, 'log-%d' % me), 'a') as f:
        f.write(what + '\n')
def usr2(sig, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, lambda sig, frame: note('INT'))
signal.signal(signal.SIGUSR1, lambda sig, frame: note('USR1'))
signal.signal(signal.SIGUSR2, usr2)
# Each signal also writes a byte to the pipe, so none is missed between
# two waits (signal.pause() would sleep through one that came just before).
r, w = os.pipe()
os.set_blocking(w, False)
signal.set_wakeup_fd(w)
tmp = os.path.join(d, 'tmp-%d' % me)
with open(tmp, 'w') as f:
    f.write(str(os.getppid()))
os.rename(tmp, os.path.join(d, 'ready-%d' % me))
while True:
    os.read(r, 512)
"#;

/// A shell script in a pseudo-terminal, its output gathered as it comes.
struct Pty {
    relay: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn run(script: &str) -> Pty {
        use std::os::unix::process::CommandExt;
        let mut relay = Command::new(PYTHON)
            .args(["-c", RELAY, "/bin/sh", "-c", script])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the pty relay");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut out = relay.stdout.take().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { relay, output }
    }

    /// Types `keys` at the terminal.
    fn type_keys(&mut self, keys: &[u8]) {
        let stdin = self.relay.stdin.as_mut().unwrap();
        stdin.write_all(keys).unwrap();
        stdin.flush().unwrap();
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `needle`.
    #[track_caller]
    fn wait_for(&self, needle: &str) {
        if !wait_until_ok(DEADLINE, || self.output().contains(needle)) {
            panic!("the terminal never showed {needle:?}:\n{}", self.output());
        }
    }

    /// Waits for the shell to exit; returns everything the terminal showed.
    #[track_caller]
    fn finish(mut self) -> String {
        drop(self.relay.stdin.take());
        let Some(status) = wait_timeout(&mut self.relay, DEADLINE) else {
            panic!(
                "the shell did not exit within {DEADLINE:?}:\n{}",
                self.output()
            );
        };
        // The reader thread may still be copying the last bytes.
        wait_until("the end of the terminal's output", || {
            Arc::strong_count(&self.output) == 1
        });
        let out = self.output();
        assert_eq!(status.code(), Some(0), "the shell did not exit 0:\n{out}");
        out
    }
}

impl Drop for Pty {
    /// SIGKILL to everything in the terminal's session (the shell leads
    /// it), whatever it was doing (stopped, in the background), then to
    /// the relay: nothing outlives a failed test.
    fn drop(&mut self) {
        if let Some(&shell) = children_of(self.relay.id()).first() {
            let everyone = std::fs::read_dir("/proc").into_iter().flatten().flatten();
            for pid in everyone.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
                if stat(pid).get(3) == Some(&shell.to_string()) {
                    signal(pid, rustix::process::Signal::KILL);
                }
            }
        }
        let _ = self.relay.kill();
        let _ = self.relay.wait();
    }
}

/// The pids of the generations that are ready (DIR/ready-PID), in no
/// particular order, with their parent.
fn ready(dir: &Path) -> Vec<(u32, u32)> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid = name.strip_prefix("ready-")?.parse().ok()?;
            let parent = std::fs::read_to_string(e.path()).ok()?.parse().ok()?;
            Some((pid, parent))
        })
        .collect()
}

fn log(dir: &Path, pid: u32) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("log-{pid}")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many times the generation `pid` noted `sig`.
fn noted(dir: &Path, pid: u32, sig: &str) -> usize {
    log(dir, pid).iter().filter(|l| *l == sig).count()
}

/// /proc/PID/stat's fields after the command name: state, ppid, pgrp,
/// session, tty_nr, tpgid...
fn stat(pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    text.rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').map(str::to_owned).collect())
        .unwrap_or_default()
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig);
}

/// Waits until every SIGINT the supervisor caught so far has reached the
/// generation: twice, sends SIGUSR1 to the supervisor, which passes it on,
/// and waits for the generation to note it. The supervisor passes signals
/// on in batches; a SIGINT caught while it was collecting one batch may
/// go on after that batch's SIGUSR1, but not after the next one's. (The
/// generation notes what it got by the time it notes a later signal.)
#[track_caller]
fn settle(dir: &Path, supervisor: u32, generation: u32) {
    for _ in 0..2 {
        let before = noted(dir, generation, "USR1");
        signal(supervisor, rustix::process::Signal::USR1);
        let seen = wait_until_ok(DEADLINE, || noted(dir, generation, "USR1") > before);
        assert!(
            seen,
            "the generation did not note SIGUSR1: log {:?}, supervisor {:?}",
            log(dir, generation),
            stat(supervisor),
        );
    }
}

/// Types Ctrl-C with the supervisor stopped (SIGSTOP), and lets it go on
/// (SIGCONT) only once the generation has noted a SIGINT: a copy the
/// supervisor got from the terminal and passes on then cannot merge with
/// the terminal's own while that one is still pending (a signal is
/// pending once, however many times it is sent), so the generation would
/// note both. Then [`settle`].
fn ctrl_c(pty: &mut Pty, dir: &Path, supervisor: u32, generation: u32) {
    signal(supervisor, rustix::process::Signal::STOP);
    wait_until("the supervisor to stop", || {
        stat(supervisor).first().is_some_and(|s| s == "T")
    });
    pty.type_keys(b"\x03");
    wait_until("the generation to note SIGINT", || {
        log(dir, generation).contains(&"INT".to_owned())
    });
    signal(supervisor, rustix::process::Signal::CONT);
    settle(dir, supervisor, generation);
}

fn app_command(dir: &Path) -> String {
    sh_quote(&[PYTHON, "-c", APP, dir.to_str().unwrap()])
}

/// The end of each script: gracewrap's status, then a line read from the
/// terminal, which needs the terminal's foreground back.
const THEN_READ: &str =
    r#"echo "DONE $?"; if read line; then echo "GOT $line"; else echo "READ FAILED"; fi"#;

/// Ctrl-C under a terminal: SIGINT reaches the generation once (the
/// terminal's), not twice (the terminal's to the whole foreground group,
/// then the supervisor's copy); a SIGINT sent to gracewrap is still passed
/// on, once; the generation's KeyboardInterrupt is gracewrap's status
/// (130); and the shell has the terminal back afterwards. The shell has
/// no job control here (a script's): gracewrap runs in its process group,
/// and gives the terminal back to it when it exits.
#[test]
fn ctrl_c_reaches_a_supervised_program_once() {
    let dir = temp_dir("ctrl-c");
    let script = format!(
        "{} -s -l tcp:127.0.0.1:0 -- {}; {THEN_READ}",
        sh_quote(&[gracewrap_path()]),
        app_command(&dir)
    );
    let mut pty = Pty::run(&script);
    wait_until("the generation to be ready", || !ready(&dir).is_empty());
    let (generation, supervisor) = ready(&dir)[0];

    ctrl_c(&mut pty, &dir, supervisor, generation);
    assert_eq!(
        noted(&dir, generation, "INT"),
        1,
        "one Ctrl-C: SIGINT noted by the generation that many times: {:?}\n{}",
        log(&dir, generation),
        pty.output()
    );

    // kill -INT to gracewrap: passed on, once.
    signal(supervisor, rustix::process::Signal::INT);
    settle(&dir, supervisor, generation);
    assert_eq!(
        noted(&dir, generation, "INT"),
        2,
        "{:?}\n{}",
        log(&dir, generation),
        pty.output()
    );

    signal(supervisor, rustix::process::Signal::USR2);
    pty.wait_for("DONE");
    pty.type_keys(b"hello\n");
    let out = pty.finish();
    assert_eq!(
        out.matches("KeyboardInterrupt").count(),
        1,
        "one traceback:\n{out}"
    );
    assert!(out.contains("DONE 130"), "gracewrap's status:\n{out}");
    assert!(
        out.contains("GOT hello"),
        "the shell reads from the terminal after gracewrap:\n{out}"
    );
}

/// A generation started by a restart takes the terminal from the one it
/// replaces: Ctrl-C then reaches the new one, once.
#[test]
fn after_a_restart_ctrl_c_reaches_the_new_generation_once() {
    let dir = temp_dir("ctrl-c-restart");
    let script = format!(
        "{} -s --ready-delay 100ms --stop-timeout 5s -l {} -- {}; {THEN_READ}",
        sh_quote(&[gracewrap_path()]),
        quiet_spec(),
        app_command(&dir)
    );
    let mut pty = Pty::run(&script);
    wait_until("generation 1 to be ready", || !ready(&dir).is_empty());
    let (first, supervisor) = ready(&dir)[0];

    signal(supervisor, rustix::process::Signal::HUP);
    let mut second = 0;
    wait_until("generation 2 to be ready", || {
        second = ready(&dir)
            .iter()
            .map(|&(pid, _)| pid)
            .find(|&pid| pid != first)
            .unwrap_or(0);
        second != 0
    });
    wait_until("generation 1 to be stopped", || {
        !PathBuf::from(format!("/proc/{first}")).exists()
    });
    ctrl_c(&mut pty, &dir, supervisor, second);
    assert_eq!(
        noted(&dir, second, "INT"),
        1,
        "{:?}\n{}",
        log(&dir, second),
        pty.output()
    );
    assert_eq!(noted(&dir, first, "INT"), 0, "{:?}", log(&dir, first));
    let fields = stat(second);
    assert_eq!(
        fields.get(5),
        Some(&second.to_string()),
        "generation 2 holds the terminal's foreground: {fields:?}\n{}",
        pty.output()
    );

    ends_with_130_and_the_shell_reads_again(pty, supervisor);
}

/// A generation started by a restart that fails (exits before it is
/// ready) had taken the terminal: it goes back to the generation that
/// keeps serving, which gets Ctrl-C, once.
#[test]
fn after_a_failed_restart_the_serving_generation_has_the_terminal_again() {
    let dir = temp_dir("ctrl-c-failed-restart");
    let script = format!(
        "{} -s -l {} -- {}; {THEN_READ}",
        sh_quote(&[gracewrap_path()]),
        quiet_spec(),
        app_command(&dir)
    );
    let mut pty = Pty::run(&script);
    wait_until("generation 1 to be ready", || !ready(&dir).is_empty());
    let (first, supervisor) = ready(&dir)[0];

    // Generation 2 exits before it is ready: it never sends READY=1, and
    // there is no --ready-delay.
    std::fs::write(dir.join("fail"), "").unwrap();
    signal(supervisor, rustix::process::Signal::HUP);
    pty.wait_for("exited with status 1 before it was ready");
    wait_until("generation 1 to hold the terminal's foreground", || {
        stat(first).get(5) == Some(&first.to_string())
    });

    ctrl_c(&mut pty, &dir, supervisor, first);
    assert_eq!(
        noted(&dir, first, "INT"),
        1,
        "{:?}\n{}",
        log(&dir, first),
        pty.output()
    );

    ends_with_130_and_the_shell_reads_again(pty, supervisor);
}

/// gracewrap started in the background (`&` in a shell with job
/// control) leaves the terminal's foreground to the shell, with or
/// without `--process-group`: the generation reports the terminal's
/// foreground group (tpgid) from /proc/self/stat.
#[test]
fn a_background_gracewrap_leaves_the_terminal_to_the_shell() {
    let dir = temp_dir("background");
    let gw = sh_quote(&[gracewrap_path()]);
    let mut script = String::from("set -m; echo \"SHELL $$\"");
    for (i, extra) in ["", "--process-group"].iter().enumerate() {
        script += &format!(
            "; {gw} -s {extra} -l {} -- cat /proc/self/stat > {} & wait",
            quiet_spec(),
            dir.join(format!("stat{i}")).display()
        );
    }
    script += "; echo FINISHED";
    let pty = Pty::run(&script);
    pty.wait_for("FINISHED");
    let out = pty.finish();
    let shell = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHELL "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    for (i, how) in ["-s", "-s --process-group"].iter().enumerate() {
        let stat = std::fs::read_to_string(dir.join(format!("stat{i}"))).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split(' ').collect())
            .unwrap_or_default();
        assert_eq!(
            fields.get(5).copied(),
            Some(shell.as_str()),
            "gracewrap {how} in the background: the shell keeps the foreground\n{stat}\n{out}"
        );
    }
}

/// With `stty tostop`, a process outside the terminal's foreground group
/// that writes to it gets SIGTTOU. gracewrap, whose generation holds the
/// foreground, still writes its messages and exits with the generation's
/// status, with or without `--process-group` (here with `--keep-signals`
/// too); PROGRAM does not inherit SIGTTOU ignored. (A job of a shell with
/// job control: outside such a job, the kernel fails the write with EIO
/// instead.)
#[test]
fn with_tostop_gracewrap_still_writes_its_messages() {
    let gw = sh_quote(&[gracewrap_path()]);
    let mut script = String::from("set -m; stty tostop");
    for extra in ["", "--process-group --keep-signals"] {
        script += &format!(
            "; {gw} -s -v {extra} -l {} -- sh -c 'grep SigIgn /proc/self/status; exit 3'; echo \"DONE $?\"",
            quiet_spec()
        );
    }
    let pty = Pty::run(&script);
    let out = pty.finish();
    assert_eq!(out.matches("DONE 3").count(), 2, "{out}");
    // SIGTTOU, which gracewrap ignores, is not ignored by PROGRAM (with
    // --keep-signals too: our caller had not ignored it).
    let ignored: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .collect();
    assert_eq!(ignored.len(), 2, "{out}");
    for mask in ignored {
        assert_eq!(mask & 1 << (libc::SIGTTOU - 1), 0, "{mask:x}\n{out}");
    }
    assert_eq!(
        out.matches("exited with status 3; stopping").count(),
        2,
        "{out}"
    );
}

/// The end of a session: USR2 makes the generation exit (after its
/// Ctrl-C), gracewrap exits with the generation's 130, and the shell
/// reads from the terminal again.
#[track_caller]
fn ends_with_130_and_the_shell_reads_again(mut pty: Pty, supervisor: u32) {
    signal(supervisor, rustix::process::Signal::USR2);
    pty.wait_for("DONE");
    pty.type_keys(b"hello\n");
    let out = pty.finish();
    assert!(out.contains("DONE 130"), "{out}");
    assert!(out.contains("GOT hello"), "{out}");
}
