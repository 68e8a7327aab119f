//! The `--listen` SPEC grammar: `[NAME=]TYPE:ADDRESS[,OPTION[=VALUE]...]`.
//!
//! Parsing is pure: nothing here touches the OS. Interface scopes (`%eth0`)
//! are kept as names and resolved when the socket is bound. Every spec has a
//! canonical form ([`Spec::to_os_string`]) that parses back to the same
//! value, which is what error messages and tests use.
//!
//! Accepted forms (see also man/gracewrap.1, section SPEC):
//!
//! | form | meaning |
//! |---|---|
//! | `tcp:HOST:PORT`, `tcp4:`, `tcp6:` | TCP listener; HOST is an IPv4 literal, `[IPv6]` (optionally `%scope`), `localhost`, or empty (all interfaces) |
//! | `udp:HOST:PORT`, `udp4:`, `udp6:` | UDP socket, bound, not listening |
//! | `unix:PATH`, `unixgram:PATH`, `unixpacket:PATH` (`seqpacket:`) | AF_UNIX stream / datagram / seqpacket; `@name` is abstract |
//! | `fd:N` | an fd gracewrap already has open, passed on as it is |
//! | `8080`, `1.2.3.4:80`, `[::1]:80`, `/path`, `./path`, `@name` | systemd-socket-activate's bare forms |
//! | `tcp::127.0.0.1:80`, `unix::/path` | systemfd's `TYPE::VALUE` spelling |

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::io::RawFd;

/// Longest name systemd accepts in `LISTEN_FDNAMES` (`FDNAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Longest unix socket path: `sun_path` is 108 bytes including the NUL.
pub const UNIX_PATH_MAX: usize = 107;

/// One parsed `--listen` argument.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Spec {
    /// The socket's name in `LISTEN_FDNAMES`, if the user gave one.
    pub name: Option<String>,
    /// What to bind (or which fd to take).
    pub addr: Addr,
    /// Per-socket options from the comma suffix.
    pub opts: Opts,
}

/// The address part of a spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Addr {
    /// `tcp*:` and `udp*:`.
    Inet {
        proto: Proto,
        family: Family,
        host: Host,
        port: u16,
    },
    /// `unix:`, `unixgram:`, `unixpacket:`.
    Unix { kind: UnixKind, path: UnixPath },
    /// `fd:N`.
    Fd(RawFd),
    /// `inherit:NAME`: the inherited socket(s) with that name.
    Inherit(String),
    /// `vsock:CID:PORT` (and `vsock-dgram:`, `vsock-seqpacket:`).
    Vsock { kind: UnixKind, cid: u32, port: u32 },
}

/// `VMADDR_CID_ANY`: bind on every CID of this machine.
pub const VSOCK_CID_ANY: u32 = u32::MAX;

/// Transport protocol of an inet spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Which address family the TYPE asked for: `tcp:` (either), `tcp4:`, `tcp6:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// The HOST part of an inet spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    /// Empty host: all interfaces.
    Unspecified,
    /// `localhost`: 127.0.0.1, or ::1 for `tcp6:`/`udp6:`. Never looked up.
    Localhost,
    V4(Ipv4Addr),
    /// An IPv6 literal with an optional `%scope` (interface name or index).
    V6(Ipv6Addr, Option<String>),
}

/// Socket type of a unix or vsock spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnixKind {
    Stream,
    Dgram,
    Seqpacket,
}

/// Where a unix socket lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnixPath {
    /// A filesystem path (absolute or relative), as raw bytes.
    File(OsString),
    /// An abstract name (the part after `@`).
    Abstract(Vec<u8>),
}

/// IPv6 socket mode chosen with `v6only` / `dualstack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum V6Mode {
    V6Only,
    DualStack,
}

/// Per-socket options (`,backlog=N,reuseport,...`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Opts {
    /// `backlog=N`: listen(2) backlog. Default: as large as the kernel allows.
    pub backlog: Option<u32>,
    /// `reuseport`: SO_REUSEPORT (inet only).
    pub reuseport: bool,
    /// `v6only` / `dualstack`: IPV6_V6ONLY (IPv6 only).
    pub v6: Option<V6Mode>,
    /// The other options, rarely given: kept out of line (None when all
    /// are unset), so that a thousand specs stay small in memory.
    pub more: Option<Box<More>>,
}

