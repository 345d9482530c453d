//! Taking a lock: joining the queue and waiting for our turn within the wait asked for,
//! riding out an election by joining again, giving up when our key is deleted, and leaving
//! nothing behind when giving up. The lock as held is `held.rs`.

use crate::access::{self, Access};
use crate::error::{duration, wall_clock, Error, Result};
use crate::etcd::{Etcd, KeepAlive, Lease, LeaseState};
use crate::held::{at_risk, lease_problem, Held};
use crate::history;
use crate::name::LockName;
use crate::queue::{self, Contender, Queue, Ticket, Turn};
use crate::record::{Mode as RecordMode, Record};
use crate::view::describe;
use crate::wait::{self, Unread};
use crate::watch::Watches;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::{Duration, SystemTime};
use tokio::time::{sleep, sleep_until, Instant};

/// What to take, and how.
pub struct Request<'a> {
    /// The key prefix under which every lock lives (distlock's default is `/distlock/`).
    pub prefix: &'a str,
    pub name: &'a LockName,
    /// The TTL of our lease, which a background task keeps alive while we wait and hold.
    pub ttl: Duration,
    /// How long to wait for a busy lock: `None` for as long as it takes, `Some(ZERO)` not at
    /// all. Not waiting costs a busy lock one read and no write.
    pub timeout: Option<Duration>,
    /// Exclusive (a mutex, what `etcdctl lock` takes), shared, or one of N holders.
    pub access: Access,
    /// What our key tells whoever looks: host, pid, reason, mode. See `Record::new`. Its
    /// `max_holders` and `shared` are set from `access`: the others read them to know how we
    /// hold, so they must say the same.
    pub record: &'a Record,
    /// How many history entries the lock keeps (0: none): the joining transaction (and the
    /// mutex's hand-over write) then read the newest keys, for `Held::history_seen` (see
    /// `history::write`).
    pub history: u32,
}

/// What the caller of `acquire` hears while it waits, and how it cancels the wait.
///
/// `()` is the quiet choice: no reports, never cancelled (drop the future to give up; the
/// lease then expires by itself within its TTL).
pub trait Waiting {
    /// Completes when the caller wants to stop waiting (a signal, say): `acquire` then removes
    /// our key and returns this error.
    fn interrupted(&mut self) -> impl Future<Output = Error>;
    /// How often the wait should read the holder afresh for `report`; `None`: only what the
    /// wait learns anyway, at no cost.
    fn refresh(&self) -> Option<Duration>;
    /// When `report` is due next; `None`: never.
    fn report_due(&self) -> Option<Instant>;
    /// Called when due, with the holder as far as the wait knows it.
    fn report(&mut self, holder: Option<&Contender>);
}

impl Waiting for () {
    fn interrupted(&mut self) -> impl Future<Output = Error> {
        std::future::pending()
    }
    fn refresh(&self) -> Option<Duration> {
        None
    }
    fn report_due(&self) -> Option<Instant> {
        None
    }
    fn report(&mut self, _: Option<&Contender>) {}
}

