//! Turns one [`Spec`] into one bound socket (CLOEXEC, so nothing leaks if
//! gracewrap fails before exec), and describes sockets for messages.

use std::ffi::{CString, OsStr};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use anyhow::{Context, Result, anyhow, bail};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SocketAddrUnix, SocketFlags, SocketType, bind, connect, getsockname, listen,
    socket_with, sockopt,
};

use crate::msg::reason;
use crate::spec::{Addr, Family, Host, Opts, Proto, UnixKind, UnixPath, V6Mode};

/// Opens the socket a spec describes. `fd:N` specs are handled by the
/// caller ([`crate::fds::take`]).
pub fn open(addr: &Addr, opts: &Opts) -> Result<OwnedFd> {
    match addr {
        Addr::Inet {
            proto,
            family,
            host,
            port,
        } => open_inet(*proto, *family, host, *port, opts),
        Addr::Unix { kind, path } => open_unix(*kind, path, opts),
        Addr::Vsock { kind, cid, port } => open_vsock(*kind, *cid, *port, opts),
        Addr::Fd(_) | Addr::Inherit(_) => {
            unreachable!("fd:N and inherit:NAME are taken, not opened")
        }
    }
}

/// The address to bind and the IPV6_V6ONLY value to set (None for IPv4).
fn resolve(
    family: Family,
    host: &Host,
    port: u16,
    opts: &Opts,
) -> Result<(SocketAddr, Option<bool>)> {
    let v6only = |default: bool| {
        Some(match opts.v6 {
            Some(V6Mode::V6Only) => true,
            Some(V6Mode::DualStack) => false,
            None => default,
        })
    };
    let v4 = |ip: Ipv4Addr| (SocketAddr::from((ip, port)), None);
    Ok(match (host, family) {
        (Host::Unspecified, Family::V4) => v4(Ipv4Addr::UNSPECIFIED),
        (Host::Unspecified, Family::V6) => {
            (SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), Some(true))
        }
        // All interfaces, both families: [::] with IPV6_V6ONLY off. The
        // caller falls back to 0.0.0.0 when the kernel has no IPv6.
        (Host::Unspecified, Family::Any) => (
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
            v6only(false),
        ),
        (Host::Localhost, Family::V6) => {
            (SocketAddr::from((Ipv6Addr::LOCALHOST, port)), Some(true))
        }
        (Host::Localhost, _) => v4(Ipv4Addr::LOCALHOST),
        (Host::V4(ip), _) => v4(*ip),
        (Host::V6(ip, scope), _) => {
            let scope_id = match scope {
                None => 0,
                Some(s) => scope_index(s)?,
            };
            let default = family == Family::V6;
            (
                SocketAddr::V6(SocketAddrV6::new(*ip, port, 0, scope_id)),
                v6only(default),
            )
        }
    })
}

/// Interface name (or number) to index, for `[fe80::1%eth0]`.
fn scope_index(scope: &str) -> Result<u32> {
    if let Ok(n) = scope.parse::<u32>() {
        return Ok(n);
    }
    let name = CString::new(scope).map_err(|_| anyhow!("bad interface name {scope}"))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex(3) only reads it.
    #[allow(unsafe_code)]
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no network interface named {scope}");
    }
    Ok(index)
}

