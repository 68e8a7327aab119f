use super::*;

fn run(argv: &[&str]) -> Args {
    match parse(argv) {
        Ok(Parsed::Run(args)) => *args,
        other => panic!("{argv:?}: {other:?}"),
    }
}

fn usage(argv: &[&str]) -> String {
    match parse(argv) {
        Err(Failure { message, .. }) => message,
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
fn boolean_flags_and_setenv_are_read() {
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
fn systemd_socket_activate_options_set_the_mode_and_retype_bare_specs() {
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
        "--max-connections-per-source=2",
        "-l",
        "1",
        "-l",
        "2",
        "p",
    ]);
    assert_eq!(
        a.mode,
        Mode::Accept {
            inetd: true,
            max_connections: 3,
            per_source: Some(2),
        }
    );
    assert_eq!(
        run(&["-a", "-l", "1", "p"]).mode,
        Mode::Accept {
            inetd: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            per_source: None,
        }
    );
    let a = run(&["--fdname=a:b", "--fdname", "c", "--fdname=", "-l", "1", "p"]);
    assert_eq!(
        a.fdnames,
        Some(vec!["a".into(), "b".into(), "c".into(), "".into()])
    );
    assert_eq!(
        run(&["--lazy", "-l", "1", "p"]).mode,
        Mode::Exec {
            lazy: true,
            inetd: false
        }
    );
    assert_eq!(
        run(&["--now", "--inetd", "-l", "1", "p"]).mode,
        Mode::Exec {
            lazy: false,
            inetd: true
        }
    );
    assert_eq!(run(&["--inherited=drop", "p"]).inherited, Inherited::Drop);
    assert_eq!(run(&["--environment", "A=1", "p"]).setenv.len(), 1);
}

#[test]
fn supervisor_options_are_read_in_any_order_with_their_defaults() {
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
    let Mode::Supervise(s) = a.mode else {
        panic!("{a:?}")
    };
    assert_eq!(s.restart_signal, libc::SIGUSR2);
    assert_eq!(s.ready, Ready::Delay(Duration::from_millis(500)));
    assert_eq!(s.ready_timeout, Duration::from_secs(60));
    assert_eq!(s.stop_signal, libc::SIGINT);
    assert_eq!(s.stop_timeout, Duration::ZERO);
    assert!(s.restart_on_exit && s.process_group);
    assert_eq!(
        s.pid_file.as_deref(),
        Some(std::path::Path::new("/run/x.pid"))
    );
    // Order does not matter; defaults.
    let Mode::Supervise(s) = run(&["--stop-timeout", "3", "--supervise", "p"]).mode else {
        panic!("not --supervise")
    };
    assert_eq!(s.stop_timeout, Duration::from_secs(3));
    assert_eq!(
        (s.restart_signal, s.stop_signal),
        (libc::SIGHUP, libc::SIGTERM)
    );
    assert_eq!(s.ready, Ready::Auto);
    assert_eq!(s.ready_timeout, Duration::from_secs(30));
    assert_eq!(
        run(&["p"]).mode,
        Mode::Exec {
            lazy: false,
            inetd: false
        }
    );
}

#[test]
fn user_group_and_chdir_are_taken_as_given_and_never_empty() {
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
fn durations_and_signals_parse_in_every_documented_spelling() {
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
fn each_bad_command_line_gets_its_one_line_usage_error() {
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
    let src = include_str!("mod.rs");
    let man = include_str!("../../man/gracewrap.1");
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

/// The argv a resident mode gives its child gracewrap means exactly the
/// child's part of the parent's Args: nothing about PROGRAM is lost on the
/// way (odd bytes, a program that looks like an option, --setenv values
/// with `=`, empty arguments), nothing about the sockets is passed.
#[test]
fn a_childs_argv_round_trips_to_the_same_args() {
    use std::os::unix::ffi::OsStringExt;
    let odd = std::ffi::OsString::from_vec(b"\xff\x01x".to_vec());
    let mut parents = vec![
        run(&["-s", "-l", "8080", "--", "-program", "--", "-l", "x", ""]),
        run(&[
            "-a",
            "--inetd",
            "--no-pid",
            "--keep-signals",
            "--user",
            "www:adm",
            "--chdir",
            "/srv dir",
            "-E",
            "A=b=c",
            "-E",
            "B",
            "-E",
            "C=",
            "-E",
            "NOTIFY_SOCKET=/x",
            "-l",
            "1",
            "prog",
            "--help",
        ]),
        run(&[
            "-s",
            "--group",
            "7",
            "--user",
            "65534",
            "-v",
            "--keep-fds",
            "p",
        ]),
    ];
    parents[0].args.push(odd.clone());
    parents[0].program = odd;
    for parent in &parents {
        {
            let argv = parent.child_argv(&["NOTIFY_SOCKET"]);
            assert_eq!(argv[0], "gracewrap");
            let child = match parse(argv[1..].to_vec()) {
                Ok(Parsed::Run(args)) => *args,
                other => panic!("{argv:?}: {other:?}"),
            };
            assert_eq!(child, parent.exec_child(&["NOTIFY_SOCKET"]), "{argv:?}");
            assert_eq!(child.program, parent.program);
            assert_eq!(child.args, parent.args);
            let kept = |a: &Args| {
                a.setenv
                    .iter()
                    .filter(|(n, _)| n != "NOTIFY_SOCKET")
                    .count()
            };
            assert_eq!(child.setenv.len(), kept(parent));
        }
    }
}

#[test]
fn ready_takes_auto_notify_listen_or_a_delay() {
    for (value, want) in [
        ("auto", Ready::Auto),
        ("notify", Ready::Notify),
        ("listen", Ready::Listen),
        ("delay:250ms", Ready::Delay(Duration::from_millis(250))),
    ] {
        let Mode::Supervise(s) = run(&["-s", "--ready", value, "p"]).mode else {
            panic!("{value}")
        };
        assert_eq!(s.ready, want, "{value}");
    }
    for bad in ["", "Auto", "delay:", "delay:soon", "delay"] {
        let message = usage(&["-s", "--ready", bad, "p"]);
        assert!(
            message.ends_with(": expected auto, notify, listen or delay:DUR"),
            "{bad}: {message}"
        );
    }
}
