//! A lock's history: one entry per run, `--lock`/`--unlock` pair or forced release, kept in
//! etcd beside the locks (never inside a lock's directory, where an `etcdctl lock` contender
//! counts every key), bounded by `history_size`. The keys of distlock's own metadata
//! (`<prefix>.distlock/…`) are built here, and nowhere else.
//!
//! Writing costs one transaction per acquisition, sent after the lease is revoked (off the
//! hand-over path): it puts the entry and deletes the entries older than the newest
//! `history_size`, as far as the joining transaction saw them (`newest`), so that no read is
//! added. See docs/etcd-keys.md, "History".

use crate::error::Result;
use crate::etcd::Etcd;
use crate::name::LockName;
use crate::queue::Contender;
use crate::record::Record;
use etcd_client::{
    Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// The directory under the prefix that holds distlock's own metadata; a reserved lock name.
pub const RESERVED: &str = ".distlock";

pub const FORMAT: u32 = 1;

/// How long a history write may take: it must not hold up the exit (nor a next run).
pub const DEADLINE: Duration = Duration::from_secs(2);

/// `<prefix>.distlock/`: everything distlock keeps besides the locks.
pub fn meta(prefix: &str) -> String {
    format!("{prefix}{RESERVED}/")
}

/// `<prefix>.distlock/history/`: every lock's entries, one directory per lock.
pub fn root(prefix: &str) -> String {
    format!("{}history/", meta(prefix))
}

/// `<prefix>.distlock/history/<name>/`: the entries of one lock.
pub fn prefix(prefix: &str, name: &LockName) -> String {
    format!("{}{name}/", root(prefix))
}

/// The key of the entry of the holder with fencing token `token`: zero-padded, so that key
/// order is token order, which is the order the lock was taken in.
pub fn entry_key(prefix: &str, name: &LockName, token: i64) -> String {
    format!("{}{token:020}", self::prefix(prefix, name))
}

/// One entry. Fields a writer does not know are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub lock: String,
    /// The holder's key in the lock's queue.
    pub key: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// `run` or `lock`.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub program: Option<String>,
    /// The fencing token: the holder key's create revision.
    pub token: i64,
    /// When it joined the queue, took and let go of the lock (RFC 3339 UTC); `released` is
    /// `null` while a `--lock` is held.
    #[serde(default)]
    pub queued: Option<String>,
    #[serde(default)]
    pub took: Option<String>,
    #[serde(default)]
    pub released: Option<String>,
    #[serde(default)]
    pub waited_s: Option<f64>,
    #[serde(default)]
    pub held_s: Option<f64>,
    /// How it ended, one word (see `Outcome`).
    pub outcome: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal the command died of, by name (`SIGTERM`).
    #[serde(default)]
    pub signal: Option<String>,
    /// Why it was lost or stopped, in words.
    #[serde(default)]
    pub detail: Option<String>,
    /// The host whose `--unlock` released it.
    #[serde(default)]
    pub unlocked_by: Option<String>,
}

/// The outcomes an entry can record.
pub mod outcome {
    /// The command exited (`exit_code`).
    pub const EXIT: &str = "exit";
    /// The command died of a signal (`signal`).
    pub const SIGNAL: &str = "signal";
    /// The lock was lost while the command ran (`detail`).
    pub const LOST: &str = "lost";
    /// The command ran longer than `--max-runtime` and was stopped.
    pub const MAX_RUNTIME: &str = "max_runtime";
    /// Released by `--unlock` (`unlocked_by`).
    pub const UNLOCKED: &str = "unlocked";
    /// A `--lock` still held.
    pub const HELD: &str = "held";
    /// A `--lock` whose key went without an `--unlock` (its `--ttl` passed, or deleted by hand).
    pub const EXPIRED: &str = "expired";
    /// distlock was stopped by a signal before the command started.
    pub const INTERRUPTED: &str = "interrupted";
    /// The command could not be started (`exit_code` 126 or 127).
    pub const NOT_STARTED: &str = "not_started";
}

