//! Test consumer: reports exactly what it received from whoever exec'd it.
//!
//! Usage: `probe [serve]`. The report goes to stdout, or to the file named
//! by `$PROBE_REPORT` (written atomically) when that is set, as lines:
//!
//! ```text
//! pid 1234
//! ppid 1200
//! uid 0
//! gid 0
//! groups 0 1
//! cwd /tmp
//! nofile 1024 524288
//! pidfdid 4242
//! sigblk 0000000000000000
//! sigign 0000000000000000
//! env LISTEN_FDS=1
//! fd 0 kind=chr cloexec=0
//! fd 3 kind=socket type=stream family=inet addr=127.0.0.1:8080 listening=1 cloexec=0
//! end
//! ```
//!
//! With `serve`, it then answers every connection on its listening stream
//! sockets with `pid <pid> fd <n>\n` (an HTTP response when the request
//! looks like one), and datagrams with the same text, until killed.
//!
//! As the per-connection program of `--accept`: `answer` writes
//! `pid P listen_pid L listen_fds N names X` to the connection at fd 3 and
//! exits; `hold` does the same, then waits for the peer to close.
//!
//! Built with `#![no_main]` so that the Rust runtime does not set SIGPIPE
//! to SIG_IGN before the report is taken: `sigign` must show what the
//! caller handed over, not what std did.
#![no_main]
#![allow(unsafe_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use rustix::net::{SocketAddrUnix, SocketType, getsockname, sockopt};

#[unsafe(no_mangle)]
extern "C" fn main(argc: i32, argv: *const *const std::ffi::c_char) -> i32 {
    // main's own argv: std::env::args() is empty under musl with no_main.
    let args: Vec<String> = (1..usize::try_from(argc).unwrap_or(0))
        // SAFETY: the C runtime passes argc valid NUL-terminated strings.
        .map(|i| unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) })
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    match args.first().map(String::as_str) {
        Some("answer") => return answer(false),
        Some("hold") => return answer(true),
        _ => {}
    }
    let report = report();
    let serving = args.first().map(String::as_str) == Some("serve");
    if serving {
        // Before the report appears: tests signal the probe once it does.
        serve_signals();
    }
    match std::env::var_os("PROBE_REPORT") {
        Some(path) => {
            let tmp = format!("{}.{}.tmp", path.to_string_lossy(), std::process::id());
            std::fs::write(&tmp, &report).expect("write report");
            std::fs::rename(&tmp, &path).expect("rename report");
        }
        None => {
            let _ = std::io::stdout().write_all(report.as_bytes());
        }
    }
    if serving {
        serve();
    }
    0
}

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used for queries and accept/recv on fds the probe was
    // handed; it never closes them.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn report() -> String {
    let mut out = String::new();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let _ = writeln!(out, "pid {}", std::process::id());
    let _ = writeln!(
        out,
        "ppid {}",
        rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
    );
    let _ = writeln!(
        out,
        "uid {}",
        field("Uid").split_whitespace().next().unwrap_or("")
    );
    let _ = writeln!(
        out,
        "gid {}",
        field("Gid").split_whitespace().next().unwrap_or("")
    );
    let _ = writeln!(out, "groups {}", field("Groups"));
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "cwd {cwd}");
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
    let _ = writeln!(out, "nofile {} {}", show(lim.current), show(lim.maximum));
    let _ = writeln!(
        out,
        "pidfdid {}",
        pidfd_id().map_or("-".into(), |i| i.to_string())
    );
    let _ = writeln!(out, "sigblk {}", field("SigBlk"));
    let _ = writeln!(out, "sigign {}", field("SigIgn"));
    let _ = writeln!(out, "sigcgt {}", field("SigCgt"));
    let _ = writeln!(out, "capeff {}", field("CapEff"));
    for (k, v) in std::env::vars_os() {
        let _ = writeln!(
            out,
            "env {}={}",
            k.as_bytes().escape_ascii(),
            v.as_bytes().escape_ascii()
        );
    }
    let mut fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    for fd in fds {
        // The read_dir fd itself is closed by now: EBADF, skipped.
        let Ok(flags) = rustix::io::fcntl_getfd(borrow(fd)) else {
            continue;
        };
        let cloexec = u8::from(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let _ = writeln!(out, "fd {fd} {} cloexec={cloexec}", describe(borrow(fd)));
    }
    out.push_str("end\n");
    out
}