/// The less common per-socket options (see [`Opts::more`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct More {
    /// `freebind`: IP_FREEBIND, bind an address not (yet) on this host.
    pub freebind: bool,
    /// `rcvbuf=N`, `sndbuf=N`: SO_RCVBUF, SO_SNDBUF in bytes.
    pub rcvbuf: Option<u32>,
    pub sndbuf: Option<u32>,
    /// `nodelay`: TCP_NODELAY (accepted sockets inherit it on Linux).
    pub nodelay: bool,
    /// `keepalive`: SO_KEEPALIVE (inherited by accepted sockets).
    pub keepalive: bool,
    /// `defer_accept=SECONDS`: TCP_DEFER_ACCEPT.
    pub defer_accept: Option<u32>,
    /// `fastopen=N`: TCP_FASTOPEN queue length.
    pub fastopen: Option<u32>,
    /// `bind_device=IFACE`: SO_BINDTODEVICE.
    pub bind_device: Option<String>,
    /// `mark=N`: SO_MARK.
    pub mark: Option<u32>,
    /// `mode=MODE`: permission bits of the socket file.
    pub mode: Option<u32>,
    /// `owner=USER|UID`, `group=GROUP|GID` of the socket file.
    pub owner: Option<String>,
    pub group: Option<String>,
    /// `mkdir[=MODE]`: create missing parent directories with this mode.
    pub mkdir: Option<u32>,
}

impl More {
    const NONE: More = More {
        freebind: false,
        rcvbuf: None,
        sndbuf: None,
        nodelay: false,
        keepalive: false,
        defer_accept: None,
        fastopen: None,
        bind_device: None,
        mark: None,
        mode: None,
        owner: None,
        group: None,
        mkdir: None,
    };
}

impl Opts {
    /// The less common options (all unset if none was given).
    pub fn more(&self) -> &More {
        self.more.as_deref().unwrap_or(&More::NONE)
    }

    fn more_mut(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }
}

/// The mode of directories `mkdir` creates when it is given no MODE.
pub const MKDIR_MODE: u32 = 0o755;

/// A parse failure, already worded for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

/// Checks a name the way systemd's `fdname_is_valid()` does: printable
/// ASCII, no `:`, at most 255 bytes. Empty is valid for systemd too.
pub fn check_name(name: &[u8]) -> Result<&str, SpecError> {
    if name.len() > NAME_MAX {
        return err(format!(
            "name is {} bytes long, at most {NAME_MAX} are allowed",
            name.len()
        ));
    }
    if let Some(&b) = name
        .iter()
        .find(|&&b| !(0x20..=0x7e).contains(&b) || b == b':')
    {
        return err(if b == b':' {
            "name must not contain ':'".to_string()
        } else {
            format!("name contains the byte 0x{b:02x}; only printable ASCII is allowed")
        });
    }
    // Only printable ASCII is left, so this cannot fail.
    std::str::from_utf8(name).map_err(|_| SpecError("name is not ASCII".into()))
}

impl Spec {
    /// Parses one `--listen` argument.
    pub fn parse(arg: &OsStr) -> Result<Spec, SpecError> {
        Self::parse_form(arg).map(|(spec, _)| spec)
    }

    /// Parses, and says whether the address was written in one of the bare
    /// forms (no `TYPE:`), which `--datagram` and `--seqpacket` retype.
    pub fn parse_form(arg: &OsStr) -> Result<(Spec, bool), SpecError> {
        let bytes = arg.as_bytes();
        if bytes.is_empty() {
            return err("empty address");
        }
        if bytes.contains(&0) {
            return err("contains a NUL byte");
        }
        let (name, rest) = split_name(bytes);
        let name = name.map(|n| check_name(n).map(str::to_owned)).transpose()?;
        let (addr_text, opt_texts) = split_options(rest);
        let (addr, bare) = parse_addr(&addr_text)?;
        let opts = parse_opts(&addr, &opt_texts)?;
        Ok((Spec { name, addr, opts }, bare))
    }

