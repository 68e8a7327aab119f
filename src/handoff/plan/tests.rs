use super::*;
use std::ffi::OsStr;

fn dup(args: &[&str]) -> Result<(), String> {
    let specs: Vec<Spec> = args
        .iter()
        .map(|a| Spec::parse(OsStr::new(a)).unwrap())
        .collect();
    check_duplicates(&specs).map_err(|e| e.message)
}

#[test]
fn the_same_address_in_two_spellings_is_a_duplicate() {
    assert_eq!(
        dup(&["8080", "tcp::8080"]),
        Err("tcp::8080 is given twice".into())
    );
    assert_eq!(
        dup(&["tcp:127.0.0.1:9", "tcp4:127.0.0.1:9"]),
        Err("tcp:127.0.0.1:9 and tcp4:127.0.0.1:9 are the same address".into())
    );
    assert_eq!(
        dup(&["localhost:9", "tcp4:127.0.0.1:9"]),
        Err("tcp:localhost:9 and tcp4:127.0.0.1:9 are the same address".into())
    );
    assert_eq!(
        dup(&["tcp6:localhost:9", "tcp:[::1]:9"]),
        Err("tcp6:localhost:9 and tcp:[::1]:9 are the same address".into())
    );
    let cwd = std::env::current_dir().unwrap();
    let abs = format!("unix:{}/x.sock", cwd.display());
    assert_eq!(
        dup(&[&abs, "unix:./x.sock"]),
        Err(format!("{abs} and unix:./x.sock are the same address"))
    );
    // Reported in command-line order, whatever the sort did.
    assert_eq!(
        dup(&["tcp4:127.0.0.1:9", "@a", "127.0.0.1:9"]),
        Err("tcp4:127.0.0.1:9 and tcp:127.0.0.1:9 are the same address".into())
    );
}

#[test]
fn overlapping_or_different_addresses_are_not_duplicates() {
    // Overlaps fail at bind time (documented), port 0 repeats freely,
    // and the type matters.
    assert_eq!(dup(&["tcp::80", "tcp4::80", "tcp6::80"]), Ok(()));
    assert_eq!(dup(&["tcp:127.0.0.1:0", "tcp4:127.0.0.1:0"]), Ok(()));
    assert_eq!(dup(&["tcp:127.0.0.1:53", "udp:127.0.0.1:53"]), Ok(()));
    assert_eq!(dup(&["unix:/a", "unixgram:/a", "@a", "unix:/b"]), Ok(()));
    assert_eq!(dup(&["inherit:x", "inherit:x"]), Ok(()));
}
