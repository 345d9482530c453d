//! The holders of a lock, which with `--max-holders` or `--shared` can be several: which
//! contenders hold it (for `--status` and `--list`), which one `--unlock` or `--extend` acts
//! on, and those two acts themselves, from any node.

use crate::access::{self, Access};
use crate::error::{Error, Result};
use crate::etcd::Etcd;
use crate::name::LockName;
use crate::queue::{self, Contender, Queue};
use crate::record::{Mode, Record};
use crate::view::{describe, View};
use etcd_client::{Compare, CompareOp, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp};
use std::time::{Duration, SystemTime};

/// Whether each contender of a queue (oldest first, the legacy key first) holds the lock.
pub(crate) fn holding(queue: &[Contender]) -> Vec<bool> {
    let accesses: Vec<Access> = queue.iter().map(|c| Access::of_value(&c.value)).collect();
    access::who_holds(&accesses)
}

/// The views of a lock's contenders (oldest first, the legacy key first), each knowing whether
/// it holds the lock.
pub fn views(contenders: &[Contender]) -> Vec<View> {
    contenders
        .iter()
        .zip(holding(contenders))
        .map(|(c, holds)| View {
            holds,
            ..View::of(c)
        })
        .collect()
}

/// A lock's contenders as `--status` shows them, oldest first: who holds it, and how long each
/// holder's lease has left (one request per holder: N at most, for a semaphore).
pub async fn status(etcd: &Etcd, queue: &Queue) -> Result<Vec<View>> {
    let contenders = queue::contenders(etcd, queue).await?;
    let mut views = views(&contenders);
    for (view, c) in views.iter_mut().zip(&contenders) {
        if view.holds && c.lease != 0 {
            view.ttl_left = etcd.time_to_live(c.lease).await?;
            view.expires_at = view.ttl_left.map(|left| {
                let at = SystemTime::now() + Duration::from_secs(left.max(0) as u64);
                humantime::format_rfc3339_seconds(at).to_string()
            });
        }
    }
    Ok(views)
}

/// The holder `--unlock` or `--extend` acts on.
#[derive(Debug)]
pub(crate) enum Pick<'a> {
    One(&'a Contender),
    /// Nobody holds the lock.
    Free,
    /// Several hold it and none was named: their keys.
    Several(Vec<&'a Contender>),
    /// The key named does not hold the lock.
    NotHolding,
}

/// The holder named by `which` (its key, or the lease id in hex it ends with), or the only one.
pub(crate) fn pick<'a>(queue: &'a [Contender], which: Option<&str>) -> Pick<'a> {
    let held: Vec<&Contender> = queue
        .iter()
        .zip(holding(queue))
        .filter_map(|(c, holds)| holds.then_some(c))
        .collect();
    match (which, held.as_slice()) {
        (_, []) => Pick::Free,
        (Some(which), _) => held
            .into_iter()
            .find(|c| c.key == which || c.key.rsplit('/').next() == Some(which))
            .map_or(Pick::NotHolding, Pick::One),
        (None, [one]) => Pick::One(one),
        (None, _) => Pick::Several(held),
    }
}

/// `--unlock[=KEY]`: removes the holder named (by its key or lease id), or the only one;
/// returns it. A free lock, or a key that does not hold it, is `Error::Conflict`.
pub async fn unlock(
    etcd: &Etcd,
    queue: &Queue,
    name: &LockName,
    which: Option<&str>,
) -> Result<Contender> {
    let contenders = queue::contenders(etcd, queue).await?;
    let holder = the_holder(&contenders, name, which, "unlock", "--unlock=KEY")?;
    if !remove(etcd, holder).await? {
        return Err(not_locked(name, "unlock"));
    }
    Ok(holder.clone())
}

