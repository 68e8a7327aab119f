//! Load generator of benches/restart.sh (std only): workers each doing
//! connect -> request -> read the whole answer, in a loop, against a
//! bench_app (examples/bench_app.rs) at ADDRESS, one request per
//! connection.
//!
//! ```text
//! loadgen [--workers 16] [--rate 2000] [--slow-every 50] [--duration 600]
//!         [--timeout 5] [--stop-file PATH] [--signals PATH] [--dump PATH]
//!         [--report PATH] ADDRESS
//! ```
//!
//! Each of the `--workers` threads sends fast requests one after the
//! other; one request in `--slow-every` asks for the slow path (1 s)
//! instead and goes out from a thread of its own, so that the worker goes
//! on at once: the slow requests keep connections in flight (what a
//! generation being replaced has to drain) and the fast ones are a steady
//! stream, whose longest pause is the "accept gap".
//!
//! `--rate R` paces the whole: request n (over all workers) is due n/R
//! seconds after the start, worker w taking n = w, w + N, w + 2N...; a
//! worker that is late goes at once. Paced, the machine keeps idle CPU and
//! the gaps measure the server, not a saturated scheduler (unpaced, 16
//! workers on 2 cores show 2 ms gaps with no restart at all). `--rate 0`:
//! no pacing, as fast as it goes.
//!
//! It runs for `--duration` seconds, or until `--stop-file` exists
//! (checked every 2 ms); requests in flight then finish. A request fails
//! as `refused`, `reset` (reset, aborted, broken pipe), `timeout` (no
//! complete answer within `--timeout` seconds, connect included) or
//! `other` (anything else, an empty or garbled answer included).
//!
//! Times are CLOCK_REALTIME microseconds taken once at start-up plus
//! CLOCK_MONOTONIC offsets: one clock for the whole run, comparable with
//! bash's `$EPOCHREALTIME` (without the dot).
//!
//! `--signals PATH`: read at the end, one time a line (microseconds, as
//! above): when each restart signal was sent. For each, the new
//! generation is the first process (pid and start time: pids get reused)
//! that answers at or after that time and had never answered before; the
//! delay to its first answer is the "time from signal to new generation
//! serving".
//!
//! Prints `key=value` lines on stdout: requests, ok, failed and
//! failed_{refused,reset,timeout,other}, slow_requests, fast_p50_ms,
//! fast_p99_ms, fast_max_ms (latency of the successful fast requests),
//! req_per_s, duration_s, longest_gap_ms (the longest interval between
//! two consecutive answers to fast requests, so the start and the end of
//! the run do not count), longest_wait_ms (the same, counted only from
//! when a fast request was waiting: without the load generator's own
//! pauses), longest_gap_at_s (since start),
//! longest_gap_since_signal_ms (its start, after the latest restart
//! signal; -1 when none came before), longest_gap_control_ms (before the
//! first signal: what the machine shows with no restart at all),
//! longest_gap_restarts_ms (from the first signal on),
//! longest_gap_spawn_ms (starting in the first 20 ms after a signal),
//! longest_gap_handover_ms (starting within 10 ms of a new pid's first
//! answer, or of the older pids' last answer to a fast request),
//! generations (processes that answered), restarts, restarts_served,
//! serve_after_signal_p50_ms, serve_after_signal_max_ms.
//!
//! `--dump PATH`: one line per request, `start_us end_us kind slow pid
//! born_us` (pid and start time of the answering process, 0 0 if none).
//! `--report PATH`: the details for a human: each restart, each failure
//! with its time relative to the latest signal, the longest gaps.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ok,
    Refused,
    Reset,
    Timeout,
    Other,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Refused => "refused",
            Kind::Reset => "reset",
            Kind::Timeout => "timeout",
            Kind::Other => "other",
        }
    }
}

#[derive(Debug)]
struct Rec {
    /// Microseconds since the run's base instant.
    start: u64,
    end: u64,
    kind: Kind,
    slow: bool,
    pid: u32,
    /// When the answering process started (bench_app's START), to tell
    /// generations apart when a pid is reused.
    born: u64,
    /// The error, for failures.
    error: Option<String>,
}

