//! Who holds a lock that may have several holders, and what a waiter watches: the rules of
//! `--max-holders` (a semaphore) and `--shared` (readers/writer) on top of etcd's recipe, as
//! pure functions of the queue (contenders in create-revision order, the legacy key first).
//!
//! - An exclusive contender (distlock's default, `etcdctl lock`, the Go tool's key, anything
//!   without a distlock record) holds only at the head of the queue.
//! - A shared contender holds while every contender ahead of it is shared.
//! - A contender of a semaphore of N holds while fewer than N are ahead of it and all of them
//!   are of the semaphore.
//!
//! Safety (never more than N holders; never an exclusive holder beside another): a contender
//! decides from the keys it knows to be ahead of it, and that set only shrinks afterwards,
//! since create revisions only grow (no key can appear ahead of an existing one). What it
//! knows is one read of them (joining, or a later look), less the removals it then saw, or
//! what its predecessor wrote on taking the lock (below): either way a superset of the keys
//! ahead of it at the moment it decides, each with the access its value said. `next` only
//! lets a contender hold with fewer or weaker keys ahead, so deciding from a superset is safe.
//! Say N+1 semaphore contenders held at once, and take the newest: the N others were created
//! before it and still exist, so they were in what it knew when it decided, and it saw at
//! least N ahead — a contradiction. Likewise an exclusive holder saw nobody ahead, and everyone
//! behind it sees it; a shared holder saw only shared keys ahead, and an exclusive one behind
//! it sees those.
//!
//! A semaphore contender that takes the lock after waiting writes, with its record, the keys
//! then ahead of it, in one transaction that checks each still exists with its create revision
//! (`wait::stamp`; without the list if one went). At that revision those keys and it are
//! exactly the keys ahead of the waiter just behind it, which has watched its key since a read
//! that showed it just ahead: no key can come between. All of them held beside it, so they are
//! of the same semaphore. The list is a field outside `Record`, so no later write of the record
//! (`--extend`) carries it on: only that transaction's write has it.
//!
//! Liveness without herds: every waiter watches keys whose change can let it in, and no more
//! (see `next`). A semaphore waiter with N or fewer ahead ("first waiters": at most N+1 of
//! them) knows every key ahead of it and hears of every removal in the directory, counting them
//! out until it may hold (no read); one further back watches only the key just ahead, which is
//! written when it takes the lock (its record is stamped at once, with the keys ahead of it) or
//! deleted. Only such a change can bring it to N ahead: while the key just ahead waits, it has
//! N or more ahead, or a key that is not of the semaphore, and so does the waiter behind it.
//! A hand-over so wakes the first waiters and, once one takes the lock, the one waiter behind
//! it. Watching a key N places ahead instead would not do: holders leave in any order, and a
//! waiter that came to N ahead while that key stayed would miss the next holder leaving.

use crate::record::Record;

/// How a contender takes the lock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    Exclusive,
    Shared,
    /// One of up to N (at least 2) holders.
    Semaphore(u32),
}

impl Access {
    pub fn new(max_holders: u32, shared: bool) -> Access {
        match (max_holders, shared) {
            (n, _) if n > 1 => Access::Semaphore(n),
            (_, true) => Access::Shared,
            _ => Access::Exclusive,
        }
    }

    /// What a key's value says: without a distlock record (etcdctl's empty value, the Go
    /// tool's), a contender is exclusive.
    pub fn of_value(value: &[u8]) -> Access {
        Record::from_json(value).map_or(Access::Exclusive, |r| Access::new(r.max_holders, r.shared))
    }

    pub fn max_holders(self) -> u32 {
        match self {
            Access::Semaphore(n) => n,
            _ => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Exclusive => "exclusive",
            Access::Shared => "shared",
            Access::Semaphore(_) => "semaphore",
        }
    }

    /// How many keys ahead of ours `next` needs, oldest first (`None`: all of them).
    pub fn ahead_needed(self) -> Option<usize> {
        match self {
            // Only whether there is one; the key just ahead is read separately.
            Access::Exclusive => Some(1),
            Access::Shared => None,
            Access::Semaphore(n) => Some(n as usize + 1),
        }
    }
}

/// What a contender does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Hold,
    /// Wait until the contender at this index of `ahead` is deleted.
    Deleted(usize),
    /// Wait until the key just ahead of ours is deleted or written (it takes the lock).
    Changed,
    /// Wait until any key ahead of ours is deleted.
    AnyDeleted,
}

