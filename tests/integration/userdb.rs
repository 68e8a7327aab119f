//! `--user` and `--group` against /etc/passwd and /etc/group that hold a
//! line which is not UTF-8 (a Latin-1 GECOS field or name, common on old
//! systems): the files are read as bytes, so that line can neither hide
//! the other entries nor lose its own bytes. Each test bind-mounts its
//! own copy of the file in a private mount namespace (as root, like the
//! rest of the privilege-drop tests).

use std::process::Command;

use crate::util::*;

/// Lines that are not UTF-8: a Latin-1 name, and a Latin-1 GECOS field
/// and home directory. Put first, so every real entry comes after them.
const PASSWD_LATIN1: &[u8] = b"caf\xe9:x:4244:4244:Latin-1 name:/:/bin/sh\n\
gw-latin1:x:4243:4243:Jos\xe9:/home/jos\xe9:/bin/sh\n";
const GROUP_LATIN1: &[u8] = b"caf\xe9:x:4244:gw-latin1,jos\xe9\n";

/// Runs `gracewrap ARGS` with `extra` put before the lines of the real
/// `file` (/etc/passwd or /etc/group), bind-mounted over it.
fn with_extra_lines(file: &str, extra: &[u8], args: &[&str]) -> Output {
    let dir = temp_dir("userdb");
    let copy = dir.join("db");
    let mut bytes = extra.to_vec();
    bytes.extend(std::fs::read(file).unwrap());
    std::fs::write(&copy, &bytes).unwrap();
    let mut argv = vec![gracewrap_path()];
    argv.extend(args);
    let script = format!(
        "set -e; mount --bind {} {}; exec {}",
        sh_quote(&[copy.to_str().unwrap()]),
        sh_quote(&[file]),
        sh_quote(&argv)
    );
    let out = run(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn a_latin1_line_in_etc_passwd_does_not_hide_the_other_users() {
    let out = with_extra_lines(
        "/etc/passwd",
        PASSWD_LATIN1,
        &[
            "--user",
            "nobody",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            "/usr/bin/id",
            "-u",
        ],
    );
    out.expect_code(0);
    assert_eq!(out.stdout, "65534\n", "{out}");
}

#[test]
fn a_latin1_line_in_etc_group_does_not_hide_the_other_groups() {
    let out = with_extra_lines(
        "/etc/group",
        GROUP_LATIN1,
        &[
            "--group",
            "nogroup",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            "/usr/bin/id",
            "-g",
        ],
    );
    out.expect_code(0);
    assert_eq!(out.stdout, "65534\n", "{out}");
}

/// HOME is the passwd field's bytes, exactly: `/home/jos\xe9`.
#[test]
fn a_home_directory_that_is_not_utf8_is_passed_byte_for_byte() {
    let out = with_extra_lines(
        "/etc/passwd",
        PASSWD_LATIN1,
        &[
            "--user",
            "gw-latin1",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            "/bin/sh",
            "-c",
            "id -u; printf %s \"$HOME\" | od -An -tx1",
        ],
    );
    out.expect_code(0);
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "4243", "2f", "68", "6f", "6d", "65", "2f", "6a", "6f", "73", "e9"
        ],
        "{out}"
    );
}

/// An /etc/passwd that exists but cannot be read (a directory here) is
/// said as such, not as "no such user".
#[test]
fn an_unreadable_etc_passwd_is_not_reported_as_a_missing_user() {
    let script = format!(
        "set -e; mount -t tmpfs -o size=1m tmpfs /etc; mkdir /etc/passwd; exec {}",
        sh_quote(&[
            gracewrap_path(),
            "--user",
            "nobody",
            "-l",
            "tcp:127.0.0.1:0",
            "--",
            "/usr/bin/id",
            "-u",
        ])
    );
    run(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]))
        .expect_code(125)
        .expect_stderr("gracewrap: --user nobody: cannot read /etc/passwd: is a directory");
}
