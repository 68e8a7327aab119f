//! Who is at the other end of an accepted connection: `REMOTE_ADDR` and
//! `REMOTE_PORT` as systemd sets them for `Accept=yes` services, and the
//! source that `--max-connections-per-source` counts, as systemd's
//! `MaxConnectionsPerSource=` counts it.
//!
//! systemd (service.c, `sockaddr_pretty(..., translate_ipv6=true,
//! include_port=false)`): IPv4 dotted; IPv6 in the usual compressed form,
//! an IPv4-mapped address (`::ffff:a.b.c.d`, a v4 client on a dual-stack
//! socket) as plain IPv4, and a scope as `%` and the interface's name;
//! AF_VSOCK as `vsock:CID`. Nothing for AF_UNIX: the peer's credentials
//! are on the socket (SO_PEERCRED). A source is the IP address, the
//! vsock CID, or for AF_UNIX the peer's uid.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

use rustix::net::{AddressFamily, SocketAddrAny, sockopt};

use crate::sys::raw::{self, vsock};

/// What counts as one source for `--max-connections-per-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Ip(IpAddr),
    /// AF_UNIX: the peer's uid.
    Uid(u32),
    /// AF_VSOCK: the peer's context id.
    Cid(u32),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Ip(ip) => write!(f, "{ip}"),
            Source::Uid(uid) => write!(f, "uid {uid}"),
            Source::Cid(cid) => write!(f, "vsock CID {cid}"),
        }
    }
}

/// The other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `REMOTE_ADDR` and `REMOTE_PORT`, for IP and vsock peers.
    pub remote: Option<(String, u32)>,
    /// None when the address says nothing (an unnamed peer whose
    /// credentials could not be read).
    pub source: Option<Source>,
}

impl Peer {
    /// The peer of `conn`, from the address accept(2) returned.
    pub fn of(conn: impl AsFd, addr: Option<&SocketAddrAny>) -> Peer {
        let peer = addr.map(|a| from_addr(a, raw::if_indextoname));
        match peer {
            Some(peer) if peer.source.is_some() => peer,
            // AF_UNIX (the address is the client's, usually unnamed):
            // the uid from SO_PEERCRED.
            _ => Peer {
                remote: None,
                source: sockopt::socket_peercred(conn)
                    .ok()
                    .map(|cred| Source::Uid(cred.uid.as_raw())),
            },
        }
    }
}

impl fmt::Display for Peer {
    /// `192.0.2.7:40123`, `[2001:db8::1]:8080`, `vsock:3:1024`, `uid 1000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.remote, &self.source) {
            (Some((addr, port)), Some(Source::Ip(IpAddr::V6(_)))) => write!(f, "[{addr}]:{port}"),
            (Some((addr, port)), _) => write!(f, "{addr}:{port}"),
            (None, Some(source)) => write!(f, "{source}"),
            (None, None) => f.write_str("an unknown peer"),
        }
    }
}

/// The peer for an IP or vsock address; `ifname` names a scope's
/// interface (None: its number is used). Other families: nothing.
pub fn from_addr(addr: &SocketAddrAny, ifname: impl Fn(u32) -> Option<String>) -> Peer {
    if addr.address_family() == AddressFamily::VSOCK {
        let (cid, port) = vsock::Addr::parse(addr).unwrap_or_default();
        return Peer {
            remote: Some((format!("vsock:{cid}"), port)),
            source: Some(Source::Cid(cid)),
        };
    }
    let Ok(sa) = SocketAddr::try_from(addr.clone()) else {
        return Peer {
            remote: None,
            source: None,
        };
    };
    let (ip, text) = match sa {
        SocketAddr::V4(v4) => (IpAddr::V4(*v4.ip()), v4.ip().to_string()),
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), v4.to_string()),
            None if v6.scope_id() != 0 => {
                let scope = v6.scope_id();
                let name = ifname(scope).unwrap_or_else(|| scope.to_string());
                (IpAddr::V6(*v6.ip()), format!("{}%{name}", v6.ip()))
            }
            None => (IpAddr::V6(*v6.ip()), v6.ip().to_string()),
        },
    };
    Peer {
        remote: Some((text, u32::from(sa.port()))),
        source: Some(Source::Ip(ip)),
    }
}

#[cfg(test)]
mod tests;