    /// systemd-socket-activate's `--datagram` / `--seqpacket` applied to a
    /// bare spec: TCP becomes UDP, a unix stream socket becomes a datagram
    /// or seqpacket one. The options are checked again for the new type.
    pub fn retype(&self, kind: UnixKind) -> Result<Spec, SpecError> {
        let addr = match (&self.addr, kind) {
            (
                Addr::Inet {
                    family, host, port, ..
                },
                UnixKind::Dgram,
            ) => Addr::Inet {
                proto: Proto::Udp,
                family: *family,
                host: host.clone(),
                port: *port,
            },
            (Addr::Inet { .. }, _) => return err("--seqpacket applies only to unix sockets"),
            (Addr::Unix { path, .. }, kind) => Addr::Unix {
                kind,
                path: path.clone(),
            },
            (other, _) => other.clone(),
        };
        let retyped = Spec {
            addr,
            ..self.clone()
        };
        Spec::parse(&retyped.to_os_string())
    }

    /// The canonical form: parses back to `self`, and is what gracewrap
    /// prints when it names a socket.
    pub fn to_os_string(&self) -> OsString {
        let mut out = Vec::new();
        if let Some(name) = &self.name {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
        }
        out.extend_from_slice(&self.addr.to_bytes());
        let opts = self.opts.to_string();
        if !opts.is_empty() {
            out.push(b',');
            out.extend_from_slice(opts.as_bytes());
        }
        OsString::from_vec(out)
    }

    /// True if the spec asks for a kernel-chosen port (`:0`).
    pub fn wants_free_port(&self) -> bool {
        matches!(self.addr, Addr::Inet { port: 0, .. })
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_os_string().to_string_lossy())
    }
}

impl Addr {
    /// Canonical TYPE:ADDRESS bytes (no name, no options).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Addr::Inet {
                proto,
                family,
                host,
                port,
            } => {
                let ty = match (proto, family) {
                    (Proto::Tcp, Family::Any) => "tcp",
                    (Proto::Tcp, Family::V4) => "tcp4",
                    (Proto::Tcp, Family::V6) => "tcp6",
                    (Proto::Udp, Family::Any) => "udp",
                    (Proto::Udp, Family::V4) => "udp4",
                    (Proto::Udp, Family::V6) => "udp6",
                };
                let mut out = format!("{ty}:").into_bytes();
                match host {
                    Host::Unspecified => {}
                    Host::Localhost => out.extend_from_slice(b"localhost"),
                    Host::V4(ip) => out.extend_from_slice(ip.to_string().as_bytes()),
                    Host::V6(ip, None) => out.extend_from_slice(format!("[{ip}]").as_bytes()),
                    Host::V6(ip, Some(scope)) => {
                        out.extend_from_slice(format!("[{ip}%").as_bytes());
                        // The whole address is unescaped when parsed, and
                        // an interface name may hold '\\' or ',' (Linux
                        // allows both): escape them as in a unix path.
                        escape_into(&mut out, scope.as_bytes());
                        out.push(b']');
                    }
                }
                out.extend_from_slice(format!(":{port}").as_bytes());
                out
            }
            Addr::Unix { kind, path } => {
                let mut out = match kind {
                    UnixKind::Stream => b"unix:".to_vec(),
                    UnixKind::Dgram => b"unixgram:".to_vec(),
                    UnixKind::Seqpacket => b"unixpacket:".to_vec(),
                };
                let raw: &[u8] = match path {
                    UnixPath::File(p) => {
                        // A path starting with ':' gets systemfd's extra
                        // ':' so that it is not taken for that spelling.
                        if p.as_bytes().starts_with(b":") {
                            out.push(b':');
                        }
                        p.as_bytes()
                    }
                    UnixPath::Abstract(name) => {
                        out.push(b'@');
                        name
                    }
                };
                escape_into(&mut out, raw);
                out
            }
            Addr::Fd(n) => format!("fd:{n}").into_bytes(),
            Addr::Inherit(name) => {
                let mut out = b"inherit:".to_vec();
                escape_into(&mut out, name.as_bytes());
                out
            }
            Addr::Vsock { kind, cid, port } => {
                let ty = match kind {
                    UnixKind::Stream => "vsock",
                    UnixKind::Dgram => "vsock-dgram",
                    UnixKind::Seqpacket => "vsock-seqpacket",
                };
                match *cid {
                    VSOCK_CID_ANY => format!("{ty}:any:{port}"),
                    cid => format!("{ty}:{cid}:{port}"),
                }
                .into_bytes()
            }
        }
    }

    /// True for sockets that get listen(2): TCP, unix stream and seqpacket.
    /// Unknown for `fd:N` and `inherit:NAME` (passed on as they are),
    /// reported as false.
    pub fn is_listening(&self) -> bool {
        match self {
            Addr::Inet { proto, .. } => *proto == Proto::Tcp,
            Addr::Unix { kind, .. } | Addr::Vsock { kind, .. } => *kind != UnixKind::Dgram,
            Addr::Fd(_) | Addr::Inherit(_) => false,
        }
    }
}