/// `--extend`: moves the expiry of the holder named (by its key or lease id), or the only one,
/// which must have been taken with `--lock`, to `expiry` from now (`None`: never); returns it
/// on its new lease (0: none).
pub async fn extend_lock(
    etcd: &Etcd,
    queue: &Queue,
    name: &LockName,
    which: Option<&str>,
    expiry: Option<Duration>,
) -> Result<Contender> {
    let contenders = queue::contenders(etcd, queue).await?;
    let holder = the_holder(&contenders, name, which, "extend", "--holder=KEY")?;
    if let Some(why) = cannot_extend(holder) {
        return Err(Error::Invalid(why));
    }
    // The head waiter counts as holder by rule a moment before it takes the lock and says
    // so: moving its key then would leave the key on a lease nobody watches, held by nobody.
    if !Record::from_json(&holder.value).is_some_and(|r| r.held) {
        return Err(Error::Conflict(format!(
            "{} is next in line for {name} but has not taken it yet; nothing to extend \
             (try again in a moment)",
            crate::error::one_line(&holder.key)
        )));
    }
    let Some(lease) = extend(etcd, holder, expiry).await? else {
        return Err(not_locked(name, "extend"));
    };
    Ok(Contender {
        lease,
        ..holder.clone()
    })
}

/// The holder `verb` acts on, or why there is none: free (`Error::Conflict`), a key that does
/// not hold it (the same), or several holders and none named (`Error::Invalid`, saying how to
/// name one).
fn the_holder<'a>(
    contenders: &'a [Contender],
    name: &LockName,
    which: Option<&str>,
    verb: &str,
    how_to_name: &str,
) -> Result<&'a Contender> {
    match pick(contenders, which) {
        Pick::One(holder) => Ok(holder),
        Pick::Several(holders) => Err(Error::Invalid(format!(
            "{name} has {} holders ({}); say which one to {verb} with {how_to_name}",
            holders.len(),
            keys(&holders)
        ))),
        Pick::Free => Err(not_locked(name, verb)),
        Pick::NotHolding => Err(not_holding(name, which, verb)),
    }
}

fn not_locked(name: &LockName, verb: &str) -> Error {
    Error::Conflict(format!("{name} is not locked; nothing to {verb}"))
}

fn not_holding(name: &LockName, which: Option<&str>, verb: &str) -> Error {
    Error::Conflict(format!(
        "{} does not hold {name}; nothing to {verb} (see --status for the holders' keys)",
        crate::error::one_line(which.unwrap_or_default())
    ))
}

fn keys(holders: &[&Contender]) -> String {
    let keys: Vec<String> = holders
        .iter()
        .map(|c| crate::error::one_line(&c.key))
        .collect();
    keys.join(", ")
}

/// Removes a holder's key, guarded by its create revision so that a holder that left
/// meanwhile does not make us remove its successor, and revokes its lease when that lease
/// holds this key alone (a distlock holder then learns of it from both). A lease that holds
/// other keys too (a Go `concurrency.Session` puts all its locks on one) is left alone: its
/// other locks are not ours to free. Returns whether the key was still there.
pub(crate) async fn remove(etcd: &Etcd, holder: &Contender) -> Result<bool> {
    let alone = holder.lease != 0 && holds_alone(etcd, holder).await;
    let (key, created) = (&holder.key, holder.create_revision);
    if !queue::withdraw(etcd, "remove the lock", key, created).await? {
        return Ok(false);
    }
    if alone {
        etcd.revoke(holder.lease).await?;
    }
    Ok(true)
}

/// Whether the holder's lease holds its key and nothing else. Where etcd will not list a
/// lease's keys to this user, it is taken to hold others: deleting the key alone is safe.
async fn holds_alone(etcd: &Etcd, holder: &Contender) -> bool {
    let lease = holder.lease;
    let keys = etcd
        .call("read the holder's lease", |mut c| async move {
            let options = LeaseTimeToLiveOptions::new().with_keys();
            c.lease_time_to_live(lease, Some(options)).await
        })
        .await;
    match keys {
        Ok(answer) => answer.keys().iter().all(|k| k == holder.key.as_bytes()),
        Err(e) => {
            tracing::debug!("{e}; removing {} without revoking its lease", holder.key);
            false
        }
    }
}

