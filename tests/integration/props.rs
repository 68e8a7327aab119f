//! Property: whatever fds a caller leaves and wherever the fd:N sockets
//! sit (inside the target range or not), gracewrap ends with exactly the
//! right sockets at 3.., CLOEXEC cleared there, and nothing else leaked.

use std::collections::BTreeSet;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;

use crate::util::*;

#[derive(Debug, Clone)]
struct Case {
    /// For each socket in command-line order: Some(N) = fd:N, None = bound.
    sources: Vec<Option<i32>>,
    /// Non-socket fds the caller leaves open.
    strays: Vec<i32>,
    keep_fds: bool,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (1usize..=6, any::<bool>())
        .prop_flat_map(|(n, keep_fds)| {
            // Distinct numbers for fd:N sources and strays, in 3..3+n+5.
            let pool: Vec<i32> = (3..3 + n as i32 + 5).collect();
            (
                Just(n),
                Just(keep_fds),
                Just(pool.clone()).prop_shuffle(),
                proptest::collection::vec(any::<bool>(), n),
                0usize..3,
            )
        })
        .prop_map(|(n, keep_fds, pool, take, nstrays)| {
            let mut free = pool.into_iter();
            let sources = (0..n)
                .map(|i| take[i].then(|| free.next().unwrap()))
                .collect();
            let strays = free.take(nstrays).collect();
            Case {
                sources,
                strays,
                keep_fds,
            }
        })
}

static CASE: AtomicUsize = AtomicUsize::new(0);

fn check(case: &Case) -> Result<(), TestCaseError> {
    let tag = format!(
        "gw-prop-{}-{}",
        std::process::id(),
        CASE.fetch_add(1, Ordering::Relaxed)
    );
    let name = |i: usize| format!("{tag}-{i}");
    let n = case.sources.len();
    let mut args: Vec<String> = Vec::new();
    if case.keep_fds {
        args.push("--keep-fds".into());
    }
    let mut held = Vec::new();
    for (i, src) in case.sources.iter().enumerate() {
        args.push("-l".into());
        match src {
            Some(fd) => {
                let addr = SocketAddr::from_abstract_name(name(i).as_bytes()).unwrap();
                held.push((UnixListener::bind_addr(&addr).unwrap(), *fd));
                args.push(format!("fd:{fd}"));
            }
            None => args.push(format!("unix:@{}", name(i))),
        }
    }
    let probe = probe();
    let mut cmd = gracewrap(&args);
    cmd.arg("--").arg(&probe);
    for (sock, fd) in &held {
        with_fd_at(&mut cmd, sock, *fd);
    }
    let devnull = std::fs::File::open("/dev/null").unwrap();
    for fd in &case.strays {
        with_fd_at(&mut cmd, &devnull, *fd);
    }
    let out = run(&mut cmd);
    let range = 3..3 + n as i32;
    let collision = case.keep_fds && case.strays.iter().any(|fd| range.contains(fd));
    if collision {
        prop_assert_eq!(out.code(), 125, "{}", out);
        prop_assert!(
            out.stderr
                .contains("is open and would be replaced by socket"),
            "{}",
            out
        );
        return Ok(());
    }
    prop_assert_eq!(out.code(), 0, "{}", out);
    let r = out.report();
    for i in 0..n {
        let fd = r.fd(3 + i as i32);
        prop_assert_eq!(fd.get("addr"), format!("@{}", name(i)), "slot {}", 3 + i);
        prop_assert_eq!(fd.get("cloexec"), "0");
    }
    // Anything else open at >= 3: only kept strays above the range (the
    // harness's own fds never reach children: see util.rs).
    let extra: BTreeSet<i32> = r
        .passed_fds()
        .into_iter()
        .filter(|fd| !range.contains(fd))
        .collect();
    let strays: BTreeSet<i32> = case
        .strays
        .iter()
        .copied()
        .filter(|fd| !range.contains(fd))
        .collect();
    if case.keep_fds {
        // A fd:N source outside the range must be moved, not duplicated.
        prop_assert_eq!(
            &extra,
            &strays,
            "kept strays vs. fds >= 3 outside the range"
        );
    } else {
        prop_assert!(extra.is_empty(), "leaked fds {:?}", extra);
    }
    let count = n.to_string();
    prop_assert_eq!(r.env("LISTEN_FDS"), Some(count.as_str()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sockets_always_land_at_3_in_order_whatever_the_caller_left(case in arb_case()) {
        check(&case)?;
    }
}
