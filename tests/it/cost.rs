//! What distlock costs etcd, counted the way etcd counts it (its `/metrics`): a hand-over in a
//! queue costs a fixed number of requests however long the queue, and a `--nowait` run that
//! finds the lock busy writes nothing. These count requests and proposals; they time nothing.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;

/// The most etcd requests one acquisition in a queue may cost (docs/etcd-keys.md, "Round trips"),
/// without history (`--history-size=0`).
const REQUESTS_PER_ACQUISITION: f64 = 7.0;

/// The history costs one transaction per acquisition, after the release (docs/etcd-keys.md,
/// "History").
const HISTORY_REQUESTS: f64 = 1.0;

/// The same for a semaphore of 3 (docs/benchmark.md, "The semaphore beside the mutex"): a
/// waiter far back hears of two things, its predecessor taking the lock and then a holder
/// leaving, so it pays one watch more than in the mutex; never a read of the queue after
/// joining.
const SEMAPHORE_REQUESTS_PER_ACQUISITION: f64 = 9.0;
/// Joining and stamping are two; on a loaded machine a few waiters find a holder whose record
/// is not stamped yet and spend the claim transaction instead (docs/etcd-keys.md, "One write
/// between the event and the command"): 45 of 20 acquisitions were seen. A read of the queue
/// after joining would add one per acquisition, well past this.
const SEMAPHORE_TXNS_PER_ACQUISITION: f64 = 2.5;

/// The counters this file reads from etcd's `/metrics`, summed over their labels: unary calls
/// handled, watch messages sent, lease grants, raft proposals committed.
fn counters(etcd: &Etcd) -> HashMap<&'static str, f64> {
    let url = etcd.metrics_url();
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"));
    let (code, body) = http_get(port, "/metrics").expect("cannot read etcd's /metrics");
    assert_eq!(code, 200, "{url}: {body}");
    let mut c = HashMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = name_labels.split_once('{').unwrap_or((name_labels, ""));
        let key = match name {
            "grpc_server_handled_total" if labels.contains("grpc_type=\"unary\"") => {
                if labels.contains("grpc_method=\"LeaseGrant\"") {
                    *c.entry("grants").or_insert(0.0) += value;
                }
                if labels.contains("grpc_method=\"Txn\"") {
                    *c.entry("txns").or_insert(0.0) += value;
                }
                "unary"
            }
            "grpc_server_msg_sent_total"
                if labels.contains("grpc_service=\"etcdserverpb.Watch\"") =>
            {
                "watch"
            }
            "etcd_server_proposals_committed_total" => "proposals",
            _ => continue,
        };
        *c.entry(key).or_insert(0.0) += value;
    }
    c
}

