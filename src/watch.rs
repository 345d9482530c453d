//! Waiting on etcd's watches: for a key to go (the recipe's wait for the key just ahead, and a
//! holder's wait for its own key's removal), or for keys to change (`share.rs`). A watch that
//! ends for another reason (compaction, a broken stream, a member gone) hands back to the
//! caller, which reads the queue again.
//!
//! Nothing here knows about processes, signals or terminals.

use crate::access::Access;
use crate::error::Result;
use crate::etcd::Etcd;
use crate::lock::Ticket;
use crate::record::Record;
use etcd_client::{EventType, WatchFilterType, WatchOptions, WatchResponse, WatchStream};
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

/// Returns once the key `key` created at revision `created` is gone, or when the watch ends
/// for any other reason. `read_at` is the revision at which we last saw the key.
///
/// The watch starts at `read_at + 1` (nothing is missed, and etcd sends it nothing it has not
/// seen), unless `soon`: then it starts from "now", because etcd serves a watch that starts
/// in the past (anything was written since `read_at`) from a loop that catches up every
/// 100 ms, which would add up to 100 ms to a hand-over. If anything was written between
/// `read_at` and the watch's start, the key is then looked up once.
pub async fn wait_deleted(
    etcd: &Etcd,
    key: &str,
    created: i64,
    read_at: i64,
    soon: bool,
) -> Result<Gone> {
    let mut options = WatchOptions::new()
        .with_filters([WatchFilterType::NoPut])
        .with_prev_key();
    if !soon {
        options = options.with_start_revision(read_at + 1);
    }
    let mut stream = etcd.watch("watch the lock", key, options).await?;
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                let started_at = response.header().map_or(i64::MAX, |h| h.revision());
                if soon && response.created() && started_at > read_at {
                    let now = etcd.get("check the lock", key, None).await?;
                    if now.kvs().first().map(|kv| kv.create_revision()) != Some(created) {
                        return Ok(Gone::Unsure);
                    }
                }
                if let Some(event) = response
                    .events()
                    .iter()
                    .find(|e| e.event_type() == EventType::Delete)
                {
                    let held = event
                        .prev_kv()
                        .filter(|kv| kv.create_revision() == created)
                        .and_then(|kv| Record::from_json(kv.value()))
                        // Only an exclusive holder had nobody ahead of it; a shared or
                        // semaphore one may leave others holding (access.rs).
                        .is_some_and(|r| {
                            r.held && Access::new(r.max_holders, r.shared) == Access::Exclusive
                        });
                    return Ok(match event.kv() {
                        Some(kv) if held => Gone::Held {
                            at: kv.mod_revision(),
                        },
                        _ => Gone::Unsure,
                    });
                }
                // Canceled (e.g. the revision was compacted): look again instead of waiting.
                if response.canceled() {
                    return Ok(Gone::Unsure);
                }
            }
            // The stream broke (member died, leader change): look again; if etcd is really
            // gone, the next request says so. A short pause keeps this from spinning.
            Ok(None) | Err(_) => {
                broken().await;
                return Ok(Gone::Unsure);
            }
        }
    }
}

/// Returns when our key is gone: an operator's `--unlock`, or the lease expired. Only that:
/// a broken watch or an unreachable member is not a lost lock (the lease deadline, watched
/// elsewhere, decides when etcd has been unreachable for too long). `revision` is one at which
/// our key existed; the watch starts right after it, so it costs no read, and a removal at
/// any time since is seen (within etcd's 100 ms catch-up, if the watch starts in the past).
pub async fn wait_released(etcd: &Etcd, ticket: &Ticket, revision: i64) {
    let mut read_at = revision;
    loop {
        if wait_deleted(etcd, &ticket.key, ticket.revision, read_at, false)
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

/// Returns once `key` (every key under it, with `prefix`) was deleted — or, unless
/// `deletes_only`, written — after revision `from - 1`, or when the watch ends for another
/// reason (compaction, a broken stream): the caller then looks again.
pub async fn wait_for(etcd: &Etcd, key: &str, prefix: bool, deletes_only: bool, from: i64) {
    let mut options = WatchOptions::new().with_start_revision(from);
    if prefix {
        options = options.with_prefix();
    }
    if deletes_only {
        options = options.with_filters([WatchFilterType::NoPut]);
    }
    let Some(stream) = open(etcd, key, options).await else {
        return;
    };
    until(stream, |response| {
        let changed = response
            .events()
            .iter()
            .any(|e| !deletes_only || e.event_type() == EventType::Delete);
        changed.then_some(())
    })
    .await;
}
