//! Property: whatever datagrams a generation (or a process it started)
//! sends to the supervisor's NOTIFY_SOCKET, with or without fds, the
//! supervisor stays responsive (a SIGHUP restart completes, SIGTERM ends
//! it with the program's status), closes every fd it was sent, and its
//! memory stays put. Each case runs the real binary with a python3
//! generation sending the datagrams proptest made.

use std::io::Write;
use std::os::unix::net::UnixDatagram;

use proptest::prelude::*;
use rustix::process::Signal;

use crate::supervise::{kill, pid_in};
use crate::util::*;

/// One datagram, sent `repeat` times.
#[derive(Debug, Clone)]
struct Datagram {
    bytes: Vec<u8>,
    /// Fds attached with SCM_RIGHTS (capped at the kernel's SCM_MAX_FD,
    /// 253, when sent: more is EINVAL for the sender).
    fds: u16,
    /// 0: the generation sends it, 1: its child, 2: its grandchild.
    sender: u8,
    repeat: u16,
}

/// Lines a service might send, and near misses.
fn arb_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"READY=1".to_vec()),
        Just(b"READY=0".to_vec()),
        Just(b"READY=1\0junk".to_vec()),
        Just(b"RELOADING=1".to_vec()),
        Just(b"STOPPING=1".to_vec()),
        Just(b"WATCHDOG=1".to_vec()),
        Just(b"FDSTORE=1".to_vec()),
        Just(b"FDNAME=x".to_vec()),
        Just(b"MAINPID=1".to_vec()),
        Just(b"ERRNO=2".to_vec()),
        Just(b"STATUS=".to_vec()),
        "STATUS=[ -~]{0,40}".prop_map(String::into_bytes),
        // A huge STATUS: truncated to the 4 KiB buffer on the way in.
        (4096usize..100_000).prop_map(|n| {
            let mut s = b"STATUS=".to_vec();
            s.resize(n, b's');
            s
        }),
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(vec![0xff, 0xfe, b'\n', 0xc3]),
    ]
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => Just(vec![0u8; 64]),
        3 => proptest::collection::vec(any::<u8>(), 0..200),
        2 => (4090usize..4200, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        1 => (4096usize..20_000).prop_map(|n| vec![b'x'; n]),
        4 => proptest::collection::vec(arb_line(), 1..6).prop_map(|lines| lines.join(&b'\n')),
    ]
}

fn arb_datagram() -> impl Strategy<Value = Datagram> {
    (
        arb_bytes(),
        prop_oneof![3 => Just(0u16), 2 => 1u16..=8, 1 => 9u16..=300],
        prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![3 => 1u16..=3, 1 => 20u16..=300],
    )
        .prop_map(|(bytes, fds, sender, repeat)| Datagram {
            bytes,
            fds,
            sender,
            repeat,
        })
}

/// The generation: the first one (no MARKER yet) says READY=1, waits for
/// SIGUSR1, sends the datagrams of DATA (each `<IHBH` length, fds,
/// sender, repeat, then the bytes), reports `SENT n`, and waits to be
/// stopped; later ones only say READY=1.
const SENDER: &str = r#"
import array, os, signal, socket, struct, sys
data, marker = sys.argv[1], sys.argv[2]
addr = os.environ['NOTIFY_SOCKET']
if addr.startswith('@'):
    addr = '\0' + addr[1:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if os.path.exists(marker):
    sock.sendto(b'READY=1', addr)
    while True:
        signal.pause()
open(marker, 'w').close()
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
sock.sendto(b'READY=1', addr)
signal.sigwait([signal.SIGUSR1])
r, w = os.pipe()
a, b = socket.socketpair()
pool = [r, w, a.fileno(), b.fileno(), os.open('/dev/null', os.O_RDONLY)]
blob = open(data, 'rb').read()

def send(payload, nfds, repeat):
    fds = [pool[i % len(pool)] for i in range(min(nfds, 253))]
    for _ in range(repeat):
        if fds:
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))]
            sock.sendmsg([payload], rights, 0, addr)
        else:
            sock.sendto(payload, addr)

