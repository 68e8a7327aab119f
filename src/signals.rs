//! Signal state: what gracewrap itself needs, and what it hands to PROGRAM.
//!
//! execve(2) resets caught signals to their default action but keeps
//! ignored ones and the blocked mask. gracewrap's callers leave all sorts of
//! things there: glibc's posix_spawn(3) (used by Rust's `Command`, so by
//! cargo-watch, watchexec, systemfd...) leaves its internal signals 32 and
//! 33 ignored in the child, shells ignore SIGINT for background jobs, some
//! runtimes block signals. By default PROGRAM starts the way systemd starts
//! a service: nothing blocked, every disposition default. `--keep-signals`
//! passes the caller's mask and dispositions through instead, like env(1)
//! or nohup(1).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

// MIPS and Alpha put `sa_flags` first; `KernelSigaction` below would be
// wrong there.
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6"
))]
compile_error!("signals.rs: the kernel sigaction layout differs on MIPS");

/// The kernel's signal count on Linux (`_NSIG`).
const NSIG: i32 = 64;

/// Whether our caller left SIGPIPE ignored (restored for `--keep-signals`).
static SIGPIPE_WAS_IGNORED: AtomicBool = AtomicBool::new(false);

/// Called first thing in `main`: ignores SIGPIPE, so that writing a message
/// to a closed pipe fails with EPIPE instead of killing gracewrap before it
/// can exit with the documented status. Remembers what the caller had.
pub fn startup() {
    let old = sigaction(libc::SIGPIPE, Some(libc::SIG_IGN));
    SIGPIPE_WAS_IGNORED.store(old == Some(libc::SIG_IGN), Ordering::Relaxed);
}

/// The signal state PROGRAM starts with. Call right before exec;
/// gracewrap is single-threaded here and has installed no handlers.
pub fn prepare_for_exec(keep: bool) {
    if keep {
        let pipe = if SIGPIPE_WAS_IGNORED.load(Ordering::Relaxed) {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        sigaction(libc::SIGPIPE, Some(pipe));
        return;
    }
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
    for sig in 1..=NSIG {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            sigaction(sig, Some(libc::SIG_DFL));
        }
    }
}

/// After a failed exec: ignore SIGPIPE again for the error message.
pub fn after_failed_exec() {
    sigaction(libc::SIGPIPE, Some(libc::SIG_IGN));
}

/// The kernel's `struct sigaction` for x86-64, aarch64 and most other Linux
/// ports: handler, flags, restorer, mask. Only SIG_DFL/SIG_IGN are ever
/// installed, so no restorer is needed.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Raw rt_sigaction(2): sets `sig` to `handler` (SIG_DFL or SIG_IGN) if
/// given, and returns the previous handler. Raw because glibc's wrapper
/// refuses its internal signals 32 and 33, which are exactly the ones
/// posix_spawn(3) leaves ignored.
fn sigaction(sig: i32, handler: Option<libc::sighandler_t>) -> Option<libc::sighandler_t> {
    let new = handler.map(|handler| KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    });
    let mut old = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    let new_ptr = new
        .as_ref()
        .map_or(std::ptr::null(), |n| n as *const KernelSigaction);
    // SAFETY: both pointers are valid for the call (or NULL); the handler
    // is SIG_DFL or SIG_IGN, so no code of ours is installed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            new_ptr,
            &mut old as *mut KernelSigaction,
            8usize,
        )
    };
    (rc == 0).then_some(old.handler)
}
