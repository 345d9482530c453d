//! Waiting on etcd's watches: for a key to go (the recipe's wait for the key just ahead, and a
//! holder's wait for its own key's removal), or for keys to change (`wait.rs`). A watch that
//! ends for another reason (compaction, a broken stream, a member gone) hands back to the
//! caller, which reads the queue again.
//!
//! Nothing here knows about processes, signals or terminals.

use crate::access::Access;
use crate::error::{Error, Result};
use crate::etcd::Etcd;
use crate::queue::Ticket;
use crate::record::Record;
use etcd_client::{Event, EventType, WatchFilterType, WatchOptions, WatchResponse, WatchStream};
use std::time::Duration;

/// How long to wait after a watch could not start or broke before the caller looks again, so
/// that a member that fails fast is not hammered.
const BROKEN_PAUSE: Duration = Duration::from_millis(200);

/// Starts a watch; `None` (after `BROKEN_PAUSE`) if it cannot: the caller's next look says
/// whether etcd is really gone.
pub async fn open(etcd: &Etcd, key: &str, options: WatchOptions) -> Option<WatchStream> {
    match etcd.watch("watch the lock", key, options).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::debug!("{e}");
            broken().await;
            None
        }
    }
}

/// The pause after a watch broke.
pub async fn broken() {
    tokio::time::sleep(BROKEN_PAUSE).await
}

/// Reads `stream` until `decide` returns a result for one of its responses; `None` when the
/// watch ends first (canceled, e.g. its revision was compacted, or broken, after
/// `BROKEN_PAUSE`): the caller then looks again.
pub async fn until<T>(
    mut stream: WatchStream,
    mut decide: impl FnMut(&WatchResponse) -> Option<T>,
) -> Option<T> {
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                if let Some(result) = decide(&response) {
                    return Some(result);
                }
                if response.canceled() {
                    return None;
                }
            }
            Ok(None) | Err(_) => {
                broken().await;
                return None;
            }
        }
    }
}

/// How a wait for a key's removal ended.
pub enum Gone {
    /// Deleted at revision `at`, last written by a holder (its record says `held`).
    Held { at: i64 },
    /// Deleted, or perhaps: the caller looks again.
    Unsure,
}

/// A contender's watch stream: a watch on its own key, opened before the key is created,
/// and, while it waits, one on the key it waits for, on the same stream. A waiter whose key
/// is deleted learns of it at once and gives up; the same stream then tells the holder at
/// once that its key was removed.
///
/// etcd sends a stream's responses in the order of their revisions, so a removal of our key
/// is read before any removal ahead of us at a later revision; but two removals at the same
/// revision (`etcdctl del --prefix`) come in either order. So the hand-over still proves our
/// key is there, with a write guarded by its create revision, before it acts on the lock
/// (see `wait::mutex`).
pub struct Watches {
    stream: WatchStream,
    key: String,
    /// The stream broke: of no more use.
    ended: bool,
}

/// Our key was removed while our lease lived: someone else deleted it (`etcdctl del`, a
/// `lease revoke`, an `--unlock`).
pub struct Removed;

impl Watches {
    /// Opens the stream with a watch on our key `key` from now, and waits for etcd to say the
    /// watch exists (so that it sees whatever happens to the key after this returns).
    pub async fn open(etcd: &Etcd, key: &str) -> Result<Watches> {
        let options = WatchOptions::new().with_filters([WatchFilterType::NoPut]);
        let mut stream = etcd.watch("watch the lock", key, options).await?;
        match stream.message().await {
            Ok(Some(response)) if response.created() => {}
            Ok(_) => return Err(Error::Etcd(format!("etcd did not start a watch on {key}"))),
            Err(e) => return Err(Error::Etcd(format!("cannot watch {key}: {e}"))),
        }
        Ok(Watches {
            stream,
            key: key.to_string(),
            ended: false,
        })
    }

    /// Whether the stream broke: the caller opens another.
    pub fn broken(&self) -> bool {
        self.ended
    }

