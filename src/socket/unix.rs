//! Unix socket files: binding one without ever deleting what is not a
//! stale socket, `mkdir` for missing parents, `owner=`, `group=` and
//! `mode=` on the file gracewrap just bound, and a record ([`Made`]) of
//! every file and directory it created, so that exactly those are removed.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, bind, connect, listen, socket_with};

use super::{backlog, describe_unix, set_buffers, unix_type};
use crate::msg::reason;
use crate::spec::{Opts, UnixKind, UnixPath};

/// A file or directory gracewrap created while binding, known by inode:
/// [`Made::remove`] removes it only if the path still names that one.
#[derive(Debug)]
pub struct Made {
    /// Absolute, so a later `--chdir` does not change what it names.
    path: PathBuf,
    dev: u64,
    ino: u64,
    dir: bool,
}

impl Made {
    fn new(path: &Path, st: &rustix::fs::Stat, dir: bool) -> Made {
        Made {
            path: absolute(path),
            dev: st.st_dev,
            ino: st.st_ino,
            dir,
        }
    }

    /// Removes the socket file or the (empty) directory if the path still
    /// names it. Never follows a symlink, never removes anything else: a
    /// directory someone put files in stays.
    pub fn remove(&self) {
        let same = std::fs::symlink_metadata(&self.path).is_ok_and(|m| {
            let kind = if self.dir {
                m.is_dir()
            } else {
                m.file_type().is_socket()
            };
            kind && m.dev() == self.dev && m.ino() == self.ino
        });
        if same {
            let _ = if self.dir {
                std::fs::remove_dir(&self.path)
            } else {
                std::fs::remove_file(&self.path)
            };
        }
    }
}

/// A path made absolute against the working directory, `.` parts
/// dropped (symlinks not resolved), so `./x.sock` and `/srv/x.sock`
/// compare equal from /srv.
pub fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    joined.components().collect()
}

