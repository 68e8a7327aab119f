//! Turns one [`Spec`](crate::spec::Spec) into one bound socket (CLOEXEC, so nothing leaks if
//! gracewrap fails before exec), and describes sockets for messages.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{Result, anyhow, bail};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SocketAddrUnix, SocketFlags, SocketType, bind, getsockname, listen, socket_with,
    sockopt,
};

use crate::msg::reason;
use crate::spec::{Addr, Family, Host, Opts, Proto, UnixKind, UnixPath, V6Mode};
use crate::sys::raw::{self, vsock};

mod peer;
mod unix;

pub use peer::{Peer, Source};
pub use unix::{Made, absolute};

/// Opens the socket a spec describes; the files and directories created
/// on the way (unix sockets) are pushed to `made`, even if it then fails.
/// `fd:N` and `inherit:NAME` specs are the hand-off's business, not bound
/// here.
pub fn open(addr: &Addr, opts: &Opts, made: &mut Vec<Made>) -> Result<OwnedFd> {
    match addr {
        Addr::Inet {
            proto,
            family,
            host,
            port,
        } => open_inet(*proto, *family, host, *port, opts),
        Addr::Unix { kind, path } => unix::open(*kind, path, opts, made),
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
    raw::if_nametoindex(scope).ok_or_else(|| anyhow!("no network interface named {scope}"))
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

/// The listen(2) backlog: the user's, or INT_MAX, which the kernel caps at
/// net.core.somaxconn (systemd's SOMAXCONN_DELUXE does the same).
fn backlog(opts: &Opts) -> i32 {
    opts.backlog.map_or(i32::MAX, |n| n as i32)
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

fn unix_type(kind: UnixKind) -> SocketType {
    match kind {
        UnixKind::Stream => SocketType::STREAM,
        UnixKind::Dgram => SocketType::DGRAM,
        UnixKind::Seqpacket => SocketType::SEQPACKET,
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