/// The inode number of a pidfd for this process (pidfs), which
/// `LISTEN_PIDFDID` must equal.
fn pidfd_id() -> Option<u64> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    rustix::fs::fstat(&pidfd).ok().map(|st| st.st_ino)
}

fn describe(fd: BorrowedFd<'_>) -> String {
    let Ok(ty) = sockopt::socket_type(fd) else {
        let kind = match rustix::fs::fstat(fd) {
            Ok(st) => match st.st_mode & 0o170000 {
                0o020000 => "chr",
                0o010000 => "fifo",
                0o100000 => "file",
                0o040000 => "dir",
                _ => "other",
            },
            Err(_) => "unknown",
        };
        return format!("kind={kind}");
    };
    let ty = match ty {
        SocketType::STREAM => "stream",
        SocketType::DGRAM => "dgram",
        SocketType::SEQPACKET => "seqpacket",
        _ => "other",
    };
    let listening = u8::from(sockopt::socket_acceptconn(fd).unwrap_or(false));
    let (family, addr) = match getsockname(fd) {
        Ok(a) => {
            if let Ok(inet) = SocketAddr::try_from(a.clone()) {
                let fam = if inet.is_ipv4() { "inet" } else { "inet6" };
                let v6only = if inet.is_ipv6() {
                    format!(
                        " v6only={}",
                        u8::from(sockopt::ipv6_v6only(fd).unwrap_or(false))
                    )
                } else {
                    String::new()
                };
                let reuse = format!(
                    " reuseaddr={} reuseport={}",
                    u8::from(sockopt::socket_reuseaddr(fd).unwrap_or(false)),
                    u8::from(sockopt::socket_reuseport(fd).unwrap_or(false))
                );
                let (ip_level, freebind) = if inet.is_ipv4() {
                    (libc::IPPROTO_IP, libc::IP_FREEBIND)
                } else {
                    (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)
                };
                let tcp = format!(
                    " freebind={} nodelay={} keepalive={} defer_accept={} fastopen={} mark={} dev={}",
                    getsockopt_int(fd, ip_level, freebind),
                    getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY),
                    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
                    getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
                    getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN),
                    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK),
                    bind_device(fd),
                );
                (fam.to_string(), format!("{inet}{v6only}{reuse}{tcp}"))
            } else if a.address_family() == rustix::net::AddressFamily::VSOCK {
                // struct sockaddr_vm: family, reserved, port, cid.
                // SAFETY: the kernel filled a whole sockaddr_vm.
                let vm = unsafe { std::ptr::read_unaligned(a.as_ptr().cast::<[u32; 3]>()) };
                ("vsock".to_string(), format!("{}:{}", vm[2], vm[1]))
            } else if let Ok(unix) = SocketAddrUnix::try_from(a) {
                let addr = if let Some(name) = unix.abstract_name() {
                    format!("@{}", name.escape_ascii())
                } else {
                    unix.path_bytes()
                        .unwrap_or_default()
                        .escape_ascii()
                        .to_string()
                };
                ("unix".to_string(), addr)
            } else {
                ("other".to_string(), "-".to_string())
            }
        }
        Err(_) => ("unknown".to_string(), "-".to_string()),
    };
    let addr = if addr.is_empty() {
        "-".to_string()
    } else {
        addr
    };
    format!(
        "kind=socket type={ty} family={family} addr={addr} listening={listening} rcvbuf={} sndbuf={}",
        getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF),
        getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF),
    )
}

/// An int socket option, or -1 where it does not apply.
fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> i32 {
    use std::os::fd::AsRawFd;
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for the call; getsockopt writes
    // at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if rc == 0 { value } else { -1 }
}