impl fmt::Display for Opts {
    /// The options in a fixed order, so that equal options print equal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.more();
        let flag = |on: bool, name: &str| on.then(|| name.to_string());
        let number = |name: &str, v: Option<u32>| v.map(|v| format!("{name}={v}"));
        let parts = [
            number("backlog", self.backlog),
            flag(self.reuseport, "reuseport"),
            self.v6.map(|m| match m {
                V6Mode::V6Only => "v6only".to_string(),
                V6Mode::DualStack => "dualstack".to_string(),
            }),
            flag(m.freebind, "freebind"),
            number("rcvbuf", m.rcvbuf),
            number("sndbuf", m.sndbuf),
            flag(m.nodelay, "nodelay"),
            flag(m.keepalive, "keepalive"),
            number("defer_accept", m.defer_accept),
            number("fastopen", m.fastopen),
            m.bind_device.as_ref().map(|d| format!("bind_device={d}")),
            number("mark", m.mark),
            m.mode.map(|m| format!("mode={m:04o}")),
            m.owner.as_ref().map(|o| format!("owner={o}")),
            m.group.as_ref().map(|g| format!("group={g}")),
            m.mkdir.map(|m| match m {
                MKDIR_MODE => "mkdir".to_string(),
                m => format!("mkdir={m:04o}"),
            }),
        ];
        let parts: Vec<String> = parts.into_iter().flatten().collect();
        f.write_str(&parts.join(","))
    }
}

