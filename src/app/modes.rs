//! The modes that take, give back, extend or look at a lock without running a command.

use super::release::release;
use super::{acquire, Outcome};
use crate::config::{Config, Expiry, LockName};
use crate::error::{Error, Result};
use crate::etcd::Etcd;
use crate::holders;
use crate::output;
use crate::queue::{self, Queue};
use crate::record::{Mode as RecordMode, Record};
use crate::run::Signals;
use crate::view::View;
use std::time::SystemTime;

pub(super) async fn lock_mode(config: &Config, name: &LockName) -> Result<Outcome> {
    let mut signals = Signals::catch()?;
    let record = Record::new(RecordMode::Lock, None, &config.reason, Some(config.ttl))
        .sharing(config.max_holders, config.shared);
    let held = acquire(config, name, &record, &mut signals).await?;
    // Detach the key from our lease (or move it to one of --ttl that nobody keeps alive), in
    // a transaction guarded by its create revision, so it keeps its place and outlives us.
    let lease = match config.lock_ttl {
        Some(ttl) => match held.etcd.grant(ttl).await {
            Ok(lease) => Some(lease),
            Err(e) => {
                release(&held).await;
                return Err(e);
            }
        },
        None => None,
    };
    let record = record
        .taken_at(held.taken_at, lease.map(|l| l.ttl))
        .expiring(lease.map(|l| SystemTime::now() + l.ttl));
    let moved = queue::move_to_lease(&held.etcd, &held.ticket, lease.map_or(0, |l| l.id), &record);
    let result = moved.await;
    if let Err(e) = &result {
        // The move may have landed though its answer did not come: then neither lease holds
        // the key any more, and only a delete (guarded by its create revision) frees it.
        if let Err(left) = queue::withdraw(&held.etcd, &held.ticket).await {
            tracing::debug!("{left}");
            release(&held).await;
            return Err(Error::Etcd(format!(
                "{e}; the lock may be held by {} all the same (see --status; --unlock frees it)",
                held.ticket.key
            )));
        }
        if let Some(lease) = lease {
            let _ = held.etcd.revoke(lease.id).await;
        }
    }
    release(&held).await;
    match result {
        Ok(true) => {
            output::print_locked(config.output, name, &held.ticket, config.lock_ttl);
            Ok(Outcome::Code(0))
        }
        Ok(false) => Err(Error::Etcd(format!(
            "the lock {} was removed right after we took it; try again",
            held.ticket.key
        ))),
        Err(e) => Err(e),
    }
}

pub(super) async fn unlock_mode(
    config: &Config,
    name: &LockName,
    which: Option<&str>,
) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queue = Queue::new(&config.prefix, name);
    let holder = holders::unlock(&etcd, &queue, name, which).await?;
    tracing::info!("removed {}", holder.key);
    Ok(Outcome::Code(0))
}

pub(super) async fn extend_mode(
    config: &Config,
    name: &LockName,
    expiry: Expiry,
    which: Option<&str>,
) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queue = Queue::new(&config.prefix, name);
    let until = match expiry {
        Expiry::After(d) => Some(d),
        Expiry::Never => None,
    };
    let holder = holders::extend_lock(&etcd, &queue, name, which, until).await?;
    match expiry {
        Expiry::After(d) => tracing::info!(
            "{} now expires in {}",
            holder.key,
            humantime::format_duration(d)
        ),
        Expiry::Never => tracing::info!("{} now never expires", holder.key),
    }
    Ok(Outcome::Code(0))
}

pub(super) async fn status_mode(config: &Config, name: &LockName) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queue = Queue::new(&config.prefix, name);
    let contenders = queue::contenders(&etcd, &queue).await?;
    let mut views = holders::views(&contenders);
    // One request per holder's lease: N of them at most, for a semaphore.
    for (view, c) in views.iter_mut().zip(&contenders) {
        if view.holds && c.lease != 0 {
            view.ttl_left = etcd.time_to_live(c.lease).await?;
        }
    }
    output::print_status(config.output, name, &views);
    Ok(Outcome::Code(0))
}

pub(super) async fn list_mode(config: &Config) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let locks: Vec<(String, Vec<View>)> = queue::all_locks(&etcd, &config.prefix)
        .await?
        .into_iter()
        .map(|(name, contenders)| (name, holders::views(&contenders)))
        .collect();
    output::print_list(config.output, &locks);
    Ok(Outcome::Code(0))
}