fn grew(after: &HashMap<&str, f64>, before: &HashMap<&str, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

/// Runs `contenders` runs of `sleep 0.3` with `extra` arguments on one lock, all at once;
/// returns how etcd's counters grew over them, once settled.
fn queue_of(etcd: &Etcd, contenders: usize, extra: &[&str]) -> HashMap<&'static str, f64> {
    let (ep, p) = (etcd.endpoint(), prefix("cost"));
    let before = counters(etcd);
    // Each holds the lock 0.3 s, long enough to stamp its record and watch its own key, so
    // every step of an acquisition is paid; together they wait a few seconds, long enough for
    // waiting lines (not -q) and for a keepalive (counted apart, not here).
    let runs: Vec<Background> = (0..contenders)
        .map(|i| {
            let mut cmd = distlock_std(&ep, &p);
            cmd.arg("--lock-name=q")
                .args(extra)
                .args(["--", "sleep", "0.3"]);
            Background::spawn(cmd, &format!("contender {i}"))
        })
        .collect();
    for run in runs {
        let out = run.output(Duration::from_secs(60));
        assert_eq!(
            shell_status(out.status),
            0,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // etcd counts a watch message once it is sent; the last ones may lag the exits a moment.
    let after = wait_until(DEADLINE, "etcd's counters to settle", || {
        let a = counters(etcd);
        std::thread::sleep(Duration::from_millis(200));
        let b = counters(etcd);
        (a == b).then_some(b)
    });
    assert_eq!(get_prefix(&ep, &p), Vec::new(), "keys left behind");
    ["unary", "watch", "txns"]
        .into_iter()
        .map(|key| (key, grew(&after, &before, key)))
        .collect()
}

#[test]
fn a_hand_over_in_a_queue_of_twenty_costs_a_fixed_number_of_requests() {
    for (history, extra, most) in [
        ("off", "--history-size=0", REQUESTS_PER_ACQUISITION),
        (
            "on",
            "--history-size=20",
            REQUESTS_PER_ACQUISITION + HISTORY_REQUESTS,
        ),
    ] {
        let etcd = Etcd::start();
        const CONTENDERS: usize = 20;
        let grew = queue_of(&etcd, CONTENDERS, &[extra]);
        let per = (grew["unary"] + grew["watch"]) / CONTENDERS as f64;
        assert!(
            per <= most,
            "{per:.2} etcd requests per acquisition in a queue of {CONTENDERS} with history \
             {history} (at most {most}): {grew:?}"
        );
    }
}

#[test]
fn a_semaphore_hand_over_costs_a_fixed_number_of_requests_and_no_read() {
    for (history, extra, added) in [
        ("off", "--history-size=0", 0.0),
        ("on", "--history-size=20", HISTORY_REQUESTS),
    ] {
        let etcd = Etcd::start();
        const CONTENDERS: usize = 20;
        let grew = queue_of(&etcd, CONTENDERS, &["--max-holders=3", extra]);
        let per = (grew["unary"] + grew["watch"]) / CONTENDERS as f64;
        let most = SEMAPHORE_REQUESTS_PER_ACQUISITION + added;
        assert!(
            per <= most,
            "{per:.2} etcd requests per acquisition in a semaphore of 3 with {CONTENDERS} \
             contenders, history {history} (at most {most}): {grew:?}"
        );
        // Joining and stamping (and the history's write): a read of the queue after joining
        // would show here.
        let txns = grew["txns"] / CONTENDERS as f64;
        let most = SEMAPHORE_TXNS_PER_ACQUISITION + added;
        assert!(
            txns <= most,
            "{txns:.2} transactions per acquisition, history {history} (at most {most}): \
             {grew:?}"
        );
    }
}

#[test]
fn a_hundred_nowait_losers_write_nothing_and_leave_nothing() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("herd"));
    let r = run(distlock(&etcd, &p).args(["--lock-name=n", "--lock", "--reason=held"]));
    r.code(0);
    let held = get_prefix(&ep, &p);
    assert_eq!(held.len(), 1);

    const LOSERS: usize = 100;
    let before = counters(&etcd);
    let runs: Vec<Background> = (0..LOSERS)
        .map(|i| {
            let mut cmd = distlock_std(&ep, &p);
            // Half of them say it as --timeout=0.
            let wait = if i % 2 == 0 {
                "--nowait"
            } else {
                "--timeout=0"
            };
            cmd.args(["--lock-name=n", wait, "--", "true"]);
            Background::spawn(cmd, &format!("loser {i}"))
        })
        .collect();
    for run in runs {
        let out = run.output(Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(shell_status(out.status), 1, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("distlock: n is busy: held by "),
            "{stderr}"
        );
    }
    let after = counters(&etcd);
    assert_eq!(grew(&after, &before, "grants"), 0.0, "a loser took a lease");
    let proposals = grew(&after, &before, "proposals");
    assert!(
        proposals <= LOSERS as f64 * 0.1,
        "{proposals} raft proposals committed for {LOSERS} --nowait losers"
    );
    assert_eq!(
        get_prefix(&ep, &p),
        held,
        "the losers changed what is in etcd"
    );
}
