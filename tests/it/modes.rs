//! The lock modes, against the real binary, a real etcd and `etcdctl lock` as a peer:
//! `--max-runtime` (exit 124, or 137 when SIGKILL was needed), `--extend` of a lock taken with
//! `--lock`, `--max-holders N` (a semaphore) and `--shared` (readers/writer), and the bad
//! values of each (exit 2, nothing written to etcd); a `--lock` whose detaching write lands unanswered leaves no key held by
//! nobody. Each test starts its own etcd and uses its own key prefix.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::common::h2proxy::{H2Proxy, Step};
use crate::common::*;
use nix::sys::signal::Signal;

/// A distlock run in the background with its output in `dir`.
fn bg(etcd: &Etcd, p: &str, args: &[&str], dir: &Path, what: &str) -> Background {
    let mut cmd = distlock_std(&etcd.endpoint(), p);
    cmd.args(args);
    Background::logged(cmd, dir, what)
}

/// The time in a record's RFC 3339 field, as seconds from now (negative: in the past).
fn seconds_from_now(rfc3339: &serde_json::Value) -> i64 {
    let text = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {rfc3339}"));
    let t = humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    match t.duration_since(SystemTime::now()) {
        Ok(ahead) => ahead.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// etcd's current revision: unchanged means nothing was written.
fn revision(ep: &str) -> i64 {
    let out = etcdctl(ep, ["get", "-w", "json", "--", "/"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

/// Asserts exit 2 with one line containing every one of `words`, and nothing in etcd.
fn refused(etcd: &Etcd, p: &str, args: &[&str], words: &[&str]) {
    let r = run(distlock(etcd, p).args(args));
    let line = r.code(2).one_error_line();
    for word in words {
        assert!(line.contains(word), "{args:?}: {word:?} not in {line:?}");
    }
    assert_eq!(
        get_prefix(&etcd.endpoint(), p),
        vec![],
        "{args:?} wrote to etcd"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad values

#[test]
fn bad_values_of_the_new_options_are_usage_errors_that_write_nothing() {
    let etcd = Etcd::start();
    let p = prefix("modes-bad");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--max-holders=0", "--", "true"],
            &["--max-holders", "\"0\""],
        ),
        (&["--max-holders=three", "--", "true"], &["--max-holders"]),
        (&["--max-holders=-2", "--", "true"], &["--max-holders"]),
        (&["--max-runtime=-5", "--", "true"], &["--max-runtime"]),
        (&["--max-runtime=soon", "--", "true"], &["--max-runtime"]),
        (&["--max-runtime=0", "--", "true"], &["--max-runtime"]),
        (&["--extend=-1h"], &["--extend"]),
        (&["--extend=later"], &["--extend"]),
        (&["--extend=1h", "--", "true"], &["--extend", "true"]),
        (&["--holder=1f", "--", "true"], &["--holder", "--extend"]),
        (&["--holder=1f", "--lock"], &["--holder", "--unlock"]),
        (&["--unlock=1f", "--holder=2f"], &["--holder", "different"]),
        (&["--lock", "--max-runtime=1h"], &["--max-runtime", "--ttl"]),
        (&["--status", "--hold-at-least=5m"], &["--hold-at-least"]),
        (
            &["--shared", "--max-holders=3", "--", "true"],
            &["--shared", "--max-holders=3"],
        ),
    ];
    for (args, words) in cases {
        let mut all = vec!["--lock-name=x"];
        all.extend(*args);
        refused(&etcd, &p, &all, words);
    }
    // The same from the environment: its variable is named.
    let r = run(distlock(&etcd, &p).env("DISTLOCK_MAX_HOLDERS", "0").args([
        "--lock-name=x",
        "--",
        "true",
    ]));
    assert!(
        r.code(2).one_error_line().contains("DISTLOCK_MAX_HOLDERS"),
        "{r}"
    );
    assert_eq!(get_prefix(&etcd.endpoint(), &p), vec![]);
}

// ---------------------------------------------------------------------------------------------
// --max-runtime

#[test]
fn max_runtime_stops_the_whole_group_releases_and_exits_124() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("maxrt"));
    let dir = scratch_dir();
    let term = dir.path().join("term");
    // The command's shell notes the SIGTERM, and a background child of it must go too.
    let script = format!(
        "sleep 60 & echo $! > '{}/child'; trap 'echo TERM > {}; exit 0' TERM; wait",
        dir.path().display(),
        term.display()
    );
    let started = Instant::now();
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=job",
        "--max-runtime=1500ms",
        "--kill-grace=1s",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    let took = started.elapsed();
    let line = r.code(124).one_error_line().to_string();
    assert!(line.contains("--max-runtime"), "{r}");
    // It ended on SIGTERM: SIGKILL went only to what it left in its group, not to it.
    assert!(line.ends_with(": SIGTERM"), "{r}");
    assert!(
        took >= Duration::from_millis(1500),
        "stopped before its max runtime: {r}"
    );
    // Well before the 10 s TTL would matter: the deadline, not a lost lease, stopped it.
    assert!(took < Duration::from_secs(8), "{r}");
    assert_eq!(
        std::fs::read_to_string(&term).unwrap_or_default(),
        "TERM\n",
        "the command got SIGTERM first: {r}"
    );
    let child = std::fs::read_to_string(dir.path().join("child")).unwrap();
    wait_for(
        DEADLINE,
        "the command's background child to be gone",
        || comm(child.trim()).is_empty(),
    );
    assert_eq!(get_prefix(&ep, &p), vec![], "released: {r}");
}

/// As `timeout 1.5s sleep 10`: exit 124, and the one line says what happened, SIGTERM only.
#[test]
fn max_runtime_says_sigterm_and_exits_124_when_sigterm_was_enough() {
    let etcd = Etcd::start();
    let p = prefix("maxrt-term");
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=job",
        "--max-runtime=1500ms",
        "--",
        "sleep",
        "10",
    ]));
    let line = r.code(124).one_error_line();
    assert_eq!(
        line, "distlock: the command was stopped after 1.5s (--max-runtime): SIGTERM",
        "{r}"
    );
    assert!(!r.stderr.contains("SIGKILL"), "{r}");
    assert_eq!(get_prefix(&etcd.endpoint(), &p), vec![]);
}

