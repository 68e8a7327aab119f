use proptest::prelude::*;

use super::*;

fn ok(text: &str) -> Notice<'_> {
    parse(text.as_bytes(), false).expect("parsed")
}

#[test]
fn flags_match_whole_lines() {
    let n =
        ok("READY=1\nRELOADING=1\nSTOPPING=1\nWATCHDOG=1\nFDSTORE=1\nFDSTOREREMOVE=1\nFDPOLL=0");
    assert!(n.ready && n.reloading && n.stopping && n.watchdog_ping);
    assert!(n.fdstore && n.fdstore_remove && n.no_fdpoll);
    assert!(!n.watchdog_trigger);
    let n = ok("READY=yes\nREADY=11\n READY=1\nREADY=1 \nWATCHDOG=2\nFDPOLL=1\nFDSTORE=0");
    assert_eq!(n, Notice::default());
    assert!(ok("WATCHDOG=trigger").watchdog_trigger);
    assert!(!ok("WATCHDOG=trigger").watchdog_ping);
    // A flag anywhere counts, even after a bad value.
    assert!(ok("X=1\nERRNO=nope\n\nREADY=1\n").ready);
}

#[test]
fn values_first_one_counts() {
    let n = ok("STATUS=one\nSTATUS=two\nERRNO=5\nERRNO=6");
    assert_eq!(n.status, Some("one"));
    assert_eq!(n.errno, Some("5"));
    // The first is bad: it is refused, and the second is not looked at.
    let n = ok("ERRNO=x\nERRNO=7");
    assert_eq!((n.errno, n.invalid), (None, vec!["ERRNO"]));
    // Empty STATUS is a status (it clears the text).
    assert_eq!(ok("STATUS=").status, Some(""));
    assert_eq!(ok("STATUS=a=b").status, Some("a=b"));
}

#[test]
fn numbers_are_checked() {
    assert_eq!(
        ok("EXTEND_TIMEOUT_USEC=5000000").extend_usec,
        Some(5_000_000)
    );
    assert_eq!(ok("EXTEND_TIMEOUT_USEC= 7").extend_usec, Some(7));
    assert_eq!(ok("WATCHDOG_USEC=0").watchdog_usec, Some(0));
    assert_eq!(
        ok("WATCHDOG_USEC=18446744073709551615").watchdog_usec,
        Some(u64::MAX)
    );
    for bad in [
        "",
        "-1",
        "+1",
        "1 ",
        "1.5",
        "18446744073709551616",
        "0x10",
        "١",
    ] {
        let text = format!("WATCHDOG_USEC={bad}\nEXTEND_TIMEOUT_USEC={bad}\nERRNO={bad}");
        let n = ok(&text);
        assert_eq!(
            (n.watchdog_usec, n.extend_usec, n.errno),
            (None, None, None),
            "{bad:?}"
        );
        assert_eq!(
            n.invalid,
            vec!["WATCHDOG_USEC", "EXTEND_TIMEOUT_USEC", "ERRNO"]
        );
    }
    assert_eq!(ok("ERRNO=4095").errno, Some("4095"));
    assert_eq!(ok("ERRNO=4096").errno, None);
    assert_eq!(ok("ERRNO=0").errno, Some("0"));
    assert_eq!(ok("ERRNO=EADDRINUSE").errno, Some("EADDRINUSE"));
    assert_eq!(ok("ERRNO=E2BIG").errno, Some("E2BIG"));
    // Found by the notify fuzz target: white space that parse_u64 skips
    // would have gone upward with the value.
    for bad in ["E", "Eio", "EIO ", "IO", "\x0c682", " 5", "\t5"] {
        assert_eq!(ok(&format!("ERRNO={bad}")).errno, None, "{bad:?}");
    }
}

#[test]
fn names_are_checked() {
    assert_eq!(ok("FDNAME=conn-1").fdname, Some("conn-1"));
    assert_eq!(ok("FDNAME=").fdname, Some(""));
    assert_eq!(ok("FDNAME=a b~").fdname, Some("a b~"));
    let long = "x".repeat(FDNAME_MAX);
    assert_eq!(ok(&format!("FDNAME={long}")).fdname, Some(long.as_str()));
    for bad in [
        "a:b",
        "tab\there",
        "del\x7f",
        "é",
        &"x".repeat(FDNAME_MAX + 1),
    ] {
        let text = format!("FDNAME={bad}");
        let n = ok(&text);
        assert_eq!((n.fdname, n.invalid), (None, vec!["FDNAME"]), "{bad:?}");
    }
}

#[test]
fn bus_errors_are_checked() {
    assert_eq!(
        ok("BUSERROR=org.freedesktop.DBus.Error.Failed").bus_error,
        Some("org.freedesktop.DBus.Error.Failed")
    );
    assert_eq!(ok("BUSERROR=").bus_error, Some(""));
    assert_eq!(ok("BUSERROR=any text").bus_error, Some("any text"));
    for bad in ["a\"b", "a'b", "a\\b", "tab\t", "é", "del\x7f"] {
        assert_eq!(
            ok(&format!("BUSERROR={bad}")).invalid,
            vec!["BUSERROR"],
            "{bad:?}"
        );
    }
}

