//! etcd's lock recipe, as in Go's `client/v3/concurrency/mutex.go`, so that distlock and
//! `etcdctl lock` exclude each other: every contender is one key `<prefix><name>/<lease hex>`
//! created under its lease; the lowest create revision holds the lock; each waiter watches only
//! the key just ahead of it. Plus the Go tool's legacy key `<prefix><name>`, which counts as the
//! holder while it exists.
//!
//! Nothing here knows about processes, signals or terminals.

use crate::config::LockName;
use crate::error::{Error, Result};
use crate::etcd::Etcd;
use crate::record::Record;
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse, WatchFilterType, WatchOptions,
};
use std::time::Duration;

/// How long a waiter waits before it also watches the holder (see `wait_turn`).
const HOLDER_WATCH_DELAY: Duration = Duration::from_secs(1);

/// The keys of one lock.
#[derive(Debug, Clone)]
pub struct Queue {
    /// `<prefix><name>/`: every contender's key starts with it.
    pub dir: String,
    /// `<prefix><name>`: the Go tool's lock key.
    pub legacy: String,
}

impl Queue {
    pub fn new(prefix: &str, name: &LockName) -> Queue {
        let legacy = format!("{prefix}{name}");
        Queue {
            dir: format!("{legacy}/"),
            legacy,
        }
    }
}

/// A key that holds or waits for the lock, as read from etcd.
#[derive(Debug, Clone)]
pub struct Contender {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub lease: i64,
}

impl From<&KeyValue> for Contender {
    fn from(kv: &KeyValue) -> Self {
        Contender {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        }
    }
}

/// Our own place in the queue.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub key: String,
    /// Create revision of our key: our place in line, and the fencing token once we hold it.
    pub revision: i64,
}

/// Whose turn it is, from our point of view.
#[derive(Debug)]
pub enum Turn {
    /// We hold the lock; etcd's revision at that moment.
    Mine { revision: i64 },
    /// We wait for `blocker` to go (the key just ahead of us, or the legacy key); `head` is
    /// the current holder. Both were read at `revision`.
    Wait {
        blocker: Contender,
        head: Contender,
        revision: i64,
    },
}

/// Creates our key and learns, in the same round trip, whether we hold the lock.
///
/// Our key is the newest in the directory, so the two newest keys are ours and the one just
/// ahead of us: if there is no second one, nobody is ahead.
pub async fn enqueue(
    etcd: &Etcd,
    queue: &Queue,
    lease: i64,
    record: &Record,
) -> Result<(Ticket, Turn)> {
    let key = format!("{}{lease:x}", queue.dir);
    let txn = Txn::new().and_then([
        TxnOp::put(
            key.clone(),
            record.to_json(),
            Some(PutOptions::new().with_lease(lease)),
        ),
        TxnOp::get(key.clone(), None),
        TxnOp::get(queue.dir.clone(), Some(newest(2, None))),
        TxnOp::get(queue.legacy.clone(), None),
        TxnOp::get(queue.dir.clone(), Some(oldest())),
    ]);
    let response = etcd.txn("join the lock's queue", txn).await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or_default();
    let [mine, newest, legacy, head] = gets(&response.op_responses());
    let ticket = Ticket {
        // If an earlier attempt of this request did go through, the put kept the key's
        // create revision: that, not this response's revision, is our place in line.
        revision: mine.first().map_or(revision, |m| m.create_revision),
        key,
    };
    if newest.first().map(|c| &c.key) != Some(&ticket.key) {
        // Someone joined between that earlier attempt and this one: ask who is ahead.
        let turn = claim(etcd, queue, &ticket).await?;
        return Ok((ticket, turn));
    }
    let ahead = newest.into_iter().nth(1);
    Ok((ticket, turn(legacy, ahead, head, revision)))
}

/// Waits until we hold the lock. Wakes only when the key ahead of us is deleted, then checks
/// again. `on_wait` hears about every new holder (for progress messages).
pub async fn wait_turn(
    etcd: &Etcd,
    queue: &Queue,
    ticket: &Ticket,
    mut turn: Turn,
    mut on_wait: impl FnMut(&Contender),
) -> Result<i64> {
    loop {
        match turn {
            Turn::Mine { revision } => return Ok(revision),
            Turn::Wait {
                blocker,
                head,
                revision,
            } => {
                on_wait(&head);
                let blocker_gone =
                    wait_deleted(etcd, &blocker.key, blocker.create_revision, revision);
                tokio::pin!(blocker_gone);
                // To say when the holder changes, a waiter also watches the holder's key. That
                // costs each waiter an event and a read per change of holder, so only waits
                // that last (and print progress) pay it; a short wait watches its predecessor
                // alone and the cost per acquisition does not grow with the queue.
                let mut head = head;
                let mut delay = HOLDER_WATCH_DELAY;
                while head.key != blocker.key {
                    let head_gone = async {
                        tokio::time::sleep(delay).await;
                        // Read long ago, or from `holder` just now: look it up once (0).
                        wait_deleted(etcd, &head.key, head.create_revision, 0).await
                    };
                    tokio::select! {
                        gone = &mut blocker_gone => { gone?; break; }
                        gone = head_gone => gone?,
                    }
                    delay = Duration::ZERO;
                    match holder(etcd, queue).await? {
                        Some(new) if new.key != ticket.key => {
                            on_wait(&new);
                            head = new;
                        }
                        _ => break,
                    }
                }
                if head.key == blocker.key {
                    blocker_gone.await?;
                }
                turn = claim(etcd, queue, ticket).await?;
            }
        }
    }
}

