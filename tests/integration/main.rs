//! Integration tests: the real gracewrap binary with examples/probe (or a
//! real third-party consumer) as PROGRAM, real sockets on loopback.

mod util;

/// --accept: a PROGRAM per connection.
mod accept;
/// Command line: help, version, usage errors.
mod cli;
/// systemd-socket-activate's options and behaviour.
mod compat;
/// The consumers of examples/README.md, run by the commands it shows.
mod consumers;
/// examples/demo.rs drains on SIGTERM: no request lost across restarts.
mod demo;
/// examples/Dockerfile and examples/systemd/, run as PID 1 and as units.
mod deploy;
/// Exec mode: fds 3.., LISTEN_* variables, stray fds, limits, exit status.
mod exec;
/// Faults and load: signal storms, misbehaving generations, --accept
/// under 2000 concurrent connections; no fd, zombie or memory leak.
mod faults;
/// --fdstore: fds stored by one generation reach the next ones
/// (examples/fdstore_echo.py keeps a client connected across a restart).
mod fdstore;
/// The resident modes under attack and under faults (issue 12).
mod hardening;
/// Unix socket files, privilege drop, socket options (as root).
mod hygiene;
/// Inheriting LISTEN_FDS: nesting, matching, --inherited, garbage.
mod inherit;
/// Consumers written by others: Python's socket.fromfd, libsystemd.
mod interop;
/// The bad-input matrix: every row of docs/bad-input.md.
mod matrix;
/// Any datagram, with or without fds, into the supervisor's NOTIFY_SOCKET
/// (property test): it stays responsive and keeps no fd and no memory.
mod notifyprops;
/// Finding PROGRAM: one PATH search in every mode.
mod path;
/// Property tests of fd placement against the real binary.
mod props;
/// --ready auto: real servers that do not notify, restarted with no
/// option; how the detection fails safe.
mod readiness;
/// gracewrap --restart: the restart command that waits.
mod restart_command;
/// The rest of systemd's service protocol: watchdog, fd store,
/// EXTEND_TIMEOUT_USEC=, what goes up (issue 14).
mod service_protocol;
/// --supervise: graceful restarts, PID-1 duties, sd_notify.
mod supervise;
/// The supervisor under a terminal: one Ctrl-C, the foreground, `stty tostop`.
mod terminal;
/// Users and groups from /etc/passwd and /etc/group read as bytes.
mod userdb;
