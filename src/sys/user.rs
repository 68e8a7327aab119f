//! Users and groups: `--user`/`--group` (dropping privileges before exec)
//! and `owner=`/`group=` of unix sockets.
//!
//! Names are looked up in /etc/passwd and /etc/group directly, never
//! through NSS: the static build has no NSS, and a container image often
//! has nothing else anyway. Numeric ids always work.
//!
//! The drop follows setpriv(1), gosu and su-exec: supplementary groups
//! first (setgroups), then the gid, then the uid (setres*id, so real,
//! effective and saved ids all change), then a check that root cannot be
//! regained. Any failure is fatal: gracewrap never execs PROGRAM with half
//! of its privileges dropped.

use std::ffi::OsString;

use anyhow::{Result, anyhow, bail};
use rustix::process::{Gid, Uid};

use crate::msg::reason;

/// One /etc/passwd entry (the fields gracewrap uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: OsString,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Entries of a colon-separated database, skipping comments and NIS
/// (`+`/`-`) lines.
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with(['#', '+', '-']))
        .map(|l| l.split(':').collect::<Vec<_>>())
}

/// The passwd entry for a user name or uid, from `text` (/etc/passwd).
pub fn find_user(text: &str, user: &str) -> Option<Passwd> {
    let numeric: Option<u32> = user.parse().ok();
    entries(text).find_map(|f| {
        if f.len() < 7 {
            return None;
        }
        let uid: u32 = f[2].parse().ok()?;
        let matches = f[0] == user || numeric == Some(uid);
        matches.then(|| Passwd {
            name: f[0].to_string(),
            uid,
            gid: f[3].parse().unwrap_or(uid),
            home: OsString::from(f[5]),
        })
    })
}

/// The gid for a group name or number, from `text` (/etc/group).
pub fn find_group(text: &str, group: &str) -> Option<u32> {
    if let Ok(n) = group.parse() {
        return Some(n);
    }
    entries(text).find_map(|f| {
        (f.len() >= 3 && f[0] == group)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// The groups that list `user` as a member, plus `primary`
/// (initgroups(3)), sorted and without duplicates.
pub fn member_of(text: &str, user: &str, primary: u32) -> Vec<u32> {
    let mut groups: Vec<u32> = entries(text)
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == user))
        .filter_map(|f| f[2].parse().ok())
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
        match find_user(&read("/etc/passwd"), owner) {
            Some(p) => {
                uid = Some(p.uid);
                gid = Some(p.gid);
            }
            None => match owner.parse() {
                Ok(n) => uid = Some(n),
                Err(_) => bail!("owner={owner}: no such user in /etc/passwd"),
            },
        }
    }
    if let Some(group) = group {
        gid = Some(
            find_group(&read("/etc/group"), group)
                .ok_or_else(|| anyhow!("group={group}: no such group in /etc/group"))?,
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
pub fn resolve(
    passwd: &str,
    group_db: &str,
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
        Some(g) => Some(
            find_group(group_db, g)
                .ok_or_else(|| anyhow!("--group {g}: no such group in /etc/group"))?,
        ),
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
    match find_user(passwd, user) {
        Some(p) => {
            let (gid, groups) = match explicit_gid {
                Some(g) => (g, vec![g]),
                None => (p.gid, member_of(group_db, &p.name, p.gid)),
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
                .map_err(|_| anyhow!("--user {user}: no such user in /etc/passwd"))?;
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
    resolve(&read("/etc/passwd"), &read("/etc/group"), user, group)
}

impl Target {
    /// What the user is called in messages.
    pub fn label(&self) -> String {
        match (&self.passwd, self.uid) {
            (Some(p), _) => p.name.clone(),
            (None, Some(uid)) => uid.to_string(),
            (None, None) => format!("gid {}", self.gid),
        }
    }

    /// HOME, USER and LOGNAME for PROGRAM (only with a uid change).
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        match (&self.passwd, self.uid) {
            (Some(p), _) => vec![
                ("HOME", p.home.clone()),
                ("USER", p.name.clone().into()),
                ("LOGNAME", p.name.clone().into()),
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

    /// Drops to this user and group, for good. gracewrap is single-threaded
    /// here, so the per-thread set*id syscalls cover the whole process.
    pub fn drop_privileges(&self) -> Result<()> {
        let fail = |what: &str, e: rustix::io::Errno| {
            anyhow!(
                "cannot drop privileges to {}: {what}: {}",
                self.label(),
                reason(e)
            )
        };
        let groups: Vec<Gid> = self.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        rustix::thread::set_thread_groups(&groups).map_err(|e| fail("setgroups", e))?;
        let gid = Gid::from_raw(self.gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| fail("setresgid", e))?;
        if let Some(uid) = self.uid {
            let uid = Uid::from_raw(uid);
            rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| fail("setresuid", e))?;
        }
        // Verify, as setpriv and gosu do.
        if rustix::process::getgid() != gid || rustix::process::getegid() != gid {
            bail!(
                "cannot drop privileges to {}: the gid did not change",
                self.label()
            );
        }
        if let Some(uid) = self.uid {
            if rustix::process::getuid().as_raw() != uid
                || rustix::process::geteuid().as_raw() != uid
            {
                bail!(
                    "cannot drop privileges to {}: the uid did not change",
                    self.label()
                );
            }
            if uid != 0
                && rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT).is_ok()
            {
                bail!(
                    "cannot drop privileges to {}: root could be regained",
                    self.label()
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
