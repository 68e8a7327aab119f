//! How gracewrap words things for the user: one line, `gracewrap: ` prefix,
//! the thing that is wrong, then the OS reason in lower case.

use std::ffi::OsStr;
use std::io::{self, Write};

/// Prints one `gracewrap: ...` line on stderr, in one write(2), so that
/// it never interleaves with PROGRAM's output on the same stderr. Control
/// characters from whatever the message holds (a name the user typed, a
/// path) are escaped (`\u{1b}`), so a message is always one line and
/// never drives the terminal. Never panics: a closed or broken stderr
/// (EPIPE) is not a reason to fail.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(128);
    let _ = write!(text, "gracewrap: {line}");
    if text.contains(char::is_control) {
        text = text
            .chars()
            .flat_map(|c| {
                let escape = c.is_control();
                let (mut raw, mut escaped) = (Some(c), None);
                if escape {
                    (raw, escaped) = (None, Some(c.escape_default()));
                }
                raw.into_iter().chain(escaped.into_iter().flatten())
            })
            .collect();
    }
    text.push('\n');
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// An OS error as a short lower-case phrase, e.g. "permission denied",
/// without std's " (os error 13)" suffix.
pub fn reason(err: impl Into<io::Error>) -> String {
    io_reason(&err.into())
}

/// [`reason`] for an error the caller keeps.
pub fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    // strerror(3)'s messages are ASCII.
    let mut text = text.to_string();
    if let Some(first) = text.get_mut(..1) {
        first.make_ascii_lowercase();
    }
    text
}

/// A program name, path or argument as it should appear in a message:
/// unchanged when it is plain printable text, otherwise quoted with escapes
/// (`"a b"`, `"\xff"`), so odd bytes are visible and never reach the
/// terminal raw.
pub fn quote(s: &OsStr) -> String {
    match s.to_str() {
        Some(t)
            if !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control())) =>
        {
            t.to_string()
        }
        _ => format!("{s:?}"),
    }
}

/// A duration as `--stop-timeout` and friends take one: `250ms`, `1.5s`,
/// `30s` (std's `{:?}` prints the same forms, with 1.8 kB more code).
#[derive(Debug, Clone, Copy)]
pub struct Dur(pub std::time::Duration);

impl std::fmt::Display for Dur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secs, nanos) = (self.0.as_secs(), self.0.subsec_nanos());
        if secs == 0 && nanos % 1_000_000 == 0 {
            return write!(f, "{}ms", nanos / 1_000_000);
        }
        write!(f, "{secs}")?;
        if nanos != 0 {
            let digits = format!("{nanos:09}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("s")
    }
}

#[cfg(test)]
mod tests;
