//! sd_notify(3) in both directions for the supervisor.
//!
//! Downward: every generation gets `NOTIFY_SOCKET` pointing at a datagram
//! socket of ours with SO_PASSCRED on, so each message arrives with the
//! sender's pid from the kernel (SCM_CREDENTIALS) and is attributed to the
//! right generation; nobody can claim another process's pid.
//!
//! The socket is a file in a private directory (mode 0700, owned by the
//! user the generations start as), as systemd's /run/systemd/notify is
//! protected, so other local users cannot reach it at all: an abstract
//! name is open to every process in the network namespace (and listed in
//! /proc/net/unix). The directory is created with an unpredictable name
//! under the first of `$RUNTIME_DIRECTORY`, `$XDG_RUNTIME_DIR`, /run,
//! `$TMPDIR`, /tmp and /dev/shm that only its owner (or root) can rename
//! things in, and removed at exit. Only where none can be used (a
//! read-only container image) is it an abstract name, and the supervisor
//! says so with -v.
//!
//! Whoever can reach it, reading is bounded: at most [`BATCH`] datagrams
//! per wake-up, each handled as it is read (one buffer, nothing queued in
//! gracewrap); fds sent along are handed over with their datagram, for the
//! supervisor to keep (the fd store, bounded by `--fdstore`) or close.
//!
//! Upward: when gracewrap itself was given `NOTIFY_SOCKET` (a systemd
//! `Type=notify` service), it reports READY=1, RELOADING=1, STOPPING=1,
//! STATUS=, ERRNO=, BUSERROR=, EXTEND_TIMEOUT_USEC=, WATCHDOG=1 and
//! MAINPID= (its own pid, so `NotifyAccess=main` works).

use std::ffi::{OsStr, OsString};
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags,
    SocketAddrUnix, SocketFlags, SocketType, bind, getsockname, recvmsg, sendto, socket_with,
    sockopt,
};

/// The most datagrams read per wake-up: a flood cannot keep the
/// supervisor from its signals and timers.
pub const BATCH: usize = 64;

/// The socket generations report to.
#[derive(Debug)]
pub struct Listener {
    sock: OwnedFd,
    /// The `NOTIFY_SOCKET` value for children: a path, or `@` + an
    /// abstract name.
    pub env_value: OsString,
    /// The private directory, removed on drop; None for an abstract name.
    place: Option<Place>,
}

/// The private directory gracewrap created, and the socket file in it.
#[derive(Debug)]
struct Place {
    parent: OwnedFd,
    name: OsString,
    dir: OwnedFd,
    dev: u64,
    ino: u64,
}

/// The socket file's name in the private directory.
const FILE: &str = "notify";

/// One datagram from a child, as it came: the parsing is
/// [`crate::notice::parse`]'s.
#[derive(Debug)]
pub struct Datagram<'a> {
    /// The sender's pid as the kernel saw it.
    pub pid: i32,
    pub bytes: &'a [u8],
    /// It was longer than the buffer, or had more fds than fit (the
    /// kernel closed those): systemd ignores such a datagram.
    pub truncated: bool,
    /// The fds sent along (SCM_RIGHTS), close-on-exec; dropping them
    /// closes them.
    pub fds: Vec<OwnedFd>,
}

impl Listener {
    /// A socket in a private directory owned by `owner` (uid, gid; ours
    /// when None), or an abstract one where no directory can be made.
    pub fn new(owner: Option<(u32, u32)>) -> rustix::io::Result<Listener> {
        let sock = socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        sockopt::set_socket_passcred(&sock, true)?;
        for base in bases() {
            if let Ok((place, path)) = Place::make(&sock, &base, owner) {
                return Ok(Listener {
                    sock,
                    env_value: path,
                    place: Some(place),
                });
            }
        }
        bind(&sock, &SocketAddrUnix::new_unnamed())?;
        let name = SocketAddrUnix::try_from(getsockname(&sock)?)
            .ok()
            .and_then(|a| a.abstract_name().map(<[u8]>::to_vec))
            .ok_or(Errno::AFNOSUPPORT)?;
        let mut env = b"@".to_vec();
        env.extend_from_slice(&name);
        Ok(Listener {
            sock,
            env_value: OsStr::from_bytes(&env).to_owned(),
            place: None,
        })
    }

