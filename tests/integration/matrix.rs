//! The bad-input matrix (issue 6): one row per way of starting gracewrap
//! wrongly, each with the exact stderr line, the exit status, and what must
//! be as it was afterwards. docs/bad-input.md is the same table for
//! people; `doc_and_test_table_agree` keeps the two from drifting (the
//! table there is generated from [`ROWS`]: run
//! `GRACEWRAP_WRITE_DOC=1 cargo test --test integration matrix::doc` after
//! changing a row).
//!
//! Every row also checks that nothing panicked (no "panicked" on stderr,
//! no death by a signal, never 101 or 134), and, after the run:
//! - the row's directory: every entry with the same type, inode, content
//!   (regular files) and target (symlinks), and no new entry;
//! - a file the test holds open at fd 20 of gracewrap: same offset and
//!   O_NONBLOCK flag on the test's side of the shared open file;
//! - sockets the row hands over: still bound to the same address, still
//!   listening (and answering) if they were, flags unchanged;
//! - for rows where PROGRAM runs: its environment (a sentinel variable
//!   passes, LISTEN_* are gracewrap's).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// What a row prepares before gracewrap runs. `{dir}` is the row's own
/// empty directory, `{q}` a fresh abstract socket name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    /// `{port}`: a loopback TCP port the test listens on.
    BusyTcp,
    /// `{port}`: a port that was free on 127.0.0.1 (TCP and UDP) a moment
    /// ago.
    FreePort,
    /// `{q}` is bound by the test.
    BusyAbstract,
    /// `{dir}/s.sock` is a unix socket the test listens on.
    LiveUnix,
    /// `{dir}/s.sock` is a regular file.
    File,
    /// `{dir}/s.sock` is a directory with a file in it.
    Dir,
    /// `{dir}/s.sock` is a symlink to `{dir}/target` (a regular file).
    Symlink,
    /// `{dir}/s.sock` is a symlink to nothing.
    Dangling,
    /// A regular file `{dir}/f` at this fd.
    FileAt(i32),
    /// A TCP socket, neither bound nor listening, at this fd.
    UnboundAt(i32),
    /// A listening TCP socket at this fd.
    ListenerAt(i32),
    /// A bound UDP socket at this fd.
    UdpAt(i32),
    /// Started as systemd starts a service: `LISTEN_PID` is gracewrap's
    /// pid (sh's `$$`); the fds are given with the other setups.
    Activated,
    /// `ulimit -n N` (soft and hard) before gracewrap starts.
    Ulimit(u32),
    /// Run as uid/gid 65534 without capabilities (setpriv).
    Unprivileged,
    /// `{dir}/locked`: a directory only root may write to.
    LockedDir,
    /// `{dir}/prog`: a script without the execute bit.
    NoExec,
    /// `{dir}/prog`: an executable script whose `#!` interpreter is missing.
    BadInterp,
    /// gracewrap runs with `{dir}` as its working directory.
    InDir,
}

/// What must hold afterwards, besides the checks every row makes.
#[derive(Debug, Clone, Copy)]
enum After {
    /// Nothing changed: the directory, the held fds, the handed sockets.
    Untouched,
    /// PROGRAM (the probe) ran: the directory may have gained the listed
    /// socket files (exec mode leaves them to PROGRAM); the report is
    /// checked by the function.
    Ran(&'static [&'static str], fn(&Report)),
}

struct Row {
    id: &'static str,
    /// gracewrap's arguments. Placeholders: `{dir}`, `{q}`, `{port}`,
    /// `{probe}`, `{xff}` (the byte 0xff), `{n256}` (a 256-byte name),
    /// `{p108}` (a 108-byte absolute path).
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    setup: &'static [Setup],
    /// The exact stderr (one line, or empty); placeholders as in `args`,
    /// plus `{gwpid}` (gracewrap's pid).
    stderr: &'static str,
    code: i32,
    after: After,
}

const NONE: &[Setup] = &[];
const NOENV: &[(&str, &str)] = &[];

/// Bytes no spec may take as they are: a name too long, a path too long.
fn n256() -> String {
    "n".repeat(256)
}
fn p108() -> String {
    format!("/{}", "a".repeat(107))
}

