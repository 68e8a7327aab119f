//! Fuzzes the `--listen` SPEC parser (src/spec/mod.rs, pure std, included as a
//! module): no input may panic it, and whatever parses must come back
//! unchanged through its canonical form, which is what gracewrap prints and
//! what `--datagram`/`--seqpacket` re-parse.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/spec/mod.rs"]
mod spec;

use spec::{Spec, UnixKind};

fuzz_target!(|data: &[u8]| {
    let arg = OsStr::from_bytes(data);
    let Ok((parsed, bare)) = Spec::parse_form(arg) else {
        return;
    };
    let canonical = parsed.to_os_string();
    assert_eq!(
        Spec::parse(&canonical).as_ref(),
        Ok(&parsed),
        "{:?} parsed, but its canonical form {:?} does not parse back to it",
        data.escape_ascii().to_string(),
        canonical
    );
    // The canonical form is a fixed point, and Display never panics.
    assert_eq!(Spec::parse(&canonical).unwrap().to_os_string(), canonical);
    let _ = parsed.to_string();
    // --datagram / --seqpacket retype bare forms; either outcome is fine,
    // a panic is not, and a retyped spec round-trips too.
    if bare {
        for kind in [UnixKind::Dgram, UnixKind::Seqpacket] {
            if let Ok(retyped) = parsed.retype(kind) {
                assert_eq!(Spec::parse(&retyped.to_os_string()), Ok(retyped));
            }
        }
    }
});
