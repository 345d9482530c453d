//! The bottom of etcd's lock recipe (Go's `client/v3/concurrency/mutex.go`): a lock's keys and
//! the transactions on them, so that distlock and `etcdctl lock` exclude each other. Every
//! contender is one key `<prefix><name>/<lease hex>` created under its lease; the lowest create
//! revision holds the lock. Plus the Go tool's legacy key `<prefix><name>`, which counts as the
//! holder while it exists. Joining (`enqueue`), claiming (`claim`), reading the queue, and the
//! writes a holder makes to its own key. Who may hold is `access.rs`; waiting is `wait.rs`.
//!
//! Nothing here knows about processes, signals or terminals.

use crate::access::Access;
use crate::error::{Error, Result};
use crate::etcd::Etcd;
use crate::history;
use crate::name::LockName;
use crate::record::Record;
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};

/// The keys of one lock.
#[derive(Debug, Clone)]
pub struct Queue {
    /// `<prefix><name>/`: every contender's key starts with it.
    pub dir: String,
    /// `<prefix><name>`: the Go tool's lock key.
    pub legacy: String,
}

impl Queue {
    /// The key of the contender on `lease`.
    pub(crate) fn key(&self, lease: i64) -> String {
        format!("{}{lease:x}", self.dir)
    }

    pub fn new(prefix: &str, name: &LockName) -> Queue {
        let legacy = format!("{prefix}{name}");
        Queue {
            dir: format!("{legacy}/"),
            legacy,
        }
    }
}