/// Joins the queue and waits for our turn, within the wait asked for. Whatever goes wrong
/// (busy, timeout, interrupted, etcd), our key is removed before returning the error.
///
/// A waiter whose lease ran out while etcd was unreachable (an election that outlasts a short
/// TTL) joins the queue again, at the back, once etcd answers; it gives up (exit 3) only when
/// etcd stays unreachable for a whole TTL after that.
///
/// A busy lock (with a timeout) is `Error::Conflict`; a contender that disagrees with the
/// holders about N is `Error::Invalid`.
pub async fn acquire(etcd: &Etcd, request: &Request<'_>, hooks: &mut impl Waiting) -> Result<Held> {
    let started = Instant::now();
    let me = request.access;
    let record = request
        .record
        .clone()
        .sharing(me.max_holders(), me == Access::Shared);
    let queue = Queue::new(request.prefix, request.name);
    let nowait = request.timeout == Some(Duration::ZERO);
    if nowait {
        tokio::select! {
            looked = look_before_joining(etcd, &queue, me, request.name) => looked?,
            // Nothing is written yet.
            e = hooks.interrupted() => return Err(e),
        }
    }
    let mut lease = grant(etcd, request.ttl, hooks).await?;
    tracing::debug!(
        "lease {:x} granted with a TTL of {}",
        lease.id,
        duration(lease.ttl)
    );
    let mut keepalive = etcd.keep_alive(lease);
    let turn = Turns {
        etcd,
        queue: &queue,
        name: request.name,
        record: &record,
        me,
        nowait,
        until: request.timeout.map(|d| started + d),
        timeout: request.timeout,
        refresh: hooks.refresh(),
        holder: RefCell::new(None),
        history: (request.history > 0)
            .then(|| history::newest(request.prefix, request.name, request.history)),
    };
    // Once we have been in the queue, an etcd failure while waiting is a reason to join
    // again, not to give up: the first join fails at once (exit 3) when etcd is down.
    let mut joined = false;
    // Our key's create revision, once we joined with this lease: joining again with it must
    // find the same key, or someone deleted it meanwhile.
    let mut place = None;
    let outcome = loop {
        let why = match turn.pass(lease, &keepalive, &mut place, hooks).await {
            Ok(outcome) => break outcome,
            // A refusal (credentials, permission, a full quota) is not an etcd worth waiting for.
            Err(e) if place.is_none() && !joined || matches!(e, Error::Denied(_)) => {
                break Outcome::GaveUp(e)
            }
            Err(e) => e,
        };
        joined = true;
        match turn.etcd_again(&why, lease, &keepalive, hooks).await {
            Ok(Again::SameLease) => {}
            // etcd says the lease is gone, and with it our key: join again at the back.
            Ok(Again::LeaseGone) => {
                lease = match etcd.grant(request.ttl).await {
                    Ok(fresh) => fresh,
                    Err(e) => break Outcome::GaveUp(e),
                };
                keepalive = etcd.keep_alive(lease);
                place = None;
                tracing::warn!(
                    "lost our place in the queue for {} (our lease expired while etcd was unreachable); joining it again at the back",
                    request.name
                );
            }
            Err(e) => break Outcome::GaveUp(e),
        }
    };
    match outcome {
        Outcome::Took(taken) => {
            tracing::debug!(
                "took {} after {}",
                taken.ticket.key,
                duration(started.elapsed())
            );
            Ok(Held {
                etcd: etcd.clone(),
                lease,
                keepalive,
                ticket: taken.ticket,
                taken: Instant::now(),
                taken_at: SystemTime::now(),
                record,
                revision: taken.revision,
                waited: taken.unstamped,
                watches: Cell::new(Some(taken.watches)),
            })
        }
        Outcome::GaveUp(e) => {
            let joined = joined || place.is_some();
            Err(give_up(etcd, &queue, lease, keepalive, joined, e).await)
        }
    }
}

/// Grants our lease, or ends as interrupted when the caller interrupts meanwhile (a frozen
/// etcd may take `maxtime` to answer). The grant in flight is still awaited, so that a lease
/// etcd granted is revoked rather than left behind; like `give_up` before joining, a revoke
/// that fails leaves only a lease without a key, which expires by itself.
async fn grant(etcd: &Etcd, ttl: Duration, hooks: &mut impl Waiting) -> Result<Lease> {
    let granting = etcd.grant(ttl);
    tokio::pin!(granting);
    tokio::select! {
        granted = &mut granting => granted,
        e = hooks.interrupted() => {
            if let Ok(lease) = granting.await {
                if let Err(revoke) = etcd.revoke(lease.id).await {
                    tracing::debug!("{revoke}");
                }
            }
            Err(e)
        }
    }
}

