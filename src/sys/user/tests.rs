use super::*;

/// A database with the given bytes, as if read from `path`.
fn db(path: &'static str, text: &[u8]) -> Db {
    Db {
        path,
        bytes: Ok(text.to_vec()),
    }
}

/// `resolve` against `passwd` and `group` as the two files.
fn resolve_in(
    passwd: &[u8],
    group: &[u8],
    user: Option<&str>,
    grp: Option<&str>,
) -> Result<Target> {
    resolve(
        &db("/etc/passwd", passwd),
        &db("/etc/group", group),
        user,
        grp,
    )
}

const PASSWD: &[u8] = b"\
root:x:0:0:root:/root:/bin/bash
# a comment
+nisuser::::::
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www:x:33:33:web:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
broken:x:notanumber
";
const GROUP: &[u8] = b"\
root:x:0:
daemon:x:1:
www:x:33:
adm:x:4:www,syslog
ssl-cert:x:110:www
nogroup:x:65534:
";

#[test]
fn user_alone_gets_primary_and_supplementary_groups() {
    let t = resolve_in(PASSWD, GROUP, Some("www"), None).unwrap();
    assert_eq!((t.uid, t.gid), (Some(33), 33));
    assert_eq!(t.groups, [4, 33, 110]);
    assert_eq!(t.env()[0], ("HOME", OsString::from("/var/www")));
    assert_eq!(t.env()[1], ("USER", OsString::from("www")));
}

#[test]
fn user_with_group_gets_that_group_only() {
    let t = resolve_in(PASSWD, GROUP, Some("www:nogroup"), None).unwrap();
    assert_eq!(
        (t.uid, t.gid, t.groups.clone()),
        (Some(33), 65534, vec![65534])
    );
    assert_eq!(
        resolve_in(PASSWD, GROUP, Some("www"), Some("4"))
            .unwrap()
            .groups,
        [4]
    );
}

#[test]
fn numeric_ids_work_without_an_entry() {
    let t = resolve_in(PASSWD, GROUP, Some("65534"), None).unwrap();
    assert_eq!(t.passwd.unwrap().name, "nobody");
    let t = resolve_in(PASSWD, GROUP, Some("4242"), None).unwrap();
    assert_eq!(
        (t.uid, t.gid, t.groups.clone()),
        (Some(4242), 4242, vec![4242])
    );
    assert_eq!(t.env()[0], ("HOME", OsString::from("/")));
    let t = resolve_in(PASSWD, GROUP, Some("4242:7"), None).unwrap();
    assert_eq!((t.gid, t.groups), (7, vec![7]));
}

#[test]
fn group_alone_keeps_the_uid() {
    let t = resolve_in(PASSWD, GROUP, None, Some("adm")).unwrap();
    assert_eq!((t.uid, t.gid, t.groups.clone()), (None, 4, vec![4]));
    assert!(t.env().is_empty());
}

#[test]
fn unknown_names_are_errors() {
    let e =
        |u: Option<&str>, g: Option<&str>| resolve_in(PASSWD, GROUP, u, g).unwrap_err().to_string();
    assert_eq!(
        e(Some("nosuch"), None),
        "--user nosuch: no such user in /etc/passwd"
    );
    assert_eq!(
        e(Some("www:nosuch"), None),
        "--group nosuch: no such group in /etc/group"
    );
    assert_eq!(
        e(Some("www:4"), Some("4")),
        "give the group either as --user USER:GROUP or with --group, not both"
    );
    assert_eq!(e(Some(""), None), "--user with an empty user name");
    assert_eq!(
        e(Some("www:"), None),
        "--user USER:GROUP with an empty GROUP"
    );
    assert_eq!(
        e(Some("broken"), None),
        "--user broken: no such user in /etc/passwd"
    );
    assert_eq!(
        e(Some("+nisuser"), None),
        "--user +nisuser: no such user in /etc/passwd"
    );
}

/// Lines of an old system's /etc/passwd that are not UTF-8: a Latin-1
/// GECOS field ("José") and home directory, and a Latin-1 user name.
const PASSWD_LATIN1: &[u8] = b"\
root:x:0:0:root:/root:/bin/bash
jose:x:1000:1000:Jos\xe9:/home/jos\xe9:/bin/sh
caf\xe9:x:1001:1001:cafe:/srv/cafe:/bin/sh
www:x:33:33:web:/var/www:/usr/sbin/nologin
";
const GROUP_LATIN1: &[u8] = b"\
caf\xe9:x:1001:jose
\xe9quipe:x:120:jose,caf\xe9,www
www:x:33:
adm:x:4:www
";

