//! The values options take: signals and durations, parsed and printed.

use std::time::Duration;

/// Signal names gracewrap understands (with or without `SIG`, any case, or
/// a number), and prints.
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("WINCH", libc::SIGWINCH),
    ("PWR", libc::SIGPWR),
    ("STKFLT", libc::SIGSTKFLT),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("IO", libc::SIGIO),
    ("SYS", libc::SIGSYS),
];

/// Signals gracewrap cannot take as a restart signal: the ones nobody can
/// catch (KILL, STOP), the faults, whose handler would return to the
/// faulting instruction (ILL, TRAP, ABRT, BUS, FPE, SEGV, SYS), the ones
/// gracewrap acts on itself (CHLD, TERM; PIPE, ignored for its own
/// messages), and those from 32 up to SIGRTMIN, which the C library keeps
/// for its threads.
pub fn not_catchable_for_restart(sig: i32) -> Option<&'static str> {
    match sig {
        libc::SIGKILL | libc::SIGSTOP => Some("it cannot be caught"),
        libc::SIGILL
        | libc::SIGTRAP
        | libc::SIGABRT
        | libc::SIGBUS
        | libc::SIGFPE
        | libc::SIGSEGV
        | libc::SIGSYS => Some("it reports a fault"),
        libc::SIGCHLD | libc::SIGTERM | libc::SIGPIPE => Some("gracewrap acts on it itself"),
        32.. if sig < libc::SIGRTMIN() => Some("the C library keeps it for its threads"),
        _ => None,
    }
}

/// `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Option<i32> {
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = SIGNALS.iter().find(|(s, _)| *s == name) {
        return Some(*n);
    }
    text.parse().ok().filter(|n| (1..=64).contains(n))
}

/// `SIGTERM` for 15, `signal 40` for what has no name.
pub fn signal_name(sig: i32) -> String {
    match SIGNALS.iter().find(|(_, n)| *n == sig) {
        Some((name, _)) => format!("SIG{name}"),
        None => format!("signal {sig}"),
    }
}

/// `10s`, `500ms`, `1.5s`, `2m`, or a plain number of seconds; at most a
/// day, which is plenty for any timeout or delay here. Decimal, exact to
/// the nanosecond (no floating point: its parser was 18 kB of the binary).
pub fn parse_duration(text: &str) -> Option<Duration> {
    const SEC: u128 = 1_000_000_000;
    let (num, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let per_unit = match unit {
        "ms" => SEC / 1000,
        "s" => SEC,
        "m" | "min" => 60 * SEC,
        "h" => 3600 * SEC,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    // Leading zeros cannot overflow; with at most 20 digits left, nothing
    // overflows a u128 before the check against a day below.
    let int = int.trim_start_matches('0');
    if int.len() > 20 {
        return None;
    }
    let whole = int.bytes().fold(0, |n, b| n * 10 + u128::from(b - b'0'));
    // Twelve decimals are below a nanosecond even in hours.
    let (part, scale) = frac
        .bytes()
        .take(12)
        .fold((0, 1), |(n, s), b| (n * 10 + u128::from(b - b'0'), s * 10));
    let nanos = whole * per_unit + part * per_unit / scale;
    (nanos <= 86_400 * SEC).then(|| Duration::from_nanos(nanos as u64))
}