impl Entry {
    /// An entry for the holder whose record is `record`, key `key`, token `token`, which joined
    /// the queue at `queued` and took the lock at `took`.
    pub fn new(
        name: &LockName,
        (key, token): (&str, i64),
        record: &Record,
        queued: SystemTime,
        took: SystemTime,
    ) -> Entry {
        let waited = took.duration_since(queued).unwrap_or_default();
        Entry {
            format: FORMAT,
            lock: name.to_string(),
            key: key.to_string(),
            host: Some(record.host.clone()),
            pid: Some(record.pid),
            user: Some(record.user.clone()),
            reason: Some(record.reason.clone()),
            mode: Some(record.mode.as_str().to_string()),
            program: record.program.clone(),
            token,
            queued: Some(rfc3339(queued)),
            took: Some(rfc3339(took)),
            released: None,
            waited_s: Some(seconds(waited)),
            held_s: None,
            outcome: outcome::HELD.to_string(),
            exit_code: None,
            signal: None,
            detail: None,
            unlocked_by: None,
        }
    }

    /// The same entry, let go of now with `outcome`.
    pub fn ended(self, outcome: &str) -> Entry {
        let now = SystemTime::now();
        let held_s = self
            .took
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .map(|took| seconds(now.duration_since(took).unwrap_or_default()));
        Entry {
            released: Some(rfc3339(now)),
            held_s,
            outcome: outcome.to_string(),
            ..self
        }
    }