#[derive(Debug)]
struct Opts {
    addr: SocketAddr,
    workers: usize,
    slow_every: u64,
    rate: f64,
    duration: Duration,
    timeout: Duration,
    stop_file: Option<String>,
    signals: Option<String>,
    dump: Option<String>,
    report: Option<String>,
}

fn usage(text: &str) -> ! {
    eprintln!("loadgen: {text}");
    eprintln!(
        "usage: loadgen [--workers N] [--slow-every N] [--rate R] [--duration S] [--timeout S] [--stop-file PATH] [--signals PATH] [--dump PATH] [--report PATH] ADDRESS"
    );
    std::process::exit(2);
}

fn parse() -> Opts {
    let mut o = Opts {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: 16,
        slow_every: 50,
        rate: 2000.0,
        duration: Duration::from_secs(600),
        timeout: Duration::from_secs(5),
        stop_file: None,
        signals: None,
        dump: None,
        report: None,
    };
    let mut addr = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        let num = |v: String| -> f64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{a}: not a number: {v}")))
        };
        match a.as_str() {
            "--workers" => o.workers = num(value()) as usize,
            "--slow-every" => o.slow_every = num(value()) as u64,
            "--rate" => o.rate = num(value()),
            "--duration" => o.duration = Duration::from_secs_f64(num(value())),
            "--timeout" => o.timeout = Duration::from_secs_f64(num(value())),
            "--stop-file" => o.stop_file = Some(value()),
            "--signals" => o.signals = Some(value()),
            "--dump" => o.dump = Some(value()),
            "--report" => o.report = Some(value()),
            _ if a.starts_with('-') => usage(&format!("unknown option {a}")),
            _ => {
                addr = Some(
                    a.parse()
                        .unwrap_or_else(|_| usage(&format!("not an address: {a}"))),
                )
            }
        }
    }
    o.addr = addr.unwrap_or_else(|| usage("ADDRESS missing"));
    if o.workers == 0 {
        usage("--workers must be at least 1");
    }
    o
}

fn classify(e: &std::io::Error) -> Kind {
    match e.kind() {
        ErrorKind::ConnectionRefused => Kind::Refused,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Kind::Reset
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Kind::Timeout,
        _ => Kind::Other,
    }
}

