//! Integration tests: the real gracewrap binary with examples/probe (or a
//! real third-party consumer) as PROGRAM, real sockets on loopback.

mod util;

/// Command line: help, version, usage errors.
mod cli;
/// Exec mode: fds 3.., LISTEN_* variables, stray fds, limits, exit status.
mod exec;
/// Consumers written by others: Python's socket.fromfd, libsystemd.
mod interop;
