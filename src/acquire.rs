//! Taking a lock and holding it: joining the queue and waiting for our turn within the wait
//! asked for, riding out an election by joining again, leaving nothing behind when giving up;
//! then the lock as held, with its lease kept alive, a way to learn that it is lost, and the
//! ways to give it back.

use crate::access::{self, Access};
use crate::error::{duration, wall_clock, Error, Result};
use crate::etcd::{Etcd, KeepAlive, Lease, LeaseState};
use crate::name::LockName;
use crate::queue::{self, Contender, Queue, Ticket, Turn};
use crate::record::{Mode as RecordMode, Record};
use crate::view::describe;
use crate::wait::{self, Unread};
use crate::watch::{self, Watches};
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

/// The lock, once we hold it. Its lease is kept alive until `release` (or until the value is
/// dropped, after which etcd expires it within its TTL).
pub struct Held {
    etcd: Etcd,
    lease: Lease,
    /// Renews the lease, and tells until when it is known to live (`keepalive.state`).
    keepalive: KeepAlive,
    /// Our key and its create revision: the fencing token.
    ticket: Ticket,
    /// When we took it.
    taken: Instant,
    /// Wall-clock time we took it, for the record.
    taken_at: SystemTime,
    /// What our key says.
    record: Record,
    /// etcd's revision when we took it: watching our key from there misses no unlock.
    revision: i64,
    /// The stream that has watched our key since before we joined, taken by `lost`.
    watches: Cell<Option<Watches>>,
    /// Whether we waited: then our record still says when the wait began.
    waited: bool,
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
        look_before_joining(etcd, &queue, me, request.name).await?;
    }
    let mut lease = etcd.grant(request.ttl).await?;
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
        refresh: hooks.refresh(),
        holder: RefCell::new(None),
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
        Access::Exclusive => queue::holder(etcd, queue).await?,
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
    refresh: Option<Duration>,
    /// The holder as far as the wait knows it, for progress lines and the busy error.
    holder: RefCell<Option<Contender>>,
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
        let (ticket, turn) = queue::enqueue(etcd, queue, lease.id, self.record, me).await?;
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
        let stamped = self.confirm(lease, &ticket, waited, unread, &ahead).await?;
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
    ) -> Result<Option<bool>> {
        let (etcd, queue) = (self.etcd, self.queue);
        let semaphore = waited
            && matches!(self.me, Access::Semaphore(_))
            && self.record.mode == RecordMode::Run;
        if !semaphore && unread == Unread::No {
            return Ok(None);
        }
        let stamped = self.record.taken_at(SystemTime::now(), Some(lease.ttl));
        if semaphore {
            return wait::stamp(etcd, ticket, lease.id, &stamped, ahead)
                .await
                .map(Some);
        }
        match queue::rewrite(etcd, ticket, lease.id, &stamped).await {
            Ok(written) => Ok(Some(written)),
            // etcd takes no write (its quota is full, say): the read-only claim confirms our
            // key instead, so the queue still drains.
            Err(e) => {
                tracing::debug!("{e}; claiming the lock instead");
                match queue::claim(etcd, queue, ticket).await? {
                    Turn::Mine { .. } => Ok(Some(true)),
                    Turn::Wait { .. } => Err(e),
                }
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

    fn timed_out(&self) -> Error {
        match self.holder.borrow().as_ref() {
            Some(head) => busy(self.name, head),
            None => Error::Conflict(format!(
                "{} is busy: timed out waiting in its queue",
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

impl Held {
    /// The fencing token: our key's create revision, higher than every earlier holder's. With
    /// several holders (`Access::Semaphore`, `Access::Shared`) it still rises with every new
    /// holder, but holders at the same time have different tokens.
    pub fn token(&self) -> i64 {
        self.ticket.revision
    }

    /// Completes, with the reason in words, when the lock is lost or may be lost within
    /// `margin`: etcd says our lease is gone, or has not confirmed it and it may expire within
    /// `margin`, or our key was removed (someone's `--unlock` or `etcdctl del`), which it
    /// learns at once. Create it once and poll it for as long as the lock is held: it also
    /// stamps our record with the time we took the lock, a moment after we took it, so that a
    /// short hold costs no write.
    pub async fn lost(&self, margin: Duration) -> String {
        let released = async {
            // The stream that watched our key while we waited watches it on.
            if let Some(mut watches) = self.watches.take() {
                if watches.removed().await.is_some() {
                    return;
                }
            }
            watch::wait_released(&self.etcd, &self.ticket, self.revision).await
        };
        let stamp = async {
            sleep(Duration::from_millis(250)).await;
            if self.waited {
                let stamped = self.record.taken_at(self.taken_at, Some(self.lease.ttl));
                // Only while our key is still on our lease: --hold-at-least may have moved it
                // to another one meanwhile, which this must not undo.
                if let Err(e) =
                    queue::rewrite(&self.etcd, &self.ticket, self.lease.id, &stamped).await
                {
                    tracing::debug!("cannot stamp the record: {e}");
                }
            }
        };
        tokio::pin!(released, stamp);
        let mut stamped = false;
        let mut state = self.keepalive.state.clone();
        loop {
            let stop_at = at_risk(*state.borrow_and_update(), margin);
            tokio::select! {
                Ok(()) = state.changed() => {}
                _ = sleep_until(stop_at) => return lease_problem(&self.lease, *state.borrow()),
                () = &mut released => return "its key was removed: deleted by an operator's --unlock or etcdctl del, or its lease revoked".to_string(),
                () = &mut stamp, if !stamped => stamped = true,
            }
        }
    }

    /// Gives the lock back with one revoke, which deletes our key. If etcd cannot be reached,
    /// the lease expires by itself within its TTL.
    pub async fn release(&self) -> Result<()> {
        self.etcd.revoke(self.lease.id).await
    }

    /// Our key, `<prefix><name>/<lease hex>`.
    pub fn key(&self) -> &str {
        &self.ticket.key
    }

    /// The id of the lease our key is on.
    pub fn lease_id(&self) -> i64 {
        self.lease.id
    }

    /// The lease's TTL, as etcd granted it.
    pub fn ttl(&self) -> Duration {
        self.lease.ttl
    }

    /// When we took the lock.
    pub fn taken(&self) -> Instant {
        self.taken
    }

    /// What etcd last confirmed about our lease; `changes` hears of every new confirmation.
    pub fn lease_state(&self) -> LeaseState {
        *self.keepalive.state.borrow()
    }

    /// The lease's state as it changes (see `lease_state`).
    pub fn lease_changes(&self) -> tokio::sync::watch::Receiver<LeaseState> {
        self.keepalive.state.clone()
    }

    /// Renews the lease now rather than at the next period.
    pub fn renew_now(&self) {
        self.keepalive.renew_now()
    }

    /// Why the lease is in doubt in `state`, in words.
    pub fn lease_problem(&self, state: LeaseState) -> String {
        lease_problem(&self.lease, state)
    }

    /// Stops renewing the lease; returns the latest moment etcd may still hold it (`None`:
    /// etcd said it is gone).
    pub fn stop_renewing(&self) -> Option<Instant> {
        self.keepalive.stop()
    }

    /// Keeps the lock after we let go of our lease, for `ttl` from now (`None`: until someone
    /// unlocks it): our key moves onto a lease of that TTL that nobody keeps alive (or onto
    /// none), keeping its create revision, so its place and fencing token, and its record says
    /// when it expires. Then our own lease is revoked. `Ok(false)`: our key was removed first.
    ///
    /// If etcd's answer to the move does not come, the move may have landed all the same,
    /// leaving the key on no lease we know of: the key is then removed (guarded by its create
    /// revision), or, if that cannot be done either, the error names it as possibly held.
    pub async fn keep(&self, ttl: Option<Duration>) -> Result<bool> {
        let lease = match ttl {
            Some(ttl) => match self.etcd.grant(ttl).await {
                Ok(lease) => Some(lease),
                Err(e) => {
                    self.release_quietly().await;
                    return Err(e);
                }
            },
            None => None,
        };
        let record = self
            .record
            .taken_at(self.taken_at, lease.map(|l| l.ttl))
            .expiring(lease.map(|l| SystemTime::now() + l.ttl));
        let moved =
            queue::move_to_lease(&self.etcd, &self.ticket, lease.map_or(0, |l| l.id), &record)
                .await;
        if let Err(e) = moved {
            let withdrawn = queue::withdraw(&self.etcd, &self.ticket).await;
            self.release_quietly().await;
            if let Err(left) = withdrawn {
                tracing::debug!("{left}");
                return Err(e.leaving(&format!(
                    "the lock may be held by {} all the same (see --status; --unlock frees it)",
                    self.ticket.key
                )));
            }
            if let Some(lease) = lease {
                let _ = self.etcd.revoke(lease.id).await;
            }
            return Err(e);
        }
        self.release_quietly().await;
        moved
    }

    /// `--hold-at-least`: keeps the lock until `min` after we took it, on a fresh lease of the
    /// time left (same key, same place) that nobody keeps alive, and lets our own lease go.
    /// Returns the whole seconds it is kept for, or `None` if it was not (the key was gone).
    pub async fn keep_until(&self, min: Duration) -> Result<Option<u64>> {
        let left = min.saturating_sub(self.taken.elapsed());
        // etcd counts whole seconds; round up so the lock is never held shorter than asked.
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let lease = self.etcd.grant(Duration::from_secs(secs.max(1))).await?;
        let record = self.record.taken_at(self.taken_at, Some(lease.ttl));
        let moved = queue::move_to_lease(&self.etcd, &self.ticket, lease.id, &record).await?;
        Ok(moved.then_some(secs))
    }

    async fn release_quietly(&self) {
        if let Err(e) = self.release().await {
            tracing::debug!("{e}");
        }
    }

    /// After a lost lock etcd is often unreachable: stops renewing, and keeps trying to revoke
    /// for as long as etcd may still hold the lease (after that there is nothing to release).
    pub async fn release_after_loss(&self) -> Result<()> {
        let latest = self.keepalive.stop().unwrap_or_else(Instant::now);
        self.etcd.revoke_until(self.lease.id, latest).await
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

/// When the lease may be gone within `margin`: now, if etcd said it is gone.
fn at_risk(state: LeaseState, margin: Duration) -> Instant {
    match state {
        LeaseState::Alive(until) => until.checked_sub(margin).unwrap_or_else(Instant::now),
        LeaseState::Gone => Instant::now(),
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

/// Why a lease is in doubt, in words: what etcd said, or what it did not confirm.
fn lease_problem(lease: &Lease, state: LeaseState) -> String {
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

fn busy(name: &LockName, head: &Contender) -> Error {
    Error::Conflict(format!("{name} is busy: held by {}", describe(head)))
}