/// One request: the answering pid and its start time, or the failure.
fn request(addr: &SocketAddr, slow: bool, timeout: Duration) -> Result<(u32, u64), (Kind, String)> {
    let t0 = Instant::now();
    let fail = |what: &str, e: std::io::Error| (classify(&e), format!("{what}: {e}"));
    let mut conn = TcpStream::connect_timeout(addr, timeout).map_err(|e| fail("connect", e))?;
    let left = |what: &str| {
        timeout
            .checked_sub(t0.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or((Kind::Timeout, format!("{what}: deadline")))
    };
    let _ = conn.set_nodelay(true);
    conn.set_write_timeout(Some(left("write")?))
        .map_err(|e| fail("setsockopt", e))?;
    conn.write_all(if slow { b"slow\n" } else { b"fast\n" })
        .map_err(|e| fail("write", e))?;
    let mut buf = Vec::with_capacity(32);
    let mut chunk = [0u8; 64];
    loop {
        conn.set_read_timeout(Some(left("read")?))
            .map_err(|e| fail("setsockopt", e))?;
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(fail("read", e)),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("ok ")
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|t| {
            let mut words = t.split(' ');
            let pid = words.next()?.parse().ok()?;
            let born = words.next().map_or(Some(0), |b| b.parse().ok())?;
            Some((pid, born))
        })
        .ok_or_else(|| {
            (
                Kind::Other,
                if buf.is_empty() {
                    "read: closed without an answer".to_string()
                } else {
                    format!("read: bad answer {text:?}")
                },
            )
        })
}

/// One request, timed.
fn timed(o: &Opts, base: Instant, slow: bool) -> Rec {
    let start = base.elapsed();
    let result = request(&o.addr, slow, o.timeout);
    let end = base.elapsed();
    let (kind, (pid, born), error) = match result {
        Ok(who) => (Kind::Ok, who, None),
        Err((kind, e)) => (kind, (0, 0), Some(e)),
    };
    Rec {
        start: start.as_micros() as u64,
        end: end.as_micros() as u64,
        kind,
        slow,
        pid,
        born,
        error,
    }
}

/// A worker's loop of fast requests. Its slow requests (one in
/// `--slow-every`) go out from threads of their own, so that they add
/// connections in flight (what a generation being replaced must drain)
/// without stopping the stream of fast requests whose gaps are measured.
fn worker(id: usize, o: Arc<Opts>, base: Instant, stop: Arc<AtomicBool>) -> Vec<Rec> {
    let mut out = Vec::with_capacity(1 << 16);
    let mut slow: Vec<std::thread::JoinHandle<Rec>> = Vec::new();
    // Spread the slow requests of the workers evenly.
    let phase = if o.slow_every > 0 {
        (id as u64 * o.slow_every / o.workers as u64) % o.slow_every
    } else {
        0
    };
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if o.rate > 0.0 {
            // Slot i of this worker on the global schedule; a late worker
            // goes at once (and catches up).
            let slot = (i * o.workers as u64 + id as u64) as f64 / o.rate;
            let due = Duration::from_secs_f64(slot);
            let now = base.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let is_slow = o.slow_every > 0 && i % o.slow_every == phase;
        i += 1;
        if is_slow {
            let o = Arc::clone(&o);
            slow.push(std::thread::spawn(move || timed(&o, base, true)));
            // Collect the slow requests that are done.
            let (done, running) = slow.into_iter().partition(|h| h.is_finished());
            slow = running;
            out.extend(
                done.into_iter().map(|h: std::thread::JoinHandle<Rec>| {
                    h.join().expect("slow request panicked")
                }),
            );
            continue;
        }
        let rec = timed(&o, base, false);
        let failed = rec.kind != Kind::Ok;
        out.push(rec);
        if failed {
            // No hot loop against a closed port.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    out.extend(
        slow.into_iter()
            .map(|h| h.join().expect("slow request panicked")),
    );
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn main() {
    let o = Arc::new(parse());
    let rt0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_micros() as u64;
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..o.workers)
        .map(|id| {
            let (o, stop) = (Arc::clone(&o), Arc::clone(&stop));
            std::thread::spawn(move || worker(id, o, base, stop))
        })
        .collect();
    loop {
        std::thread::sleep(Duration::from_millis(2));
        if base.elapsed() >= o.duration
            || o.stop_file
                .as_ref()
                .is_some_and(|p| std::path::Path::new(p).exists())
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let ran = base.elapsed();
    let mut recs: Vec<Rec> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("worker panicked"))
        .collect();
    recs.sort_by_key(|r| r.end);

    let mut report = String::new();
    let count = |k: Kind| recs.iter().filter(|r| r.kind == k).count();
    let failed = recs.len() - count(Kind::Ok);
    let mut fast: Vec<u64> = recs
        .iter()
        .filter(|r| r.kind == Kind::Ok && !r.slow)
        .map(|r| r.end - r.start)
        .collect();
    fast.sort_unstable();

    // Restart signals, relative to base.
    let mut signals: Vec<u64> = match &o.signals {
        Some(path) => std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .map(|t| t.saturating_sub(rt0))
            .collect(),
        None => Vec::new(),
    };
    signals.sort_unstable();
    let since_signal = |t: u64| -> Option<(usize, u64)> {
        let n = signals.partition_point(|&s| s <= t);
        (n > 0).then(|| (n, t - signals[n - 1]))
    };

    // Gaps between consecutive answers to fast requests: (length, start).
    let ends: Vec<u64> = recs
        .iter()
        .filter(|r| r.kind == Kind::Ok && !r.slow)
        .map(|r| r.end)
        .collect();
    let mut gaps: Vec<(u64, u64)> = ends.windows(2).map(|w| (w[1] - w[0], w[0])).collect();
    // The same, counted only from when a fast request was waiting: a gap
    // that opens with nothing in flight is the load generator's doing (its
    // workers woke up late), not the server's. The request answered at
    // ends[i + 1] and every one answered later were waiting since the
    // earliest of their starts.
    let mut waiting_since = vec![u64::MAX; ends.len() + 1];
    let fast_ok: Vec<&Rec> = recs
        .iter()
        .filter(|r| r.kind == Kind::Ok && !r.slow)
        .collect();
    for i in (0..fast_ok.len()).rev() {
        waiting_since[i] = waiting_since[i + 1].min(fast_ok[i].start);
    }
    let longest_wait = ends
        .windows(2)
        .enumerate()
        .map(|(i, w)| w[1] - w[0].max(waiting_since[i + 1]).min(w[1]))
        .max()
        .unwrap_or(0);
    let longest_in = |windows: &[(u64, u64)]| {
        gaps.iter()
            .filter(|(_, at)| windows.iter().any(|(from, to)| at >= from && at < to))
            .map(|(g, _)| *g)
            .max()
            .unwrap_or(0)
    };

    // Which generation (pid and start time) served when: its first
    // answer, its last answer to a fast request (when it stopped
    // accepting).
    let mut first_seen: HashMap<(u32, u64), u64> = HashMap::new();
    let mut last_fast: HashMap<(u32, u64), u64> = HashMap::new();
    for r in recs.iter().filter(|r| r.kind == Kind::Ok) {
        first_seen.entry((r.pid, r.born)).or_insert(r.end);
        if !r.slow {
            last_fast.insert((r.pid, r.born), r.end);
        }
    }
    let mut firsts: Vec<(u64, (u32, u64))> = first_seen.iter().map(|(g, t)| (*t, *g)).collect();
    firsts.sort_unstable();

    // Each restart: the new pid, when it first answered, when the older
    // pids last answered a fast request, and the phases around those:
    // spawning (the first 20 ms after the signal) and hand-over (10 ms
    // either side of the new pid's first answer and of the old pids' last).
    const PHASE: u64 = 10_000;
    let mut serve: Vec<u64> = Vec::new();
    let mut spawn_windows = Vec::new();
    let mut handover_windows = Vec::new();
    let mut lines = String::new();
    for (i, &s) in signals.iter().enumerate() {
        let next = signals.get(i + 1).copied().unwrap_or(u64::MAX);
        let new = firsts.iter().find(|(t, _)| *t >= s && *t < next);
        let old_last = firsts
            .iter()
            .filter(|(t, _)| *t < s)
            .filter_map(|(_, p)| last_fast.get(p))
            .max()
            .copied()
            .unwrap_or(0);
        spawn_windows.push((s, s + 2 * PHASE));
        handover_windows.push((old_last.saturating_sub(PHASE), old_last + PHASE));
        let gap = longest_in(&[(s, next)]);
        let Some(&(t, (pid, _))) = new else {
            let _ = writeln!(
                lines,
                "  {:3}  at {:9.3}s  no new pid answered before the next signal  longest gap {} ms",
                i + 1,
                s as f64 / 1e6,
                ms(gap)
            );
            continue;
        };
        serve.push(t - s);
        handover_windows.push((t.saturating_sub(PHASE), t + PHASE));
        let _ = writeln!(
            lines,
            "  {:3}  at {:9.3}s  new pid {pid:7} first +{} ms  old last +{} ms  longest gap {} ms",
            i + 1,
            s as f64 / 1e6,
            ms(t - s),
            if old_last >= s {
                ms(old_last - s)
            } else {
                format!("-{}", ms(s - old_last))
            },
            ms(gap)
        );
    }
    let _ = writeln!(
        report,
        "restarts (after the signal: first answer of the new pid, last answer of the older pids to a fast request; the longest gap until the next signal):\n{lines}"
    );
    let first_signal = signals.first().copied().unwrap_or(u64::MAX);
    let control_gap = longest_in(&[(0, first_signal)]);
    let restarts_gap = longest_in(&[(first_signal, u64::MAX)]);
    let spawn_gap = longest_in(&spawn_windows);
    let handover_gap = longest_in(&handover_windows);
    gaps.sort_unstable_by(|a, b| b.cmp(a));
    let (gap, gap_at) = gaps.first().copied().unwrap_or((0, 0));

    let mut serve_sorted = serve.clone();
    serve_sorted.sort_unstable();

    let _ = writeln!(report, "\nfailures ({failed}):");
    for r in recs.iter().filter(|r| r.kind != Kind::Ok).take(200) {
        let rel = match since_signal(r.start) {
            Some((n, d)) => format!("started {} ms after signal {n}", ms(d)),
            None => "before the first signal".to_string(),
        };
        let _ = writeln!(
            report,
            "  {:9.3}s..{:9.3}s  {:7}  {}  {}  ({rel})",
            r.start as f64 / 1e6,
            r.end as f64 / 1e6,
            r.kind.name(),
            if r.slow { "slow" } else { "fast" },
            r.error.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(report, "\nlongest gaps between answers to fast requests:");
    for &(g, at) in gaps.iter().take(10) {
        let rel = match since_signal(at) {
            Some((n, d)) => format!("{} ms after signal {n}", ms(d)),
            None => "before the first signal".to_string(),
        };
        let _ = writeln!(
            report,
            "  {:8} ms  from {:9.3}s  ({rel})",
            ms(g),
            at as f64 / 1e6
        );
    }

    let secs = ran.as_secs_f64();
    let mut out = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "{k}={v}");
    };
    kv("requests", recs.len().to_string());
    kv("ok", count(Kind::Ok).to_string());
    kv("failed", failed.to_string());
    for k in [Kind::Refused, Kind::Reset, Kind::Timeout, Kind::Other] {
        kv(&format!("failed_{}", k.name()), count(k).to_string());
    }
    kv(
        "slow_requests",
        recs.iter().filter(|r| r.slow).count().to_string(),
    );
    kv("fast_p50_ms", ms(percentile(&fast, 0.50)));
    kv("fast_p99_ms", ms(percentile(&fast, 0.99)));
    kv("fast_max_ms", ms(fast.last().copied().unwrap_or(0)));
    kv("req_per_s", format!("{:.0}", recs.len() as f64 / secs));
    kv("duration_s", format!("{secs:.1}"));
    kv("longest_gap_ms", ms(gap));
    kv("longest_wait_ms", ms(longest_wait));
    kv("longest_gap_at_s", format!("{:.3}", gap_at as f64 / 1e6));
    kv("longest_gap_control_ms", ms(control_gap));
    kv("longest_gap_restarts_ms", ms(restarts_gap));
    kv("longest_gap_spawn_ms", ms(spawn_gap));
    kv("longest_gap_handover_ms", ms(handover_gap));
    kv(
        "longest_gap_since_signal_ms",
        since_signal(gap_at).map_or("-1".into(), |(_, d)| ms(d)),
    );
    kv("generations", first_seen.len().to_string());
    kv("restarts", signals.len().to_string());
    kv("restarts_served", serve.len().to_string());
    kv(
        "serve_after_signal_p50_ms",
        ms(percentile(&serve_sorted, 0.50)),
    );
    kv(
        "serve_after_signal_max_ms",
        ms(serve_sorted.last().copied().unwrap_or(0)),
    );
    print!("{out}");

    if let Some(path) = &o.report {
        let _ = std::fs::write(path, format!("{out}\n{report}"));
    }
    if let Some(path) = &o.dump {
        let mut text = String::with_capacity(recs.len() * 40);
        for r in &recs {
            let _ = writeln!(
                text,
                "{} {} {} {} {} {}",
                rt0 + r.start,
                rt0 + r.end,
                r.kind.name(),
                u8::from(r.slow),
                r.pid,
                r.born
            );
        }
        let _ = std::fs::write(path, text);
    }
}
