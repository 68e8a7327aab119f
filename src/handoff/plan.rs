//! From the command line and the inherited set to the ordered list of
//! sockets PROGRAM gets, the way gracenet's `Listen` and
//! systemd-socket-activate combine them:
//!
//! 1. inherited fds (LISTEN_FDS for us) keep their positions 3.. and names;
//! 2. each `--listen` first looks for an inherited socket: by NAME if both
//!    have one, else by type and address (`0.0.0.0:p` and `[::]:p` count as
//!    the same, as in gracenet's isSameAddr; port 0 never matches). A match
//!    is reused, never bound twice;
//! 3. specs without a match are bound and follow in command-line order;
//! 4. inherited sockets nobody asked for are passed on, or closed with
//!    `--inherited=drop` (gracenet's "never closes unused listeners" bug).

use std::borrow::Cow;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use rustix::net::{SocketAddrUnix, SocketType, getsockname, sockopt};

use super::fds::{self, TakeError};
use super::inherit;
use super::{Handoff, Socket};
use crate::cli::{Args, Inherited as Policy, Mode};
use crate::exit::Failure;
use crate::msg::{reason, say};
use crate::protocol::{DEFAULT_NAME, FIRST_FD, NOFILE_VAR};
use crate::socket;
use crate::spec::{Addr, Family, Host, Proto, Spec, UnixKind, UnixPath};
use crate::sys::raw::vsock;

/// The most one argument or environment string may have, NUL included
/// (32 pages: MAX_ARG_STRLEN in linux/binfmts.h).
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// What one `--listen` resolves to.
enum Choice {
    /// Reuse inherited fd number `i` (index into the inherited set).
    Inherited(usize),
    /// `inherit:NAME`: every inherited fd with that name (already marked).
    Named,
    /// Take the fd:N the caller left us.
    Take(OwnedFd),
    /// Bind a new socket.
    Bind,
}

/// Type and address of an inherited fd, for matching.
struct Info {
    ty: Option<SocketType>,
    addr: Option<rustix::net::SocketAddrAny>,
}