/// One read-only transaction (no write on the hand-over path): if our key is still there,
/// nobody is ahead of it and there is no legacy key, the lock is ours; otherwise, read who is
/// ahead now.
async fn claim(etcd: &Etcd, queue: &Queue, ticket: &Ticket) -> Result<Turn> {
    let txn = Txn::new()
        .when([
            Compare::create_revision(ticket.key.clone(), CompareOp::Equal, ticket.revision),
            // A range compare holds when it holds for every key in the range.
            Compare::create_revision(queue.dir.clone(), CompareOp::Greater, ticket.revision - 1)
                .with_prefix(),
            Compare::version(queue.legacy.clone(), CompareOp::Equal, 0),
        ])
        .or_else([
            TxnOp::get(ticket.key.clone(), None),
            TxnOp::get(
                queue.dir.clone(),
                Some(newest(1, Some(ticket.revision - 1))),
            ),
            TxnOp::get(queue.legacy.clone(), None),
            TxnOp::get(queue.dir.clone(), Some(oldest())),
        ]);
    let response = etcd.txn("take the lock", txn).await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or_default();
    if response.succeeded() {
        return Ok(Turn::Mine { revision });
    }
    let [mine, ahead, legacy, head] = gets(&response.op_responses());
    if mine.is_empty() {
        return Err(Error::Etcd(format!(
            "lost our place in the queue: key {} is gone (its lease expired while etcd was unreachable, or it was removed)",
            ticket.key
        )));
    }
    Ok(turn(legacy, ahead.into_iter().next(), head, revision))
}

fn turn(
    legacy: Vec<Contender>,
    ahead: Option<Contender>,
    head: Vec<Contender>,
    revision: i64,
) -> Turn {
    // The legacy key, while it exists, is the holder: the Go tool does not know our queue.
    if let Some(legacy) = legacy.into_iter().next() {
        return Turn::Wait {
            head: legacy.clone(),
            blocker: legacy,
            revision,
        };
    }
    match ahead {
        None => Turn::Mine { revision },
        Some(blocker) => Turn::Wait {
            head: head.into_iter().next().unwrap_or_else(|| blocker.clone()),
            blocker,
            revision,
        },
    }
}

/// Returns once the key `key` created at revision `created` is gone, or when the watch ends
/// for any other reason (the caller then looks again). `read_at` is the revision at which we
/// last saw the key.
///
/// The watch starts from "now", not from `read_at`: etcd serves a watch that starts in the past
/// from a background loop that catches up every 100 ms, which would add up to 100 ms to a
/// hand-over. If anything was written between `read_at` and the watch's start, the key may
/// already be gone unseen, so it is looked up once; usually nothing was and no request is
/// added.
async fn wait_deleted(etcd: &Etcd, key: &str, created: i64, read_at: i64) -> Result<()> {
    let options = WatchOptions::new().with_filters([WatchFilterType::NoPut]);
    let mut stream = etcd.watch("watch the lock", key, options).await?;
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                let started_at = response.header().map_or(i64::MAX, |h| h.revision());
                if response.created() && started_at > read_at {
                    let now = etcd.get("check the lock", key, None).await?;
                    if now.kvs().first().map(|kv| kv.create_revision()) != Some(created) {
                        return Ok(());
                    }
                }
                let deleted = response
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete);
                // Canceled (e.g. the revision was compacted): look again instead of waiting.
                if deleted || response.canceled() {
                    return Ok(());
                }
            }
            // The stream broke (member died, leader change): look again; if etcd is really
            // gone, the next request says so. A short pause keeps this from spinning.
            Ok(None) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Ok(());
            }
        }
    }
}