#[test]
fn a_latin1_byte_in_another_users_line_does_not_hide_www() {
    let t = resolve_in(PASSWD_LATIN1, GROUP_LATIN1, Some("www"), None).unwrap();
    assert_eq!((t.uid, t.gid), (Some(33), 33));
    assert_eq!(t.groups, [4, 33, 120]);
    assert_eq!(t.env()[0], ("HOME", OsString::from("/var/www")));
    let t = resolve_in(PASSWD_LATIN1, GROUP_LATIN1, None, Some("adm")).unwrap();
    assert_eq!(t.gid, 4);
}

#[test]
fn a_home_directory_that_is_not_utf8_is_kept_byte_for_byte() {
    let t = resolve_in(PASSWD_LATIN1, GROUP_LATIN1, Some("jose"), None).unwrap();
    assert_eq!((t.uid, t.gid), (Some(1000), 1000));
    assert_eq!(t.groups, [120, 1000, 1001]);
    assert_eq!(
        t.env()[0],
        ("HOME", OsStr::from_bytes(b"/home/jos\xe9").to_owned())
    );
    assert_eq!(t.env()[1], ("USER", OsString::from("jose")));
}

#[test]
fn a_name_that_is_not_utf8_matches_no_name_and_hides_nothing() {
    // The UTF-8 spelling of the Latin-1 name is another name.
    assert_eq!(
        resolve_in(PASSWD_LATIN1, GROUP_LATIN1, Some("caf\u{e9}"), None)
            .unwrap_err()
            .to_string(),
        "--user caf\u{e9}: no such user in /etc/passwd"
    );
    assert_eq!(
        resolve_in(PASSWD_LATIN1, GROUP_LATIN1, Some("www:\u{e9}quipe"), None)
            .unwrap_err()
            .to_string(),
        "--group \u{e9}quipe: no such group in /etc/group"
    );
    // Its uid still finds the entry (as getpwuid(3) would), with the
    // name's bytes as they are, for USER and LOGNAME.
    let t = resolve_in(PASSWD_LATIN1, GROUP_LATIN1, Some("1001"), None).unwrap();
    assert_eq!((t.uid, t.gid), (Some(1001), 1001));
    assert_eq!(t.groups, [120, 1001], "listed by its bytes in \\xe9quipe");
    assert_eq!(
        t.env()[1],
        ("USER", OsStr::from_bytes(b"caf\xe9").to_owned())
    );
    assert_eq!(t.label(), "\"caf\\xE9\"");
}

#[test]
fn lines_that_are_not_entries_are_skipped_one_by_one() {
    let passwd = b"\
\xff\xfe garbage without colons
nul:x:7:7:\0:/home/nul:/bin/sh
short:x:8
www:x:33:33:web:/var/www:/usr/sbin/nologin\r
";
    let t = resolve_in(passwd, GROUP, Some("www"), None).unwrap();
    assert_eq!(t.uid, Some(33));
    assert_eq!(t.env()[0], ("HOME", OsString::from("/var/www")));
    // A line with a NUL byte is no entry: the uid alone, gid = uid.
    let t = resolve_in(passwd, GROUP, Some("nul"), None);
    assert!(t.is_err());
    let t = resolve_in(passwd, GROUP, Some("7"), None).unwrap();
    assert_eq!((t.gid, t.passwd), (7, None));
}

#[test]
fn a_database_that_cannot_be_read_is_said_when_it_is_needed() {
    let unreadable = |path| Db {
        path,
        bytes: Err(io::Error::from_raw_os_error(libc::EISDIR)),
    };
    let passwd = db("/etc/passwd", PASSWD);
    let group = db("/etc/group", GROUP);
    let e = |p: &Db, g: &Db, u, gr| resolve(p, g, u, gr).unwrap_err().to_string();
    assert_eq!(
        e(&unreadable("/etc/passwd"), &group, Some("www"), None),
        "--user www: cannot read /etc/passwd: is a directory"
    );
    assert_eq!(
        e(&passwd, &unreadable("/etc/group"), Some("www"), None),
        "--user www: cannot read /etc/group: is a directory"
    );
    assert_eq!(
        e(&passwd, &unreadable("/etc/group"), None, Some("adm")),
        "--group adm: cannot read /etc/group: is a directory"
    );
    // A number needs no /etc/group; a user with its group given, none
    // either; no user, no /etc/passwd.
    let t = resolve(&passwd, &unreadable("/etc/group"), Some("www:4"), None).unwrap();
    assert_eq!(t.groups, [4]);
    let t = resolve(&unreadable("/etc/passwd"), &group, None, Some("adm")).unwrap();
    assert_eq!(t.gid, 4);
}

#[test]
fn a_missing_database_is_empty() {
    let none = Db::read("/nonexistent/gracewrap-test/passwd");
    assert_eq!(none.bytes().unwrap(), b"");
    let t = resolve(&none, &none, Some("4242"), None).unwrap();
    assert_eq!((t.uid, t.gid), (Some(4242), 4242));
    assert_eq!(
        resolve(&none, &none, Some("www"), None)
            .unwrap_err()
            .to_string(),
        "--user www: no such user in /etc/passwd"
    );
}
