//! Waiting for our turn, above the queue (`queue.rs`) and the rules of who may hold
//! (`access.rs`). An exclusive contender follows etcd's recipe: it watches only the key just
//! ahead of it, and takes over from an exclusive holder without asking etcd again (`mutex`).
//! A `--max-holders` (semaphore) or `--shared` contender that has to wait knows the keys ahead
//! of it from joining (or, later, one read-only transaction), then watches only what can let it
//! in: the nearest exclusive key ahead (shared), every removal in the directory (a semaphore's
//! first N+1 contenders, which count the keys ahead out as they go), or the key just ahead (a
//! semaphore's later waiters, which learn who is ahead from that key's record when it takes the
//! lock: `stamp`). Every watch starts right after what it knows, so nothing that happens in
//! between is missed.
//!
//! Nothing here knows about processes, signals or terminals.

use crate::access::{self, Access, Next};
use crate::error::{Error, Result};
use crate::etcd::Etcd;
use crate::queue::{self, Contender, Queue, Ticket, Turn};
use crate::record::Record;
use crate::watch::{self, Gone, Removed, Watches};
use etcd_client::{
    Compare, CompareOp, Event, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, WatchFilterType, WatchOptions,
};
use std::time::Duration;

/// At most this many revisions between a waiter's last read and its predecessor's removal for
/// it to take over without asking etcd again (see `wait_turn`): should its stream break while
/// it holds, its next watch on its own key starts at that read, and etcd replays the
/// revisions in between to that watch. Beyond this, one read-only transaction is the cheaper
/// way.
const TAKEOVER_WINDOW: i64 = 10_000;

/// A waiter with at most this many keys ahead of it may be next within milliseconds (short
/// commands hand over in a few): its watch must not start in the past (see `Watches::deleted`).
const NEAR_HEAD: i64 = 2;

/// The queue ahead of our key, as one read saw it.
struct Ahead {
    /// etcd's revision at that read.
    revision: i64,
    /// The legacy key if any, then the oldest keys ahead of ours (as many as `next` needs).
    first: Vec<Contender>,
    /// The key just ahead of ours.
    previous: Option<Contender>,
    /// Whether `first` was read (else it comes from the record of the key just ahead, and its
    /// head says nothing about who holds).
    read: bool,
}

/// Waits until we hold the lock as `me`, from `turn` (what joining the queue said); returns
/// etcd's revision at that moment, the keys then ahead of ours (a semaphore's; none
/// otherwise), for `stamp`, and whether our key is yet to be confirmed (`Unread`). An
/// exclusive contender follows etcd's recipe (`mutex`, with its hand-over fast path, waiting
/// on `watches`, which watches our key), the others the rules of `access`.
/// `on_wait` hears of the holder at the head of the queue; `busy` is asked each time we would
/// wait, and its error (`--nowait`) ends the wait.
///
/// A contender ahead that declares another number of holders is a usage error: every
/// contender of a lock must agree (the caller removes our key). An exclusive contender looks
/// only at the holder and the key just ahead, which is where a semaphore would be.
pub async fn wait_turn(
    (etcd, queue, ticket): (&Etcd, &Queue, &Ticket),
    watches: &mut Watches,
    turn: Turn,
    me: Access,
    refresh: Option<Duration>,
    busy: impl Fn(&Contender) -> Option<Error>,
    mut on_wait: impl FnMut(&Contender),
) -> Result<(i64, Vec<Contender>, Unread)> {
    let (head, blocker, joined) = match &turn {
        Turn::Mine { revision } => return Ok((*revision, Vec::new(), Unread::No)),
        Turn::Wait {
            head,
            blocker,
            revision,
            first,
            ..
        } => (head, blocker, first.clone().map(|first| (first, *revision))),
    };
    if me == Access::Exclusive {
        let values = [head.value.as_slice(), blocker.value.as_slice()];
        if let Some(theirs) = access::disagreeing(1, values) {
            return Err(disagree(queue, 1, theirs));
        }
        if let Some(busy) = busy(head) {
            return Err(busy);
        }
        let (revision, unread) =
            mutex(etcd, queue, ticket, watches, turn, refresh, on_wait).await?;
        return Ok((revision, Vec::new(), unread));
    }
    // What joining read is as good as a look: the first one costs no request.
    let mut joined = joined.map(|(first, revision)| Ahead {
        revision,
        first,
        previous: Some(blocker.clone()).filter(|b| b.key != queue.legacy),
        read: true,
    });
    loop {
        let ahead = match joined.take() {
            Some(ahead) => ahead,
            None => look(etcd, queue, ticket, me).await?,
        };
        let values = ahead.first.iter().map(|c| c.value.as_slice());
        if let Some(theirs) = access::disagreeing(me.max_holders(), values) {
            return Err(disagree(queue, me.max_holders(), theirs));
        }
        let accesses: Vec<Access> = ahead
            .first
            .iter()
            .map(|c| Access::of_value(&c.value))
            .collect();
        let next = access::next(me, &accesses);
        if let Some(head) = ahead.first.first().filter(|_| ahead.read) {
            on_wait(head);
            if let Some(busy) = busy(head).filter(|_| next != Next::Hold) {
                return Err(busy);
            }
        }
        let from = ahead.revision + 1;
        match next {
            Next::Hold => return Ok((ahead.revision, ahead.first, Unread::No)),
            // The legacy key is not in the directory: wait for it alone, it blocks everyone.
            _ if ahead.first.first().is_some_and(|c| c.key == queue.legacy) => {
                watch::removal_of(etcd, &queue.legacy, from).await
            }
            Next::Deleted(i) => watch::removal_of(etcd, &ahead.first[i].key, from).await,
            // Everyone ahead is known (fewer than `ahead_needed`): count them out as they go.
            Next::AnyDeleted => {
                if let Some((revision, left)) =
                    countdown(etcd, queue, ticket, me, ahead.first, from).await
                {
                    return Ok((revision, left, Unread::No));
                }
            }
            // It writes its key when it takes the lock (`stamp`), saying who is then ahead of
            // it: then we know who is ahead of us without reading.
            Next::Changed => match ahead.previous {
                Some(previous) => joined = taken(etcd, previous, from).await,
                None => watch::removal_under(etcd, &queue.dir, from).await,
            },
        }
    }
}

