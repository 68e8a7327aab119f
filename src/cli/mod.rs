//! Command line: argv in, plain data out. Nothing here touches the OS.
//!
//! [`parse`] reads the options into [`Given`] (what was written, one line
//! per option), then [`validate`] applies every rule between options at
//! once and makes the [`Args`] the modes run on, with the mode as one
//! [`Mode`] value.
//!
//! Option parsing stops at PROGRAM (POSIX style, like getopt's `+` in
//! systemd-socket-activate): `gracewrap -l 80 server -l x` passes `-l x`
//! to `server`. `--` before PROGRAM is optional.

mod help;
mod values;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

pub use help::HELP;
pub use values::{parse_duration, parse_signal, signal_name};

use crate::exit::Failure;
use crate::msg::quote;
use crate::protocol::{LISTEN_VARS, REMOTE_VARS};
use crate::spec::{Spec, UnixKind, check_name};

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Version,
    Run(Box<Args>),
    /// `--restart --pid-file PATH`: ask that supervisor to restart.
    Restart(PathBuf),
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

/// How PROGRAM runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// gracewrap execs PROGRAM in its own process: at once, or with
    /// `--lazy` once the first connection or datagram arrives; with
    /// `--inetd`, the one socket on stdin and stdout.
    Exec { lazy: bool, inetd: bool },
    /// `--accept`: gracewrap stays and runs one PROGRAM per connection, at
    /// most `max_connections` at once; with `--inetd`, the connection on
    /// stdin and stdout; at most `per_source` from one source
    /// (`--max-connections-per-source`).
    Accept {
        inetd: bool,
        max_connections: usize,
        per_source: Option<usize>,
    },
    /// `--supervise`: gracewrap stays and restarts PROGRAM on a signal.
    Supervise(Supervise),
}

