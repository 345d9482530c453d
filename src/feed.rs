//! A live feed of what happens to the locks under a prefix (`--list --follow`, `--status
//! --follow`): one etcd watch on the whole prefix, turned into events a person or a log reads
//! (queued, took, released, left, unlocked, expired, a history entry), resumed from the last
//! revision seen when the stream breaks, with a word when etcd compacted events away.
//!
//! The feed keeps the queues as etcd last showed them and compares each change with them: who
//! holds is the same rule `--status` applies (`holders::holding`), so a "took" here is a take
//! there. A resynchronisation after compaction is the same comparison against a fresh read.
//!
//! Nothing here knows about processes, signals or terminals.

use crate::error::{Error, Result};
use crate::etcd::Etcd;
use crate::history::{self, Entry};
use crate::holders::holding;
use crate::queue::{self, Contender};
use crate::record::{Mode, Record};
use etcd_client::{EventType, GetOptions, WatchOptions, WatchResponse, WatchStream};
use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// At the start: a contender that holds the lock already.
    Holds,
    /// At the start: a contender that waits already.
    Waits,
    /// A contender joined the queue and waits.
    Queued,
    /// A contender holds the lock now (at once on joining a free lock, or its turn came).
    Took,
    /// A holder's key went (its run ended, or the lease was revoked or expired; its history
    /// entry, if it writes one, says how).
    Released,
    /// A `--lock` holder's key went before it was meant to expire: `--unlock`, or an operator.
    Unlocked,
    /// A `--lock` holder's key went at or after the expiry it was given.
    Expired,
    /// A waiter's key went before its turn: it gave up, was interrupted, or was removed.
    Left,
    /// A history entry was written (`entry` holds it).
    History,
    /// A history entry that says the lock was lost while its command ran.
    Lost,
    /// etcd no longer has the events after `revision`, up to `compacted`: the queues were read
    /// afresh, and what changed meanwhile follows as ordinary events.
    Compacted { compacted: i64 },
    /// The watch broke and cannot be opened again yet (`detail` says why); the feed keeps
    /// trying.
    Disconnected,
    /// The watch broke and is open again, resuming after `revision`: nothing was missed.
    Resumed,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Holds => "holds",
            Kind::Waits => "waits",
            Kind::Queued => "queued",
            Kind::Took => "took",
            Kind::Released => "released",
            Kind::Unlocked => "unlocked",
            Kind::Expired => "expired",
            Kind::Left => "left",
            Kind::History => "history",
            Kind::Lost => "lost",
            Kind::Compacted { .. } => "compacted",
            Kind::Disconnected => "disconnected",
            Kind::Resumed => "resumed",
        }
    }
}

/// One line of the feed.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    /// The lock's name; empty for the feed's own events (compacted, disconnected, resumed).
    pub lock: String,
    /// The revision of the change, or the last one seen for the feed's own events.
    pub revision: i64,
    /// The contender the event is about, as etcd last showed its key.
    pub contender: Option<Contender>,
    /// The history entry, when it is one distlock wrote.
    pub entry: Option<Entry>,
    pub detail: Option<String>,
}

/// What a key under the prefix is.
enum Key<'a> {
    /// A contender of the lock `name`, or its legacy key.
    Lock {
        name: &'a str,
    },
    /// A history entry of the lock `name`.
    History {
        name: &'a str,
    },
    Other,
}

fn classify<'a>(prefix: &str, key: &'a str) -> Key<'a> {
    if key.starts_with(&history::meta(prefix)) {
        return match key
            .strip_prefix(&history::root(prefix))
            .and_then(|r| r.split_once('/'))
        {
            Some((name, _)) => Key::History { name },
            None => Key::Other,
        };
    }
    match queue::lock_of(prefix, key) {
        Some((name, _)) => Key::Lock { name },
        None => Key::Other,
    }
}

/// The queues as etcd last showed them: lock name → contenders, oldest first, the legacy key
/// first (as `queue::all_locks` orders them).
type Queues = BTreeMap<String, Vec<Contender>>;

pub struct Feed {
    etcd: Etcd,
    prefix: String,
    /// Only this lock (`--status --follow`); every lock when `None`.
    only: Option<String>,
    queues: Queues,
    /// Every change up to here has been seen.
    revision: i64,
    /// `None` after the stream broke, until it is opened again.
    stream: Option<WatchStream>,
    /// The stream broke and could not be opened again: `Disconnected` was said.
    disconnected: bool,
    /// The stream was opened again: `Resumed` goes with its first events, unless etcd says
    /// first that it compacted the revisions we asked for (it sends that right after the
    /// watch is created).
    resuming: bool,
}