fn open_inet(proto: Proto, family: Family, host: &Host, port: u16, opts: &Opts) -> Result<OwnedFd> {
    // An unknown interface in `[fe80::1%eth9]` fails here: name the spec.
    let (mut addr, mut v6only) = resolve(family, host, port, opts).map_err(|e| {
        let spec = Addr::Inet {
            proto,
            family,
            host: host.clone(),
            port,
        };
        anyhow!(
            "cannot bind {}: {e:#}",
            String::from_utf8_lossy(&spec.to_bytes())
        )
    })?;
    let ty = match proto {
        Proto::Tcp => SocketType::STREAM,
        Proto::Udp => SocketType::DGRAM,
    };
    let af = |a: &SocketAddr| {
        if a.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        }
    };
    let fd = match socket_with(af(&addr), ty, SocketFlags::CLOEXEC, None) {
        // `tcp::PORT` means all interfaces: without IPv6 that is 0.0.0.0.
        Err(Errno::AFNOSUPPORT)
            if family == Family::Any && *host == Host::Unspecified && opts.v6.is_none() =>
        {
            addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            v6only = None;
            socket_with(AddressFamily::INET, ty, SocketFlags::CLOEXEC, None)
        }
        other => other,
    };
    // Described only on failure: formatting an address costs more than the
    // four syscalls that bind it, and a thousand of them add up.
    let fail = |what: &str, e: Errno| {
        anyhow!(
            "cannot {what} {}: {}",
            describe_inet(proto, &addr),
            reason(e)
        )
    };
    let fd = fd.map_err(|e| fail("create a socket for", e))?;
    if proto == Proto::Tcp {
        sockopt::set_socket_reuseaddr(&fd, true).map_err(|e| fail("set SO_REUSEADDR on", e))?;
    }
    if let Some(v6only) = v6only {
        sockopt::set_ipv6_v6only(&fd, v6only).map_err(|e| fail("set IPV6_V6ONLY on", e))?;
    }
    if opts.reuseport {
        sockopt::set_socket_reuseport(&fd, true).map_err(|e| fail("set SO_REUSEPORT on", e))?;
    }
    if opts.more().freebind {
        let set = if addr.is_ipv4() {
            sockopt::set_ip_freebind
        } else {
            sockopt::set_ipv6_freebind
        };
        set(&fd, true).map_err(|e| fail("set IP_FREEBIND on", e))?;
    }
    if let Some(dev) = &opts.more().bind_device {
        raw::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, dev.as_bytes()).map_err(
            |e| {
                if e == Errno::PERM {
                    anyhow!(
                        "cannot set SO_BINDTODEVICE on {}: permission denied (needs CAP_NET_RAW)",
                        describe_inet(proto, &addr)
                    )
                } else {
                    fail(&format!("bind to device {dev}"), e)
                }
            },
        )?;
    }
    if let Some(mark) = opts.more().mark {
        raw::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_MARK, &mark.to_ne_bytes()).map_err(
            |e| {
                if e == Errno::PERM {
                    anyhow!(
                        "cannot set SO_MARK on {}: permission denied (needs CAP_NET_ADMIN)",
                        describe_inet(proto, &addr)
                    )
                } else {
                    fail("set SO_MARK on", e)
                }
            },
        )?;
    }
    set_buffers(&fd, opts).map_err(|(what, e)| fail(what, e))?;
    if opts.more().nodelay {
        sockopt::set_tcp_nodelay(&fd, true).map_err(|e| fail("set TCP_NODELAY on", e))?;
    }
    if opts.more().keepalive {
        sockopt::set_socket_keepalive(&fd, true).map_err(|e| fail("set SO_KEEPALIVE on", e))?;
    }
    bind(&fd, &addr).map_err(|e| fail("bind", e))?;
    if let Some(secs) = opts.more().defer_accept {
        raw::setsockopt(
            &fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            &(secs as i32).to_ne_bytes(),
        )
        .map_err(|e| fail("set TCP_DEFER_ACCEPT on", e))?;
    }
    if let Some(queue) = opts.more().fastopen {
        raw::setsockopt(
            &fd,
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN,
            &(queue as i32).to_ne_bytes(),
        )
        .map_err(|e| fail("set TCP_FASTOPEN on", e))?;
    }
    if proto == Proto::Tcp {
        listen(&fd, backlog(opts)).map_err(|e| fail("listen on", e))?;
    }
    Ok(fd)
}

/// SO_RCVBUF / SO_SNDBUF (the kernel doubles the value for bookkeeping and
/// caps it at net.core.rmem_max / wmem_max).
fn set_buffers(fd: &OwnedFd, opts: &Opts) -> Result<(), (&'static str, Errno)> {
    if let Some(n) = opts.more().rcvbuf {
        sockopt::set_socket_recv_buffer_size(fd, n as usize)
            .map_err(|e| ("set SO_RCVBUF on", e))?;
    }
    if let Some(n) = opts.more().sndbuf {
        sockopt::set_socket_send_buffer_size(fd, n as usize)
            .map_err(|e| ("set SO_SNDBUF on", e))?;
    }
    Ok(())
}