/// Everything needed to run PROGRAM, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub mode: Mode,
    /// `--listen` specs in command-line order (bare forms already retyped
    /// by `--datagram`/`--seqpacket`).
    pub listen: Vec<Spec>,
    /// `--fdname`: names for the passed sockets in fd order (in accept
    /// mode: the name of the connection).
    pub fdnames: Option<Vec<String>>,
    /// `--inherited=pass|drop`.
    pub inherited: Inherited,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervise {
    /// `--restart-signal` (SIGHUP).
    pub restart_signal: i32,
    /// `--ready` (auto): what makes a generation ready.
    pub ready: Ready,
    /// `--ready-timeout` (30 s): a new generation not ready by then is stopped.
    pub ready_timeout: Duration,
    /// `--stop-signal` (SIGTERM) for a generation being replaced or shut down.
    pub stop_signal: i32,
    /// `--stop-timeout` (10 s) before SIGKILL.
    pub stop_timeout: Duration,
    /// `--stop-delay` (0): on SIGTERM, keep serving this long first.
    pub stop_delay: Duration,
    /// `--restart-on-exit`: start a new generation when the current one exits.
    pub restart_on_exit: bool,
    /// `--process-group`: each generation in its own process group, signalled as a group.
    pub process_group: bool,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--watchdog` (none): each generation's WATCHDOG_USEC once ready.
    pub watchdog: Option<Duration>,
    /// `--fdstore` (0): how many fds the generations may store.
    pub fdstore: usize,
}

impl Default for Supervise {
    fn default() -> Self {
        Supervise {
            restart_signal: libc::SIGHUP,
            ready: Ready::Auto,
            ready_timeout: Duration::from_secs(30),
            stop_signal: libc::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            stop_delay: Duration::ZERO,
            restart_on_exit: false,
            process_group: false,
            pid_file: None,
            watchdog: None,
            fdstore: 0,
        }
    }
}

/// `--ready`: when a new generation counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// READY=1, or one of its processes seen waiting for connections on a
    /// passed socket, until a generation has sent READY=1: from then on,
    /// READY=1 only.
    Auto,
    /// READY=1 only.
    Notify,
    /// Seen waiting for connections; READY=1 is not enough.
    Listen,
    /// This long after its start (or READY=1): `--ready-delay`.
    Delay(Duration),
}

/// `--max-connections` default: systemd-socket-proxyd's `--connections-max`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The supervisor's own options: an error without `--supervise`.
const SUPERVISOR_ONLY: [&str; 12] = [
    "watchdog",
    "fdstore",
    "stop-delay",
    "restart-signal",
    "stop-signal",
    "ready",
    "ready-delay",
    "ready-timeout",
    "stop-timeout",
    "restart-on-exit",
    "process-group",
    "pid-file",
];

/// The options as written, before the rules between them ([`validate`]).
#[derive(Debug, Default)]
struct Given {
    listen: Vec<Spec>,
    /// Which specs were written in a bare form, for `--datagram` and
    /// `--seqpacket`, which may come later on the command line.
    bare: Vec<bool>,
    fdnames: Option<Vec<String>>,
    inherited: Inherited,
    setenv: Vec<(OsString, Option<OsString>)>,
    user: Option<String>,
    group: Option<String>,
    chdir: Option<OsString>,
    datagram: bool,
    seqpacket: bool,
    accept: bool,
    inetd: bool,
    lazy: bool,
    now: bool,
    max_connections: Option<usize>,
    per_source: Option<usize>,
    supervise: bool,
    sup: Supervise,
    /// The first supervisor option given, as written.
    sup_flag: Option<String>,
    no_pid: bool,
    keep_fds: bool,
    keep_signals: bool,
    verbose: bool,
    command: Vec<OsString>,
    /// `--restart`: the restart command.
    restart: bool,
    /// The first argument `--restart` cannot be combined with.
    not_restart: Option<String>,
}

/// Parses the arguments after `argv[0]`.
pub fn parse(argv: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Parsed, Failure> {
    use lexopt::prelude::*;

    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut g = Given::default();
    // Room for every --listen up front: a Spec is a few hundred bytes, and
    // growing a vector of a thousand of them by doubling would leave as
    // much again in freed copies (RssAnon before exec is a target).
    g.listen.reserve(argv.len() / 2);
    g.bare.reserve(argv.len() / 2);
    let mut p = lexopt::Parser::from_args(argv);
    while let Some(arg) = p.next()? {
        if let Long(name) = arg
            && SUPERVISOR_ONLY.contains(&name)
        {
            g.sup_flag.get_or_insert_with(|| format!("--{name}"));
        }
        if g.not_restart.is_none() && !matches!(arg, Long("restart" | "pid-file")) {
            g.not_restart = Some(match &arg {
                Long(name) => format!("--{name}"),
                Short(c) => format!("-{c}"),
                Value(_) => "PROGRAM".into(),
            });
        }
        match arg {
            Short('l') | Long("listen") => listen(&mut g, p.value()?)?,
            Long("restart") => g.restart = true,
            Short('E') | Long("setenv") | Long("environment") => g.setenv.push(setenv(p.value()?)?),
            Long("fdname") => g
                .fdnames
                .get_or_insert_default()
                .extend(fdnames(p.value()?)?),
            Long("inherited") => g.inherited = inherited(p.value()?)?,
            Long("max-connections") => {
                g.max_connections = Some(at_least_one("--max-connections", p.value()?)?);
            }
            Long("max-connections-per-source") => {
                g.per_source = Some(at_least_one("--max-connections-per-source", p.value()?)?);
            }
            Short('d') | Long("datagram") => g.datagram = true,
            Long("seqpacket") => g.seqpacket = true,
            Short('a') | Long("accept") => g.accept = true,
            Long("inetd") => g.inetd = true,
            Long("lazy") => g.lazy = true,
            Long("now") => g.now = true,
            Short('s') | Long("supervise") => g.supervise = true,
            Long("restart-signal") => g.sup.restart_signal = restart_signal(p.value()?)?,
            Long("stop-signal") => g.sup.stop_signal = signal("--stop-signal", p.value()?)?,
            Long("ready") => g.sup.ready = ready(p.value()?)?,
            Long("ready-delay") => {
                g.sup.ready = Ready::Delay(duration("--ready-delay", p.value()?)?)
            }
            Long("ready-timeout") => g.sup.ready_timeout = duration("--ready-timeout", p.value()?)?,
            Long("stop-timeout") => g.sup.stop_timeout = duration("--stop-timeout", p.value()?)?,
            Long("stop-delay") => g.sup.stop_delay = duration("--stop-delay", p.value()?)?,
            Long("watchdog") => {
                g.sup.watchdog = Some(duration("--watchdog", p.value()?)?).filter(|d| !d.is_zero())
            }
            Long("fdstore") => g.sup.fdstore = fdstore(p.value()?)?,
            Long("restart-on-exit") => g.sup.restart_on_exit = true,
            Long("process-group") => g.sup.process_group = true,
            Long("pid-file") => g.sup.pid_file = Some(path("--pid-file", p.value()?)?.into()),
            Long("user") => g.user = Some(name("--user", p.value()?)?),
            Long("group") => g.group = Some(name("--group", p.value()?)?),
            Long("chdir") => g.chdir = Some(path("--chdir", p.value()?)?),
            Long("no-pid") => g.no_pid = true,
            Long("keep-fds") => g.keep_fds = true,
            Long("keep-signals") => g.keep_signals = true,
            Short('v') | Long("verbose") => g.verbose = true,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Value(program) => g.command = std::iter::once(program).chain(p.raw_args()?).collect(),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if g.restart {
        return restart_command(g);
    }
    validate(g).map(|args| Parsed::Run(Box::new(args)))
}

/// `--restart` takes `--pid-file PATH` and nothing else.
fn restart_command(g: Given) -> Result<Parsed, Failure> {
    if let Some(other) = g.not_restart {
        return Err(Failure::usage(format!(
            "--restart takes only --pid-file PATH, not {other}"
        )));
    }
    let path = g.sup.pid_file.ok_or_else(|| {
        Failure::usage("--restart needs --pid-file PATH: the pid file of the supervisor to restart")
    })?;
    Ok(Parsed::Restart(path))
}

/// The rules between options, all here, then the mode.
fn validate(mut g: Given) -> Result<Args, Failure> {
    if let Some(flag) = g.sup_flag.as_ref().filter(|_| !g.supervise) {
        return Err(Failure::usage(format!(
            "{flag} applies only to --supervise"
        )));
    }
    let conflicts = [
        (
            g.supervise && g.accept,
            "--supervise and --accept cannot be combined",
        ),
        (
            g.supervise && g.lazy,
            "--supervise and --lazy cannot be combined",
        ),
        (
            g.supervise && g.inetd,
            "--supervise and --inetd cannot be combined",
        ),
        (
            g.datagram && g.seqpacket,
            "--datagram and --seqpacket cannot be combined",
        ),
        (
            g.datagram && g.accept,
            "--datagram cannot be combined with --accept (datagram sockets do not accept connections)",
        ),
        (g.now && g.accept, "--now cannot be combined with --accept"),
        (g.now && g.lazy, "--now and --lazy cannot be combined"),
        (
            g.lazy && g.accept,
            "--lazy cannot be combined with --accept",
        ),
        (
            g.max_connections.is_some() && !g.accept,
            "--max-connections applies only to --accept",
        ),
        (
            g.per_source.is_some() && !g.accept,
            "--max-connections-per-source applies only to --accept",
        ),
        (
            g.fdnames.is_some() && g.listen.iter().any(|s| s.name.is_some()),
            "name sockets either with NAME= in --listen or with --fdname, not both",
        ),
    ];
    if let Some((_, msg)) = conflicts.iter().find(|(bad, _)| *bad) {
        return Err(Failure::usage(*msg));
    }
    if let Some((var, _)) = g
        .setenv
        .iter()
        .find(|(name, _)| g.accept && REMOTE_VARS.iter().any(|r| name == r))
    {
        return Err(Failure::usage(format!(
            "--setenv cannot set {} with --accept: gracewrap sets it for each connection",
            var.to_string_lossy()
        )));
    }
    if let Some(names) = g.fdnames.as_ref().filter(|n| g.accept && n.len() != 1) {
        return Err(Failure::usage(format!(
            "--accept passes one connection: give --fdname one name, not {}",
            names.len()
        )));
    }
    let retype = match (g.datagram, g.seqpacket) {
        (true, _) => Some((UnixKind::Dgram, "--datagram")),
        (_, true) => Some((UnixKind::Seqpacket, "--seqpacket")),
        _ => None,
    };
    if let Some((kind, flag)) = retype {
        for (spec, _) in g.listen.iter_mut().zip(&g.bare).filter(|(_, bare)| **bare) {
            *spec = spec
                .retype(kind)
                .map_err(|e| Failure::usage(format!("invalid --listen {spec} with {flag}: {e}")))?;
        }
    }
    let mut command = g.command.into_iter();
    let program = command
        .next()
        .ok_or_else(|| Failure::usage("missing PROGRAM (see gracewrap --help)"))?;
    if program.is_empty() {
        return Err(Failure::usage("PROGRAM is an empty string"));
    }
    let mode = if g.supervise {
        Mode::Supervise(g.sup)
    } else if g.accept {
        Mode::Accept {
            inetd: g.inetd,
            max_connections: g.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            per_source: g.per_source,
        }
    } else {
        Mode::Exec {
            lazy: g.lazy,
            inetd: g.inetd,
        }
    };
    Ok(Args {
        mode,
        listen: g.listen,
        fdnames: g.fdnames,
        inherited: g.inherited,
        user: g.user,
        group: g.group,
        chdir: g.chdir,
        setenv: g.setenv,
        no_pid: g.no_pid,
        keep_fds: g.keep_fds,
        keep_signals: g.keep_signals,
        verbose: g.verbose,
        program,
        args: command.collect(),
    })
}

impl Args {
    /// The supervisor's generation: gracewrap in exec mode, which takes
    /// over the sockets handed to it and execs PROGRAM as these arguments
    /// say. Everything about PROGRAM passes on; what is about the sockets
    /// or the supervisor stays here. [`parse`] reads it back into `Args::exec_child` (a test).
    /// `--setenv` of a name in `reserved` is left out: the resident mode
    /// sets that variable itself (the supervisor's `NOTIFY_SOCKET`).
    pub fn child_argv(&self, reserved: &[&str]) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["gracewrap".into()];
        let flags = [
            (self.no_pid, "--no-pid"),
            (self.keep_fds, "--keep-fds"),
            (self.keep_signals, "--keep-signals"),
        ];
        argv.extend(flags.iter().filter(|(on, _)| *on).map(|(_, f)| f.into()));
        for (flag, value) in [("--user", &self.user), ("--group", &self.group)] {
            if let Some(v) = value {
                argv.extend([flag.into(), v.into()]);
            }
        }
        if let Some(dir) = &self.chdir {
            argv.extend(["--chdir".into(), dir.clone()]);
        }
        for (name, value) in self.child_setenv(reserved) {
            let mut entry = name.clone();
            if let Some(value) = value {
                entry.push("=");
                entry.push(value);
            }
            argv.extend(["--setenv".into(), entry]);
        }
        argv.push("--".into());
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }

    fn child_setenv<'a>(
        &'a self,
        reserved: &'a [&str],
    ) -> impl Iterator<Item = &'a (OsString, Option<OsString>)> {
        self.setenv
            .iter()
            .filter(|(name, _)| !reserved.iter().any(|r| name == r))
    }

    /// What the child's argv ([`Args::child_argv`]) means.
    #[cfg(test)]
    pub fn exec_child(&self, reserved: &[&str]) -> Args {
        Args {
            mode: Mode::Exec {
                lazy: false,
                inetd: false,
            },
            listen: Vec::new(),
            fdnames: None,
            inherited: Inherited::Pass,
            user: self.user.clone(),
            group: self.group.clone(),
            chdir: self.chdir.clone(),
            setenv: self.child_setenv(reserved).cloned().collect(),
            no_pid: self.no_pid,
            keep_fds: self.keep_fds,
            keep_signals: self.keep_signals,
            verbose: false,
            program: self.program.clone(),
            args: self.args.clone(),
        }
    }
}

// One helper per kind of value; each names its option in the message.

fn listen(g: &mut Given, value: OsString) -> Result<(), Failure> {
    let (spec, bare) = Spec::parse_form(&value)
        .map_err(|e| Failure::usage(format!("invalid --listen {}: {e}", quote(&value))))?;
    g.listen.push(spec);
    g.bare.push(bare);
    Ok(())
}

/// `NAME[=VALUE]` for `--setenv`.
fn setenv(value: OsString) -> Result<(OsString, Option<OsString>), Failure> {
    let bytes = value.as_bytes();
    let (name, val) = match bytes.iter().position(|&b| b == b'=') {
        Some(eq) => (
            &bytes[..eq],
            Some(OsString::from_vec(bytes[eq + 1..].to_vec())),
        ),
        None => (bytes, None),
    };
    if name.is_empty() {
        return Err(Failure::usage(format!(
            "invalid --setenv {}: empty variable name",
            quote(&value)
        )));
    }
    if let Some(var) = LISTEN_VARS.iter().find(|v| v.as_bytes() == name) {
        return Err(Failure::usage(format!(
            "--setenv cannot set {var}: gracewrap sets it"
        )));
    }
    Ok((OsString::from_vec(name.to_vec()), val))
}

fn fdnames(value: OsString) -> Result<Vec<String>, Failure> {
    value
        .as_bytes()
        .split(|&b| b == b':')
        .map(|n| check_name(n).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::usage(format!("invalid --fdname {}: {e}", quote(&value))))
}

fn inherited(value: OsString) -> Result<Inherited, Failure> {
    match value.to_str() {
        Some("pass") => Ok(Inherited::Pass),
        Some("drop") => Ok(Inherited::Drop),
        _ => Err(Failure::usage(format!(
            "invalid --inherited {}: expected pass or drop",
            quote(&value)
        ))),
    }
}

fn at_least_one(flag: &str, value: OsString) -> Result<usize, Failure> {
    value
        .to_str()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            Failure::usage(format!(
                "invalid {flag} {}: expected a number of at least 1",
                quote(&value)
            ))
        })
}

/// The most fds `--fdstore` may keep: each costs two fd numbers in the
/// supervisor (see mode/supervise.rs), and every generation gets them all.
pub const FDSTORE_MAX: usize = 4096;

fn fdstore(value: OsString) -> Result<usize, Failure> {
    value
        .to_str()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n <= FDSTORE_MAX)
        .ok_or_else(|| {
            Failure::usage(format!(
                "invalid --fdstore {}: expected a number from 0 to {FDSTORE_MAX}",
                quote(&value)
            ))
        })
}

fn signal(flag: &str, value: OsString) -> Result<i32, Failure> {
    value.to_str().and_then(parse_signal).ok_or_else(|| {
        Failure::usage(format!(
            "invalid {flag} {}: not a signal name or number",
            quote(&value)
        ))
    })
}

/// Not a signal that cannot be caught or that gracewrap needs itself.
fn restart_signal(value: OsString) -> Result<i32, Failure> {
    let sig = signal("--restart-signal", value.clone())?;
    if let Some(why) = values::not_catchable_for_restart(sig) {
        return Err(Failure::usage(format!(
            "invalid --restart-signal {}: {} cannot be the restart signal ({why})",
            quote(&value),
            signal_name(sig)
        )));
    }
    Ok(sig)
}

fn duration(flag: &str, value: OsString) -> Result<Duration, Failure> {
    value.to_str().and_then(parse_duration).ok_or_else(|| {
        Failure::usage(format!(
            "invalid {flag} {}: expected a duration such as 10s, 500ms or 2m",
            quote(&value)
        ))
    })
}

/// A user or group name (or number): UTF-8, not empty.
/// `--ready auto|notify|listen|delay:DUR`.
fn ready(value: OsString) -> Result<Ready, Failure> {
    let parsed = match value.to_str() {
        Some("auto") => Some(Ready::Auto),
        Some("notify") => Some(Ready::Notify),
        Some("listen") => Some(Ready::Listen),
        Some(text) => text
            .strip_prefix("delay:")
            .and_then(parse_duration)
            .map(Ready::Delay),
        None => None,
    };
    parsed.ok_or_else(|| {
        Failure::usage(format!(
            "invalid --ready {}: expected auto, notify, listen or delay:DUR",
            quote(&value)
        ))
    })
}

fn name(flag: &str, value: OsString) -> Result<String, Failure> {
    let text = value
        .into_string()
        .map_err(|v| Failure::usage(format!("invalid {flag} {}: not UTF-8", quote(&v))))?;
    if text.is_empty() {
        return Err(Failure::usage(format!("invalid {flag} \"\": empty name")));
    }
    Ok(text)
}

/// A path: anything but empty.
fn path(flag: &str, value: OsString) -> Result<OsString, Failure> {
    if value.is_empty() {
        return Err(Failure::usage(format!("invalid {flag} \"\": empty path")));
    }
    Ok(value)
}

/// For messages: PROGRAM as the user wrote it.
pub fn program_name(args: &Args) -> String {
    quote(OsStr::new(&args.program))
}

#[cfg(test)]
mod tests;
