//! The operating system, under gracewrap's own names: processes (PATH,
//! exec, fork), signals, the terminal, users, sd_notify sockets, and the
//! raw calls rustix lacks. The bottom layer: nothing here knows of the
//! command line, the sockets plan or the modes. Most of gracewrap's
//! `unsafe` is here.

pub mod control;
pub mod notify;
pub mod pidfile;
pub mod process;
pub mod raw;
pub mod signals;
pub mod terminal;
pub mod user;
pub mod waiting;

/// 64 unpredictable bits, for names nobody can plant something at in
/// advance (std seeds `RandomState` from the kernel's random source).
pub fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()))
}
