//! Command line: argv in, plain data out. Nothing here touches the OS.
//!
//! Option parsing stops at PROGRAM (POSIX style, like getopt's `+` in
//! systemd-socket-activate): `gracewrap -l 80 server -l x` passes `-l x`
//! to `server`. `--` before PROGRAM is optional.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use crate::msg::quote;
use crate::spec::{Spec, UnixKind, check_name};

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Version,
    Run(Box<Args>),
}

/// What happens to inherited sockets no `--listen` asked for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Inherited {
    /// Passed on at their positions (the default, as systemd-socket-activate).
    #[default]
    Pass,
    /// Closed; the rest are compacted.
    Drop,
}

/// Everything needed to run PROGRAM, as the user wrote it.
#[derive(Debug, Default)]
pub struct Args {
    /// `--listen` specs in command-line order (bare forms already retyped
    /// by `--datagram`/`--seqpacket`).
    pub listen: Vec<Spec>,
    /// `--fdname`: names for the passed sockets in fd order.
    pub fdnames: Option<Vec<String>>,
    /// `--inherited=pass|drop`.
    pub inherited: Inherited,
    /// `--accept`: one PROGRAM per connection.
    pub accept: bool,
    /// `--max-connections`: concurrent children in accept mode.
    pub max_connections: usize,
    /// `--inetd`: the socket (or connection) on stdin and stdout.
    pub inetd: bool,
    /// `--lazy`: exec only when the first connection or datagram arrives.
    pub lazy: bool,
    /// `--supervise` and its settings.
    pub supervise: Option<Supervise>,
    /// `--user USER[:GROUP]`: run PROGRAM as this user.
    pub user: Option<String>,
    /// `--group GROUP`: run PROGRAM with this group.
    pub group: Option<String>,
    /// `--chdir DIR`: run PROGRAM in this directory.
    pub chdir: Option<OsString>,
    /// `--setenv NAME[=VALUE]`; `None` copies our own value.
    pub setenv: Vec<(OsString, Option<OsString>)>,
    /// `--no-pid`: leave `LISTEN_PID` (and `LISTEN_PIDFDID`) unset.
    pub no_pid: bool,
    /// `--keep-fds`: do not close inherited fds that are not passed on.
    pub keep_fds: bool,
    /// `--keep-signals`: pass the caller's signal mask and ignored signals
    /// through instead of resetting them.
    pub keep_signals: bool,
    /// `--verbose`: report every socket on stderr.
    pub verbose: bool,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Supervisor settings (`--supervise`).
#[derive(Debug, Clone)]
pub struct Supervise {
    /// `--restart-signal` (SIGHUP).
    pub restart_signal: i32,
    /// `--ready-delay`: ready this long after start without READY=1.
    pub ready_delay: Option<Duration>,
    /// `--ready-timeout` (30 s): a new generation not ready by then is stopped.
    pub ready_timeout: Duration,
    /// `--stop-signal` (SIGTERM) for a generation being replaced or shut down.
    pub stop_signal: i32,
    /// `--stop-timeout` (10 s) before SIGKILL.
    pub stop_timeout: Duration,
    /// `--restart-on-exit`: start a new generation when the current one exits.
    pub restart_on_exit: bool,
    /// `--process-group`: each generation in its own process group, signalled as a group.
    pub process_group: bool,
    /// `--pid-file`.
    pub pid_file: Option<std::path::PathBuf>,
}

impl Default for Supervise {
    fn default() -> Self {
        Supervise {
            restart_signal: libc::SIGHUP,
            ready_delay: None,
            ready_timeout: Duration::from_secs(30),
            stop_signal: libc::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            restart_on_exit: false,
            process_group: false,
            pid_file: None,
        }
    }
}

/// Signal names gracewrap understands (with or without `SIG`, any case, or
/// a number), and prints.
const SIGNALS: [(&str, i32); 24] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("WINCH", libc::SIGWINCH),
    ("PWR", libc::SIGPWR),
];

/// `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Option<i32> {
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = SIGNALS.iter().find(|(s, _)| *s == name) {
        return Some(*n);
    }
    text.parse().ok().filter(|n| (1..=64).contains(n))
}

