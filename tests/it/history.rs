//! The lock's history (`history_size`, `--history`): what each run, `--lock`/`--unlock` pair
//! and forced release leaves in etcd under `<prefix>.distlock/history/<name>/`, how it is
//! trimmed, and that it never gets in the way of the lock (`--list`, `etcdctl lock`, a role
//! that may not write it).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::*;

/// `--history --output=json` of lock `name`: the entries, newest first.
fn history(etcd: &Etcd, p: &str, name: &str) -> Vec<Value> {
    let r =
        run(distlock(etcd, p).args([&format!("--lock-name={name}"), "--history", "--output=json"]));
    r.code(0);
    r.json()
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("not a list: {r}"))
}

/// The newest entry of lock `name`.
fn newest(etcd: &Etcd, p: &str, name: &str) -> Value {
    history(etcd, p, name)
        .into_iter()
        .next()
        .expect("no history entry")
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[test]
fn each_run_leaves_one_entry_saying_who_when_and_how_it_ended() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("hist-runs"));
    let before = SystemTime::now() - Duration::from_secs(1);
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=db",
        "--reason=nightly backup",
        "--",
        "sh",
        "-c",
        "echo $DISTLOCK_FENCING_TOKEN; sleep 0.5",
    ]));
    r.code(0);
    let token: i64 = r.stdout.trim().parse().unwrap();
    let e = newest(&etcd, &p, "db");
    assert_eq!(e["format"], 1);
    assert_eq!(e["lock"], "db");
    assert_eq!(e["token"], token);
    assert_eq!(e["host"], hostname().as_str());
    assert_eq!(e["user"], username().as_str());
    assert!(e["pid"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(e["reason"], "nightly backup");
    assert_eq!(e["mode"], "run");
    assert_eq!(e["program"], "sh");
    assert_eq!(e["outcome"], "exit");
    assert_eq!(e["exit_code"], 0);
    assert_eq!(e["signal"], Value::Null);
    let (queued, took, released) = (time(&e["queued"]), time(&e["took"]), time(&e["released"]));
    assert!(
        before <= queued && queued <= took && took <= released,
        "{e}"
    );
    assert!(released <= SystemTime::now(), "{e}");
    assert!(e["held_s"].as_f64().unwrap() >= 0.5, "{e}");
    assert!(e["waited_s"].as_f64().unwrap() >= 0.0, "{e}");
    // Its key: the token, zero-padded, outside the lock's directory.
    let kvs = history_kvs(&ep, &p, "db");
    assert_eq!(kvs.len(), 1);
    assert_eq!(kvs[0].key, format!("{p}.distlock/history/db/{token:020}"));
    assert_eq!(kvs[0].lease, 0, "an entry outlives the run");
    assert_eq!(get_prefix(&ep, &format!("{p}db")), Vec::new());

    // Exit 3, a signal, --max-runtime: each ends as it did, with the exit code the caller saw.
    run(distlock(&etcd, &p).args(["--lock-name=db", "--", "sh", "-c", "exit 3"])).code(3);
    let e = newest(&etcd, &p, "db");
    assert_eq!(
        (&e["outcome"], &e["exit_code"]),
        (&"exit".into(), &3.into()),
        "{e}"
    );

    run(distlock(&etcd, &p).args(["--lock-name=db", "--", "sh", "-c", "kill -TERM $$"])).code(143);
    let e = newest(&etcd, &p, "db");
    assert_eq!(e["outcome"], "signal", "{e}");
    assert_eq!(e["signal"], "SIGTERM", "{e}");
    assert_eq!(e["exit_code"], 143, "{e}");

    run(distlock(&etcd, &p).args(["--lock-name=db", "--max-runtime=300ms", "--", "sleep", "30"]))
        .code(124);
    let e = newest(&etcd, &p, "db");
    assert_eq!(e["outcome"], "max_runtime", "{e}");
    assert_eq!(e["exit_code"], 124, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("--max-runtime"),
        "{e}"
    );

    // Newest first, in JSON and in the table.
    let all = history(&etcd, &p, "db");
    let tokens: Vec<i64> = all.iter().map(|e| e["token"].as_i64().unwrap()).collect();
    assert_eq!(tokens.len(), 4);
    assert!(tokens.windows(2).all(|w| w[0] > w[1]), "{tokens:?}");
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--history"]));
    r.code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{r}");
    assert!(lines[0].starts_with("TOKEN"), "{r}");
    let outcomes = ["max_runtime 124", "signal 143 SIGTERM", "exit 3", "exit 0"];
    for ((line, token), outcome) in lines[1..].iter().zip(&tokens).zip(outcomes) {
        assert!(line.starts_with(&token.to_string()), "{r}");
        assert!(line.contains(outcome), "{outcome}: {r}");
    }
    assert!(lines[4].contains("nightly backup"), "{r}");
}

#[test]
fn a_lock_kept_by_hold_at_least_is_released_when_that_ends() {
    let etcd = Etcd::start();
    let p = prefix("hist-hold");
    run(distlock(&etcd, &p).args(["--lock-name=db", "--hold-at-least=5", "--", "true"])).code(0);
    let e = newest(&etcd, &p, "db");
    assert_eq!(e["outcome"], "exit", "{e}");
    assert_eq!(e["held_s"], 5.0, "{e}");
    let held = time(&e["released"])
        .duration_since(time(&e["took"]))
        .unwrap();
    // Whole seconds in the entry: 5, or 4 when `took` was stamped late in its second.
    assert!((4..=5).contains(&held.as_secs()), "{e}");
}

#[test]
fn a_lost_lock_is_an_entry_that_says_why() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("hist-lost"));
    let mut cmd = distlock_std(&ep, &p);
    cmd.args(["--lock-name=db", "--", "sleep", "30"]);
    let holder = Background::spawn(cmd, "holder");
    let key = wait_contenders(&ep, &p, "db", 1).remove(0);
    etcdctl(&ep, ["del", "--", &key.key]);
    let out = holder.output(DEADLINE);
    assert_eq!(
        shell_status(out.status),
        4,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = newest(&etcd, &p, "db");
    assert_eq!(e["outcome"], "lost", "{e}");
    assert_eq!(e["exit_code"], 4, "{e}");
    assert_eq!(e["token"], key.create_revision, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("its key was removed"),
        "{e}"
    );
    assert_eq!(e["unlocked_by"], Value::Null, "{e}");
}