/// The plan, carried out: every socket open, in fd order, not yet placed.
pub fn prepare(args: &Args) -> Result<Handoff> {
    check_duplicates(&args.listen)?;
    let inherited = inherit::take()?;
    if let Some(why) = &inherited.ignored
        && args.verbose
    {
        say(format_args!("ignoring LISTEN_FDS: {why}"));
    }
    let mut pool = inherited.fds;
    let n = pool.len() + args.listen.len();
    // Room for stdio and the sockets, better also for their copies while
    // they move, and some slack.
    let need = 3 + n as u64 + 1;
    let limit = fds::reserve(need, need + n as u64 + 16).map_err(|hard| {
        anyhow!("{n} sockets need {need} file descriptors, but RLIMIT_NOFILE allows only {hard}")
    })?;

    let infos: Vec<Info> = if args.listen.is_empty() {
        Vec::new()
    } else {
        pool.iter().map(|f| info(&f.fd)).collect()
    };
    // Every fd:N must be open as the caller left it, checked before any is
    // taken: taking fd:0 copies it to the lowest free number >= 3, which
    // could be the closed fd a later fd:3 names.
    let inherited_range = FIRST_FD..FIRST_FD + pool.len() as RawFd;
    for spec in &args.listen {
        if let Addr::Fd(n) = spec.addr
            && !inherited_range.contains(&n)
            && !fds::is_open(n)
        {
            bail!("fd:{n}: fd {n} is not open");
        }
    }
    let mut requested = vec![false; pool.len()];
    let mut choices = Vec::with_capacity(args.listen.len());
    for spec in &args.listen {
        let choice = choose(spec, &mut pool, &infos, &mut requested)?;
        if let Choice::Inherited(i) = choice {
            requested[i] = true;
            // An inherited socket the parent did not name takes our name.
            if let Some(name) = &spec.name
                && pool[i].name == DEFAULT_NAME
            {
                pool[i].name = name.clone();
            }
        }
        choices.push(choice);
    }

    // Everything that is ours is open now; close whatever else we inherited.
    let ours: Vec<RawFd> = pool
        .iter()
        .map(|f| f.fd.as_raw_fd())
        .chain(choices.iter().filter_map(|c| match c {
            Choice::Take(fd) => Some(fd.as_raw_fd()),
            _ => None,
        }))
        .collect();
    if args.keep_fds {
        let total = pool.len()
            + choices
                .iter()
                .filter(|c| matches!(c, Choice::Take(_) | Choice::Bind))
                .count();
        if let Some(fd) = fds::occupied_slots(total, &ours).first() {
            bail!(
                "fd {fd} is open and would be replaced by socket {}; close it or drop --keep-fds",
                fd - FIRST_FD + 1
            );
        }
    } else {
        fds::close_others(&ours);
    }

    let mut handoff = Handoff::new(limit);
    handoff.parent = inherited.parent;
    if handoff.parent.is_some() {
        // From our resident parent: the limit its caller had, which is
        // PROGRAM's (not the raised one we inherited).
        let callers = std::env::var(NOFILE_VAR).ok().and_then(|v| {
            let (soft, hard) = v.split_once(' ')?;
            Some((soft.parse().ok()?, hard.parse().ok()?))
        });
        if let Some((soft, hard)) = callers {
            handoff.limit.restore_to(soft, hard);
        }
    }
    handoff.sockets = pool
        .into_iter()
        .zip(requested)
        .filter(|(_, requested)| *requested || args.inherited == Policy::Pass)
        .map(|(f, _)| Socket {
            fd: f.fd,
            name: Cow::Owned(f.name),
            inherited: true,
        })
        .collect();
    // A failure from here on drops `handoff`, which removes the socket
    // files bound so far: a failed start leaves the file system as it was.
    for (i, (spec, choice)) in args.listen.iter().zip(choices).enumerate() {
        let fd = match choice {
            Choice::Inherited(_) | Choice::Named => continue,
            Choice::Take(fd) => fd,
            Choice::Bind => match socket::open(&spec.addr, &spec.opts, &mut handoff.created) {
                Ok(fd) => fd,
                // "Address in use" by gracewrap's own earlier socket is a
                // command-line mistake, not "a server".
                Err(e) => match args.listen[..i]
                    .iter()
                    .find(|e| overlaps(&e.addr, &spec.addr))
                {
                    Some(first) => {
                        let text = |a: &Addr| String::from_utf8_lossy(&a.to_bytes()).into_owned();
                        return Err(Failure::usage(format!(
                            "cannot bind {}: {}, given before it, holds that address",
                            text(&spec.addr),
                            text(&first.addr)
                        ))
                        .into());
                    }
                    None => return Err(e),
                },
            },
        };
        handoff.sockets.push(Socket {
            fd,
            name: spec
                .name
                .clone()
                .map_or(Cow::Borrowed(DEFAULT_NAME), Cow::Owned),
            inherited: false,
        });
    }
    // (In --accept mode --fdname names the connection, not the listeners.)
    if let Some(names) = args
        .fdnames
        .as_ref()
        .filter(|_| !matches!(args.mode, Mode::Accept { .. }))
    {
        apply_fdnames(&mut handoff.sockets, names)?;
    }
    // LISTEN_FDNAMES is one string of the environment, which the kernel
    // caps at MAX_ARG_STRLEN: over it, exec fails with E2BIG, which would
    // read as PROGRAM's fault (126). Say whose it is, before anything runs.
    // (In --accept mode the names are the connection's.)
    if !matches!(args.mode, Mode::Accept { .. }) {
        // "LISTEN_FDNAMES=", the names with a colon between each two, and
        // the NUL: counted, not joined (exec mode joins them later).
        let bytes = "LISTEN_FDNAMES=".len()
            + handoff
                .sockets
                .iter()
                .map(|s| s.name.len() + 1)
                .sum::<usize>();
        if bytes > MAX_ARG_STRLEN {
            bail!(
                "LISTEN_FDNAMES for {} sockets would be {bytes} bytes, more than the {MAX_ARG_STRLEN} the kernel allows one environment variable (MAX_ARG_STRLEN): use shorter names",
                handoff.sockets.len()
            );
        }
    }
    if handoff.sockets.is_empty() {
        let mut msg = "no sockets: give --listen, or run gracewrap where LISTEN_FDS is set for it"
            .to_string();
        if let Some(why) = &inherited.ignored {
            msg.push_str(&format!(" (LISTEN_FDS was ignored: {why})"));
        }
        return Err(Failure::usage(msg).into());
    }
    Ok(handoff)
}

/// `--fdname`: one name for all, or exactly one per socket.
/// (systemd-socket-activate only warns about a mismatch and passes names
/// that libsystemd then refuses.)
fn apply_fdnames(sockets: &mut [Socket], names: &[String]) -> Result<()> {
    match names.len() {
        1 => sockets
            .iter_mut()
            .for_each(|s| s.name = Cow::Owned(names[0].clone())),
        n if n == sockets.len() => {
            for (s, name) in sockets.iter_mut().zip(names) {
                s.name = Cow::Owned(name.clone());
            }
        }
        n => {
            return Err(Failure::usage(format!(
                "--fdname gives {n} names for {} sockets (give one name, or one per socket)",
                sockets.len()
            ))
            .into());
        }
    }
    Ok(())
}