/// A run that will not wait first looks: a busy lock costs it one read and no write (no lease,
/// no key), so a fleet-wide cron line is cheap for etcd. A free-looking lock is joined as usual,
/// and the joining transaction still decides who wins. A shared or semaphore contender reads
/// the queue as far as its rules need. A holder of another N is refused here too.
async fn look_before_joining(
    etcd: &Etcd,
    queue: &Queue,
    me: Access,
    name: &LockName,
) -> Result<()> {
    let head = match me {
        Access::Exclusive => queue::head(etcd, queue).await?,
        _ => wait::would_wait(etcd, queue, me).await?,
    };
    let Some(head) = head else { return Ok(()) };
    if let Some(theirs) = access::disagreeing(me.max_holders(), [head.value.as_slice()]) {
        return Err(wait::disagree(queue, me.max_holders(), theirs));
    }
    Err(busy(name, &head))
}

/// How a pass through the queue ended, short of etcd failing us (which is `Err`: wait for
/// etcd, then join again).
enum Outcome {
    Took(Box<Taken>),
    /// Final: busy, another N, our key removed, a refusal, interrupted, timed out.
    GaveUp(Error),
}

/// The lock, as a pass took it.
struct Taken {
    ticket: Ticket,
    /// A revision at which our key existed (see `Held::lost`).
    revision: i64,
    /// Whether we waited and our record still says so (it is rewritten 250 ms into the hold).
    unstamped: bool,
    watches: Watches,
}

/// What to do once etcd answers again.
enum Again {
    /// Our lease lives on the server: join with it, which keeps our key and our place.
    SameLease,
    /// etcd says it is gone, and our key with it: a new lease, at the back of the queue.
    LeaseGone,
}

/// What every pass through the queue shares.
struct Turns<'a> {
    etcd: &'a Etcd,
    queue: &'a Queue,
    name: &'a LockName,
    record: &'a Record,
    me: Access,
    nowait: bool,
    /// When the wait in the queue ends (the timeout); reaching etcd is bounded by maxtime.
    until: Option<Instant>,
    /// The timeout itself, for the message that gives up.
    timeout: Option<Duration>,
    refresh: Option<Duration>,
    /// The holder as far as the wait knows it, for progress lines and the busy error.
    holder: RefCell<Option<Contender>>,
    /// The read of the newest history keys that joining and the hand-over write add
    /// (`history::newest`).
    history: Option<etcd_client::TxnOp>,
}