/// `SIGTERM` for 15, `signal 40` for what has no name.
pub fn signal_name(sig: i32) -> String {
    match SIGNALS.iter().find(|(_, n)| *n == sig) {
        Some((name, _)) => format!("SIG{name}"),
        None => format!("signal {sig}"),
    }
}

/// `10s`, `500ms`, `1.5s`, `2m`, or a plain number of seconds; at most a
/// day, which is plenty for any timeout or delay here. Decimal, exact to
/// the nanosecond (no floating point: its parser was 18 kB of the binary).
pub fn parse_duration(text: &str) -> Option<Duration> {
    const SEC: u128 = 1_000_000_000;
    let (num, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let per_unit = match unit {
        "ms" => SEC / 1000,
        "s" => SEC,
        "m" | "min" => 60 * SEC,
        "h" => 3600 * SEC,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    // Leading zeros cannot overflow; with at most 20 digits left, nothing
    // overflows a u128 before the check against a day below.
    let int = int.trim_start_matches('0');
    if int.len() > 20 {
        return None;
    }
    let whole = int.bytes().fold(0, |n, b| n * 10 + u128::from(b - b'0'));
    // Twelve decimals are below a nanosecond even in hours.
    let (part, scale) = frac
        .bytes()
        .take(12)
        .fold((0, 1), |(n, s), b| (n * 10 + u128::from(b - b'0'), s * 10));
    let nanos = whole * per_unit + part * per_unit / scale;
    (nanos <= 86_400 * SEC).then(|| Duration::from_nanos(nanos as u64))
}

/// A usage error: exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

/// `--max-connections` default: systemd-socket-proxyd's `--connections-max`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Variables gracewrap owns: removed from the inherited environment and
/// never settable with `--setenv`.
pub const LISTEN_VARS: [&str; 6] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "LISTEN_FDS_FIRST_FD",
    crate::inherit::HANDOFF_VAR,
];

pub const HELP: &str = "\
gracewrap - bind listening sockets, hand them over at fd 3.. the systemd way, exec PROGRAM

Usage: gracewrap [OPTIONS] [--listen [NAME=]SPEC ...] [--] PROGRAM [ARGS...]
       gracewrap -h | --help | -V | --version

Options (parsing stops at PROGRAM):
  -l, --listen [NAME=]SPEC  bind a socket; repeat for more. Inherited sockets (LISTEN_FDS
                            for our pid) keep fds 3.. and their names; an inherited
                            socket that matches SPEC (by NAME, else by address) is
                            reused, the others are bound and follow in command-line
                            order. NAME goes into LISTEN_FDNAMES ('unknown' if none)
      --inherited=pass|drop pass inherited sockets no --listen asked for on (default),
                            or close them and renumber the rest
  -E, --setenv NAME[=VALUE] set a variable for PROGRAM; a bare NAME copies ours
                            (the rest of the environment passes through anyway)
      --environment ...     the same (systemd-socket-activate's old name)
      --fdname NAME[:NAME]  name the passed sockets in fd order (one name: all of them)
      --user USER[:GROUP]   after binding, run PROGRAM as USER (name or uid; its groups
                            from /etc/group, or only GROUP); sets HOME, USER, LOGNAME
      --group GROUP         run PROGRAM with GROUP (name or gid) as its only group
      --chdir DIR           run PROGRAM in DIR (entered after dropping privileges)
      --no-pid              do not set LISTEN_PID/LISTEN_PIDFDID (for programs behind
                            an extra fork; libsystemd then ignores the sockets)
      --keep-fds            keep other inherited fds >= 3 open (default: close them)
      --keep-signals        pass our signal mask and ignored signals on (default: PROGRAM
                            starts with none blocked and none ignored, like under systemd)
  -v, --verbose             print 'listening on ADDRESS (fd N, name NAME)' per socket
                            (always printed when a port is 0)
  -h, --help                print this help and exit
  -V, --version             print the version and exit

Supervisor (gracewrap stays resident as PID 1 or under a service manager):
  -s, --supervise           run PROGRAM as a child on the sockets and restart it on
                            --restart-signal with zero dropped connections: a new
                            generation starts on the same sockets, the old one gets
                            --stop-signal only once the new one is ready
      --restart-signal SIG  the restart trigger (default HUP)
      --ready-delay DUR     count a generation ready DUR after start if it has not sent
                            READY=1 by then (default: only READY=1 on NOTIFY_SOCKET)
      --ready-timeout DUR   a new generation not ready by then is stopped, the old one
                            keeps serving (default 30s)
      --stop-signal SIG     sent to a generation being replaced or shut down (TERM)
      --stop-timeout DUR    then SIGKILL after DUR (default 10s; 0 = at once)
      --restart-on-exit     start a new generation when PROGRAM exits on its own
                            (backoff 0.1s doubling to 30s); default: exit with its status
      --process-group       each generation in its own process group (and the
                            terminal's foreground); signals go to the whole group
      --pid-file PATH       write gracewrap's pid there (atomically); removed on exit
  Signals: the restart signal restarts; TERM stops all generations (stop-signal,
  stop-timeout, KILL) and exits; INT QUIT USR1 USR2 WINCH TSTP TTIN TTOU CONT ALRM
  PWR URG are forwarded to the current generation. Exit status: PROGRAM's, or
  128+signal if a signal killed it. DUR: 10s, 500ms, 2m, or seconds.

systemd-socket-activate compatibility:
  -d, --datagram            bare SPECs (8080, /path) make datagram sockets
      --seqpacket           bare unix SPECs make seqpacket sockets
  -a, --accept              stay resident, accept connections, run PROGRAM once per
                            connection with it at fd 3 (LISTEN_FDNAMES=connection)
      --max-connections N   at most N PROGRAMs at once in --accept mode (default 256);
                            further connections wait in the backlog
      --inetd               the socket (with --accept: the connection) on stdin and
                            stdout instead of fd 3; no LISTEN_* variables
      --lazy                wait for the first connection or datagram, then exec
                            (systemd-socket-activate's default; gracewrap's is at once)
      --now                 exec at once (the default; accepted for compatibility)

SPEC ([NAME=]TYPE:ADDRESS[,OPTION...]):
  tcp:HOST:PORT       TCP; HOST: IPv4, [IPv6] or [IPv6%iface], localhost, or empty
  tcp4:HOST:PORT      (tcp::8080 = [::] dual-stack, or 0.0.0.0 without IPv6;
  tcp6:HOST:PORT       tcp4::8080 = 0.0.0.0; tcp6::8080 = [::] IPv6 only)
  udp:, udp4:, udp6:  the same for UDP (bound, not listening)
  unix:PATH           unix stream socket; PATH absolute or relative, @NAME abstract
  unixgram:PATH       unix datagram socket
  unixpacket:PATH     unix seqpacket socket (alias seqpacket:)
  vsock:CID:PORT      AF_VSOCK stream (vsock-dgram:, vsock-seqpacket:); CID a number,
                      any (or empty), hypervisor, local or host
  fd:N                an fd gracewrap already has open, passed on without rebinding
  inherit:NAME        the inherited socket(s) named NAME; an error if there is none
                      (NEW=inherit:NAME renames them)
  8080, 1.2.3.4:80, [::1]:80, /path, ./path, @name
                      systemd-socket-activate's forms (tcp, or unix stream)
  PORT 0 binds a free port and prints the real address. Hostnames other than
  localhost (= 127.0.0.1, or ::1 for tcp6/udp6) are not resolved. In a unix
  path, \\, is a comma and \\\\ a backslash
OPTION:
  backlog=N           listen(2) backlog (default: the kernel maximum, net.core.somaxconn)
  reuseport           set SO_REUSEPORT (tcp/udp only; off by default)
  v6only, dualstack   IPV6_V6ONLY on or off for IPv6 sockets (tcp: default dualstack)
  freebind            IP_FREEBIND: bind an address this host does not have (yet)
  rcvbuf=N, sndbuf=N  SO_RCVBUF, SO_SNDBUF in bytes (k, m suffixes)
  nodelay, keepalive  TCP_NODELAY, SO_KEEPALIVE (tcp; accepted sockets inherit them)
  defer_accept=SECS   TCP_DEFER_ACCEPT (tcp)
  fastopen=N          TCP_FASTOPEN queue length (tcp)
  bind_device=IFACE   SO_BINDTODEVICE (tcp/udp; needs CAP_NET_RAW)
  mark=N              SO_MARK (tcp/udp; needs CAP_NET_ADMIN)
  mode=MODE           unix socket file mode, e.g. 0660 (default: 0777 minus the umask,
                      as bind(2) makes it; connecting needs write permission)
  owner=USER, group=GROUP
                      unix socket file owner (its group defaults to USER's)
  mkdir[=MODE]        create missing parent directories (default mode 0755)
  SO_REUSEADDR is always set on TCP sockets. A stale unix socket file (nobody
  listening) is replaced; anything else at the path is an error, never deleted.

Environment given to PROGRAM: ours, minus inherited LISTEN_* variables, plus
LISTEN_FDS, LISTEN_PID, LISTEN_PIDFDID (when the kernel has pidfd ids) and LISTEN_FDNAMES.

Exit status: PROGRAM's own once it runs; 2 usage error; 125 gracewrap failed
before exec; 126 PROGRAM not executable; 127 PROGRAM not found.
See gracewrap(1) for details.
";

/// Parses the arguments after `argv[0]`.
pub fn parse(argv: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Parsed, UsageError> {
    use lexopt::prelude::*;

    let mut args = Args {
        max_connections: DEFAULT_MAX_CONNECTIONS,
        ..Args::default()
    };
    // Which specs were written in a bare form, for --datagram/--seqpacket,
    // which may come later on the command line.
    let mut bare_forms: Vec<bool> = Vec::new();
    let (mut datagram, mut seqpacket, mut now, mut max_given) = (false, false, false, false);
    // Supervisor settings given, and which flags gave them (they need -s).
    let mut sup_opts: Option<Supervise> = None;
    let mut sup_flags: Vec<&str> = Vec::new();
    let mut command: Vec<OsString> = Vec::new();
    // Room for every --listen up front: a Spec is a few hundred bytes, and
    // growing a vector of a thousand of them by doubling would leave as
    // much again in freed copies (RssAnon before exec is a target).
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    args.listen.reserve(argv.len() / 2);
    bare_forms.reserve(argv.len() / 2);
    let mut parser = lexopt::Parser::from_args(argv);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('l') | Long("listen") => {
                let value = parser.value()?;
                let (spec, bare) = Spec::parse_form(&value)
                    .map_err(|e| UsageError(format!("invalid --listen {}: {e}", quote(&value))))?;
                args.listen.push(spec);
                bare_forms.push(bare);
            }
            Short('E') | Long("setenv") | Long("environment") => {
                let value = parser.value()?;
                args.setenv.push(parse_setenv(value)?);
            }
            Long("fdname") => {
                let value = parser.value()?;
                let names = value
                    .as_encoded_bytes()
                    .split(|&b| b == b':')
                    .map(|n| check_name(n).map(str::to_owned))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| UsageError(format!("invalid --fdname {}: {e}", quote(&value))))?;
                args.fdnames.get_or_insert_with(Vec::new).extend(names);
            }
            Long("inherited") => {
                let value = parser.value()?;
                args.inherited = match value.to_str() {
                    Some("pass") => Inherited::Pass,
                    Some("drop") => Inherited::Drop,
                    _ => {
                        return Err(UsageError(format!(
                            "invalid --inherited {}: expected pass or drop",
                            quote(&value)
                        )));
                    }
                };
            }
            Long("max-connections") => {
                let value = parser.value()?;
                args.max_connections = value
                    .to_str()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| {
                        UsageError(format!(
                            "invalid --max-connections {}: expected a number of at least 1",
                            quote(&value)
                        ))
                    })?;
                max_given = true;
            }
            Short('d') | Long("datagram") => datagram = true,
            Long("seqpacket") => seqpacket = true,
            Short('a') | Long("accept") => args.accept = true,
            Long("inetd") => args.inetd = true,
            Long("lazy") => args.lazy = true,
            Short('s') | Long("supervise") => {
                args.supervise.get_or_insert_with(Supervise::default);
            }
            Long("restart-signal") | Long("stop-signal") => {
                let flag = if matches!(arg, Long("restart-signal")) {
                    "--restart-signal"
                } else {
                    "--stop-signal"
                };
                let value = parser.value()?;
                let sig = value.to_str().and_then(parse_signal).ok_or_else(|| {
                    UsageError(format!(
                        "invalid {flag} {}: not a signal name or number",
                        quote(&value)
                    ))
                })?;
                let s = sup_opts.get_or_insert_with(Supervise::default);
                if flag == "--restart-signal" {
                    if [libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD, libc::SIGTERM].contains(&sig) {
                        return Err(UsageError(format!(
                            "invalid --restart-signal {}: {} cannot be the restart signal",
                            quote(&value),
                            signal_name(sig)
                        )));
                    }
                    s.restart_signal = sig;
                } else {
                    s.stop_signal = sig;
                }
                sup_flags.push(flag);
            }
            Long("ready-delay") | Long("ready-timeout") | Long("stop-timeout") => {
                let flag = match arg {
                    Long("ready-delay") => "--ready-delay",
                    Long("ready-timeout") => "--ready-timeout",
                    _ => "--stop-timeout",
                };
                let value = parser.value()?;
                let d = value.to_str().and_then(parse_duration).ok_or_else(|| {
                    UsageError(format!(
                        "invalid {flag} {}: expected a duration such as 10s, 500ms or 2m",
                        quote(&value)
                    ))
                })?;
                let s = sup_opts.get_or_insert_with(Supervise::default);
                match flag {
                    "--ready-delay" => s.ready_delay = Some(d),
                    "--ready-timeout" => s.ready_timeout = d,
                    _ => s.stop_timeout = d,
                }
                sup_flags.push(flag);
            }
            Long("restart-on-exit") => {
                sup_opts
                    .get_or_insert_with(Supervise::default)
                    .restart_on_exit = true;
                sup_flags.push("--restart-on-exit");
            }
            Long("process-group") => {
                sup_opts
                    .get_or_insert_with(Supervise::default)
                    .process_group = true;
                sup_flags.push("--process-group");
            }
            Long("pid-file") => {
                let value = parser.value()?;
                if value.is_empty() {
                    return Err(UsageError("invalid --pid-file \"\": empty path".into()));
                }
                sup_opts.get_or_insert_with(Supervise::default).pid_file = Some(value.into());
                sup_flags.push("--pid-file");
            }
            Long("now") => now = true,
            Long("user") | Long("group") => {
                let flag = if matches!(arg, Long("user")) {
                    "--user"
                } else {
                    "--group"
                };
                let value = parser.value()?;
                let text = value
                    .into_string()
                    .map_err(|v| UsageError(format!("invalid {flag} {}: not UTF-8", quote(&v))))?;
                if text.is_empty() {
                    return Err(UsageError(format!("invalid {flag} \"\": empty name")));
                }
                if flag == "--user" {
                    args.user = Some(text);
                } else {
                    args.group = Some(text);
                }
            }
            Long("chdir") => {
                let value = parser.value()?;
                if value.is_empty() {
                    return Err(UsageError("invalid --chdir \"\": empty path".into()));
                }
                args.chdir = Some(value);
            }
            Long("no-pid") => args.no_pid = true,
            Long("keep-fds") => args.keep_fds = true,
            Long("keep-signals") => args.keep_signals = true,
            Short('v') | Long("verbose") => args.verbose = true,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Value(program) => {
                command.push(program);
                command.extend(parser.raw_args()?);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if let Some(flag) = sup_flags.first().filter(|_| args.supervise.is_none()) {
        return Err(UsageError(format!("{flag} applies only to --supervise")));
    }
    if args.supervise.is_some() {
        args.supervise = sup_opts.or(args.supervise.take());
    }
    let supervise = args.supervise.is_some();
    let conflicts = [
        (
            supervise && args.accept,
            "--supervise and --accept cannot be combined",
        ),
        (
            supervise && args.lazy,
            "--supervise and --lazy cannot be combined",
        ),
        (
            supervise && args.inetd,
            "--supervise and --inetd cannot be combined",
        ),
        (
            datagram && seqpacket,
            "--datagram and --seqpacket cannot be combined",
        ),
        (
            datagram && args.accept,
            "--datagram cannot be combined with --accept (datagram sockets do not accept connections)",
        ),
        (now && args.accept, "--now cannot be combined with --accept"),
        (now && args.lazy, "--now and --lazy cannot be combined"),
        (
            args.lazy && args.accept,
            "--lazy cannot be combined with --accept",
        ),
        (
            max_given && !args.accept,
            "--max-connections applies only to --accept",
        ),
        (
            args.inetd && !args.accept && args.listen.len() > 1,
            "--inetd without --accept takes exactly one socket",
        ),
        (
            args.fdnames.is_some() && args.listen.iter().any(|s| s.name.is_some()),
            "name sockets either with NAME= in --listen or with --fdname, not both",
        ),
    ];
    if let Some((_, msg)) = conflicts.iter().find(|(bad, _)| *bad) {
        return Err(UsageError((*msg).to_string()));
    }
    let kind = if datagram {
        Some(UnixKind::Dgram)
    } else if seqpacket {
        Some(UnixKind::Seqpacket)
    } else {
        None
    };
    if let Some(kind) = kind {
        let flag = if datagram {
            "--datagram"
        } else {
            "--seqpacket"
        };
        for (spec, bare) in args.listen.iter_mut().zip(bare_forms) {
            if bare {
                *spec = spec
                    .retype(kind)
                    .map_err(|e| UsageError(format!("invalid --listen {spec} with {flag}: {e}")))?;
            }
        }
    }
    let mut command = command.into_iter();
    args.program = command
        .next()
        .ok_or_else(|| UsageError("missing PROGRAM (see gracewrap --help)".into()))?;
    if args.program.is_empty() {
        return Err(UsageError("PROGRAM is an empty string".into()));
    }
    args.args = command.collect();
    Ok(Parsed::Run(Box::new(args)))
}

/// `NAME[=VALUE]` for `--setenv`.
fn parse_setenv(value: OsString) -> Result<(OsString, Option<OsString>), UsageError> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let bytes = value.as_bytes();
    let (name, val) = match bytes.iter().position(|&b| b == b'=') {
        Some(eq) => (
            &bytes[..eq],
            Some(OsString::from_vec(bytes[eq + 1..].to_vec())),
        ),
        None => (bytes, None),
    };
    if name.is_empty() {
        return Err(UsageError(format!(
            "invalid --setenv {}: empty variable name",
            quote(&value)
        )));
    }
    if let Some(var) = LISTEN_VARS.iter().find(|v| v.as_bytes() == name) {
        return Err(UsageError(format!(
            "--setenv cannot set {var}: gracewrap sets it"
        )));
    }
    Ok((OsString::from_vec(name.to_vec()), val))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> Args {
        match parse(argv) {
            Ok(Parsed::Run(args)) => *args,
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    fn usage(argv: &[&str]) -> String {
        match parse(argv) {
            Err(UsageError(msg)) => msg,
            other => panic!("{argv:?} should be a usage error: {other:?}"),
        }
    }

    #[test]
    fn options_after_program_belong_to_it() {
        let a = run(&["-l", "8080", "server", "-l", "x", "--help"]);
        assert_eq!(a.listen.len(), 1);
        assert_eq!(a.program, "server");
        assert_eq!(a.args, ["-l", "x", "--help"]);
    }

    #[test]
    fn double_dash_is_optional_and_consumed() {
        let a = run(&["--listen=8080", "--", "server", "--", "y"]);
        assert_eq!(a.program, "server");
        assert_eq!(a.args, ["--", "y"]);
        let a = run(&["-l8080", "--", "-dash-program"]);
        assert_eq!(a.program, "-dash-program");
    }

    #[test]
    fn flags() {
        let a = run(&[
            "-v",
            "--no-pid",
            "--keep-fds",
            "--keep-signals",
            "-E",
            "A=1",
            "--setenv",
            "B",
            "p",
        ]);
        assert!(a.verbose && a.no_pid && a.keep_fds && a.keep_signals);
        assert_eq!(
            a.setenv,
            [("A".into(), Some("1".into())), ("B".into(), None)]
        );
        assert_eq!(
            run(&["-E", "A=", "p"]).setenv,
            [("A".into(), Some("".into()))]
        );
        assert_eq!(
            run(&["-E", "A=b=c", "p"]).setenv,
            [("A".into(), Some("b=c".into()))]
        );
    }

    #[test]
    fn systemd_socket_activate_options() {
        let a = run(&["-d", "-l", "8080", "-l", "/run/x", "-l", "tcp::81", "p"]);
        let texts: Vec<String> = a.listen.iter().map(|s| s.to_string()).collect();
        assert_eq!(texts, ["udp::8080", "unixgram:/run/x", "tcp::81"]);
        let a = run(&["-l", "@x", "--seqpacket", "p"]);
        assert_eq!(a.listen[0].to_string(), "unixpacket:@x");
        let a = run(&[
            "-a",
            "--inetd",
            "--max-connections",
            "3",
            "-l",
            "1",
            "-l",
            "2",
            "p",
        ]);
        assert!(a.accept && a.inetd);
        assert_eq!(a.max_connections, 3);
        assert_eq!(
            run(&["-l", "1", "p"]).max_connections,
            DEFAULT_MAX_CONNECTIONS
        );
        let a = run(&["--fdname=a:b", "--fdname", "c", "--fdname=", "-l", "1", "p"]);
        assert_eq!(
            a.fdnames,
            Some(vec!["a".into(), "b".into(), "c".into(), "".into()])
        );
        assert!(run(&["--lazy", "-l", "1", "p"]).lazy);
        assert!(!run(&["--now", "-l", "1", "p"]).lazy);
        assert_eq!(run(&["--inherited=drop", "p"]).inherited, Inherited::Drop);
        assert_eq!(run(&["--environment", "A=1", "p"]).setenv.len(), 1);
    }

    #[test]
    fn supervisor_options() {
        let a = run(&[
            "-s",
            "--restart-signal",
            "usr2",
            "--ready-delay",
            "500ms",
            "--ready-timeout=1m",
            "--stop-signal",
            "SIGINT",
            "--stop-timeout",
            "0",
            "--restart-on-exit",
            "--process-group",
            "--pid-file",
            "/run/x.pid",
            "p",
        ]);
        let s = a.supervise.unwrap();
        assert_eq!(s.restart_signal, libc::SIGUSR2);
        assert_eq!(s.ready_delay, Some(Duration::from_millis(500)));
        assert_eq!(s.ready_timeout, Duration::from_secs(60));
        assert_eq!(s.stop_signal, libc::SIGINT);
        assert_eq!(s.stop_timeout, Duration::ZERO);
        assert!(s.restart_on_exit && s.process_group);
        assert_eq!(
            s.pid_file.as_deref(),
            Some(std::path::Path::new("/run/x.pid"))
        );
        // Order does not matter; defaults.
        let s = run(&["--stop-timeout", "3", "--supervise", "p"])
            .supervise
            .unwrap();
        assert_eq!(s.stop_timeout, Duration::from_secs(3));
        assert_eq!(
            (s.restart_signal, s.stop_signal),
            (libc::SIGHUP, libc::SIGTERM)
        );
        assert_eq!(s.ready_delay, None);
        assert_eq!(s.ready_timeout, Duration::from_secs(30));
        assert!(run(&["p"]).supervise.is_none());
    }

    #[test]
    fn user_group_chdir() {
        let a = run(&["--user", "www:adm", "--group", "x", "--chdir", "/srv", "p"]);
        assert_eq!(a.user.as_deref(), Some("www:adm"));
        assert_eq!(a.group.as_deref(), Some("x"));
        assert_eq!(a.chdir.as_deref(), Some(std::ffi::OsStr::new("/srv")));
        assert_eq!(
            usage(&["--user", "", "p"]),
            "invalid --user \"\": empty name"
        );
        assert_eq!(
            usage(&["--chdir=", "p"]),
            "invalid --chdir \"\": empty path"
        );
    }

    #[test]
    fn durations_and_signals() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration(".5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("3."), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.0015min"), Some(Duration::from_millis(90)));
        assert_eq!(parse_duration("0.1ms"), Some(Duration::from_micros(100)));
        assert_eq!(
            parse_duration("0.333333333333333h"),
            Some(Duration::from_nanos(1_199_999_999_998))
        );
        assert_eq!(
            parse_duration("00000000024h"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(parse_duration("86400.0"), Some(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("86400000ms"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration("99999999999999999999h"),
            None,
            "20 digits: no overflow, over a day"
        );
        for bad in [
            "",
            "s",
            ".",
            "-1s",
            "+1",
            "1x",
            "1e999",
            "1e3",
            "NaN",
            "inf",
            "2d",
            "25h",
            "1 s",
            "1.2.3",
            "86400.000000001",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_signal("HUP"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("sigterm"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("10"), Some(10));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("65"), None);
        assert_eq!(parse_signal("SIGFOO"), None);
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(40), "signal 40");
    }

    #[test]
    fn help_and_version_are_values() {
        assert!(matches!(parse(["-h"]), Ok(Parsed::Help)));
        assert!(matches!(parse(["--help", "x"]), Ok(Parsed::Help)));
        assert!(matches!(parse(["-V"]), Ok(Parsed::Version)));
    }

    #[test]
    fn usage_errors() {
        assert_eq!(
            usage(&["-l", "8080"]),
            "missing PROGRAM (see gracewrap --help)"
        );
        assert_eq!(usage(&["-l", "8080", ""]), "PROGRAM is an empty string");
        assert_eq!(usage(&["--bogus", "p"]), "invalid option '--bogus'");
        assert_eq!(usage(&["-l"]), "missing argument for option '-l'");
        assert_eq!(
            usage(&["-l", "tcp::99999", "p"]),
            "invalid --listen tcp::99999: port 99999 is out of range (0-65535)"
        );
        assert_eq!(
            usage(&["-E", "=x", "p"]),
            "invalid --setenv =x: empty variable name"
        );
        assert_eq!(
            usage(&["-E", "LISTEN_FDS=9", "p"]),
            "--setenv cannot set LISTEN_FDS: gracewrap sets it"
        );
        for (argv, msg) in [
            (
                &["-d", "--seqpacket", "p"][..],
                "--datagram and --seqpacket cannot be combined",
            ),
            (
                &["-d", "-a", "p"][..],
                "--datagram cannot be combined with --accept (datagram sockets do not accept connections)",
            ),
            (
                &["--now", "-a", "p"][..],
                "--now cannot be combined with --accept",
            ),
            (
                &["--now", "--lazy", "p"][..],
                "--now and --lazy cannot be combined",
            ),
            (
                &["--lazy", "-a", "p"][..],
                "--lazy cannot be combined with --accept",
            ),
            (
                &["--max-connections", "5", "p"][..],
                "--max-connections applies only to --accept",
            ),
            (
                &["--max-connections", "0", "-a", "p"][..],
                "invalid --max-connections 0: expected a number of at least 1",
            ),
            (
                &["--inetd", "-l", "1", "-l", "2", "p"][..],
                "--inetd without --accept takes exactly one socket",
            ),
            (
                &["--fdname", "a", "-l", "x=1", "p"][..],
                "name sockets either with NAME= in --listen or with --fdname, not both",
            ),
            (
                &["--fdname", "a:b:c\x01", "p"][..],
                "invalid --fdname \"a:b:c\\u{1}\": name contains the byte 0x01; only printable ASCII is allowed",
            ),
            (
                &["--inherited", "keep", "p"][..],
                "invalid --inherited keep: expected pass or drop",
            ),
            (
                &["--seqpacket", "-l", "8080", "p"][..],
                "invalid --listen tcp::8080 with --seqpacket: --seqpacket applies only to unix sockets",
            ),
        ] {
            assert_eq!(usage(argv), msg, "{argv:?}");
        }
        assert_eq!(
            usage(&["--verbose=yes", "p"]),
            "unexpected argument for option '--verbose': \"yes\""
        );
    }

    /// Every long option the parser accepts must be in --help and in the
    /// man page (drift guard; the man page is written by hand).
    #[test]
    fn every_long_option_is_documented() {
        let src = include_str!("cli.rs");
        let man = include_str!("../man/gracewrap.1");
        let mut found = 0;
        for line in src.lines() {
            let mut rest = line;
            while let Some(i) = rest.find("Long(\"") {
                let tail = &rest[i + 6..];
                let end = tail.find('"').unwrap();
                let opt = &tail[..end];
                rest = &tail[end..];
                found += 1;
                assert!(
                    HELP.contains(&format!("--{opt}")),
                    "--{opt} missing from --help"
                );
                assert!(
                    man.contains(&format!("Fl -{opt}")),
                    "--{opt} missing from man/gracewrap.1 (expected 'Fl -{opt}')"
                );
            }
        }
        assert!(found >= 30, "option scan found only {found} options");
    }
}
