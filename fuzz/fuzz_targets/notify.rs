//! Fuzzes how the supervisor reads an sd_notify datagram
//! (src/notice.rs, included as a module with the one it checks against,
//! src/spec/mod.rs). The first input byte says whether the receive cut
//! the datagram short; the rest is the datagram.
//!
//! Checked: no panic; a cut-short datagram, one longer than 4096 bytes
//! and one with a NUL byte before its last byte are refused as a whole;
//! an accepted `FDNAME=` is a name `LISTEN_FDNAMES` can carry (what the
//! next generation's gracewrap takes, spec::check_name); an accepted
//! `ERRNO=` and `BUSERROR=` are safe to pass upward (printable ASCII, no
//! newline); each refused key is named once.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/spec/mod.rs"]
mod spec;

#[allow(dead_code)]
#[path = "../../src/notice.rs"]
mod notice;

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let cut = first & 1 == 1;
    let got = notice::parse(bytes, cut);
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if cut || bytes.len() > notice::MAX_BYTES || body.contains(&0) {
        assert!(got.is_err());
        return;
    }
    let n = got.expect("accepted");
    if let Some(name) = n.fdname {
        assert!(spec::check_name(name.as_bytes()).is_ok(), "{name:?}");
    }
    for value in [n.errno, n.bus_error].into_iter().flatten() {
        assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{value:?}");
    }
    let mut keys = n.invalid.clone();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n.invalid.len());
});
