//! Fuzzes how gracewrap reads `LISTEN_PID`, `LISTEN_PIDFDID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES` and `GRACEWRAP_HANDOFF` (src/handoff/listen_vars.rs,
//! the pure function inherit.rs uses, included as a module with the two
//! it needs, src/spec/mod.rs and src/protocol.rs).
//!
//! The input is an environment block as /proc/PID/environ holds one:
//! `KEY=VALUE` entries separated by NUL bytes, the first of a key counting
//! (as getenv(3) does). Four more keys describe the reading process, with
//! defaults: `@pid=4242`, `@ppid=4241`, `@pidfdid=N` (none when absent)
//! and `@open=3-10` (fds open besides 0-2: `N` or `A-B`, comma-separated,
//! none above fd [`OPEN_MAX`]).
//!
//! Checked: no panic; an accepted set has as many names as `LISTEN_FDS`
//! says, each one `--listen` would take, exactly those of `LISTEN_FDNAMES`
//! (or "unknown"), its last fd open, and it was meant for this process;
//! at most one fd is looked at; and what is allocated is bounded by the
//! input's size and the accepted fds, never by `LISTEN_FDS`'s value.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/spec/mod.rs"]
mod spec;

#[allow(dead_code)]
#[path = "../../src/protocol.rs"]
mod protocol;

#[allow(dead_code)]
#[path = "../../src/handoff/listen_vars.rs"]
mod listen_vars;

use listen_vars::{Listen, Reader, Vars, read};
use protocol::{DEFAULT_NAME, FIRST_FD};

/// The highest fd the model has open: real processes stop at
/// RLIMIT_NOFILE, and an accepted set may cost memory per fd.
const OPEN_MAX: RawFd = 4096;

/// Counts the bytes allocated while [`COUNTING`] is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicUsize = AtomicUsize::new(0);

fn count(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The reading process, from the `@` keys.
struct Model {
    pid: u32,
    parent: u32,
    pidfd_id: Option<u64>,
    /// Inclusive ranges of open fds >= 3.
    open: Vec<(RawFd, RawFd)>,
    /// (fd, answer) of each is_open call.
    asked: Cell<Option<(RawFd, bool)>>,
    calls: Cell<usize>,
}

impl Model {
    fn open(&self, fd: RawFd) -> bool {
        self.open.iter().any(|&(a, b)| (a..=b).contains(&fd))
    }
}

impl Reader for Model {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn parent(&self) -> u32 {
        self.parent
    }

    fn pidfd_id(&self) -> Option<u64> {
        self.pidfd_id
    }

    fn is_open(&self, fd: RawFd) -> bool {
        let open = self.open(fd);
        self.calls.set(self.calls.get() + 1);
        self.asked.set(Some((fd, open)));
        open
    }
}

fn number<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `N` or `A-B`, comma-separated, clamped to 3..=OPEN_MAX.
fn ranges(value: &[u8]) -> Vec<(RawFd, RawFd)> {
    value
        .split(|&b| b == b',')
        .filter_map(|r| {
            let (a, b): (RawFd, RawFd) = match r.iter().position(|&c| c == b'-') {
                Some(i) => (number(&r[..i])?, number(&r[i + 1..])?),
                None => (number(r)?, number(r)?),
            };
            Some((a.max(FIRST_FD), b.min(OPEN_MAX)))
        })
        .filter(|(a, b)| a <= b)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut vars = Vars::default();
    let mut model = Model {
        pid: 4242,
        parent: 4241,
        pidfd_id: None,
        open: vec![(FIRST_FD, 10)],
        asked: Cell::new(None),
        calls: Cell::new(0),
    };
    let mut seen: Vec<&[u8]> = Vec::new();
    for entry in data.split(|&b| b == 0) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&entry[..eq], &entry[eq + 1..]);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        match key {
            b"LISTEN_PID" => vars.pid = Some(value),
            b"LISTEN_PIDFDID" => vars.pidfd_id = Some(value),
            b"LISTEN_FDS" => vars.fds = Some(value),
            b"LISTEN_FDNAMES" => vars.names = Some(value),
            b"GRACEWRAP_HANDOFF" => vars.handoff = Some(value),
            b"@pid" => model.pid = number(value).unwrap_or(0),
            b"@ppid" => model.parent = number(value).unwrap_or(0),
            b"@pidfdid" => model.pidfd_id = number(value),
            b"@open" => model.open = ranges(value),
            _ => {}
        }
    }

    BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let result = read(&vars, &model);
    COUNTING.store(false, Ordering::Relaxed);
    let allocated = BYTES.load(Ordering::Relaxed);

    // One fd looked at, at most: a huge count fails on its last fd alone.
    assert!(model.calls.get() <= 1, "{} fd checks", model.calls.get());
    if let Some((fd, false)) = model.asked.get() {
        let Err(e) = &result else {
            panic!("fd {fd} is not open, yet {result:?}");
        };
        assert!(e.0.ends_with(&format!("but fd {fd} is not open")), "{e}");
    }
    let accepted = match &result {
        Ok(Listen::Fds { names, .. }) => names.len(),
        _ => 0,
    };
    assert!(
        allocated <= 128 * (data.len() + 1) + 64 * accepted + 4096,
        "{allocated} bytes allocated for {} bytes of input and {accepted} fds: {result:?}",
        data.len()
    );

    let Ok(Listen::Fds { names, parent }) = result else {
        return;
    };
    let n: usize = number(vars.fds.unwrap()).unwrap();
    assert_eq!(names.len(), n);
    let last = FIRST_FD + n as RawFd - 1;
    assert_eq!(model.asked.get(), Some((last, true)));
    for name in &names {
        assert!(spec::check_name(name.as_bytes()).is_ok(), "{name:?}");
    }
    match vars.names {
        None => assert!(names.iter().all(|n| n == DEFAULT_NAME)),
        Some(text) => assert_eq!(names.join(":").as_bytes(), text),
    }
    let pid: u32 = number(vars.pid.unwrap()).unwrap();
    match parent {
        None => assert_eq!(pid, model.pid),
        Some(p) => {
            assert_eq!((p, pid), (model.parent, model.parent));
            assert_eq!(vars.handoff, vars.pid);
        }
    }
});