/// Appends `raw` with `\\` and `,` escaped (see [`split_options`]).
fn escape_into(out: &mut Vec<u8>, raw: &[u8]) {
    for &b in raw {
        if b == b',' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Splits `NAME=` off the front. A prefix counts as a name only if it holds
/// no `:`, `/` or `,`, so `unix:/a=b`, `/srv/a=b` and `8080,backlog=5` keep
/// their `=`.
fn split_name(bytes: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match bytes.iter().position(|&b| b == b'=') {
        Some(eq) if !bytes[..eq].iter().any(|&b| matches!(b, b':' | b'/' | b',')) => {
            (Some(&bytes[..eq]), &bytes[eq + 1..])
        }
        _ => (None, bytes),
    }
}

/// Splits the address from the comma-separated options. In the address,
/// `\\,` stands for a literal comma (unix paths may contain commas) and
/// `\\\\` for a backslash; any other backslash is taken as it is. The
/// address is only copied when it holds an escape.
fn split_options(bytes: &[u8]) -> (Cow<'_, [u8]>, Vec<&[u8]>) {
    let escape = |i: usize| bytes[i] == b'\\' && matches!(bytes.get(i + 1), Some(b',' | b'\\'));
    let mut end = 0;
    let mut escaped = false;
    while end < bytes.len() {
        if escape(end) {
            escaped = true;
            end += 2;
        } else if bytes[end] == b',' {
            break;
        } else {
            end += 1;
        }
    }
    let addr = if escaped {
        let mut out = Vec::with_capacity(end);
        let mut i = 0;
        while i < end {
            if escape(i) {
                i += 1;
            }
            out.push(bytes[i]);
            i += 1;
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(&bytes[..end])
    };
    let opts = if end < bytes.len() {
        bytes[end + 1..].split(|&b| b == b',').collect()
    } else {
        Vec::new()
    };
    (addr, opts)
}

/// The TYPE: prefixes gracewrap knows, for the "unknown type" message.
const TYPES: &str = "tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixgram, unixpacket, seqpacket, vsock, vsock-dgram, vsock-seqpacket, fd, inherit";

/// The address and whether it was bare (no TYPE: prefix).
fn parse_addr(text: &[u8]) -> Result<(Addr, bool), SpecError> {
    if text.is_empty() {
        return err("empty address");
    }
    // A TYPE: prefix is a lowercase word followed by ':'. Bare forms start
    // with a digit, '[', '/', '.', or '@', so they never look like one.
    let word_len = text
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .count();
    let typed = word_len > 0 && text.get(word_len) == Some(&b':') && text[0].is_ascii_alphabetic();
    if !typed {
        return parse_bare(text).map(|a| (a, true));
    }
    let ty = &text[..word_len];
    let rest = &text[word_len + 1..];
    let inet = |proto, family| parse_inet(proto, family, rest);
    let addr = match ty {
        b"tcp" => inet(Proto::Tcp, Family::Any),
        b"tcp4" => inet(Proto::Tcp, Family::V4),
        b"tcp6" => inet(Proto::Tcp, Family::V6),
        b"udp" => inet(Proto::Udp, Family::Any),
        b"udp4" => inet(Proto::Udp, Family::V4),
        b"udp6" => inet(Proto::Udp, Family::V6),
        b"unix" => parse_unix(UnixKind::Stream, rest),
        b"unixgram" => parse_unix(UnixKind::Dgram, rest),
        b"unixpacket" | b"seqpacket" => parse_unix(UnixKind::Seqpacket, rest),
        b"fd" => parse_fd(rest),
        b"inherit" => parse_inherit(rest),
        b"vsock" | b"vsock-stream" => parse_vsock(UnixKind::Stream, rest),
        b"vsock-dgram" => parse_vsock(UnixKind::Dgram, rest),
        b"vsock-seqpacket" => parse_vsock(UnixKind::Seqpacket, rest),
        // `localhost:8080` is a bare HOST:PORT, not a type.
        b"localhost" => return parse_inet(Proto::Tcp, Family::Any, text).map(|a| (a, true)),
        _ => err(format!(
            "unknown socket type '{}' (known types: {TYPES})",
            String::from_utf8_lossy(ty)
        )),
    };
    addr.map(|a| (a, false))
}

/// systemd-socket-activate's forms: `8080`, `1.2.3.4:80`, `[::1]:80`,
/// `/path`, `@name`; plus `./path` and `../path`.
fn parse_bare(text: &[u8]) -> Result<Addr, SpecError> {
    match text[0] {
        b'/' | b'@' => parse_unix(UnixKind::Stream, text),
        b'.' if text.starts_with(b"./") || text.starts_with(b"../") => {
            parse_unix(UnixKind::Stream, text)
        }
        b'[' | b'0'..=b'9' => parse_inet(Proto::Tcp, Family::Any, text),
        _ => err(format!(
            "cannot parse '{}': expected TYPE:ADDRESS (e.g. tcp::8080, unix:/run/app.sock), a port, IP:PORT, or a path starting with /",
            String::from_utf8_lossy(text)
        )),
    }
}

fn parse_inet(proto: Proto, family: Family, text: &[u8]) -> Result<Addr, SpecError> {
    let text =
        std::str::from_utf8(text).map_err(|_| SpecError("address is not valid UTF-8".into()))?;
    let written = text;
    // systemfd writes `tcp::127.0.0.1:80`; accept its extra ':'.
    let text = match text.strip_prefix(':') {
        Some(rest) if rest.contains(':') || rest.starts_with('[') => rest,
        _ => text,
    };
    let (host, port) = if let Some(after) = text.strip_prefix('[') {
        let close = after
            .find(']')
            .ok_or_else(|| SpecError(format!("missing ']' in '[{after}'")))?;
        let port = after[close + 1..]
            .strip_prefix(':')
            .ok_or_else(|| SpecError(format!("expected ':PORT' after '[{}]'", &after[..close])))?;
        (parse_v6_host(&after[..close])?, port)
    } else {
        match text.rsplit_once(':') {
            None => (Host::Unspecified, text),
            Some((host, port)) => {
                if host.contains(':') {
                    // `tcp:::1:80` lost a ':' to the systemfd spelling
                    // above: name the address as written if it is one.
                    let host = written
                        .rsplit_once(':')
                        .map(|(h, _)| h)
                        .filter(|h| h.parse::<Ipv6Addr>().is_ok())
                        .unwrap_or(host);
                    return err(format!(
                        "IPv6 address '{host}' must be in brackets, e.g. [{host}]:{port}"
                    ));
                }
                (parse_plain_host(host)?, port)
            }
        }
    };
    let port = parse_port(port)?;
    match (&host, family) {
        (Host::V6(..), Family::V4) => {
            return err(format!("{}4 needs an IPv4 address", proto_name(proto)));
        }
        (Host::V4(_), Family::V6) => {
            return err(format!("{}6 needs an IPv6 address", proto_name(proto)));
        }
        // An IPv6-only socket cannot bind an IPv4-mapped address (EINVAL).
        (Host::V6(ip, _), Family::V6) if ip.to_ipv4_mapped().is_some() => {
            return err(format!(
                "{p}6 is IPv6 only, and [{ip}] is an IPv4-mapped address; use {p}4:{} or {p}:",
                ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                p = proto_name(proto)
            ));
        }
        _ => {}
    }
    Ok(Addr::Inet {
        proto,
        family,
        host,
        port,
    })
}

fn proto_name(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

fn parse_plain_host(host: &str) -> Result<Host, SpecError> {
    if host.is_empty() {
        return Ok(Host::Unspecified);
    }
    if host == "localhost" {
        return Ok(Host::Localhost);
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::V4(ip));
    }
    err(format!(
        "'{host}' is not an IP address (hostnames other than localhost are not resolved; give an IP literal)"
    ))
}

fn parse_v6_host(inner: &str) -> Result<Host, SpecError> {
    let (ip, scope) = match inner.split_once('%') {
        Some((ip, scope)) => (ip, Some(scope)),
        None => (inner, None),
    };
    let ip: Ipv6Addr = ip
        .parse()
        .map_err(|_| SpecError(format!("'{ip}' is not an IPv6 address")))?;
    let scope = match scope {
        None => None,
        Some("") => return err(format!("empty interface after '%' in '[{inner}]'")),
        Some(s) if s.len() > 15 || s.bytes().any(|b| b == b'/' || !b.is_ascii_graphic()) => {
            return err(format!("'{s}' is not a valid interface name"));
        }
        Some(s) => Some(s.to_owned()),
    };
    Ok(Host::V6(ip, scope))
}

fn parse_port(port: &str) -> Result<u16, SpecError> {
    if port.is_empty() {
        return err("missing port");
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return err(format!("port '{port}' is not a number"));
    }
    port.parse::<u16>()
        .map_err(|_| SpecError(format!("port {port} is out of range (0-65535)")))
}

fn parse_unix(kind: UnixKind, text: &[u8]) -> Result<Addr, SpecError> {
    // systemfd writes `unix::/path`; accept its extra ':' (and use it for
    // paths that start with ':').
    let text = match text {
        [b':', rest @ ..] if matches!(rest.first(), Some(b'/' | b'@' | b'.' | b':')) => rest,
        _ => text,
    };
    if text.is_empty() {
        return err("missing unix socket path");
    }
    let path = if let Some(name) = text.strip_prefix(b"@") {
        if name.is_empty() {
            return err("missing abstract socket name after '@'");
        }
        if name.len() > UNIX_PATH_MAX {
            return err(format!(
                "abstract name is {} bytes long, at most {UNIX_PATH_MAX} fit",
                name.len()
            ));
        }
        UnixPath::Abstract(name.to_vec())
    } else {
        if text.len() > UNIX_PATH_MAX {
            return err(format!(
                "unix socket path is {} bytes long, at most {UNIX_PATH_MAX} fit in sun_path",
                text.len()
            ));
        }
        if text.ends_with(b"/") {
            return err("unix socket path ends with '/'");
        }
        UnixPath::File(OsString::from_vec(text.to_vec()))
    };
    Ok(Addr::Unix { kind, path })
}

fn parse_fd(text: &[u8]) -> Result<Addr, SpecError> {
    let s = std::str::from_utf8(text).unwrap_or("");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return err(format!(
            "fd:'{}' is not a file descriptor number",
            String::from_utf8_lossy(text)
        ));
    }
    s.parse::<RawFd>()
        .map(Addr::Fd)
        .map_err(|_| SpecError(format!("fd {s} is out of range")))
}

fn parse_inherit(text: &[u8]) -> Result<Addr, SpecError> {
    if text.is_empty() {
        return err("inherit: needs the NAME of an inherited socket");
    }
    Ok(Addr::Inherit(check_name(text)?.to_owned()))
}

/// `vsock:CID:PORT` as systemd-socket-activate reads it: CID empty, `any`
/// or `-1` (any), `hypervisor` (0), `local` (1), `host` (2), or a number.
fn parse_vsock(kind: UnixKind, text: &[u8]) -> Result<Addr, SpecError> {
    let text =
        std::str::from_utf8(text).map_err(|_| SpecError("address is not valid UTF-8".into()))?;
    let (cid, port) = text
        .rsplit_once(':')
        .ok_or_else(|| SpecError(format!("expected vsock:CID:PORT, got vsock:{text}")))?;
    let cid = match cid {
        "" | "any" | "-1" => VSOCK_CID_ANY,
        "hypervisor" => 0,
        "local" => 1,
        "host" => 2,
        n => n
            .parse::<u32>()
            .ok()
            .filter(|&n| n != VSOCK_CID_ANY)
            .ok_or_else(|| {
                SpecError(format!(
                    "vsock CID '{n}' is not a number, any, hypervisor, local or host"
                ))
            })?,
    };
    if port.is_empty() {
        return err("missing port");
    }
    let port = port
        .parse::<u32>()
        .ok()
        .filter(|&p| p != u32::MAX)
        .ok_or_else(|| {
            SpecError(format!(
                "vsock port '{port}' is not a number below 4294967295"
            ))
        })?;
    Ok(Addr::Vsock { kind, cid, port })
}

/// What kind of socket an option is for, in messages and checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum For {
    /// TCP, unix stream/seqpacket, vsock stream/seqpacket.
    Listening,
    /// tcp and udp.
    Inet,
    /// tcp only.
    Tcp,
    /// Anything gracewrap binds.
    Bound,
    /// A unix socket with a path (not abstract).
    UnixFile,
}

impl For {
    fn allows(self, addr: &Addr) -> bool {
        match self {
            For::Listening => addr.is_listening(),
            For::Inet => matches!(addr, Addr::Inet { .. }),
            For::Tcp => matches!(
                addr,
                Addr::Inet {
                    proto: Proto::Tcp,
                    ..
                }
            ),
            For::Bound => true,
            For::UnixFile => matches!(
                addr,
                Addr::Unix {
                    path: UnixPath::File(_),
                    ..
                }
            ),
        }
    }

    fn what(self) -> &'static str {
        match self {
            For::Listening => "listening sockets (tcp, unix, unixpacket, vsock, vsock-seqpacket)",
            For::Inet => "tcp and udp sockets",
            For::Tcp => "tcp sockets",
            For::Bound => "sockets gracewrap binds",
            For::UnixFile => "unix sockets with a path (an abstract name has no file)",
        }
    }
}