impl Feed {
    /// Reads the queues under `prefix` (of the lock `only`, or all) and starts watching from
    /// there: nothing that happens after this returns is missed.
    pub async fn start(etcd: &Etcd, prefix: &str, only: Option<&str>) -> Result<Feed> {
        let mut feed = Feed {
            etcd: etcd.clone(),
            prefix: prefix.to_string(),
            only: only.map(str::to_string),
            queues: Queues::new(),
            revision: 0,
            stream: None,
            disconnected: false,
            resuming: false,
        };
        let (queues, revision) = feed.read().await?;
        feed.queues = queues;
        feed.revision = revision;
        feed.stream = Some(feed.open().await?);
        Ok(feed)
    }

    /// The revision the feed started from, or has seen up to.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The queues at the start, as events: who holds, who waits.
    pub fn snapshot(&self) -> Vec<Event> {
        let mut events = Vec::new();
        for (name, queue) in &self.queues {
            for (c, holds) in queue.iter().zip(holding(queue)) {
                events.push(Event {
                    kind: if holds { Kind::Holds } else { Kind::Waits },
                    lock: name.clone(),
                    revision: c.create_revision,
                    contender: Some(c.clone()),
                    entry: None,
                    detail: None,
                });
            }
        }
        events
    }

    /// The next events, waiting for them as long as it takes; an error only when etcd refuses
    /// us (credentials, permissions). A broken watch is opened again from the last revision
    /// seen (`Resumed`); while it cannot be, `Disconnected` is said once.
    pub async fn next(&mut self) -> Result<Vec<Event>> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        self.disconnected = false;
                        self.resuming = true;
                        continue;
                    }
                    Err(Error::Etcd(e)) => {
                        crate::watch::broken().await;
                        if !std::mem::replace(&mut self.disconnected, true) {
                            return Ok(vec![self.own(Kind::Disconnected, Some(e))]);
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) | Err(_) => {
                    self.stream = None;
                    continue;
                }
            };
            if response.compact_revision() > 0 {
                self.resuming = false;
                return self.resync(response.compact_revision()).await;
            }
            if response.canceled() {
                self.stream = None;
                continue;
            }
            if response.created() {
                continue;
            }
            let mut events = self.apply(&response);
            if std::mem::take(&mut self.resuming) {
                events.insert(0, self.own(Kind::Resumed, None));
            }
            if let Some(header) = response.header() {
                self.revision = self.revision.max(header.revision());
            }
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// Reads the prefix: the queues and the revision they were read at.
    async fn read(&self) -> Result<(Queues, i64)> {
        let response = self
            .etcd
            .get(
                "read the locks",
                &self.prefix,
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut queues = Queues::new();
        for kv in response.kvs() {
            let c = Contender::from(kv);
            if let Key::Lock { name } = classify(&self.prefix, &c.key) {
                if self.wanted(name) {
                    let legacy = format!("{}{name}", self.prefix);
                    insert(queues.entry(name.to_string()).or_default(), c, &legacy);
                }
            }
        }
        Ok((queues, revision))
    }

    /// Opens the watch after the last revision seen. Progress notices move that revision on
    /// while nothing under the prefix changes, so that a compaction of other keys' history
    /// does not look like a gap in ours.
    async fn open(&self) -> Result<WatchStream> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_progress_notify()
            .with_start_revision(self.revision + 1);
        self.etcd
            .watch("follow the locks", &self.prefix, options)
            .await
    }

    fn wanted(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == name)
    }

    fn own(&self, kind: Kind, detail: Option<String>) -> Event {
        Event {
            kind,
            lock: String::new(),
            revision: self.revision,
            contender: None,
            entry: None,
            detail,
        }
    }

    /// The events etcd compacted away: read the queues afresh and say what differs.
    async fn resync(&mut self, compacted: i64) -> Result<Vec<Event>> {
        self.stream = None;
        let mut events = vec![self.own(Kind::Compacted { compacted }, None)];
        let (queues, revision) = self.read().await?;
        let before = std::mem::replace(&mut self.queues, queues);
        let names: BTreeSet<&String> = before.keys().chain(self.queues.keys()).collect();
        for name in names {
            let old = before.get(name).map_or(&[][..], Vec::as_slice);
            let new = self.queues.get(name).map_or(&[][..], Vec::as_slice);
            events.extend(compare(name, old, new, revision));
        }
        self.revision = revision;
        self.stream = Some(self.open().await?);
        Ok(events)
    }

    /// Applies one watch response to the queues and says what changed.
    fn apply(&mut self, response: &WatchResponse) -> Vec<Event> {
        let mut events = Vec::new();
        let mut before: BTreeMap<String, Vec<Contender>> = BTreeMap::new();
        let mut revision = self.revision;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            revision = revision.max(kv.mod_revision());
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match classify(&self.prefix, &key) {
                Key::Lock { name } if self.wanted(name) => {
                    let queue = self.queues.entry(name.to_string()).or_default();
                    before
                        .entry(name.to_string())
                        .or_insert_with(|| queue.clone());
                    queue.retain(|c| c.key != key);
                    if event.event_type() == EventType::Put {
                        let legacy = format!("{}{name}", self.prefix);
                        insert(queue, Contender::from(kv), &legacy);
                    }
                }
                // A writer's trimming deletes old entries: not news.
                Key::History { name }
                    if self.wanted(name) && event.event_type() == EventType::Put =>
                {
                    let entry = Entry::from_json(kv.value());
                    let lost = entry
                        .as_ref()
                        .is_some_and(|e| e.outcome == history::outcome::LOST);
                    events.push(Event {
                        kind: if lost { Kind::Lost } else { Kind::History },
                        lock: name.to_string(),
                        revision: kv.mod_revision(),
                        contender: None,
                        entry,
                        detail: None,
                    });
                }
                _ => {}
            }
        }
        let mut changes = Vec::new();
        for (name, old) in &before {
            let new = self.queues.get(name).map_or(&[][..], Vec::as_slice);
            changes.extend(compare(name, old, new, revision));
        }
        self.queues.retain(|_, queue| !queue.is_empty());
        // The queue's changes first: a history entry is written after its holder let go.
        changes.extend(events);
        changes
    }
}

