//! The few C calls and types rustix does not wrap, each behind a safe
//! function: setsockopt(2) for options without a typed setter,
//! if_nametoindex(3), `struct sockaddr_vm`, clock_gettime(2), kcmp(2),
//! and getpgrp(2) where rustix's would not expect 0.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

/// `setsockopt(fd, level, name, value)` for an option rustix has no
/// function for (SO_BINDTODEVICE, SO_MARK, TCP_DEFER_ACCEPT...).
pub fn setsockopt(fd: &OwnedFd, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: `value` is valid for `value.len()` bytes for the call, and
    // setsockopt(2) only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    }
}

/// `if_nametoindex(name)`: the index of a network interface, None if there
/// is no such interface.
pub fn if_nametoindex(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the
    // call; if_nametoindex(3) only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// `if_indextoname(index)`: the name of a network interface, None if
/// there is no such interface.
pub fn if_indextoname(index: u32) -> Option<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname(3) may
    // write, a NUL-terminated name on success.
    let p = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success `name` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// getpgrp(2): our process group, 0 when it is not visible from our PID
/// namespace (process 1 of a namespace, started from a group outside it).
/// rustix's `getpgrp` takes it for a positive number.
pub fn getpgrp() -> i32 {
    // SAFETY: getpgrp(2) takes nothing and cannot fail.
    unsafe { libc::getpgrp() }
}

/// `kill(pid, sig)` for any signal number, the real-time ones included
/// (rustix's `Signal` has no value for those).
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: kill(2) takes plain integers.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    }
}

/// Whether two of our fds are the same open file description, as
/// systemd's `same_fd()` decides for its fd store: kcmp(2) with
/// KCMP_FILE, else fcntl F_DUPFD_QUERY (Linux 6.10), else the same inode
/// with the same access flags (never for devices, where many opens of one
/// node differ).
pub fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    const KCMP_FILE: libc::c_long = 0;
    const F_DUPFD_QUERY: libc::c_int = 1027;
    let (fa, fb) = (a, b);
    let (a, b) = (a.as_raw_fd(), b.as_raw_fd());
    let pid = libc::c_long::from(rustix::process::getpid().as_raw_nonzero().get());
    // SAFETY: kcmp(2) takes plain integers and only compares.
    let k = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_FILE,
            libc::c_long::from(a),
            libc::c_long::from(b),
        )
    };
    if k >= 0 {
        return k == 0;
    }
    // SAFETY: fcntl(2) with an int argument; an unknown command is EINVAL.
    let q = unsafe { libc::fcntl(a, F_DUPFD_QUERY, b) };
    if q >= 0 {
        return q == 1;
    }
    let stat = |fd: BorrowedFd<'_>| {
        let st = rustix::fs::fstat(fd).ok()?;
        let flags = rustix::fs::fcntl_getfl(fd).ok()?;
        Some((st.st_dev, st.st_ino, st.st_mode, flags))
    };
    match (stat(fa), stat(fb)) {
        (Some(x), Some(y)) => {
            let device = matches!(
                rustix::fs::FileType::from_raw_mode(x.2),
                rustix::fs::FileType::CharacterDevice | rustix::fs::FileType::BlockDevice
            );
            x == y && !device
        }
        _ => false,
    }
}

/// CLOCK_MONOTONIC in microseconds, for `MONOTONIC_USEC=` with RELOADING=1.
/// (libc's, not rustix's: rustix brings a vDSO parser of its own.)
pub fn monotonic_usec() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write; CLOCK_MONOTONIC always
    // exists, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

/// AF_VSOCK addresses, which rustix does not model: `struct sockaddr_vm`.
pub mod vsock {
    use rustix::net::SocketAddrAny;
    use rustix::net::addr::{SocketAddrArg, SocketAddrLen, SocketAddrOpaque};

    pub struct Addr(libc::sockaddr_vm);

    impl Addr {
        pub fn new(cid: u32, port: u32) -> Addr {
            // SAFETY: sockaddr_vm is plain data; all-zero is valid.
            let mut sa: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
            sa.svm_family = libc::AF_VSOCK as libc::sa_family_t;
            sa.svm_cid = cid;
            sa.svm_port = port;
            Addr(sa)
        }

        /// (cid, port) of a vsock address from getsockname(2).
        pub fn parse(any: &SocketAddrAny) -> Option<(u32, u32)> {
            if any.address_family() != rustix::net::AddressFamily::VSOCK
                || (any.addr_len() as usize) < std::mem::size_of::<libc::sockaddr_vm>()
            {
                return None;
            }
            // SAFETY: the family is AF_VSOCK and the length covers a whole
            // sockaddr_vm; read_unaligned copies it out of the storage.
            let sa = unsafe { std::ptr::read_unaligned(any.as_ptr().cast::<libc::sockaddr_vm>()) };
            Some((sa.svm_cid, sa.svm_port))
        }
    }

    impl std::fmt::Debug for Addr {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "vsock:{}:{}", self.0.svm_cid, self.0.svm_port)
        }
    }

    // SAFETY: the pointer and length describe `self.0`, a complete
    // sockaddr_vm that lives as long as `self`, for the duration of `f`.
    unsafe impl SocketAddrArg for Addr {
        unsafe fn with_sockaddr<R>(
            &self,
            f: impl FnOnce(*const SocketAddrOpaque, SocketAddrLen) -> R,
        ) -> R {
            f(
                (&self.0 as *const libc::sockaddr_vm).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as SocketAddrLen,
            )
        }
    }
}