impl Turns<'_> {
    /// One pass: join the queue, wait for our turn, make sure our key is still there; all
    /// while the caller may interrupt and our lease may run out.
    async fn pass(
        &self,
        lease: Lease,
        keepalive: &KeepAlive,
        place: &mut Option<i64>,
        hooks: &mut impl Waiting,
    ) -> Result<Outcome> {
        let lease_alive = || {
            let state = *keepalive.state.borrow();
            matches!(state, LeaseState::Alive(until) if until > Instant::now())
        };
        let waiting = self.join_and_wait(lease, place, &lease_alive);
        tokio::pin!(waiting);
        let mut lease_state = keepalive.state.clone();
        loop {
            let lease_lost = at_risk(*lease_state.borrow(), Duration::ZERO);
            let due = hooks.report_due();
            tokio::select! {
                result = &mut waiting => return result,
                e = hooks.interrupted() => return Ok(Outcome::GaveUp(e)),
                _ = sleep_until(lease_lost) => return Err(Error::Etcd(lease_problem(&lease, *lease_state.borrow()))),
                Ok(()) = lease_state.changed() => {}
                () = sleep_until_some(due) => hooks.report(self.holder.borrow().as_ref()),
            }
        }
    }

    async fn join_and_wait(
        &self,
        lease: Lease,
        place: &mut Option<i64>,
        lease_alive: &impl Fn() -> bool,
    ) -> Result<Outcome> {
        let (etcd, queue, me) = (self.etcd, self.queue, self.me);
        // Before our key exists: the watch then sees whatever happens to it.
        let mut watches = Watches::open(etcd, &queue.key(lease.id)).await?;
        let (mut ticket, turn) = queue::enqueue(
            etcd,
            queue,
            lease.id,
            self.record,
            (me, self.history.clone()),
        )
        .await?;
        if place
            .replace(ticket.revision)
            .is_some_and(|r| r != ticket.revision)
        {
            return match lease_alive() {
                true => Ok(Outcome::GaveUp(queue::removed(queue, &ticket))),
                false => Err(queue::removed(queue, &ticket)),
            };
        }
        tracing::debug!(
            "queued as {} (create revision {})",
            ticket.key,
            ticket.revision
        );
        let waited = matches!(turn, Turn::Wait { .. });
        let wait_turn = wait::wait_turn(
            (etcd, queue, &ticket),
            &mut watches,
            turn,
            me,
            self.refresh,
            |head| self.nowait.then(|| busy(self.name, head)),
            |head| *self.holder.borrow_mut() = Some(head.clone()),
        );
        // --nowait is decided by the wait itself, not by a timer that may beat etcd.
        let turned = match self.until.filter(|_| !self.nowait) {
            None => wait_turn.await,
            Some(at) => match tokio::time::timeout_at(at, wait_turn).await {
                Ok(turned) => turned,
                Err(_) => return Ok(Outcome::GaveUp(self.timed_out())),
            },
        };
        let (revision, ahead, unread) = match turned {
            Ok(turned) => turned,
            // Busy, or another N: final, not a reason to join again.
            Err(e @ (Error::Conflict(_) | Error::Invalid(_))) => return Ok(Outcome::GaveUp(e)),
            // Our key deleted while our lease lives: someone removed us on purpose, so we go
            // (joining again would put us back behind their back). A key that went with a
            // lease that ran out is joined again.
            Err(e @ Error::Removed(_)) if lease_alive() => return Ok(Outcome::GaveUp(e)),
            Err(e) => return Err(e),
        };
        let (stamped, history) = self.confirm(lease, &ticket, waited, unread, &ahead).await?;
        if history.is_some() {
            ticket.history = history;
        }
        if stamped == Some(false) {
            return Ok(Outcome::GaveUp(queue::removed(queue, &ticket)));
        }
        Ok(Outcome::Took(Box::new(Taken {
            ticket,
            revision,
            unstamped: waited && stamped.is_none(),
            watches,
        })))
    }

    /// Writes our record as taken at the hand-over where that is needed: a semaphore waiter
    /// behind us may be watching our key for the moment we take the lock (see access.rs), and
    /// a mutex waiter that took over without reading its key confirms it the same way, with
    /// the write it would make 250 ms later anyway (see `wait::mutex`). (--lock writes its key
    /// at once anyway, and then says it holds.) `None`: nothing written; `Some(false)`: our
    /// key is gone.
    async fn confirm(
        &self,
        lease: Lease,
        ticket: &Ticket,
        waited: bool,
        unread: Unread,
        ahead: &[Contender],
    ) -> Result<(Option<bool>, Option<Vec<i64>>)> {
        let etcd = self.etcd;
        let semaphore = waited
            && matches!(self.me, Access::Semaphore(_))
            && self.record.mode == RecordMode::Run;
        if !semaphore && unread == Unread::No {
            return Ok((None, None));
        }
        let stamped = self.record.taken_at(SystemTime::now(), Some(lease.ttl));
        if semaphore {
            return wait::stamp(etcd, ticket, lease.id, &stamped, ahead)
                .await
                .map(|written| (Some(written), None));
        }
        // Taking over from the holder ahead: what the history holds now (the history is
        // trimmed by it), read in the same write.
        let history = ticket.history.as_ref().and(self.history.clone());
        match queue::rewrite_reading(etcd, ticket, lease.id, &stamped, history).await {
            Ok((written, history)) => Ok((Some(written), history)),
            // etcd takes no write (its quota is full, say): a read confirms our key instead,
            // so the queue still drains. A plain read: etcd 3.5 refuses even a read-only
            // transaction while its quota is full.
            Err(e) => {
                tracing::debug!("{e}; reading our key instead");
                queue::still_there(etcd, ticket)
                    .await
                    .map(|there| (Some(there), None))
            }
        }
    }

    /// Waits for etcd to answer about our lease (the keepalive keeps trying), within the wait's
    /// timeout, and for at most one TTL after the lease may have run out.
    async fn etcd_again(
        &self,
        why: &Error,
        lease: Lease,
        keepalive: &KeepAlive,
        hooks: &mut impl Waiting,
    ) -> Result<Again> {
        tracing::debug!("{why}; waiting for etcd to answer again");
        let give_up = match *keepalive.state.borrow() {
            LeaseState::Alive(until) => until.max(Instant::now()) + lease.ttl,
            LeaseState::Gone => Instant::now() + lease.ttl,
        };
        let give_up_at = self.until.map_or(give_up, |at| at.min(give_up));
        let mut lease_state = keepalive.state.clone();
        loop {
            // Copied out: a `watch::Ref` kept over the `sleep` below would block the keepalive
            // task's next send, and with it the only thread (clippy.toml forbids it).
            let state = *lease_state.borrow_and_update();
            match state {
                LeaseState::Alive(until) if until > Instant::now() + RETRY_PAUSE => {
                    sleep(RETRY_PAUSE).await;
                    return Ok(Again::SameLease);
                }
                LeaseState::Alive(_) => {}
                LeaseState::Gone => return Ok(Again::LeaseGone),
            }
            let due = hooks.report_due();
            tokio::select! {
                e = hooks.interrupted() => return Err(e),
                Ok(()) = lease_state.changed() => {}
                _ = sleep_until(give_up_at) => return Err(match self.until {
                    Some(at) if at <= give_up => self.timed_out(),
                    _ => Error::Etcd(format!(
                        "lost our place in the queue for {}: {why}, and etcd did not answer again within the lease's TTL ({})",
                        self.name,
                        duration(lease.ttl)
                    )),
                }),
                () = sleep_until_some(due) => hooks.report(self.holder.borrow().as_ref()),
            }
        }
    }

    /// The timeout passed: says so, and for how long we waited, so it reads as a decision and
    /// not as `--nowait`'s "busy".
    fn timed_out(&self) -> Error {
        let waited = duration(self.timeout.unwrap_or_default());
        match self.holder.borrow().as_ref() {
            Some(head) => Error::Conflict(format!(
                "gave up on {} after waiting {waited}: held by {}",
                self.name,
                describe(head)
            )),
            None => Error::Conflict(format!(
                "gave up on {} after waiting {waited} in its queue",
                self.name
            )),
        }
    }
}

