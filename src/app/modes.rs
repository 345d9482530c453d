//! The modes that take, give back, extend or look at a lock without running a command.

use super::{acquire, history, Outcome};
use crate::command::Signals;
use crate::config::{Config, Expiry, LockName};
use crate::etcd::Etcd;
use crate::exit::{Failure, Result};
use crate::holders;
use crate::output;
use crate::queue::{self, Queue};
use crate::record::{Mode as RecordMode, Record};
use crate::view::View;

pub(super) async fn lock_mode(config: &Config, name: &LockName) -> Result<Outcome> {
    let mut signals = Signals::catch()?;
    let record = Record::new(RecordMode::Lock, None, &config.reason, Some(config.ttl))
        .sharing(config.max_holders, config.shared);
    let queued = std::time::SystemTime::now();
    let held = acquire(config, name, &record, &mut signals).await?;
    // The key leaves our lease (for one of --ttl that nobody keeps alive, or none), keeping its
    // place, so the lock outlives us.
    if !held.keep(config.lock_ttl).await? {
        return Err(Failure::Etcd(format!(
            "the lock {} was removed right after we took it; try again",
            held.key()
        )));
    }
    // Held until someone unlocks it (or its --ttl passes): `--unlock` completes the entry.
    let entry = history::entry(name, &held, &record, queued);
    history::write(config, &held, &entry, &mut signals).await;
    output::print_locked(
        config.output,
        name,
        held.key(),
        held.token(),
        config.lock_ttl,
    );
    Ok(Outcome::Code(0))
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
    history::unlocked(config, &etcd, name, &holder).await;
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
    let views = holders::status(&etcd, &Queue::new(&config.prefix, name)).await?;
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
