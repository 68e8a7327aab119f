//! Test helpers: the gracewrap binary, the probe, running with a deadline,
//! parsing the probe's report, and waiting on conditions (never sleeps).
#![allow(dead_code)] // each test module uses its own subset of the helpers

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Marks every fd >= 3 this test binary inherited FD_CLOEXEC, so that
/// whoever starts the tests (`make -j`'s jobserver pipes, an editor's
/// terminal, a harness) cannot reach gracewrap through them: every child
/// a test starts sees only 0-2 and the fds the test hands it on purpose
/// ([`with_fd_at`], `exec N<...` in a shell script). Std and rustix open
/// everything else CLOEXEC. This runs from `.init_array`, before libtest's
/// main starts any test thread, so no child can be forked halfway through.
#[allow(unsafe_code)]
extern "C" fn cloexec_inherited_fds() {
    // SAFETY: close_range takes plain integers; with CLOSE_RANGE_CLOEXEC
    // it only sets a flag on fds this process owns and closes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    // Before Linux 5.11: one fcntl per open fd.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= 3)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a number that may already be closed (the
        // read_dir fd) fails with EBADF and changes nothing.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

#[allow(unsafe_code)]
#[used]
// SAFETY: `.init_array` holds plain `extern "C" fn()` pointers that the
// loader calls once before main; this one only changes fd flags.
#[unsafe(link_section = ".init_array")]
static CLOEXEC_INHERITED_FDS: extern "C" fn() = cloexec_inherited_fds;

/// How long any single step may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn gracewrap_path() -> &'static str {
    env!("CARGO_BIN_EXE_gracewrap")
}

/// A `gracewrap` command with the given arguments.
pub fn gracewrap<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(gracewrap_path());
    cmd.args(args);
    cmd
}

/// A file of this repository (`examples/README.md`), as text.
pub fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Path of an example binary, built on first use. Plain `cargo test`
/// builds examples next to the test binary's target dir; other invocations
/// (`cargo test --test integration`) do not, so build it if it is missing.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = Path::new(gracewrap_path())
        .parent()
        .unwrap()
        .join("examples");
    let path = dir.join(name);
    BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--examples"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
    });
    assert!(path.exists(), "{} was not built", path.display());
    path
}

pub fn probe() -> PathBuf {
    example("probe")
}