/// Returns when our key is gone: an operator's `--unlock`, or the lease expired. Only that:
/// a broken watch or an unreachable member is not a lost lock (the lease deadline, watched
/// elsewhere, decides when etcd has been unreachable for too long).
pub async fn wait_released(etcd: &Etcd, ticket: &Ticket, revision: i64) {
    let mut read_at = revision;
    loop {
        if wait_deleted(etcd, &ticket.key, ticket.revision, read_at)
            .await
            .is_ok()
        {
            match etcd.get("check the lock", &ticket.key, None).await {
                Ok(response) => match response.kvs().first() {
                    Some(kv) if kv.create_revision() == ticket.revision => {
                        read_at = response.header().map_or(read_at, |h| h.revision());
                        continue;
                    }
                    _ => return,
                },
                Err(e) => tracing::debug!("{e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Moves our key to another lease (0: none), keeping its create revision and so its place.
/// Guarded by that revision: a key that was unlocked meanwhile is not brought back.
pub async fn move_to_lease(
    etcd: &Etcd,
    ticket: &Ticket,
    lease: i64,
    record: &Record,
) -> Result<bool> {
    let options = (lease != 0).then(|| PutOptions::new().with_lease(lease));
    let txn = Txn::new()
        .when([Compare::create_revision(
            ticket.key.clone(),
            CompareOp::Equal,
            ticket.revision,
        )])
        .and_then([TxnOp::put(ticket.key.clone(), record.to_json(), options)]);
    let response = etcd.txn("keep the lock", txn).await?;
    Ok(response.succeeded())
}

/// The holder of the lock, if any.
pub async fn holder(etcd: &Etcd, queue: &Queue) -> Result<Option<Contender>> {
    let txn = Txn::new().and_then([
        TxnOp::get(queue.legacy.clone(), None),
        TxnOp::get(queue.dir.clone(), Some(oldest())),
    ]);
    let response = etcd.txn("read the lock", txn).await?;
    let [legacy, head] = gets(&response.op_responses());
    Ok(legacy.into_iter().chain(head).next())
}

/// Removes the current holder's key and revokes its lease, so a running holder learns of it at
/// once. Returns the holder removed, or `None` if the lock was free.
pub async fn unlock(etcd: &Etcd, queue: &Queue) -> Result<Option<Contender>> {
    let Some(holder) = holder(etcd, queue).await? else {
        return Ok(None);
    };
    // Guarded, so that a holder that left meanwhile does not make us remove its successor.
    let txn = Txn::new()
        .when([Compare::create_revision(
            holder.key.clone(),
            CompareOp::Equal,
            holder.create_revision,
        )])
        .and_then([TxnOp::delete(holder.key.clone(), None)]);
    let response = etcd.txn("remove the lock", txn).await?;
    if !response.succeeded() {
        return Ok(None);
    }
    if holder.lease != 0 {
        etcd.revoke(holder.lease).await?;
    }
    Ok(Some(holder))
}

fn newest(limit: i64, max_create_revision: Option<i64>) -> GetOptions {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_limit(limit);
    match max_create_revision {
        Some(revision) => options.with_max_create_revision(revision),
        None => options,
    }
}

fn oldest() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1)
}

/// The keys each get of a transaction returned, in order.
fn gets<const N: usize>(responses: &[TxnOpResponse]) -> [Vec<Contender>; N] {
    let mut found = responses.iter().filter_map(|r| match r {
        TxnOpResponse::Get(get) => Some(get.kvs().iter().map(Contender::from).collect()),
        _ => None,
    });
    std::array::from_fn(|_| found.next().unwrap_or_default())
}

/// Everyone in a lock's queue, holder first: the legacy key if there is one, then the queue
/// in create-revision order.
pub async fn contenders(etcd: &Etcd, queue: &Queue) -> Result<Vec<Contender>> {
    let all = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    let txn = Txn::new().and_then([
        TxnOp::get(queue.legacy.clone(), None),
        TxnOp::get(queue.dir.clone(), Some(all)),
    ]);
    let response = etcd.txn("read the lock", txn).await?;
    let [legacy, queued] = gets(&response.op_responses());
    Ok(legacy.into_iter().chain(queued).collect())
}

/// Every lock under `prefix`, by name, each with its contenders holder first.
pub async fn all_locks(etcd: &Etcd, prefix: &str) -> Result<Vec<(String, Vec<Contender>)>> {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    let response = etcd.get("list the locks", prefix, Some(options)).await?;
    let mut locks: Vec<(String, Vec<Contender>)> = Vec::new();
    for contender in response.kvs().iter().map(Contender::from) {
        let rest = contender.key.strip_prefix(prefix).unwrap_or(&contender.key);
        let (name, legacy) = match rest.split_once('/') {
            Some((name, _)) => (name.to_string(), false),
            None => (rest.to_string(), true),
        };
        let slot = match locks.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                locks.push((name, Vec::new()));
                locks.len() - 1
            }
        };
        // The legacy key holds the lock whatever its revision.
        if legacy {
            locks[slot].1.insert(0, contender);
        } else {
            locks[slot].1.push(contender);
        }
    }
    locks.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(locks)
}