    /// Returns once the key `key` created at revision `created` is gone, or when its watch
    /// ends for any other reason; `Err(Removed)` as soon as our own key is deleted. `read_at`
    /// is the revision at which we last saw the key.
    ///
    /// The watch starts at `read_at + 1` (nothing is missed, and etcd sends it nothing it has
    /// not seen), unless `soon`: then it starts from "now", because etcd serves a watch that
    /// starts in the past (anything was written since `read_at`) from a loop that catches up
    /// every 100 ms, which would add up to 100 ms to a hand-over. If anything was written
    /// between `read_at` and the watch's start, the key is then looked up once.
    pub async fn deleted(
        &mut self,
        etcd: &Etcd,
        (key, created): (&str, i64),
        read_at: i64,
        soon: bool,
    ) -> Result<Result<Gone, Removed>> {
        let mut options = WatchOptions::new()
            .with_filters([WatchFilterType::NoPut])
            .with_prev_key();
        if !soon {
            options = options.with_start_revision(read_at + 1);
        }
        if self.stream.watch(key, Some(options)).await.is_err() {
            self.ended = true;
            broken().await;
            return Ok(Ok(Gone::Unsure));
        }
        let mut theirs = None;
        loop {
            let response = match self.stream.message().await {
                Ok(Some(response)) => response,
                // The stream broke (member died, leader change): look again; if etcd is
                // really gone, the next request says so. A short pause keeps this from
                // spinning.
                Ok(None) | Err(_) => {
                    self.ended = true;
                    broken().await;
                    return Ok(Ok(Gone::Unsure));
                }
            };
            if self.own_removal(&response) {
                return Ok(Err(Removed));
            }
            // Earlier waits' watches are on keys that are gone: only this one's count.
            if response.created() && theirs.is_none() {
                theirs = Some(response.watch_id());
                let started_at = response.header().map_or(i64::MAX, |h| h.revision());
                if soon && started_at > read_at {
                    let now = etcd.get("check the lock", key, None).await?;
                    if now.kvs().first().map(|kv| kv.create_revision()) != Some(created) {
                        return Ok(Ok(Gone::Unsure));
                    }
                }
            }
            if theirs != Some(response.watch_id()) {
                continue;
            }
            if let Some(event) = response
                .events()
                .iter()
                .find(|e| e.event_type() == EventType::Delete)
            {
                return Ok(Ok(match held_at(event, created) {
                    Some(at) => Gone::Held { at },
                    None => Gone::Unsure,
                }));
            }
            // Canceled (e.g. the revision was compacted): look again instead of waiting.
            if response.canceled() {
                return Ok(Ok(Gone::Unsure));
            }
        }
    }

    /// For the holder: returns when our key is removed; `None` if the stream ended first (the
    /// caller then watches our key another way).
    pub async fn removed(&mut self) -> Option<()> {
        loop {
            let response = self.stream.message().await.ok()??;
            if self.own_removal(&response) {
                return Some(());
            }
        }
    }

    /// Whether `response` says our key was deleted.
    fn own_removal(&self, response: &WatchResponse) -> bool {
        response.events().iter().any(|e| {
            e.event_type() == EventType::Delete
                && e.kv().is_some_and(|kv| kv.key() == self.key.as_bytes())
        })
    }
}

/// The revision of a removal, if the key removed was last written by an exclusive holder.
fn held_at(event: &Event, created: i64) -> Option<i64> {
    let held = event
        .prev_kv()
        .filter(|kv| kv.create_revision() == created)
        .and_then(|kv| Record::from_json(kv.value()))
        // Only an exclusive holder had nobody ahead of it; a shared or semaphore one may
        // leave others holding (access.rs).
        .is_some_and(|r| r.held && Access::new(r.max_holders, r.shared) == Access::Exclusive);
    held.then(|| event.kv().map(|kv| kv.mod_revision()))
        .flatten()
}

/// Returns when our key is gone: an operator's `--unlock`, or the lease expired. Only that:
/// a broken watch or an unreachable member is not a lost lock (the lease deadline, watched
/// elsewhere, decides when etcd has been unreachable for too long). `revision` is one at which
/// our key existed; the watch starts right after it, so it costs no read, and a removal at
/// any time since is seen (within etcd's 100 ms catch-up, if the watch starts in the past).
pub async fn wait_released(etcd: &Etcd, ticket: &Ticket, revision: i64) {
    let mut read_at = revision;
    loop {
        // Removed, or the watch ended: etcd says which.
        removal_of(etcd, &ticket.key, read_at + 1).await;
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
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Returns once `key` was deleted after revision `from - 1`, or when the watch ends for
/// another reason (compaction, a broken stream): the caller then looks again.
pub async fn removal_of(etcd: &Etcd, key: &str, from: i64) {
    removal(etcd, key, WatchOptions::new(), from).await
}

/// `removal_of`, for any key under `prefix`.
pub async fn removal_under(etcd: &Etcd, prefix: &str, from: i64) {
    removal(etcd, prefix, WatchOptions::new().with_prefix(), from).await
}

async fn removal(etcd: &Etcd, key: &str, options: WatchOptions, from: i64) {
    let options = options
        .with_start_revision(from)
        .with_filters([WatchFilterType::NoPut]);
    let Some(stream) = open(etcd, key, options).await else {
        return;
    };
    until(stream, |response| {
        (!response.events().is_empty()).then_some(())
    })
    .await;
}
