//! `--min-interval` in run mode: a run is skipped while the stamp of the last successful run
//! stands (see the library's `stamp.rs`); a run whose command exits 0 leaves one.
//!
//! A run looks for the stamp twice: before joining the queue, so that a run started within
//! the interval is skipped at once and writes nothing, and once it holds the lock, before the
//! command starts, so that the waiters queued behind a run that then stamped are skipped in
//! turn (a queue of servers that fired at the same second runs the job once). With
//! `--max-holders N`, holders that took the lock before any stamp existed all run.

use super::release::release;
use crate::config::{Config, LockName};
use crate::error::duration;
use crate::etcd::Etcd;
use crate::exit::{Failure, Result};
use crate::held::Held;
use crate::queue::stamp_key;
use crate::stamp::{self, Found, Pending};
use crate::view::{clean, utc_of};
use std::time::Duration;

/// Skips the run (a "not acquired" failure, exit 1 or `--conflict-exit-code`) if the stamp
/// stands. Costs one read, and one more when there is a stamp.
pub(super) async fn look(etcd: &Etcd, config: &Config, name: &LockName) -> Result<()> {
    match stamp::read(etcd, &stamp_key(&config.prefix, name)).await? {
        Some(found) => Err(Failure::Skipped(skipped(name, &found))),
        None => Ok(()),
    }
}

/// Once the lock is ours: skips the run if a stamp appeared meanwhile (releasing the lock),
/// else starts this run's stamp, whose lease etcd counts from now.
pub(super) async fn start(
    etcd: &Etcd,
    config: &Config,
    name: &LockName,
    held: &Held,
    interval: Duration,
) -> Result<Pending> {
    let key = stamp_key(&config.prefix, name);
    let pending = match look(etcd, config, name).await {
        Ok(()) => Pending::start(etcd, &key, interval)
            .await
            .map_err(Failure::from),
        Err(e) => Err(e),
    };
    if pending.is_err() {
        release(held).await;
    }
    pending
}

/// After the command exited 0: stamps the run, before the lock is released, so that the next
/// holder sees the stamp. A failure to write it is a warning: the command's status stands.
pub(super) async fn finish(pending: &Pending, held: &Held, interval: Duration) {
    let stamp = pending.stamp(held.token());
    match pending.write(&stamp).await {
        Ok(true) => tracing::debug!("stamped the run (--min-interval)"),
        Ok(false) => tracing::info!(
            "the command ran longer than --min-interval ({}): no stamp, the next run may start at once",
            humantime::format_duration(interval)
        ),
        Err(e) => tracing::warn!(
            "{e}; the next run may start before --min-interval ({}) has passed",
            humantime::format_duration(interval)
        ),
    }
}

/// The command failed or never ran: no stamp. If etcd cannot be reached, the keyless lease
/// expires by itself and stops no one.
pub(super) async fn cancel(pending: &Pending) {
    if let Err(e) = pending.cancel().await {
        tracing::debug!("cannot revoke the lease of the --min-interval stamp: {e}");
    }
}

/// The one line of a skipped run: who ran last, and when the next run may start, as etcd
/// counts it.
fn skipped(name: &LockName, found: &Found) -> String {
    let next = match found.expires_in_s {
        Some(secs) if secs >= 1 => format!("in {}", duration(Duration::from_secs(secs as u64))),
        Some(_) => "in under a second".into(),
        None => format!(
            "once someone deletes the stamp {}, which is on no lease",
            clean(&found.key, 300)
        ),
    };
    match &found.stamp {
        Some(s) => format!(
            "skipped {name}: it ran at {} on {} and --min-interval {} allows the next run {next}",
            utc_of(&s.started),
            clean(&s.host, 60),
            humantime::format_duration(Duration::from_secs(s.interval_s))
        ),
        None => format!(
            "skipped {name}: its --min-interval stamp {} allows the next run {next}",
            clean(&found.key, 300)
        ),
    }
}