/// As `timeout -k 500ms 1s sh -c "trap '' TERM; sleep 30"`: SIGKILL was needed, exit 137.
#[test]
fn max_runtime_kills_a_command_that_ignores_sigterm_after_the_grace_and_exits_137() {
    let etcd = Etcd::start();
    let p = prefix("maxrt-kill");
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=job",
        "--max-runtime=1s",
        "--kill-grace=500ms",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 30",
    ]));
    let line = r.code(137).one_error_line();
    assert_eq!(
        line,
        "distlock: the command was stopped after 1s (--max-runtime): SIGTERM, then SIGKILL \
         after 500ms",
        "{r}"
    );
    assert!(
        r.took < Duration::from_secs(8),
        "SIGKILL after the grace: {r}"
    );
    assert_eq!(get_prefix(&etcd.endpoint(), &p), vec![]);
}

#[test]
fn time_spent_waiting_does_not_count_toward_the_max_runtime() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("maxrt-wait"));
    let dir = scratch_dir();
    // The holder keeps the lock 2.5 s; the waiter's command runs 1 s of its 2 s allowance.
    let mut holder = bg(
        &etcd,
        &p,
        &["--lock-name=job", "--", "sleep", "2.5"],
        dir.path(),
        "holder",
    );
    wait_contenders(&ep, &p, "job", 1);
    let done = dir.path().join("done");
    let started = Instant::now();
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=job",
        "--max-runtime=2s",
        "--",
        "sh",
        "-c",
        &format!("sleep 1; echo done > '{}'", done.display()),
    ]));
    r.code(0);
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the wait plus the run must exceed the max runtime for this test to mean anything: {r}"
    );
    assert!(done.exists(), "the command ran to its end: {r}");
    assert_eq!(holder.wait_code(DEADLINE), 0);
}

#[test]
fn max_runtime_keeps_the_lock_as_hold_at_least_says() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("maxrt-hold"));
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=nightly",
        "--max-runtime=1s",
        "--kill-grace=500ms",
        "--hold-at-least=30",
        "--",
        "sleep",
        "60",
    ]));
    r.code(124);
    let kvs = contenders(&ep, &p, "nightly");
    assert_eq!(kvs.len(), 1, "still held for --hold-at-least: {r}");
    let (left, _) = lease_ttl(&ep, kvs[0].lease).expect("on a lease that expires by itself");
    assert!(
        (20..=30).contains(&left),
        "about 29 s left, not {left}: {r}"
    );
}

// ---------------------------------------------------------------------------------------------
// --extend, and the intended expiry of --lock --ttl

#[test]
fn lock_with_ttl_records_its_intended_expiry_and_status_shows_it() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("expires"));
    lock(&etcd, &p, "db", &["--ttl=600"]);
    let kv = contenders(&ep, &p, "db").remove(0);
    let expires = seconds_from_now(&kv.json()["expires"]);
    assert!((590..=600).contains(&expires), "{}", kv.value);

    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status", "--output=json"]));
    let v = r.code(0).json();
    assert_eq!(v["holder"]["expires"], kv.json()["expires"], "{v}");
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status"]));
    assert!(
        r.code(0).stdout.contains("lease:         expires in 9m"),
        "{r}"
    );

    // Without --ttl: no expiry.
    lock(&etcd, &p, "forever", &[]);
    let kv = contenders(&ep, &p, "forever").remove(0);
    assert!(kv.json()["expires"].is_null(), "{}", kv.value);
}