/// Why a holder cannot be extended, if it cannot: only a lock taken with `--lock` can. A
/// running holder keeps its own lease alive; etcdctl's and the Go tool's keys are theirs.
pub(crate) fn cannot_extend(holder: &Contender) -> Option<String> {
    match Record::from_json(&holder.value).map(|r| r.mode) {
        Some(Mode::Lock) => None,
        Some(Mode::Run) => Some(format!(
            "{} is held by a running command ({}), which keeps its lock alive while it runs; \
             only a lock taken with --lock can be extended",
            holder.key,
            describe(holder)
        )),
        _ => Some(format!(
            "{} was not taken with distlock --lock ({}); only such a lock can be extended",
            holder.key,
            describe(holder)
        )),
    }
}

/// Makes a `--lock` holder's lock expire as `expiry` says, from now: its key moves onto a fresh
/// lease of that TTL that nobody keeps alive (or onto none: never), in a transaction guarded by
/// its create revision, so its place in the queue and its fencing token stay. Its old lease,
/// which held nothing else, is revoked. Returns the lease it is on now (0: none), or `None` if
/// the holder was gone.
pub(crate) async fn extend(
    etcd: &Etcd,
    holder: &Contender,
    expiry: Option<Duration>,
) -> Result<Option<i64>> {
    let Some(record) = Record::from_json(&holder.value) else {
        return Ok(None);
    };
    let lease = match expiry {
        Some(d) => Some(etcd.grant(d).await?),
        None => None,
    };
    let ttl = lease.map(|l| l.ttl);
    let record = Record {
        ttl: ttl.map(|t| t.as_secs()),
        ..record.expiring(ttl.map(|t| SystemTime::now() + t))
    };
    let options = lease.map(|l| PutOptions::new().with_lease(l.id));
    let txn = Txn::new()
        .when([Compare::create_revision(
            holder.key.clone(),
            CompareOp::Equal,
            holder.create_revision,
        )])
        .and_then([TxnOp::put(holder.key.clone(), record.to_json(), options)]);
    let moved = etcd.txn("extend the lock", txn).await?.succeeded();
    // The lease that did not get the key, or the one it left: neither holds anything now.
    let unused = if moved {
        holder.lease
    } else {
        lease.map_or(0, |l| l.id)
    };
    if unused != 0 {
        if let Err(e) = etcd.revoke(unused).await {
            tracing::warn!("{e}; the unused lease {unused:x} expires by itself");
        }
    }
    Ok(moved.then(|| lease.map_or(0, |l| l.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contender(key: &str, value: Vec<u8>) -> Contender {
        Contender {
            key: key.into(),
            value,
            create_revision: 1,
            lease: 0,
        }
    }

    #[test]
    fn unlock_names_a_holder_when_there_are_several() {
        let three = Record::new(Mode::Run, None, "", None)
            .sharing(3, false)
            .to_json();
        let queue = [
            contender("/d/x/a1", three.clone()),
            contender("/d/x/b2", three.clone()),
            contender("/d/x/c3", three.clone()),
            contender("/d/x/d4", three),
        ];
        assert!(matches!(pick(&queue, None), Pick::Several(h) if h.len() == 3));
        assert!(matches!(pick(&queue, Some("b2")), Pick::One(c) if c.key == "/d/x/b2"));
        assert!(matches!(pick(&queue, Some("/d/x/a1")), Pick::One(c) if c.key == "/d/x/a1"));
        // A waiter does not hold the lock.
        assert!(matches!(pick(&queue, Some("d4")), Pick::NotHolding));
        assert!(matches!(pick(&queue[3..], None), Pick::One(_)));
        assert!(matches!(pick(&[], None), Pick::Free));
        // etcdctl's key, as today.
        let etcdctl = [contender("/d/x/e5", vec![]), contender("/d/x/f6", vec![])];
        assert!(matches!(pick(&etcdctl, None), Pick::One(c) if c.key == "/d/x/e5"));
    }
}