/// SO_BINDTODEVICE, or `-`.
fn bind_device(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 32];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` and `len` are valid; the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let name = &buf[..(len as usize).min(buf.len())];
    let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
    if rc != 0 || name.is_empty() {
        "-".into()
    } else {
        String::from_utf8_lossy(name).into_owned()
    }
}

/// `answer` / `hold`: identify ourselves on the connection at fd 3.
fn answer(hold: bool) -> i32 {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "-".into());
    let line = format!(
        "pid {} listen_pid {} listen_fds {} names {}\n",
        std::process::id(),
        var("LISTEN_PID"),
        var("LISTEN_FDS"),
        var("LISTEN_FDNAMES")
    );
    let conn = borrow(3);
    if rustix::io::write(conn, line.as_bytes()).is_err() {
        return 1;
    }
    if hold {
        let mut buf = [0u8; 256];
        while matches!(rustix::io::read(conn, &mut buf), Ok(n) if n > 0) {}
    }
    0
}

/// Answers on every passed socket until killed: a thread per listening
/// socket, one per connection. Knobs for the supervisor tests, from the
/// environment:
/// - `PROBE_TAG`: appended to every reply (`... tag v2`);
/// - `PROBE_EXIT=N`: exit with N at once, before serving;
/// - `PROBE_READY_AFTER_MS=N`: wait N ms before READY=1;
/// - `PROBE_NO_NOTIFY=1`: never send READY=1;
/// - `PROBE_IGNORE_TERM=1`: ignore SIGTERM (by default SIGTERM drains:
///   stop accepting, finish the requests in flight, exit 0);
/// - `PROBE_DEFAULT_TERM=1`: leave SIGTERM at its default action, no
///   handler (it kills, except PID 1 of a PID namespace, where the kernel
///   drops it);
/// - `PROBE_SIGNAL_LOG=PATH`: append the names of USR1, USR2, WINCH, INT,
///   QUIT, HUP as they arrive;
/// - `PROBE_SLOW_MS=N`: take N ms to answer each request;
/// - `PROBE_SPAWN_ORPHAN=FIFO`: leave an orphan behind that exits once a
///   line can be read from FIFO.
/// - `PROBE_CLOSE_FDS=1`: close the passed sockets, then send READY=1 and
///   idle until SIGTERM, serving nothing.
fn serve() {
    let env = |k: &str| std::env::var(k).ok();
    if let Some(code) = env("PROBE_EXIT").and_then(|c| c.parse().ok()) {
        std::process::exit(code);
    }
    if let Some(fifo) = env("PROBE_SPAWN_ORPHAN") {
        // sh forks a subshell that forks `read`, then exits at once: the
        // `read` process is re-parented to the nearest subreaper.
        let _ = std::process::Command::new("sh")
            .args(["-c", "(read x < \"$0\") & exit 0", &fifo])
            .status();
    }
    let n: RawFd = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if env("PROBE_CLOSE_FDS").is_some() {
        for fd in 3..3 + n {
            // SAFETY: closes fds the probe was handed and never uses again.
            unsafe { libc::close(fd) };
        }
        sd_notify("READY=1");
        while !draining() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::process::exit(0);
    }
    let mut threads = Vec::new();
    for fd in 3..3 + n {
        threads.push(std::thread::spawn(move || serve_one(fd)));
    }
    if env("PROBE_NO_NOTIFY").is_none() {
        if let Some(ms) = env("PROBE_READY_AFTER_MS").and_then(|m| m.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        sd_notify("READY=1");
    }
    for t in threads {
        let _ = t.join();
    }
}

/// serve's signal handling: SIGTERM drains (or is ignored, or left at its
/// default action), and `PROBE_SIGNAL_LOG` logs the others.
fn serve_signals() {
    if std::env::var_os("PROBE_IGNORE_TERM").is_some() {
        // SAFETY: SIG_IGN installs no code.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    } else if std::env::var_os("PROBE_DEFAULT_TERM").is_none() {
        signal_hook::flag::register(libc::SIGTERM, std::sync::Arc::clone(&DRAIN))
            .expect("register");
    }
    if let Ok(log) = std::env::var("PROBE_SIGNAL_LOG") {
        log_signals(log);
    }
}

/// Sends one sd_notify message, if NOTIFY_SOCKET is set.
fn sd_notify(text: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = if let Some(name) = bytes.strip_prefix(b"@") {
        rustix::net::SocketAddrUnix::new_abstract_name(name)
    } else {
        rustix::net::SocketAddrUnix::new(path.as_os_str())
    };
    let (Ok(addr), Ok(sock)) = (
        addr,
        rustix::net::socket(rustix::net::AddressFamily::UNIX, SocketType::DGRAM, None),
    ) else {
        return;
    };
    let _ = rustix::net::sendto(
        &sock,
        text.as_bytes(),
        rustix::net::SendFlags::empty(),
        &addr,
    );
}

fn log_signals(path: String) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sigs = [
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGWINCH, "WINCH"),
        (libc::SIGINT, "INT"),
        (libc::SIGQUIT, "QUIT"),
        (libc::SIGHUP, "HUP"),
    ];
    let flags: Vec<(Arc<AtomicBool>, &str)> = sigs
        .iter()
        .map(|(sig, name)| {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(*sig, Arc::clone(&flag)).expect("register");
            (flag, *name)
        })
        .collect();
    std::thread::spawn(move || {
        loop {
            for (flag, name) in &flags {
                if flag.swap(false, Ordering::SeqCst) {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .unwrap();
                    let _ = writeln!(f, "{name}");
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
}

/// Set by SIGTERM: stop accepting, let the requests in flight finish.
static DRAIN: std::sync::LazyLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
/// Requests in flight.
static ACTIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn draining() -> bool {
    DRAIN.load(std::sync::atomic::Ordering::SeqCst)
}

/// After SIGTERM: exit 0 once nothing is in flight.
fn finish_drain() -> ! {
    while ACTIVE.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::process::exit(0)
}

fn serve_one(fd: RawFd) {
    let sock = borrow(fd);
    let tag = std::env::var("PROBE_TAG")
        .map(|t| format!(" tag {t}"))
        .unwrap_or_default();
    let text = format!("pid {} fd {fd}{tag}\n", std::process::id());
    let slow = std::env::var("PROBE_SLOW_MS")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0u64);
    let listening = sockopt::socket_acceptconn(sock).unwrap_or(false);
    if !listening {
        // Datagram socket: echo our identity back to each sender.
        let mut buf = [0u8; 2048];
        while let Ok((_, _, Some(from))) =
            rustix::net::recvfrom(sock, &mut buf, rustix::net::RecvFlags::empty())
        {
            let _ = rustix::net::sendto(
                sock,
                text.as_bytes(),
                rustix::net::SendFlags::empty(),
                &from,
            );
        }
        return;
    }
    use std::sync::atomic::Ordering::SeqCst;
    // Non-blocking: generations share the listener, and the one that loses
    // the race for a connection must not hang in accept(2).
    let _ = rustix::fs::fcntl_setfl(sock, rustix::fs::OFlags::NONBLOCK);
    loop {
        // Wait for a connection, but look at the drain flag every 10 ms.
        let mut polls = [rustix::event::PollFd::new(
            &sock,
            rustix::event::PollFlags::IN,
        )];
        let tick = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        let _ = rustix::event::poll(&mut polls, Some(&tick));
        if draining() {
            finish_drain();
        }
        if polls[0].revents().is_empty() {
            continue;
        }
        // Counted before accept, so a drain never misses this one.
        ACTIVE.fetch_add(1, SeqCst);
        let conn = match rustix::net::accept(sock) {
            Ok(conn) => conn,
            Err(_) => {
                ACTIVE.fetch_sub(1, SeqCst);
                continue;
            }
        };
        let text = text.clone();
        std::thread::spawn(move || {
            let mut stream = std::fs::File::from(conn);
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            if slow > 0 {
                std::thread::sleep(std::time::Duration::from_millis(slow));
            }
            let reply = if buf[..n].starts_with(b"GET ") || buf[..n].starts_with(b"HEAD ") {
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                )
            } else {
                text
            };
            // MSG_NOSIGNAL: a client that reset the connection gets no
            // answer, and must not kill the probe with SIGPIPE (which
            // stays at its default here: see the top of this file).
            let mut rest = reply.as_bytes();
            while !rest.is_empty() {
                match rustix::net::send(&stream, rest, rustix::net::SendFlags::NOSIGNAL) {
                    Err(rustix::io::Errno::INTR) => {}
                    Ok(0) | Err(_) => break,
                    Ok(n) => rest = &rest[n..],
                }
            }
            drop(stream);
            ACTIVE.fetch_sub(1, SeqCst);
        });
    }
}
