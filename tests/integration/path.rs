//! Finding PROGRAM: one PATH search in every mode, for the exec itself,
//! for the message when it fails, and for the resident modes' start-up
//! check.

use crate::util::*;

/// A script that exists only in /usr/local/bin, removed again on drop.
struct LocalBinScript(std::path::PathBuf);

impl LocalBinScript {
    fn new() -> LocalBinScript {
        let path = std::path::PathBuf::from(format!(
            "/usr/local/bin/gracewrap-test-only-here-{}",
            std::process::id()
        ));
        std::fs::create_dir_all("/usr/local/bin").unwrap();
        write_executable(&path, "#!/bin/sh\necho ran\n");
        LocalBinScript(path)
    }

    fn name(&self) -> &str {
        self.0.file_name().unwrap().to_str().unwrap()
    }
}

impl Drop for LocalBinScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Without PATH the search is the C library's default, /bin:/usr/bin, in
/// every mode: a program only in /usr/local/bin is "not found in PATH"
/// (127), not "its interpreter /bin/sh was not found", and the resident
/// modes say so at once instead of passing their start-up check and then
/// failing in every child.
#[test]
fn without_path_every_mode_searches_bin_and_usr_bin_and_agrees_on_the_message() {
    let script = LocalBinScript::new();
    let expected = format!(
        "gracewrap: cannot execute {}: not found in PATH",
        script.name()
    );
    for mode in [&[][..], &["-s"][..], &["-a"][..]] {
        let mut cmd = gracewrap(mode);
        cmd.args(["-l", &quiet_spec(), "--", script.name()])
            .env_remove("PATH");
        run(&mut cmd).expect_code(127).expect_stderr(&expected);
    }
    // With a PATH that has it, every mode runs it.
    let out = run(gracewrap(["-l", "tcp:127.0.0.1:0", "--", script.name()])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin"));
    out.expect_code(0);
    assert_eq!(out.stdout, "ran\n");
    let out = run(
        gracewrap(["-s", "-l", "tcp:127.0.0.1:0", "--", script.name()])
            .env("PATH", "/usr/local/bin:/usr/bin:/bin"),
    );
    out.expect_code(0);
    assert_eq!(out.stdout, "ran\n");
}

/// And a program in /bin or /usr/bin is found without PATH, in every mode.
#[test]
fn without_path_programs_in_bin_and_usr_bin_are_found() {
    let out = run(gracewrap([
        "-l",
        "tcp:127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "echo $LISTEN_FDS",
    ])
    .env_remove("PATH"));
    out.expect_code(0);
    assert_eq!(out.stdout, "1\n");
    let out = run(
        gracewrap(["-s", "-l", "tcp:127.0.0.1:0", "--", "sh", "-c", "exit 3"]).env_remove("PATH"),
    );
    out.expect_code(3);
}

/// A file without `#!` that the kernel cannot run (ENOEXEC) runs under
/// /bin/sh, as execvp(3) does in glibc: the same in every build (musl's
/// execvp would refuse it), since gracewrap searches and execs itself.
#[test]
fn a_script_without_a_shebang_line_runs_under_bin_sh() {
    let dir = temp_dir("noshebang");
    let script = dir.join("plain-script");
    write_executable(&script, "echo plain $1\n");
    let out =
        run(gracewrap(["-l", "tcp:127.0.0.1:0", "--", "plain-script", "arg"]).env("PATH", &dir));
    out.expect_code(0);
    assert_eq!(out.stdout, "plain arg\n");
}

/// As in execvp(3), only "no such file" errors (and EACCES) move the
/// search on to the next PATH entry: a candidate that fails otherwise
/// (here ELOOP, a symlink to itself) is the answer, and a program of the
/// same name later in PATH is not run.
#[test]
fn a_candidate_failing_other_than_not_found_ends_the_path_search() {
    let dir = temp_dir("eloop");
    let (first, second) = (dir.join("first"), dir.join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::os::unix::fs::symlink("prog", first.join("prog")).unwrap();
    write_executable(&second.join("prog"), "#!/bin/sh\necho second\n");
    let path = format!("{}:{}", first.display(), second.display());
    let out = run(gracewrap(["-l", &quiet_spec(), "--", "prog"]).env("PATH", &path));
    // strerror(3)'s words are the C library's.
    let eloop = if cfg!(target_env = "musl") {
        "symbolic link loop"
    } else {
        "too many levels of symbolic links"
    };
    out.expect_code(126)
        .expect_stderr(&format!("gracewrap: cannot execute prog: {eloop}"));
    assert_eq!(out.stdout, "");
}

/// `--chdir DIR -- ./sub` where DIR/sub is a directory says so in every
/// mode: the resident modes' start-up check looks at DIR/sub, where the
/// program would run, not at ./sub where gracewrap happens to be.
#[test]
fn a_relative_program_that_is_a_directory_under_chdir_is_named_a_directory_in_every_mode() {
    let dir = temp_dir("chdirsubdir");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let elsewhere = temp_dir("chdirsubdir-cwd");
    for mode in [&[][..], &["-s"][..], &["-a"][..]] {
        let mut cmd = gracewrap(mode);
        cmd.args([
            "--chdir",
            dir.to_str().unwrap(),
            "-l",
            &quiet_spec(),
            "--",
            "./sub",
        ])
        .current_dir(&elsewhere);
        run(&mut cmd)
            .expect_code(126)
            .expect_stderr("gracewrap: cannot execute ./sub: is a directory");
    }
}