#[test]
fn extend_moves_the_expiry_and_keeps_the_key_place_and_token() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("extend"));
    let (key, token) = lock(&etcd, &p, "db", &["--ttl=5", "--reason=maintenance"]);
    let before = get_key(&ep, &key).unwrap();
    assert_ne!(before.lease, 0);
    // A waiter behind it keeps its place too.
    let dir = scratch_dir();
    let mut waiter = bg(
        &etcd,
        &p,
        &["--lock-name=db", "--", "true"],
        dir.path(),
        "waiter",
    );
    wait_contenders(&ep, &p, "db", 2);

    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--extend=2h"]));
    let line = r.code(0).one_error_line();
    assert!(
        line.starts_with(&format!("distlock: {key} now expires in 2h, at "))
            && line.ends_with(" UTC"),
        "{r}"
    );
    let after = get_key(&ep, &key).expect("the key is still there");
    assert_eq!(after.create_revision, token, "same place and fencing token");
    assert_ne!(after.lease, before.lease, "moved to a fresh lease");
    let (left, granted) = lease_ttl(&ep, after.lease).unwrap();
    assert_eq!(granted, 7200);
    assert!(left > 7100, "{left}");
    assert_eq!(
        lease_ttl(&ep, before.lease),
        None,
        "the old lease is revoked"
    );
    let v = after.json();
    assert_eq!(v["reason"], "maintenance", "the record is kept: {v}");
    assert_eq!(v["mode"], "lock", "{v}");
    assert_eq!(v["ttl"], 7200, "{v}");
    assert!(
        (7190..=7200).contains(&seconds_from_now(&v["expires"])),
        "{v}"
    );
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status", "--output=json"]));
    let status = r.code(0).json();
    assert_eq!(status["holder"]["expires"], v["expires"], "{status}");
    assert!(
        status["holder"]["ttl_left"]
            .as_i64()
            .is_some_and(|t| t > 7100),
        "{status}"
    );
    assert_eq!(
        status["waiters"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );

    // never: off any lease, no expiry; --status says it is held until unlocked.
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--extend=never"]));
    r.code(0);
    let never = get_key(&ep, &key).unwrap();
    assert_eq!((never.create_revision, never.lease), (token, 0));
    assert!(never.json()["expires"].is_null(), "{}", never.value);
    assert_eq!(lease_ttl(&ep, after.lease), None);
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status"]));
    assert!(r.code(0).stdout.contains("held until unlocked"), "{r}");

    run(distlock(&etcd, &p).args(["--lock-name=db", "--unlock"])).code(0);
    assert_eq!(waiter.wait_code(DEADLINE), 0, "{}", waiter.report());
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn extend_of_a_free_lock_exits_1_and_of_other_holders_exits_2() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("extend-no"));
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--extend=1h"]));
    assert!(r.code(1).one_error_line().contains("not locked"), "{r}");
    assert_eq!(get_prefix(&ep, &p), vec![]);

    // A running holder keeps its own lease alive: it cannot be extended from outside.
    let dir = scratch_dir();
    let mut holder = bg(
        &etcd,
        &p,
        &["--lock-name=db", "--", "sleep", "30"],
        dir.path(),
        "run",
    );
    let kv = wait_contenders(&ep, &p, "db", 1).remove(0);
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--extend=1h"]));
    let line = r.code(2).one_error_line();
    assert!(line.contains("running") && line.contains("--lock"), "{r}");
    assert_eq!(get_key(&ep, &kv.key), Some(kv), "untouched");
    holder.signal(Signal::SIGTERM);
    holder.wait_code(DEADLINE);

    // etcdctl's key is etcdctl's.
    let _ctl = etcdctl_lock(&ep, &format!("{p}db"), &[]);
    let kv = wait_contenders(&ep, &p, "db", 1).remove(0);
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--extend=never"]));
    assert!(r.code(2).one_error_line().contains("--lock"), "{r}");
    assert_eq!(get_key(&ep, &kv.key), Some(kv));
}

// ---------------------------------------------------------------------------------------------
// --max-holders

/// A critical section that counts who is inside: each holder drops a file named after its
/// kind (`s` for the semaphore, `x` for etcdctl) into `inside`, looks at everyone there when it
/// enters and before it leaves, and appends `kind total exclusive` for both looks to `log`.
fn counting_section(inside: &Path, log: &Path, kind: &str) -> String {
    let (inside, log) = (inside.display(), log.display());
    format!(
        "f='{inside}'/{kind}-$$; touch \"$f\"; \
         a=$(ls '{inside}' | wc -l); ax=$(ls '{inside}' | grep -c '^x-'); sleep 0.2; \
         b=$(ls '{inside}' | wc -l); bx=$(ls '{inside}' | grep -c '^x-'); rm \"$f\"; \
         echo {kind} $a $ax >> '{log}'; echo {kind} $b $bx >> '{log}'"
    )
}

#[test]
fn never_more_than_n_holders_under_contention_with_etcdctl_mixed_in() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sem-safe"));
    let dir = scratch_dir();
    let inside = dir.path().join("inside");
    std::fs::create_dir(&inside).unwrap();
    let log = dir.path().join("log");
    let name = "rolling";
    let mut all = Vec::new();
    for i in 0..12 {
        let section = counting_section(&inside, &log, "s");
        all.push(bg(
            &etcd,
            &p,
            &[
                &format!("--lock-name={name}"),
                "--max-holders=3",
                "--",
                "sh",
                "-c",
                &section,
            ],
            dir.path(),
            &format!("distlock-{i}"),
        ));
        if i % 4 == 1 {
            let section = counting_section(&inside, &log, "x");
            all.push(etcdctl_lock(
                &ep,
                &format!("{p}{name}"),
                &["sh", "-c", &section],
            ));
        }
    }
    for mut c in all {
        let what = c.what().to_string();
        assert_eq!(
            c.wait_code(Duration::from_secs(60)),
            0,
            "{what}: {}",
            c.report()
        );
    }
    let lines = read_lines(&log);
    assert_eq!(lines.len(), 2 * 15, "every section ran: {lines:?}");
    let mut most = 0;
    for line in &lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (total, exclusive): (u32, u32) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        match f[0] {
            "s" => assert!(total <= 3 && exclusive == 0, "{line}: {lines:?}"),
            _ => assert_eq!((total, exclusive), (1, 1), "etcdctl runs alone: {lines:?}"),
        }
        most = most.max(total);
    }
    assert!(most >= 2, "the semaphore let several in at once: {lines:?}");
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn nine_runs_of_three_holders_finish_in_three_rounds() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sem-live"));
    let dir = scratch_dir();
    let log = dir.path().join("times");
    // An etcdctl holder first, so that all nine are queued before any of them starts.
    let gate = etcdctl_lock(&ep, &format!("{p}batch"), &[]);
    wait_contenders(&ep, &p, "batch", 1);
    let script = format!(
        "s=$(date +%s%N); sleep 0.8; e=$(date +%s%N); echo $s $e >> '{}'",
        log.display()
    );
    let mut runs = Vec::new();
    for i in 0..9 {
        runs.push(bg(
            &etcd,
            &p,
            &[
                "--lock-name=batch",
                "--max-holders=3",
                "--",
                "sh",
                "-c",
                &script,
            ],
            dir.path(),
            &format!("run-{i}"),
        ));
        wait_contenders(&ep, &p, "batch", i + 2);
    }
    gate.signal(Signal::SIGTERM);
    for mut r in runs {
        assert_eq!(r.wait_code(Duration::from_secs(60)), 0, "{}", r.report());
    }
    let mut times: Vec<(f64, f64)> = read_lines(&log)
        .iter()
        .map(|l| {
            let (s, e) = l.split_once(' ').unwrap();
            (
                s.parse::<f64>().unwrap() / 1e9,
                e.parse::<f64>().unwrap() / 1e9,
            )
        })
        .collect();
    assert_eq!(times.len(), 9);
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut ends: Vec<f64> = times.iter().map(|t| t.1).collect();
    ends.sort_by(f64::total_cmp);
    // Never more than three at once, and no slot stays empty while someone waits: the k-th
    // start (k >= 3) follows the (k-3)-th end closely (a missed wake-up would cost a round).
    for (k, (start, _)) in times.iter().enumerate().skip(3) {
        let freed = ends[k - 3];
        assert!(
            *start >= freed - 0.05,
            "run {k} started before a slot was free: {times:?}"
        );
        assert!(
            start - freed < 0.5,
            "run {k} waited {:.2} s with a free slot: {times:?}",
            start - freed
        );
    }
    // So the nine ran in three rounds.
    let span = ends[8] - times[0].0;
    assert!(
        span < 4.0 * 0.8,
        "{span:.2} s for three rounds of 0.8 s: {times:?}"
    );
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