/// The key of lock `name`'s `--min-interval` stamp, `<prefix>.distlock/stamp/<name>`: among
/// distlock's own metadata, apart from the lock's queue (`<prefix><name>/`), which etcdctl and
/// the Go tool read too. See `stamp.rs`.
pub fn stamp_key(prefix: &str, name: &LockName) -> String {
    format!("{}stamp/{name}", history::meta(prefix))
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
pub(crate) struct Ticket {
    pub key: String,
    /// Create revision of our key: our place in line, and the fencing token once we hold it.
    pub revision: i64,
    /// The tokens of the newest history entries when we joined, newest first (see
    /// `history::write`); `None`: not read (no history, or not allowed to).
    pub history: Option<Vec<i64>>,
}

/// Whose turn it is, from our point of view.
#[derive(Debug)]
pub(crate) enum Turn {
    /// We hold the lock; `revision` is one at which our key existed (when we took it, or our
    /// last read before a holder ahead of us went): watching our key from there misses no
    /// removal.
    Mine { revision: i64 },
    /// We wait for `blocker` to go (the key just ahead of us, or the legacy key); `head` is
    /// the current holder; `ahead` keys are in the queue before ours. All read at `revision`.
    Wait {
        blocker: Contender,
        head: Contender,
        ahead: i64,
        revision: i64,
        /// When joining read them: the legacy key if any, then the oldest keys ahead of ours,
        /// as many as `Access::ahead_needed` asks (all of them when fewer).
        first: Option<Vec<Contender>>,
    },
}

/// Creates our key and learns, in the same round trip, whether we hold the lock.
///
/// With nobody in the queue and no legacy key, we hold it at once, and our record says so from
/// the start (`held`). Otherwise our key is the newest in the directory, so the two newest keys
/// are ours and the one just ahead of us: if there is no second one, nobody is ahead. The
/// oldest keys are read as far as `me` needs to decide (`Access::ahead_needed`), so that a
/// semaphore waiter knows where it stands without asking again.
pub(crate) async fn enqueue(
    etcd: &Etcd,
    queue: &Queue,
    lease: i64,
    record: &Record,
    (me, history_op): (Access, Option<TxnOp>),
) -> Result<(Ticket, Turn)> {
    let key = queue.key(lease);
    let put = |record: &Record| {
        TxnOp::put(
            key.clone(),
            record.to_json(),
            Some(PutOptions::new().with_lease(lease)),
        )
    };
    let held = Record {
        held: true,
        ..record.clone()
    };
    // The newest history keys (`history::newest`) ride along, last in both branches: what
    // the history write trims by, at no extra request.
    let txn = |history_op: Option<TxnOp>| {
        Txn::new()
            .when([
                // A range compare on an empty range compares a key of version 0: true.
                Compare::version(queue.dir.clone(), CompareOp::Equal, 0).with_prefix(),
                Compare::version(queue.legacy.clone(), CompareOp::Equal, 0),
            ])
            .and_then(
                [put(&held), TxnOp::get(key.clone(), None)]
                    .into_iter()
                    .chain(history_op.clone())
                    .collect::<Vec<_>>(),
            )
            .or_else(
                [
                    put(record),
                    TxnOp::get(key.clone(), None),
                    TxnOp::get(queue.dir.clone(), Some(newest(2, None))),
                    TxnOp::get(queue.legacy.clone(), None),
                    // Our own key may be among them: one more than needed.
                    TxnOp::get(
                        queue.dir.clone(),
                        Some(oldest(me.ahead_needed().map(|n| n as i64 + 1))),
                    ),
                    TxnOp::get(queue.dir.clone(), Some(count(None))),
                ]
                .into_iter()
                .chain(history_op)
                .collect::<Vec<_>>(),
            )
    };
    const JOIN: &str = "join the lock's queue";
    let (response, read_history) = match etcd.txn(JOIN, txn(history_op.clone())).await {
        // A role that may not read the history must still be able to take the lock: etcd
        // applied nothing of a denied transaction, so join without the read (and without
        // history, `Ticket::history` None).
        Err(Error::Denied(e)) if history_op.is_some() && e.contains("permission") => {
            let response = etcd.txn(JOIN, txn(None)).await?;
            tracing::warn!("the lock's history is not kept for this run: {e}");
            (response, false)
        }
        response => (response?, history_op.is_some()),
    };
    let revision = response.header().map(|h| h.revision()).unwrap_or_default();
    let mut responses = response.op_responses();
    let history = read_history.then(|| history::tokens(responses.pop()));
    let [mine, newest, legacy, head] = gets(&responses);
    let ticket = Ticket {
        // If an earlier attempt of this request did go through, the put kept the key's
        // create revision: that, not this response's revision, is our place in line. (Its
        // record then says `held: false` even if we hold the lock: the waiter behind us
        // merely asks etcd once more.)
        revision: mine.first().map_or(revision, |m| m.create_revision),
        key,
        history,
    };
    if response.succeeded() {
        return Ok((ticket, Turn::Mine { revision }));
    }
    if newest.first().map(|c| &c.key) != Some(&ticket.key) {
        // Someone joined between that earlier attempt and this one: ask who is ahead.
        let turn = claim(etcd, queue, &ticket).await?;
        return Ok((ticket, turn));
    }
    let ahead = newest.into_iter().nth(1);
    // The count includes our own key.
    let before_us = last_count(&responses) - 1;
    // The oldest keys ahead of ours (the read may reach ours), after the legacy key.
    let oldest: Vec<Contender> = head
        .into_iter()
        .filter(|c| c.create_revision < ticket.revision)
        .collect();
    let first = legacy.iter().chain(&oldest).cloned().collect();
    let turn = turn(legacy, ahead, oldest, before_us, revision, Some(first));
    Ok((ticket, turn))
}

/// Our key was deleted while we waited, by someone else (our lease lives: `acquire` checks).
pub(crate) fn removed(queue: &Queue, ticket: &Ticket) -> Error {
    Error::Removed(format!(
        "gave up waiting for {}: our key {} in its queue was deleted by another client \
         (etcdctl del, a lease revoke, or --unlock)",
        queue.legacy, ticket.key
    ))
}

/// One read-only transaction (no write on the hand-over path): if our key is still there,
/// nobody is ahead of it and there is no legacy key, the lock is ours; otherwise, read who is
/// ahead now.
pub(crate) async fn claim(etcd: &Etcd, queue: &Queue, ticket: &Ticket) -> Result<Turn> {
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
            TxnOp::get(queue.dir.clone(), Some(oldest(Some(1)))),
            TxnOp::get(queue.dir.clone(), Some(count(Some(ticket.revision - 1)))),
        ]);
    let response = etcd.txn("take the lock", txn).await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or_default();
    if response.succeeded() {
        return Ok(Turn::Mine { revision });
    }
    let [mine, ahead, legacy, head] = gets(&response.op_responses());
    if mine.is_empty() {
        return Err(removed(queue, ticket));
    }
    let before_us = last_count(&response.op_responses());
    let ahead = ahead.into_iter().next();
    Ok(turn(legacy, ahead, head, before_us, revision, None))
}