/// Puts `c` in its place in `queue`: the legacy key (`legacy`, the Go tool's `<prefix><name>`)
/// first, whatever its revision, then by create revision.
fn insert(queue: &mut Vec<Contender>, c: Contender, legacy: &str) {
    let place = match c.key == legacy {
        true => 0,
        false => queue
            .iter()
            .position(|o| o.key != legacy && o.create_revision > c.create_revision)
            .unwrap_or(queue.len()),
    };
    queue.insert(place, c);
}

/// What changed in one lock's queue, from `old` to `new`: keys that went (released, unlocked,
/// expired, or left when they were waiting), then keys that now hold (took) or newly wait
/// (queued). A key is the same contender only with the same create revision.
fn compare(name: &str, old: &[Contender], new: &[Contender], revision: i64) -> Vec<Event> {
    let same =
        |a: &Contender, b: &Contender| a.key == b.key && a.create_revision == b.create_revision;
    let (held_before, held_now) = (holding(old), holding(new));
    let event = |kind, c: &Contender| Event {
        kind,
        lock: name.to_string(),
        revision,
        contender: Some(c.clone()),
        entry: None,
        detail: None,
    };
    let mut events = Vec::new();
    for (c, held) in old.iter().zip(&held_before) {
        if !new.iter().any(|n| same(n, c)) {
            events.push(event(if *held { gone(c) } else { Kind::Left }, c));
        }
    }
    for (c, holds) in new.iter().zip(&held_now) {
        let was = old.iter().position(|o| same(o, c));
        let held = was.is_some_and(|i| held_before[i]);
        match (was, *holds) {
            (_, true) if !held => events.push(event(Kind::Took, c)),
            (None, false) => events.push(event(Kind::Queued, c)),
            _ => {}
        }
    }
    events
}

/// How a holder's key going reads: a `--lock` goes by `--unlock` or by expiring; anything
/// else is released (its history entry says more).
fn gone(c: &Contender) -> Kind {
    let Some(record) = Record::from_json(&c.value) else {
        return Kind::Released;
    };
    if record.mode != Mode::Lock {
        return Kind::Released;
    }
    let expired = record
        .expires
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .is_some_and(|at| at <= SystemTime::now());
    if expired {
        Kind::Expired
    } else {
        Kind::Unlocked
    }
}
