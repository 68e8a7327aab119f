use crate::util::*;

#[test]
fn help_goes_to_stdout_and_exits_0() {
    let out = run(&mut gracewrap(["--help"]));
    out.expect_code(0);
    assert!(out.stdout.starts_with("gracewrap - "), "{out}");
    assert!(out.stdout.contains("Exit status"), "{out}");
    assert!(out.stderr.is_empty(), "{out}");
    assert_eq!(run(&mut gracewrap(["-h"])).stdout, out.stdout);
}

#[test]
fn version_prints_the_crate_version() {
    let out = run(&mut gracewrap(["-V"]));
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!("gracewrap {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus", "true"], "gracewrap: invalid option '--bogus'"),
        (&["-l"], "gracewrap: missing argument for option '-l'"),
        (
            &["true"],
            "gracewrap: no sockets: give --listen, or run gracewrap where LISTEN_FDS is set for it",
        ),
        (
            &["-l", "a:b=8080", "true"],
            "gracewrap: invalid --listen a:b=8080: unknown socket type 'a' (known types: tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixgram, unixpacket, seqpacket, vsock, vsock-dgram, vsock-seqpacket, fd, inherit)",
        ),
        (
            &["-l", "bad\tname=8080", "true"],
            "gracewrap: invalid --listen \"bad\\tname=8080\": name contains the byte 0x09; only printable ASCII is allowed",
        ),
        (
            &["-l", "unix:/tmp/x,reuseport", "true"],
            "gracewrap: invalid --listen unix:/tmp/x,reuseport: reuseport applies only to tcp and udp sockets (Linux refuses SO_REUSEPORT on unix sockets)",
        ),
        (
            &["-l", "tcp:127.0.0.1:9", "-l", "127.0.0.1:9", "true"],
            "gracewrap: tcp:127.0.0.1:9 is given twice",
        ),
        (
            &["-l", "fd:5", "-l", "fd:5", "true"],
            "gracewrap: fd:5 is given twice",
        ),
        (
            &["-E", "LISTEN_PID=1", "-l", "8080", "true"],
            "gracewrap: --setenv cannot set LISTEN_PID: gracewrap sets it",
        ),
    ];
    for (args, line) in cases {
        run(&mut gracewrap(*args))
            .expect_code(2)
            .expect_stderr(line);
    }
}

#[test]
fn broken_stderr_does_not_turn_an_error_into_a_panic() {
    // stderr is a pipe whose read end is already closed: the message write
    // fails with EPIPE. The exit status must still be the documented one.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = gracewrap(["--bogus"]).stderr(writer).spawn().unwrap();
    let status = wait_timeout(&mut child, DEADLINE).expect("gracewrap exits");
    assert_eq!(status.code(), Some(2));
}
