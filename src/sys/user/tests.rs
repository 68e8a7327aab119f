use super::*;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
+nisuser::::::
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www:x:33:33:web:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
broken:x:notanumber
";
const GROUP: &str = "\
root:x:0:
daemon:x:1:
www:x:33:
adm:x:4:www,syslog
ssl-cert:x:110:www
nogroup:x:65534:
";

#[test]
fn user_alone_gets_primary_and_supplementary_groups() {
    let t = resolve(PASSWD, GROUP, Some("www"), None).unwrap();
    assert_eq!((t.uid, t.gid), (Some(33), 33));
    assert_eq!(t.groups, [4, 33, 110]);
    assert_eq!(t.env()[0], ("HOME", OsString::from("/var/www")));
    assert_eq!(t.env()[1], ("USER", OsString::from("www")));
}

#[test]
fn user_with_group_gets_that_group_only() {
    let t = resolve(PASSWD, GROUP, Some("www:nogroup"), None).unwrap();
    assert_eq!(
        (t.uid, t.gid, t.groups.clone()),
        (Some(33), 65534, vec![65534])
    );
    assert_eq!(
        resolve(PASSWD, GROUP, Some("www"), Some("4"))
            .unwrap()
            .groups,
        [4]
    );
}

#[test]
fn numeric_ids_work_without_an_entry() {
    let t = resolve(PASSWD, GROUP, Some("65534"), None).unwrap();
    assert_eq!(t.passwd.unwrap().name, "nobody");
    let t = resolve(PASSWD, GROUP, Some("4242"), None).unwrap();
    assert_eq!(
        (t.uid, t.gid, t.groups.clone()),
        (Some(4242), 4242, vec![4242])
    );
    assert_eq!(t.env()[0], ("HOME", OsString::from("/")));
    let t = resolve(PASSWD, GROUP, Some("4242:7"), None).unwrap();
    assert_eq!((t.gid, t.groups), (7, vec![7]));
}

#[test]
fn group_alone_keeps_the_uid() {
    let t = resolve(PASSWD, GROUP, None, Some("adm")).unwrap();
    assert_eq!((t.uid, t.gid, t.groups.clone()), (None, 4, vec![4]));
    assert!(t.env().is_empty());
}

#[test]
fn unknown_names_are_errors() {
    let e =
        |u: Option<&str>, g: Option<&str>| resolve(PASSWD, GROUP, u, g).unwrap_err().to_string();
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