const ROWS: &[Row] = &[
    // ---- SPEC syntax: usage errors (2), nothing bound
    Row {
        id: "spec-empty",
        args: &["-l", "", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen \"\": empty address",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-empty-host-and-port",
        args: &["-l", "tcp::", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp::: missing port",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-empty-port",
        args: &["-l", "tcp:127.0.0.1:", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp:127.0.0.1:: missing port",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-port-65536",
        args: &["-l", "tcp:127.0.0.1:65536", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp:127.0.0.1:65536: port 65536 is out of range (0-65535)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-port-not-a-number",
        args: &["-l", "tcp:127.0.0.1:http", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp:127.0.0.1:http: port 'http' is not a number",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-ipv6-unclosed",
        args: &["-l", "tcp:[::1", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp:[::1: missing ']' in '[::1'",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-ipv6-without-brackets",
        args: &["-l", "tcp:::1:80", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp:::1:80: IPv6 address '::1' must be in brackets, e.g. [::1]:80",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-hostname",
        args: &["-l", "tcp:example.com:80", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp:example.com:80: 'example.com' is not an IP address (hostnames other than localhost are not resolved; give an IP literal)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-tcp4-with-ipv6",
        args: &["-l", "tcp4:[::1]:80", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp4:[::1]:80: tcp4 needs an IPv4 address",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-udp6-with-ipv4",
        args: &["-l", "udp6:127.0.0.1:53", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen udp6:127.0.0.1:53: udp6 needs an IPv6 address",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-non-utf8-host",
        args: &["-l", "tcp:{xff}:80", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen \"tcp:\\xFF:80\": address is not valid UTF-8",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-unix-empty",
        args: &["-l", "unix:", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen unix:: missing unix socket path",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-unix-path-too-long",
        args: &["-l", "unix:{p108}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen unix:{p108}: unix socket path is 108 bytes long, at most 107 fit in sun_path",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-unix-trailing-slash",
        args: &["-l", "unix:{dir}/", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen unix:{dir}/: unix socket path ends with '/'",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-abstract-empty",
        args: &["-l", "@", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen @: missing abstract socket name after '@'",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-unknown-type",
        args: &["-l", "http:80", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen http:80: unknown socket type 'http' (known types: tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixgram, unixpacket, seqpacket, vsock, vsock-dgram, vsock-seqpacket, fd, inherit)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-bare-word",
        args: &["-l", "hello", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen hello: cannot parse 'hello': expected TYPE:ADDRESS (e.g. tcp::8080, unix:/run/app.sock), a port, IP:PORT, or a path starting with /",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-fd-not-a-number",
        args: &["-l", "fd:x", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen fd:x: fd:'x' is not a file descriptor number",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-fd-out-of-range",
        args: &["-l", "fd:99999999999", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen fd:99999999999: fd 99999999999 is out of range",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-inherit-empty",
        args: &["-l", "inherit:", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen inherit:: inherit: needs the NAME of an inherited socket",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-vsock-bad-cid",
        args: &["-l", "vsock:x:1", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen vsock:x:1: vsock CID 'x' is not a number, any, hypervisor, local or host",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-option-unknown",
        args: &["-l", "tcp::80,bogus", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp::80,bogus: unknown option 'bogus' (known: backlog=N, reuseport, v6only, dualstack, freebind, rcvbuf=N, sndbuf=N, nodelay, keepalive, defer_accept=SECONDS, fastopen=N, bind_device=IFACE, mark=N, mode=MODE, owner=USER, group=GROUP, mkdir[=MODE])",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-option-twice",
        args: &["-l", "tcp::80,v6only,dualstack", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp::80,v6only,dualstack: option 'dualstack' given twice",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-option-non-utf8",
        args: &["-l", "tcp::80,{xff}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen \"tcp::80,\\xFF\": option is not valid UTF-8",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-backlog-zero",
        args: &["-l", "tcp::80,backlog=0", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp::80,backlog=0: backlog '0' is not a number from 1 to 2147483647",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-backlog-on-udp",
        args: &["-l", "udp::53,backlog=5", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen udp::53,backlog=5: backlog applies only to listening sockets (tcp, unix, unixpacket, vsock, vsock-seqpacket)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "spec-v6only-on-ipv4",
        args: &["-l", "tcp4::80,v6only", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen tcp4::80,v6only: v6only applies only to IPv6 sockets",
        code: 2,
        after: After::Untouched,
    },
    // ---- Names (systemd's FileDescriptorName= rules)
    Row {
        id: "name-with-colon",
        args: &["-l", "inherit:a:b", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen inherit:a:b: name must not contain ':'",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "name-control-byte",
        args: &["--fdname", "a\x1bb", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --fdname \"a\\u{1b}b\": name contains the byte 0x1b; only printable ASCII is allowed",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "name-non-utf8",
        args: &["-l", "n{xff}=8080", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen \"n\\xFF=8080\": name contains the byte 0xff; only printable ASCII is allowed",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "name-256-bytes",
        args: &["--fdname", "{n256}", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --fdname {n256}: name is 256 bytes long, at most 255 are allowed",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "name-duplicate-is-allowed",
        args: &["-l", "web={q}", "-l", "web={q}2", "--", "{probe}"],
        env: NOENV,
        setup: NONE,
        stderr: "",
        code: 0,
        after: After::Ran(&[], |r| r.assert_protocol(&["web", "web"])),
    },
    Row {
        id: "fdname-count",
        args: &["--fdname", "a:b", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --fdname gives 2 names for 1 sockets (give one name, or one per socket)",
        code: 2,
        after: After::Untouched,
    },
    // ---- The same address twice
    Row {
        id: "address-twice-same-spelling",
        args: &["-l", "8080", "-l", "tcp::8080", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: tcp::8080 is given twice",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "address-twice-tcp-tcp4",
        args: &["-l", "tcp:127.0.0.1:9", "-l", "tcp4:127.0.0.1:9", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: tcp:127.0.0.1:9 and tcp4:127.0.0.1:9 are the same address",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "address-twice-localhost",
        args: &["-l", "localhost:9", "-l", "127.0.0.1:9", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: tcp:localhost:9 and tcp:127.0.0.1:9 are the same address",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "address-twice-relative-path",
        args: &["-l", "unix:./s.sock", "-l", "unix:{dir}/s.sock", "true"],
        env: NOENV,
        setup: &[Setup::InDir],
        stderr: "gracewrap: unix:./s.sock and unix:{dir}/s.sock are the same address",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "restart-without-pid-file",
        args: &["--restart"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --restart needs --pid-file PATH: the pid file of the supervisor to restart",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "restart-with-a-program",
        args: &["--restart", "--pid-file", "{dir}/gw.pid", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --restart takes only --pid-file PATH, not PROGRAM",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "restart-pid-file-missing",
        args: &["--restart", "--pid-file", "{dir}/gw.pid"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot read --pid-file {dir}/gw.pid: no such file or directory",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "ready-unknown",
        args: &["-s", "--ready", "soon", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --ready soon: expected auto, notify, listen or delay:DUR",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "ready-without-supervise",
        args: &["--ready", "listen", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --ready applies only to --supervise",
        code: 2,
        after: After::Untouched,
    },
    // Overlapping, not equal: caught when the second bind fails, and
    // blamed on the first spec, not on "a server".
    Row {
        id: "address-overlaps-a-wildcard",
        args: &[
            "-l",
            "tcp:127.0.0.1:{port}",
            "-l",
            "tcp:[::]:{port}",
            "true",
        ],
        env: NOENV,
        setup: &[Setup::FreePort],
        stderr: "gracewrap: cannot bind tcp:[::]:{port}: tcp:127.0.0.1:{port}, given before it, holds that address",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "address-overlaps-all-interfaces",
        args: &[
            "-l",
            "udp:0.0.0.0:{port}",
            "-l",
            "udp:127.0.0.1:{port}",
            "true",
        ],
        env: NOENV,
        setup: &[Setup::FreePort],
        stderr: "gracewrap: cannot bind udp:127.0.0.1:{port}: udp:0.0.0.0:{port}, given before it, holds that address",
        code: 2,
        after: After::Untouched,
    },
    // A control character never reaches the terminal raw: every message
    // escapes them.
    Row {
        id: "control-character-in-a-message",
        args: &["-l", "tcp:127.0.0.1:0,bind_device=e\u{1b}[31mx", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen \"tcp:127.0.0.1:0,bind_device=e\\u{1b}[31mx\": bind_device 'e\\u{1b}[31mx' is not a network interface name",
        code: 2,
        after: After::Untouched,
    },
    // ---- Binding: 125, nothing of the user's touched
    Row {
        id: "eaddrinuse-tcp",
        args: &["-l", "tcp:127.0.0.1:{port}", "true"],
        env: NOENV,
        setup: &[Setup::BusyTcp],
        stderr: "gracewrap: cannot bind tcp:127.0.0.1:{port}: address already in use",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "eaddrinuse-second-spec",
        args: &[
            "-l",
            "unix:{dir}/mine.sock",
            "-l",
            "tcp:127.0.0.1:{port}",
            "true",
        ],
        env: NOENV,
        setup: &[Setup::BusyTcp],
        stderr: "gracewrap: cannot bind tcp:127.0.0.1:{port}: address already in use",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "eaddrinuse-abstract",
        args: &["-l", "{q}", "true"],
        env: NOENV,
        setup: &[Setup::BusyAbstract],
        stderr: "gracewrap: cannot bind {q}: address already in use (an abstract name is never stale: another process holds it)",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "eaddrinuse-live-unix-socket",
        args: &["-l", "unix:{dir}/s.sock", "true"],
        env: NOENV,
        setup: &[Setup::LiveUnix],
        stderr: "gracewrap: cannot bind unix:{dir}/s.sock: address already in use (a server is listening on it)",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "eacces-privileged-port",
        args: &["-l", "tcp:127.0.0.1:81", "true"],
        env: NOENV,
        setup: &[Setup::Unprivileged],
        stderr: "gracewrap: cannot bind tcp:127.0.0.1:81: permission denied",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "eacces-unix-directory",
        args: &["-l", "unix:{dir}/locked/s.sock", "true"],
        env: NOENV,
        setup: &[Setup::LockedDir, Setup::Unprivileged],
        stderr: "gracewrap: cannot bind unix:{dir}/locked/s.sock: permission denied",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "eaddrnotavail",
        args: &["-l", "tcp:192.0.2.1:80", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot bind tcp:192.0.2.1:80: cannot assign requested address",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "unknown-interface",
        args: &["-l", "tcp:[fe80::1%gwnosuch0]:80", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot bind tcp:[fe80::1%gwnosuch0]:80: no network interface named gwnosuch0",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "unix-path-is-a-regular-file",
        args: &["-l", "unix:{dir}/s.sock", "true"],
        env: NOENV,
        setup: &[Setup::File],
        stderr: "gracewrap: cannot bind unix:{dir}/s.sock: the path exists and is a regular file; gracewrap only replaces stale sockets",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "unix-path-is-a-directory",
        args: &["-l", "unix:{dir}/s.sock", "true"],
        env: NOENV,
        setup: &[Setup::Dir],
        stderr: "gracewrap: cannot bind unix:{dir}/s.sock: the path exists and is a directory; gracewrap only replaces stale sockets",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "unix-path-is-a-symlink",
        args: &["-l", "unix:{dir}/s.sock", "true"],
        env: NOENV,
        setup: &[Setup::Symlink],
        stderr: "gracewrap: cannot bind unix:{dir}/s.sock: the path exists and is a symbolic link; gracewrap only replaces stale sockets",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "unix-path-is-a-dangling-symlink",
        args: &["-l", "unix:{dir}/s.sock", "true"],
        env: NOENV,
        setup: &[Setup::Dangling],
        stderr: "gracewrap: cannot bind unix:{dir}/s.sock: the path exists and is a symbolic link; gracewrap only replaces stale sockets",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "unix-missing-directory",
        args: &["-l", "unix:{dir}/no/s.sock", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot bind unix:{dir}/no/s.sock: no such file or directory",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "unix-non-utf8-path-in-message",
        args: &["-l", "unix:{dir}/no/{xff}.sock", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot bind unix:{dir}/no/\\xff.sock: no such file or directory",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "unix-non-utf8-path-is-allowed",
        args: &["-l", "unix:{dir}/{xff}.sock", "--", "{probe}"],
        env: NOENV,
        setup: NONE,
        stderr: "",
        code: 0,
        after: After::Ran(&["\u{fffd}.sock"], |r| {
            r.assert_protocol(&["unknown"]);
            assert!(r.fd(3).get("addr").ends_with("/\\xff.sock"), "{r:?}");
        }),
    },
    // ---- fd:N
    Row {
        id: "fd-closed",
        args: &["-l", "fd:9", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: fd:9: fd 9 is not open",
        code: 125,
        after: After::Untouched,
    },
    // Issue 12, 17: the copy of fd 0 used to land on the closed fd 3,
    // which fd:3 then took over.
    Row {
        id: "fd-closed-where-a-copy-of-stdin-would-land",
        args: &["-l", "fd:0", "-l", "fd:3", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: fd:3: fd 3 is not open",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "fd-is-a-file",
        args: &["-l", "fd:8", "true"],
        env: NOENV,
        setup: &[Setup::FileAt(8)],
        stderr: "gracewrap: fd:8: fd 8 is not a socket",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "fd-not-listening-is-passed-on",
        args: &["-l", "fd:7", "--", "{probe}"],
        env: NOENV,
        setup: &[Setup::UnboundAt(7)],
        stderr: "",
        code: 0,
        after: After::Ran(&[], |r| {
            r.assert_protocol(&["unknown"]);
            assert_eq!(r.fd(3).get("listening"), "0", "{r:?}");
        }),
    },
    // Issue 12, 12: a failed --accept start left O_NONBLOCK set on the
    // caller's listener (the row checks its flags afterwards).
    Row {
        id: "accept-start-fails-after-taking-a-listener",
        args: &["-a", "-l", "fd:7", "--", "{dir}/no-such-program"],
        env: NOENV,
        setup: &[Setup::ListenerAt(7)],
        stderr: "gracewrap: cannot execute {dir}/no-such-program: no such file or directory",
        code: 127,
        after: After::Untouched,
    },
    Row {
        id: "accept-chdir-missing-after-taking-a-listener",
        args: &["-a", "-l", "fd:7", "--chdir", "{dir}/missing", "--", "true"],
        env: NOENV,
        setup: &[Setup::ListenerAt(7)],
        stderr: "gracewrap: cannot change directory to {dir}/missing: no such file or directory",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "fd-not-listening-with-accept",
        args: &["-a", "-l", "fd:7", "-l", "fd:8", "true"],
        env: NOENV,
        setup: &[Setup::ListenerAt(7), Setup::UdpAt(8)],
        stderr: "gracewrap: --accept needs listening sockets; udp:127.0.0.1:{port} (fd 8) is not one",
        code: 125,
        after: After::Untouched,
    },
    // ---- Inherited LISTEN_* variables
    Row {
        id: "listen-fds-not-a-number",
        args: &["true"],
        env: &[("LISTEN_FDS", "abc")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS=abc is not a number",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fds-empty",
        args: &["true"],
        env: &[("LISTEN_FDS", "")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS= is not a number",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fds-zero",
        args: &["true"],
        env: &[("LISTEN_FDS", "0")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS=0 is out of range (1 to 2147483644)",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fds-negative",
        args: &["true"],
        env: &[("LISTEN_FDS", "-1")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS=-1 is out of range (1 to 2147483644)",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fds-too-large",
        args: &["true"],
        env: &[("LISTEN_FDS", "2147483645")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS=2147483645 is out of range (1 to 2147483644)",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fds-overflows-i64",
        args: &["true"],
        env: &[("LISTEN_FDS", "99999999999999999999")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS=99999999999999999999 is not a number",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fds-fd-not-open",
        args: &["true"],
        env: &[("LISTEN_FDS", "2")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS=2 but fd 4 is not open",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fds-huge-fails-fast",
        args: &["true"],
        env: &[("LISTEN_FDS", "100000")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS=100000 but fd 100002 is not open",
        code: 125,
        after: After::Untouched,
    },
    // Issue 12, 7: 51 GB of names were allocated before the check.
    Row {
        id: "listen-fds-largest-fails-fast",
        args: &["true"],
        env: &[("LISTEN_FDS", "2147483644")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDS=2147483644 but fd 2147483646 is not open",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-pid-not-a-pid",
        args: &["true"],
        env: &[("LISTEN_PID", "abc"), ("LISTEN_FDS", "1")],
        setup: &[Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_PID=abc is not a process id",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-pid-zero",
        args: &["true"],
        env: &[("LISTEN_PID", "0"), ("LISTEN_FDS", "1")],
        setup: &[Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_PID=0 is not a process id",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-pid-negative",
        args: &["true"],
        env: &[("LISTEN_PID", "-5"), ("LISTEN_FDS", "1")],
        setup: &[Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_PID=-5 is not a process id",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-pid-empty",
        args: &["true"],
        env: &[("LISTEN_PID", ""), ("LISTEN_FDS", "1")],
        setup: &[Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_PID= is not a process id",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-pid-someone-else",
        args: &["true"],
        env: &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")],
        setup: &[Setup::ListenerAt(3)],
        stderr: "gracewrap: no sockets: give --listen, or run gracewrap where LISTEN_FDS is set for it (LISTEN_FDS was ignored: LISTEN_PID=1 is not gracewrap's pid ({gwpid}))",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "listen-pidfdid-not-a-number",
        args: &["true"],
        env: &[("LISTEN_FDS", "1"), ("LISTEN_PIDFDID", "xyz")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_PIDFDID=xyz is not a number",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fdnames-count",
        args: &["true"],
        env: &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "a:b")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDNAMES has 2 names for LISTEN_FDS=1 fds (libsystemd refuses this too)",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-fdnames-control-byte",
        args: &["true"],
        env: &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "a\tb")],
        setup: &[Setup::Activated, Setup::ListenerAt(3)],
        stderr: "gracewrap: LISTEN_FDNAMES: name contains the byte 0x09; only printable ASCII is allowed",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "listen-other-variables-are-dropped",
        args: &["-l", "{q}", "--", "{probe}"],
        env: &[
            ("LISTEN_FDS_FIRST_FD", "x"),
            ("GRACEWRAP_HANDOFF", "x"),
            ("LISTEN_FDNAMES", "a:b:c"),
        ],
        setup: NONE,
        stderr: "",
        code: 0,
        after: After::Ran(&[], |r| {
            r.assert_protocol(&["unknown"]);
            assert_eq!(r.env("GRACEWRAP_HANDOFF"), None);
        }),
    },
    // ---- Limits
    Row {
        id: "nofile-too-low",
        args: &[
            "-l", "{q}1", "-l", "{q}2", "-l", "{q}3", "-l", "{q}4", "-l", "{q}5", "-l", "{q}6",
            "-l", "{q}7", "-l", "{q}8", "-l", "{q}9", "true",
        ],
        env: NOENV,
        setup: &[Setup::Ulimit(12)],
        stderr: "gracewrap: 9 sockets need 13 file descriptors, but RLIMIT_NOFILE allows only 12",
        code: 125,
        after: After::Untouched,
    },
    // ---- PROGRAM
    Row {
        id: "program-missing",
        args: &["-l", "{q}", "--"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: missing PROGRAM (see gracewrap --help)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "program-empty",
        args: &["-l", "{q}", "--", ""],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: PROGRAM is an empty string",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "program-not-in-path",
        args: &["-l", "unix:{dir}/s.sock", "--", "no-such-program-gracewrap"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot execute no-such-program-gracewrap: not found in PATH",
        code: 127,
        after: After::Untouched,
    },
    Row {
        id: "program-path-missing",
        args: &["-l", "{q}", "--", "{dir}/nothing"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot execute {dir}/nothing: no such file or directory",
        code: 127,
        after: After::Untouched,
    },
    Row {
        id: "program-not-executable",
        args: &["-l", "{q}", "--", "{dir}/prog"],
        env: NOENV,
        setup: &[Setup::NoExec],
        stderr: "gracewrap: cannot execute {dir}/prog: permission denied",
        code: 126,
        after: After::Untouched,
    },
    Row {
        id: "program-is-a-directory",
        args: &["-l", "{q}", "--", "{dir}"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot execute {dir}: is a directory",
        code: 126,
        after: After::Untouched,
    },
    Row {
        id: "program-interpreter-missing",
        args: &["-l", "{q}", "--", "{dir}/prog"],
        env: NOENV,
        setup: &[Setup::BadInterp],
        stderr: "gracewrap: cannot execute {dir}/prog: its interpreter /no/such/interpreter was not found",
        code: 127,
        after: After::Untouched,
    },
    Row {
        id: "program-missing-supervise",
        args: &[
            "-s",
            "-l",
            "unix:{dir}/s.sock",
            "--",
            "no-such-program-gracewrap",
        ],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot execute no-such-program-gracewrap: not found in PATH",
        code: 127,
        after: After::Untouched,
    },
    Row {
        id: "program-not-executable-accept",
        args: &["-a", "-l", "unix:{dir}/s.sock", "--", "{dir}/prog"],
        env: NOENV,
        setup: &[Setup::NoExec],
        stderr: "gracewrap: cannot execute {dir}/prog: permission denied",
        code: 126,
        after: After::Untouched,
    },
    // ---- Options
    Row {
        id: "stop-timeout-not-a-duration",
        args: &["-s", "--stop-timeout", "soon", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --stop-timeout soon: expected a duration such as 10s, 500ms or 2m",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "stop-timeout-negative",
        args: &["-s", "--stop-timeout", "-1s", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --stop-timeout -1s: expected a duration such as 10s, 500ms or 2m",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "stop-timeout-over-a-day",
        args: &["-s", "--stop-timeout=25h", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --stop-timeout 25h: expected a duration such as 10s, 500ms or 2m",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "stop-timeout-empty",
        args: &["-s", "--stop-timeout=", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --stop-timeout \"\": expected a duration such as 10s, 500ms or 2m",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "stop-timeout-without-supervise",
        args: &["--stop-timeout", "1s", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --stop-timeout applies only to --supervise",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "supervise-with-accept",
        args: &["-s", "-a", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --supervise and --accept cannot be combined",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "supervise-with-inetd",
        args: &["-s", "--inetd", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --supervise and --inetd cannot be combined",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "datagram-with-accept",
        args: &["-d", "-a", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --datagram cannot be combined with --accept (datagram sockets do not accept connections)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "lazy-with-now",
        args: &["--lazy", "--now", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --now and --lazy cannot be combined",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "restart-signal-term",
        args: &["-s", "--restart-signal", "TERM", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --restart-signal TERM: SIGTERM cannot be the restart signal (gracewrap acts on it itself)",
        code: 2,
        after: After::Untouched,
    },
    // Issue 12, 6: signal-hook refuses to catch these and panicked after
    // the sockets were bound.
    Row {
        id: "restart-signal-fault",
        args: &["-s", "--restart-signal", "SEGV", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --restart-signal SEGV: SIGSEGV cannot be the restart signal (it reports a fault)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "restart-signal-fault-by-number",
        args: &[
            "-s",
            "--restart-signal",
            "4",
            "-l",
            "unix:{dir}/s.sock",
            "true",
        ],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --restart-signal 4: SIGILL cannot be the restart signal (it reports a fault)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "restart-signal-uncatchable",
        args: &["-s", "--restart-signal", "kill", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --restart-signal kill: SIGKILL cannot be the restart signal (it cannot be caught)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "restart-signal-libc-internal",
        args: &["-s", "--restart-signal", "32", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --restart-signal 32: signal 32 cannot be the restart signal (the C library keeps it for its threads)",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "max-connections-zero",
        args: &["-a", "--max-connections", "0", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --max-connections 0: expected a number of at least 1",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "max-connections-per-source-zero",
        args: &[
            "-a",
            "--max-connections-per-source",
            "0",
            "-l",
            "{q}",
            "true",
        ],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --max-connections-per-source 0: expected a number of at least 1",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "max-connections-per-source-without-accept",
        args: &["--max-connections-per-source", "4", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --max-connections-per-source applies only to --accept",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "setenv-remote-addr-with-accept",
        args: &["-a", "-E", "REMOTE_ADDR=x", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --setenv cannot set REMOTE_ADDR with --accept: gracewrap sets it for each connection",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "watchdog-bad-value",
        args: &["-s", "--watchdog", "soon", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --watchdog soon: expected a duration such as 10s, 500ms or 2m",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "watchdog-without-supervise",
        args: &["--watchdog", "1s", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --watchdog applies only to --supervise",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "fdstore-too-big",
        args: &["-s", "--fdstore", "4097", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --fdstore 4097: expected a number from 0 to 4096",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "fdstore-negative",
        args: &["-s", "--fdstore=-1", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --fdstore -1: expected a number from 0 to 4096",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "inherited-bad-value",
        args: &["--inherited=keep", "-l", "{q}", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --inherited keep: expected pass or drop",
        code: 2,
        after: After::Untouched,
    },
    // Issue 12, 3: a --pid-file that names another server's live socket
    // was replaced by the pid, then deleted.
    Row {
        id: "pid-file-is-a-live-socket",
        args: &[
            "-s",
            "--pid-file",
            "{dir}/s.sock",
            "-l",
            "{q}",
            "--",
            "true",
        ],
        env: NOENV,
        setup: &[Setup::LiveUnix],
        stderr: "gracewrap: cannot write --pid-file {dir}/s.sock: it exists and is not a regular file (left as it is)",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "pid-file-is-a-symlink",
        args: &[
            "-s",
            "--pid-file",
            "{dir}/s.sock",
            "-l",
            "{q}",
            "--",
            "true",
        ],
        env: NOENV,
        setup: &[Setup::Symlink],
        stderr: "gracewrap: cannot write --pid-file {dir}/s.sock: it exists and is not a regular file (left as it is)",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "pid-file-unwritable",
        args: &[
            "-s",
            "--pid-file",
            "{dir}/no/gw.pid",
            "-l",
            "unix:{dir}/s.sock",
            "true",
        ],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot write --pid-file {dir}/no/gw.pid: its directory: no such file or directory",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "user-unknown",
        args: &[
            "--user",
            "no-such-user-gw",
            "-l",
            "unix:{dir}/s.sock",
            "true",
        ],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --user no-such-user-gw: no such user in /etc/passwd",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "group-unknown",
        args: &[
            "--user",
            "nobody:no-such-group-gw",
            "-l",
            "unix:{dir}/s.sock",
            "true",
        ],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: --group no-such-group-gw: no such group in /etc/group",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "user-and-group-twice",
        args: &[
            "--user",
            "nobody:daemon",
            "--group",
            "daemon",
            "-l",
            "{q}",
            "true",
        ],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: give the group either as --user USER:GROUP or with --group, not both",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "chdir-missing",
        args: &[
            "--chdir",
            "{dir}/nowhere",
            "-l",
            "unix:{dir}/s.sock",
            "true",
        ],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot change directory to {dir}/nowhere: no such file or directory",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "socket-owner-unknown",
        args: &["-l", "unix:{dir}/s.sock,owner=no-such-user-gw", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: cannot bind unix:{dir}/s.sock: owner=no-such-user-gw: no such user in /etc/passwd",
        code: 125,
        after: After::Untouched,
    },
    Row {
        id: "socket-mode-too-wide",
        args: &["-l", "unix:{dir}/s.sock,mode=4755", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen unix:{dir}/s.sock,mode=4755: mode '4755' is not an octal mode from 0 to 0777",
        code: 2,
        after: After::Untouched,
    },
    Row {
        id: "socket-option-wrong-type",
        args: &["-l", "udp:127.0.0.1:0,nodelay", "true"],
        env: NOENV,
        setup: NONE,
        stderr: "gracewrap: invalid --listen udp:127.0.0.1:0,nodelay: nodelay applies only to tcp sockets",
        code: 2,
        after: After::Untouched,
    },
];

/// Rows of docs/bad-input.md without a test yet, with the reason.
const PENDING: &[(&str, &str)] = &[];

/// The environment variable every run gets, to see it pass through.
const SENTINEL: (&str, &str) = ("GRACEWRAP_MATRIX_SENTINEL", "kept");

/// One row's world: its directory, what it holds open, its substitutions.
struct Ctx {
    dir: PathBuf,
    q: String,
    port: u16,
    /// Sockets the row hands to gracewrap (or holds busy), by fd number
    /// in gracewrap (-1: only held), with their state before.
    sockets: Vec<(i32, OwnedFd, SockState)>,
    /// The file at fd 20 of gracewrap, held here too.
    held: File,
}

#[derive(Debug, PartialEq)]
struct SockState {
    addr: String,
    listening: bool,
    flags: String,
}

fn sock_state(fd: impl AsFd) -> SockState {
    let fd = fd.as_fd();
    SockState {
        addr: format!("{:?}", rustix::net::getsockname(fd).ok()),
        listening: rustix::net::sockopt::socket_acceptconn(fd).unwrap_or(false),
        flags: format!("{:?}", rustix::fs::fcntl_getfl(fd).ok()),
    }
}

impl Ctx {
    fn subst(&self, text: &str) -> OsString {
        let text = text
            .replace("{dir}", self.dir.to_str().unwrap())
            .replace("{q}", &self.q)
            .replace("{port}", &self.port.to_string())
            .replace("{probe}", probe().to_str().unwrap())
            .replace("{n256}", &n256())
            .replace("{p108}", &p108());
        let mut bytes = Vec::new();
        for (i, part) in text.split("{xff}").enumerate() {
            if i > 0 {
                bytes.push(0xff);
            }
            bytes.extend_from_slice(part.as_bytes());
        }
        OsString::from_vec(bytes)
    }

    fn hand(&mut self, fd: i32, sock: OwnedFd) {
        let state = sock_state(&sock);
        self.sockets.push((fd, sock, state));
    }
}

/// The directory as it is: path -> (type, inode, content or link target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let (kind, body) = if ft.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&p).unwrap().into_os_string().into_vec(),
                )
            } else if ft.is_dir() {
                todo.push(p.clone());
                ("dir", Vec::new())
            } else if ft.is_file() {
                ("file", std::fs::read(&p).unwrap())
            } else if ft.is_socket() {
                ("socket", Vec::new())
            } else {
                ("other", Vec::new())
            };
            out.insert(p, (format!("{kind} {:o}", m.mode()), m.ino(), body));
        }
    }
    out
}

fn prepare(row: &Row, n: usize) -> (Ctx, Command) {
    let dir = temp_dir(&format!("matrix-{n}"));
    let held_path = dir.join("held");
    std::fs::write(&held_path, "held by the test\n").unwrap();
    let mut held = File::open(&held_path).unwrap();
    held.seek(SeekFrom::Start(5)).unwrap();
    let mut ctx = Ctx {
        q: format!("unix:@gracewrap-matrix-{}-{n}", std::process::id()),
        port: 0,
        dir,
        sockets: Vec::new(),
        held,
    };
    let d = ctx.dir.clone();
    for s in row.setup {
        match *s {
            Setup::FreePort => loop {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = l.local_addr().unwrap().port();
                if std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok() {
                    ctx.port = port;
                    break;
                }
            },
            Setup::BusyTcp => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                ctx.port = l.local_addr().unwrap().port();
                ctx.hand(-1, l.into());
            }
            Setup::BusyAbstract => {
                use std::os::linux::net::SocketAddrExt;
                let name = ctx.q.strip_prefix("unix:@").unwrap();
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
                ctx.hand(-1, UnixListener::bind_addr(&a).unwrap().into());
            }
            Setup::LiveUnix => {
                let l = UnixListener::bind(d.join("s.sock")).unwrap();
                ctx.hand(-1, l.into());
            }
            Setup::File => std::fs::write(d.join("s.sock"), "precious").unwrap(),
            Setup::Dir => {
                std::fs::create_dir(d.join("s.sock")).unwrap();
                std::fs::write(d.join("s.sock/inside"), "x").unwrap();
            }
            Setup::Symlink => {
                std::fs::write(d.join("target"), "precious").unwrap();
                std::os::unix::fs::symlink(d.join("target"), d.join("s.sock")).unwrap();
            }
            Setup::Dangling => {
                std::os::unix::fs::symlink(d.join("nowhere"), d.join("s.sock")).unwrap()
            }
            Setup::FileAt(_) => std::fs::write(d.join("f"), "a file, not a socket").unwrap(),
            Setup::UnboundAt(fd) => {
                // CLOEXEC: tests run in parallel, and an fd without it
                // would leak into every process another test starts.
                let s = rustix::net::socket_with(
                    rustix::net::AddressFamily::INET,
                    rustix::net::SocketType::STREAM,
                    rustix::net::SocketFlags::CLOEXEC,
                    None,
                )
                .unwrap();
                ctx.hand(fd, s);
            }
            Setup::ListenerAt(fd) => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                ctx.hand(fd, l.into());
            }
            Setup::UdpAt(fd) => {
                let u = UdpSocket::bind("127.0.0.1:0").unwrap();
                ctx.port = u.local_addr().unwrap().port();
                ctx.hand(fd, u.into());
            }
            Setup::LockedDir => {
                std::fs::create_dir(d.join("locked")).unwrap();
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
                std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            Setup::NoExec => {
                std::fs::write(d.join("prog"), "#!/bin/sh\necho ran\n").unwrap();
                std::fs::set_permissions(d.join("prog"), std::fs::Permissions::from_mode(0o644))
                    .unwrap();
            }
            Setup::BadInterp => {
                std::fs::write(d.join("prog"), "#!/no/such/interpreter\necho ran\n").unwrap();
                std::fs::set_permissions(d.join("prog"), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            Setup::Activated | Setup::Ulimit(_) | Setup::Unprivileged | Setup::InDir => {}
        }
    }
    let args: Vec<OsString> = row.args.iter().map(|a| ctx.subst(a)).collect();
    // The command line: gracewrap itself, or through sh (LISTEN_PID=$$,
    // ulimit) and setpriv, which all exec it in the same process.
    let mut script = String::new();
    for s in row.setup {
        match s {
            Setup::Ulimit(n) => script.push_str(&format!("ulimit -n {n} && ")),
            Setup::Activated => script.push_str("LISTEN_PID=$$ "),
            _ => {}
        }
    }
    let mut argv: Vec<OsString> = Vec::new();
    if row.setup.contains(&Setup::Unprivileged) {
        argv.extend(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ]
            .map(OsString::from),
        );
    }
    argv.push(gracewrap_path().into());
    argv.extend(args);
    let mut cmd = if script.is_empty() {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    } else {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{script}exec \"$@\""))
            .arg("sh")
            .args(&argv);
        cmd
    };
    for (k, v) in row.env {
        cmd.env(k, v);
    }
    cmd.env(SENTINEL.0, SENTINEL.1);
    if row.setup.contains(&Setup::InDir) {
        cmd.current_dir(&ctx.dir);
    }
    for s in row.setup {
        if let Setup::FileAt(fd) = s {
            let f = File::open(ctx.dir.join("f")).unwrap();
            with_fd_at(&mut cmd, &f, *fd);
        }
    }
    for (fd, sock, _) in &ctx.sockets {
        if *fd >= 0 {
            with_fd_at(&mut cmd, sock, *fd);
        }
    }
    with_fd_at(&mut cmd, &ctx.held, 20);
    (ctx, cmd)
}

/// Runs one row; returns what went wrong, if anything.
/// The OS reasons that end some lines of the table are glibc's
/// strerror(3); musl words a few differently. (Where gracewrap explains an
/// address in use itself, the words are its own on both.)
fn libc_wording(line: &str) -> String {
    if !cfg!(target_env = "musl") {
        return line.to_string();
    }
    [
        ("address already in use", "address in use"),
        ("cannot assign requested address", "address not available"),
    ]
    .iter()
    .find_map(|(glibc, musl)| Some(format!("{}{musl}", line.strip_suffix(glibc)?)))
    .unwrap_or_else(|| line.to_string())
}

fn check(row: &Row, n: usize) -> Result<(), String> {
    let (ctx, mut cmd) = prepare(row, n);
    let before = snapshot(&ctx.dir);
    let desc = format!("{cmd:?}");
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {desc}: {e}"))?;
    let gwpid = child.id();
    let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let shown = format!(
        "status {}\n--- stderr\n{stderr}--- stdout\n{stdout}",
        out.status
    );
    if stderr.contains("panicked") || out.status.signal().is_some() {
        return Err(format!("panicked or died by a signal: {shown}"));
    }
    let code = out.status.code().unwrap_or(-1);
    if code == 101 || code == 134 {
        return Err(format!("exit status {code} (a panic): {shown}"));
    }
    let want = libc_wording(
        &ctx.subst(row.stderr)
            .to_string_lossy()
            .replace("{gwpid}", &gwpid.to_string()),
    );
    if stderr.trim_end_matches('\n') != want || (!want.is_empty() && stderr.lines().count() != 1) {
        return Err(format!("stderr: want {want:?}\n{shown}"));
    }
    if code != row.code {
        return Err(format!("exit status: want {}\n{shown}", row.code));
    }
    // The directory: nothing changed, except what PROGRAM was given.
    let mut after = snapshot(&ctx.dir);
    if let After::Ran(created, verify) = row.after {
        for name in created {
            let found = after
                .keys()
                .find(|p| p.file_name().unwrap().to_string_lossy() == *name)
                .cloned()
                .ok_or_else(|| format!("PROGRAM's socket file {name} is missing: {after:?}"))?;
            after.remove(&found);
        }
        let report =
            Report::parse(&stdout).ok_or_else(|| format!("no report from PROGRAM\n{shown}"))?;
        if report.env(SENTINEL.0) != Some(SENTINEL.1) {
            return Err(format!("{} did not reach PROGRAM: {report:?}", SENTINEL.0));
        }
        for var in ["LISTEN_FDS_FIRST_FD", "GRACEWRAP_HANDOFF"] {
            if report.env(var).is_some() {
                return Err(format!("{var} reached PROGRAM: {report:?}"));
            }
        }
        let r = std::panic::catch_unwind(|| verify(&report));
        if let Err(e) = r {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("PROGRAM's view: {why}"));
        }
    }
    if after != before {
        return Err(format!(
            "the directory changed\nbefore {before:#?}\nafter {after:#?}\n{shown}"
        ));
    }
    // The file held at fd 20: the shared offset and flags are as before.
    let mut held = &ctx.held;
    let offset = held.stream_position().unwrap();
    let flags = rustix::fs::fcntl_getfl(held).unwrap();
    if offset != 5 || flags.contains(rustix::fs::OFlags::NONBLOCK) {
        return Err(format!("the held file moved to {offset} or got {flags:?}"));
    }
    // Sockets handed over or held busy: same address, same listening
    // state, same flags, and a listener still takes a connection.
    for (fd, sock, state) in &ctx.sockets {
        let now = sock_state(sock);
        if &now != state {
            return Err(format!("socket at {fd} changed: {state:?} -> {now:?}"));
        }
        if state.listening && matches!(row.after, After::Untouched) {
            connect_to(sock)?;
        }
    }
    Ok(())
}

/// Connects to a listening socket the test holds, and accepts it.
fn connect_to(sock: &OwnedFd) -> Result<(), String> {
    let addr = rustix::net::getsockname(sock).map_err(|e| e.to_string())?;
    if let Ok(inet) = std::net::SocketAddr::try_from(addr.clone()) {
        TcpStream::connect(inet).map_err(|e| format!("connect {inet}: {e}"))?;
    } else {
        let unix = rustix::net::SocketAddrUnix::try_from(addr).map_err(|e| e.to_string())?;
        let c = rustix::net::socket_with(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| e.to_string())?;
        rustix::net::connect(&c, &unix).map_err(|e| format!("connect {unix:?}: {e}"))?;
    }
    rustix::net::accept_with(sock, rustix::net::SocketFlags::CLOEXEC)
        .map_err(|e| format!("accept: {e}"))?;
    Ok(())
}

#[test]
fn every_row_gives_its_line_and_status_and_leaves_everything_as_it_was() {
    assert!(ROWS.len() >= 40, "only {} rows", ROWS.len());
    let mut ids: Vec<&str> = ROWS.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), ROWS.len(), "row ids must be unique");
    // The rows run in parallel, a few at a time, and all failures are
    // reported together.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ROWS
            .chunks(ROWS.len().div_ceil(4))
            .enumerate()
            .map(|(c, chunk)| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .filter_map(|(i, row)| {
                            check(row, c * 1000 + i)
                                .err()
                                .map(|e| format!("[{}] {e}", row.id))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n\n")
    );
}

// ---- docs/bad-input.md

const DOC: &str = "docs/bad-input.md";
const BEGIN: &str = "<!-- matrix: generated from tests/integration/matrix.rs -->";
const END: &str = "<!-- end of matrix -->";

fn md(text: &str) -> String {
    if text.is_empty() {
        return "(none)".into();
    }
    let text = text.replace('|', "\\|");
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn describe_setup(s: &Setup) -> String {
    match s {
        Setup::BusyTcp => "the test listens on PORT".into(),
        Setup::FreePort => "PORT was free".into(),
        Setup::BusyAbstract => "the test holds Q".into(),
        Setup::LiveUnix => "a live socket at DIR/s.sock".into(),
        Setup::File => "a regular file at DIR/s.sock".into(),
        Setup::Dir => "a directory at DIR/s.sock".into(),
        Setup::Symlink => "DIR/s.sock is a symlink to a file".into(),
        Setup::Dangling => "DIR/s.sock is a dangling symlink".into(),
        Setup::FileAt(fd) => format!("a regular file at fd {fd}"),
        Setup::UnboundAt(fd) => format!("an unbound TCP socket at fd {fd}"),
        Setup::ListenerAt(fd) => format!("a TCP listener at fd {fd}"),
        Setup::UdpAt(fd) => format!("a UDP socket at fd {fd}"),
        Setup::Activated => "LISTEN_PID=gracewrap's pid".into(),
        Setup::Ulimit(n) => format!("ulimit -n {n}"),
        Setup::Unprivileged => "as uid 65534 (setpriv)".into(),
        Setup::LockedDir => "DIR/locked is root's, 0755".into(),
        Setup::NoExec => "DIR/prog is mode 0644".into(),
        Setup::BadInterp => "DIR/prog starts #!/no/such/interpreter".into(),
        Setup::InDir => "working directory DIR".into(),
    }
}

fn describe_after(row: &Row) -> String {
    let mut what = Vec::new();
    match row.after {
        After::Untouched => what.push("DIR unchanged".to_string()),
        After::Ran([], _) => what.push("DIR unchanged; PROGRAM's view".to_string()),
        After::Ran(..) => what.push("DIR gains only PROGRAM's socket; PROGRAM's view".to_string()),
    }
    what.push("fd 20 offset and flags".into());
    let handed = row.setup.iter().any(|s| {
        matches!(
            s,
            Setup::BusyTcp
                | Setup::BusyAbstract
                | Setup::LiveUnix
                | Setup::UnboundAt(_)
                | Setup::ListenerAt(_)
                | Setup::UdpAt(_)
        )
    });
    if handed {
        what.push("the test's sockets: address, listening, flags, still answer".into());
    }
    if matches!(row.after, After::Ran(..)) {
        what.push("environment passes, LISTEN_* are gracewrap's".into());
    }
    what.join("; ")
}

fn doc_line(row: &Row) -> String {
    let mut input: Vec<String> = Vec::new();
    for (k, v) in row.env {
        input.push(format!("{k}={}", v.escape_debug()));
    }
    input.push("gracewrap".into());
    input.extend(row.args.iter().map(|a| {
        let a = a
            .replace("{dir}", "DIR")
            .replace("{q}", "Q")
            .replace("{port}", "PORT")
            .replace("{probe}", "probe")
            .replace("{xff}", "\\xff")
            .replace("{n256}", "n×256")
            .replace("{p108}", "/a×107");
        if a.is_empty() {
            "''".to_string()
        } else if a.contains([' ', '\t', '\x1b']) {
            format!("'{}'", a.escape_debug())
        } else {
            a
        }
    }));
    let setup: Vec<String> = row.setup.iter().map(describe_setup).collect();
    let setup = if setup.is_empty() {
        "".to_string()
    } else {
        format!(" ({})", setup.join(", "))
    };
    let stderr = row
        .stderr
        .replace("{dir}", "DIR")
        .replace("{q}", "Q")
        .replace("{port}", "PORT")
        .replace("{gwpid}", "PID")
        .replace("{n256}", "n×256")
        .replace("{p108}", "/a×107");
    format!(
        "| {} | {}{} | {} | {} | {} |",
        row.id,
        md(&input.join(" ")),
        setup,
        row.code,
        md(&stderr),
        describe_after(row)
    )
}

fn doc_table() -> String {
    let mut out = vec![
        BEGIN.to_string(),
        "| id | input | exit | stderr | checked afterwards |".into(),
        "|---|---|---|---|---|".into(),
    ];
    out.extend(ROWS.iter().map(doc_line));
    out.extend(
        PENDING
            .iter()
            .map(|(id, why)| format!("| {id} | {why} | pending | pending | pending |")),
    );
    out.push(END.into());
    out.join("\n")
}

/// docs/bad-input.md holds exactly the rows above (and the pending ones).
#[test]
fn doc_and_test_table_agree() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let want = doc_table();
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{DOC} lacks the {BEGIN} ... {END} section");
    };
    let have = &doc[b..e + END.len()];
    if have != want {
        if std::env::var_os("GRACEWRAP_WRITE_DOC").is_some() {
            let new = format!("{}{want}{}", &doc[..b], &doc[e + END.len()..]);
            std::fs::write(&path, new).unwrap();
            return;
        }
        let have_lines: Vec<&str> = have.lines().collect();
        let diff: Vec<String> = want
            .lines()
            .filter(|l| !have_lines.contains(l))
            .map(|l| format!("+ {l}"))
            .chain(
                have_lines
                    .iter()
                    .filter(|l| !want.lines().any(|w| w == **l))
                    .map(|l| format!("- {l}")),
            )
            .collect();
        panic!(
            "{DOC} and tests/integration/matrix.rs disagree (rerun with GRACEWRAP_WRITE_DOC=1 to rewrite the table):\n{}",
            diff.join("\n")
        );
    }
    // Every documented row id is tested or listed as pending.
    for line in have
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| id "))
    {
        let id = line[2..].split(" |").next().unwrap();
        assert!(
            ROWS.iter().any(|r| r.id == id) || PENDING.iter().any(|(p, _)| *p == id),
            "{id} is in {DOC} but not in the test"
        );
    }
}
