//! sd_notify(3) in both directions for the supervisor.
//!
//! Downward: every generation gets `NOTIFY_SOCKET` pointing at a datagram
//! socket of ours (an autobound abstract name, unique by construction, no
//! file to clean up) with SO_PASSCRED on, so each message arrives with the
//! sender's pid from the kernel (SCM_CREDENTIALS) and is attributed to the
//! right generation; nobody can claim another process's pid.
//!
//! Upward: when gracewrap itself was given `NOTIFY_SOCKET` (a systemd
//! `Type=notify` service), it reports READY=1, RELOADING=1, STOPPING=1,
//! STATUS= and MAINPID= (its own pid, so `NotifyAccess=main` works).

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType, bind, getsockname, recvmsg, sendto, socket_with, sockopt,
};

/// The socket generations report to.
#[derive(Debug)]
pub struct Listener {
    sock: OwnedFd,
    /// The `NOTIFY_SOCKET` value for children: `@` + the abstract name.
    pub env_value: std::ffi::OsString,
}

/// One message from a child.
#[derive(Debug)]
pub struct Message {
    /// The sender's pid as the kernel saw it.
    pub pid: i32,
    pub text: String,
}

impl Message {
    /// Whether an assignment `KEY=VALUE` is in the message.
    pub fn has(&self, assignment: &str) -> bool {
        self.text.lines().any(|l| l == assignment)
    }

    /// The value of `KEY=` in the message, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

impl Listener {
    pub fn new() -> rustix::io::Result<Listener> {
        let sock = socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        sockopt::set_socket_passcred(&sock, true)?;
        bind(&sock, &SocketAddrUnix::new_unnamed())?;
        let name = SocketAddrUnix::try_from(getsockname(&sock)?)
            .ok()
            .and_then(|a| a.abstract_name().map(<[u8]>::to_vec))
            .ok_or(Errno::AFNOSUPPORT)?;
        let mut env = b"@".to_vec();
        env.extend_from_slice(&name);
        Ok(Listener {
            sock,
            env_value: std::ffi::OsStr::from_bytes(&env).to_owned(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Every message waiting, with its sender's pid. Messages without
    /// credentials (impossible with SO_PASSCRED) are dropped.
    pub fn drain(&self) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            let mut space =
                [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(8))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg(&self.sock, &mut iov, &mut control, RecvFlags::DONTWAIT) {
                Ok(msg) => msg,
                Err(Errno::INTR) => continue,
                Err(_) => return out,
            };
            let mut pid = None;
            for cmsg in control.drain() {
                match cmsg {
                    RecvAncillaryMessage::ScmCredentials(cred) => {
                        pid = Some(cred.pid.as_raw_nonzero().get())
                    }
                    // Fds sent along (FDSTORE=1): not kept, closed here.
                    RecvAncillaryMessage::ScmRights(fds) => fds.for_each(drop),
                    _ => {}
                }
            }
            if let Some(pid) = pid {
                let n = msg.bytes.min(buf.len());
                out.push(Message {
                    pid,
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                });
            }
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