/// Waits until we hold the lock exclusively. Wakes only when the key ahead of us is deleted. `on_wait`
/// hears of the holder as we learn of it: from each read of the queue, and, with `refresh`,
/// from a read of the holder at that interval (for progress messages: one read per waiter per
/// interval, however often the holder changes; never a watch on the holder, which would wake
/// every waiter at every hand-over). Returns the revision at which we hold it. `watches`
/// watches our key, and carries the watch on the key ahead.
///
/// When the key ahead of us was an exclusive holder's (its record says `held`, and neither
/// `shared` nor more than one holder), its removal alone means the lock is ours, and we take
/// it without asking etcd again. Why that is safe: that key held the lock alone, so every key
/// created before it was gone then, and none can come back (create revisions only grow);
/// every key created between it and us was gone when we last read (else it, not this one,
/// would be just ahead of us). So no key ahead of us is left, exactly what the claim
/// transaction would check. That leaves our own key, which anyone can delete (a live lease
/// is no proof): Go's `Mutex.Lock` reads it after waiting. Here the caller writes our record
/// as `held` before it acts on the lock (`Unread::Yes`), guarded by our key's create
/// revision: a write it makes anyway (the next waiter's fast path needs it), so checking our
/// key costs no extra request. Our key's watch, on the same stream, reports a removal at an
/// earlier revision before this one, but two at the same revision come in either order
/// (`etcdctl del --prefix`): hence the guarded write. Only distlock writes `held`, and only
/// while it holds the lock (`Record::taken_at`, or joining an empty queue); etcdctl's keys, a
/// waiter that gave up, or a legacy key get the claim transaction as before.
///
/// The one thing this does not look at again is the legacy key: one that exists when we join
/// or claim is waited for as before, but one that the Go tool writes while a distlock holds
/// the lock is not. The Go tool never looks at the queue, so that run already shares the lock
/// with the holder it ignored; a waiter taking over from that holder starts as it would have
/// had the Go tool run a moment later.
async fn mutex(
    etcd: &Etcd,
    queue: &Queue,
    ticket: &Ticket,
    watches: &mut Watches,
    mut turn: Turn,
    refresh: Option<Duration>,
    mut on_wait: impl FnMut(&Contender),
) -> Result<(i64, Unread)> {
    loop {
        let (blocker, head, ahead, revision) = match turn {
            Turn::Mine { revision } => return Ok((revision, Unread::No)),
            Turn::Wait {
                blocker,
                head,
                ahead,
                revision,
                ..
            } => (blocker, head, ahead, revision),
        };
        on_wait(&head);
        if watches.broken() {
            *watches = Watches::open(etcd, &ticket.key).await?;
        }
        // Near the head, the key ahead may go any moment: watch it from now, so etcd does not
        // make us wait for its catch-up loop. Further back it cannot go that soon: watch it
        // from our read, which costs no extra read when something was written meanwhile.
        let soon = blocker.key == head.key || ahead <= NEAR_HEAD;
        let gone = {
            let gone = watches.deleted(
                etcd,
                (&blocker.key, blocker.create_revision),
                revision,
                soon,
            );
            tokio::pin!(gone);
            loop {
                let tick = async {
                    match refresh {
                        Some(every) => tokio::time::sleep(every).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    gone = &mut gone => break gone?,
                    () = tick => {
                        if let Some(now) = queue::head(etcd, queue).await? {
                            if now.key != ticket.key {
                                on_wait(&now);
                            }
                        }
                    }
                }
            }
        };
        let gone = gone.map_err(|Removed| queue::removed(queue, ticket))?;
        turn = match gone {
            Gone::Held { at }
                if blocker.key != queue.legacy && at - revision <= TAKEOVER_WINDOW =>
            {
                return Ok((revision, Unread::Yes))
            }
            _ => queue::claim(etcd, queue, ticket).await?,
        };
    }
}

/// Whether we took the lock without reading our own key since the removal ahead of us.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unread {
    No,
    /// The caller must confirm our key (with a write guarded by its create revision) before
    /// it acts on the lock.
    Yes,
}

