//! Unix socket files: binding one without ever deleting what is not a
//! stale socket, `mkdir` for missing parents, `owner=`, `group=` and
//! `mode=` on the file gracewrap just bound.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use anyhow::{Context, Result, anyhow, bail};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, bind, connect, listen, socket_with};

use super::{backlog, describe_unix, set_buffers, unix_type};
use crate::msg::reason;
use crate::spec::{Opts, UnixKind, UnixPath};

pub(super) fn open(kind: UnixKind, path: &UnixPath, opts: &Opts) -> Result<OwnedFd> {
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
        crate::sys::user::socket_owner(opts.more().owner.as_deref(), opts.more().group.as_deref())
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
