//! Users and groups: `--user`/`--group` (dropping privileges before exec)
//! and `owner=`/`group=` of unix sockets.
//!
//! Names are looked up in /etc/passwd and /etc/group directly, never
//! through NSS: the static build has no NSS, and a container image often
//! has nothing else anyway. Numeric ids work without an entry. The files
//! are read as bytes, line by line: bytes that are not UTF-8 (a Latin-1
//! GECOS field or home) hide no entry, a malformed line is skipped, never
//! the whole file, and a file that exists but cannot be read is an error,
//! not "no such user".
//!
//! The drop follows setpriv(1), gosu and su-exec: supplementary groups
//! first (setgroups), then the gid, then the uid (setres*id, so real,
//! effective and saved ids all change), then a check that root cannot be
//! regained. Any failure is fatal: gracewrap never execs PROGRAM with half
//! of its privileges dropped.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Result, anyhow, bail};
use rustix::process::{Gid, Uid};

use crate::msg::{io_reason, quote, reason};
use crate::sys::process::{self, Creds, Failed, Step};

/// One /etc/passwd entry (the fields gracewrap uses), byte for byte: the
/// files are not UTF-8 everywhere (a Latin-1 GECOS field or home).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub name: OsString,
    pub uid: u32,
    pub gid: u32,
    pub home: OsString,
}

/// /etc/passwd or /etc/group as read: its bytes (none when the file does
/// not exist, as in an image without one), or why it could not be read,
/// which is said when a lookup needs the file, never as "no such user".
pub struct Db {
    path: &'static str,
    bytes: io::Result<Vec<u8>>,
}

impl Db {
    /// Reads `path` whole, once: a lookup may need it twice.
    pub fn read(path: &'static str) -> Db {
        let bytes = match std::fs::read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            read => read,
        };
        Db { path, bytes }
    }

    /// The bytes, or "cannot read PATH: REASON".
    fn bytes(&self) -> Result<&[u8]> {
        self.bytes
            .as_deref()
            .map_err(|e| anyhow!("cannot read {}: {}", self.path, io_reason(e)))
    }

    /// The gid of a group name or number: a number needs no file.
    fn gid(&self, group: &str) -> Result<Option<u32>> {
        match group.parse() {
            Ok(n) => Ok(Some(n)),
            Err(_) => Ok(find_group(self.bytes()?, group)),
        }
    }
}

/// Entries of a colon-separated database, as byte fields, skipping
/// comments, NIS (`+`/`-`) lines and lines with a NUL byte (no C string
/// can hold their fields). One line, whatever its bytes, never stops the
/// others from being read.
fn entries(text: &[u8]) -> impl Iterator<Item = Vec<&[u8]>> {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty() && !matches!(l[0], b'#' | b'+' | b'-') && !l.contains(&0))
        .map(|l| l.split(|&b| b == b':').collect::<Vec<_>>())
}

/// A numeric field (uid, gid).
fn number(field: &[u8]) -> Option<u32> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The passwd entry for a user name or uid, from `text` (/etc/passwd).
/// Names are compared as bytes: one that is not UTF-8 never matches a
/// name from the command line, but its entry is still found by its uid.
pub fn find_user(text: &[u8], user: &str) -> Option<Passwd> {
    let numeric: Option<u32> = user.parse().ok();
    entries(text).find_map(|f| {
        if f.len() < 7 {
            return None;
        }
        let uid = number(f[2])?;
        let matches = f[0] == user.as_bytes() || numeric == Some(uid);
        matches.then(|| Passwd {
            name: OsStr::from_bytes(f[0]).to_owned(),
            uid,
            gid: number(f[3]).unwrap_or(uid),
            home: OsStr::from_bytes(f[5]).to_owned(),
        })
    })
}

/// The gid for a group name, from `text` (/etc/group).
pub fn find_group(text: &[u8], group: &str) -> Option<u32> {
    entries(text).find_map(|f| {
        (f.len() >= 3 && f[0] == group.as_bytes())
            .then(|| number(f[2]))
            .flatten()
    })
}