def from_descendant(depth, payload, nfds, repeat):
    if depth == 0:
        send(payload, nfds, repeat)
        return
    pid = os.fork()
    if pid == 0:
        try:
            from_descendant(depth - 1, payload, nfds, repeat)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)

sent, at = 0, 0
while at < len(blob):
    size, nfds, sender, repeat = struct.unpack_from('<IHBH', blob, at)
    at += 9
    from_descendant(sender, blob[at:at + size], nfds, repeat)
    at += size
    sent += repeat
# One write(2), so no other line can split it.
os.write(2, f'SENT {sent}\n'.encode())
while True:
    signal.pause()
"#;

/// Open fds of `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// What a supervisor may grow by while it handles the datagrams: one
/// batch in flight, the restart, the allocator's slack; far below what
/// keeping what it read would take.
const GROWTH_KB: u64 = 1024;

fn check(datagrams: &[Datagram]) -> Result<(), TestCaseError> {
    let dir = temp_dir("notifyprops");
    let (data, marker) = (dir.join("data"), dir.join("started"));
    let mut blob = Vec::new();
    for d in datagrams {
        blob.extend_from_slice(&(d.bytes.len() as u32).to_le_bytes());
        blob.extend_from_slice(&d.fds.to_le_bytes());
        blob.push(d.sender);
        blob.extend_from_slice(&d.repeat.to_le_bytes());
        blob.extend_from_slice(&d.bytes);
    }
    std::fs::File::create(&data)
        .and_then(|mut f| f.write_all(&blob))
        .unwrap();
    // gracewrap's own service manager, which gets the generation's STATUS=
    // lines (huge ones too) and never reads: sends to it are dropped.
    let upstream_path = dir.join("upstream");
    let _upstream = UnixDatagram::bind(&upstream_path).unwrap();
    let mut cmd = gracewrap(["-s", "-v", "-l", &quiet_spec(), "--", "/usr/bin/python3"]);
    cmd.args(["-c", SENDER])
        .arg(&data)
        .arg(&marker)
        .env("NOTIFY_SOCKET", &upstream_path);
    let mut gw = Running::spawn(&mut cmd);
    let pid = gw.child.id();
    let first = pid_in(&gw.stderr_line("is ready"), 1);
    // Ready and idle: what the supervisor holds with one generation (a
    // /proc file it happens to have open makes this one more, never less).
    let fds = fd_count(pid);
    let before = status_kb(pid, "VmHWM");
    kill(first, Signal::USR1);
    let line = gw.stderr_line("SENT ");
    // gracewrap's own -v lines on the same stderr are not one write each,
    // so the report may come in the middle of one; it ends the line.
    let sent = &line[line.find("SENT ").unwrap()..];
    let expected: u64 = datagrams.iter().map(|d| u64::from(d.repeat)).sum();
    prop_assert_eq!(sent, format!("SENT {expected}"));
    // Still responsive: a restart completes. Generation 2's READY=1 is
    // queued behind everything generation 1 sent, so by now every
    // datagram was read.
    kill(pid, Signal::HUP);
    let line = gw.stderr_line("generation 2 (pid");
    let line = if line.contains("is ready") {
        line
    } else {
        gw.stderr_line("stopping generation 1")
    };
    prop_assert!(
        line.contains("generation 2 (pid") && line.contains("stopping generation 1"),
        "{}",
        line
    );
    // Every fd it was sent is closed again.
    let mut now = 0;
    let back = wait_until_ok(DEADLINE, || {
        now = fd_count(pid);
        now <= fds
    });
    prop_assert!(
        back,
        "{} fds after {} datagrams, {} before",
        now,
        expected,
        fds
    );
    let peak = status_kb(pid, "VmHWM");
    prop_assert!(
        peak <= before + GROWTH_KB,
        "peak RSS {} kB, {} kB before {} datagrams",
        peak,
        before,
        expected
    );
    kill(pid, Signal::TERM);
    // The serving generation dies of the SIGTERM: 128 + 15.
    let status = gw.wait();
    prop_assert_eq!(status.code(), Some(143), "{:?}", gw.stderr_seen);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn any_notification_leaves_the_supervisor_responsive_without_fds_or_memory_kept(
        datagrams in proptest::collection::vec(arb_datagram(), 1..40)
    ) {
        check(&datagrams)?;
    }
}
