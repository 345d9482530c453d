//! Joining the queue and waiting for our turn: within the wait the configuration allows,
//! riding out an election by joining again, and leaving nothing behind when giving up.

use super::Held;
use crate::access::{self, Access};
use crate::config::{Config, LockName, Wait};
use crate::error::{duration, Error, Result};
use crate::etcd::{Etcd, Lease, LeaseState};
use crate::lock::{self, Contender, Queue, Turn};
use crate::output;
use crate::record::{Mode as RecordMode, Record};
use crate::run::Signals;
use crate::share;
use std::cell::{Cell, RefCell};
use std::time::{Duration, SystemTime};
use tokio::time::{sleep, sleep_until, Instant};

/// Joins the queue and waits for our turn, within the configured wait. Whatever goes wrong
/// (busy, timeout, a signal, etcd), our key is removed before returning the error.
///
/// A waiter whose lease ran out while etcd was unreachable (an election that outlasts a short
/// TTL) joins the queue again, at the back, once etcd answers; it gives up (exit 3) only when
/// etcd stays unreachable for a whole TTL after that.
pub(super) async fn acquire(
    config: &Config,
    name: &LockName,
    record: &Record,
    signals: &mut Signals,
) -> Result<Held> {
    let started = Instant::now();
    let etcd = Etcd::connect(&config.etcd()).await?;
    let queue = Queue::new(&config.prefix, name);
    // A run that will not wait first looks: a busy lock costs it one read and no write (no
    // lease, no key), so a fleet-wide cron line is cheap for etcd. A free-looking lock is
    // joined as usual, and the joining transaction still decides who wins.
    // A shared or semaphore contender reads the queue as far as its rules need. A holder of
    // another N is refused here too.
    let me = Access::new(config.max_holders, config.shared);
    let nowait = config.wait == Wait::Upto(Duration::ZERO);
    if nowait {
        let head = match me {
            Access::Exclusive => lock::holder(&etcd, &queue).await?,
            _ => share::would_wait(&etcd, &queue, me).await?,
        };
        if let Some(head) = head {
            if let Some(theirs) = access::disagreeing(me.max_holders(), [head.value.as_slice()]) {
                return Err(share::disagree(&queue, me.max_holders(), theirs));
            }
            return Err(busy(config, name, &head));
        }
    }
    let mut lease = etcd.grant(config.ttl).await?;
    tracing::debug!(
        "lease {:x} granted with a TTL of {}",
        lease.id,
        duration(lease.ttl)
    );
    let mut keepalive = etcd.keep_alive(lease);
    let wait_until = match config.wait {
        Wait::Forever => None,
        Wait::Upto(d) => Some(started + d),
    };

    let holder = RefCell::new(None::<Contender>);
    let mut progress = output::Progress::new(name, config.quiet);
    let refresh = progress.refresh();
    // Once we have been in the queue, an etcd failure while waiting is a reason to join
    // again, not to give up: the first join fails at once (exit 3) when etcd is down.
    let joined = Cell::new(false);
    let result = loop {
        let waiting = async {
            let (ticket, turn) = lock::enqueue(&etcd, &queue, lease.id, record).await?;
            joined.set(true);
            tracing::debug!(
                "queued as {} (create revision {})",
                ticket.key,
                ticket.revision
            );
            let waited = matches!(turn, Turn::Wait { .. });
            let wait_turn = share::wait_turn(
                (&etcd, &queue, &ticket),
                turn,
                me,
                refresh,
                |head| nowait.then(|| busy(config, name, head)),
                |head| *holder.borrow_mut() = Some(head.clone()),
            );
            // The timeout bounds the wait in the queue; reaching etcd is bounded by maxtime.
            // --nowait is decided by the wait itself, not by a timer that may beat etcd.
            let revision = match wait_until.filter(|_| !nowait) {
                None => wait_turn.await,
                Some(at) => match tokio::time::timeout_at(at, wait_turn).await {
                    Ok(revision) => revision,
                    Err(_) => return Ok(Err(timed_out(config, name, &holder))),
                },
            };
            let revision = match revision {
                Ok(revision) => revision,
                // Busy, or another N: final, not a reason to join again.
                Err(e @ (Error::Conflict { .. } | Error::Usage(_))) => return Ok(Err(e)),
                Err(e) => return Err(e),
            };
            // A semaphore waiter behind us may be watching our key for the moment we take the
            // lock (see access.rs): tell it now, with the time we took it. (--lock writes its
            // key at once anyway, and then says it holds.)
            let stamp =
                waited && matches!(me, Access::Semaphore(_)) && record.mode == RecordMode::Run;
            if stamp {
                let stamped = record.taken_at(SystemTime::now(), Some(lease.ttl));
                if !lock::move_to_lease(&etcd, &ticket, lease.id, &stamped).await? {
                    return Err(Error::Etcd(format!("our key {} is gone", ticket.key)));
                }
            }
            Ok(Ok((ticket, revision, waited && !stamp)))
        };
        let attempt = {
            tokio::pin!(waiting);
            let mut lease_state = keepalive.state.clone();
            loop {
                let lease_lost = match *lease_state.borrow() {
                    LeaseState::Alive(until) => until,
                    LeaseState::Gone => Instant::now(),
                };
                tokio::select! {
                    result = &mut waiting => break result,
                    signal = signals.recv() => break Ok(Err(Error::Interrupted(signal))),
                    _ = sleep_until(lease_lost) => break Err(Error::Etcd(lease_problem(&lease, *lease_state.borrow()))),
                    Ok(()) = lease_state.changed() => {}
                    _ = sleep_until(progress.due()) => progress.report(holder.borrow().as_ref()),
                }
            }
        };
        let why = match attempt {
            Ok(done) => break done,
            Err(e) if !joined.get() => break Err(e),
            Err(e) => e,
        };
        // Wait for etcd to answer about our lease (the keepalive keeps trying), within the
        // wait's timeout, and for at most one TTL after the lease may have run out.
        tracing::debug!("{why}; waiting for etcd to answer again");
        let give_up = match *keepalive.state.borrow() {
            LeaseState::Alive(until) => until.max(Instant::now()) + lease.ttl,
            LeaseState::Gone => Instant::now() + lease.ttl,
        };
        let mut lease_state = keepalive.state.clone();
        let answer = loop {
            if let LeaseState::Alive(until) = *lease_state.borrow_and_update() {
                if until > Instant::now() + RETRY_PAUSE {
                    // Still ours on the server: join with the same lease, which keeps our key
                    // and so our place in line.
                    sleep(RETRY_PAUSE).await;
                    break Ok(false);
                }
            } else {
                break Ok(true);
            }
            let give_up_at = wait_until.map_or(give_up, |at| at.min(give_up));
            tokio::select! {
                signal = signals.recv() => break Err(Error::Interrupted(signal)),
                Ok(()) = lease_state.changed() => {}
                _ = sleep_until(give_up_at) => break Err(match wait_until {
                    Some(at) if at <= give_up => timed_out(config, name, &holder),
                    _ => Error::Etcd(format!(
                        "lost our place in the queue for {name}: {why}, and etcd did not answer again within the lease's TTL ({})",
                        duration(lease.ttl)
                    )),
                }),
                _ = sleep_until(progress.due()) => progress.report(holder.borrow().as_ref()),
            }
        };
        match answer {
            Ok(false) => {}
            Ok(true) => {
                // etcd says the lease is gone, and with it our key: join again at the back.
                let fresh = match etcd.grant(config.ttl).await {
                    Ok(fresh) => fresh,
                    Err(e) => break Err(e),
                };
                keepalive = etcd.keep_alive(fresh);
                lease = fresh;
                tracing::warn!(
                    "lost our place in the queue for {name} (our lease expired while etcd was unreachable); joining it again at the back"
                );
            }
            Err(e) => break Err(e),
        }
    };
    match result {
        Ok((ticket, revision, waited)) => {
            tracing::debug!("took {} after {}", ticket.key, duration(started.elapsed()));
            Ok(Held {
                etcd,
                lease,
                keepalive,
                ticket,
                revision,
                taken: Instant::now(),
                taken_at: SystemTime::now(),
                waited,
            })
        }
        Err(e) => {
            drop(keepalive);
            // Best effort: if etcd is unreachable the lease expires by itself within its TTL.
            if let Err(revoke) = etcd.revoke(lease.id).await {
                tracing::warn!("{revoke}");
            }
            Err(e)
        }
    }
}