/// setsockopt(2) for the options rustix does not wrap.
#[allow(unsafe_code)]
mod raw {
    use std::os::fd::{AsRawFd, OwnedFd};

    use rustix::io::Errno;

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
}

/// The listen(2) backlog: the user's, or INT_MAX, which the kernel caps at
/// net.core.somaxconn (systemd's SOMAXCONN_DELUXE does the same).
fn backlog(opts: &Opts) -> i32 {
    opts.backlog.map_or(i32::MAX, |n| n as i32)
}

fn unix_type(kind: UnixKind) -> SocketType {
    match kind {
        UnixKind::Stream => SocketType::STREAM,
        UnixKind::Dgram => SocketType::DGRAM,
        UnixKind::Seqpacket => SocketType::SEQPACKET,
    }
}

fn open_unix(kind: UnixKind, path: &UnixPath, opts: &Opts) -> Result<OwnedFd> {
    let shown = || describe_unix(kind, path);
    let fail = |what: &str, e: Errno| anyhow!("cannot {what} {}: {}", shown(), reason(e));
    let addr = match path {
        UnixPath::File(p) => SocketAddrUnix::new(p.as_os_str()),
        UnixPath::Abstract(name) => SocketAddrUnix::new_abstract_name(name),
    }
    .map_err(|e| fail("use", e))?;
    let fd = socket_with(
        AddressFamily::UNIX,
        unix_type(kind),
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| fail("create a socket for", e))?;
    set_buffers(&fd, opts).map_err(|(what, e)| fail(what, e))?;
    let file = match path {
        UnixPath::File(p) => Some(p.as_os_str()),
        UnixPath::Abstract(_) => None,
    };
    if let (Some(p), Some(mode)) = (file, opts.more().mkdir) {
        make_parents(std::path::Path::new(p), mode)
            .with_context(|| format!("cannot bind {}", shown()))?;
    }
    // With mode= or owner=/group=, the socket is created under a umask that
    // leaves it to its owner (gracewrap's user) only, and opened up by
    // chown and chmod afterwards: no other user can connect in between.
    // (Binding elsewhere and renaming into place would be atomic too, but
    // getsockname(2) would then report the other path, which
    // sd_is_socket_unix() and gracewrap's own inheritance compare.)
    let restrict =
        opts.more().mode.is_some() || opts.more().owner.is_some() || opts.more().group.is_some();
    let owner =
        crate::user::socket_owner(opts.more().owner.as_deref(), opts.more().group.as_deref())
            .with_context(|| format!("cannot bind {}", shown()))?;
    let old_umask =
        restrict.then(|| rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177)));
    let bound = bind_replacing_stale(&fd, kind, path, &addr);
    if let Some(old) = old_umask {
        rustix::process::umask(old);
    }
    bound.with_context(|| format!("cannot bind {}", shown()))?;
    if let (Some(p), true) = (file, restrict) {
        // Without mode=: what a plain bind(2) gives, 0777 minus the umask.
        let mode = opts
            .more()
            .mode
            .unwrap_or(0o777 & !old_umask.map_or(0o022, |m| m.as_raw_mode()));
        set_owner_and_mode(p, owner, mode).with_context(|| format!("cannot bind {}", shown()))?;
    }
    if kind != UnixKind::Dgram {
        listen(&fd, backlog(opts)).map_err(|e| fail("listen on", e))?;
    }
    Ok(fd)
}

/// bind(2), replacing a stale socket file (see [`replace_stale`]).
fn bind_replacing_stale(
    fd: &OwnedFd,
    kind: UnixKind,
    path: &UnixPath,
    addr: &SocketAddrUnix,
) -> Result<()> {
    match bind(fd, addr) {
        Ok(()) => Ok(()),
        Err(Errno::ADDRINUSE) => match path {
            UnixPath::File(p) => {
                replace_stale(kind, p, addr)?;
                bind(fd, addr).map_err(|e| anyhow!("{}", reason(e)))
            }
            UnixPath::Abstract(_) => {
                bail!(
                    "address already in use (an abstract name is never stale: another process holds it)"
                )
            }
        },
        Err(e) => bail!("{}", reason(e)),
    }
}