fn turn(
    legacy: Vec<Contender>,
    ahead: Option<Contender>,
    head: Vec<Contender>,
    before_us: i64,
    revision: i64,
    first: Option<Vec<Contender>>,
) -> Turn {
    // The legacy key, while it exists, is the holder: the Go tool does not know our queue.
    if let Some(legacy) = legacy.into_iter().next() {
        return Turn::Wait {
            head: legacy.clone(),
            blocker: legacy,
            ahead: 1,
            revision,
            first,
        };
    }
    match ahead {
        None => Turn::Mine { revision },
        Some(blocker) => Turn::Wait {
            head: head.into_iter().next().unwrap_or_else(|| blocker.clone()),
            blocker,
            ahead: before_us,
            revision,
            first,
        },
    }
}

/// Moves our key to another lease (0: none), keeping its create revision and so its place.
/// Guarded by that revision: a key that was unlocked meanwhile is not brought back.
pub(crate) async fn move_to_lease(
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

/// Removes the key `key` created at `created`, whichever lease it is on, and only if it is
/// still that key (guarded by its create revision: a successor of the same name is left alone).
/// Returns whether it did; `what` names the request in errors.
pub(crate) async fn withdraw(etcd: &Etcd, what: &str, key: &str, created: i64) -> Result<bool> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, created)])
        .and_then([TxnOp::delete(key, None)]);
    Ok(etcd.txn(what, txn).await?.succeeded())
}

/// Rewrites our record, only while our key is still ours and still on `lease`: a key moved
/// to another lease meanwhile (`--hold-at-least`) stays where it is. Returns whether it wrote.
pub(crate) async fn rewrite(
    etcd: &Etcd,
    ticket: &Ticket,
    lease: i64,
    record: &Record,
) -> Result<bool> {
    Ok(rewrite_reading(etcd, ticket, lease, record, None).await?.0)
}

/// `rewrite`, also reading the newest history keys (`history::newest`) when it writes: the
/// mutex's hand-over write, so that the history is trimmed by what was there when we took the
/// lock rather than when we joined.
pub(crate) async fn rewrite_reading(
    etcd: &Etcd,
    ticket: &Ticket,
    lease: i64,
    record: &Record,
    history_op: Option<TxnOp>,
) -> Result<(bool, Option<Vec<i64>>)> {
    let read = history_op.is_some();
    let put = TxnOp::put(
        ticket.key.clone(),
        record.to_json(),
        Some(PutOptions::new().with_lease(lease)),
    );
    let txn = Txn::new()
        .when([
            Compare::create_revision(ticket.key.clone(), CompareOp::Equal, ticket.revision),
            Compare::lease(ticket.key.clone(), CompareOp::Equal, lease),
        ])
        .and_then(std::iter::once(put).chain(history_op).collect::<Vec<_>>());
    let response = etcd.txn("keep the lock", txn).await?;
    let written = response.succeeded();
    let history = (written && read).then(|| history::tokens(response.op_responses().pop()));
    Ok((written, history))
}

