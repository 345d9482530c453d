//! The fleet's live view, against real etcd: `--list --follow` and `--status --follow` print
//! one line per event from one watch, resume after the watch breaks without missing anything,
//! and say when etcd compacted events away; `--list --output=prometheus` writes what
//! node_exporter's textfile collector reads, and `promtool check metrics` accepts it.
//!
//! Each test starts its own etcd and uses its own key prefix.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// A feed in the background, its stdout and stderr in files the test reads while it runs.
fn feed(endpoints: &str, p: &str, dir: &std::path::Path, args: &[&str], what: &str) -> Background {
    let mut cmd = distlock_std(endpoints, p);
    cmd.args(args);
    let feed = Background::logged(cmd, dir, what);
    // It has read the locks and opened its watch once it says so.
    wait_for(DEADLINE, "the feed to start", || {
        feed.stderr().contains("following")
    });
    feed
}

/// The feed's lines so far.
fn lines(dir: &std::path::Path, what: &str) -> Vec<String> {
    read_lines(&dir.join(format!("{what}.stdout")))
}

/// Waits until the feed has printed a line containing each of `wanted`, in this order, and
/// returns its lines.
fn wait_lines(dir: &std::path::Path, what: &str, wanted: &[&str]) -> Vec<String> {
    wait_until(DEADLINE, &format!("{what} to print {wanted:?}"), || {
        let lines = lines(dir, what);
        let mut rest = lines.iter();
        wanted
            .iter()
            .all(|w| rest.any(|l| l.contains(w)))
            .then_some(lines.clone())
    })
}