/// Two specs for the same address would fail with EADDRINUSE half-way;
/// say so up front. Port 0 may repeat (each gets its own port). Sorting,
/// not a pairwise scan: a thousand specs must stay cheap.
///
/// Specs are compared by what they bind, not by how they are spelled:
/// `tcp:127.0.0.1:9` and `tcp4:127.0.0.1:9`, `localhost:9` and
/// `127.0.0.1:9`, `unix:./a.sock` and `unix:/srv/a.sock` (from /srv) are
/// the same address. Otherwise the second one fails to bind, with a
/// message that blames "a server" for what is gracewrap's own socket.
fn check_duplicates(specs: &[Spec]) -> Result<(), Failure> {
    let mut keys: Vec<(Addr, usize)> = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.wants_free_port() && !matches!(s.addr, Addr::Inherit(_)))
        .map(|(i, s)| (bound_address(&s.addr), i))
        .collect();
    keys.sort_unstable();
    let Some(w) = keys.windows(2).find(|w| w[0].0 == w[1].0) else {
        return Ok(());
    };
    let text = |i: usize| String::from_utf8_lossy(&specs[i].addr.to_bytes()).into_owned();
    let (first, second) = (text(w[0].1.min(w[1].1)), text(w[0].1.max(w[1].1)));
    Err(Failure::usage(if first == second {
        format!("{first} is given twice")
    } else {
        format!("{first} and {second} are the same address")
    }))
}

/// Whether `first`, bound, can be what keeps `second` from binding: the
/// same unix socket file (also through another path: a symlink, a bind
/// mount), or the same protocol and port with hosts that overlap (equal,
/// or one of them all interfaces of a family the other is in).
fn overlaps(first: &Addr, second: &Addr) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (bound_address(first), bound_address(second)) {
        (
            Addr::Unix {
                path: UnixPath::File(a),
                ..
            },
            Addr::Unix {
                path: UnixPath::File(b),
                ..
            },
        ) => match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        },
        (
            Addr::Inet {
                proto: p1,
                family: f1,
                host: h1,
                port: port1,
            },
            Addr::Inet {
                proto: p2,
                family: f2,
                host: h2,
                port: port2,
            },
        ) => {
            let family_of = |h: &Host| match h {
                Host::V6(..) => Family::V6,
                _ => Family::V4,
            };
            let covers = |f: Family, other: &Host| f == Family::Any || f == family_of(other);
            // 0.0.0.0 and [::] (dual-stack unless v6only) are all
            // interfaces too.
            let wildcard = |f: Family, h: Host| match h {
                Host::V4(ip) if ip.is_unspecified() => (Family::V4, Host::Unspecified),
                Host::V6(ip, _) if ip.is_unspecified() => (Family::Any, Host::Unspecified),
                h => (f, h),
            };
            let ((f1, h1), (f2, h2)) = (wildcard(f1, h1), wildcard(f2, h2));
            let hosts = match (&h1, &h2) {
                (Host::Unspecified, Host::Unspecified) => {
                    f1 == f2 || f1 == Family::Any || f2 == Family::Any
                }
                (Host::Unspecified, h) => covers(f1, h),
                (h, Host::Unspecified) => covers(f2, h),
                (a, b) => a == b,
            };
            p1 == p2 && port1 == port2 && port1 != 0 && hosts
        }
        _ => false,
    }
}

/// `addr` in one spelling per bind address, for [`check_duplicates`]: a
/// host decides the family (only an empty host leaves it open: `tcp::p`
/// is dual-stack `[::]`, `tcp4::p` is `0.0.0.0`, and they only overlap),
/// `localhost` is its address, a unix path is absolute.
fn bound_address(addr: &Addr) -> Addr {
    match addr {
        Addr::Inet {
            proto,
            family,
            host,
            port,
        } => {
            let (family, host) = match (host, family) {
                (Host::Unspecified, _) => (*family, Host::Unspecified),
                (Host::Localhost, Family::V6) => {
                    (Family::V6, Host::V6(std::net::Ipv6Addr::LOCALHOST, None))
                }
                (Host::Localhost, _) => (Family::V4, Host::V4(std::net::Ipv4Addr::LOCALHOST)),
                (Host::V4(ip), _) => (Family::V4, Host::V4(*ip)),
                (Host::V6(ip, scope), _) => (Family::V6, Host::V6(*ip, scope.clone())),
            };
            Addr::Inet {
                proto: *proto,
                family,
                host,
                port: *port,
            }
        }
        Addr::Unix {
            kind,
            path: UnixPath::File(p),
        } => Addr::Unix {
            kind: *kind,
            path: UnixPath::File(socket::absolute(Path::new(p)).into_os_string()),
        },
        other => other.clone(),
    }
}