/// Binds a unix socket; every file and directory created on the way is
/// pushed to `made` as soon as it exists (so a later failure removes it).
pub(super) fn open(
    kind: UnixKind,
    path: &UnixPath,
    opts: &Opts,
    made: &mut Vec<Made>,
) -> Result<OwnedFd> {
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
    // The directory the socket file goes in, open: the file is checked,
    // chowned and chmodded through it, never through the path again.
    let dir = match (file, opts.more().mkdir) {
        (Some(p), Some(mode)) => Some(
            make_parents(Path::new(p), mode, made)
                .with_context(|| format!("cannot bind {}", shown()))?,
        ),
        // One that cannot be opened fails the bind just after, in its words.
        (Some(p), None) => open_dir(parent_of(Path::new(p))).ok(),
        (None, _) => None,
    };
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
    let bound = bind_replacing_stale(&fd, kind, path, &addr, dir.as_ref());
    if let Some(old) = old_umask {
        rustix::process::umask(old);
    }
    bound.with_context(|| format!("cannot bind {}", shown()))?;
    let socket_file = match file {
        Some(p) => record_socket_file(Path::new(p), dir.as_ref(), made)
            .with_context(|| format!("cannot bind {}", shown()))?,
        None => None,
    };
    if let (Some(socket_file), true) = (&socket_file, restrict) {
        // Without mode=: what a plain bind(2) gives, 0777 minus the umask.
        let mode = opts
            .more()
            .mode
            .unwrap_or(0o777 & !old_umask.map_or(0o022, |m| m.as_raw_mode()));
        set_owner_and_mode(socket_file, owner, mode)
            .with_context(|| format!("cannot bind {}", shown()))?;
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
    dir: Option<&OwnedFd>,
) -> Result<()> {
    match bind(fd, addr) {
        Ok(()) => Ok(()),
        Err(Errno::ADDRINUSE) => match path {
            UnixPath::File(p) => {
                replace_stale(kind, p, addr, dir)?;
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

/// The directory a socket file at `path` goes in.
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// An existing directory, opened `O_PATH` (search permission is enough),
/// following symlinks: the user named it.
fn open_dir(dir: &Path) -> Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| anyhow!("cannot open directory {}: {}", dir.display(), reason(e)))
}

/// `mkdir`: creates the missing parents of `path` with `mode` (exactly,
/// not masked by the umask), outermost first, and returns the directory
/// the socket goes in, open. Existing ones are left as they are (a
/// symlink the user put in the path is followed); a parent that exists
/// but is not a directory is an error.
///
/// A directory gracewrap creates is never reached through its name
/// again: it is made with `mkdirat` in its parent's fd and opened
/// `O_NOFOLLOW`, must be owned by us (not something swapped in by the
/// owner of the parent), and only then is its mode set, on the fd. So
/// `mkdir=0777` changes the mode of nothing but gracewrap's own directory.
fn make_parents(path: &Path, mode: u32, made: &mut Vec<Made>) -> Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let mut missing = Vec::new();
    let mut dir = parent_of(path);
    let existing = loop {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => break dir,
            // A symlink to a directory is fine: the user put it there.
            Ok(_) if dir.is_dir() => break dir,
            Ok(_) => bail!("{} exists and is not a directory", dir.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(dir),
            Err(e) => bail!("cannot look at {}: {}", dir.display(), reason(e)),
        }
        match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(up) => dir = up,
            None => break Path::new("."),
        }
    };
    let mut fd = open_dir(existing)?;
    for dir in missing.into_iter().rev() {
        let Some(name) = dir.file_name() else {
            bail!("cannot create directory {}: it ends in '..'", dir.display());
        };
        let created = match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => true,
            // Made by someone else in the meantime: used, never changed.
            Err(Errno::EXIST) => false,
            Err(e) => bail!("cannot create directory {}: {}", dir.display(), reason(e)),
        };
        let replaced = || anyhow!("{} was replaced while gracewrap created it", dir.display());
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let next = rustix::fs::openat(&fd, name, flags, Mode::empty()).map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR | Errno::NOENT => replaced(),
            e => anyhow!("cannot open directory {}: {}", dir.display(), reason(e)),
        })?;
        if created {
            let st = rustix::fs::fstat(&next)
                .map_err(|e| anyhow!("cannot look at {}: {}", dir.display(), reason(e)))?;
            if st.st_uid != rustix::process::geteuid().as_raw() {
                return Err(replaced());
            }
            made.push(Made::new(dir, &st, true));
            rustix::fs::fchmod(&next, Mode::from_raw_mode(mode))
                .map_err(|e| anyhow!("cannot set the mode of {}: {}", dir.display(), reason(e)))?;
        }
        fd = next;
    }
    Ok(fd)
}

/// Records the socket file just bound at `path` and returns it, opened
/// `O_PATH`. With `dir` (the directory it should be in, open), the file
/// must be in that very directory and the path must still lead to it:
/// bind(2) takes a path, and the owner of a directory on the way could
/// have swapped it for a link in between. Then gracewrap fails and
/// changes nothing there (the stray socket file stays where the link
/// led: there is no bindat(2)).
fn record_socket_file(
    path: &Path,
    dir: Option<&OwnedFd>,
    made: &mut Vec<Made>,
) -> Result<Option<OwnedFd>> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let via_path = rustix::fs::statat(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW);
    let Some(dir) = dir else {
        if let Ok(st) = via_path {
            made.push(Made::new(path, &st, false));
        }
        return Ok(None);
    };
    let name = path.file_name().unwrap_or_default();
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = rustix::fs::openat(dir, name, flags, Mode::empty()).ok();
    let in_dir = file.as_ref().and_then(|f| rustix::fs::fstat(f).ok());
    match (file, in_dir, via_path) {
        (Some(file), Some(a), Ok(b))
            if FileType::from_raw_mode(a.st_mode) == FileType::Socket
                && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) =>
        {
            made.push(Made::new(path, &a, false));
            Ok(Some(file))
        }
        _ => bail!("its directory was replaced while gracewrap bound the socket in it"),
    }
}

