//! The modes, step by step: run a command under the lock, take it (`--lock`), give it back
//! (`--unlock`), look at it (`--status`, `--list`). This is where the library's lock (is it
//! still ours?) meets the process side (the command, signals, what is printed).

use crate::access::Access;
use crate::acquire::{self, Request, Waiting};
use crate::command::Signals;
use crate::config::{Config, LockName, Mode, Wait};
use crate::error::Error;
use crate::etcd::Etcd;
use crate::exit::{Failure, Result};
use crate::held::Held;
use crate::output::{self, Progress};
use crate::queue::Contender;
use crate::record::Record;
use std::time::Duration;
use tokio::time::Instant;

mod history;
mod interval;
mod modes;
mod release;
mod supervise;

use modes::{extend_mode, follow_mode, list_mode, lock_mode, status_mode, unlock_mode};
use supervise::run_mode;

/// How the run ended, for `main` to turn into an exit code.
pub enum Outcome {
    /// Exit with this code.
    Code(u8),
    /// The command died of this signal: die of it too, so a calling shell stops as it would
    /// have for the bare command.
    Signal(i32),
}

pub async fn dispatch(config: Config) -> Result<Outcome> {
    match &config.mode {
        Mode::Run(name, argv) => run_mode(&config, name, argv).await,
        Mode::Lock(name) => lock_mode(&config, name).await,
        Mode::Unlock(name, which) => unlock_mode(&config, name, which.as_deref()).await,
        Mode::Extend(name, expiry, which) => {
            extend_mode(&config, name, *expiry, which.as_deref()).await
        }
        Mode::Status(name) => status_mode(&config, name).await,
        Mode::History(name) => history::history_mode(&config, name).await,
        Mode::List => list_mode(&config).await,
        Mode::Follow(name) => follow_mode(&config, name.as_ref()).await,
        Mode::ShowConfig => {
            output::print_settings(config.output, &config.settings);
            Ok(Outcome::Code(0))
        }
    }
}

/// Takes the lock as the configuration says, writing `record` into our key: the "waiting
/// for" lines go to stderr, and a signal ends the wait (leaving nothing in etcd).
async fn acquire(
    config: &Config,
    name: &LockName,
    record: &Record,
    signals: &mut Signals,
) -> Result<Held> {
    let etcd = connect(config, signals).await?;
    acquire_on(&etcd, config, name, record, signals).await
}

/// Connects to etcd, unless a signal comes first (a frozen etcd may take `maxtime` to
/// answer): then the run ends as interrupted, having written nothing.
async fn connect(config: &Config, signals: &mut Signals) -> Result<Etcd> {
    unless_interrupted(signals, async { Ok(Etcd::connect(&config.etcd()).await?) }).await
}

/// `step` (connecting, a read before the queue), or `Failure::Interrupted` if a signal
/// comes first. Once a mode has caught the signals, every wait for etcd must watch them too.
async fn unless_interrupted<T>(
    signals: &mut Signals,
    step: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        signal = signals.recv() => Err(Failure::Interrupted(signal, None)),
        done = step => done,
    }
}

/// `acquire`, on a connection the caller has made (and uses before or after).
async fn acquire_on(
    etcd: &Etcd,
    config: &Config,
    name: &LockName,
    record: &Record,
    signals: &mut Signals,
) -> Result<Held> {
    let request = Request {
        prefix: &config.prefix,
        name,
        ttl: config.ttl,
        timeout: match config.wait {
            Wait::Forever => None,
            Wait::Upto(d) => Some(d),
        },
        access: Access::new(config.max_holders, config.shared),
        record,
        history: config.history_size,
    };
    let mut hooks = Hooks {
        progress: Progress::new(name, config.quiet).locking(matches!(config.mode, Mode::Lock(_))),
        signals,
    };
    acquire::acquire(etcd, &request, &mut hooks)
        .await
        .map_err(Failure::from_acquire)
}

/// The binary's side of a wait: progress lines, and signals that end it.
struct Hooks<'a> {
    progress: Progress,
    signals: &'a mut Signals,
}

impl Waiting for Hooks<'_> {
    async fn interrupted(&mut self) -> Error {
        Error::Interrupted(self.signals.recv().await, None)
    }
    fn refresh(&self) -> Option<Duration> {
        self.progress.refresh()
    }
    fn report_due(&self) -> Option<Instant> {
        self.progress.due()
    }
    fn report(&mut self, holder: Option<&Contender>) {
        self.progress.report(holder)
    }
}
