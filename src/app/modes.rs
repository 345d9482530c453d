//! The modes that take, give back, extend or look at a lock without running a command.

use super::{acquire, history, unless_interrupted, Outcome};
use crate::command::Signals;
use crate::config::{Config, Expiry, Format, LockName};
use crate::etcd::Etcd;
use crate::exit::{self, Failure, Result};
use crate::feed::Feed;
use crate::holders;
use crate::output;
use crate::queue::{self, Queue};
use crate::record::{Mode as RecordMode, Record};
use crate::stamp;
use crate::view::View;

pub(super) async fn lock_mode(config: &Config, name: &LockName) -> Result<Outcome> {
    let mut signals = Signals::catch()?;
    let record = Record::new(RecordMode::Lock, None, &config.reason, Some(config.ttl))
        .sharing(config.max_holders, config.shared);
    let queued = std::time::SystemTime::now();
    let held = acquire(config, name, &record, &mut signals)
        .await
        .map_err(Failure::without_command)?;
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
    output::print_unlocked(config.output, name, &View::of(&holder));
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
    output::print_extended(config.output, name, &holder, until);
    Ok(Outcome::Code(0))
}

pub(super) async fn status_mode(config: &Config, name: &LockName) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let views = holders::status(&etcd, &Queue::new(&config.prefix, name)).await?;
    let stamp = stamp::read(&etcd, &queue::stamp_key(&config.prefix, name)).await?;
    output::print_status(config.output, name, &views, stamp.as_ref());
    Ok(Outcome::Code(held_or_not(views.iter().any(|v| v.holds))))
}

pub(super) async fn list_mode(config: &Config) -> Result<Outcome> {
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queues = queue::all_locks(&etcd, &config.prefix).await?;
    let locks: Vec<(String, Vec<View>)> = queues
        .iter()
        .map(|(name, contenders)| (name.clone(), holders::views(contenders)))
        .collect();
    if config.output == Format::Prometheus {
        // Metrics are a dump for a file, whatever is held: their exit says only that the list
        // was read, so a cron job replaces its file exactly when it should.
        let last = crate::history::newest_per_lock(&etcd, &config.prefix, &queues).await?;
        output::print_metrics(&locks, &last);
        return Ok(Outcome::Code(exit::OK));
    }
    output::print_list(config.output, &locks);
    let any = locks.iter().any(|(_, views)| views.iter().any(|v| v.holds));
    Ok(Outcome::Code(held_or_not(any)))
}

/// `--status` and `--list` exit 0 when they found a lock held and 1 when not, so a script can
/// test it without parsing what they print.
fn held_or_not(held: bool) -> u8 {
    match held {
        true => exit::OK,
        false => exit::NONE_HELD,
    }
}

/// `--list --follow`, `--status --follow`: the locks as they are, then every change, until a
/// signal ends it (exit 0: that is how a feed ends) or nobody reads stdout any more.
pub(super) async fn follow_mode(config: &Config, name: Option<&LockName>) -> Result<Outcome> {
    let mut signals = Signals::catch()?;
    let only = name.map(LockName::to_string);
    let start = async {
        let etcd = Etcd::connect(&config.etcd()).await?;
        Ok(Feed::start(&etcd, &config.prefix, only.as_deref()).await?)
    };
    let mut feed = match unless_interrupted(&mut signals, start).await {
        // Stopped before it began: a feed ends so.
        Err(Failure::Interrupted(..)) => return Ok(Outcome::Code(0)),
        started => started?,
    };
    tracing::info!(
        "following {} from revision {}",
        only.as_deref().unwrap_or("every lock"),
        feed.revision()
    );
    let mut events = feed.snapshot();
    loop {
        for event in &events {
            if output::print_event(config.output, event).is_err() {
                return Ok(Outcome::Code(0));
            }
        }
        events = tokio::select! {
            _ = signals.recv() => return Ok(Outcome::Code(0)),
            next = feed.next() => next?,
        };
    }
}
