//! Signal state handed to PROGRAM.
//!
//! execve(2) resets caught signals to their default action but keeps
//! ignored ones and the blocked mask. gracewrap's callers leave all sorts of
//! things there: the Rust runtime ignores SIGPIPE, glibc's posix_spawn(3)
//! (used by Rust's `Command`, so by cargo-watch, watchexec, systemfd...)
//! leaves its internal signals 32 and 33 ignored in the child, shells ignore
//! SIGINT for background jobs. By default PROGRAM starts the way systemd
//! starts a service: nothing blocked, every disposition default.
//! `--keep-signals` passes the caller's mask and ignored signals through
//! instead (like env(1) or nohup(1)); SIGPIPE is reset either way, because
//! gracewrap cannot tell whether its caller ignored it.
#![allow(unsafe_code)]

/// The kernel's signal count on Linux (`_NSIG`).
const NSIG: u64 = 64;

/// Unblocks every signal and sets every ignored one back to SIG_DFL. Call
/// right before exec: gracewrap is single-threaded and installs no handlers.
///
/// Raw rt_sigprocmask/rt_sigaction are used because glibc's wrappers
/// refuse to touch its internal signals (32, 33), which are exactly the
/// ones posix_spawn(3) leaves ignored.
pub fn reset_all() {
    let empty: u64 = 0;
    // SAFETY: rt_sigprocmask(SIG_SETMASK, &set, NULL, sizeof set) reads
    // `empty` (8 bytes = _NSIG/8) and writes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
    let ignored = ignored_set().unwrap_or(u64::MAX);
    for sig in 1..=NSIG {
        if ignored & (1 << (sig - 1)) != 0 {
            set_default(sig as i32);
        }
    }
}

/// Ignores SIGPIPE again after a failed exec (std's exec resets it), so
/// that the error message going to a closed pipe cannot kill gracewrap
/// before it exits with the documented status.
pub fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

fn set_default(sig: i32) {
    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return;
    }
    // An all-zero kernel `struct sigaction` is SIG_DFL with no flags and an
    // empty mask, whatever the architecture's field order; 32 bytes cover
    // the largest layout.
    let act = [0u64; 4];
    // SAFETY: rt_sigaction(sig, &act, NULL, 8) reads `act` and writes
    // nothing; SIG_DFL installs no code.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            act.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

/// SigIgn from /proc/self/status: one read instead of 64 queries.
fn ignored_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}