fn choose(
    spec: &Spec,
    pool: &mut [inherit::Fd],
    infos: &[Info],
    requested: &mut [bool],
) -> Result<Choice> {
    match &spec.addr {
        Addr::Fd(n) => {
            let first = FIRST_FD;
            if (first..first + pool.len() as RawFd).contains(n) {
                return Ok(Choice::Inherited((n - first) as usize));
            }
            return take_fd(*n).map(Choice::Take);
        }
        Addr::Inherit(name) => {
            let mut found = false;
            for (i, f) in pool.iter_mut().enumerate() {
                if &f.name == name {
                    requested[i] = true;
                    found = true;
                    // `web=inherit:http` renames it.
                    if let Some(new) = &spec.name {
                        f.name = new.clone();
                    }
                }
            }
            if !found {
                let have: Vec<&str> = pool.iter().map(|f| f.name.as_str()).collect();
                if have.is_empty() {
                    bail!("inherit:{name}: nothing was inherited (no LISTEN_FDS for gracewrap)");
                }
                bail!(
                    "inherit:{name}: no inherited socket is named {name} (inherited: {})",
                    have.join(", ")
                );
            }
            return Ok(Choice::Named);
        }
        _ => {}
    }
    let ty = wanted_type(&spec.addr);
    if let Some(name) = &spec.name
        && let Some(i) = pool
            .iter()
            .zip(infos)
            .position(|(f, info)| &f.name == name && info.ty == Some(ty))
    {
        return Ok(Choice::Inherited(i));
    }
    if let Some(i) = infos
        .iter()
        .position(|info| same_address(&spec.addr, ty, info))
    {
        return Ok(Choice::Inherited(i));
    }
    Ok(Choice::Bind)
}

fn take_fd(fd: RawFd) -> Result<OwnedFd> {
    fds::take(fd).map_err(|e| match e {
        TakeError::NotOpen => anyhow!("fd:{fd}: fd {fd} is not open"),
        TakeError::NotSocket => anyhow!("fd:{fd}: fd {fd} is not a socket"),
        TakeError::Other(e) => anyhow!("fd:{fd}: {}", reason(e)),
    })
}

fn info(fd: &OwnedFd) -> Info {
    Info {
        ty: sockopt::socket_type(fd.as_fd()).ok(),
        addr: getsockname(fd.as_fd()).ok(),
    }
}

fn wanted_type(addr: &Addr) -> SocketType {
    match addr {
        Addr::Inet {
            proto: Proto::Tcp, ..
        } => SocketType::STREAM,
        Addr::Inet {
            proto: Proto::Udp, ..
        } => SocketType::DGRAM,
        Addr::Unix { kind, .. } | Addr::Vsock { kind, .. } => match kind {
            UnixKind::Stream => SocketType::STREAM,
            UnixKind::Dgram => SocketType::DGRAM,
            UnixKind::Seqpacket => SocketType::SEQPACKET,
        },
        Addr::Fd(_) | Addr::Inherit(_) => SocketType::STREAM,
    }
}

/// Whether an inherited socket is what `addr` would bind.
fn same_address(addr: &Addr, ty: SocketType, info: &Info) -> bool {
    let Some(bound) = &info.addr else {
        return false;
    };
    if info.ty != Some(ty) {
        return false;
    }
    match addr {
        Addr::Inet {
            family, host, port, ..
        } => {
            let Ok(bound) = std::net::SocketAddr::try_from(bound.clone()) else {
                return false;
            };
            if *port == 0 || bound.port() != *port {
                return false;
            }
            let ip = bound.ip();
            match host {
                // gracenet's isSameAddr: 0.0.0.0 and [::] are the same.
                Host::Unspecified => ip.is_unspecified(),
                Host::Localhost if *family == Family::V6 => ip == std::net::Ipv6Addr::LOCALHOST,
                Host::Localhost => ip == std::net::Ipv4Addr::LOCALHOST,
                Host::V4(a) => ip == *a,
                Host::V6(a, _) => ip == *a,
            }
        }
        Addr::Unix { path, .. } => {
            let Ok(bound) = SocketAddrUnix::try_from(bound.clone()) else {
                return false;
            };
            match path {
                UnixPath::Abstract(name) => bound.abstract_name() == Some(name.as_slice()),
                UnixPath::File(p) => bound.path_bytes().is_some_and(|b| {
                    socket::absolute(Path::new(std::ffi::OsStr::from_bytes(b)))
                        == socket::absolute(Path::new(p))
                }),
            }
        }
        Addr::Vsock { cid, port, .. } => vsock::Addr::parse(bound) == Some((*cid, *port)),
        Addr::Fd(_) | Addr::Inherit(_) => false,
    }
}

#[cfg(test)]
mod tests;