#[test]
fn lock_then_unlock_is_one_entry_held_then_unlocked() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("hist-pair"));
    let (key, token) = lock(&etcd, &p, "db", &["--reason=maintenance"]);
    let e = newest(&etcd, &p, "db");
    assert_eq!(e["outcome"], "held", "{e}");
    assert_eq!(e["mode"], "lock", "{e}");
    assert_eq!(e["key"], key.as_str(), "{e}");
    assert_eq!(e["token"], token, "{e}");
    assert_eq!(e["released"], Value::Null, "{e}");
    assert_eq!(e["held_s"], Value::Null, "{e}");

    run(distlock(&etcd, &p).args(["--lock-name=db", "--unlock"])).code(0);
    let all = history(&etcd, &p, "db");
    assert_eq!(all.len(), 1, "{all:?}");
    let e = &all[0];
    assert_eq!(e["outcome"], "unlocked", "{e}");
    assert_eq!(e["unlocked_by"], hostname().as_str(), "{e}");
    assert_eq!(e["reason"], "maintenance", "{e}");
    assert!(time(&e["released"]) >= time(&e["took"]), "{e}");
    assert!(e["held_s"].as_f64().is_some(), "{e}");
    assert_eq!(history_kvs(&ep, &p, "db").len(), 1);
}

#[test]
fn an_unlocked_running_holder_is_one_entry_with_both_sides() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("hist-unlock-run"));
    let mut cmd = distlock_std(&ep, &p);
    cmd.args(["--lock-name=db", "--reason=deploy", "--", "sleep", "30"]);
    let holder = Background::spawn(cmd, "holder");
    wait_contenders(&ep, &p, "db", 1);
    run(distlock(&etcd, &p).args(["--lock-name=db", "--unlock"])).code(0);
    let out = holder.output(DEADLINE);
    assert_eq!(
        shell_status(out.status),
        4,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = history(&etcd, &p, "db");
    assert_eq!(all.len(), 1, "{all:?}");
    let e = &all[0];
    assert_eq!(e["outcome"], "unlocked", "{e}");
    assert_eq!(e["unlocked_by"], hostname().as_str(), "{e}");
    // The holder's side: how its run ended, and its own fields.
    assert_eq!(e["exit_code"], 4, "{e}");
    assert_eq!(e["program"], "sleep", "{e}");
    assert_eq!(e["reason"], "deploy", "{e}");
    assert!(e["queued"].is_string(), "{e}");
}

#[test]
fn an_expired_lock_reads_as_expired() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("hist-expired"));
    lock(&etcd, &p, "db", &["--ttl=2"]);
    assert_eq!(newest(&etcd, &p, "db")["outcome"], "held");
    wait_contenders(&ep, &p, "db", 0);
    let e = newest(&etcd, &p, "db");
    assert_eq!(e["outcome"], "expired", "{e}");
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--history"]));
    assert!(r.stdout.lines().nth(1).unwrap().contains("expired"), "{r}");
}

