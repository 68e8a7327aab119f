//! sd_notify(3) messages, read the way systemd's service manager reads
//! them (`manager_dispatch_notify_fd()` in src/core/manager.c,
//! `service_notify_message()` in src/core/service.c). A pure function of
//! the datagram's bytes, so the property tests and the `notify` fuzz
//! target can drive it; sys/notify.rs receives, the supervisor acts.
//!
//! - A datagram is `KEY=VALUE` assignments separated by `\n` or `\r`
//!   (`strv_split_newlines`); empty lines, lines without `=` and unknown
//!   keys are ignored. For a key given twice, the first counts (systemd's
//!   `strv_find_startswith`). (systemd's splitting also takes a backslash
//!   as quoting the next byte; gracewrap keeps backslashes as they are.)
//! - A datagram with a NUL byte in it, other than one at its very end, is
//!   ignored as a whole, as is one that was cut short (longer than
//!   [`MAX_BYTES`], or with more fds than fit). An empty one says nothing.
//! - Values are checked; a bad one is left out and named in
//!   [`Notice::invalid`] (systemd logs it and goes on with the rest).
//! - Flags match whole lines: `READY=1`, not `READY=yes`.
//!
//! Also here: `sd_watchdog_enabled()`'s reading of `WATCHDOG_USEC` and
//! `WATCHDOG_PID` (src/libsystemd/sd-daemon/sd-daemon.c), for gracewrap's
//! own service manager.

use std::time::Duration;

/// The longest datagram read, as systemd's NOTIFY_BUFFER_MAX (PIPE_BUF):
/// a longer one arrives cut short and is ignored.
pub const MAX_BYTES: usize = 4096;

/// The longest fd name, as systemd's FDNAME_MAX.
pub const FDNAME_MAX: usize = 255;

/// The name of a stored fd sent without a valid `FDNAME=`, as systemd
/// names it.
pub const STORED_NAME: &str = "stored";

/// What one datagram says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notice<'a> {
    /// `READY=1`.
    pub ready: bool,
    /// `RELOADING=1`.
    pub reloading: bool,
    /// `STOPPING=1`.
    pub stopping: bool,
    /// `STATUS=`: valid UTF-8 only.
    pub status: Option<&'a str>,
    /// `ERRNO=`: a number from 0 to 4095 (systemd's ERRNO_MAX) or an
    /// errno name such as `EIO`, as systemd's `parse_errno()` takes.
    pub errno: Option<&'a str>,
    /// `BUSERROR=`: safe ASCII (systemd's `string_is_safe_ascii()`); empty
    /// clears it.
    pub bus_error: Option<&'a str>,
    /// `WATCHDOG=1`: the keep-alive ping.
    pub watchdog_ping: bool,
    /// `WATCHDOG=trigger`: "consider me stuck now".
    pub watchdog_trigger: bool,
    /// `WATCHDOG_USEC=`: a new watchdog interval for the sender (0: none).
    pub watchdog_usec: Option<u64>,
    /// `EXTEND_TIMEOUT_USEC=`: more time from now for the current phase.
    pub extend_usec: Option<u64>,
    /// `FDSTORE=1`: keep the fds sent along.
    pub fdstore: bool,
    /// `FDSTOREREMOVE=1`: drop the stored fds named `FDNAME=`.
    pub fdstore_remove: bool,
    /// `FDNAME=`: valid names only (see [`fdname_is_valid`]).
    pub fdname: Option<&'a str>,
    /// `FDPOLL=0`: do not drop the stored fds when they hang up.
    pub no_fdpoll: bool,
    /// The keys whose values were refused, first occurrence only, in
    /// message order (at most one entry per key).
    pub invalid: Vec<&'static str>,
}

/// Why a whole datagram was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// It was longer than [`MAX_BYTES`] (cut short by the receive).
    TooLong,
    /// It holds a NUL byte.
    Nul,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ignored::TooLong => "longer than 4096 bytes",
            Ignored::Nul => "it holds a NUL byte",
        })
    }
}

