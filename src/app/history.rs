//! The lock's history as the modes write it (one entry per run, `--lock`/`--unlock` pair and
//! forced release) and `--history`, which reads it. Entries and their keys are the library's
//! `history`. A write that fails is one warning, never a failed run; it is made after the
//! lock is given back, so the next holder never waits for it.

use super::Outcome;
use crate::command::Signals;
use crate::config::{Config, LockName};
use crate::error::signal_name;
use crate::etcd::Etcd;
use crate::exit::{Failure, Result};
use crate::held::Held;
use crate::history::{self, outcome, Entry};
use crate::output;
use crate::queue::{self, Contender};
use crate::record::{hostname, Record};
use crate::stamp;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::SystemTime;

/// How a run ended, for its entry: the command's status, or distlock's failure.
pub(super) fn run_outcome(entry: Entry, ended: &Result<ExitStatus>) -> Entry {
    match ended {
        Ok(status) => match status.signal() {
            Some(signal) => Entry {
                signal: Some(signal_name(signal)),
                exit_code: Some(i32::from(crate::exit::killed_by(signal))),
                ..entry.ended(outcome::SIGNAL)
            },
            None => Entry {
                exit_code: Some(i32::from(crate::command::shell_status(*status))),
                ..entry.ended(outcome::EXIT)
            },
        },
        Err(failure) => failed(entry, failure),
    }
}

/// A run whose lock `--hold-at-least` keeps (as `release_or_hold` decides) lets go of it at
/// `min` after taking it, not when its command ended.
pub(super) fn held_at_least(entry: Entry, config: &Config, held: &Held) -> Entry {
    match config.hold_at_least {
        Some(min) if held.taken().elapsed() < min => {
            let released = held.taken_at() + min;
            Entry {
                released: Some(humantime::format_rfc3339_seconds(released).to_string()),
                held_s: Some(min.as_secs_f64()),
                ..entry
            }
        }
        _ => entry,
    }
}

/// The entry of a run that failed while holding the lock.
pub(super) fn failed(entry: Entry, failure: &Failure) -> Entry {
    let what = match failure {
        Failure::TimedOut(_) | Failure::TimedOutKilled(_) => outcome::MAX_RUNTIME,
        Failure::Interrupted(..) => outcome::INTERRUPTED,
        Failure::CannotExecute(_) | Failure::NotFound(_) => outcome::NOT_STARTED,
        _ => outcome::LOST,
    };
    let signal = match failure {
        Failure::Interrupted(signal, _) => Some(signal_name(*signal)),
        _ => None,
    };
    Entry {
        exit_code: Some(i32::from(failure.code())),
        signal,
        detail: Some(failure.to_string()),
        ..entry.ended(what)
    }
}

/// The entry of the holder `held`, which joined the queue at `queued`, before it ends.
pub(super) fn entry(name: &LockName, held: &Held, record: &Record, queued: SystemTime) -> Entry {
    Entry::new(
        name,
        (held.key(), held.token()),
        record,
        queued,
        held.taken_at(),
    )
}

/// Writes `entry` of the lock `held` held, unless history is off (or could not be read when
/// it joined, which it warned of then); a failure is a warning, but for a lost lock, whose
/// one line already says what etcd did. A signal (one that came while releasing, too) ends
/// the write: distlock must end within maxtime and a second.
pub(super) async fn write(config: &Config, held: &Held, entry: &Entry, signals: &mut Signals) {
    let Some(seen) = held.history_seen().filter(|_| config.history_size > 0) else {
        return;
    };
    let size = config.history_size;
    let write = history::write(held.etcd(), &config.prefix, entry, seen, size);
    tokio::select! {
        written = write => {
            match written {
                Err(e) if entry.outcome == outcome::LOST => {
                    tracing::debug!("the lock's history was not written: {e}")
                }
                Err(e) => tracing::warn!("the lock's history was not written: {e}"),
                Ok(_) => {}
            }
        }
        signal = signals.recv() => {
            tracing::debug!("the lock's history was not written: {}", signal_name(signal));
        }
    }
}

/// `--unlock` removed `holder`: its entry says so, and from which host.
pub(super) async fn unlocked(config: &Config, etcd: &Etcd, name: &LockName, holder: &Contender) {
    if config.history_size == 0 {
        return;
    }
    let entry = Entry::unlocked(
        name,
        &holder.key,
        holder.create_revision,
        &holder.value,
        &hostname(),
    );
    let written = history::write(etcd, &config.prefix, &entry, &[], config.history_size).await;
    if let Err(e) = written {
        tracing::warn!("the lock's history was not written: {e}");
    }
}

pub(super) async fn history_mode(config: &Config, name: &LockName) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let entries = history::read(
        &etcd,
        &config.prefix,
        name,
        crate::settings::values::MAX_HISTORY,
    )
    .await?;
    let stamp = stamp::read(&etcd, &queue::stamp_key(&config.prefix, name)).await?;
    output::print_history(config.output, name, &entries, stamp.as_ref());
    Ok(Outcome::Code(0))
}
