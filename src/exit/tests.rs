use super::*;

#[test]
fn failures_keep_their_status_under_context_and_others_are_125() {
    use anyhow::Context;
    let usage: anyhow::Error = Failure::usage("bad").into();
    assert_eq!(Status::of(&usage).code(), 2);
    let wrapped = Err::<(), _>(Failure {
        status: Status::NotFound,
        message: "x".into(),
    })
    .context("while starting")
    .unwrap_err();
    assert_eq!(Status::of(&wrapped).code(), 127);
    assert_eq!(Status::of(&anyhow::anyhow!("bind failed")).code(), 125);
    assert_eq!(Status::CannotExecute.code(), 126);
}

/// Real children: rustix makes a WaitStatus only from wait(2).
#[allow(clippy::zombie_processes)] // reaped by the waitpid below
fn status_of_shell(script: &str) -> Status {
    let child = std::process::Command::new("sh")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let (_, status) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        .unwrap()
        .unwrap();
    Status::of_wait(status)
}

#[test]
fn a_child_status_reads_as_a_shell_reports_it() {
    assert_eq!(status_of_shell("exit 3"), Status::Program(3));
    assert_eq!(status_of_shell("exit 0"), Status::Program(0));
    assert_eq!(status_of_shell("kill -9 $$"), Status::Program(137));
    assert_eq!(status_of_shell("kill -TERM $$"), Status::Program(143));
}