/// Reads one datagram; `truncated` when the receive cut it short.
pub fn parse(bytes: &[u8], truncated: bool) -> Result<Notice<'_>, Ignored> {
    if truncated || bytes.len() > MAX_BYTES {
        return Err(Ignored::TooLong);
    }
    // One NUL at the end is fine (a C client that sent its terminator).
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.contains(&0) {
        return Err(Ignored::Nul);
    }
    let mut n = Notice::default();
    let mut seen = [false; VALUE_KEYS.len()];
    for line in bytes.split(|&b| b == b'\n' || b == b'\r') {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        // Flags: any line that is exactly KEY=1 (or WATCHDOG=trigger).
        match key {
            b"READY" => n.ready |= value == b"1",
            b"RELOADING" => n.reloading |= value == b"1",
            b"STOPPING" => n.stopping |= value == b"1",
            b"FDSTORE" => n.fdstore |= value == b"1",
            b"FDSTOREREMOVE" => n.fdstore_remove |= value == b"1",
            b"FDPOLL" => n.no_fdpoll |= value == b"0",
            b"WATCHDOG" => {
                n.watchdog_ping |= value == b"1";
                n.watchdog_trigger |= value == b"trigger";
            }
            _ => {
                // Values: the first line with the key counts, valid or not.
                let Some(k) = VALUE_KEYS.iter().position(|name| name.as_bytes() == key) else {
                    continue;
                };
                if std::mem::replace(&mut seen[k], true) {
                    continue;
                }
                let ok = match VALUE_KEYS[k] {
                    "STATUS" => text(value).map(|s| n.status = Some(s)).is_some(),
                    "ERRNO" => text(value)
                        .filter(|s| errno_is_valid(s))
                        .map(|s| n.errno = Some(s))
                        .is_some(),
                    "BUSERROR" => text(value)
                        .filter(|s| is_safe_ascii(s))
                        .map(|s| n.bus_error = Some(s))
                        .is_some(),
                    "WATCHDOG_USEC" => parse_u64(value)
                        .map(|v| n.watchdog_usec = Some(v))
                        .is_some(),
                    "EXTEND_TIMEOUT_USEC" => {
                        parse_u64(value).map(|v| n.extend_usec = Some(v)).is_some()
                    }
                    _ => text(value)
                        .filter(|s| fdname_is_valid(s))
                        .map(|s| n.fdname = Some(s))
                        .is_some(),
                };
                if !ok {
                    n.invalid.push(VALUE_KEYS[k]);
                }
            }
        }
    }
    Ok(n)
}

/// The keys with values that are read; other keys are ignored.
const VALUE_KEYS: [&str; 6] = [
    "STATUS",
    "ERRNO",
    "BUSERROR",
    "WATCHDOG_USEC",
    "EXTEND_TIMEOUT_USEC",
    "FDNAME",
];

fn text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value).ok()
}

/// A decimal number as systemd's `safe_atou64()` takes one from a
/// service: leading white space allowed, no sign, no overflow. (systemd
/// would also take 0x.. and 0.. forms; no client sends them.)
pub fn parse_u64(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii_start();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// systemd's `fdname_is_valid()`: printable ASCII without `:`, at most
/// [`FDNAME_MAX`] bytes (empty included).
pub fn fdname_is_valid(name: &str) -> bool {
    name.len() <= FDNAME_MAX && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b':')
}

/// An `ERRNO=` value: a number from 0 to 4095, or a name as `EIO` (upper
/// case letters and digits after the `E`), which systemd looks up.
pub fn errno_is_valid(value: &str) -> bool {
    let name = value.strip_prefix('E').is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() < 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    });
    // Digits only, no leading white space: the value goes upward as it is.
    let number = value.bytes().all(|b| b.is_ascii_digit())
        && parse_u64(value.as_bytes()).is_some_and(|v| v <= 4095);
    name || number
}

/// systemd's `string_is_safe_ascii()`: ASCII without control characters,
/// quotes or backslashes.
pub fn is_safe_ascii(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\'' | b'\\'))
}

/// `sd_watchdog_enabled()`: the watchdog interval gracewrap's own service
/// manager asks it to keep, from `WATCHDOG_USEC` and `WATCHDOG_PID`. None
/// when `WATCHDOG_USEC` is unset, not a number, 0 or infinity, or when
/// `WATCHDOG_PID` is set and names another process (it was meant for
/// someone else) or is not a pid.
pub fn watchdog_enabled(usec: Option<&[u8]>, pid: Option<&[u8]>, me: u32) -> Option<Duration> {
    let usec = parse_u64(usec?).filter(|&u| u > 0 && u < u64::MAX)?;
    if let Some(pid) = pid {
        let pid = parse_u64(pid).filter(|&p| p > 0 && p <= i32::MAX as u64)?;
        if pid != u64::from(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests;
