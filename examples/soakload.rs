//! Load for benches/soak.sh: THREADS clients, each sending one request
//! per connection (connect, write a byte, read the reply to EOF) to ADDR
//! as fast as it is answered, for SECONDS. A request fails when the
//! connection is refused or reset, times out, or the reply is not the
//! probe's `pid P fd N` line.
//!
//! Usage: `soakload ADDR SECONDS [THREADS]`; prints `ok N failed M` and
//! one line per kind of failure seen, with an example.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn one(addr: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {}", e.kind()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"x")
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("read: {}", e.kind()))?;
    if reply.starts_with("pid ") {
        Ok(())
    } else {
        Err(format!("bad reply {reply:?}"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(addr), Some(secs)) = (args.first(), args.get(1).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: soakload ADDR SECONDS [THREADS]");
        std::process::exit(2);
    };
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let end = Instant::now() + Duration::from_secs(secs);
    let failures: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, failures) = (addr.clone(), Arc::clone(&failures));
            std::thread::spawn(move || {
                let mut ok = 0u64;
                while Instant::now() < end {
                    match one(&addr) {
                        Ok(()) => ok += 1,
                        Err(kind) => *failures.lock().unwrap().entry(kind).or_default() += 1,
                    }
                }
                ok
            })
        })
        .collect();
    let ok: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let failures = failures.lock().unwrap();
    let failed: usize = failures.values().sum();
    println!("ok {ok} failed {failed}");
    for (kind, n) in failures.iter() {
        println!("failure {n} x {kind}");
    }
}