/// Pause before joining the queue again after etcd failed a request, so a fast failure does
/// not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Why a lease is in doubt, in words: what etcd said, or what it did not confirm.
pub(super) fn lease_problem(lease: &Lease, state: LeaseState) -> String {
    match state {
        LeaseState::Gone => "etcd says our lease no longer exists".to_string(),
        LeaseState::Alive(until) => {
            let confirmed = until.checked_sub(lease.ttl).unwrap_or(until);
            format!(
                "etcd has not confirmed our lease since {}; unless a later keepalive reached it, etcd expires it by {}",
                wall_clock(confirmed),
                wall_clock(until)
            )
        }
    }
}

/// An instant as a UTC time of day with milliseconds, as log readers compare it.
pub(super) fn wall_clock(at: Instant) -> String {
    let now = Instant::now();
    let wall = SystemTime::now();
    let then = if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    };
    humantime::format_rfc3339_millis(then).to_string()
}

fn timed_out(config: &Config, name: &LockName, holder: &RefCell<Option<Contender>>) -> Error {
    match holder.borrow().as_ref() {
        Some(head) => busy(config, name, head),
        None => busy_unknown(config, name),
    }
}

fn busy(config: &Config, name: &LockName, head: &Contender) -> Error {
    Error::Conflict {
        message: format!("{name} is busy: held by {}", output::describe(head)),
        code: config.conflict_exit_code,
    }
}

fn busy_unknown(config: &Config, name: &LockName) -> Error {
    Error::Conflict {
        message: format!("{name} is busy: timed out waiting in its queue"),
        code: config.conflict_exit_code,
    }
}
