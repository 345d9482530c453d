//! The lock as held: its lease kept alive in the background, knowing when the lock is lost
//! (or may be lost within a margin), our record stamped, and the ways to give it back or keep
//! it past our lease (`--lock`, `--hold-at-least`).

use crate::error::{duration, local_clock, Result};
use crate::etcd::{Etcd, KeepAlive, Lease, LeaseState};
use crate::queue::{self, Ticket};
use crate::record::Record;
use crate::watch::{self, Watches};
use std::cell::Cell;
use std::time::{Duration, SystemTime};
use tokio::time::{sleep, sleep_until, Instant};

/// The lock, once we hold it. Its lease is kept alive until `release` (or until the value is
/// dropped, after which etcd expires it within its TTL).
pub struct Held {
    pub(crate) etcd: Etcd,
    pub(crate) lease: Lease,
    /// Renews the lease, and tells until when it is known to live (`keepalive.state`).
    pub(crate) keepalive: KeepAlive,
    /// Our key and its create revision: the fencing token.
    pub(crate) ticket: Ticket,
    /// When we took it.
    pub(crate) taken: Instant,
    /// Wall-clock time we took it, for the record.
    pub(crate) taken_at: SystemTime,
    /// What our key says.
    pub(crate) record: Record,
    /// etcd's revision when we took it: watching our key from there misses no unlock.
    pub(crate) revision: i64,
    /// The stream that has watched our key since before we joined, taken by `lost`.
    pub(crate) watches: Cell<Option<Watches>>,
    /// Whether we waited: then our record still says when the wait began.
    pub(crate) waited: bool,
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
            // The stream that has watched our key since before we joined watches it on; if it
            // broke, a new watch from the revision we took the lock at.
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

    /// The tokens of the lock's newest history entries when we took over (or else joined), newest first
    /// (`None` without `Request::history`, or if etcd did not let us read them): what
    /// `history::write` trims by.
    pub fn history_seen(&self) -> Option<&[i64]> {
        self.ticket.history.as_deref()
    }

    /// The connection the lock was taken on.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// Wall-clock time we took the lock.
    pub fn taken_at(&self) -> SystemTime {
        self.taken_at
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
            let (key, created) = (&self.ticket.key, self.ticket.revision);
            let withdrawn = queue::withdraw(&self.etcd, "remove our key", key, created).await;
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
        // `expires` tells whoever looks that nothing renews this lease any more.
        let record = self
            .record
            .taken_at(self.taken_at, Some(lease.ttl))
            .expiring(Some(SystemTime::now() + lease.ttl));
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

/// When the lease may be gone within `margin`: now, if etcd said it is gone.
pub(crate) fn at_risk(state: LeaseState, margin: Duration) -> Instant {
    match state {
        LeaseState::Alive(until) => until.checked_sub(margin).unwrap_or_else(Instant::now),
        LeaseState::Gone => Instant::now(),
    }
}

/// Why a lease is in doubt, in words: what etcd said, or for how long it has not answered
/// and when it may expire the lease, on the local clock.
pub(crate) fn lease_problem(lease: &Lease, state: LeaseState) -> String {
    match state {
        LeaseState::Gone => "etcd says our lease no longer exists".to_string(),
        LeaseState::Alive(until) => {
            let now = Instant::now();
            let answered = until.checked_sub(lease.ttl).unwrap_or(until);
            let expires = match until > now {
                true => "may expire our lease at",
                false => "may have expired our lease at",
            };
            format!(
                "etcd has not answered for {}; unless a later keepalive reached it, etcd {expires} {}",
                duration(now.saturating_duration_since(answered)),
                local_clock(until)
            )
        }
    }
}