/// `mkdir`: creates the missing parents of `path` with `mode` (exactly,
/// not masked by the umask), outermost first. Existing ones are left as
/// they are; a parent that exists but is not a directory is an error.
fn make_parents(path: &std::path::Path, mode: u32) -> Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut dir = parent;
    loop {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => break,
            // A symlink to a directory is fine: mkdir would fail on it anyway.
            Ok(_) if dir.is_dir() => break,
            Ok(_) => bail!("{} exists and is not a directory", dir.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(dir),
            Err(e) => bail!("cannot look at {}: {}", dir.display(), reason(e)),
        }
        match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(up) => dir = up,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match rustix::fs::mkdir(dir, rustix::fs::Mode::from_raw_mode(mode)) {
            Ok(()) => {}
            Err(Errno::EXIST) if dir.is_dir() => continue,
            Err(e) => bail!("cannot create directory {}: {}", dir.display(), reason(e)),
        }
        rustix::fs::chmod(dir, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| anyhow!("cannot set the mode of {}: {}", dir.display(), reason(e)))?;
    }
    Ok(())
}

/// chown then chmod of the socket file just bound, never following a
/// symlink (someone could have swapped the path in a shared directory).
fn set_owner_and_mode(
    path: &OsStr,
    (uid, gid): (Option<u32>, Option<u32>),
    mode: u32,
) -> Result<()> {
    use rustix::fs::{AtFlags, CWD, Mode, chmodat, chownat};
    if uid.is_some() || gid.is_some() {
        chownat(
            CWD,
            path,
            uid.map(rustix::process::Uid::from_raw),
            gid.map(rustix::process::Gid::from_raw),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| anyhow!("cannot change the owner: {}", reason(e)))?;
    }
    let mode = Mode::from_raw_mode(mode);
    match chmodat(CWD, path, mode, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) => Ok(()),
        // Kernels before 6.6 lack fchmodat2: check it is still our socket,
        // then chmod the path.
        Err(Errno::NOTSUP | Errno::NOSYS | Errno::INVAL) => {
            let ft = std::fs::symlink_metadata(path).map(|m| m.file_type());
            if !ft.is_ok_and(|t| t.is_socket()) {
                bail!("the socket file was replaced before its mode could be set");
            }
            rustix::fs::chmod(path, mode).map_err(|e| anyhow!("cannot set the mode: {}", reason(e)))
        }
        Err(e) => bail!("cannot set the mode: {}", reason(e)),
    }
}

/// Called when bind(2) found something at `path`. Removes it only if it is a
/// socket nobody is listening on (connect(2) refused); a live socket is
/// "address already in use"; anything else is never touched.
///
/// The check and the unlink are not one atomic step; to narrow the window,
/// the inode is compared again right before unlinking, and unlink(2) never
/// follows symlinks.
fn replace_stale(kind: UnixKind, path: &OsStr, addr: &SocketAddrUnix) -> Result<()> {
    let before = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Gone in the meantime: just bind again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("{}", reason(e)),
    };
    let ft = before.file_type();
    if !ft.is_socket() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_symlink() {
            "a symbolic link"
        } else if ft.is_file() {
            "a regular file"
        } else {
            "not a socket"
        };
        bail!("the path exists and is {what}; gracewrap only replaces stale sockets");
    }
    let probe = socket_with(
        AddressFamily::UNIX,
        unix_type(kind),
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| anyhow!("{}", reason(e)))?;
    match connect(&probe, addr) {
        // Nobody bound there: stale.
        Err(Errno::CONNREFUSED) => {}
        // Connected, backlog full (EAGAIN), or a socket of another type
        // (EPROTOTYPE): someone is there.
        Ok(()) | Err(Errno::AGAIN | Errno::INPROGRESS | Errno::PROTOTYPE) => {
            bail!("address already in use (a server is listening on it)")
        }
        Err(e) => bail!(
            "address already in use, and it cannot be checked for staleness ({})",
            reason(e)
        ),
    }
    drop(probe);
    let now = std::fs::symlink_metadata(path);
    match now {
        Ok(m) if m.dev() == before.dev() && m.ino() == before.ino() => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        _ => bail!("the path changed while gracewrap checked it; not removing it"),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("cannot remove the stale socket: {}", reason(e)),
    }
}

