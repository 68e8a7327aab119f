//! The terminal on stdin, for the supervisor: which process group holds
//! its foreground (gets its Ctrl-C), and handing that foreground on.

use rustix::process::Pid;

/// The process group in the foreground of the terminal on stdin; None if
/// stdin is not a terminal, not our controlling terminal, or its
/// foreground is not visible from our PID namespace.
pub fn foreground() -> Option<i32> {
    rustix::termios::tcgetpgrp(std::io::stdin())
        .ok()
        .map(Pid::as_raw_nonzero)
        .map(|p| p.get())
}

/// Our own process group; None when it is not visible from our PID
/// namespace (process 1 of a container started from outside it).
pub fn own_group() -> Option<i32> {
    Some(super::raw::getpgrp()).filter(|&g| g > 0)
}

/// Gives the terminal's foreground to process group `group`. The caller
/// ignores or blocks SIGTTOU: from outside the foreground, the kernel
/// would otherwise send it SIGTTOU instead.
pub fn give(group: i32) -> bool {
    Pid::from_raw(group).is_some_and(|g| rustix::termios::tcsetpgrp(std::io::stdin(), g).is_ok())
}