/// A number option: decimal, or `0x` hex; `k`/`m` suffixes (x1024) where
/// `sizes`.
fn parse_number(key: &str, v: &str, sizes: bool, min: u64, max: u64) -> Result<u32, SpecError> {
    let (digits, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') if sizes => (&v[..v.len() - 1], 1024),
        Some(b'm' | b'M') if sizes => (&v[..v.len() - 1], 1024 * 1024),
        _ => (v, 1),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse::<u64>().ok(),
        None => None,
    };
    n.and_then(|n| n.checked_mul(mult))
        .filter(|n| (min..=max).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| SpecError(format!("{key} '{v}' is not a number from {min} to {max}")))
}

/// `0660`, `660`: permission bits, in octal.
fn parse_mode(key: &str, v: &str) -> Result<u32, SpecError> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| !v.is_empty() && v.len() <= 4 && *m <= 0o777)
        .ok_or_else(|| SpecError(format!("{key} '{v}' is not an octal mode from 0 to 0777")))
}

fn parse_opts(addr: &Addr, texts: &[&[u8]]) -> Result<Opts, SpecError> {
    let mut opts = Opts::default();
    let mut seen: Vec<&str> = Vec::new();
    for raw in texts {
        let text =
            std::str::from_utf8(raw).map_err(|_| SpecError("option is not valid UTF-8".into()))?;
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (text, None),
        };
        if key.is_empty() {
            return err("empty option (stray ',')");
        }
        match addr {
            Addr::Fd(_) | Addr::Inherit(_) => {
                return err(format!(
                    "option '{key}' does not apply to {} (the socket is passed on as it is)",
                    if matches!(addr, Addr::Fd(_)) {
                        "fd:N"
                    } else {
                        "inherit:NAME"
                    }
                ));
            }
            _ => {}
        }
        let canon = if key == "dualstack" { "v6only" } else { key };
        if seen.contains(&canon) {
            return err(format!("option '{key}' given twice"));
        }
        seen.push(canon);
        let for_ = match key {
            "backlog" => For::Listening,
            "reuseport" | "v6only" | "dualstack" | "freebind" | "bind_device" | "mark" => For::Inet,
            "nodelay" | "keepalive" | "defer_accept" | "fastopen" => For::Tcp,
            "rcvbuf" | "sndbuf" => For::Bound,
            "mode" | "owner" | "group" | "mkdir" => For::UnixFile,
            _ => {
                return err(format!(
                    "unknown option '{key}' (known: backlog=N, reuseport, v6only, dualstack, freebind, rcvbuf=N, sndbuf=N, nodelay, keepalive, defer_accept=SECONDS, fastopen=N, bind_device=IFACE, mark=N, mode=MODE, owner=USER, group=GROUP, mkdir[=MODE])"
                ));
            }
        };
        if !for_.allows(addr) {
            let extra = if key == "reuseport" && matches!(addr, Addr::Unix { .. }) {
                " (Linux refuses SO_REUSEPORT on unix sockets)"
            } else {
                ""
            };
            return err(format!("{key} applies only to {}{extra}", for_.what()));
        }
        let flag = |value: Option<&str>| match value {
            None => Ok(true),
            Some(_) => err(format!("option '{key}' takes no value")),
        };
        let needs = |example: &str| {
            value.ok_or_else(|| SpecError(format!("{key} needs a value, e.g. {key}={example}")))
        };
        let int_max = i32::MAX as u64;
        match key {
            "backlog" => opts.backlog = Some(parse_number(key, needs("1024")?, false, 1, int_max)?),
            "reuseport" => opts.reuseport = flag(value)?,
            "freebind" => opts.more_mut().freebind = flag(value)?,
            "nodelay" => opts.more_mut().nodelay = flag(value)?,
            "keepalive" => opts.more_mut().keepalive = flag(value)?,
            "rcvbuf" => {
                opts.more_mut().rcvbuf = Some(parse_number(key, needs("1M")?, true, 1, int_max)?)
            }
            "sndbuf" => {
                opts.more_mut().sndbuf = Some(parse_number(key, needs("1M")?, true, 1, int_max)?)
            }
            "defer_accept" => {
                opts.more_mut().defer_accept =
                    Some(parse_number(key, needs("5")?, false, 1, int_max)?)
            }
            "fastopen" => {
                opts.more_mut().fastopen =
                    Some(parse_number(key, needs("256")?, false, 1, int_max)?)
            }
            "mark" => {
                opts.more_mut().mark =
                    Some(parse_number(key, needs("0x1")?, false, 0, u32::MAX as u64)?)
            }
            "bind_device" => {
                let dev = needs("eth0")?;
                if dev.is_empty()
                    || dev.len() > 15
                    || dev.bytes().any(|b| b == b'/' || !b.is_ascii_graphic())
                {
                    return err(format!(
                        "bind_device '{dev}' is not a network interface name"
                    ));
                }
                opts.more_mut().bind_device = Some(dev.to_string());
            }
            "mode" => opts.more_mut().mode = Some(parse_mode(key, needs("0660")?)?),
            "mkdir" => {
                opts.more_mut().mkdir = Some(value.map_or(Ok(MKDIR_MODE), |v| parse_mode(key, v))?)
            }
            "owner" | "group" => {
                let who = needs("www-data")?;
                if who.is_empty() || who.contains(':') {
                    return err(format!(
                        "{key} '{who}' is not a {} name or number",
                        if key == "owner" { "user" } else { "group" }
                    ));
                }
                if key == "owner" {
                    opts.more_mut().owner = Some(who.to_string());
                } else {
                    opts.more_mut().group = Some(who.to_string());
                }
            }
            "v6only" | "dualstack" => {
                flag(value)?;
                let mode = if key == "v6only" {
                    V6Mode::V6Only
                } else {
                    V6Mode::DualStack
                };
                match addr {
                    Addr::Inet {
                        family: Family::V6, ..
                    } if mode == V6Mode::DualStack => {
                        return err(
                            "dualstack contradicts tcp6/udp6 (IPv6 only); use tcp: or udp:",
                        );
                    }
                    Addr::Inet {
                        host: Host::V6(ip, _),
                        ..
                    } if mode == V6Mode::V6Only && ip.to_ipv4_mapped().is_some() => {
                        return err(format!("v6only contradicts [{ip}], an IPv4-mapped address"));
                    }
                    Addr::Inet {
                        family: Family::V6 | Family::Any,
                        host: Host::Unspecified | Host::V6(..),
                        ..
                    } => opts.v6 = Some(mode),
                    _ => return err(format!("{key} applies only to IPv6 sockets")),
                }
            }
            _ => unreachable!("filtered above"),
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests;