/// Holders leave in another order than they came, and the waiter behind learns who is
/// ahead of it from the record its predecessor writes on taking the lock (no read): queued
/// A B C W1 W2 with N=3, B leaves and W1 takes its place, then C (a key W1's record names,
/// not the oldest) leaves, and W2 must get in beside A and W1, which hold until W2 has run.
/// A wake-up missed, or a key counted wrongly, leaves them all waiting: the runs time out.
#[test]
fn a_slot_freed_out_of_order_goes_to_the_next_waiter() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sem-order"));
    let dir = scratch_dir();
    let d = dir.path().display();
    let until = |file: &str| format!("while [ ! -e '{d}/{file}' ]; do sleep 0.05; done");
    // Each holder marks itself inside while it holds; W2 counts who is inside with it.
    let hold = |who: &str, file: &str| {
        format!(
            "touch '{d}/in-{who}' '{d}/{who}'; {}; rm '{d}/in-{who}'",
            until(file)
        )
    };
    let runs = [
        ("A", hold("A", "W2")),
        ("B", hold("B", "go-b")),
        ("C", hold("C", "go-c")),
        ("W1", hold("W1", "W2")),
        (
            "W2",
            format!("ls '{d}' | grep -c '^in-' > '{d}/beside'; touch '{d}/W2'"),
        ),
    ];
    let mut started = Vec::new();
    for (i, (what, script)) in runs.iter().enumerate() {
        started.push(bg(
            &etcd,
            &p,
            &[
                "--lock-name=pool",
                "--max-holders=3",
                "--",
                "sh",
                "-c",
                script,
            ],
            dir.path(),
            what,
        ));
        wait_contenders(&ep, &p, "pool", i + 1);
    }
    write_file(dir.path(), "go-b", "");
    wait_for(DEADLINE, "W1 to take B's slot", || {
        dir.path().join("W1").exists()
    });
    write_file(dir.path(), "go-c", "");
    for mut r in started {
        let what = r.what().to_string();
        assert_eq!(r.wait_code(DEADLINE), 0, "{what}: {}", r.report());
    }
    assert_eq!(
        read_lines(&dir.path().join("beside")),
        ["2"],
        "A and W1 only"
    );
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn a_run_with_another_number_of_holders_is_refused_and_leaves_no_key() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sem-n"));
    let (key, _) = lock(&etcd, &p, "pool", &["--max-holders=3"]);
    for (args, ours) in [
        (&["--max-holders=2", "--", "true"][..], "2"),
        (&["--", "true"][..], "1"),
        (&["--shared", "--lock"][..], "1"),
    ] {
        let mut all = vec!["--lock-name=pool"];
        all.extend(args);
        let r = run(distlock(&etcd, &p).args(&all));
        let line = r.code(2).one_error_line();
        assert!(
            line.contains("--max-holders=3") && line.contains(&format!("--max-holders={ours}")),
            "names both numbers: {r}"
        );
        let keys: Vec<String> = contenders(&ep, &p, "pool")
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(keys, std::slice::from_ref(&key), "no key left behind: {r}");
    }
    // With the same number it takes a second place at once, and a third.
    lock(&etcd, &p, "pool", &["--max-holders=3", "--nowait"]);
    lock(&etcd, &p, "pool", &["--max-holders=3", "--nowait"]);
    // Full: --nowait is busy, and writes nothing.
    let before = revision(&ep);
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=pool",
        "--max-holders=3",
        "--nowait",
        "--",
        "true",
    ]));
    assert!(r.code(1).one_error_line().contains("busy"), "{r}");
    assert_eq!(revision(&ep), before, "a busy --nowait wrote to etcd: {r}");
}

