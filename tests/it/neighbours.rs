//! The neighbours suite (issue 21): distlock shares etcd with other parties, and whatever they do
//! to its keys it must not make a second holder, hang, or release what is not its own.
//!
//! One holder and several waiters, distlock and `etcdctl lock` mixed, each running a critical
//! section (`sh -c`) that appends `start <id> <ns> <pid>` to a log and, also when stopped by
//! SIGTERM or SIGINT, `end <id> <ns>`. Then, one scenario per test: a waiter's key deleted, the
//! holder's key deleted, the whole lock directory deleted, a waiter's lease revoked, the
//! holder's lease revoked, etcd compacted and defragmented during a long wait, the backend quota
//! filled (NOSPACE alarm), the role's permission revoked mid-wait, one lease shared by two locks
//! (as a Go `concurrency.Session` does). What must hold:
//! - no two sections of the lock overlap, except the holder's that was itself force-released,
//!   which must be stopped (its section ends) with exit 4;
//! - every process ends;
//! - the messages say what happened: a deleted key says it was deleted or removed, a full
//!   quota names the quota, a refused permission names the permission;
//! - the keys left are only those the messages name.
//!
//! And a property of every state a run goes through (waiting in the queue; retrying while etcd
//! hangs; claiming the lock while etcd stops answering; holding, with the command running;
//! releasing while etcd hangs): SIGINT or SIGTERM ends distlock within `--maxtime` plus a
//! second, with docs/CONTRACT.md's code, and leaves nothing once its lease could have expired
//! (at once when it could revoke it).
//!
//! Real etcd, real `distlock` and `etcdctl`, real signals; waits are for events (a key, a line
//! in a log, a process gone), the only fixed times are the sections' own work. Each test starts
//! its own etcd and uses its own prefix.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;
use tempfile::TempDir;

/// How long a section that is not held open by the test works: long enough that two holders
/// woken by the same event cannot both finish before the other starts.
const WORK: &str = "0.4";

/// The lock every scenario contends for.
const NAME: &str = "n";

/// How long all the processes of a scenario may take to end once it has been played.
const ENDING: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Critical sections

/// How a section ends by itself.
#[derive(Clone, Copy)]
enum Hold {
    /// When the test opens its gate (`Scene::open`): a holder the scenario happens around.
    Gate,
    /// After `WORK` seconds.
    Work,
}

/// The critical section `id`: logs its start (with its pid) and, however it ends (also on
/// SIGTERM or SIGINT, after which it dies as the signal says), its end, in `dir/sections`.
fn section(dir: &Path, id: &str, hold: Hold) -> String {
    let hold = match hold {
        Hold::Gate => format!(
            "while [ ! -e '{}' ]; do sleep 0.02; done",
            gate(dir, id).display()
        ),
        Hold::Work => format!("sleep {WORK}"),
    };
    format!(
        "l='{log}'
         e() {{ if [ -z \"$ended\" ]; then ended=1; echo \"end {id} $(date +%s%N)\" >> \"$l\"; fi; }}
         trap 'e; exit 143' TERM
         trap 'e; trap - INT; kill -INT $$' INT
         trap e EXIT
         echo \"start {id} $(date +%s%N) $$\" >> \"$l\"
         {hold}",
        log = dir.join("sections").display()
    )
}

fn gate(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("go-{id}"))
}

/// One run of a critical section, from the log.
#[derive(Debug, Clone)]
struct Section {
    id: String,
    start: u128,
    /// `None` while it runs (or if it was killed without a chance to write it).
    end: Option<u128>,
    pid: i32,
}

fn sections(dir: &Path) -> Vec<Section> {
    let mut all: Vec<Section> = Vec::new();
    for line in read_lines(&dir.join("sections")) {
        let w: Vec<&str> = line.split_whitespace().collect();
        // A section stopped while `date` runs logs no time (`date` dies of the signal too): it
        // started when it ended; without an end, at the beginning; an end without a time, at
        // the end of the test: so that no overlap goes unseen.
        match w.as_slice() {
            ["start", id, at, pid] => all.push(Section {
                id: id.to_string(),
                start: at.parse().unwrap(),
                end: None,
                pid: pid.parse().unwrap(),
            }),
            ["start", id, pid] => all.push(Section {
                id: id.to_string(),
                start: 0,
                end: None,
                pid: pid.parse().unwrap(),
            }),
            ["end", id, rest @ ..] => {
                let at = rest.first().map_or(u128::MAX, |at| at.parse().unwrap());
                if let Some(s) = all
                    .iter_mut()
                    .rev()
                    .find(|s| s.id == *id && s.end.is_none())
                {
                    if s.start == 0 && at != u128::MAX {
                        s.start = at;
                    }
                    s.end = Some(at);
                }
            }
            _ => panic!("a line the sections do not write: {line:?}"),
        }
    }
    all.sort_by_key(|s| s.start);
    all
}

/// Every pair of sections that overlap in time, but for sections of `exempt`.
fn overlaps(all: &[Section], exempt: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let exempted = exempt.contains(&a.id.as_str()) || exempt.contains(&b.id.as_str());
            // Sorted by start: b started no earlier than a.
            if !exempted && a.end.is_none_or(|end| b.start < end) {
                found.push(format!(
                    "{} and {} ran at the same time: {a:?}, {b:?}",
                    a.id, b.id
                ));
            }
        }
    }
    found
}