/// chown then chmod of the socket file just bound, through its `O_PATH`
/// fd: whatever happens to the path meanwhile, only that file changes.
fn set_owner_and_mode(
    file: &OwnedFd,
    (uid, gid): (Option<u32>, Option<u32>),
    mode: u32,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    if uid.is_some() || gid.is_some() {
        rustix::fs::chownat(
            file,
            "",
            uid.map(rustix::process::Uid::from_raw),
            gid.map(rustix::process::Gid::from_raw),
            rustix::fs::AtFlags::EMPTY_PATH,
        )
        .map_err(|e| anyhow!("cannot change the owner: {}", reason(e)))?;
    }
    // fchmod(2) refuses O_PATH fds; the fd's /proc entry names the file
    // itself (what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does).
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::chmod(proc.as_str(), rustix::fs::Mode::from_raw_mode(mode)).map_err(|e| match e {
        Errno::NOENT => anyhow!("cannot set the mode: /proc is not mounted"),
        e => anyhow!("cannot set the mode: {}", reason(e)),
    })
}

/// Whether a live socket in this network namespace is bound at `path`
/// (/proc/net/unix lists each with the path it was bound at). A stale
/// file, whose socket was closed, is not listed. Without /proc: false.
fn held_by_a_process(path: &OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(table) = std::fs::read("/proc/net/unix") else {
        return false;
    };
    let path = absolute(Path::new(path));
    let want = path.as_os_str().as_bytes();
    table.split(|&b| b == b'\n').skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode Path: the path is the
        // rest of the line after the seventh field.
        let mut rest = line;
        for _ in 0..7 {
            let trimmed = rest.trim_ascii_start();
            let end = trimmed
                .iter()
                .position(|&b| b == b' ')
                .unwrap_or(trimmed.len());
            rest = &trimmed[end..];
        }
        let bound = rest.strip_prefix(b" ").unwrap_or(rest);
        bound.first() == Some(&b'/') && bound == want
    })
}

/// Called when bind(2) found something at `path`. Removes it only if it is a
/// socket nobody is listening on (connect(2) refused); a live socket is
/// "address already in use"; anything else is never touched.
///
/// The check and the unlink are not one atomic step; to narrow the window,
/// the inode is compared again right before unlinking, and unlink(2) never
/// follows symlinks.
fn replace_stale(
    kind: UnixKind,
    path: &OsStr,
    addr: &SocketAddrUnix,
    dir: Option<&OwnedFd>,
) -> Result<()> {
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
        // Refused, and no live socket bound at the path: stale. A process
        // that bound it without listening (yet) is alive: its file is not
        // stale, whatever connect says.
        Err(Errno::CONNREFUSED) if held_by_a_process(path) => {
            bail!("address already in use (a process has it bound, without listening on it)")
        }
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
    // Checked again and removed in the directory's fd when there is one,
    // so a directory swapped on the way cannot redirect the unlink.
    use rustix::fs::AtFlags;
    let name = Path::new(path).file_name().unwrap_or_default();
    let at = |dir: &OwnedFd| rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW);
    let now = match dir {
        Some(dir) => at(dir).map(|st| (st.st_dev, st.st_ino)),
        None => rustix::fs::statat(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| (st.st_dev, st.st_ino)),
    };
    match now {
        Ok(id) if id == (before.dev(), before.ino()) => {}
        Err(Errno::NOENT) => return Ok(()),
        _ => bail!("the path changed while gracewrap checked it; not removing it"),
    }
    let removed = match dir {
        Some(dir) => rustix::fs::unlinkat(dir, name, AtFlags::empty()),
        None => rustix::fs::unlink(path),
    };
    match removed {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => bail!("cannot remove the stale socket: {}", reason(e)),
    }
}