#[test]
fn history_size_bounds_what_etcd_keeps_and_zero_writes_nothing() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("hist-trim"));
    let mut tokens = Vec::new();
    for _ in 0..6 {
        let r = run(distlock(&etcd, &p).args([
            "--lock-name=db",
            "--history-size=3",
            "--",
            "sh",
            "-c",
            "echo $DISTLOCK_FENCING_TOKEN",
        ]));
        r.code(0);
        tokens.push(r.stdout.trim().parse::<i64>().unwrap());
    }
    let kept: Vec<String> = history_kvs(&ep, &p, "db")
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    let newest3: Vec<String> = tokens[3..]
        .iter()
        .map(|t| format!("{p}.distlock/history/db/{t:020}"))
        .collect();
    assert_eq!(kept, newest3);

    // A queue: each holder trims by what the history held when it took the lock (read in its
    // hand-over write), which misses at most its predecessor's entry, written just after.
    let runs: Vec<Background> = (0..8)
        .map(|i| {
            let mut cmd = distlock_std(&ep, &p);
            cmd.args(["--lock-name=db", "--history-size=3", "--", "sleep", "0.2"]);
            Background::spawn(cmd, &format!("contender {i}"))
        })
        .collect();
    for r in runs {
        assert_eq!(shell_status(r.output(DEADLINE).status), 0);
    }
    let left = history_kvs(&ep, &p, "db").len();
    assert!(left <= 3 + 1, "{left} entries kept of at most 3 (+1)");
    run(distlock(&etcd, &p).args(["--lock-name=db", "--history-size=3", "--", "true"])).code(0);
    assert_eq!(history_kvs(&ep, &p, "db").len(), 3);

    // 0: nothing written, for runs nor for --lock/--unlock, and DISTLOCK_HISTORY_SIZE says so too.
    let q = prefix("hist-off");
    run(distlock(&etcd, &q).args(["--lock-name=db", "--history-size=0", "--", "true"])).code(0);
    lock(&etcd, &q, "db", &["--history-size=0"]);
    run(distlock(&etcd, &q)
        .args(["--lock-name=db", "--unlock"])
        .env("DISTLOCK_HISTORY_SIZE", "0"))
    .code(0);
    assert_eq!(
        etcd.etcdctl(&["get", "--prefix", "--keys-only", "--", &q])
            .trim(),
        ""
    );
    let r = run(distlock(&etcd, &q).args(["--lock-name=db", "--history"]));
    r.code(0);
    assert_eq!(r.stdout.trim(), "db: no history", "{r}");

    for bad in ["-1", "1001", "many"] {
        let r = run(distlock(&etcd, &q).args([
            "--lock-name=db",
            &format!("--history-size={bad}"),
            "--",
            "true",
        ]));
        r.code(2);
        r.one_error_line();
    }
}

#[test]
fn entries_are_no_locks_for_list_nor_for_etcdctl_lock() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("hist-apart"));
    run(distlock(&etcd, &p).args(["--lock-name=db", "--", "true"])).code(0);
    assert_eq!(history_kvs(&ep, &p, "db").len(), 1);
    // Nothing held: --list exits 1.
    let r = run(distlock(&etcd, &p).args(["--list", "--output=json"]));
    r.code(1);
    assert_eq!(r.json()["locks"], serde_json::json!([]), "{r}");
    let r = run(distlock(&etcd, &p).arg("--list"));
    assert!(!r.stdout.contains(".distlock"), "{r}");

    // etcdctl lock on the same name takes it at once: the history is not in its directory.
    let out = etcdctl_lock(&ep, &format!("{p}db"), &["true"]).output(DEADLINE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The name of the history's directory is not a lock name.
    let r = run(distlock(&etcd, &p).args(["--lock-name=.distlock", "--", "true"]));
    r.code(2);
    assert!(r.one_error_line().contains("reserved"), "{r}");
}

#[test]
fn a_history_that_etcd_refuses_is_a_warning_and_the_exit_code_stays() {
    let p = prefix("hist-rbac");
    // The role may read and write the lock db, and nothing else: not even read the history.
    let etcd = Etcd::builder()
        .auth("r00t-pw-hist", "locker", "Lck-pw-hist", &format!("{p}db"))
        .start();
    let as_locker = || {
        let mut cmd = distlock(&etcd, &p);
        cmd.args(["--user=locker"])
            .env("DISTLOCK_PASSWORD", "Lck-pw-hist");
        cmd
    };
    let r = run(as_locker().args(["--lock-name=db", "--", "sh", "-c", "exit 5"]));
    r.code(5);
    let lines = r.stderr_lines();
    assert_eq!(lines.len(), 1, "{r}");
    assert!(
        lines[0].starts_with("distlock: warning: the lock's history"),
        "{r}"
    );
    assert!(lines[0].contains("permission"), "{r}");

    // Allowed to read it but not to write it: the write is refused, a warning again.
    etcd.etcdctl(&[
        "role",
        "grant-permission",
        "locker-role",
        "--prefix=true",
        "read",
        &p,
    ]);
    let r = run(as_locker().args(["--lock-name=db", "--", "true"]));
    r.code(0);
    let lines = r.stderr_lines();
    assert_eq!(lines.len(), 1, "{r}");
    assert!(
        lines[0].starts_with("distlock: warning: the lock's history was not written"),
        "{r}"
    );
    assert_eq!(etcd.keys(&p), Vec::<String>::new());
    assert_eq!(
        etcd.etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            "--",
            &format!("{p}.distlock/")
        ])
        .trim(),
        ""
    );
}