#[test]
fn status_and_list_show_n_every_holder_and_the_waiters() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sem-show"));
    let dir = scratch_dir();
    let keys: Vec<String> = (0..3)
        .map(|i| {
            lock(
                &etcd,
                &p,
                "pool",
                &["--max-holders=3", &format!("--reason=node-{i}")],
            )
            .0
        })
        .collect();
    let _waiter = bg(
        &etcd,
        &p,
        &["--lock-name=pool", "--max-holders=3", "--", "true"],
        dir.path(),
        "waiter",
    );
    wait_contenders(&ep, &p, "pool", 4);

    let r = run(distlock(&etcd, &p).args(["--lock-name=pool", "--status", "--output=json"]));
    let v = r.code(0).json();
    assert_eq!(v["max_holders"], 3, "{v}");
    let holders = v["holders"].as_array().expect("holders");
    let shown: Vec<&str> = holders.iter().map(|h| h["key"].as_str().unwrap()).collect();
    assert_eq!(shown, keys, "{v}");
    assert_eq!(
        v["holder"]["key"],
        keys[0].as_str(),
        "the first holder, as before: {v}"
    );
    assert_eq!(v["waiters"].as_array().map(Vec::len), Some(1), "{v}");
    for c in holders.iter().chain(v["waiters"].as_array().unwrap()) {
        assert_eq!(c["access"], "semaphore", "{v}");
    }

    let r = run(distlock(&etcd, &p).args(["--lock-name=pool", "--status"]));
    r.code(0);
    assert!(r.stdout.starts_with("pool: held by 3 of at most 3"), "{r}");
    for key in &keys {
        assert!(r.stdout.contains(key.as_str()), "every holder's key: {r}");
    }
    assert!(r.stdout.contains("waiting 1 (semaphore): "), "{r}");

    let r = run(distlock(&etcd, &p).args(["--list", "--output=json"]));
    let v = r.code(0).json();
    let pool = &v["locks"][0];
    assert_eq!(pool["max_holders"], 3, "{v}");
    assert_eq!(pool["holders"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(pool["waiting"], 1, "{v}");
    let r = run(distlock(&etcd, &p).arg("--list"));
    let row = r
        .code(0)
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(row.contains("3/3"), "holders of N: {r}");
}

#[test]
fn unlock_must_name_a_holder_when_several_hold() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sem-unlock"));
    let keys: Vec<String> = (0..2)
        .map(|_| lock(&etcd, &p, "pool", &["--max-holders=2"]).0)
        .collect();
    let r = run(distlock(&etcd, &p).args(["--lock-name=pool", "--unlock"]));
    let line = r.code(2).one_error_line();
    assert!(
        line.contains(&keys[0]) && line.contains(&keys[1]) && line.contains("--unlock=KEY"),
        "{r}"
    );
    assert_eq!(contenders(&ep, &p, "pool").len(), 2, "nothing removed");

    let r = run(distlock(&etcd, &p).args(["--lock-name=pool", &format!("--unlock={}", keys[1])]));
    r.code(0);
    let left: Vec<String> = contenders(&ep, &p, "pool")
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(left, [keys[0].clone()]);
    // A key that does not hold the lock: as for a free lock.
    let r = run(distlock(&etcd, &p).args(["--lock-name=pool", &format!("--unlock={}", keys[1])]));
    r.code(1);
    // One holder left: a bare --unlock works as before; the lease id alone names it too.
    let hex = keys[0].rsplit('/').next().unwrap();
    run(distlock(&etcd, &p).args(["--lock-name=pool", &format!("--unlock={hex}")])).code(0);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn extend_must_name_a_holder_when_several_hold() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sem-extend"));
    let keys: Vec<String> = (0..2)
        .map(|_| lock(&etcd, &p, "pool", &["--max-holders=2", "--ttl=60"]).0)
        .collect();
    let before: Vec<Kv> = keys.iter().map(|k| get_key(&ep, k).unwrap()).collect();

    let r = run(distlock(&etcd, &p).args(["--lock-name=pool", "--extend=2h"]));
    let line = r.code(2).one_error_line();
    assert!(
        line.contains(&keys[0]) && line.contains(&keys[1]) && line.contains("--holder=KEY"),
        "{r}"
    );
    // A key that does not hold the lock: nothing to extend, as for a free lock.
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=pool",
        "--extend=2h",
        &format!("--holder={p}pool/77"),
    ]));
    r.code(1);
    let now: Vec<Kv> = keys.iter().map(|k| get_key(&ep, k).unwrap()).collect();
    assert_eq!(now, before, "nothing changed");

    // Named by its lease id, as --status shows it: only that holder moves to a 2h lease.
    let hex = keys[1].rsplit('/').next().unwrap();
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=pool",
        "--extend=2h",
        &format!("--holder={hex}"),
    ]));
    r.code(0);
    assert_eq!(get_key(&ep, &keys[0]), Some(before[0].clone()), "untouched");
    let extended = get_key(&ep, &keys[1]).unwrap();
    assert_eq!(extended.create_revision, before[1].create_revision);
    assert_eq!(
        lease_ttl(&ep, extended.lease).map(|(_, granted)| granted),
        Some(7200)
    );

    for key in &keys {
        run(distlock(&etcd, &p).args(["--lock-name=pool", "--unlock", &format!("--holder={key}")]))
            .code(0);
    }
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

// ---------------------------------------------------------------------------------------------
// --shared