/// Giving up: our key goes with our lease. Best effort: if etcd is unreachable the lease
/// expires by itself within its TTL, and the error says what stays until then.
async fn give_up(
    etcd: &Etcd,
    queue: &Queue,
    lease: Lease,
    keepalive: KeepAlive,
    joined: bool,
    e: Error,
) -> Error {
    let latest = keepalive.stop();
    drop(keepalive);
    match etcd.revoke(lease.id).await {
        Ok(()) => e,
        Err(revoke) => {
            tracing::debug!("{revoke}");
            match joined {
                true => e.leaving(&left_behind(&queue.key(lease.id), lease.id, latest)),
                false => e,
            }
        }
    }
}

/// What stays in etcd when our lease could not be revoked: our key, until etcd expires the
/// lease (`latest`, from `KeepAlive::stop`; `None`: etcd said it is gone already).
fn left_behind(key: &str, lease: i64, latest: Option<Instant>) -> String {
    match latest {
        Some(at) => format!(
            "could not remove our key {key}: it stays until etcd expires its lease {lease:x}, \
             by {} at the latest",
            wall_clock(at)
        ),
        None => format!("our key {key} went with its lease {lease:x}"),
    }
}

/// Sleeps until `at`, or forever for `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Pause before joining the queue again after etcd failed a request, so a fast failure does
/// not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

fn busy(name: &LockName, head: &Contender) -> Error {
    Error::Conflict(format!("{name} is busy: held by {}", describe(head)))
}
