//! Command line: argv in, plain data out. Nothing here touches the OS.
//!
//! Option parsing stops at PROGRAM (POSIX style, like getopt's `+` in
//! systemd-socket-activate): `gracewrap -l 80 server -l x` passes `-l x`
//! to `server`. `--` before PROGRAM is optional.

use std::ffi::OsString;
use std::fmt;

use crate::spec::Spec;

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Version,
    Run(Args),
}

/// Everything needed to run PROGRAM, as the user wrote it.
#[derive(Debug, Default)]
pub struct Args {
    /// `--listen` specs in command-line order.
    pub listen: Vec<Spec>,
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

/// Variables gracewrap owns: removed from the inherited environment and
/// never settable with `--setenv`.
pub const LISTEN_VARS: [&str; 5] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "LISTEN_FDS_FIRST_FD",
];

pub const HELP: &str = "\
gracewrap - bind listening sockets, hand them over at fd 3.. the systemd way, exec PROGRAM

Usage: gracewrap [OPTIONS] --listen [NAME=]SPEC [--listen ...] [--] PROGRAM [ARGS...]
       gracewrap -h | --help | -V | --version

Options (parsing stops at PROGRAM):
  -l, --listen [NAME=]SPEC  bind a socket; repeat for more. They land at fd 3, 4, ...
                            in command-line order. NAME goes into LISTEN_FDNAMES
                            (sockets without one are named 'unknown')
  -E, --setenv NAME[=VALUE] set a variable for PROGRAM; a bare NAME copies ours
                            (the rest of the environment passes through anyway)
      --no-pid              do not set LISTEN_PID/LISTEN_PIDFDID (for programs behind
                            an extra fork; libsystemd then ignores the sockets)
      --keep-fds            keep other inherited fds >= 3 open (default: close them)
      --keep-signals        pass our signal mask and ignored signals on (default: PROGRAM
                            starts with none blocked and none ignored, like under systemd)
  -v, --verbose             print 'listening on ADDRESS (fd N, name NAME)' per socket
                            (always printed when a port is 0)
  -h, --help                print this help and exit
  -V, --version             print the version and exit

SPEC ([NAME=]TYPE:ADDRESS[,OPTION...]):
  tcp:HOST:PORT       TCP; HOST: IPv4, [IPv6] or [IPv6%iface], localhost, or empty
  tcp4:HOST:PORT      (tcp::8080 = [::] dual-stack, or 0.0.0.0 without IPv6;
  tcp6:HOST:PORT       tcp4::8080 = 0.0.0.0; tcp6::8080 = [::] IPv6 only)
  udp:, udp4:, udp6:  the same for UDP (bound, not listening)
  unix:PATH           unix stream socket; PATH absolute or relative, @NAME abstract
  unixgram:PATH       unix datagram socket
  unixpacket:PATH     unix seqpacket socket (alias seqpacket:)
  fd:N                an fd gracewrap already has open, passed on without rebinding
  8080, 1.2.3.4:80, [::1]:80, /path, ./path, @name
                      systemd-socket-activate's forms (tcp, or unix stream)
  PORT 0 binds a free port and prints the real address. Hostnames other than
  localhost (= 127.0.0.1, or ::1 for tcp6/udp6) are not resolved. A literal
  comma in a unix path is written \\,
OPTION:
  backlog=N           listen(2) backlog (default: the kernel maximum, net.core.somaxconn)
  reuseport           set SO_REUSEPORT (tcp/udp only; off by default)
  v6only, dualstack   IPV6_V6ONLY on or off for IPv6 sockets (tcp: default dualstack)
  SO_REUSEADDR is always set on TCP sockets.

Environment given to PROGRAM: ours, minus inherited LISTEN_* variables, plus
LISTEN_FDS, LISTEN_PID, LISTEN_PIDFDID (when the kernel has pidfd ids) and LISTEN_FDNAMES.

Exit status: PROGRAM's own once it runs; 2 usage error; 125 gracewrap failed
before exec; 126 PROGRAM not executable; 127 PROGRAM not found.
See gracewrap(1) for details.
";

/// Parses the arguments after `argv[0]`.
pub fn parse(argv: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Parsed, UsageError> {
    use lexopt::prelude::*;

    let mut args = Args::default();
    let mut command: Vec<OsString> = Vec::new();
    let mut parser = lexopt::Parser::from_args(argv);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('l') | Long("listen") => {
                let value = parser.value()?;
                let spec = Spec::parse(&value).map_err(|e| {
                    UsageError(format!(
                        "invalid --listen {}: {e}",
                        crate::msg::quote(&value)
                    ))
                })?;
                args.listen.push(spec);
            }
            Short('E') | Long("setenv") => {
                let value = parser.value()?;
                args.setenv.push(parse_setenv(value)?);
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
    let mut command = command.into_iter();
    args.program = command
        .next()
        .ok_or_else(|| UsageError("missing PROGRAM (see gracewrap --help)".into()))?;
    if args.program.is_empty() {
        return Err(UsageError("PROGRAM is an empty string".into()));
    }
    args.args = command.collect();
    Ok(Parsed::Run(args))
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
            crate::msg::quote(&value)
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
            Ok(Parsed::Run(args)) => args,
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
        assert!(found >= 8, "option scan found only {found} options");
    }
}