fn open_vsock(kind: UnixKind, cid: u32, port: u32, opts: &Opts) -> Result<OwnedFd> {
    let shown =
        || String::from_utf8_lossy(&Addr::Vsock { kind, cid, port }.to_bytes()).into_owned();
    let fail = |what: &str, e: Errno| anyhow!("cannot {what} {}: {}", shown(), reason(e));
    let fd = match socket_with(
        AddressFamily::VSOCK,
        unix_type(kind),
        SocketFlags::CLOEXEC,
        None,
    ) {
        Err(Errno::AFNOSUPPORT) => bail!(
            "cannot create a socket for {}: this kernel has no AF_VSOCK (load the vsock module)",
            shown()
        ),
        other => other.map_err(|e| fail("create a socket for", e))?,
    };
    bind(&fd, &vsock::Addr::new(cid, port)).map_err(|e| fail("bind", e))?;
    if kind != UnixKind::Dgram {
        listen(&fd, backlog(opts)).map_err(|e| fail("listen on", e))?;
    }
    Ok(fd)
}

/// AF_VSOCK addresses, which rustix does not model: `struct sockaddr_vm`.
#[allow(unsafe_code)]
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

fn describe_inet(proto: Proto, addr: &SocketAddr) -> String {
    match proto {
        Proto::Tcp => format!("tcp:{addr}"),
        Proto::Udp => format!("udp:{addr}"),
    }
}

/// A unix address for messages, in SPEC syntax: printable bytes as they
/// are, anything else as `\xNN`, so odd bytes never reach the terminal raw.
fn describe_unix(kind: UnixKind, path: &UnixPath) -> String {
    let bytes = crate::spec::Addr::Unix {
        kind,
        path: path.clone(),
    }
    .to_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Describes a socket from the kernel's point of view (getsockname and
/// SO_TYPE), in SPEC syntax: `127.0.0.1:8080` for TCP (the bare form),
/// `udp:[::1]:53`, `unix:/run/x.sock`, `unixgram:@name`.
pub fn describe(fd: impl AsFd) -> String {
    let fd = fd.as_fd();
    let ty = sockopt::socket_type(fd).ok();
    let Ok(addr) = getsockname(fd) else {
        return "an unknown socket".into();
    };
    if let Some(v) = describe_vsock(ty, &addr) {
        return v;
    }
    if let Ok(inet) = SocketAddr::try_from(addr.clone()) {
        return match ty {
            Some(SocketType::STREAM) => inet.to_string(),
            Some(SocketType::DGRAM) => format!("udp:{inet}"),
            _ => format!("inet:{inet}"),
        };
    }
    if let Ok(unix) = SocketAddrUnix::try_from(addr) {
        let kind = match ty {
            Some(SocketType::DGRAM) => UnixKind::Dgram,
            Some(SocketType::SEQPACKET) => UnixKind::Seqpacket,
            _ => UnixKind::Stream,
        };
        let path = if let Some(name) = unix.abstract_name() {
            UnixPath::Abstract(name.to_vec())
        } else if let Some(p) = unix.path_bytes().filter(|p| !p.is_empty()) {
            UnixPath::File(OsStr::from_bytes(p).to_owned())
        } else {
            return "an unnamed unix socket".into();
        };
        return describe_unix(kind, &path);
    }
    "a socket".into()
}

fn describe_vsock(ty: Option<SocketType>, any: &rustix::net::SocketAddrAny) -> Option<String> {
    let (cid, port) = vsock::Addr::parse(any)?;
    let kind = match ty {
        Some(SocketType::DGRAM) => UnixKind::Dgram,
        Some(SocketType::SEQPACKET) => UnixKind::Seqpacket,
        _ => UnixKind::Stream,
    };
    Some(String::from_utf8_lossy(&Addr::Vsock { kind, cid, port }.to_bytes()).into_owned())
}
