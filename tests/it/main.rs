//! The integration tests, one binary with a module per area (docs/testing.md has the table):
//! the real `distlock` binary against real etcd servers the tests start on loopback, with
//! `etcdctl` as a real peer. One binary, so the harness in `common` compiles once and every
//! helper in it is used by some test. Run one area with `cargo test --test it core::`.

mod common;

mod core;
mod cost;
mod examples;
mod faults;
mod flock;
mod follow;
mod harness;
mod history;
mod hostile;
mod library;
mod min_interval;
mod modes;
mod neighbours;
mod observe;
mod package;
mod run_mode;
mod security;
mod survive;
