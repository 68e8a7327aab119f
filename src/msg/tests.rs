use super::*;
use std::os::unix::ffi::OsStrExt;

#[test]
fn reason_is_lower_case_without_errno_suffix() {
    assert_eq!(
        reason(io::Error::from_raw_os_error(13)),
        "permission denied"
    );
    // strerror(3)'s wording is the C library's: glibc's here, musl
    // says "address in use".
    let expected = if cfg!(target_env = "musl") {
        "address in use"
    } else {
        "address already in use"
    };
    assert_eq!(reason(rustix::io::Errno::ADDRINUSE), expected);
}

#[test]
fn quote_leaves_plain_text_alone() {
    assert_eq!(quote(OsStr::new("./app")), "./app");
    assert_eq!(quote(OsStr::new("caf\u{e9}")), "caf\u{e9}");
    assert_eq!(quote(OsStr::new("a b")), "\"a b\"");
    assert_eq!(quote(OsStr::new("")), "\"\"");
    assert_eq!(quote(OsStr::from_bytes(b"\xff")), "\"\\xFF\"");
    assert_eq!(quote(OsStr::new("a\nb")), "\"a\\nb\"");
}

#[test]
fn durations_read_as_they_are_written() {
    use std::time::Duration;
    for (d, text) in [
        (Duration::ZERO, "0ms"),
        (Duration::from_millis(250), "250ms"),
        (Duration::from_millis(1500), "1.5s"),
        (Duration::from_secs(30), "30s"),
        (Duration::from_micros(100), "0.0001s"),
        (Duration::from_nanos(86_399_000_000_001), "86399.000000001s"),
    ] {
        assert_eq!(Dur(d).to_string(), text);
        assert_eq!(crate::cli::parse_duration(text), Some(d), "{text}");
    }
}
