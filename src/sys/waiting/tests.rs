use super::*;

#[test]
fn an_epoll_target_is_found_by_inode_when_watched_for_reading() {
    let info = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\n\
tfd:        5 events:       19 data:                5  pos:0 ino:3e8 sdev:8\n\
tfd:        7 events:        4 data:                7  pos:0 ino:3e9 sdev:8\n";
    assert_eq!(epoll_target(info, &[1000]), Some(5));
    // Watched for writing only (EPOLLOUT): not waiting for connections.
    assert_eq!(epoll_target(info, &[1001]), None);
    assert_eq!(epoll_target(info, &[42]), None);
    assert_eq!(epoll_target("", &[1000]), None);
}

#[test]
fn accept_on_one_of_our_sockets_is_waiting() {
    let nr = libc::SYS_accept4;
    let text = format!("{nr} 0x3 0x0 0x0 0x80800 0x0 0x0 0x7ffc 0x7f00\n");
    assert_eq!(
        in_syscall(9, &text, &|fd| fd == 3),
        Some(Waiting::Accept { pid: 9, fd: 3 })
    );
    assert_eq!(in_syscall(9, &text, &|fd| fd == 4), None);
}

#[test]
fn outside_a_call_or_in_another_one_is_not_waiting() {
    assert_eq!(in_syscall(9, "running\n", &|_| true), None);
    assert_eq!(in_syscall(9, "-1 0x7ffc 0x7f00\n", &|_| true), None);
    let read = format!("{} 0x3 0x0 0x10 0x0 0x0 0x0 0x7ffc 0x7f00", libc::SYS_read);
    assert_eq!(in_syscall(9, &read, &|_| true), None);
    assert_eq!(in_syscall(9, "", &|_| true), None);
    assert_eq!(in_syscall(9, "garbage 0xzz", &|_| true), None);
}

#[test]
fn this_process_blocked_in_accept_on_a_socket_of_the_set_is_found() {
    // A real thread of ours, blocked in accept(2).
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = listener.as_raw_fd();
    let ino = socket_inode(std::process::id() as i32, fd).unwrap();
    let t = std::thread::spawn(move || {
        let _ = listener.accept();
    });
    let me = std::process::id() as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        if let Some(w) = waiting(me, &[ino]) {
            break Some(w);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::yield_now();
    };
    assert_eq!(found, Some(Waiting::Accept { pid: me, fd }));
    assert_eq!(waiting(me, &[ino + 1]), None);
    // The thread stays blocked until the test binary exits.
    drop(t);
}