/// The checker itself: it reports an overlap, a section that never ended as overlapping all
/// that came after, and nothing for sections back to back or exempt.
#[test]
fn the_overlap_checker_finds_overlaps_and_only_those() {
    let s = |id: &str, start, end| Section {
        id: id.into(),
        start,
        end,
        pid: 0,
    };
    assert!(overlaps(&[s("a", 0, Some(10)), s("b", 10, Some(20))], &[]).is_empty());
    assert_eq!(
        overlaps(&[s("a", 0, Some(10)), s("b", 5, Some(20))], &[]).len(),
        1
    );
    assert_eq!(
        overlaps(
            &[s("a", 0, None), s("b", 50, Some(60)), s("c", 70, None)],
            &[]
        )
        .len(),
        2
    );
    assert!(overlaps(&[s("a", 0, Some(10)), s("b", 5, Some(20))], &["a"]).is_empty());

    // Times that `date`, killed by the same signal as the section, did not write.
    let tmp = scratch_dir();
    let log = "start a 100 1\nstart b  2\nend b 150\nstart c  3\nend a 200\n";
    fs::write(tmp.path().join("sections"), log).unwrap();
    let parsed: Vec<(String, u128, Option<u128>)> = sections(tmp.path())
        .into_iter()
        .map(|s| (s.id, s.start, s.end))
        .collect();
    let expected = [("c", 0, None), ("a", 100, Some(200)), ("b", 150, Some(150))];
    assert_eq!(
        parsed,
        expected.map(|(id, start, end)| (id.to_string(), start, end))
    );
}

// ---------------------------------------------------------------------------------------------
// Contenders

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Distlock,
    Etcdctl,
}

/// One contender: its process and the key it joined the queue with.
struct Party {
    id: String,
    kind: Kind,
    bg: Background,
    key: Kv,
    code: Option<i32>,
}

impl Party {
    fn stderr(&self) -> String {
        self.bg.stderr()
    }

    /// The lease of its key, in hex as etcdctl and distlock write it.
    fn lease(&self) -> String {
        format!("{:x}", self.key.lease)
    }
}