/// What a finished process left behind.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts the exit code, showing everything on failure.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected exit status\n{self}");
        self
    }

    /// Asserts the exact stderr (one `gracewrap: ` line).
    #[track_caller]
    pub fn expect_stderr(&self, line: &str) -> &Self {
        assert_eq!(
            self.stderr.trim_end_matches('\n'),
            line,
            "unexpected stderr\n{self}"
        );
        self
    }

    pub fn report(&self) -> Report {
        Report::parse(&self.stdout).unwrap_or_else(|| panic!("no probe report\n{self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion with stdout/stderr captured, killing it and
/// failing the test if it takes longer than [`DEADLINE`].
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let status = wait_timeout(&mut child, DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{desc} did not finish within {DEADLINE:?}")
    });
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` to exit, polling; None on timeout.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until_ok(timeout, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until_ok(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds; fails the test naming `what` otherwise.
#[track_caller]
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until_ok(DEADLINE, cond),
        "timed out waiting for {what}"
    );
}

/// Connects to the unix socket at `path` once something listens there.
/// Its file appears at bind(2), before listen(2): until then a connect is
/// refused, so waiting for the file is not enough.
pub fn connect_when_listening(path: &Path) -> std::os::unix::net::UnixStream {
    let mut conn = None;
    wait_until("a listener on the unix socket", || {
        conn = std::os::unix::net::UnixStream::connect(path).ok();
        conn.is_some()
    });
    conn.unwrap()
}

/// Children of `pid` (from /proc), zombies included.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

/// A spec that binds without printing anything and without colliding with
/// other tests: a fresh abstract unix socket name.
pub fn quiet_spec() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "unix:@gracewrap-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes an executable file a test will exec, from a child process.
/// Written here, the file would be open for writing in this
/// multi-threaded test binary for a moment; another test's fork(2) in that
/// moment keeps it open until its exec(2), and exec'ing the file then
/// fails with ETXTBSY ("text file busy").
pub fn write_executable(path: &Path, text: &str) {
    let status = Command::new("sh")
        .args(["-c", "printf %s \"$1\" > \"$0\" && chmod 755 \"$0\""])
        .arg(path)
        .arg(text)
        .status()
        .expect("run sh");
    assert!(status.success(), "cannot write {}", path.display());
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gracewrap-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One fd as the probe saw it.
#[derive(Debug, Clone, Default)]
pub struct Fd {
    pub fields: BTreeMap<String, String>,
}

impl Fd {
    pub fn get(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn is_socket(&self) -> bool {
        self.get("kind") == "socket"
    }

    /// The bound address as a SocketAddr (inet sockets only).
    pub fn inet(&self) -> SocketAddr {
        self.get("addr")
            .parse()
            .unwrap_or_else(|_| panic!("not an inet socket: {self:?}"))
    }
}

/// The probe's report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub cwd: String,
    pub nofile_soft: String,
    pub pidfdid: String,
    pub sigblk: u64,
    pub sigign: u64,
    pub capeff: u64,
    pub env: BTreeMap<String, String>,
    pub fds: BTreeMap<i32, Fd>,
}

impl Report {
    pub fn parse(text: &str) -> Option<Report> {
        let mut r = Report::default();
        let mut complete = false;
        for line in text.lines() {
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "pid" => r.pid = rest.parse().ok()?,
                "ppid" => r.ppid = rest.parse().ok()?,
                "uid" => r.uid = rest.parse().ok()?,
                "gid" => r.gid = rest.parse().ok()?,
                "groups" => {
                    r.groups = rest
                        .split_whitespace()
                        .filter_map(|g| g.parse().ok())
                        .collect()
                }
                "cwd" => r.cwd = rest.to_string(),
                "nofile" => r.nofile_soft = rest.split(' ').next()?.to_string(),
                "pidfdid" => r.pidfdid = rest.to_string(),
                "sigblk" => r.sigblk = u64::from_str_radix(rest, 16).ok()?,
                "sigign" => r.sigign = u64::from_str_radix(rest, 16).ok()?,
                "capeff" => r.capeff = u64::from_str_radix(rest, 16).ok()?,
                "env" => {
                    let (k, v) = rest.split_once('=')?;
                    r.env.insert(k.to_string(), v.to_string());
                }
                "fd" => {
                    let mut parts = rest.split(' ');
                    let n: i32 = parts.next()?.parse().ok()?;
                    let fields = parts
                        .filter_map(|p| p.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    r.fds.insert(n, Fd { fields });
                }
                "end" => complete = true,
                _ => {}
            }
        }
        complete.then_some(r)
    }

    pub fn env(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    pub fn fd(&self, n: i32) -> &Fd {
        self.fds
            .get(&n)
            .unwrap_or_else(|| panic!("fd {n} not open in probe: {:#?}", self.fds))
    }

    /// Fds >= 3, in order.
    pub fn passed_fds(&self) -> Vec<i32> {
        self.fds.keys().copied().filter(|&n| n >= 3).collect()
    }

    /// Asserts the systemd protocol invariants for `n` sockets: fds 3..3+n
    /// are sockets without CLOEXEC, nothing else >= 3 is open, and the
    /// LISTEN_* variables say so for this very process.
    #[track_caller]
    pub fn assert_protocol(&self, names: &[&str]) {
        let n = names.len() as i32;
        assert_eq!(
            self.passed_fds(),
            (3..3 + n).collect::<Vec<_>>(),
            "{self:#?}"
        );
        for fd in 3..3 + n {
            let f = self.fd(fd);
            assert!(f.is_socket(), "fd {fd} is not a socket: {f:?}");
            assert_eq!(f.get("cloexec"), "0", "fd {fd} has CLOEXEC");
        }
        assert_eq!(self.env("LISTEN_FDS"), Some(n.to_string().as_str()));
        assert_eq!(self.env("LISTEN_PID"), Some(self.pid.to_string().as_str()));
        assert_eq!(self.env("LISTEN_FDNAMES"), Some(names.join(":").as_str()));
        assert_eq!(self.env("LISTEN_FDS_FIRST_FD"), None);
    }
}

/// A running gracewrap whose stderr is read line by line (to learn the
/// addresses it printed) while it runs.
pub struct Running {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub stderr_seen: Vec<String>,
}

impl Running {
    /// Spawns `cmd` as the leader of a new process group, so that
    /// dropping it also kills whatever it started (generations that
    /// ignore SIGTERM included).
    pub fn spawn(cmd: &mut Command) -> Running {
        use std::os::unix::process::CommandExt;
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            stderr_seen: Vec::new(),
        }
    }

    /// The next stderr line that contains `needle`.
    #[track_caller]
    pub fn stderr_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no stderr line with {needle:?}; saw {:?}", self.stderr_seen),
            }
        }
    }

    /// The address of the next `accepting on ADDR (fd N)` line.
    #[track_caller]
    pub fn accepting_addr(&mut self) -> String {
        let line = self.stderr_line("accepting on ");
        let rest = line.split("accepting on ").nth(1).unwrap();
        rest.split(" (").next().unwrap().to_string()
    }

    /// Every stderr line that arrived and was not read yet, at once.
    pub fn lines_so_far(&mut self) -> Vec<String> {
        let out: Vec<String> = self.lines.try_iter().collect();
        self.stderr_seen.extend(out.iter().cloned());
        out
    }

    /// The address of the next `listening on ADDR (fd N...)` line.
    #[track_caller]
    pub fn listening_addr(&mut self) -> String {
        let line = self.stderr_line("listening on ");
        let rest = line.split("listening on ").nth(1).unwrap();
        rest.split(" (").next().unwrap().to_string()
    }

    /// Every stderr line not read yet, up to the end of stderr (the
    /// process exited and closed it); fails after [`DEADLINE`].
    #[track_caller]
    pub fn rest_of_stderr(&mut self) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    out.push(line);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(_) => panic!("stderr still open; saw {:?}", self.stderr_seen),
            }
        }
    }

    /// Waits for exit; kills on timeout and fails.
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        match wait_timeout(&mut self.child, DEADLINE) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                panic!(
                    "process did not exit in time; stderr {:?}",
                    self.stderr_seen
                )
            }
        }
    }
}

/// Sends `sig` (a raw number) to the running gracewrap.
pub fn signal(gw: &Running, sig: i32) {
    let pid = rustix::process::Pid::from_raw(gw.child.id() as i32).unwrap();
    let sig = rustix::process::Signal::from_named_raw(sig).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Makes a FIFO at `path`.
pub fn make_fifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

impl Running {
    /// SIGKILL to its process group: everything the command started.
    pub fn kill_group(&self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_group();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends an HTTP GET to `addr` and returns the body.
#[track_caller]
pub fn http_get(addr: &str) -> String {
    try_http_get(addr).unwrap_or_else(|e| panic!("{e}"))
}

/// [`http_get`] that says what failed instead of failing the test, for
/// waiting until a server answers.
pub fn try_http_get(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut resp = String::new();
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .and_then(|()| s.read_to_string(&mut resp))
        .map_err(|e| format!("GET http://{addr}/: {e}"))?;
    if !resp.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP response from {addr}: {resp:?}"));
    }
    Ok(resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// A shell command line that exec's `argv` with everything quoted.
pub fn sh_quote(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes `cmd`'s child start with a copy of `fd` at `target`, without
/// CLOEXEC: how a caller hands gracewrap an inherited fd.
#[allow(unsafe_code)]
pub fn with_fd_at(
    cmd: &mut Command,
    fd: impl std::os::fd::AsFd,
    target: std::os::fd::RawFd,
) -> &mut Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // A private copy far above any target, owned by the closure: the
    // original's number may be anything (other tests run in parallel),
    // even `target` itself, where dup2 would keep CLOEXEC.
    let copy = rustix::io::fcntl_dupfd_cloexec(fd, 1000).expect("dup");
    // SAFETY: dup2(2) is async-signal-safe and touches only the child's
    // fd table.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(copy.as_raw_fd(), target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Makes `cmd`'s child start with `sig` blocked, as a careless caller
/// might hand it over.
#[allow(unsafe_code)]
pub fn with_blocked(cmd: &mut Command, sig: i32) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: sigemptyset/sigaddset/sigprocmask are async-signal-safe and
    // only change the child's mask.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        })
    }
}

/// Makes `cmd`'s child start with RLIMIT_NOFILE at `soft` and `hard`.
/// (Fds handed over with [`with_fd_at`] before this stay open above it.)
#[allow(unsafe_code)]
pub fn with_nofile(cmd: &mut Command, soft: u64, hard: u64) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit(2) is async-signal-safe and only changes the
    // child's limit.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A system call that [`with_failing_syscalls`] makes fail.
#[derive(Debug, Clone, Copy)]
pub struct Fail {
    /// The syscall number (`libc::SYS_*`).
    pub nr: libc::c_long,
    /// What it fails with.
    pub errno: i32,
    /// Fail only when this argument (0-based) is not 0 or NULL: e.g.
    /// prlimit64(2) sets a limit only when its third one is given.
    pub if_arg_set: Option<u32>,
}

/// Makes the given system calls fail in `cmd`'s child and everything it
/// execs (a seccomp filter, installed last): how a test plays a kernel
/// without close_range(2), or one that refuses to raise a limit. Every
/// other call, and every call of another architecture, is allowed.
#[allow(unsafe_code)]
pub fn with_failing_syscalls<'a>(cmd: &'a mut Command, fails: &[Fail]) -> &'a mut Command {
    use std::os::unix::process::CommandExt;
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let ret = |k: u32| stmt(libc::BPF_RET | libc::BPF_K, k);
    // struct seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8i (the low
    // half first: both architectures are little-endian).
    let mut prog = vec![load(4), jeq(ARCH, 1, 0), ret(libc::SECCOMP_RET_ALLOW)];
    for f in fails {
        let fail = ret(libc::SECCOMP_RET_ERRNO | f.errno as u32);
        prog.push(load(0));
        match f.if_arg_set {
            None => prog.extend([jeq(f.nr as u32, 0, 1), fail]),
            Some(i) => prog.extend([
                jeq(f.nr as u32, 0, 5),
                load(16 + 8 * i),
                jeq(0, 0, 2),
                load(16 + 8 * i + 4),
                jeq(0, 1, 0),
                fail,
            ]),
        }
    }
    prog.push(ret(libc::SECCOMP_RET_ALLOW));
    // SAFETY: prctl(2) is async-signal-safe; the filter is built above,
    // before the fork, and lives in the closure for the call.
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &raw const fprog,
                ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// gracewrap started the way systemd starts a service: `fds` at 3, 4, ...
/// and `LISTEN_PID` set to the pid that will exec gracewrap (sh's `$$`),
/// plus `env` (e.g. LISTEN_FDS, LISTEN_FDNAMES). `args` go to gracewrap.
pub fn activated(fds: &[&dyn std::os::fd::AsFd], env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$@\"", "sh", gracewrap_path()]);
    cmd.args(args);
    for (i, fd) in fds.iter().enumerate() {
        with_fd_at(&mut cmd, fd, 3 + i as i32);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs gracewrap with `args` in front of the probe and returns the report.
#[track_caller]
pub fn probe_report(args: &[&str]) -> Report {
    let probe = probe();
    let out = run(gracewrap(args).arg("--").arg(&probe));
    out.expect_code(0);
    out.report()
}