#[test]
fn shared_holders_run_together_and_an_exclusive_one_alone() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("shared"));
    let (a, _) = lock(&etcd, &p, "backup", &["--shared"]);
    let (b, _) = lock(&etcd, &p, "backup", &["--shared", "--nowait"]);
    let r = run(distlock(&etcd, &p).args(["--lock-name=backup", "--nowait", "--", "true"]));
    r.code(1);
    let r = run(distlock(&etcd, &p).args(["--lock-name=backup", "--status", "--output=json"]));
    let v = r.code(0).json();
    let holders: Vec<&str> = v["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["key"].as_str().unwrap())
        .collect();
    assert_eq!(holders, [a.as_str(), b.as_str()], "{v}");
    assert_eq!(v["holders"][1]["access"], "shared", "{v}");

    // etcdctl is exclusive: it waits for both shared holders, and no shared one joins it.
    let dir = scratch_dir();
    let ran = dir.path().join("etcdctl-ran");
    let mut ctl = etcdctl_lock(
        &ep,
        &format!("{p}backup"),
        &["sh", "-c", &format!("touch '{}'; sleep 1", ran.display())],
    );
    wait_contenders(&ep, &p, "backup", 3);
    run(distlock(&etcd, &p).args(["--lock-name=backup", &format!("--unlock={a}")])).code(0);
    assert!(!ran.exists(), "etcdctl ran beside a shared holder");
    run(distlock(&etcd, &p).args(["--lock-name=backup", "--unlock"])).code(0);
    wait_for(DEADLINE, "etcdctl's command", || ran.exists());
    let r =
        run(distlock(&etcd, &p).args(["--lock-name=backup", "--shared", "--nowait", "--", "true"]));
    r.code(1);
    assert_eq!(ctl.wait_code(DEADLINE), 0);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn a_shared_contender_queues_behind_a_waiting_exclusive_one() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("shared-fifo"));
    let dir = scratch_dir();
    let order = dir.path().join("order");
    let note = |what: &str| format!("echo {what} >> '{}'", order.display());
    let (reader, _) = lock(&etcd, &p, "db", &["--shared"]);
    let mut writer = bg(
        &etcd,
        &p,
        &[
            "--lock-name=db",
            "--",
            "sh",
            "-c",
            &format!("{}; sleep 0.3; {}", note("w+"), note("w-")),
        ],
        dir.path(),
        "writer",
    );
    wait_contenders(&ep, &p, "db", 2);
    // Only a shared holder holds, but a writer waits: a new reader queues behind it, so a
    // --nowait one is busy (and writes nothing).
    let before = revision(&ep);
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--shared", "--nowait", "--", "true"]));
    r.code(1);
    assert_eq!(revision(&ep), before, "{r}");
    let readers: Vec<Background> = (0..2)
        .map(|i| {
            let b = bg(
                &etcd,
                &p,
                &["--lock-name=db", "--shared", "--", "sh", "-c", &note("r")],
                dir.path(),
                &format!("reader-{i}"),
            );
            wait_contenders(&ep, &p, "db", 3 + i);
            b
        })
        .collect();
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status"]));
    let text = &r.code(0).stdout;
    assert!(
        text.contains("exclusive") && text.contains("shared"),
        "modes shown: {r}"
    );

    run(distlock(&etcd, &p).args(["--lock-name=db", &format!("--unlock={reader}")])).code(0);
    assert_eq!(writer.wait_code(DEADLINE), 0, "{}", writer.report());
    for mut r in readers {
        assert_eq!(r.wait_code(DEADLINE), 0, "{}", r.report());
    }
    assert_eq!(read_lines(&order), ["w+", "w-", "r", "r"]);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn extend_leaves_alone_a_head_waiter_that_has_not_taken_the_lock_yet() {
    // A --lock waiter is at the head of the queue but has not claimed the lock (paused right
    // as etcdctl's holder leaves): by rule it holds, but its record does not say so. Moving
    // its key to another lease would orphan it; --extend must refuse and change nothing.
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("extend-head"));
    let dir = scratch_dir();
    let ctl = etcdctl_lock(&ep, &format!("{p}db"), &[]);
    wait_contenders(&ep, &p, "db", 1);
    let mut waiter = bg(&etcd, &p, &["--lock-name=db", "--lock"], dir.path(), "lock");
    let kv = wait_contenders(&ep, &p, "db", 2).remove(1);
    waiter.signal(Signal::SIGSTOP);
    // SIGTERM makes etcdctl release.
    ctl.signal(Signal::SIGTERM);
    assert_eq!(wait_contenders(&ep, &p, "db", 1), vec![kv.clone()]);

    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--extend=1h"]));
    let line = r.code(1).one_error_line();
    assert!(line.contains("has not taken it yet"), "{r}");
    assert_eq!(get_key(&ep, &kv.key), Some(kv.clone()), "untouched");

    // Once it runs again it takes the lock as usual, and then it can be extended.
    waiter.signal(Signal::SIGCONT);
    assert_eq!(waiter.wait_code(DEADLINE), 0, "{}", waiter.report());
    run(distlock(&etcd, &p).args(["--lock-name=db", "--extend=1h"])).code(0);
    run(distlock(&etcd, &p).args(["--lock-name=db", "--unlock"])).code(0);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

/// How a `--lock` run's record says it holds: the detaching write has it, the waiting key not.
const HELD: &[u8] = b"\"held\":true";

/// What a `--lock` run left: its etcd and prefix, its key, the run (exited) and its last line,
/// and the lease of the etcdctl holder it waited for.
struct Detached {
    etcd: Etcd,
    p: String,
    key: String,
    run: Background,
    line: String,
    etcdctl_lease: i64,
    /// What the proxy's rule saw: "detach" (once per try), then maybe "removal".
    notes: Vec<String>,
    _dir: tempfile::TempDir,
}

