//! An HTTP answer from a mio event loop on fd 3 (the building block under
//! tokio): the listener sits in an epoll set. It never sends READY=1; the
//! readiness tests restart it under `gracewrap -s` with no option.
//!
//! ```text
//! cargo build --example mio_server
//! gracewrap -s -l tcp:127.0.0.1:8000 -- target/debug/examples/mio_server
//! ```

use std::io::{Read, Write};
use std::os::fd::FromRawFd;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

fn main() -> std::io::Result<()> {
    // SAFETY: fd 3 is the listening socket gracewrap passed (LISTEN_FDS=1),
    // and nothing else in this process owns it.
    #[allow(unsafe_code)]
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    std_listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(64);
    loop {
        poll.poll(&mut events, None)?;
        while let Ok((conn, _)) = listener.accept() {
            let mut conn = std::net::TcpStream::from(conn);
            conn.set_nonblocking(false)?;
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\n\r\nhi");
        }
    }
}