    /// What `--unlock` from `host` knows of the holder it removed: its key and record.
    pub fn unlocked(name: &LockName, key: &str, token: i64, value: &[u8], host: &str) -> Entry {
        let record = Record::from_json(value);
        let took = record.as_ref().filter(|r| r.held).map(|r| r.since.clone());
        let entry = Entry {
            format: FORMAT,
            lock: name.to_string(),
            key: key.to_string(),
            host: record.as_ref().map(|r| r.host.clone()),
            pid: record.as_ref().map(|r| r.pid),
            user: record.as_ref().map(|r| r.user.clone()),
            reason: record.as_ref().map(|r| r.reason.clone()),
            mode: record.as_ref().map(|r| r.mode.as_str().to_string()),
            program: record.as_ref().and_then(|r| r.program.clone()),
            token,
            queued: None,
            took,
            released: None,
            waited_s: None,
            held_s: None,
            outcome: outcome::UNLOCKED.to_string(),
            exit_code: None,
            signal: None,
            detail: None,
            unlocked_by: Some(host.to_string()),
        };
        entry.ended(outcome::UNLOCKED)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and numbers: cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(value: &[u8]) -> Option<Entry> {
        serde_json::from_slice(value).ok()
    }

    /// The entry as the lock's queue `queue` shows it now: a `--lock`'s entry says `held`
    /// until `--unlock` completes it, so one whose key (with its token as create revision) is
    /// gone expired.
    fn settled(mut self, queue: &[Contender]) -> Entry {
        let alive = queue
            .iter()
            .any(|c| c.key == self.key && c.create_revision == self.token);
        if self.outcome == outcome::HELD && !alive {
            self.outcome = outcome::EXPIRED.to_string();
        }
        self
    }
}

/// Two writers of one entry: the holder, and an `--unlock` that removed it (in either order).
/// The holder knows how its command ended, the unlocker who unlocked: the entry says both.
fn merge(existing: Entry, new: Entry) -> Entry {
    let (mut holder, note) = if new.unlocked_by.is_some() {
        (existing, new)
    } else {
        (new, existing)
    };
    if let Some(by) = note.unlocked_by {
        holder.unlocked_by = Some(by);
        holder.outcome = outcome::UNLOCKED.to_string();
        // A `--lock` ends when it is unlocked; a command when it has stopped.
        if holder.released.is_none() {
            holder.released = note.released;
            holder.held_s = note.held_s;
        }
    }
    holder
}

/// The newest `n` entry keys of a lock, for the joining transaction: what `write` trims by.
pub(crate) fn newest(prefix: &str, name: &LockName, n: u32) -> TxnOp {
    let options = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_sort(SortTarget::Key, SortOrder::Descend)
        .with_limit(i64::from(n));
    TxnOp::get(self::prefix(prefix, name), Some(options))
}

/// The tokens of the keys `newest` read, newest first.
pub(crate) fn tokens(response: Option<TxnOpResponse>) -> Vec<i64> {
    match response {
        Some(TxnOpResponse::Get(get)) => get
            .kvs()
            .iter()
            .filter_map(|kv| token_of(kv.key()))
            .collect(),
        _ => Vec::new(),
    }
}

fn token_of(key: &[u8]) -> Option<i64> {
    let key = std::str::from_utf8(key).ok()?;
    key.rsplit('/').next()?.parse().ok()
}

/// Writes `entry` and deletes the lock's entries older than the newest `size`, counting
/// those in `seen` (tokens, as `newest` read them) and this one: one transaction. An entry
/// already there (an `--unlock` wrote its part first, or the holder did) is merged with it,
/// with a second request. Bounded by `DEADLINE`.
pub async fn write(
    etcd: &Etcd,
    prefix: &str,
    entry: &Entry,
    seen: &[i64],
    size: u32,
) -> Result<()> {
    match tokio::time::timeout(DEADLINE, write_now(etcd, prefix, entry, seen, size)).await {
        Ok(written) => written,
        Err(_) => Err(crate::error::Error::Etcd(format!(
            "etcd did not answer within {}",
            crate::error::duration(DEADLINE)
        ))),
    }
}

/// The token of the oldest entry to keep, when writing ours (`own`) knowing of `seen`: the
/// `size`th newest of them. Never past our own (`seen` was read when our key was the newest,
/// so it cannot be, but etcd would refuse a transaction that both writes a key and deletes a
/// range holding it).
fn trim_before(seen: &[i64], own: i64, size: u32) -> Option<i64> {
    let mut tokens: Vec<i64> = seen.iter().copied().chain([own]).collect();
    tokens.sort_unstable_by(|a, b| b.cmp(a));
    tokens.dedup();
    let oldest_kept = *tokens.get(size.max(1) as usize - 1)?;
    Some(oldest_kept.min(own))
}

async fn write_now(
    etcd: &Etcd,
    prefix: &str,
    entry: &Entry,
    seen: &[i64],
    size: u32,
) -> Result<()> {
    let name = crate::name::LockName::parse(&entry.lock).map_err(crate::error::Error::Invalid)?;
    let key = entry_key(prefix, &name, entry.token);
    let mut put = vec![TxnOp::put(key.clone(), entry.to_json(), None)];
    if let Some(end) = trim_before(seen, entry.token, size) {
        // Everything before it: [history dir, its key).
        put.push(TxnOp::delete(
            self::prefix(prefix, &name),
            Some(etcd_client::DeleteOptions::new().with_range(entry_key(prefix, &name, end))),
        ));
    }
    let txn = Txn::new()
        .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
        .and_then(put)
        .or_else([TxnOp::get(key.clone(), None)]);
    let response = etcd.txn("write the lock's history", txn).await?;
    if response.succeeded() {
        return Ok(());
    }
    let Some(TxnOpResponse::Get(get)) = response.op_responses().into_iter().next() else {
        return Ok(());
    };
    let Some(kv) = get.kvs().first() else {
        return Ok(());
    };
    let merged = match Entry::from_json(kv.value()) {
        Some(existing) => merge(existing, entry.clone()),
        None => entry.clone(),
    };
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            kv.mod_revision(),
        )])
        .and_then([TxnOp::put(key, merged.to_json(), None)]);
    etcd.txn("write the lock's history", txn).await?;
    Ok(())
}

