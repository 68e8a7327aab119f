use super::*;
use std::os::unix::fs::PermissionsExt;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gracewrap-process-unit-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn executable(path: &Path, text: &[u8]) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn message(program: &Path) -> String {
    exec_failure(
        program.as_os_str(),
        &io::Error::from_raw_os_error(libc::ENOENT),
        None,
        None,
    )
    .message
}

#[test]
fn a_missing_interpreter_is_named_not_the_program() {
    let dir = scratch("interp");
    let script = dir.join("script");
    executable(&script, b"#!/no/such/interp -x\necho\n");
    let elf = dir.join("elf");
    executable(&elf, b"\x7fELF");
    assert_eq!(
        message(&script),
        format!(
            "cannot execute {}: its interpreter /no/such/interp was not found",
            script.display()
        )
    );
    assert_eq!(
        message(&elf),
        format!(
            "cannot execute {}: a file it needs was not found (its ELF interpreter, the dynamic loader)",
            elf.display()
        )
    );
    // Not there at all: the plain messages.
    let gone = dir.join("gone");
    assert_eq!(
        message(&gone),
        format!(
            "cannot execute {}: no such file or directory",
            gone.display()
        )
    );
    assert_eq!(
        message(Path::new("gracewrap-no-such-program")),
        "cannot execute gracewrap-no-such-program: not found in PATH"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_path_the_search_is_the_c_librarys_default_and_nothing_else() {
    let found: Vec<PathBuf> = search(OsStr::new("sh"), None);
    assert_eq!(
        found,
        [PathBuf::from("/bin/sh"), PathBuf::from("/usr/bin/sh")]
    );
    // A script only in a directory outside the default path is not found,
    // and the diagnosis agrees with the search (no interpreter blamed).
    let dir = scratch("nopath");
    executable(&dir.join("only-here"), b"#!/bin/sh\nexit 0\n");
    let err = resolve(OsStr::new("only-here"), None, None).unwrap_err();
    assert_eq!(err.status, Status::NotFound);
    assert_eq!(err.message, "cannot execute only-here: not found in PATH");
    let path = dir.as_os_str();
    assert_eq!(
        resolve(OsStr::new("only-here"), Some(path), None).unwrap(),
        dir.join("only-here")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_search_takes_path_entries_in_order_and_a_slash_means_no_search() {
    assert_eq!(
        search(OsStr::new("p"), Some(OsStr::new("/a::/b"))),
        [
            PathBuf::from("/a/p"),
            PathBuf::from("p"),
            PathBuf::from("/b/p")
        ]
    );
    assert_eq!(
        search(OsStr::new("./p"), Some(OsStr::new("/a"))),
        [PathBuf::from("./p")]
    );
}

#[test]
fn a_file_that_exists_but_cannot_run_is_126_and_a_missing_one_127() {
    let dir = scratch("denied");
    std::fs::write(dir.join("plain"), "x").unwrap();
    let path = dir.as_os_str();
    let err = resolve(OsStr::new("plain"), Some(path), None).unwrap_err();
    assert_eq!(err.status, Status::CannotExecute, "{}", err.message);
    let err = resolve(OsStr::new("nothing"), Some(path), None).unwrap_err();
    assert_eq!(err.status, Status::NotFound, "{}", err.message);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A step that fails in the vfork child comes back as the spawn's error
/// (dup2 of an fd that is not open: EBADF), through the memory the child
/// shares with us.
#[test]
fn a_child_that_fails_before_exec_reports_why() {
    let mut setup = Setup::new(&[], false, 0);
    setup.fd3 = Some(999_999);
    let program = Program::this_binary(&["gracewrap".into()]);
    let mut stack = Stack::new().unwrap();
    let err = spawn(&program, &[], &[], &setup, &mut stack, &|_| {}).unwrap_err();
    match err {
        SpawnError::Child(f) => assert_eq!(
            f,
            Failed {
                step: Step::Fds,
                errno: libc::EBADF
            }
        ),
        other => panic!("{other:?}"),
    }
    // The exec itself: every candidate missing.
    let setup = Setup::new(&[], false, 0);
    let program = Program::new(
        OsStr::new("no-such-program"),
        &[],
        Some(OsStr::new("/nonexistent")),
    );
    match spawn(&program, &[], &[], &setup, &mut stack, &|_| {}).unwrap_err() {
        SpawnError::Child(f) => assert_eq!(
            (f.step, f.errno, f.status()),
            (Step::Exec, libc::ENOENT, 127)
        ),
        other => panic!("{other:?}"),
    }
    // There but not executable: EACCES, 126, as a shell has it.
    let dir = scratch("noexec");
    std::fs::write(dir.join("plain"), "x").unwrap();
    let program = Program::new(OsStr::new("plain"), &[], Some(dir.as_os_str()));
    match spawn(&program, &[], &[], &setup, &mut stack, &|_| {}).unwrap_err() {
        SpawnError::Child(f) => assert_eq!(
            (f.step, f.errno, f.status()),
            (Step::Exec, libc::EACCES, 126)
        ),
        other => panic!("{other:?}"),
    }
    // A step before the exec: 125.
    let f = Failed {
        step: Step::Chdir,
        errno: libc::ENOENT,
    };
    assert_eq!(f.status(), 125);
}

/// LISTEN_PID is the child's own pid, written by the child into the
/// environment the parent prepared, as the pid spawn returns.
#[test]
fn own_pid_names_the_child() {
    let out = scratch("ownpid").join("out");
    let mut setup = Setup::new(&[], false, 0);
    setup.own_pid = true;
    let script = format!(
        "echo \"$LISTEN_PID ${{LISTEN_PIDFDID:-none}}\" > {}",
        out.display()
    );
    let program = Program::new(OsStr::new("/bin/sh"), &["-c".into(), script.into()], None);
    let mut stack = Stack::new().unwrap();
    let env = [c"A=1".to_owned()];
    let pid = spawn(&program, &env, &[], &setup, &mut stack, &|_| {}).unwrap();
    let status = rustix::process::waitpid(
        rustix::process::Pid::from_raw(pid),
        rustix::process::WaitOptions::empty(),
    )
    .unwrap()
    .unwrap()
    .1;
    assert_eq!(status.exit_status(), Some(0));
    let text = std::fs::read_to_string(&out).unwrap();
    let (listen_pid, pidfdid) = text.trim().split_once(' ').unwrap();
    assert_eq!(listen_pid, pid.to_string());
    assert!(
        pidfdid == "none" || pidfdid.parse::<u64>().is_ok(),
        "{text}"
    );
}

#[test]
fn numbers_are_written_whole() {
    for n in [0, 7, 10, 4_194_304, u64::MAX] {
        let mut buf = [0xffu8; 21];
        write_number(&mut buf, n);
        let text = CStr::from_bytes_until_nul(&buf).unwrap();
        assert_eq!(text.to_str().unwrap(), n.to_string());
    }
}

#[test]
fn env_replaces_a_variable_by_its_exact_name() {
    let mut env = Env::default();
    env.set("A", "1").set("AB", "2").set("LISTEN_FDS", "9");
    env.set("A", "3").set("LISTEN_FDS", "1");
    let entries: Vec<&CStr> = env.0.iter().map(CString::as_c_str).collect();
    assert_eq!(entries, [c"AB=2", c"A=3", c"LISTEN_FDS=1"]);
    assert_eq!(env.get("A"), Some(OsStr::new("3")));
    assert_eq!(env.get("AB"), Some(OsStr::new("2")));
    assert_eq!(env.get("B"), None);
}

/// An environ entry may lack a `=` (execve(2) takes any string): one that
/// is just a name is not that variable, and reading it does not run past
/// its end.
#[test]
fn an_environ_entry_without_equals_is_no_variable() {
    assert!(!is_entry_of(c"LISTEN_FDS", b"LISTEN_FDS"));
    assert!(!is_entry_of(c"LISTEN_FD", b"LISTEN_FDS"));
    assert!(is_entry_of(c"LISTEN_FDS=", b"LISTEN_FDS"));
    assert!(!is_entry_of(c"LISTEN_FDSX=1", b"LISTEN_FDS"));
}