/// What a contender of `me` does, given the contenders ahead of it, oldest first: all of them,
/// or at least the first `me.ahead_needed()` (for an exclusive one, `Deleted` then names the
/// last one given: the caller watches the key just ahead instead).
pub fn next(me: Access, ahead: &[Access]) -> Next {
    match me {
        Access::Exclusive if ahead.is_empty() => Next::Hold,
        Access::Exclusive => Next::Deleted(ahead.len() - 1),
        Access::Shared => match ahead.iter().rposition(|a| *a != Access::Shared) {
            None => Next::Hold,
            Some(i) => Next::Deleted(i),
        },
        Access::Semaphore(n) => {
            let all_ours = ahead.iter().all(|a| matches!(a, Access::Semaphore(_)));
            match ahead.len() {
                len if len > n as usize => Next::Changed,
                len if len < n as usize && all_ours => Next::Hold,
                _ => Next::AnyDeleted,
            }
        }
    }
}

/// Which contenders of a queue (oldest first) hold the lock: the same rule as `next`, in one
/// pass, for `--status`, `--list` and `--unlock`.
pub fn who_holds(queue: &[Access]) -> Vec<bool> {
    let (mut all_shared, mut all_semaphore) = (true, true);
    queue
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let holds = match a {
                Access::Exclusive => i == 0,
                Access::Shared => all_shared,
                Access::Semaphore(n) => i < *n as usize && all_semaphore,
            };
            all_shared &= *a == Access::Shared;
            all_semaphore &= matches!(a, Access::Semaphore(_));
            holds
        })
        .collect()
}