/// Whether our key is still there (not deleted, nor deleted and made again).
pub(crate) async fn still_there(etcd: &Etcd, ticket: &Ticket) -> Result<bool> {
    let response = etcd.get("check our key", &ticket.key, None).await?;
    let mine = response.kvs().first().map(|kv| kv.create_revision());
    Ok(mine == Some(ticket.revision))
}

/// The head of the queue (the legacy key if there is one), which holds the lock by rule.
pub(crate) async fn head(etcd: &Etcd, queue: &Queue) -> Result<Option<Contender>> {
    let txn = Txn::new().and_then([
        TxnOp::get(queue.legacy.clone(), None),
        TxnOp::get(queue.dir.clone(), Some(oldest(Some(1)))),
    ]);
    let response = etcd.txn("read the lock", txn).await?;
    let [legacy, head] = gets(&response.op_responses());
    Ok(legacy.into_iter().chain(head).next())
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

/// How many keys of the queue there are (up to a create revision).
fn count(max_create_revision: Option<i64>) -> GetOptions {
    let options = GetOptions::new().with_prefix().with_count_only();
    match max_create_revision {
        Some(revision) => options.with_max_create_revision(revision),
        None => options,
    }
}

/// The count of the last get of a transaction.
fn last_count(responses: &[TxnOpResponse]) -> i64 {
    responses
        .iter()
        .rev()
        .find_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get.count()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The oldest keys of the queue, up to `limit` (`None`: all).
fn oldest(limit: Option<i64>) -> GetOptions {
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    match limit {
        Some(limit) => options.with_limit(limit),
        None => options,
    }
}

/// The keys each get of a transaction returned, in order.
pub(crate) fn gets<const N: usize>(responses: &[TxnOpResponse]) -> [Vec<Contender>; N] {
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

/// The end of the range of every key that starts with `prefix` (as etcd's `--prefix`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // No end: every key from the start (etcd's "\0").
    vec![0]
}

/// Every lock under `prefix`, by name, each with its contenders holder first.
/// The lock a key under `prefix` belongs to: `<prefix><name>/<lease>` is a contender of
/// `name`, `<prefix><name>` its legacy key (`true`).
/// `None` for a key that is no lock's: distlock's own metadata (`history::RESERVED`).
pub(crate) fn lock_of<'a>(prefix: &str, key: &'a str) -> Option<(&'a str, bool)> {
    let rest = key.strip_prefix(prefix)?;
    let (name, legacy) = match rest.split_once('/') {
        Some((name, _)) => (name, false),
        None => (rest, true),
    };
    (name != history::RESERVED).then_some((name, legacy))
}

pub async fn all_locks(etcd: &Etcd, prefix: &str) -> Result<Vec<(String, Vec<Contender>)>> {
    // Everything under the prefix but distlock's own metadata (the history, which may hold
    // many keys per lock): the keys before `<prefix>.distlock/`, and those after it.
    let meta = history::meta(prefix);
    let sorted = GetOptions::new().with_sort(SortTarget::Create, SortOrder::Ascend);
    let txn = Txn::new().and_then([
        TxnOp::get(prefix, Some(sorted.clone().with_range(meta.clone()))),
        TxnOp::get(
            format!("{}0", meta.trim_end_matches('/')),
            Some(sorted.with_range(prefix_end(prefix))),
        ),
    ]);
    let response = etcd.txn("list the locks", txn).await?;
    let [before, after] = gets(&response.op_responses());
    let mut all: Vec<Contender> = before.into_iter().chain(after).collect();
    all.sort_by_key(|c| c.create_revision);
    let mut locks: Vec<(String, Vec<Contender>)> = Vec::new();
    for contender in all {
        let Some((name, legacy)) = lock_of(prefix, &contender.key) else {
            continue;
        };
        let name = name.to_string();
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