#[test]
fn whole_datagrams_refused() {
    assert_eq!(parse(b"READY=1\0X=1", false), Err(Ignored::Nul));
    assert_eq!(parse(b"READY=1\0\0", false), Err(Ignored::Nul));
    // A C string's terminator is fine; an empty datagram says nothing.
    assert!(parse(b"READY=1\0", false).unwrap().ready);
    assert_eq!(parse(b"", false), Ok(Notice::default()));
    // \r separates too.
    assert!(parse(b"STATUS=x\rREADY=1", false).unwrap().ready);
    assert_eq!(parse(b"READY=1", true), Err(Ignored::TooLong));
    assert_eq!(parse(&[b'\n'; MAX_BYTES + 1], false), Err(Ignored::TooLong));
    assert!(parse(&[b'\n'; MAX_BYTES], false).is_ok());
    // Not UTF-8 elsewhere does not spoil READY=1; a bad STATUS is refused.
    let n = parse(b"X=\xff\nREADY=1\nSTATUS=\xfe", false).unwrap();
    assert!(n.ready);
    assert_eq!((n.status, n.invalid), (None, vec!["STATUS"]));
}

#[test]
fn watchdog_enabled_as_sd_watchdog_enabled() {
    let s = Some(Duration::from_secs(2));
    assert_eq!(watchdog_enabled(Some(b"2000000"), None, 7), s);
    assert_eq!(watchdog_enabled(Some(b"2000000"), Some(b"7"), 7), s);
    assert_eq!(watchdog_enabled(Some(b"2000000"), Some(b"8"), 7), None);
    assert_eq!(watchdog_enabled(Some(b"2000000"), Some(b"x"), 7), None);
    assert_eq!(watchdog_enabled(Some(b"2000000"), Some(b"0"), 7), None);
    assert_eq!(watchdog_enabled(Some(b"0"), None, 7), None);
    assert_eq!(
        watchdog_enabled(Some(b"18446744073709551615"), None, 7),
        None
    );
    assert_eq!(watchdog_enabled(Some(b"-5"), None, 7), None);
    assert_eq!(watchdog_enabled(None, Some(b"7"), 7), None);
}

/// Lines a notifying program might send, valid or not.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![
        "READY",
        "RELOADING",
        "STOPPING",
        "STATUS",
        "ERRNO",
        "BUSERROR",
        "WATCHDOG",
        "WATCHDOG_USEC",
        "EXTEND_TIMEOUT_USEC",
        "FDSTORE",
        "FDSTOREREMOVE",
        "FDNAME",
        "FDPOLL",
        "MAINPID",
        "X",
    ]);
    let value = prop_oneof![
        Just(b"1".to_vec()),
        Just(b"0".to_vec()),
        Just(b"trigger".to_vec()),
        "[0-9]{1,22}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop_oneof![
        (key, value).prop_map(|(k, v)| [k.as_bytes(), b"=", &v].concat()),
        prop::collection::vec(any::<u8>(), 0..20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Never panics; refuses exactly the datagrams systemd refuses; what
    /// it accepts is what the lines say, checked against a second, naive
    /// reading.
    #[test]
    fn reads_what_the_lines_say(lines in prop::collection::vec(line(), 0..12), cut in any::<bool>()) {
        let bytes = lines.join(&b'\n');
        let got = parse(&bytes, cut);
        if cut || bytes.len() > MAX_BYTES {
            prop_assert_eq!(got, Err(Ignored::TooLong));
            return Ok(());
        }
        let body = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
        if body.contains(&0) {
            prop_assert_eq!(got, Err(Ignored::Nul));
            return Ok(());
        }
        let n = got.unwrap();
        let all: Vec<&[u8]> = body.split(|&b| b == b'\n' || b == b'\r').collect();
        let has = |l: &[u8]| all.contains(&l);
        prop_assert_eq!(n.ready, has(b"READY=1"));
        prop_assert_eq!(n.watchdog_trigger, has(b"WATCHDOG=trigger"));
        prop_assert_eq!(n.fdstore, has(b"FDSTORE=1"));
        prop_assert_eq!(n.no_fdpoll, has(b"FDPOLL=0"));
        let first = |key: &[u8]| all.iter().find_map(|l| l.strip_prefix(key));
        let usec = first(b"EXTEND_TIMEOUT_USEC=").and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.trim_start().parse::<u64>().ok());
        // Rust's parse takes a '+' that systemd's services never send.
        let plus = first(b"EXTEND_TIMEOUT_USEC=").is_some_and(|v| v.trim_ascii_start().first() == Some(&b'+'));
        if !plus {
            prop_assert_eq!(n.extend_usec, usec);
        }
        let name = first(b"FDNAME=").and_then(|v| std::str::from_utf8(v).ok()).filter(|s| fdname_is_valid(s));
        prop_assert_eq!(n.fdname, name);
        if let Some(name) = n.fdname {
            prop_assert!(crate::spec::check_name(name.as_bytes()).is_ok());
        }
        let mut keys = n.invalid.clone();
        keys.dedup();
        prop_assert_eq!(keys.len(), n.invalid.len());
    }
}
