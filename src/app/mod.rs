//! The modes, step by step: run a command under the lock, take it (`--lock`), give it back
//! (`--unlock`), look at it (`--status`, `--list`). This is the one place where the etcd
//! side (is the lock still ours?) meets the process side (the command, signals).

use crate::config::{Config, Mode};
use crate::error::Result;
use crate::etcd::{Etcd, KeepAlive, Lease};
use crate::lock::Ticket;
use crate::output;
use std::time::SystemTime;
use tokio::time::Instant;

mod acquire;
mod modes;
mod release;
mod supervise;

use modes::{extend_mode, list_mode, lock_mode, status_mode, unlock_mode};
use supervise::run_mode;

/// How the run ended, for `main` to turn into an exit code.
pub enum Outcome {
    /// Exit with this code.
    Code(u8),
    /// The command died of this signal: die of it too, so a calling shell stops as it would
    /// have for the bare command.
    Signal(i32),
}

pub async fn main(config: Config) -> Result<Outcome> {
    match &config.mode {
        Mode::Run(name, argv) => run_mode(&config, name, argv).await,
        Mode::Lock(name) => lock_mode(&config, name).await,
        Mode::Unlock(name, which) => unlock_mode(&config, name, which.as_deref()).await,
        Mode::Extend(name, expiry) => extend_mode(&config, name, *expiry).await,
        Mode::Status(name) => status_mode(&config, name).await,
        Mode::List => list_mode(&config).await,
        Mode::ShowConfig => {
            output::print_settings(config.output, &config.settings);
            Ok(Outcome::Code(0))
        }
    }
}

/// The lock, once we hold it.
struct Held {
    etcd: Etcd,
    lease: Lease,
    keepalive: KeepAlive,
    ticket: Ticket,
    /// etcd's revision when we took it: watching our key from there misses no unlock.
    revision: i64,
    taken: Instant,
    /// Wall-clock time we took it, for the record.
    taken_at: SystemTime,
    /// Whether we waited: then our record still says when the wait began.
    waited: bool,
}