/// The number of holders a distlock record ahead of us declares, when it is not ours
/// (`max_holders`): every contender of a lock must agree. Keys without a distlock record
/// declare nothing (they count as exclusive).
pub fn disagreeing<'a>(max_holders: u32, ahead: impl IntoIterator<Item = &'a [u8]>) -> Option<u32> {
    ahead
        .into_iter()
        .filter_map(Record::from_json)
        .map(|r| r.max_holders)
        .find(|&n| n != max_holders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Access::{Exclusive as X, Semaphore as Sem, Shared as S};

    #[test]
    fn a_mutex_is_etcds_recipe() {
        assert_eq!(next(X, &[]), Next::Hold);
        assert_eq!(next(X, &[X]), Next::Deleted(0));
        assert_eq!(next(X, &[S, S]), Next::Deleted(1));
        assert_eq!(who_holds(&[X, X, X]), [true, false, false]);
    }

    #[test]
    fn shared_holders_run_together_and_queue_behind_a_waiting_writer() {
        assert_eq!(who_holds(&[S, S, X, S]), [true, true, false, false]);
        assert_eq!(next(S, &[S, S]), Next::Hold);
        // Behind a waiting exclusive one: watch it, not the readers ahead of it.
        assert_eq!(next(S, &[S, X, S]), Next::Deleted(1));
        assert_eq!(who_holds(&[X, S, S]), [true, false, false]);
    }

    #[test]
    fn a_semaphore_lets_n_in_and_never_beside_an_exclusive_one() {
        let three = Sem(3);
        assert_eq!(
            who_holds(&[three, three, three, three]),
            [true, true, true, false]
        );
        assert_eq!(who_holds(&[X, three, three]), [true, false, false]);
        assert_eq!(who_holds(&[three, X, three]), [true, false, false]);
        assert_eq!(next(three, &[three, three]), Next::Hold);
        assert_eq!(next(three, &[three, three, three]), Next::AnyDeleted);
        assert_eq!(next(three, &[X]), Next::AnyDeleted);
        assert_eq!(next(three, &[three; 4]), Next::Changed);
    }

    #[test]
    fn records_say_how_they_hold_and_anything_else_is_exclusive() {
        let record = |n, shared| {
            Record::new(crate::record::Mode::Run, None, "", None)
                .sharing(n, shared)
                .to_json()
        };
        assert_eq!(Access::of_value(b""), X);
        assert_eq!(Access::of_value(b"1700000000;host;why"), X);
        assert_eq!(Access::of_value(&record(1, false)), X);
        assert_eq!(Access::of_value(&record(1, true)), S);
        assert_eq!(Access::of_value(&record(3, false)), Sem(3));
        let (three, one) = (record(3, false), record(1, true));
        assert_eq!(disagreeing(3, [&b""[..], &three]), None);
        assert_eq!(disagreeing(3, [&three[..], &one]), Some(1));
        assert_eq!(disagreeing(1, [&one[..]]), None);
    }

    fn access() -> impl Strategy<Value = Access> {
        prop_oneof![Just(X), Just(S), Just(Sem(3))]
    }

    /// One contender in the model of the protocol below.
    #[derive(Clone, Debug)]
    struct Model {
        id: usize,
        access: Access,
        /// `None` while it holds the lock.
        waits: Option<Next>,
        /// The id it watches for `Deleted` / `Changed`.
        watched: Option<usize>,
    }

    /// Lets contender `i` look at the queue (as the claim transaction does) and either hold or
    /// start watching; returns whether it took the lock (and so writes its key).
    fn look(queue: &mut [Model], i: usize) -> bool {
        let ahead: Vec<Access> = queue[..i].iter().map(|m| m.access).collect();
        let next = next(queue[i].access, &ahead);
        let watched = match next {
            Next::Hold | Next::AnyDeleted => None,
            Next::Deleted(j) if queue[i].access == X => Some(queue[i - 1].id).filter(|_| j < i),
            Next::Deleted(j) => Some(queue[j].id),
            Next::Changed => Some(queue[i - 1].id),
        };
        let was_waiting = queue[i].waits.is_some();
        queue[i].waits = (next != Next::Hold).then_some(next);
        queue[i].watched = watched;
        was_waiting && next == Next::Hold
    }

    /// Removes contender `gone` and delivers the events: a deletion, and then the write of
    /// each waiter that takes the lock; each woken waiter looks again.
    fn remove(queue: &mut Vec<Model>, gone: usize) {
        let id = queue[gone].id;
        queue.remove(gone);
        let mut events = vec![(id, true, gone)];
        while let Some((id, deleted, position)) = events.pop() {
            for i in 0..queue.len() {
                let woken = match (queue[i].waits, queue[i].watched) {
                    (Some(Next::AnyDeleted), _) => deleted && position <= i,
                    (Some(Next::Deleted(_)), Some(w)) => deleted && w == id,
                    (Some(Next::Changed), Some(w)) => w == id,
                    _ => false,
                };
                if woken && look(queue, i) {
                    events.push((queue[i].id, false, i));
                }
            }
        }
    }

    proptest! {
        /// `holders` is `next` over the queue, for every queue.
        #[test]
        fn holders_agree_with_next(queue in prop::collection::vec(access(), 0..12)) {
            let held = who_holds(&queue);
            for i in 0..queue.len() {
                prop_assert_eq!(held[i], next(queue[i], &queue[..i]) == Next::Hold);
            }
        }

        /// The waiting protocol, modelled: contenders join in turn (each looks once), then
        /// holders and waiters leave in any order. After each step no waiter that could hold
        /// is left asleep (no slot stays empty), and there are never more holders than allowed.
        #[test]
        fn nobody_that_could_hold_is_left_asleep(
            joins in prop::collection::vec(access(), 1..14),
            leaves in prop::collection::vec(any::<prop::sample::Index>(), 1..14),
        ) {
            let mut queue: Vec<Model> = Vec::new();
            for (id, access) in joins.into_iter().enumerate() {
                queue.push(Model { id, access, waits: None, watched: None });
                let last = queue.len() - 1;
                look(&mut queue, last);
            }
            for leave in leaves {
                if queue.is_empty() {
                    break;
                }
                let at = leave.index(queue.len());
                remove(&mut queue, at);
                let accesses: Vec<Access> = queue.iter().map(|m| m.access).collect();
                let should = who_holds(&accesses);
                for (m, should) in queue.iter().zip(should) {
                    prop_assert_eq!(m.waits.is_none(), should, "{:?}", queue);
                }
                let holding: Vec<Access> =
                    queue.iter().filter(|m| m.waits.is_none()).map(|m| m.access).collect();
                if holding.contains(&X) {
                    prop_assert_eq!(holding.len(), 1);
                }
                if holding.contains(&Sem(3)) {
                    prop_assert!(holding.len() <= 3);
                }
            }
        }
    }
}