    /// Whether the socket is a file in a private directory.
    pub fn is_private(&self) -> bool {
        self.place.is_some()
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Reads up to [`BATCH`] waiting datagrams, handing each to `each`
    /// with its sender's pid; returns how many were read (so fewer than
    /// [`BATCH`] means the queue is empty). A datagram without credentials
    /// (impossible with SO_PASSCRED) is dropped, its fds closed.
    pub fn read(&self, mut each: impl FnMut(Datagram<'_>)) -> usize {
        // One byte more than the longest datagram taken, to see a longer one.
        let mut buf = [0u8; crate::notice::MAX_BYTES + 1];
        // SCM_MAX_FD (253) is the most fds one datagram can carry.
        let mut space =
            [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(253))];
        let mut read = 0;
        while read < BATCH {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
            let msg = match recvmsg(&self.sock, &mut iov, &mut control, flags) {
                Ok(msg) => msg,
                Err(Errno::INTR) => continue,
                Err(_) => break,
            };
            read += 1;
            let mut pid = None;
            let mut fds = Vec::new();
            for cmsg in control.drain() {
                match cmsg {
                    RecvAncillaryMessage::ScmCredentials(cred) => {
                        pid = Some(cred.pid.as_raw_nonzero().get())
                    }
                    RecvAncillaryMessage::ScmRights(received) => fds.extend(received),
                    _ => {}
                }
            }
            let truncated = msg.bytes > buf.len()
                || msg
                    .flags
                    .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC);
            if let Some(pid) = pid {
                let n = msg.bytes.min(buf.len());
                each(Datagram {
                    pid,
                    bytes: &buf[..n],
                    truncated,
                    fds,
                });
            }
        }
        read
    }
}

/// Where the private directory may go, in order of preference.
fn bases() -> Vec<OsString> {
    let mut out = Vec::new();
    for var in ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"] {
        if let Some(v) = std::env::var_os(var) {
            // systemd's RuntimeDirectory= may list several, ':'-separated.
            let first = v
                .as_bytes()
                .split(|&b| b == b':')
                .next()
                .unwrap_or_default();
            out.push(OsStr::from_bytes(first).to_owned());
        }
    }
    out.push("/run".into());
    out.extend(std::env::var_os("TMPDIR"));
    out.push("/tmp".into());
    out.push("/dev/shm".into());
    out.retain(|b| b.as_bytes().first() == Some(&b'/'));
    out
}

impl Place {
    /// Creates `BASE/gracewrap.RANDOM/notify` and binds `sock` to it;
    /// returns the place and the path.
    fn make(
        sock: &OwnedFd,
        base: &OsStr,
        owner: Option<(u32, u32)>,
    ) -> rustix::io::Result<(Place, OsString)> {
        let parent = rustix::fs::open(
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let others = owner.is_some_and(|(uid, _)| uid != rustix::process::geteuid().as_raw());
        if !safe_base(&rustix::fs::fstat(&parent)?, others) {
            return Err(Errno::PERM);
        }
        let name = OsString::from(format!("gracewrap.{:016x}", super::random()));
        let mut path = base.to_owned();
        path.push("/");
        path.push(&name);
        path.push("/");
        path.push(FILE);
        // sun_path holds 108 bytes with the terminating NUL.
        if path.len() >= 108 {
            return Err(Errno::NAMETOOLONG);
        }
        rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o700))?;
        let dir = match rustix::fs::openat(
            &parent,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir) => dir,
            Err(e) => {
                let _ = rustix::fs::unlinkat(&parent, &name, AtFlags::REMOVEDIR);
                return Err(e);
            }
        };
        // From here on, dropping the place removes what was made.
        let mut place = Place {
            parent,
            name,
            dir,
            dev: 0,
            ino: 0,
        };
        place.bind(sock, &path, owner)?;
        Ok((place, path))
    }

    /// Binds the socket in the directory (ours alone, 0700, while this
    /// runs), then gives both to `owner`.
    fn bind(
        &mut self,
        sock: &OwnedFd,
        path: &OsStr,
        owner: Option<(u32, u32)>,
    ) -> rustix::io::Result<()> {
        let st = rustix::fs::fstat(&self.dir)?;
        if st.st_uid != rustix::process::geteuid().as_raw() {
            return Err(Errno::PERM);
        }
        rustix::fs::fchmod(&self.dir, Mode::from_raw_mode(0o700))?;
        bind(sock, &SocketAddrUnix::new(path)?)?;
        let st = rustix::fs::statat(&self.dir, FILE, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
            return Err(Errno::PERM);
        }
        (self.dev, self.ino) = (st.st_dev, st.st_ino);
        // The directory keeps everyone else out; the file is its owner's.
        rustix::fs::chmodat(
            &self.dir,
            FILE,
            Mode::from_raw_mode(0o600),
            AtFlags::empty(),
        )?;
        if let Some((uid, gid)) = owner {
            let (uid, gid) = (
                Some(rustix::process::Uid::from_raw(uid)),
                Some(rustix::process::Gid::from_raw(gid)),
            );
            rustix::fs::chownat(&self.dir, FILE, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::fchown(&self.dir, uid, gid)?;
        }
        Ok(())
    }
}

