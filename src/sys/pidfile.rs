//! `--pid-file`: gracewrap's pid in a file, written and removed without
//! ever following a link or touching a file gracewrap did not write.
//!
//! - The directory is opened once (`O_NOFOLLOW` on its last component) and
//!   every later step is relative to that fd (`*at` calls), so swapping a
//!   path component for a symlink afterwards changes nothing.
//! - Whatever is at the path must be a regular file (a stale pid file) or
//!   nothing: a symlink, a socket, a directory is refused, never replaced.
//! - The pid goes into a temporary file with an unpredictable name,
//!   created `O_EXCL|O_NOFOLLOW` (a planted link or file makes it fail,
//!   never write through), then renamed over the path: readers see the old
//!   file or the new one, never half of one.
//! - It is removed only if the path still names the file gracewrap wrote
//!   (same inode) and it still holds what gracewrap wrote.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::msg::{quote, reason};

/// A pid file gracewrap wrote; dropping it removes it if it is still that.
#[derive(Debug)]
pub struct PidFile {
    dir: OwnedFd,
    name: OsString,
    dev: u64,
    ino: u64,
    content: String,
}

impl PidFile {
    /// Writes `pid` to `path`; see the module doc.
    pub fn write(path: &Path, pid: u32) -> Result<PidFile> {
        let shown = quote(path.as_os_str());
        let fail = |what: &str, e: Errno| {
            anyhow!("cannot write --pid-file {shown}: {what}: {}", reason(e))
        };
        let name = match path.file_name() {
            Some(name) => name.to_owned(),
            None => bail!("cannot write --pid-file {shown}: it does not name a file"),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = rustix::fs::open(
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("its directory", e))?;
        match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
            Ok(_) => bail!(
                "cannot write --pid-file {shown}: it exists and is not a regular file (left as it is)"
            ),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(fail("stat", e)),
        }
        let content = format!("{pid}\n");
        let tmp = temporary_name(&name, pid);
        let fd = rustix::fs::openat(
            &dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| fail("create a temporary file", e))?;
        let written = write_all(&fd, content.as_bytes())
            .and_then(|()| rustix::fs::fstat(&fd))
            .and_then(|st| {
                rustix::fs::renameat(&dir, &tmp, &dir, &name)?;
                Ok(st)
            });
        let st = written.map_err(|e| {
            let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
            fail("write", e)
        })?;
        Ok(PidFile {
            dir,
            name,
            dev: st.st_dev,
            ino: st.st_ino,
            content,
        })
    }

    /// Whether the path still names the file we wrote, unchanged.
    fn still_ours(&self) -> bool {
        let same =
            rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                    && st.st_dev == self.dev
                    && st.st_ino == self.ino
            });
        if !same {
            return false;
        }
        let Ok(fd) = rustix::fs::openat(
            &self.dir,
            &self.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        let mut buf = [0u8; 64];
        let n = rustix::io::read(&fd, &mut buf).unwrap_or(0);
        &buf[..n] == self.content.as_bytes()
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if self.still_ours() {
            let _ = rustix::fs::unlinkat(&self.dir, &self.name, AtFlags::empty());
        }
    }
}

/// The pid in the pid file at `path`: a regular file (never read
/// through a link), holding a positive number and a newline.
pub fn read(path: &Path) -> Result<u32> {
    let shown = quote(path.as_os_str());
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| anyhow!("cannot read --pid-file {shown}: {}", reason(e)))?;
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| anyhow!("cannot read --pid-file {shown}: {}", reason(e)))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        bail!("cannot read --pid-file {shown}: not a regular file");
    }
    let mut buf = [0u8; 32];
    let n = rustix::io::read(&fd, &mut buf).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.trim_end_matches('\n').parse::<u32>().ok())
        .filter(|&pid| pid > 0)
        .ok_or_else(|| anyhow!("--pid-file {shown} does not hold a pid"))
}

/// `.NAME.PID.RANDOM.tmp`: unpredictable, so nobody can plant something
/// there in advance (and O_EXCL refuses whatever is there anyway).
fn temporary_name(name: &OsStr, pid: u32) -> OsString {
    let random = super::random();
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{pid}.{random:016x}.tmp"));
    tmp
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