/// For `--nowait`: whether a contender of `me` (not exclusive) joining now would have to
/// wait, from one read of the queue and without writing anything; the holder at the head if
/// so. The join still decides (the queue may change in between).
pub async fn would_wait(etcd: &Etcd, queue: &Queue, me: Access) -> Result<Option<Contender>> {
    let mut oldest = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    if let Some(limit) = me.ahead_needed() {
        oldest = oldest.with_limit(limit as i64);
    }
    let txn = Txn::new().and_then([
        TxnOp::get(queue.legacy.clone(), None),
        TxnOp::get(queue.dir.clone(), Some(oldest)),
    ]);
    let response = etcd.txn("read the lock's queue", txn).await?;
    let [legacy, oldest] = queue::gets(&response.op_responses());
    let queued: Vec<Contender> = legacy.into_iter().chain(oldest).collect();
    let values = queued.iter().map(|c| c.value.as_slice());
    if let Some(theirs) = access::disagreeing(me.max_holders(), values) {
        return Err(disagree(queue, me.max_holders(), theirs));
    }
    let accesses: Vec<Access> = queued.iter().map(|c| Access::of_value(&c.value)).collect();
    Ok(match access::next(me, &accesses) {
        Next::Hold => None,
        _ => queued.into_iter().next(),
    })
}

/// A run whose number of holders differs from the lock's: exit 2, naming both.
pub fn disagree(queue: &Queue, ours: u32, theirs: u32) -> Error {
    Error::Invalid(format!(
        "the contenders of {} use --max-holders={theirs}, but this run asked for \
         --max-holders={ours}; every contender of a lock must use the same number",
        queue.legacy
    ))
}

/// One read-only transaction: our key (still there?), the legacy key, the oldest keys ahead
/// of ours and the one just ahead.
async fn look(etcd: &Etcd, queue: &Queue, ticket: &Ticket, me: Access) -> Result<Ahead> {
    let before_us = ticket.revision - 1;
    let mut oldest = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_max_create_revision(before_us);
    if let Some(limit) = me.ahead_needed() {
        oldest = oldest.with_limit(limit as i64);
    }
    let newest = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_max_create_revision(before_us)
        .with_limit(1);
    let txn = Txn::new().and_then([
        TxnOp::get(ticket.key.clone(), None),
        TxnOp::get(queue.legacy.clone(), None),
        TxnOp::get(queue.dir.clone(), Some(oldest)),
        TxnOp::get(queue.dir.clone(), Some(newest)),
    ]);
    let response = etcd.txn("read the lock's queue", txn).await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or_default();
    let [mine, legacy, oldest, mut newest] = queue::gets(&response.op_responses());
    if mine.first().map(|m| m.create_revision) != Some(ticket.revision) {
        return Err(queue::removed(queue, ticket));
    }
    Ok(Ahead {
        revision,
        first: legacy.into_iter().chain(oldest).collect(),
        previous: newest.pop(),
        read: true,
    })
}