/// Whether a directory is safe to create ours in: nobody but its owner
/// (root or us) can rename or remove what is in it; and, when `others`
/// (the generations run as another user), they can pass through it.
fn safe_base(st: &rustix::fs::Stat, others: bool) -> bool {
    let owner_ok = st.st_uid == 0 || st.st_uid == rustix::process::geteuid().as_raw();
    let shared = st.st_mode & 0o022 != 0;
    let sticky = st.st_mode & 0o1000 != 0;
    let reachable = !others || st.st_mode & 0o001 != 0;
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
        && owner_ok
        && (!shared || sticky)
        && reachable
}

impl Drop for Place {
    fn drop(&mut self) {
        // The socket file only if it is still the one we bound: after the
        // chown, the directory's owner could have put something else there.
        if rustix::fs::statat(&self.dir, FILE, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_dev == self.dev && st.st_ino == self.ino)
        {
            let _ = rustix::fs::unlinkat(&self.dir, FILE, AtFlags::empty());
        }
        // rmdir removes only an empty directory (anything else left in it
        // keeps it there), and only ours: in a sticky /tmp its new owner
        // could have renamed it and made another of that name.
        let ours = rustix::fs::fstat(&self.dir).ok();
        let there = rustix::fs::statat(&self.parent, &self.name, AtFlags::SYMLINK_NOFOLLOW).ok();
        if let (Some(a), Some(b)) = (ours, there)
            && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        {
            let _ = rustix::fs::unlinkat(&self.parent, &self.name, AtFlags::REMOVEDIR);
        }
    }
}

/// gracewrap's own service manager, if it gave us `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Upstream {
    sock: OwnedFd,
    addr: SocketAddrUnix,
}

impl Upstream {
    /// From `NOTIFY_SOCKET` (`/path` or `@abstract`; vsock is not
    /// supported and ignored, as are unusable values).
    pub fn from_env() -> Option<Upstream> {
        let value = std::env::var_os(crate::protocol::NOTIFY_SOCKET)?;
        let bytes = value.as_bytes();
        let addr = match bytes.first()? {
            b'/' => SocketAddrUnix::new(value.as_os_str()).ok()?,
            b'@' => SocketAddrUnix::new_abstract_name(&bytes[1..]).ok()?,
            _ => return None,
        };
        // Non-blocking: a service manager that does not read must never
        // stall the supervisor (a full queue blocked sendto for good).
        let sock = socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .ok()?;
        Some(Upstream { sock, addr })
    }

    /// Sends one message, best effort: never blocks, never raises
    /// SIGPIPE. Returns why it was dropped (a full queue, a service
    /// manager that went away), if it was.
    pub fn send(&self, text: &str) -> Result<(), Errno> {
        sendto(
            &self.sock,
            text.as_bytes(),
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
            &self.addr,
        )
        .map(drop)
    }
}
