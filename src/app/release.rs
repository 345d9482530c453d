//! Giving the lock back: at once, after a loss (until etcd may still hold the lease), or
//! later, as `--hold-at-least` says.

use crate::config::Config;
use crate::error::{local_clock, Error};
use crate::held::Held;
use std::time::Duration;

/// Releases the lock, or keeps it as long as `--hold-at-least` says.
pub(super) async fn release_or_hold(config: &Config, held: &Held) {
    match config.hold_at_least {
        Some(min) if held.taken().elapsed() < min => hold_on(held, min).await,
        _ => release(held).await,
    }
}

/// Releases the lock with one revoke. If etcd cannot be reached, the lease expires by itself.
pub(super) async fn release(held: &Held) {
    match held.release().await {
        Ok(()) => tracing::debug!("released {}", held.key()),
        Err(e) => warn_not_released(held, &e),
    }
}

/// After a lost lock etcd is often unreachable: stop renewing, and keep trying to revoke for
/// as long as etcd may still hold the lease (after that there is nothing left to release).
/// Returns, if it could not, when the lock frees itself: for the one line that reports the
/// loss, where etcd's own error would only repeat that it does not answer.
pub(super) async fn release_after_loss(held: &Held) -> Option<String> {
    match held.release_after_loss().await {
        Ok(()) => {
            tracing::debug!("revoked the lease of {}", held.key());
            None
        }
        Err(e) => {
            tracing::debug!("{e}");
            // The line names our key already.
            Some(match held.stop_renewing() {
                None => "etcd said the lease no longer exists, so the lock is free".to_string(),
                Some(latest) => format!(
                    "etcd frees the lock when it expires our lease, by {} unless etcd changes \
                     leader meanwhile",
                    local_clock(latest)
                ),
            })
        }
    }
}

/// The lock could not be released: say what is known about when it frees itself. Only etcd
/// can say that it is free.
fn warn_not_released(held: &Held, e: &Error) {
    match held.stop_renewing() {
        None => tracing::warn!("{e}; etcd said the lease no longer exists, so the lock is free"),
        Some(latest) => tracing::warn!(
            "{e}; the lock frees itself when etcd expires the lease {:x} of our key {}, by {} at the latest unless etcd changes leader meanwhile",
            held.lease_id(),
            held.key(),
            local_clock(latest)
        ),
    }
}

/// `--hold-at-least`: moves our key to a fresh lease of the remaining time (same key, same
/// place) that nobody keeps alive, and lets our own lease go.
async fn hold_on(held: &Held, min: Duration) {
    match held.keep_until(min).await {
        // Expected on every run of a fleet-wide cron job: only with -v.
        Ok(Some(secs)) => {
            tracing::debug!("holding {} for {secs}s more (--hold-at-least)", held.key())
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot keep the lock for --hold-at-least: {e}"),
    }
    release(held).await;
}