/// The groups that list `user` as a member, plus `primary`
/// (initgroups(3)), sorted and without duplicates.
pub fn member_of(text: &[u8], user: &OsStr, primary: u32) -> Vec<u32> {
    let mut groups: Vec<u32> = entries(text)
        .filter(|f| f.len() >= 4 && f[3].split(|&b| b == b',').any(|m| m == user.as_bytes()))
        .filter_map(|f| number(f[2]))
        .collect();
    groups.push(primary);
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// Resolves `owner=` / `group=` of a unix socket: (uid, gid), where an
/// owner without a group gets the owner's primary group (as systemd's
/// SocketUser= does) and a missing one means "leave as is".
pub fn socket_owner(
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<(Option<u32>, Option<u32>)> {
    let mut uid = None;
    let mut gid = None;
    if let Some(owner) = owner {
        let shown = quote(OsStr::new(owner));
        let passwd = Db::read("/etc/passwd");
        let text = passwd.bytes().map_err(|e| anyhow!("owner={shown}: {e}"))?;
        match find_user(text, owner) {
            Some(p) => {
                uid = Some(p.uid);
                gid = Some(p.gid);
            }
            None => match owner.parse() {
                Ok(n) => uid = Some(n),
                Err(_) => bail!("owner={shown}: no such user in /etc/passwd"),
            },
        }
    }
    if let Some(group) = group {
        let shown = quote(OsStr::new(group));
        gid = Some(
            Db::read("/etc/group")
                .gid(group)
                .map_err(|e| anyhow!("group={shown}: {e}"))?
                .ok_or_else(|| anyhow!("group={shown}: no such group in /etc/group"))?,
        );
    }
    Ok((uid, gid))
}

/// Who PROGRAM runs as, resolved from `--user USER[:GROUP]` and `--group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// None with `--group` alone: the uid stays.
    pub uid: Option<u32>,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The passwd entry, when there is one (for HOME, USER, LOGNAME).
    pub passwd: Option<Passwd>,
}

/// Resolves `--user` and `--group` against the given databases.
///
/// - `--user USER`: USER's uid, primary gid, and every group that lists
///   USER (initgroups);
/// - `--user USER:GROUP` or `--user USER --group GROUP`: USER's uid, and
///   GROUP as the only group (gosu, su-exec);
/// - `--group GROUP` alone: GROUP as the only group, the uid unchanged;
/// - a numeric uid without a passwd entry: that uid, gid = the same number
///   unless a group is given (never gid 0 by accident), no other groups.
///
/// A database that exists but could not be read is an error as soon as a
/// lookup needs it (a group number needs none).
pub fn resolve(
    passwd: &Db,
    group_db: &Db,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Target> {
    let (user, inline_group) =
        match user.map(|u| u.split_once(':').map_or((u, None), |(u, g)| (u, Some(g)))) {
            Some((u, g)) => (Some(u), g),
            None => (None, None),
        };
    if inline_group.is_some() && group.is_some() {
        bail!("give the group either as --user USER:GROUP or with --group, not both");
    }
    let group = inline_group.or(group);
    let explicit_gid = match group {
        Some("") => bail!("--user USER:GROUP with an empty GROUP"),
        Some(g) => {
            let shown = quote(OsStr::new(g));
            Some(
                group_db
                    .gid(g)
                    .map_err(|e| anyhow!("--group {shown}: {e}"))?
                    .ok_or_else(|| anyhow!("--group {shown}: no such group in /etc/group"))?,
            )
        }
        None => None,
    };
    let Some(user) = user else {
        let gid = explicit_gid.ok_or_else(|| anyhow!("nothing to change to"))?;
        return Ok(Target {
            uid: None,
            gid,
            groups: vec![gid],
            passwd: None,
        });
    };
    if user.is_empty() {
        bail!("--user with an empty user name");
    }
    let shown = quote(OsStr::new(user));
    let in_user = |e: anyhow::Error| anyhow!("--user {shown}: {e}");
    match find_user(passwd.bytes().map_err(in_user)?, user) {
        Some(p) => {
            let (gid, groups) = match explicit_gid {
                Some(g) => (g, vec![g]),
                None => (
                    p.gid,
                    member_of(group_db.bytes().map_err(in_user)?, &p.name, p.gid),
                ),
            };
            Ok(Target {
                uid: Some(p.uid),
                gid,
                groups,
                passwd: Some(p),
            })
        }
        None => {
            let uid: u32 = user
                .parse()
                .map_err(|_| anyhow!("--user {shown}: no such user in /etc/passwd"))?;
            let gid = explicit_gid.unwrap_or(uid);
            Ok(Target {
                uid: Some(uid),
                gid,
                groups: vec![gid],
                passwd: None,
            })
        }
    }
}

/// Resolves against the system's databases.
pub fn resolve_system(user: Option<&str>, group: Option<&str>) -> Result<Target> {
    resolve(
        &Db::read("/etc/passwd"),
        &Db::read("/etc/group"),
        user,
        group,
    )
}

impl Target {
    /// What the user is called in messages.
    pub fn label(&self) -> String {
        match (&self.passwd, self.uid) {
            (Some(p), _) => quote(&p.name),
            (None, Some(uid)) => uid.to_string(),
            (None, None) => format!("gid {}", self.gid),
        }
    }

    /// HOME, USER and LOGNAME for PROGRAM (only with a uid change).
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        match (&self.passwd, self.uid) {
            (Some(p), _) => vec![
                ("HOME", p.home.clone()),
                ("USER", p.name.clone()),
                ("LOGNAME", p.name.clone()),
            ],
            (None, Some(uid)) => vec![
                ("HOME", "/".into()),
                ("USER", uid.to_string().into()),
                ("LOGNAME", uid.to_string().into()),
            ],
            (None, None) => Vec::new(),
        }
    }

    /// Runs `f` as this user for a moment (real and effective ids, and
    /// the groups), keeping root as the saved uid to come back: for checks
    /// that must see what the user will see, such as access(2) on PROGRAM
    /// and `--chdir` while gracewrap can still clean up as root. Runs `f`
    /// as we are when we are not root (there is nothing to switch to).
    pub fn with_ids<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        use rustix::process::{getegid, geteuid, getgid, getgroups};
        if !geteuid().is_root() {
            return Ok(f());
        }
        let fail = |what: &str, e: rustix::io::Errno| {
            anyhow!("cannot check as {}: {what}: {}", self.label(), reason(e))
        };
        let (groups, gid, egid) = (
            getgroups().map_err(|e| fail("getgroups", e))?,
            getgid(),
            getegid(),
        );
        let uid = self.uid.map_or(Uid::ROOT, Uid::from_raw);
        let target_gid = Gid::from_raw(self.gid);
        let target_groups: Vec<Gid> = self.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        rustix::thread::set_thread_groups(&target_groups).map_err(|e| fail("setgroups", e))?;
        rustix::thread::set_thread_res_gid(target_gid, target_gid, egid)
            .map_err(|e| fail("setresgid", e))?;
        rustix::thread::set_thread_res_uid(uid, uid, Uid::ROOT)
            .map_err(|e| fail("setresuid", e))?;
        let out = f();
        // Back to root: a failure here would leave gracewrap half dropped.
        rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT)
            .map_err(|e| fail("setresuid back", e))?;
        rustix::thread::set_thread_res_gid(gid, egid, egid)
            .map_err(|e| fail("setresgid back", e))?;
        rustix::thread::set_thread_groups(&groups).map_err(|e| fail("setgroups back", e))?;
        Ok(out)
    }

    /// The ids to take, for [`process::take_creds`].
    pub fn creds(&self) -> Creds<'_> {
        Creds {
            groups: &self.groups,
            gid: self.gid,
            uid: self.uid,
        }
    }

    /// Drops to this user and group, for good. gracewrap is single-threaded
    /// here, so the per-thread set*id syscalls cover the whole process.
    pub fn drop_privileges(&self) -> Result<()> {
        process::take_creds(self.creds()).map_err(|f| anyhow!("{}", self.drop_failure(f)))
    }

    /// What a failed [`process::take_creds`] says.
    pub fn drop_failure(&self, f: Failed) -> String {
        let why = io_reason(&io::Error::from_raw_os_error(f.errno));
        let label = self.label();
        let what = match f.step {
            Step::Groups => format!("setgroups: {why}"),
            Step::Gid => format!("setresgid: {why}"),
            Step::Uid => format!("setresuid: {why}"),
            Step::GidUnchanged => "the gid did not change".to_string(),
            Step::UidUnchanged => "the uid did not change".to_string(),
            Step::RootRegained => "root could be regained".to_string(),
            // (take_creds fails at no other step.)
            _ => why,
        };
        format!("cannot drop privileges to {label}: {what}")
    }
}

#[cfg(test)]
mod tests;
