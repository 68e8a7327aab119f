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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// The signals a [`Watch`] caught that our caller had left ignored, as a
/// mask (bit `sig - 1`): restored for `--keep-signals` in children.
static CAUGHT_WERE_IGNORED: AtomicU64 = AtomicU64::new(0);

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
    child_reset(&[], keep, None);
}

/// Whether `sig` is at its default action (which, for SIGTERM, SIGINT
/// and SIGHUP, kills us).
pub fn is_default(sig: i32) -> bool {
    sigaction(sig, None) == Some(libc::SIG_DFL)
}

/// Dies of `sig` the way its default action would have killed us, once
/// gracewrap has cleaned up: the caller (a shell, a service manager) sees
/// the same death. Where the signal does not kill (as PID 1, where the
/// kernel drops it), exits with 128 + `sig` instead.
pub fn die_of(sig: i32) -> ! {
    sigaction(sig, Some(libc::SIG_DFL));
    set_mask(0);
    let _ = super::raw::kill(std::process::id() as i32, sig);
    std::process::exit(128 + sig)
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

/// Signals a resident gracewrap (accept mode, supervisor) waits for: each
/// sets a flag and wakes a self-pipe, so one poll(2) covers signals,
/// sockets and timeouts. Both ends are CLOEXEC; caught handlers are reset
/// by exec, so PROGRAM never inherits them.
pub struct Watch {
    read: std::os::unix::net::UnixStream,
    flags: Vec<(i32, std::sync::Arc<AtomicBool>)>,
    /// Signals ignored instead ([`Watch::ignore`]).
    ignored: Vec<i32>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("signals", &self.signals())
            .finish()
    }
}

impl Watch {
    pub fn new(signals: &[i32]) -> std::io::Result<Watch> {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let (read, write) = std::os::unix::net::UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        // One write end shared by every handler (signal-hook's pipe helper
        // takes an fd of its own per signal: 16 fds for nothing). It is
        // never closed: handlers may run until the process ends.
        let wake = write.into_raw_fd();
        let mut flags = Vec::with_capacity(signals.len());
        for &sig in signals {
            if sigaction(sig, None) == Some(libc::SIG_IGN) && (1..=NSIG).contains(&sig) {
                CAUGHT_WERE_IGNORED.fetch_or(1u64 << (sig - 1), Ordering::Relaxed);
            }
            let flag = std::sync::Arc::new(AtomicBool::new(false));
            let mine = std::sync::Arc::clone(&flag);
            let handler = move || {
                // Flag first, then the wake-up: whoever wakes sees the flag.
                mine.store(true, Ordering::SeqCst);
                // SAFETY: write(2) is async-signal-safe; `wake` stays open
                // for the life of the process. A full buffer (EAGAIN)
                // already means a wake-up is pending.
                unsafe { libc::write(wake, b"x".as_ptr().cast(), 1) };
            };
            // SAFETY: the handler only stores to an atomic and calls
            // write(2), both async-signal-safe; it allocates nothing.
            unsafe { signal_hook::low_level::register(sig, handler) }?;
            flags.push((sig, flag));
        }
        debug_assert!(read.as_raw_fd() != wake);
        Ok(Watch {
            read,
            flags,
            ignored: Vec::new(),
        })
    }

    /// Ignores `sig` from now on, instead of watching it. Children get it
    /// back as the watched ones do: at its default action, or ignored
    /// with `--keep-signals` if our caller had ignored it.
    pub fn ignore(&mut self, sig: i32) {
        if sigaction(sig, Some(libc::SIG_IGN)) == Some(libc::SIG_IGN) && (1..=NSIG).contains(&sig) {
            CAUGHT_WERE_IGNORED.fetch_or(1u64 << (sig - 1), Ordering::Relaxed);
        }
        self.ignored.push(sig);
    }

    /// The fd to poll for POLLIN.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.read)
    }

    /// The signals watched or ignored, for children to reset.
    pub fn signals(&self) -> Vec<i32> {
        self.flags
            .iter()
            .map(|(s, _)| *s)
            .chain(self.ignored.iter().copied())
            .collect()
    }

    /// Empties the pipe, then returns (and clears) the signals that
    /// arrived since the last call, in registration order. Draining first
    /// means a signal arriving meanwhile wakes the next poll.
    pub fn take(&self) -> Vec<i32> {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(sig, _)| *sig)
            .collect()
    }
}

/// Blocks every signal until dropped, so that a child forked meanwhile
/// cannot run gracewrap's handlers before it has reset them (see
/// [`child_reset`]). glibc's posix_spawn does the same.
pub struct Blocked {
    old: u64,
}

impl Blocked {
    pub fn all() -> Blocked {
        let all: u64 = !0;
        let mut old: u64 = 0;
        // SAFETY: rt_sigprocmask(SIG_BLOCK, &all, &old, 8) reads and writes
        // two local u64s (_NSIG/8 bytes).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_BLOCK,
                &all as *const u64,
                &mut old as *mut u64,
                8usize,
            );
        }
        Blocked { old }
    }

    /// The mask from before, which children get back (or an empty one).
    pub fn old_mask(&self) -> u64 {
        self.old
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        set_mask(self.old);
    }
}

fn set_mask(mask: u64) {
    // SAFETY: as in `Blocked::all`; only reads `mask`.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

/// The signal state PROGRAM starts with; also run in freshly forked
/// children, so async-signal-safe (raw syscalls and an atomic load only).
/// Puts gracewrap's caught signals back to SIG_DFL; unless `keep`, resets
/// every other disposition too and unblocks everything; with `keep`,
/// restores the caller's SIGPIPE and sets the mask to `mask` (None: leave
/// it). Signals that arrived while blocked are delivered at the end, with
/// the default action.
pub fn child_reset(caught: &[i32], keep: bool, mask: Option<u64>) {
    for &sig in caught {
        // With `keep`, a signal the caller had ignored before gracewrap
        // caught it is ignored again (SIGINT in a shell's background job).
        let ignored = keep
            && (1..=NSIG).contains(&sig)
            && CAUGHT_WERE_IGNORED.load(Ordering::Relaxed) & (1u64 << (sig - 1)) != 0;
        let action = if ignored {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        sigaction(sig, Some(action));
    }
    if keep {
        let pipe = if SIGPIPE_WAS_IGNORED.load(Ordering::Relaxed) {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        sigaction(libc::SIGPIPE, Some(pipe));
        if let Some(mask) = mask {
            set_mask(mask);
        }
        return;
    }
    for sig in 1..=NSIG {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            sigaction(sig, Some(libc::SIG_DFL));
        }
    }
    set_mask(0);
}