/// The events of JSON lines: (event, lock).
fn events(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            (
                v["event"].as_str().unwrap_or_default().to_string(),
                v["lock"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn list_follow_tells_a_queue_as_it_happens_in_text_and_json() {
    let etcd = Etcd::start();
    let p = prefix("follow");
    let dir = scratch_dir();
    let ep = etcd.endpoint();
    lock(&etcd, &p, "maint", &["--reason=kernel"]);
    let text = feed(&ep, &p, dir.path(), &["--list", "--follow"], "text");
    let json = feed(
        &ep,
        &p,
        dir.path(),
        &["--list", "--follow", "--output=json"],
        "json",
    );

    // A --lock holds "b"; a run queues behind it, takes it when it is unlocked, and lets go.
    lock(&etcd, &p, "b", &[]);
    let mut cmd = distlock_std(&ep, &p);
    cmd.args(["--lock-name=b", "--", "true"]);
    let mut waiter = Background::spawn(cmd, "waiter");
    wait_contenders(&ep, &p, "b", 2);
    run(distlock(&etcd, &p).args(["--lock-name=b", "--unlock"])).code(0);
    assert_eq!(waiter.wait_code(DEADLINE), 0);

    let want = [
        ("holds", "maint"),
        ("took", "b"),
        ("queued", "b"),
        ("unlocked", "b"),
        ("took", "b"),
        ("released", "b"),
    ];
    // Each run and each --lock/--unlock pair also leaves a history entry, after its release:
    // the --lock's at once, the --unlock's and the waiter's in either order (the waiter may
    // take, run and let go before the --unlock has written its entry).
    let entries_and_release = |what: &str, history: &str, released: &str| {
        wait_until(
            DEADLINE,
            &format!("{what}: three entries and the release"),
            || {
                let lines = lines(dir.path(), what);
                let entries = lines.iter().filter(|l| l.contains(history)).count();
                (entries == 3 && lines.iter().any(|l| l.contains(released))).then_some(lines)
            },
        )
    };
    let text_lines = entries_and_release("text", " history b: ", "released b");
    let (history, text_lines): (Vec<String>, Vec<String>) = text_lines
        .into_iter()
        .partition(|l| l.contains(" history "));
    let host = hostname();
    assert!(history[0].ends_with(": held"), "{history:?}");
    let unlocked = format!(": unlocked by {host}; held ");
    assert!(history.iter().any(|l| l.contains(&unlocked)), "{history:?}");
    assert!(
        history.iter().any(|l| l.contains(" true: exit 0; held ")),
        "{history:?}"
    );
    let said: Vec<(String, String)> = text_lines
        .iter()
        .map(|l| {
            let mut words = l.split_whitespace().skip(1);
            let kind = words.next().unwrap_or_default().to_string();
            let lock = words.next().unwrap_or_default().trim_end_matches(':');
            (kind, lock.to_string())
        })
        .collect();
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, l)| (k.to_string(), l.to_string()))
        .collect();
    assert_eq!(said, want, "{}", text.report());
    assert!(text_lines[0].contains(r#""kernel""#), "{}", text.report());

    let json_lines = entries_and_release("json", r#""event":"history""#, r#""released""#);
    let (history, json_lines): (Vec<String>, Vec<String>) = json_lines
        .into_iter()
        .partition(|l| l.contains(r#""event":"history""#));
    assert_eq!(events(&json_lines), want, "{}", json.report());
    let entry: Value = history
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["entry"]["outcome"] == "exit")
        .unwrap_or_else(|| panic!("no run's entry: {history:?}"));
    assert_eq!(entry["entry"]["outcome"], "exit", "{entry}");
    assert_eq!(entry["entry"]["exit_code"], 0, "{entry}");
    let revisions: Vec<i64> = json_lines
        .iter()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["revision"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] <= w[1]), "{revisions:?}");
    let took: Value = serde_json::from_str(&json_lines[1]).unwrap();
    assert_eq!(took["contender"]["mode"], "lock", "{took}");
    assert_eq!(took["contender"]["host"], hostname().as_str(), "{took}");
}

#[test]
fn status_follow_shows_one_lock_and_ends_on_sigterm_with_exit_0() {
    let etcd = Etcd::start();
    let p = prefix("follow-one");
    let dir = scratch_dir();
    let ep = etcd.endpoint();
    let mut mine = feed(
        &ep,
        &p,
        dir.path(),
        &["--lock-name=mine", "--status", "--follow"],
        "mine",
    );
    lock(&etcd, &p, "other", &[]);
    lock(&etcd, &p, "mine", &[]);
    // The --lock's history entry follows its take.
    let said = wait_lines(dir.path(), "mine", &["took mine", "history mine"]);
    assert_eq!(said.len(), 2, "only lock mine's events: {said:?}");
    let keys_before = etcd.keys(&p);
    mine.signal(Signal::SIGTERM);
    assert_eq!(mine.wait_code(DEADLINE), 0, "{}", mine.report());
    assert_eq!(etcd.keys(&p), keys_before, "a feed writes nothing");
}

#[test]
fn a_feed_whose_reader_went_away_ends() {
    let etcd = Etcd::start();
    let p = prefix("follow-pipe");
    // Held before the feed starts, so that its first line is the same every time.
    lock(&etcd, &p, "a", &[]);
    let mut cmd = distlock_std(&etcd.endpoint(), &p);
    cmd.args(["--list", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut feed = Background::spawn(cmd, "feed");
    let stdout = feed.child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.contains("holds a"), "{first}");
    // The reader is gone (`| head -1`): the next line cannot be written, and the feed ends.
    lock(&etcd, &p, "b", &[]);
    let status = feed.wait(DEADLINE);
    assert_eq!(shell_status(status), 0);
}

#[test]
fn a_broken_watch_resumes_where_it_was_without_missing_events() {
    let mut cluster = EtcdCluster::start(3);
    let p = prefix("follow-resume");
    let dir = scratch_dir();
    // The feed talks to member 0 only; the locks are taken through the others.
    let feed_ep = cluster.endpoint(0);
    let others = format!("{},{}", cluster.endpoint(1), cluster.endpoint(2));
    let mut follow = feed(&feed_ep, &p, dir.path(), &["--list", "--follow"], "feed");
    cluster.kill(0);
    let r = run(distlock_at(&others, &p).args(["--lock-name=during", "--lock"]));
    r.code(0);
    cluster.restart(0);
    let said = wait_lines(dir.path(), "feed", &["resumed", "took during"]);
    assert!(
        !said.iter().any(|l| l.contains("compacted")),
        "{}",
        follow.report()
    );
    follow.signal(Signal::SIGTERM);
    assert_eq!(follow.wait_code(DEADLINE), 0, "{}", follow.report());
}

#[test]
fn a_feed_says_when_etcd_compacted_the_events_it_missed() {
    let mut cluster = EtcdCluster::start(3);
    let p = prefix("follow-compact");
    let dir = scratch_dir();
    let feed_ep = cluster.endpoint(0);
    let others = format!("{},{}", cluster.endpoint(1), cluster.endpoint(2));
    let follow = feed(
        &feed_ep,
        &p,
        dir.path(),
        &["--list", "--follow", "--output=json"],
        "feed",
    );
    cluster.kill(0);
    run(distlock_at(&others, &p).args(["--lock-name=gone", "--", "true"])).code(0);
    run(distlock_at(&others, &p).args(["--lock-name=kept", "--lock"])).code(0);
    // The --lock's key was the last write: compacting at it drops every revision the feed
    // has not seen.
    let rev = contenders(&others, &p, "kept")[0].mod_revision;
    etcdctl(&others, ["compact", &rev.to_string()]);
    cluster.restart(0);
    let said = wait_lines(dir.path(), "feed", &[r#""compacted""#, r#""took""#]);
    let told = events(&said);
    // Only what the read afresh shows: "kept" is held; "gone" came and went unseen.
    assert_eq!(
        told,
        vec![
            ("compacted".into(), String::new()),
            ("took".into(), "kept".into())
        ],
        "{}",
        follow.report()
    );
    let compacted: Value = serde_json::from_str(&said[0]).unwrap();
    assert!(
        compacted["compacted_revision"].as_i64() >= Some(rev),
        "{compacted}"
    );
}

#[test]
fn follow_and_prometheus_go_only_where_they_mean_something() {
    let etcd = Etcd::start();
    let p = prefix("follow-usage");
    for args in [
        &["--lock-name=x", "--follow", "--", "true"][..],
        &["--lock-name=x", "--lock", "--follow"],
        &["--lock-name=x", "--status", "--output=prometheus"],
        &["--list", "--follow", "--output=prometheus"],
        &["--lock-name=x", "--lock", "--output=prometheus"],
    ] {
        let r = run(distlock(&etcd, &p).args(args));
        r.code(2).one_error_line();
    }
    assert!(etcd.keys(&p).is_empty(), "bad input writes nothing");
}

/// The value of `series` (`name{lock="x"}`) in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn list_as_prometheus_metrics_that_promtool_accepts() {
    let etcd = Etcd::start();
    let p = prefix("metrics");
    let ep = etcd.endpoint();
    lock(&etcd, &p, "window", &["--ttl=1h"]);
    lock(&etcd, &p, "sem", &["--max-holders=3"]);
    lock(&etcd, &p, r#"odd"name\x"#, &[]);
    // A job that failed and holds nothing now: free, and its last run's end from the history.
    run(distlock(&etcd, &p).args(["--lock-name=job", "--", "sh", "-c", "exit 3"])).code(3);
    let mut cmd = distlock_std(&ep, &p);
    cmd.args(["--lock-name=window", "--", "true"]);
    let _waiter = Background::spawn(cmd, "waiter");
    wait_contenders(&ep, &p, "window", 2);

    let r = run(distlock(&etcd, &p).args(["--list", "--output=prometheus"]));
    r.code(0);
    let m = &r.stdout;
    assert_eq!(
        sample(m, r#"distlock_lock_holders{lock="window"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(m, r#"distlock_lock_waiters{lock="window"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(m, r#"distlock_lock_max_holders{lock="sem"}"#),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(m, r#"distlock_lock_holders{lock="odd\"name\\x"}"#),
        Some(1.0),
        "{m}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiry = sample(
        m,
        r#"distlock_lock_expiry_timestamp_seconds{lock="window"}"#,
    )
    .unwrap_or_else(|| panic!("no expiry for window: {m}"));
    assert!(
        (expiry - now - 3600.0).abs() < 60.0,
        "{expiry} vs {now}: {m}"
    );
    assert_eq!(
        sample(m, r#"distlock_lock_expiry_timestamp_seconds{lock="sem"}"#),
        None,
        "a lock held until unlocked has no expiry: {m}"
    );
    assert_eq!(
        sample(m, r#"distlock_lock_holders{lock="job"}"#),
        Some(0.0),
        "{m}"
    );
    let last = r#"distlock_lock_last_outcome{lock="job",outcome="exit"}"#;
    assert_eq!(sample(m, last), Some(1.0), "{m}");
    assert_eq!(
        sample(m, r#"distlock_lock_last_exit_code{lock="job"}"#),
        Some(3.0),
        "{m}"
    );
    let ended = sample(
        m,
        r#"distlock_lock_last_released_timestamp_seconds{lock="job"}"#,
    )
    .unwrap_or_else(|| panic!("no end for job: {m}"));
    assert!((now - ended).abs() < 60.0, "{ended} vs {now}: {m}");
    let held = r#"distlock_lock_last_outcome{lock="window",outcome="held"}"#;
    assert_eq!(
        sample(m, held),
        Some(1.0),
        "a --lock's entry until --unlock: {m}"
    );

    if !needs(&[Need::Program("promtool")]) {
        return;
    }
    let mut check = Command::new("promtool");
    check.args(["check", "metrics"]).stdin(Stdio::piped());
    let mut child = check
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{m}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_empty_list_as_metrics_is_valid_and_exits_0() {
    let etcd = Etcd::start();
    let p = prefix("metrics-none");
    let r = run(distlock(&etcd, &p).args(["--list", "--output=prometheus"]));
    r.code(0);
    assert!(r.stdout.lines().all(|l| l.starts_with('#')), "{r}");
}
