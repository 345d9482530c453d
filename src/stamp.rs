//! `--min-interval D`: at most one successful run per D, fleet-wide. A run that exits 0
//! leaves a stamp, `<prefix>.distlock/stamp/<name>` (`queue::stamp_key`), on a lease of TTL D
//! that nobody keeps alive; while the key exists, every later run under the name is skipped.
//!
//! etcd counts D, never a client's clock: servers' clocks may be minutes or hours apart, and
//! the stamp's `started` is only shown. etcd may lengthen the time left on a lease (a new
//! leader renews every lease to its full TTL), never shorten it, so a leader change can
//! only delay the next run, by up to D.
//!
//! The lease is granted when the lock is taken, before the command starts, not at its end with
//! D minus the run's duration: etcd then counts D from the run's start by itself, with no
//! client measuring anything, and a command that ran longer than D finds its lease gone and
//! stamps nothing. The cost is a keyless lease that a killed distlock (SIGKILL) leaves behind
//! until D has passed; it holds nothing and stops no one.

use crate::error::Result;
use crate::etcd::{Etcd, Lease};
use crate::record;
use etcd_client::PutOptions;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What the stamp's value says (JSON), for people: which run it was. Only the key's lease
/// decides how long it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub host: String,
    pub pid: u32,
    /// When the run took the lock, RFC 3339, by the stamping host's clock: for display only.
    pub started: String,
    /// The `--min-interval` of the run that stamped, in seconds.
    pub interval_s: u64,
    /// The fencing token of the run that stamped.
    pub token: i64,
}

/// A stamp as read from etcd.
#[derive(Debug, Clone)]
pub struct Found {
    pub key: String,
    /// `None`: a value distlock did not write (an operator's `etcdctl put`); it counts all
    /// the same.
    pub stamp: Option<Stamp>,
    /// Whole seconds until etcd expires the stamp, as etcd says; `None`: it is on no lease and
    /// stands until someone deletes it.
    pub expires_in_s: Option<i64>,
}

/// The stamp at `key`, if there is one: one read, and one more for its lease's time left.
pub async fn read(etcd: &Etcd, key: &str) -> Result<Option<Found>> {
    let answer = etcd.get("read the --min-interval stamp", key, None).await?;
    let Some(kv) = answer.kvs().first() else {
        return Ok(None);
    };
    let expires_in_s = match kv.lease() {
        0 => None,
        lease => match etcd.time_to_live(lease).await? {
            Some(secs) => Some(secs),
            // The lease ran out between the two reads, and the key with it.
            None => return Ok(None),
        },
    };
    Ok(Some(Found {
        key: key.to_string(),
        stamp: serde_json::from_slice(kv.value()).ok(),
        expires_in_s,
    }))
}

/// A run's stamp to be: its lease, granted when the run takes the lock, so that etcd counts
/// the interval from then on. `stamp` writes it when the command succeeded, `cancel` drops it.
pub struct Pending {
    etcd: Etcd,
    key: String,
    lease: Lease,
    /// When the lease was granted (the run took the lock), by this host's clock: for display.
    started: String,
}

impl Pending {
    /// Grants the stamp's lease of TTL `interval` (whole seconds; etcd may round a short one
    /// up, never down).
    pub async fn start(etcd: &Etcd, key: &str, interval: Duration) -> Result<Pending> {
        let lease = etcd.grant(interval).await?;
        tracing::debug!(
            "lease {:x} of {}s granted for the --min-interval stamp",
            lease.id,
            lease.ttl.as_secs()
        );
        Ok(Pending {
            etcd: etcd.clone(),
            key: key.to_string(),
            lease,
            started: record::now_rfc3339(),
        })
    }

    /// The stamp of this run, which took the lock as `token`.
    pub fn stamp(&self, token: i64) -> Stamp {
        Stamp {
            host: record::hostname(),
            pid: std::process::id(),
            started: self.started.clone(),
            interval_s: self.lease.ttl.as_secs(),
            token,
        }
    }

    /// Writes `stamp` on the lease. `Ok(false)`: the lease ran out first (the run lasted
    /// longer than the interval), so nothing is written and the next run may start at once.
    pub async fn write(&self, stamp: &Stamp) -> Result<bool> {
        let value = serde_json::to_vec(stamp).unwrap_or_default();
        let options = PutOptions::new().with_lease(self.lease.id);
        self.etcd
            .call("write the --min-interval stamp", |mut c| {
                let (key, value, options) = (self.key.clone(), value.clone(), options.clone());
                async move {
                    match c.put(key, value, Some(options)).await {
                        Ok(_) => Ok(true),
                        Err(etcd_client::Error::GRpcStatus(s))
                            if s.message().contains("lease not found") =>
                        {
                            Ok(false)
                        }
                        Err(e) => Err(e),
                    }
                }
            })
            .await
    }

    /// Drops the stamp to be (the command failed, or never ran): revokes its lease.
    pub async fn cancel(&self) -> Result<()> {
        self.etcd.revoke(self.lease.id).await
    }
}