/// A `--lock --maxtime=1s` run through a proxy waits behind etcdctl's holder, which then
/// leaves; the run takes the lock and detaches its key, and etcd's answers from that write on
/// (which lands) are held back, past maxtime. With `answer_the_removal`, they go again once
/// the run writes to its key once more without a record (removing it). The run must exit 3.
fn detach_unanswered(extra: &[&str], answer_the_removal: bool) -> Detached {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("detach-unanswered"));
    let dir = scratch_dir();
    let proxy = H2Proxy::start(etcd.client_port());
    let ctl = etcdctl_lock(&ep, &format!("{p}db"), &[]);
    let etcdctl_lease = wait_contenders(&ep, &p, "db", 1)[0].lease;
    let mut cmd = distlock_std(&proxy.endpoint(), &p);
    cmd.args(["--lock-name=db", "--lock", "--maxtime=1s"])
        .args(extra);
    let mut run = Background::logged(cmd, dir.path(), "lock");
    let key = wait_contenders(&ep, &p, "db", 2).remove(1).key;
    // Its key waits with a record that says not held: the first one that says held is the
    // detach (and its retries).
    let mine = key.clone().into_bytes();
    let mut detached = false;
    proxy.steer(move |frame| {
        if frame.data_with(&[&mine, HELD]) {
            detached = true;
            return vec![
                Step::Note("detach".into()),
                Step::HoldAnswers(true),
                Step::Forward(frame),
            ];
        }
        if answer_the_removal && detached && frame.data_with(&[&mine]) && !frame.has(b"\"held\"") {
            return vec![
                Step::Note("removal".into()),
                Step::Forward(frame),
                Step::HoldAnswers(false),
            ];
        }
        vec![Step::Forward(frame)]
    });
    // SIGTERM makes etcdctl release.
    ctl.signal(Signal::SIGTERM);
    assert_eq!(run.wait_code(DEADLINE), 3, "{}", run.report());
    let notes = proxy.notes();
    assert_eq!(
        notes.first().map(String::as_str),
        Some("detach"),
        "{notes:?}"
    );
    drop(proxy);
    // Warnings may come first; the error is the last line.
    let line = run.stderr().lines().last().unwrap_or_default().to_string();
    assert!(line.starts_with("distlock: "), "{}", run.report());
    Detached {
        etcd,
        p,
        key,
        run,
        line,
        etcdctl_lease,
        notes,
        _dir: dir,
    }
}

#[test]
fn a_lock_whose_detach_lands_unanswered_removes_its_key_and_its_ttl_lease() {
    // The detach moved the key to a fresh --ttl lease, but no answer said so: left there, the
    // key would hold the lock for nobody until that lease ran out. distlock removes it
    // (guarded by its create revision; etcd answers that) and revokes the fresh lease.
    let d = detach_unanswered(&["--ttl=30"], true);
    let ep = d.etcd.endpoint();
    assert_eq!(get_prefix(&ep, &d.p), vec![], "{}", d.run.report());
    assert_eq!(
        d.notes.last().map(String::as_str),
        Some("removal"),
        "{:?}",
        d.notes
    );
    assert!(
        !d.line.contains(&d.key),
        "etcd answered the removal, so the lock is known to be free: {}",
        d.line
    );
    // etcdctl's session lease outlives its lock; any other would be the run's.
    let leases = etcdctl(&ep, ["lease", "list"]);
    let others: Vec<&str> = leases
        .lines()
        .skip(1)
        .filter(|l| i64::from_str_radix(l, 16) != Ok(d.etcdctl_lease))
        .collect();
    assert_eq!(
        others,
        Vec::<&str>::new(),
        "the --ttl lease and the run's own must be revoked: {}",
        d.run.report()
    );
}