/// Watches the directory for removals from revision `from` on, knowing every key that was
/// ahead of ours just before (`ahead`, oldest first, none of them the legacy key). Each
/// removal of one of them leaves fewer ahead, and no key can join ahead of ours, so the keys
/// not yet seen removed are a superset of those ahead: once `access::next` says a contender
/// of `me` holds with them, it holds with the real ones. Returns the revision at which that
/// became so and the keys left; `None` when the caller should look again (our key removed,
/// the watch ended). Like the recipe's hand-over (`queue::wait_turn`), this does not look at
/// the legacy key again: the Go tool never looks at the queue, so a run of it that starts
/// meanwhile already shares the lock with the holders it ignored.
async fn countdown(
    etcd: &Etcd,
    queue: &Queue,
    ticket: &Ticket,
    me: Access,
    mut left: Vec<Contender>,
    from: i64,
) -> Option<(i64, Vec<Contender>)> {
    let options = WatchOptions::new()
        .with_start_revision(from)
        .with_prefix()
        .with_filters([WatchFilterType::NoPut]);
    let stream = watch::open(etcd, &queue.dir, options).await?;
    // Some(None): our key was removed.
    watch::until(stream, |response| {
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            if kv.key() == ticket.key.as_bytes() {
                return Some(None);
            }
            // A removal at a revision after our read: the key of that name then is gone (a
            // later key of the same name would be behind ours).
            left.retain(|c| c.key.as_bytes() != kv.key());
            let accesses: Vec<Access> = left.iter().map(|c| Access::of_value(&c.value)).collect();
            if access::next(me, &accesses) == Next::Hold {
                return Some(Some((kv.mod_revision(), std::mem::take(&mut left))));
            }
        }
        None
    })
    .await
    .flatten()
}

/// Waits for the key just ahead of ours (`previous`) to change from revision `from` on. When
/// it was written by `stamp` with the keys then ahead of it, returns what we then know: those
/// and `previous` are exactly the keys ahead of ours at that revision (no key can join
/// ahead of ours). Otherwise (removed, written otherwise, the watch ended) `None`: the caller
/// looks again.
async fn taken(etcd: &Etcd, previous: Contender, from: i64) -> Option<Ahead> {
    let options = WatchOptions::new().with_start_revision(from);
    let stream = watch::open(etcd, &previous.key, options).await?;
    // The first event decides: Some(None) when it is not the stamp.
    watch::until(stream, |response| {
        let event = response.events().first()?;
        Some(stamped(event, &previous))
    })
    .await
    .flatten()
}

/// What we know once `event` on the key just ahead of ours (`previous`) is `stamp`'s write.
fn stamped(event: &Event, previous: &Contender) -> Option<Ahead> {
    let kv = event.kv()?;
    if event.event_type() != EventType::Put || kv.create_revision() != previous.create_revision {
        return None;
    }
    let value = kv.value().to_vec();
    let mut first = stamped_ahead(&value)?;
    for c in &mut first {
        // They held beside it: of the same semaphore.
        c.value.clone_from(&value);
    }
    first.push(Contender {
        value,
        ..previous.clone()
    });
    Some(Ahead {
        revision: kv.mod_revision(),
        first,
        previous: None,
        read: false,
    })
}

/// The field `stamp` adds to a record: not part of `Record`, so that no other write of the
/// record (`--extend`, say) carries it on once it is out of date.
const AHEAD: &str = "ahead";

/// The keys a record written by `stamp` says were ahead of it (their values left empty).
fn stamped_ahead(value: &[u8]) -> Option<Vec<Contender>> {
    let value: serde_json::Value = serde_json::from_slice(value).ok()?;
    value
        .get(AHEAD)?
        .as_array()?
        .iter()
        .map(|c| {
            Some(Contender {
                key: c.get("key")?.as_str()?.to_string(),
                value: Vec::new(),
                create_revision: c.get("created")?.as_i64()?,
                lease: 0,
            })
        })
        .collect()
}

/// Writes our record once we hold the lock as one of a semaphore, for the waiter just behind
/// us, which watches our key for it (see `taken`): with the keys ahead of ours (`ahead`, as
/// `wait_turn` returned them), in a transaction that checks each is still there, so that the
/// record says exactly who is ahead at its revision. If one went meanwhile, the record is
/// written without them (that waiter then reads the queue). Returns whether our key is still
/// there.
pub async fn stamp(
    etcd: &Etcd,
    ticket: &Ticket,
    lease: i64,
    record: &Record,
    ahead: &[Contender],
) -> Result<bool> {
    let listed: Vec<serde_json::Value> = ahead
        .iter()
        .map(|c| serde_json::json!({ "key": c.key, "created": c.create_revision }))
        .collect();
    let with_ahead = serde_json::to_value(record).ok().and_then(|mut v| {
        v.as_object_mut()?.insert(AHEAD.into(), listed.into());
        serde_json::to_vec(&v).ok()
    });
    if let Some(value) = with_ahead {
        let still_there = std::iter::once((&ticket.key, ticket.revision))
            .chain(ahead.iter().map(|c| (&c.key, c.create_revision)))
            .map(|(key, revision)| {
                Compare::create_revision(key.clone(), CompareOp::Equal, revision)
            });
        let txn = Txn::new()
            .when(still_there.collect::<Vec<_>>())
            .and_then([TxnOp::put(
                ticket.key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        if etcd.txn("keep the lock", txn).await?.succeeded() {
            return Ok(true);
        }
    }
    queue::move_to_lease(etcd, ticket, lease, record).await
}