/// The newest `limit` entries of a lock, newest first. A `--lock` entry still `held` whose key
/// is gone reads as `expired`.
pub async fn read(etcd: &Etcd, prefix: &str, name: &LockName, limit: u32) -> Result<Vec<Entry>> {
    let entries = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Key, SortOrder::Descend)
        .with_limit(i64::from(limit));
    let queue = crate::queue::Queue::new(prefix, name);
    let keys = GetOptions::new().with_prefix().with_keys_only();
    let txn = Txn::new().and_then([
        TxnOp::get(self::prefix(prefix, name), Some(entries)),
        TxnOp::get(queue.dir.clone(), Some(keys)),
    ]);
    let response = etcd.txn("read the lock's history", txn).await?;
    let [entries, queued] = crate::queue::gets(&response.op_responses());
    Ok(entries
        .iter()
        .filter_map(|kv| Entry::from_json(&kv.value))
        .map(|entry| entry.settled(&queued))
        .collect())
}

/// The newest entry of every lock that has a history, by lock name, as `read` shows it
/// against the queues `locks` (from `queue::all_locks`): one read of the whole history (at
/// most `history_size` entries per lock), for `--list --output=prometheus`.
pub async fn newest_per_lock(
    etcd: &Etcd,
    prefix: &str,
    locks: &[(String, Vec<Contender>)],
) -> Result<Vec<(String, Entry)>> {
    let root = root(prefix);
    let sorted = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Key, SortOrder::Ascend);
    let response = etcd.get("read the history", &root, Some(sorted)).await?;
    let mut newest: Vec<(String, Entry)> = Vec::new();
    for kv in response.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        let Some((name, _)) = key.strip_prefix(&root).and_then(|r| r.split_once('/')) else {
            continue;
        };
        let Some(entry) = Entry::from_json(kv.value()) else {
            continue;
        };
        // Key order is token order within a lock: the last one read is the newest.
        match newest.last_mut() {
            Some((last, e)) if last == name => *e = entry,
            _ => newest.push((name.to_string(), entry)),
        }
    }
    for (name, entry) in &mut newest {
        let queue = locks
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&[][..], |(_, q)| q);
        *entry = entry.clone().settled(queue);
    }
    Ok(newest)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_the_newest_and_ours() {
        // Nothing to trim until there are more than `size`.
        assert_eq!(trim_before(&[5, 3], 9, 3), Some(3));
        assert_eq!(trim_before(&[5], 9, 3), None);
        // The newest 3 of 9, 7, 5, 3: delete below 5.
        assert_eq!(trim_before(&[7, 5, 3], 9, 3), Some(5));
        // Were ours older than the 3 newest: delete below ours only.
        assert_eq!(trim_before(&[9, 8, 7, 6], 2, 3), Some(2));
        // Our own key read back by an earlier try of the same write.
        assert_eq!(trim_before(&[9, 7], 9, 2), Some(7));
        assert_eq!(trim_before(&[], 9, 1), Some(9));
    }

    #[test]
    fn keys_sort_by_token_and_merge_keeps_both_sides() {
        let name = LockName::parse("db").unwrap();
        assert_eq!(
            entry_key("/distlock/", &name, 42),
            "/distlock/.distlock/history/db/00000000000000000042"
        );
        assert!(entry_key("/p/", &name, 9) < entry_key("/p/", &name, 10));
        assert_eq!(token_of(entry_key("/p/", &name, 10).as_bytes()), Some(10));
        let record = Record::new(crate::record::Mode::Run, Some("yum".into()), "r", None);
        let now = SystemTime::now();
        let mut holder = Entry::new(&name, ("/p/db/1", 7), &record, now, now).ended(outcome::LOST);
        holder.exit_code = Some(143);
        let note = Entry::unlocked(&name, "/p/db/1", 7, &record.to_json(), "node-9");
        for merged in [merge(holder.clone(), note.clone()), merge(note, holder)] {
            assert_eq!(merged.outcome, outcome::UNLOCKED);
            assert_eq!(merged.unlocked_by.as_deref(), Some("node-9"));
            assert_eq!(merged.exit_code, Some(143));
        }
    }
}