#[test]
fn a_lock_that_cannot_tell_whether_it_holds_names_its_key() {
    // Neither the detach (to no lease: held until --unlock) nor the removal that follows gets
    // an answer: distlock cannot tell whether the lock is held. A key left in etcd that its
    // one line does not name would hold the lock for nobody, for good.
    let d = detach_unanswered(&[], false);
    let left = get_prefix(&d.etcd.endpoint(), &d.p);
    assert!(
        d.line.contains(&d.key),
        "the line must name {} as possibly held (left in etcd: {left:?}): {}",
        d.key,
        d.run.report()
    );
    assert!(
        left.iter().all(|kv| kv.key == d.key),
        "only the run's key may be left: {left:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// What --unlock and --extend say

/// `distlock: released NAME held by this host (HOST) pid PID (WHAT) for AGE` and `rest`
/// after the age: the whole line, checked, with the age between.
fn assert_released(line: &str, name: &str, pid: u32, what: &str, rest: &str) {
    let head = format!(
        "distlock: released {name} held by this host ({}) pid {pid} ({what}) for ",
        hostname()
    );
    let age = line
        .strip_prefix(&head)
        .and_then(|l| l.strip_suffix(rest))
        .unwrap_or_else(|| panic!("{line:?} is not {head:?}…{rest:?}"));
    humantime::parse_duration(age).unwrap_or_else(|e| panic!("age {age:?} in {line:?}: {e}"));
}

#[test]
fn unlock_says_whose_lock_it_released_and_what_becomes_of_its_command() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("unlock-says"));
    let dir = scratch_dir();

    // A --lock: its process is gone, there is no command to speak of.
    lock(&etcd, &p, "maint", &["--reason=Upgrade RPMs"]);
    let pid = contenders(&ep, &p, "maint")[0].json()["pid"]
        .as_u64()
        .unwrap() as u32;
    let r = run(distlock(&etcd, &p).args(["--lock-name=maint", "--unlock"]));
    let line = r.code(0).one_error_line().to_string();
    assert_eq!(r.stdout, "", "{r}");
    assert_released(
        &line,
        "maint",
        pid,
        "exited; --lock",
        " (reason \"Upgrade RPMs\")",
    );
    assert!(!line.contains("command"), "{r}");

    // A running command, stopped when its key goes (--on-lost=kill, the default).
    let mut runner = bg(
        &etcd,
        &p,
        &["--lock-name=job", "--reason=nightly", "--", "sleep", "60"],
        dir.path(),
        "runner",
    );
    wait_contenders(&ep, &p, "job", 1);
    let r = run(distlock(&etcd, &p).args(["--lock-name=job", "--unlock"]));
    let line = r.code(0).one_error_line().to_string();
    assert_released(
        &line,
        "job",
        runner.pid().as_raw() as u32,
        "running sleep",
        " (reason \"nightly\"); its command will be stopped",
    );
    assert_eq!(runner.wait_code(DEADLINE), 4, "{}", runner.report());

    // --on-lost=warn: its command is left to finish; the line says so, not "stopped".
    let warned = bg(
        &etcd,
        &p,
        &["--lock-name=warn", "--on-lost=warn", "--", "sleep", "60"],
        dir.path(),
        "warned",
    );
    wait_contenders(&ep, &p, "warn", 1);
    let r = run(distlock(&etcd, &p).args(["--lock-name=warn", "--unlock"]));
    let line = r.code(0).one_error_line().to_string();
    assert_released(
        &line,
        "warn",
        warned.pid().as_raw() as u32,
        "running sleep",
        "; its command is left to finish, and distlock there warns that the lock is lost \
         (--on-lost=warn)",
    );

    // --hold-at-least after its command ended: exited, nothing to stop.
    run(distlock(&etcd, &p).args(["--lock-name=held", "--hold-at-least=60", "--", "true"])).code(0);
    let kv = contenders(&ep, &p, "held").remove(0);
    assert!(seconds_from_now(&kv.json()["expires"]) > 50, "{}", kv.value);
    let r = run(distlock(&etcd, &p).args(["--lock-name=held", "--status"]));
    assert!(
        r.code(0)
            .stdout
            .lines()
            .next()
            .unwrap_or_default()
            .contains(" (exited; --hold-at-least), "),
        "{r}"
    );
    let pid = kv.json()["pid"].as_u64().unwrap() as u32;
    let r = run(distlock(&etcd, &p).args(["--lock-name=held", "--unlock"]));
    let line = r.code(0).one_error_line().to_string();
    assert_released(&line, "held", pid, "exited; --hold-at-least", "");

    // -q: nothing said, the exit code tells.
    lock(&etcd, &p, "quiet", &[]);
    let r = run(distlock(&etcd, &p).args(["--lock-name=quiet", "--unlock", "-q"]));
    assert_eq!(
        (r.code(0).stdout.as_str(), r.stderr.as_str()),
        ("", ""),
        "{r}"
    );
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn every_mode_that_json_covers_prints_one_json_object_on_stdout() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("json-modes"));
    let json = |args: &[&str], code: i32| {
        let r = run(distlock(&etcd, &p).args(args).arg("--output=json"));
        r.code(code);
        assert_eq!(r.stderr, "", "results go to stdout: {r}");
        r.json()
    };

    let v = json(
        &["--lock-name=db", "--lock", "--ttl=60", "--reason=maint"],
        0,
    );
    let key = v["key"].as_str().unwrap().to_string();
    let token = v["fencing_token"].as_i64().unwrap();

    // --extend: the key, its token, the lease it is on now and when it expires.
    let v = json(&["--lock-name=db", "--extend=2h"], 0);
    let kv = get_key(&ep, &key).unwrap();
    assert_eq!(v["lock"], "db", "{v}");
    assert_eq!(v["key"], key.as_str(), "{v}");
    assert_eq!(v["fencing_token"], token, "{v}");
    assert_eq!(v["lease"], format!("{:x}", kv.lease).as_str(), "{v}");
    assert_eq!(v["expires_in_seconds"], 7200, "{v}");
    assert!(
        (7190..=7200).contains(&seconds_from_now(&v["expires_at"])),
        "{v}"
    );
    let v = json(&["--lock-name=db", "--extend=never"], 0);
    assert!(
        v["lease"].is_null() && v["expires_in_seconds"].is_null() && v["expires_at"].is_null(),
        "{v}"
    );
    assert_eq!(v["key"], key.as_str(), "{v}");

    // --status and --list: held is 0.
    let v = json(&["--lock-name=db", "--status"], 0);
    assert_eq!(v["holder"]["key"], key.as_str(), "{v}");
    let v = json(&["--list"], 0);
    assert_eq!(v["locks"][0]["holder"]["key"], key.as_str(), "{v}");

    // --unlock: the contender it released, as --status shows contenders.
    let v = json(&["--lock-name=db", "--unlock"], 0);
    assert_eq!(v["lock"], "db", "{v}");
    let released = &v["released"];
    assert_eq!(released["key"], key.as_str(), "{v}");
    assert_eq!(released["fencing_token"], token, "{v}");
    assert_eq!(released["mode"], "lock", "{v}");
    assert_eq!(released["reason"], "maint", "{v}");
    assert_eq!(released["host"], hostname().as_str(), "{v}");
    assert_eq!(released["this_host"], true, "{v}");
    assert!(released["age_seconds"].is_u64(), "{v}");
    assert!(released["on_lost"].is_null(), "{v}");

    // Free: --status and --list exit 1, still with their JSON.
    let v = json(&["--lock-name=db", "--status"], 1);
    assert_eq!(v["held"], false, "{v}");
    let v = json(&["--list"], 1);
    assert_eq!(v["locks"], serde_json::json!([]), "{v}");
    assert_eq!(get_prefix(&ep, &p), vec![]);
}