/// Waits at most until `deadline` for `bg` to exit; its `$?`, or `None` if it still runs.
fn ends_by(bg: &mut Background, deadline: Instant) -> Option<i32> {
    loop {
        if let Some(status) = bg.try_status() {
            return Some(shell_status(status));
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `cond` becomes true within `timeout` (polled every 10 ms).
fn within(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a message says a key was deleted (by someone else: `etcdctl del`, a revoked lease).
fn says_deleted(text: &str) -> bool {
    let text = text.to_lowercase();
    ["deleted", "removed", "revoked"]
        .iter()
        .any(|word| text.contains(word))
}

/// One lock on one etcd, the contenders that joined it and what went wrong so far.
struct Scene<'e> {
    etcd: &'e Etcd,
    p: String,
    tmp: TempDir,
    /// distlock's user and password, when etcd has authentication on.
    user: Option<(&'static str, &'static str)>,
    /// Every key a contender joined with, to tell the next one's.
    known: Vec<String>,
    problems: Vec<String>,
}

impl<'e> Scene<'e> {
    fn new(etcd: &'e Etcd, test: &str) -> Scene<'e> {
        Scene::with_prefix(etcd, prefix(test))
    }

    fn with_prefix(etcd: &'e Etcd, p: String) -> Scene<'e> {
        Scene {
            etcd,
            p,
            tmp: scratch_dir(),
            user: None,
            known: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// `<prefix><name>/`: where every contender's key is.
    fn lock_dir(&self) -> String {
        format!("{}{NAME}/", self.p)
    }

    /// The contenders' keys, oldest first.
    fn queue(&self) -> Vec<Kv> {
        let mut kvs = self.etcd.kvs(&self.lock_dir());
        kvs.sort_by_key(|kv| kv.create_revision);
        kvs
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        self.etcd.etcdctl(args)
    }

    /// distlock for the lock, as the scene's user if there is one.
    fn distlock_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = distlock_std(&self.etcd.endpoint(), &self.p);
        if let Some((user, password)) = self.user {
            cmd.arg(format!("--user={user}"))
                .env("DISTLOCK_PASSWORD", password);
        }
        cmd.arg(format!("--lock-name={NAME}")).args(args);
        cmd
    }

    /// `distlock <args> -- sh -c <section>`, once its key is in the queue.
    fn distlock(&mut self, id: &str, hold: Hold, args: &[&str]) -> Party {
        let mut cmd = self.distlock_cmd(args);
        cmd.args(["--", "sh", "-c", &section(self.dir(), id, hold)]);
        self.join(id, Kind::Distlock, cmd)
    }

    /// `etcdctl lock <prefix><name> -- sh -c <section>` (as root under authentication), once
    /// its key is in the queue.
    fn etcdctl_lock(&mut self, id: &str, hold: Hold) -> Party {
        let mut cmd = self.etcd.etcdctl_cmd();
        cmd.args(["lock", &format!("{}{NAME}", self.p), "--", "sh", "-c"])
            .arg(section(self.dir(), id, hold));
        self.join(id, Kind::Etcdctl, cmd)
    }

    fn join(&mut self, id: &str, kind: Kind, cmd: Command) -> Party {
        let mut bg = Background::logged(cmd, self.tmp.path(), id);
        let key = wait_until(DEADLINE, &format!("{id}'s key in the queue"), || {
            if let Some(status) = bg.try_status() {
                panic!("{id} exited ({status:?}) before joining: {}", bg.report());
            }
            self.queue()
                .into_iter()
                .find(|kv| !self.known.contains(&kv.key))
        });
        self.known.push(key.key.clone());
        Party {
            id: id.to_string(),
            kind,
            bg,
            key,
            code: None,
        }
    }

    fn open(&self, id: &str) {
        fs::write(gate(self.dir(), id), "").unwrap();
    }

    fn wait_started(&self, id: &str) {
        wait_for(DEADLINE, &format!("{id}'s section to start"), || {
            sections(self.dir()).iter().any(|s| s.id == id)
        });
    }

    /// Waits (at most `ENDING` for all) for every party to exit; a party that does not is a
    /// problem (and is killed when the scene ends).
    fn finish(&mut self, parties: &mut [Party]) {
        let deadline = Instant::now() + ENDING;
        for party in parties.iter_mut() {
            party.code = ends_by(&mut party.bg, deadline);
            if party.code.is_none() {
                self.problems.push(format!(
                    "{} ({:?}) did not end within {ENDING:?}: it hangs",
                    party.id, party.kind
                ));
            }
        }
    }

    fn expect(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(problem());
        }
    }

    fn expect_code(&mut self, party: &Party, code: i32) {
        if party.code.is_some() && party.code != Some(code) {
            self.problems.push(format!(
                "{} exited {:?}, expected {code}",
                party.id, party.code
            ));
        }
    }

    /// No two sections overlap but with `exempt`'s.
    fn expect_no_overlap(&mut self, exempt: &[&str]) {
        let found = overlaps(&sections(self.dir()), exempt);
        self.problems.extend(found);
    }

    /// A holder that was force-released: stopped (its section ended), exit 4, and it says its
    /// lock was lost.
    fn expect_stopped(&mut self, party: &Party) {
        let ended = sections(self.dir())
            .iter()
            .filter(|s| s.id == party.id)
            .all(|s| s.end.is_some());
        self.expect(ended, || format!("{}'s command was not stopped", party.id));
        self.expect_code(party, 4);
        let stderr = party.stderr();
        self.expect(stderr.contains("lost"), || {
            format!("{} does not say its lock was lost", party.id)
        });
    }

    /// A waiter whose key was deleted (docs/CONTRACT.md, "When others touch the keys"): it gave
    /// up without running its command, exit 3, saying its key was deleted.
    fn expect_gave_up(&mut self, party: &Party) {
        let ran = sections(self.dir()).iter().any(|s| s.id == party.id);
        self.expect(!ran, || {
            format!("{} ran its command without its key", party.id)
        });
        self.expect_code(party, 3);
        let stderr = party.stderr();
        self.expect(says_deleted(&stderr), || {
            format!("{} does not say its key was deleted", party.id)
        });
    }

    fn expect_ran(&mut self, party: &Party) {
        let ran = sections(self.dir()).iter().any(|s| s.id == party.id);
        self.expect(ran, || format!("{}'s command never ran", party.id));
    }

    /// Every error line is `distlock: ...` (distlock's last line, when it failed).
    fn expect_error_style(&mut self, party: &Party) {
        if party.kind != Kind::Distlock || matches!(party.code, None | Some(0)) {
            return;
        }
        let stderr = party.stderr();
        let last = stderr.lines().last().unwrap_or_default();
        self.expect(
            last.starts_with("distlock: ") && !stderr.contains("panicked"),
            || {
                format!(
                    "{}'s last line is not a `distlock: ` error line: {last:?}",
                    party.id
                )
            },
        );
    }

    /// When the lock's directory is empty (every contender gone), nothing is left; otherwise
    /// what is left must be named by whoever left it, and go with its lease.
    fn expect_nothing_left(&mut self, parties: &[Party]) {
        let left = self.queue();
        for kv in &left {
            let named = parties.iter().any(|party| {
                let lease = format!("{:x}", kv.lease);
                let stderr = party.stderr();
                stderr.contains(&kv.key) || (kv.lease != 0 && stderr.contains(&lease))
            });
            self.expect(named, || {
                format!("{} is left, and no message names it", kv.key)
            });
        }
        if !left.is_empty() {
            let dir = self.lock_dir();
            let gone = within(ENDING, || self.etcd.kvs(&dir).is_empty());
            self.expect(gone, || {
                format!("keys left under {dir} beyond their leases")
            });
        }
    }

    /// Everything every party said, and the sections, for a failure message.
    fn report(&self, parties: &[Party]) -> String {
        let mut text = String::new();
        for party in parties {
            text.push_str(&format!(
                "\n=== {} ({:?}, key {}, exit {:?}) ===\n{}",
                party.id,
                party.kind,
                party.key.key,
                party.code,
                party.bg.report()
            ));
        }
        text.push_str("\n=== sections ===\n");
        text.push_str(&read_lines(&self.dir().join("sections")).join("\n"));
        text
    }

    /// Fails with every problem found, and what everyone said.
    fn verdict(&self, parties: &[Party]) {
        assert!(
            self.problems.is_empty(),
            "{} problem(s):\n- {}\n{}",
            self.problems.len(),
            self.problems.join("\n- "),
            self.report(parties)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Keys deleted and leases revoked by someone else

/// B holds, W waits behind it, X behind W, Y (etcdctl) behind X. `etcdctl del <W's key>`, then
/// B leaves. X takes the lock, then Y; W, whose key is gone, gives up (exit 3) without running
/// its command, and says its key was deleted.
#[test]
fn a_waiter_whose_key_is_deleted_never_runs_beside_another() {
    a_removed_waiter_gives_up("del-waiter", &[], |w| {
        vec!["del".into(), "--".into(), w.key.key.clone()]
    });
}

/// B holds, W waits behind it (with `w_args`), X behind W, Y (etcdctl) behind X; `etcdctl
/// <remove(W)>`, then B leaves. X takes the lock, then Y; W gives up (exit 3) without running
/// its command, and says its key was deleted.
fn a_removed_waiter_gives_up(name: &str, w_args: &[&str], remove: impl Fn(&Party) -> Vec<String>) {
    let etcd = Etcd::start();
    let mut s = Scene::new(&etcd, name);
    let b = s.distlock("B", Hold::Gate, &[]);
    s.wait_started("B");
    let w = s.distlock("W", Hold::Work, w_args);
    let x = s.distlock("X", Hold::Work, &[]);
    let y = s.etcdctl_lock("Y", Hold::Work);

    let args = remove(&w);
    s.etcdctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    s.open("B");
    let mut all = [b, w, x, y];
    s.finish(&mut all);

    s.expect_no_overlap(&[]);
    let [b, w, x, y] = &all;
    for party in [b, x, y] {
        s.expect_code(party, 0);
        s.expect_ran(party);
    }
    s.expect_gave_up(w);
    for party in &all {
        s.expect_error_style(party);
    }
    s.expect_nothing_left(&all);
    s.verdict(&all);
}

/// B holds, W (distlock) and X (etcdctl) wait. `etcdctl del <B's key>`: B is stopped (exit 4,
/// saying its key was removed), W takes the lock, then X.
#[test]
fn a_holder_whose_key_is_deleted_is_stopped_and_the_queue_goes_on() {
    let etcd = Etcd::start();
    let mut s = Scene::new(&etcd, "del-holder");
    let b = s.distlock("B", Hold::Gate, &[]);
    s.wait_started("B");
    let w = s.distlock("W", Hold::Work, &[]);
    let x = s.etcdctl_lock("X", Hold::Work);

    s.etcdctl(&["del", "--", &b.key.key]);
    let mut all = [b, w, x];
    s.finish(&mut all);

    s.expect_no_overlap(&["B"]);
    let [b, w, x] = &all;
    s.expect_stopped(b);
    s.expect(says_deleted(&b.stderr()), || {
        "B does not say its key was removed".into()
    });
    for party in [w, x] {
        s.expect_code(party, 0);
        s.expect_ran(party);
    }
    for party in &all {
        s.expect_error_style(party);
    }
    s.expect_nothing_left(&all);
    s.verdict(&all);
}

/// B holds, W and X wait: `etcdctl del --prefix <the lock's directory>`. B is stopped (exit 4);
/// W and X, whose keys are gone, give up (exit 3) without running their commands, and say
/// their key was deleted. Y (etcdctl), which joins afterwards, gets the lock and runs alone.
#[test]
fn deleting_the_whole_lock_directory_makes_no_second_holder() {
    let etcd = Etcd::start();
    let mut s = Scene::new(&etcd, "del-dir");
    let b = s.distlock("B", Hold::Gate, &[]);
    s.wait_started("B");
    let w = s.distlock("W", Hold::Work, &[]);
    let x = s.distlock("X", Hold::Work, &[]);

    s.etcdctl(&["del", "--prefix", "--", &s.lock_dir()]);
    let y = s.etcdctl_lock("Y", Hold::Work);
    let mut all = [b, w, x, y];
    s.finish(&mut all);

    s.expect_no_overlap(&["B"]);
    let [b, w, x, y] = &all;
    s.expect_stopped(b);
    for party in [w, x] {
        s.expect_gave_up(party);
    }
    s.expect_code(y, 0);
    s.expect_ran(y);
    for party in &all {
        s.expect_error_style(party);
    }
    s.expect_nothing_left(&all);
    s.verdict(&all);
}

/// The holder's key and the next waiter's go in one revision (`etcdctl del --prefix`): etcd
/// sends the waiter both deletions at once, in no set order between its watches, so a waiter
/// that acts on the key ahead before looking at its own would take the lock without its key.
/// Eight rounds, each on a lock of its own, so that either order comes up.
#[test]
fn a_waiter_deleted_with_the_holder_in_one_revision_never_runs() {
    let etcd = Etcd::start();
    let mut problems = Vec::new();
    for round in 0..8 {
        let mut s = Scene::new(&etcd, &format!("del-both-{round}"));
        let b = s.distlock("B", Hold::Gate, &[]);
        s.wait_started("B");
        let w = s.distlock("W", Hold::Work, &[]);
        s.etcdctl(&["del", "--prefix", "--", &s.lock_dir()]);
        let mut all = [b, w];
        s.finish(&mut all);
        s.expect_no_overlap(&["B"]);
        s.expect_stopped(&all[0]);
        s.expect_gave_up(&all[1]);
        s.expect_nothing_left(&all);
        if !s.problems.is_empty() {
            problems.push(format!(
                "round {round}: {}{}",
                s.problems.join("; "),
                s.report(&all)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// B holds, W (a long TTL, so its own keepalive does not notice for a while) waits, X behind it,
/// Y (etcdctl) behind X. `etcdctl lease revoke <W's lease>` deletes W's key; then B leaves.
/// Nobody runs beside anyone, and W does what a waiter whose key was deleted does: it gives up
/// (exit 3) without running its command, and says so.
#[test]
fn a_waiter_whose_lease_is_revoked_never_runs_beside_another() {
    a_removed_waiter_gives_up("revoke-waiter", &["--ttl=30"], |w| {
        vec!["lease".into(), "revoke".into(), w.lease()]
    });
}

/// B holds, W (distlock) and X (etcdctl) wait: `etcdctl lease revoke <B's lease>`. B is stopped
/// (exit 4), W takes the lock, then X.
#[test]
fn a_holder_whose_lease_is_revoked_is_stopped_and_the_queue_goes_on() {
    let etcd = Etcd::start();
    let mut s = Scene::new(&etcd, "revoke-holder");
    let b = s.distlock("B", Hold::Gate, &[]);
    s.wait_started("B");
    let w = s.distlock("W", Hold::Work, &[]);
    let x = s.etcdctl_lock("X", Hold::Work);

    s.etcdctl(&["lease", "revoke", &b.lease()]);
    let mut all = [b, w, x];
    s.finish(&mut all);

    s.expect_no_overlap(&["B"]);
    let [b, w, x] = &all;
    s.expect_stopped(b);
    for party in [w, x] {
        s.expect_code(party, 0);
        s.expect_ran(party);
    }
    for party in &all {
        s.expect_error_style(party);
    }
    s.expect_nothing_left(&all);
    s.verdict(&all);
}

// ---------------------------------------------------------------------------------------------
// What etcd's operators do

/// Writes `n` keys outside the prefix, one revision each, and returns the revision after them.
fn bump_revision(s: &Scene, n: usize) -> i64 {
    let mut revision = 0;
    for i in 0..n {
        let out = s.etcdctl(&["put", "-w", "json", "--", &format!("/other/{i}"), "x"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        revision = v["header"]["revision"].as_i64().expect("a revision");
    }
    revision
}

/// Compacts away every revision before the current one and defragments, as an operator's
/// maintenance does.
fn compact_and_defrag(s: &Scene) {
    let revision = bump_revision(s, 20);
    s.etcdctl(&["compact", "--physical", &revision.to_string()]);
    s.etcdctl(&["defrag"]);
}

/// Six waiters (distlock and etcdctl mixed) queue behind B; etcd is compacted to its current
/// revision and defragmented while they wait, and again after the first hand-over, and one more
/// distlock waiter joins after the first compaction. Everyone takes the lock in the
/// order they joined, nobody beside anyone, and every run exits 0: a watch whose start was
/// compacted away is not a lost lock or a lost place.
#[test]
fn compaction_and_defrag_during_a_long_wait_keep_the_queue_in_order() {
    let etcd = Etcd::start();
    let mut s = Scene::new(&etcd, "compact");
    let mut all = vec![s.distlock("B", Hold::Gate, &[])];
    s.wait_started("B");
    // A distlock behind a distlock takes over without asking etcd, and then watches its key
    // from the revision it last read: from before a compaction, for W0, W5 and late.
    let (d, c) = (Kind::Distlock, Kind::Etcdctl);
    for (i, kind) in [d, c, d, c, d, d].into_iter().enumerate() {
        let id = format!("W{i}");
        all.push(match kind {
            Kind::Distlock => s.distlock(&id, Hold::Work, &[]),
            Kind::Etcdctl => s.etcdctl_lock(&id, Hold::Work),
        });
    }
    compact_and_defrag(&s);
    all.push(s.distlock("late", Hold::Work, &[]));
    s.open("B");
    s.wait_started("W0");
    compact_and_defrag(&s);
    s.finish(&mut all);

    s.expect_no_overlap(&[]);
    for party in &all {
        s.expect_code(party, 0);
        s.expect_ran(party);
        s.expect_error_style(party);
    }
    let order: Vec<String> = sections(s.dir()).into_iter().map(|s| s.id).collect();
    let joined: Vec<String> = all.iter().map(|p| p.id.clone()).collect();
    s.expect(order == joined, || {
        format!("the lock went round in the order {order:?}, not as they joined: {joined:?}")
    });
    s.expect_nothing_left(&all);
    s.verdict(&all);
}

/// etcd's backend quota fills up (NOSPACE alarm) while B holds and W (distlock) and X
/// (etcdctl) wait. A new run fails at once (exit 3) with a message that names the quota;
/// those already in the queue still take the lock in turn, and leave nothing.
#[test]
fn a_full_backend_quota_is_named_and_the_queue_still_drains() {
    let etcd = Etcd::builder()
        .args(&["--quota-backend-bytes=1048576"])
        .start();
    let mut s = Scene::new(&etcd, "quota");
    let b = s.distlock("B", Hold::Gate, &[]);
    s.wait_started("B");
    let w = s.distlock("W", Hold::Work, &[]);
    let x = s.etcdctl_lock("X", Hold::Work);

    // 100 kB values until etcd refuses one: its quota is full, and it raises the alarm.
    let value = "q".repeat(100_000);
    let full = (0..60).any(|i| {
        let mut put = etcd.etcdctl_cmd();
        put.args(["put", "--", &format!("/filler/{i}"), &value]);
        let out = put.output().unwrap();
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("database space exceeded")
    });
    assert!(full, "the quota never filled");
    assert!(
        s.etcdctl(&["alarm", "list"]).contains("NOSPACE"),
        "no NOSPACE alarm"
    );

    let late = s.distlock_cmd(&["--maxtime=2s", "--", "true"]);
    let (out, took) = run_timed(late, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    s.expect(shell_status(out.status) == 3, || {
        format!(
            "a new run exited {} with the quota full, expected 3: {stderr}",
            shell_status(out.status)
        )
    });
    let lines: Vec<&str> = stderr.lines().collect();
    s.expect(
        lines.len() == 1 && lines[0].starts_with("distlock: "),
        || format!("a new run's error is not one `distlock: ` line: {stderr:?}"),
    );
    s.expect(stderr.to_lowercase().contains("quota"), || {
        format!("a new run's message does not name the quota: {stderr:?}")
    });
    s.expect(took < Duration::from_secs(3), || {
        format!("a new run took {took:?} to fail")
    });

    s.open("B");
    let mut all = [b, w, x];
    s.finish(&mut all);
    s.expect_no_overlap(&[]);
    for party in &all {
        s.expect_code(party, 0);
        s.expect_ran(party);
    }
    s.expect_nothing_left(&all);
    s.verdict(&all);
}

const ROOT_PASSWORD: &str = "r00t-neighbours";
const PASSWORD: &str = "n3ighbour-pw";

/// B (etcdctl, as root) holds, W (distlock, as a user whose role may use the prefix) waits, X
/// (etcdctl, as root) behind W. The role loses its permission on the prefix; then B leaves. W
/// can no longer claim the lock: it ends (exit 3) with a message that names the permission,
/// and does not run beside anyone; X gets the lock once W's key is gone.
#[test]
fn a_permission_revoked_mid_wait_ends_the_waiter_with_exit_3() {
    let p = prefix("perm");
    let etcd = Etcd::builder()
        .auth(ROOT_PASSWORD, "neighbour", PASSWORD, &p)
        .start();
    let mut s = Scene::with_prefix(&etcd, p);
    s.user = Some(("neighbour", PASSWORD));
    let b = s.etcdctl_lock("B", Hold::Gate);
    s.wait_started("B");
    let w = s.distlock("W", Hold::Work, &["--ttl=3", "--maxtime=2s"]);
    let x = s.etcdctl_lock("X", Hold::Work);

    let prefix = s.p.clone();
    s.etcdctl(&[
        "role",
        "revoke-permission",
        "neighbour-role",
        "--prefix=true",
        "--",
        &prefix,
    ]);
    s.open("B");
    let mut all = [b, w, x];
    s.finish(&mut all);

    s.expect_no_overlap(&[]);
    let [b, w, x] = &all;
    for party in [b, x] {
        s.expect_code(party, 0);
        s.expect_ran(party);
    }
    s.expect_code(w, 3);
    s.expect_error_style(w);
    let last = w.stderr().lines().last().unwrap_or_default().to_lowercase();
    s.expect(last.contains("permission"), || {
        format!("W's last line does not name the permission: {last:?}")
    });
    s.expect_nothing_left(&all);
    s.verdict(&all);
}

/// A Go `concurrency.Session` keeps several locks on one lease. `distlock --unlock` of one of
/// them removes its key, and leaves the other lock's key, and so that lock, held.
#[test]
fn unlock_of_one_lock_leaves_another_lock_on_the_same_lease() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("shared-lease");
    let lease = lease_grant(&ep, 60);
    let (a, b) = (format!("{p}a/{lease:x}"), format!("{p}b/{lease:x}"));
    put_with_lease(&ep, &a, "", lease);
    put_with_lease(&ep, &b, "", lease);

    let r = run(distlock(&etcd, &p).args(["--lock-name=a", "--unlock"]));
    r.code(0);
    assert_eq!(get_key(&ep, &a), None, "lock a's key must be gone: {r}");
    let kept = get_key(&ep, &b);
    assert!(
        kept.as_ref().is_some_and(|kv| kv.lease == lease),
        "lock b's key must stay, on its lease: {kept:?}; --unlock of a said: {r}"
    );
    let busy = run(distlock(&etcd, &p).args(["--lock-name=b", "--nowait", "--", "true"]));
    busy.code(1);
    assert!(
        lease_ttl(&ep, lease).is_some(),
        "the session's lease must live on"
    );
}

// ---------------------------------------------------------------------------------------------
// A signal in every state

/// `--maxtime` of the runs signalled: each of them must be gone within it plus a second.
const MAXTIME: Duration = Duration::from_secs(2);
/// Their TTL: a key they could not revoke is gone by then once etcd runs again.
const TTL: u64 = 5;

/// A TCP relay from a loopback port to etcd's, which can hold back what clients send (while
/// still passing on what etcd sends them): to a client, etcd goes silent at a chosen moment,
/// after its last events have arrived. What is held when a client goes away is dropped.
struct Relay {
    port: u16,
    hold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(to: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (hold.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                            continue;
                        };
                        client.set_nonblocking(false).unwrap();
                        for s in [&client, &server] {
                            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                            s.set_nodelay(true).unwrap();
                        }
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let (h1, st1, st2) = (h.clone(), st.clone(), st.clone());
                        std::thread::spawn(move || pump(client, server, Some(h1), st1));
                        std::thread::spawn(move || pump(s2, c2, None, st2));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        Relay {
            port,
            hold,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, what clients send waits in the relay.
    fn hold(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Copies `from` to `to` until either side closes or the relay stops; while `hold` is set,
/// what `from` sends is kept back.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    hold: Option<Arc<AtomicBool>>,
    stop: Arc<AtomicBool>,
) {
    // Looked at after each read, not before: bytes that arrive once `hold` is set never pass.
    let holding = || hold.as_ref().is_some_and(|h| h.load(Ordering::SeqCst));
    let mut buf = [0u8; 16384];
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if !held.is_empty() && !holding() {
            if to.write_all(&held).is_err() {
                break;
            }
            held.clear();
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if holding() => held.extend_from_slice(&buf[..n]),
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// In the queue behind a holder, etcd answering.
    Waiting,
    /// In the queue, etcd frozen (SIGSTOP) long enough that the wait has failed and distlock
    /// waits for etcd to answer again.
    Retrying,
    /// The key ahead has just gone and distlock asks etcd whether the lock is its own, when
    /// etcd stops answering it.
    Claiming,
    /// Holding the lock, the command running.
    Holding,
    /// The command has ended and distlock gives the lock back, with etcd frozen.
    Releasing,
}

/// The code docs/CONTRACT.md gives a run stopped by `sig` in `state`: 128+N before the command
/// runs (the signal ends the wait) and while it runs (the command dies of it, or exits as
/// its trap says, here 128+N as well); the command's own status (0) once it has ended.
fn expected_code(state: State, sig: Signal) -> i32 {
    match state {
        State::Releasing => 0,
        _ => 128 + sig as i32,
    }
}

/// distlock's log (`--log-format=json`): the level and message of each of its lines (the
/// command's own lines, which are not JSON, are left out).
fn log_of(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (text(&v["level"]), text(&v["fields"]["message"]))
        })
        .collect()
}

/// Whether distlock's log has a line that contains `text`, at any level.
fn logged(bg: &Background, text: &str) -> bool {
    log_of(&bg.stderr()).iter().any(|(_, m)| m.contains(text))
}

/// One run of the property: distlock in `state`, then `sig`; the problems found.
fn signal_in(state: State, sig: Signal) -> Vec<String> {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix(&format!("sig-{state:?}").to_lowercase());
    let tmp = scratch_dir();
    let dir = tmp.path();
    let id = format!("{state:?}-{}", sig.as_str());
    let relay = (state == State::Claiming).then(|| Relay::start(etcd.client_port()));

    // A holder that is not distlock (an empty value, as etcdctl's), so that the waiter's turn
    // goes through the claim, not the fast path.
    let before_us = matches!(state, State::Waiting | State::Retrying | State::Claiming);
    let holder = before_us.then(|| {
        let lease = lease_grant(&ep, 60);
        let key = format!("{p}{NAME}/{lease:x}");
        put_with_lease(&ep, &key, "", lease);
        key
    });
    let via = relay.as_ref().map_or(ep.clone(), Relay::endpoint);
    let mut cmd = distlock_std(&via, &p);
    cmd.args([
        &format!("--lock-name={NAME}"),
        &format!("--ttl={TTL}"),
        &format!("--maxtime={}s", MAXTIME.as_secs()),
        "--log-format=json",
        "--",
        "sh",
        "-c",
        &section(dir, &id, Hold::Gate),
    ])
    // Each request distlock makes, and why it waits, in its log; with their levels, so that
    // what it says by default can be told apart.
    .env("DISTLOCK_LOG", "distlock=trace");
    let mut d = Background::logged(cmd, dir, &id);
    let mine = wait_until(DEADLINE, "distlock's key", || {
        let mut kvs = contenders(&ep, &p, NAME);
        kvs.retain(|kv| Some(&kv.key) != holder.as_ref());
        kvs.pop()
    });
    let started = |dir: &Path| sections(dir).into_iter().find(|s| s.id == id);
    let mut etcd_frozen = false;
    match state {
        State::Waiting => {}
        State::Retrying => {
            etcd.pause();
            etcd_frozen = true;
            wait_for(
                DEADLINE + MAXTIME,
                "distlock to wait for etcd to answer again",
                || logged(&d, "waiting for etcd to answer again"),
            );
        }
        State::Claiming => {
            // Its watch on the key ahead must be in place before etcd goes silent to it: it is
            // the only watch on this etcd.
            wait_for(DEADLINE, "distlock's watch on the key ahead", || {
                metric(etcd.client_port(), "etcd_debugging_mvcc_watcher_total ") >= Some(1)
            });
            relay.as_ref().unwrap().hold();
            etcdctl(&ep, ["del", "--", holder.as_deref().unwrap()]);
            wait_for(DEADLINE, "distlock to claim the lock", || {
                logged(&d, "etcd request: take the lock")
            });
        }
        State::Holding => {
            wait_until(DEADLINE, "the command to start", || started(dir));
        }
        State::Releasing => {
            let section = wait_until(DEADLINE, "the command to start", || started(dir));
            etcd.pause();
            etcd_frozen = true;
            fs::write(gate(dir, &id), "").unwrap();
            // Reaped by distlock: it is past waiting for the command.
            wait_for(DEADLINE, "the command to end", || {
                !Path::new(&format!("/proc/{}", section.pid)).exists()
            });
        }
    }

    let sent = Instant::now();
    d.signal(sig);
    let code = ends_by(&mut d, sent + MAXTIME + Duration::from_secs(1));
    let took = sent.elapsed();
    if etcd_frozen {
        etcd.resume();
    }
    drop(relay);
    let mut problems = Vec::new();
    let Some(code) = code else {
        problems.push(format!(
            "{id}: distlock did not end within maxtime ({MAXTIME:?}) + 1s of the signal"
        ));
        problems.push(format!("{id}: {}", d.report()));
        return problems;
    };
    let log = log_of(&d.stderr());
    // What a run says by default (info and above), where a user or a cron mail sees it.
    let said: Vec<&str> = log
        .iter()
        .filter(|(level, _)| ["INFO", "WARN", "ERROR"].contains(&level.as_str()))
        .map(|(_, message)| message.as_str())
        .collect();
    let expected = expected_code(state, sig);
    if code != expected {
        problems.push(format!(
            "{id}: exit {code} after {took:?}, expected {expected}"
        ));
    }
    if d.stderr().contains("panicked") {
        problems.push(format!("{id}: distlock panicked"));
    }
    let ran = started(dir);
    match state {
        State::Waiting | State::Retrying | State::Claiming => {
            if ran.is_some() {
                problems.push(format!("{id}: the command ran"));
            }
            // The error is the last line, and says why distlock stopped.
            match log.last() {
                Some((level, message)) if level == "ERROR" => {
                    if !message.contains(sig.as_str()) {
                        problems.push(format!("{id}: the error does not name {sig}: {message:?}"));
                    }
                }
                last => problems.push(format!("{id}: the last line is not the error: {last:?}")),
            }
        }
        State::Holding | State::Releasing => {
            if ran.as_ref().is_none_or(|s| s.end.is_none()) {
                problems.push(format!("{id}: the command did not end: {ran:?}"));
            }
        }
    }

    // What is left. Where distlock could reach etcd, at once nothing; where it could not (etcd
    // frozen, or the relay holding its requests, until it exited), its key until the lease
    // expires, which its messages must say.
    let could_revoke = matches!(state, State::Waiting | State::Holding);
    let left = contenders(&ep, &p, NAME)
        .into_iter()
        .any(|kv| kv.key == mine.key);
    if could_revoke && left {
        problems.push(format!("{id}: {} is left behind", mine.key));
    }
    if !could_revoke {
        let lease = format!("{:x}", mine.lease);
        if !said
            .iter()
            .any(|m| m.contains(&mine.key) || m.contains(&lease))
        {
            problems.push(format!(
                "{id}: its key {} stays until its lease expires, and no message names it or the lease {lease}",
                mine.key
            ));
        }
        if said.iter().any(|m| m.contains("nothing is left")) {
            problems.push(format!(
                "{id}: says nothing is left, but it could not remove {}",
                mine.key
            ));
        }
        let gone = within(Duration::from_secs(TTL + 3), || {
            !contenders(&ep, &p, NAME)
                .iter()
                .any(|kv| kv.key == mine.key)
        });
        if !gone {
            problems.push(format!("{id}: {} outlived its lease", mine.key));
        }
    }
    // The holder's key, if any, is someone else's: untouched (but where the test deleted it).
    if let Some(key) = holder.filter(|_| state != State::Claiming) {
        if get_key(&ep, &key).is_none() {
            problems.push(format!("{id}: the holder's key {key} is gone"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!(
            "{id}: what it said by default:\n  {}",
            said.join("\n  ")
        ));
    }
    problems
}

/// Both signals in `state`, at the same time (each with its own etcd).
fn signals_in(state: State) {
    let problems: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = [Signal::SIGINT, Signal::SIGTERM]
            .into_iter()
            .map(|sig| scope.spawn(move || signal_in(state, sig)))
            .collect();
        runs.into_iter()
            .flat_map(|run| run.join().unwrap())
            .collect()
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_signal_while_waiting_ends_distlock_in_time_and_leaves_nothing() {
    signals_in(State::Waiting);
}

#[test]
fn a_signal_while_retrying_ends_distlock_in_time_and_leaves_nothing() {
    signals_in(State::Retrying);
}

#[test]
fn a_signal_while_claiming_ends_distlock_in_time_and_leaves_nothing() {
    signals_in(State::Claiming);
}

#[test]
fn a_signal_while_holding_ends_distlock_in_time_and_leaves_nothing() {
    signals_in(State::Holding);
}

#[test]
fn a_signal_while_releasing_ends_distlock_in_time_and_leaves_nothing() {
    signals_in(State::Releasing);
}
