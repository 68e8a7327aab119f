//! An HTTP server that takes its listening socket through the `listenfd`
//! crate (std only, one connection at a time). Run it under gracewrap; see
//! examples/README.md:
//!
//! ```text
//! cargo build --example listenfd_server
//! gracewrap -l http=tcp:127.0.0.1:8000 -- target/debug/examples/listenfd_server
//! ```
//!
//! listenfd 1.x takes the sockets when `LISTEN_PID` is this process's pid
//! or is not set at all (`gracewrap --no-pid`), and leaves them alone when
//! it names another process. It does not read `LISTEN_FDNAMES`; the name
//! in the answer comes from the variable itself.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::Duration;

fn main() {
    // Before from_env(), which removes LISTEN_PID and LISTEN_FDS (but not
    // LISTEN_FDNAMES).
    let name = std::env::var("LISTEN_FDNAMES")
        .ok()
        .and_then(|names| names.split(':').next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    let mut fds = listenfd::ListenFd::from_env();
    // Programs often fall back to binding an address themselves here
    // (`unwrap_or_else(|| TcpListener::bind(...))`); this one refuses, so
    // that a missing socket shows at once.
    let listener: TcpListener = match fds.take_tcp_listener(0) {
        Ok(Some(listener)) => listener,
        Ok(None) => {
            eprintln!(
                "listenfd_server: no socket passed to this process \
                 (run it under gracewrap -l ...; LISTEN_PID, if set, must be its pid)"
            );
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("listenfd_server: fd 3: {e}");
            std::process::exit(1)
        }
    };
    let body = format!(
        "hello from listenfd_server (pid {}, fd {}, socket {name:?})\n",
        std::process::id(),
        listener.as_raw_fd()
    );
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        // A slow client holds the server for 5 s at most.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        // Read the whole request head: closing with unread data sends a RST.
        let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
            match conn.read(&mut buf) {
                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        if !head.is_empty() {
            let _ = conn.write_all(reply.as_bytes());
        }
    }
}
