//! Who holds a lock and why, as an operator sees it, against the real binary and a real etcd:
//! `--status` and `--list` (text and JSON), `--lock`'s eval-able output, the "waiting for …"
//! progress line, `--show-config` with the source of every setting, and the diagnostics on
//! stderr (`-q`, `-v`, `DISTLOCK_LOG`, `--log-format=json`). Whatever other tools left in etcd
//! (etcdctl's empty values, the Go tool's legacy key, binary bytes, terminal escapes) must be
//! shown for what it is and never break a table or a JSON document.
//!
//! Each test starts its own etcd and uses its own key prefix.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Helpers

/// No raw ESC (or other C0 control but newline) may reach an operator's terminal or a mail.
fn assert_no_raw_controls(text: &str, what: &str) {
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        panic!("{what} contains the raw control character {c:?}:\n{text}");
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An age as distlock prints it: `42s`, `2m13s`, `5h07m`, `3d04h`.
fn is_age(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let two = |t: &str| t.len() == 2 && digits(t);
    if let Some(n) = s.strip_suffix('s') {
        if digits(n) {
            return true;
        }
        return n.split_once('m').is_some_and(|(m, s)| digits(m) && two(s));
    }
    if let Some(n) = s.strip_suffix('m') {
        return n.split_once('h').is_some_and(|(h, m)| digits(h) && two(m));
    }
    if let Some(n) = s.strip_suffix('h') {
        return n.split_once('d').is_some_and(|(d, h)| digits(d) && two(h));
    }
    false
}

/// `sh` with the same clean environment `distlock()` has, and `$DL` set to the binary.
fn sh_with_distlock_env(etcd: &Etcd, p: &str, script: &str) -> Command {
    let std = distlock_std(&etcd.endpoint(), p);
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(script).env("DL", std.get_program());
    for (k, v) in std.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh
}

/// distlock in the background with `args` and `env`, its stderr going to `stderr` so a test
/// can watch it while it runs. The shell `exec`s distlock, so the pid is distlock's own.
fn distlock_bg(
    etcd: &Etcd,
    p: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stderr: &Path,
    what: &str,
) -> Background {
    let mut sh = sh_with_distlock_env(etcd, p, "exec \"$DL\" \"$@\" 2>\"$OBSERVE_STDERR\"");
    sh.arg("sh").args(args).env("OBSERVE_STDERR", stderr);
    for (k, v) in env {
        sh.env(k, v);
    }
    Background::spawn(sh, what)
}

/// The `waiting for …` lines a waiter has printed so far.
fn waiting_lines(path: &Path) -> Vec<String> {
    read_lines(path)
        .into_iter()
        .filter(|l| l.contains("waiting for"))
        .collect()
}

/// Checks `distlock: waiting for NAME: held by this host (HOST, pid PID, USER) for AGE:
/// "REASON"` (every test's holder runs on this host), the pid marked `(exited; --lock)` for a
/// `--lock` holder.
fn assert_waiting_line(line: &str, name: &str, pid: u64, reason: &str) {
    let heads = ["", " (exited; --lock)"].map(|exited| {
        format!(
            "distlock: waiting for {name}: held by this host ({}, pid {pid}{exited}, {}) for ",
            hostname(),
            username()
        )
    });
    let rest = heads
        .iter()
        .find_map(|head| line.strip_prefix(head.as_str()))
        .unwrap_or_else(|| panic!("waiting line {line:?} does not start with {heads:?}"));
    let (age, quoted) = rest
        .split_once(": ")
        .unwrap_or_else(|| panic!("no reason in waiting line {line:?}"));
    assert!(is_age(age), "age {age:?} in {line:?}");
    assert_eq!(quoted, format!("\"{reason}\""), "reason in {line:?}");
}

/// The fields every CONTENDER object has (docs/CONTRACT.md, "JSON output"), with their types.
fn assert_contender_shape(c: &Value) {
    let obj = c
        .as_object()
        .unwrap_or_else(|| panic!("contender is not an object: {c}"));
    let string_or_null = [
        "lease", "host", "user", "reason", "since", "mode", "program",
    ];
    for f in string_or_null {
        assert!(
            obj.get(f).is_some_and(|v| v.is_string() || v.is_null()),
            "{f} must be a string or null: {c}"
        );
    }
    for f in ["pid", "age_seconds"] {
        assert!(
            obj.get(f).is_some_and(|v| v.is_u64() || v.is_null()),
            "{f} must be a number or null: {c}"
        );
    }
    assert!(
        obj.get("ttl_left")
            .is_some_and(|v| v.is_i64() || v.is_null()),
        "ttl_left must be a number or null: {c}"
    );
    assert!(c["key"].is_string(), "key must be a string: {c}");
    assert!(c["fencing_token"].is_i64(), "fencing_token: {c}");
    let kind = c["kind"].as_str().unwrap_or_default();
    assert!(
        ["distlock", "legacy", "other"].contains(&kind),
        "kind {kind:?}: {c}"
    );
    if let Some(since) = c["since"].as_str() {
        humantime::parse_rfc3339_weak(since)
            .unwrap_or_else(|e| panic!("since {since:?} is not RFC 3339 ({e}): {c}"));
    }
}

/// A contender written by distlock on this machine, as JSON shows it.
fn assert_distlock_contender(c: &Value, kv: &Kv, pid: u64, reason: &str, mode: &str) {
    assert_contender_shape(c);
    assert_eq!(c["kind"], "distlock", "{c}");
    assert_eq!(c["key"], kv.key.as_str(), "{c}");
    assert_eq!(c["fencing_token"], kv.create_revision, "{c}");
    assert_eq!(c["host"], hostname().as_str(), "{c}");
    assert_eq!(c["pid"], pid, "{c}");
    assert_eq!(c["user"], username().as_str(), "{c}");
    assert_eq!(c["reason"], reason, "{c}");
    assert_eq!(c["mode"], mode, "{c}");
    assert!(c["age_seconds"].as_u64().is_some_and(|a| a < 120), "{c}");
    match kv.lease {
        0 => assert!(c["lease"].is_null(), "{c}"),
        lease => assert_eq!(c["lease"], format!("{lease:x}").as_str(), "{c}"),
    }
}

/// One line of `--status`'s text that starts with `label`, e.g. `  key:`.
fn status_field<'a>(r: &'a Run, label: &str) -> &'a str {
    r.stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line: {r}"))
}

/// The seconds in `expires in 59m 58s, at 2026-12-06 14:03:00 UTC` (with `unless renewed`
/// before the comma for another tool's lease), checking that the time is that far from now.
fn expires_in(r: &Run) -> i64 {
    let lease = status_field(r, "lease:");
    let (left, at) = lease
        .strip_prefix("expires in ")
        .and_then(|t| t.split_once(", at "))
        .unwrap_or_else(|| panic!("lease line {lease:?} gives no TTL left: {r}"));
    let left = left.strip_suffix(" unless renewed").unwrap_or(left);
    let secs = humantime::parse_duration(left)
        .unwrap_or_else(|e| panic!("{left:?} in {lease:?} is not a duration ({e}): {r}"))
        .as_secs();
    let at = at
        .strip_suffix(" UTC")
        .map(|t| t.replacen(' ', "T", 1) + "Z")
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
        .unwrap_or_else(|| panic!("{lease:?} gives no UTC time: {r}"));
    let at = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(
        at.abs_diff(unix_now() + secs) <= 3,
        "{lease:?}: the time is not {secs}s from now: {r}"
    );
    secs as i64
}

/// The pid a distlock contender recorded in its value.
fn recorded_pid(kv: &Kv) -> u64 {
    kv.json()["pid"].as_u64().unwrap()
}

// ---------------------------------------------------------------------------------------------
// --status

#[test]
fn status_shows_holder_mode_key_token_and_waiters_in_queue_order() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("status"));
    let dir = scratch_dir();

    // A free lock says so, exit 1, in text and JSON.
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status"]));
    r.code(1);
    assert_eq!(r.stdout, "db: free\n", "{r}");
    assert_eq!(r.stderr, "", "a free lock is not an error: {r}");
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status", "--output=json"]));
    let v = r.code(1).json();
    assert_eq!(v["lock"], "db");
    assert_eq!(v["held"], false);
    assert!(v["holder"].is_null(), "{v}");
    assert_eq!(v["waiters"], serde_json::json!([]));

    let (key, token) = lock(&etcd, &p, "db", &["--reason=Upgrade RPMs on node-3"]);
    let holder_kv = wait_contenders(&ep, &p, "db", 1).remove(0);
    assert_eq!(holder_kv.key, key);
    assert_eq!(token, holder_kv.create_revision);
    let holder_pid = recorded_pid(&holder_kv);

    // Two distlock waiters and one etcdctl waiter, in this order.
    let w1 = distlock_bg(
        &etcd,
        &p,
        &["--lock-name=db", "--reason=first waiter", "--", "true"],
        &[],
        &dir.path().join("w1.err"),
        "waiter 1",
    );
    wait_contenders(&ep, &p, "db", 2);
    let w2 = distlock_bg(
        &etcd,
        &p,
        &["--lock-name=db", "--reason=second waiter", "--", "true"],
        &[],
        &dir.path().join("w2.err"),
        "waiter 2",
    );
    wait_contenders(&ep, &p, "db", 3);
    let _ctl = etcdctl_lock(&ep, &format!("{p}db"), &[]);
    let kvs = wait_contenders(&ep, &p, "db", 4);

    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status"]));
    r.code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let (host, user) = (hostname(), username());
    // A --lock holder's process has exited by design; this host's is named as such.
    let first =
        format!("db: held by this host ({host}, pid {holder_pid} (exited; --lock), {user}) for ");
    let rest = lines[0]
        .strip_prefix(&first)
        .unwrap_or_else(|| panic!("holder line should start with {first:?}: {r}"));
    let (age, reason) = rest.split_once(": ").unwrap_or_else(|| panic!("{r}"));
    assert!(is_age(age), "age {age:?}: {r}");
    assert_eq!(reason, "\"Upgrade RPMs on node-3\"", "{r}");
    assert_eq!(status_field(&r, "mode:"), "lock", "{r}");
    assert_eq!(status_field(&r, "lease:"), "held until unlocked", "{r}");
    assert_eq!(status_field(&r, "key:"), key, "{r}");
    assert_eq!(
        status_field(&r, "fencing token:"),
        holder_kv.create_revision.to_string(),
        "the fencing token is the key's create revision: {r}"
    );
    let waiting: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("waiting "))
        .collect();
    assert_eq!(waiting.len(), 3, "three waiters: {r}");
    for (i, (line, (pid, why))) in waiting
        .iter()
        .zip([(w1.pid(), "first waiter"), (w2.pid(), "second waiter")])
        .enumerate()
    {
        let head = format!("{}: this host ({host}, pid {pid}, {user}) for ", i + 1);
        assert!(
            line.starts_with(&head) && line.ends_with(&format!(": \"{why}\"")),
            "waiter {} should be {head}…: \"{why}\": {r}",
            i + 1
        );
    }
    assert!(
        waiting[2].starts_with("3: ")
            && waiting[2].contains(&kvs[3].key)
            && waiting[2].contains("not distlock's"),
        "the etcdctl waiter is shown for what it is: {r}"
    );
    assert_no_raw_controls(&r.stdout, "--status");

    // The same in JSON.
    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--status", "--output=json"]));
    let v = r.code(0).json();
    assert_eq!(v["lock"], "db");
    assert_eq!(v["held"], true);
    assert_distlock_contender(
        &v["holder"],
        &kvs[0],
        holder_pid,
        "Upgrade RPMs on node-3",
        "lock",
    );
    assert!(v["holder"]["ttl_left"].is_null(), "{v}");
    assert!(v["holder"]["expires_at"].is_null(), "{v}");
    assert!(v["holder"]["program"].is_null(), "{v}");
    assert_eq!(v["holder"]["this_host"], true, "{v}");
    assert_eq!(
        v["holder"]["renewed"], false,
        "a --lock renews nothing: {v}"
    );
    let waiters = v["waiters"].as_array().expect("waiters is an array");
    assert_eq!(waiters.len(), 3, "{v}");
    assert_distlock_contender(
        &waiters[0],
        &kvs[1],
        w1.pid().as_raw() as u64,
        "first waiter",
        "run",
    );
    assert_distlock_contender(
        &waiters[1],
        &kvs[2],
        w2.pid().as_raw() as u64,
        "second waiter",
        "run",
    );
    assert_eq!(waiters[0]["program"], "true");
    assert_contender_shape(&waiters[2]);
    assert_eq!(waiters[2]["kind"], "other", "{v}");
    assert_eq!(waiters[2]["key"], kvs[3].key.as_str());
    assert_eq!(waiters[2]["fencing_token"], kvs[3].create_revision);
    assert_eq!(waiters[2]["lease"], format!("{:x}", kvs[3].lease).as_str());
    for f in ["host", "pid", "user", "reason", "since", "mode", "ttl_left"] {
        assert!(waiters[2][f].is_null(), "etcdctl's key has no {f}: {v}");
    }
}

#[test]
fn status_shows_the_ttl_left_of_a_running_holder_and_of_a_lock_with_ttl() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("ttlleft"));
    let dir = scratch_dir();

    // A run-mode holder keeps a lease of the default 10 s alive.
    let runner = distlock_bg(
        &etcd,
        &p,
        &[
            "--lock-name=job",
            "--reason=nightly job",
            "--",
            "sleep",
            "30",
        ],
        &[],
        &dir.path().join("runner.err"),
        "run-mode holder",
    );
    let kv = wait_contenders(&ep, &p, "job", 1).remove(0);
    let r = run(distlock(&etcd, &p).args(["--lock-name=job", "--status"]));
    r.code(0);
    let head = format!(
        "job: held by this host ({}, pid {}, {}) for ",
        hostname(),
        runner.pid(),
        username()
    );
    assert!(r.stdout.starts_with(&head), "{r}");
    assert_eq!(
        status_field(&r, "lease:"),
        "10s, renewed while it runs",
        "{r}"
    );
    assert_eq!(status_field(&r, "mode:"), "run", "{r}");
    assert_eq!(status_field(&r, "program:"), "sleep", "{r}");
    assert_eq!(status_field(&r, "key:"), kv.key, "{r}");
    assert_eq!(
        status_field(&r, "fencing token:"),
        kv.create_revision.to_string()
    );

    let r = run(distlock(&etcd, &p).args(["--lock-name=job", "--status", "--output=json"]));
    let v = r.code(0).json();
    let pid = runner.pid().as_raw() as u64;
    assert_distlock_contender(&v["holder"], &kv, pid, "nightly job", "run");
    assert_eq!(v["holder"]["program"], "sleep");
    let left = v["holder"]["ttl_left"].as_i64();
    assert!(left.is_some_and(|l| (1..=10).contains(&l)), "{v}");
    assert_eq!(v["holder"]["renewed"], true, "{v}");
    assert_eq!(v["holder"]["on_lost"], "kill", "{v}");

    // `--lock --ttl 30`: on a lease nobody renews, counting down from 30.
    let (key, _) = lock(&etcd, &p, "maint", &["--ttl=30", "--reason=maintenance"]);
    let r = run(distlock(&etcd, &p).args(["--lock-name=maint", "--status"]));
    r.code(0);
    assert_eq!(status_field(&r, "key:"), key, "{r}");
    assert_eq!(status_field(&r, "mode:"), "lock", "{r}");
    let left = expires_in(&r);
    assert!((25..=30).contains(&left), "TTL left {left}: {r}");
    assert!(
        !r.stdout.contains("unless renewed") && !r.stdout.contains("expires:"),
        "nothing renews a --lock, and its lease says when it expires: {r}"
    );
    assert!(
        r.stdout
            .starts_with(&format!("maint: held by this host ({}, pid ", hostname()))
            && r.stdout
                .lines()
                .next()
                .unwrap()
                .contains(" (exited; --lock), "),
        "{r}"
    );
    let r = run(distlock(&etcd, &p).args(["--lock-name=maint", "--status", "--output=json"]));
    let v = r.code(0).json();
    let left = v["holder"]["ttl_left"].as_i64();
    assert!(left.is_some_and(|l| (25..=30).contains(&l)), "{v}");
    assert!(v["holder"]["lease"].is_string(), "{v}");
    assert_eq!(v["holder"]["renewed"], false, "{v}");
    let at = v["holder"]["expires_at"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    let at = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{at}: {e}"));
    let at = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!((unix_now() + 24..=unix_now() + 31).contains(&at), "{v}");

    // --list's EXPIRES: nothing for a running command, in how long for the --lock --ttl.
    let r = run(distlock(&etcd, &p).arg("--list"));
    let lines: Vec<&str> = r.code(0).stdout.lines().collect();
    let starts = column_starts(lines[0]);
    let rows: Vec<Vec<String>> = lines[1..].iter().map(|l| cells(l, &starts)).collect();
    assert_eq!(
        (rows[0][0].as_str(), rows[0][3].as_str()),
        ("job", "-"),
        "{r}"
    );
    assert_eq!(rows[1][0], "maint", "{r}");
    let left = rows[1][3]
        .strip_prefix("in ")
        .and_then(|d| humantime::parse_duration(d).ok())
        .unwrap_or_else(|| panic!("{r}"));
    assert!((20..=30).contains(&left.as_secs()), "{r}");
}

#[test]
fn status_shows_etcdctl_and_go_tool_holders_for_what_they_are() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("foreign"));

    // etcdctl lock: an empty value under a lease.
    let _ctl = etcdctl_lock(&ep, &format!("{p}shared"), &[]);
    let kv = wait_contenders(&ep, &p, "shared", 1).remove(0);
    assert_eq!(kv.value, "");
    let r = run(distlock(&etcd, &p).args(["--lock-name=shared", "--status"]));
    r.code(0);
    let first = r.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("shared: held by ")
            && first.contains(&kv.key)
            && first.contains("not distlock's")
            && first.contains(&format!("{:x}", kv.lease)),
        "{r}"
    );
    assert_eq!(status_field(&r, "key:"), kv.key);
    assert_eq!(
        status_field(&r, "fencing token:"),
        kv.create_revision.to_string()
    );
    let left = expires_in(&r);
    assert!(
        (1..=60).contains(&left),
        "etcdctl's lease TTL left {left}: {r}"
    );
    let v = run(distlock(&etcd, &p).args(["--lock-name=shared", "--status", "--output=json"]))
        .code(0)
        .json();
    assert_contender_shape(&v["holder"]);
    assert_eq!(v["holder"]["kind"], "other", "{v}");
    assert_eq!(v["holder"]["key"], kv.key.as_str());
    assert!(
        v["holder"]["host"].is_null() && v["holder"]["pid"].is_null(),
        "{v}"
    );
    assert!(v["holder"]["ttl_left"].is_i64(), "{v}");

    // The Go tool's legacy key `<prefix><name>`.
    put(&ep, &format!("{p}old"), "1700000000;oldhost;old reason");
    let legacy = get_key(&ep, &format!("{p}old")).unwrap();
    let r = run(distlock(&etcd, &p).args(["--lock-name=old", "--status"]));
    r.code(0);
    let first = r.stdout.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("old: held by oldhost (the old Go distlock) for ")
        .unwrap_or_else(|| panic!("{r}"));
    let (age, reason) = rest.split_once(": ").unwrap_or_else(|| panic!("{r}"));
    assert!(is_age(age) && age.contains('d'), "age {age:?}: {r}");
    assert_eq!(reason, "\"old reason\"");
    assert_eq!(status_field(&r, "key:"), format!("{p}old"));
    assert_eq!(
        status_field(&r, "fencing token:"),
        legacy.create_revision.to_string()
    );
    assert_eq!(status_field(&r, "lease:"), "held until unlocked", "{r}");
    assert_eq!(status_field(&r, "since:"), "2023-11-14 22:13:20 UTC", "{r}");
    let v = run(distlock(&etcd, &p).args(["--lock-name=old", "--status", "--output=json"]))
        .code(0)
        .json();
    let h = &v["holder"];
    assert_contender_shape(h);
    assert_eq!(h["kind"], "legacy", "{v}");
    assert_eq!(h["key"], format!("{p}old").as_str());
    assert_eq!(h["host"], "oldhost");
    assert_eq!(h["reason"], "old reason");
    assert_eq!(h["since"], "2023-11-14T22:13:20Z");
    assert!(
        h["age_seconds"].as_u64() >= Some(unix_now() - 1_700_000_000 - 5),
        "{v}"
    );
    assert!(h["lease"].is_null() && h["pid"].is_null(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// --list and values from other tools

/// One prefix seeded with every kind of lock an operator may find: a 200-character name with a
/// 5000-character multi-line reason, non-ASCII text, the Go tool's keys (3 days old and
/// ancient), an `etcdctl lock` holder, values that are not distlock's JSON, terminal escapes in
/// a record and in a lock name.
struct Zoo {
    long_name: String,
    long_reason: String,
    unicode: &'static str,
    locks: usize,
    _ctl: Background,
}

const UNICODE_REASON: &str = "Überprüfung 検証 🚀";

fn seed_zoo(etcd: &Etcd, p: &str) -> Zoo {
    let ep = etcd.endpoint();
    let long_name = "n".repeat(200);
    let long_reason = format!("{UNICODE_REASON}\nline two {}", "x".repeat(5000));
    let unicode = "Überprüfung検証🚀";
    lock(etcd, p, &long_name, &[&format!("--reason={long_reason}")]);
    lock(etcd, p, unicode, &[&format!("--reason={UNICODE_REASON}")]);
    // The Go tool's key, three days old, and an ancient one.
    let three_days_ago = unix_now() - 3 * 86400 - 100;
    put(
        &ep,
        &format!("{p}old3d"),
        &format!("{three_days_ago};oldhost;three days"),
    );
    put(&ep, &format!("{p}gotool"), "1700000000;oldhost;old reason");
    // etcdctl lock's empty value.
    let ctl = etcdctl_lock(&ep, &format!("{p}ctl"), &[]);
    wait_contenders(&ep, p, "ctl", 1);
    // Values that are not distlock's JSON.
    let binary = OsStr::from_bytes(b"\xff\xfe\x01\x1b[2J\x1b]0;pwned\x07bin");
    etcdctl(
        &ep,
        [
            OsStr::new("put"),
            OsStr::new("--"),
            OsStr::new(&format!("{p}binary/1")),
            binary,
        ],
    );
    put(&ep, &format!("{p}notjson/1"), "{not json");
    put(
        &ep,
        &format!("{p}othershape/1"),
        r#"{"format":"x","host":5,"reason":["a"]}"#,
    );
    // distlock's shape, with terminal escapes in every text field.
    let esc = r#"{"format":1,"host":"h\u001b[31m","pid":1,"user":"u\u001b[2J","reason":"r\u001b]0;title\u0007x","since":"2026-01-01T00:00:00Z","mode":"run","program":"p\u001b[1m","ttl":5}"#;
    put(&ep, &format!("{p}esc/1"), esc);
    // A lock name with an escape and a newline in it, written by another tool.
    put(&ep, &format!("{p}evil\u{1b}[2J\nname/1"), "");
    Zoo {
        long_name,
        long_reason,
        unicode,
        locks: 10,
        _ctl: ctl,
    }
}

/// The character offsets at which the header's columns start.
fn column_starts(header: &str) -> Vec<usize> {
    let chars: Vec<char> = header.chars().collect();
    (0..chars.len())
        .filter(|&i| chars[i] != ' ' && (i == 0 || chars[i - 1] == ' '))
        .collect()
}

/// Splits a row at the header's column offsets, checking that every column starts exactly
/// there: at least two spaces before it and text right at it.
fn cells(row: &str, starts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = row.chars().collect();
    let mut out = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts
            .get(i + 1)
            .map_or(chars.len(), |&e| e.min(chars.len()));
        if start >= chars.len() {
            // Only the last column may be empty (the line is trimmed).
            assert_eq!(i, starts.len() - 1, "row {row:?} ends before column {i}");
            out.push(String::new());
            continue;
        }
        assert!(
            chars[start] != ' ',
            "column {i} of row {row:?} does not start at character {start}"
        );
        if i > 0 {
            assert!(
                chars[start - 2..start] == [' ', ' '],
                "column {i} of row {row:?} is not separated by two spaces at character {start}"
            );
        }
        out.push(
            chars[start..end]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_string(),
        );
    }
    out
}

#[test]
fn list_shows_one_aligned_row_per_lock_whatever_is_in_etcd() {
    let etcd = Etcd::start();
    let p = prefix("list");
    let zoo = seed_zoo(&etcd, &p);

    let r = run(distlock(&etcd, &p).arg("--list"));
    r.code(0);
    assert_no_raw_controls(&r.stdout, "--list");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1 + zoo.locks,
        "a header and one row per lock: {r}"
    );
    let header = column_starts(lines[0]);
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["LOCK", "HOLDER", "FOR", "EXPIRES", "HOLDERS", "WAITING", "REASON"],
        "{r}"
    );
    let rows: Vec<Vec<String>> = lines[1..].iter().map(|l| cells(l, &header)).collect();
    let row = |name: &str| {
        let found: Vec<&Vec<String>> = rows.iter().filter(|c| c[0] == name).collect();
        assert_eq!(found.len(), 1, "one row for {name:?}: {r}");
        found[0].clone()
    };
    for c in &rows {
        assert_eq!(c[5], "0", "nobody waits: {c:?}");
        assert_eq!(c[4], "1", "one holder each: {c:?}");
        assert!(c[2] == "-" || is_age(&c[2]), "age {:?}", c[2]);
    }

    let long = row(&zoo.long_name);
    let holder_pid = recorded_pid(&contenders(&etcd.endpoint(), &p, &zoo.long_name)[0]);
    assert_eq!(
        long[1],
        format!(
            "this host ({}, pid {holder_pid} (exited; --lock))",
            hostname()
        ),
        "{long:?}"
    );
    assert!(is_age(&long[2]), "{long:?}");
    assert_eq!(long[3], "never", "a --lock without --ttl: {long:?}");
    let reason = &long[6];
    assert!(
        reason.starts_with(UNICODE_REASON) && reason.ends_with('…'),
        "a 5000-character reason is cut, its start kept: {reason:?}"
    );
    assert!(
        reason.chars().count() <= 200,
        "reason cell is too long: {reason:?}"
    );

    let uni = row(zoo.unicode);
    assert_eq!(uni[6], UNICODE_REASON);
    assert!(
        uni[1].starts_with(&format!("this host ({}, pid ", hostname())),
        "{uni:?}"
    );

    let old = row("old3d");
    assert!(
        old[2].starts_with("3d") && is_age(&old[2]),
        "three days: {old:?}"
    );
    assert!(old[1].contains("oldhost"), "{old:?}");
    assert_eq!(old[6], "three days");
    let ancient = row("gotool");
    assert!(ancient[2].contains('d'), "{ancient:?}");
    assert_eq!(ancient[6], "old reason");

    for name in ["ctl", "binary", "notjson", "othershape"] {
        let c = row(name);
        assert!(!c[1].is_empty(), "{name} has a holder cell: {c:?}");
        assert_eq!(c[2], "-", "{name} has no known age: {c:?}");
    }
    let esc = row("esc");
    assert!(
        esc[1].starts_with('h') && esc[6].starts_with('r'),
        "{esc:?}"
    );
    assert!(
        rows.iter().any(|c| c[0].starts_with("evil")),
        "the lock named with an escape and a newline is one row: {r}"
    );
}

#[test]
fn list_and_status_json_survive_whatever_is_in_etcd() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("listjson"));
    let zoo = seed_zoo(&etcd, &p);

    let r = run(distlock(&etcd, &p).args(["--list", "--output=json"]));
    assert_no_raw_controls(&r.stdout, "--list --output=json");
    let v = r.code(0).json();
    let locks = v["locks"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(locks.len(), zoo.locks, "{v}");
    let find = |name: &str| {
        locks
            .iter()
            .find(|l| l["lock"] == name)
            .unwrap_or_else(|| panic!("no lock {name:?} in {v}"))
    };
    for l in locks {
        assert!(l["lock"].is_string(), "{l}");
        assert_eq!(l["waiting"], 0, "{l}");
        assert_contender_shape(&l["holder"]);
        assert!(
            l["holder"]["ttl_left"].is_null(),
            "only --status fills ttl_left: {l}"
        );
    }
    // JSON carries the data whole: no cutting, no escaping beyond JSON's own.
    let long = &find(&zoo.long_name)["holder"];
    let kv = contenders(&ep, &p, &zoo.long_name).remove(0);
    assert_distlock_contender(long, &kv, recorded_pid(&kv), &zoo.long_reason, "lock");
    let uni = &find(zoo.unicode)["holder"];
    assert_eq!(uni["reason"], UNICODE_REASON);
    let old = &find("old3d")["holder"];
    assert_eq!(old["kind"], "legacy");
    assert!(
        old["age_seconds"].as_u64().is_some_and(|a| a >= 3 * 86400),
        "{old}"
    );
    for name in ["ctl", "binary", "notjson", "othershape"] {
        let h = &find(name)["holder"];
        assert_eq!(h["kind"], "other", "{name}: {h}");
        assert!(h["host"].is_null() && h["reason"].is_null(), "{name}: {h}");
    }
    let esc = &find("esc")["holder"];
    assert_eq!(esc["kind"], "distlock", "{esc}");
    assert_eq!(esc["reason"], "r\u{1b}]0;title\u{7}x", "{esc}");
    assert!(
        locks.iter().any(|l| l["lock"] == "evil\u{1b}[2J\nname"),
        "the odd lock name comes through as data: {v}"
    );

    // --status of each odd one: readable text, valid JSON.
    for name in [
        zoo.long_name.as_str(),
        zoo.unicode,
        "binary",
        "notjson",
        "othershape",
        "esc",
        "old3d",
    ] {
        let r = run(distlock(&etcd, &p).args([&format!("--lock-name={name}"), "--status"]));
        r.code(0);
        assert_no_raw_controls(&r.stdout, &format!("--status of {name}"));
        assert!(r.stdout.starts_with(&format!("{name}: held by ")), "{r}");
        assert!(
            r.stdout.lines().count() <= 12,
            "--status of {name} should stay a few lines: {r}"
        );
        let r = run(distlock(&etcd, &p).args([
            &format!("--lock-name={name}"),
            "--status",
            "--output=json",
        ]));
        assert_no_raw_controls(&r.stdout, &format!("--status --output=json of {name}"));
        let v = r.code(0).json();
        assert_eq!(v["held"], true, "{v}");
        assert_contender_shape(&v["holder"]);
    }
    let r = run(distlock(&etcd, &p).args(["--lock-name=esc", "--status"]));
    assert!(
        r.stdout.contains("h\\u{1b}[31m")
            || r.stdout.contains("h\\x1b[31m")
            || r.stdout.contains("h\\e[31m"),
        "the escape is shown escaped, not dropped silently: {r}"
    );
}

// ---------------------------------------------------------------------------------------------
// --output=json from the flag, the environment and the YAML file

#[test]
fn json_output_from_flag_env_and_yaml_for_lock_status_list_and_show_config() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("json"));
    let dir = scratch_dir();
    let yaml = write_file(dir.path(), "distlock.yaml", "output: json\n");
    let yaml_source = format!("file {}", yaml.display());

    type Setup = fn(&mut assert_cmd::Command, &Path);
    let ways: [(&str, Setup, &str); 3] = [
        (
            "flag",
            |c, _| {
                c.arg("--output=json");
            },
            "flag --output",
        ),
        (
            "env",
            |c, _| {
                c.env("DISTLOCK_OUTPUT", "json");
            },
            "env DISTLOCK_OUTPUT",
        ),
        (
            "yaml",
            |c, y| {
                c.env("DISTLOCK_CONFIG", y);
            },
            "",
        ),
    ];
    for (way, setup, source) in ways {
        let name = format!("j-{way}");
        let cmd = |args: &[&str]| {
            let mut c = distlock(&etcd, &p);
            c.args(args);
            setup(&mut c, &yaml);
            c
        };

        // --lock
        let r = run(&mut cmd(&[
            &format!("--lock-name={name}"),
            "--lock",
            "--reason=über ✓",
        ]));
        let v = r.code(0).json();
        let kv = contenders(&ep, &p, &name).remove(0);
        assert_eq!(v["lock"], name.as_str(), "{way}: {v}");
        assert_eq!(v["key"], kv.key.as_str(), "{way}: {v}");
        assert_eq!(v["fencing_token"], kv.create_revision, "{way}: {v}");
        assert!(v["expires_in_seconds"].is_null(), "{way}: {v}");
        let ttl_name = format!("{name}-ttl");
        let r = run(&mut cmd(&[
            &format!("--lock-name={ttl_name}"),
            "--lock",
            "--ttl=30",
        ]));
        let v = r.code(0).json();
        assert_eq!(v["expires_in_seconds"], 30, "{way}: {v}");

        // --status
        let r = run(&mut cmd(&[&format!("--lock-name={name}"), "--status"]));
        let v = r.code(0).json();
        assert_eq!(v["lock"], name.as_str());
        assert_eq!(v["held"], true);
        assert_distlock_contender(&v["holder"], &kv, recorded_pid(&kv), "über ✓", "lock");
        assert!(v["waiters"].as_array().is_some_and(Vec::is_empty), "{v}");

        // --list
        let r = run(&mut cmd(&["--list"]));
        let v = r.code(0).json();
        let locks = v["locks"]
            .as_array()
            .unwrap_or_else(|| panic!("{way}: {v}"));
        let mine = locks
            .iter()
            .find(|l| l["lock"] == name.as_str())
            .unwrap_or_else(|| panic!("{way}: {name} missing in {v}"));
        assert_eq!(mine["waiting"], 0);
        assert_eq!(mine["holder"]["key"], kv.key.as_str());

        // --show-config
        let r = run(&mut cmd(&["--show-config"]));
        let v = r.code(0).json();
        let expected = if way == "yaml" {
            yaml_source.as_str()
        } else {
            source
        };
        assert_eq!(v["output"]["value"], "json", "{way}: {v}");
        assert_eq!(v["output"]["source"], expected, "{way}: {v}");
        // Typed values (numbers, booleans, lists, null), never a nested object.
        for (key, entry) in v.as_object().unwrap() {
            assert!(!entry["value"].is_object(), "{way}: {key}: {entry}");
            assert!(entry["source"].is_string(), "{way}: {key}: {entry}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// --lock's output

#[test]
fn lock_prints_only_eval_lines_on_stdout_and_eval_sets_both() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("eval"));

    let r = run(distlock(&etcd, &p).args(["--lock-name=a", "--lock", "--reason=x"]));
    r.code(0);
    let kv = contenders(&ep, &p, "a").remove(0);
    assert_eq!(
        r.stdout,
        format!(
            "DISTLOCK_KEY={}\nDISTLOCK_FENCING_TOKEN={}\n",
            kv.key, kv.create_revision
        ),
        "{r}"
    );
    assert_eq!(r.stderr, "", "{r}");

    let script = r#"eval "$("$DL" --lock-name=b --lock)" || exit 9
printf '%s\n%s\n' "$DISTLOCK_KEY" "$DISTLOCK_FENCING_TOKEN""#;
    let out = sh_with_distlock_env(&etcd, &p, script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let kv = contenders(&ep, &p, "b").remove(0);
    assert_eq!(stdout, format!("{}\n{}\n", kv.key, kv.create_revision));
}

// ---------------------------------------------------------------------------------------------
// Waiting progress

#[test]
fn a_waiter_says_who_holds_the_lock_and_again_when_the_holder_changes() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("progress"));
    let dir = scratch_dir();

    lock(&etcd, &p, "q", &["--reason=first holder"]);
    let first_pid = recorded_pid(&wait_contenders(&ep, &p, "q", 1)[0]);
    let second = distlock_bg(
        &etcd,
        &p,
        &[
            "--lock-name=q",
            "--reason=second holder",
            "--",
            "sleep",
            "120",
        ],
        &[],
        &dir.path().join("second.err"),
        "second contender",
    );
    wait_contenders(&ep, &p, "q", 2);
    let err = dir.path().join("waiter.err");
    let started = Instant::now();
    let mut waiter = distlock_bg(
        &etcd,
        &p,
        &[
            "--lock-name=q",
            "--timeout=120",
            "--reason=third",
            "--",
            "true",
        ],
        &[],
        &err,
        "waiter",
    );
    wait_contenders(&ep, &p, "q", 3);

    let line = wait_until(Duration::from_secs(5), "the first waiting line", || {
        waiting_lines(&err).into_iter().next()
    });
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "the waiting line came after {after:?}, not after about a second"
    );
    assert!(
        after < Duration::from_secs(4),
        "the waiting line came after {after:?}"
    );
    assert_waiting_line(&line, "q", first_pid, "first holder");

    // The first holder goes; the second takes over. The waiter watches only the key just
    // ahead of it (the second's), so it learns of the new holder from its once-a-minute read
    // of the holder, and names it then.
    run(distlock(&etcd, &p).args(["--lock-name=q", "--unlock"])).code(0);
    let second_pid = second.pid().as_raw() as u64;
    wait_until(
        Duration::from_secs(75),
        "a waiting line naming the new holder",
        || {
            let lines = waiting_lines(&err);
            lines
                .iter()
                .any(|l| l.contains(&format!(", pid {second_pid}")))
                .then_some(())
        },
    );
    run(distlock(&etcd, &p).args(["--lock-name=q", "--unlock"])).code(0);
    let status = waiter.wait(DEADLINE);
    assert_eq!(shell_status(status), 0, "{:?}", read_lines(&err));
    let lines = read_lines(&err);
    assert_eq!(
        lines.len(),
        2,
        "two waiting lines and nothing else: {lines:#?}"
    );
    assert_waiting_line(&lines[0], "q", first_pid, "first holder");
    assert_waiting_line(&lines[1], "q", second_pid, "second holder");
}

#[test]
fn a_quiet_waiter_prints_nothing() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("quiet"));
    let dir = scratch_dir();

    lock(&etcd, &p, "q", &["--reason=held"]);
    let quiet_err = dir.path().join("quiet.err");
    let mut quiet = distlock_bg(
        &etcd,
        &p,
        &["--lock-name=q", "-q", "--timeout=15", "--", "true"],
        &[],
        &quiet_err,
        "quiet waiter",
    );
    wait_contenders(&ep, &p, "q", 2);
    // A talkative waiter that queued later: once it has spoken, the quiet one would have too.
    let loud_err = dir.path().join("loud.err");
    let mut loud = distlock_bg(
        &etcd,
        &p,
        &["--lock-name=q", "--timeout=15", "--", "true"],
        &[],
        &loud_err,
        "talkative waiter",
    );
    wait_contenders(&ep, &p, "q", 3);
    wait_for(
        Duration::from_secs(5),
        "the talkative waiter's line",
        || !waiting_lines(&loud_err).is_empty(),
    );
    run(distlock(&etcd, &p).args(["--lock-name=q", "--unlock"])).code(0);
    assert_eq!(shell_status(quiet.wait(DEADLINE)), 0);
    assert_eq!(shell_status(loud.wait(DEADLINE)), 0);
    assert_eq!(
        read_lines(&quiet_err),
        Vec::<String>::new(),
        "-q prints nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// --show-config and secrets

/// `--show-config`'s text as (key, value, source).
fn settings(r: &Run) -> Vec<(String, String, String)> {
    r.stdout
        .lines()
        .map(|l| {
            let (key, rest) = l.split_once(' ').unwrap_or_else(|| panic!("{l:?}: {r}"));
            let (value, source) = rest
                .rsplit_once("  (")
                .unwrap_or_else(|| panic!("no source in {l:?}: {r}"));
            let source = source.strip_suffix(')').unwrap_or_else(|| panic!("{l:?}"));
            (
                key.to_string(),
                value.trim().to_string(),
                source.to_string(),
            )
        })
        .collect()
}

#[test]
fn show_config_reports_every_setting_with_its_source_and_hides_the_password() {
    let etcd = Etcd::start();
    let p = prefix("showcfg");
    let dir = scratch_dir();
    let yaml = write_file(
        dir.path(),
        "distlock.yaml",
        "lockname: from-file\nreason: file reason\ntimeout: 30\nttl: 20\n",
    );
    let file_source = format!("file {}", yaml.display());
    let cmd = |extra: &[&str]| {
        let mut c = distlock(&etcd, &p);
        c.env("DISTLOCK_CONFIG", &yaml)
            .env("DISTLOCK_REASON", "env reason")
            .env("DISTLOCK_TIMEOUT", "45")
            .env("DISTLOCK_KILL_GRACE", "1s")
            .env("DISTLOCK_USER", "alice")
            .env("DISTLOCK_PASSWORD", "s3cret")
            .args([
                "--show-config",
                "--reason=flag reason",
                "--conflict-exit-code=7",
            ])
            .args(extra);
        c
    };
    let expected = [
        ("lockname", "from-file", file_source.as_str()),
        ("reason", "flag reason", "flag --reason"),
        ("timeout", "45s", "env DISTLOCK_TIMEOUT"),
        ("ttl", "20s", file_source.as_str()),
        ("kill_grace", "1s", "env DISTLOCK_KILL_GRACE"),
        ("conflict_exit_code", "7", "flag --conflict-exit-code"),
        ("maxtime", "5s", "default"),
        ("prefix", p.as_str(), "env DISTLOCK_PREFIX"),
        ("user", "alice", "env DISTLOCK_USER"),
        ("password", "hidden", "env DISTLOCK_PASSWORD"),
    ];

    let r = run(&mut cmd(&[]));
    r.code(0);
    assert!(
        !r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"),
        "{r}"
    );
    let got = settings(&r);
    let keys: Vec<&str> = got.iter().map(|(k, ..)| k.as_str()).collect();
    assert_eq!(keys, all_settings(), "every setting, once: {r}");
    for (key, value, source) in expected {
        let (_, v, s) = got.iter().find(|(k, ..)| k == key).unwrap();
        assert!(
            v.contains(value),
            "{key} should be {value:?}, is {v:?}: {r}"
        );
        assert_eq!(s, source, "source of {key}: {r}");
    }

    let r = run(&mut cmd(&["--output=json"]));
    assert!(
        !r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"),
        "{r}"
    );
    let v = r.code(0).json();
    let obj = v.as_object().unwrap();
    assert_eq!(
        obj.keys().cloned().collect::<Vec<_>>(),
        all_settings(),
        "{v}"
    );
    // The same values, typed: durations in seconds, numbers as numbers.
    let typed = [
        ("timeout", serde_json::json!(45)),
        ("ttl", serde_json::json!(20)),
        ("kill_grace", serde_json::json!(1)),
        ("conflict_exit_code", serde_json::json!(7)),
        ("maxtime", serde_json::json!(5)),
    ];
    for (key, value, source) in expected {
        let entry = &v[key];
        match typed.iter().find(|(k, _)| *k == key) {
            Some((_, typed)) => assert_eq!(&entry["value"], typed, "{key}: {entry}"),
            None => assert!(
                entry["value"].as_str().is_some_and(|v| v.contains(value)),
                "{key} should be {value:?}: {entry}"
            ),
        }
        assert_eq!(entry["source"], source, "source of {key}: {entry}");
    }
    assert_eq!(v["output"]["source"], "flag --output");
}

/// A JSON consumer of `--show-config` wants the values themselves, not the text view's
/// quoting (`"\"/p/\""`).
#[test]
fn show_config_json_gives_string_values_unquoted() {
    let etcd = Etcd::start();
    let p = prefix("showcfgq");
    let r = run(distlock(&etcd, &p).args([
        "--show-config",
        "--output=json",
        "--reason=why not",
        "--lock-name=x",
    ]));
    let v = r.code(0).json();
    assert_eq!(v["prefix"]["value"], p.as_str(), "{v}");
    assert_eq!(v["reason"]["value"], "why not", "{v}");
    assert_eq!(v["lockname"]["value"], "x", "{v}");
}

#[test]
fn the_password_never_shows_not_even_with_vv_or_trace_logging() {
    let p = prefix("secret");
    // root (password rootpw), and alice (password s3cret), who may read and write `p`.
    let etcd = Etcd::builder()
        .auth("rootpw", "alice", "s3cret", &p)
        .start();
    let as_alice = |password: &str| {
        let mut c = distlock(&etcd, &p);
        c.env("DISTLOCK_USER", "alice")
            .env("DISTLOCK_PASSWORD", password);
        c
    };
    let clean = |r: &Run| {
        assert!(
            !r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"),
            "the password leaked: {r}"
        );
    };
    for args in [
        &["-vv", "--lock-name=s", "--lock"][..],
        &["-vv", "--lock-name=s", "--status"],
        &["-vv", "--list"],
        &["-vv", "--lock-name=s", "--unlock"],
        &["-vv", "--lock-name=s", "--", "env"],
        &["-vv", "--show-config"],
        &["-vv", "--show-config", "--output=json"],
    ] {
        let r = run(as_alice("s3cret").args(args));
        r.code(0);
        clean(&r);
    }
    let r =
        run(as_alice("s3cret")
            .env("DISTLOCK_LOG", "trace")
            .args(["--lock-name=s", "--", "true"]));
    r.code(0);
    clean(&r);
    let r =
        run(as_alice("s3cret").args(["-vv", "--log-format=json", "--lock-name=s", "--", "true"]));
    r.code(0);
    clean(&r);

    // A wrong password: exit 3, and the attempt is not echoed either.
    let r = run(as_alice("wr0ng-pa55").args(["-vv", "--lock-name=s", "--status"]));
    r.code(3);
    assert!(!r.stderr.contains("wr0ng-pa55"), "{r}");
}

// ---------------------------------------------------------------------------------------------
// Diagnostics on stderr

#[test]
fn verbose_adds_detail_to_a_normal_run() {
    let etcd = Etcd::start();
    let p = prefix("verbose");
    let stderr = |args: &[&str]| {
        let r = run(distlock(&etcd, &p).args(args));
        r.code(0);
        assert_eq!(r.stdout, "", "{r}");
        r.stderr
    };

    // --unlock says what it released, by default already.
    lock(&etcd, &p, "u", &[]);
    let default_unlock = stderr(&["--lock-name=u", "--unlock"]);
    assert!(
        default_unlock.contains("released u held by this host"),
        "{default_unlock}"
    );
    lock(&etcd, &p, "u", &[]);
    let verbose_unlock = stderr(&["--lock-name=u", "--unlock", "-v"]);
    assert!(
        verbose_unlock.contains("released u held by this host"),
        "{verbose_unlock}"
    );

    let quiet = stderr(&["--lock-name=r", "-q", "--", "true"]);
    let default = stderr(&["--lock-name=r", "--", "true"]);
    let v = stderr(&["--lock-name=r", "-v", "--", "true"]);
    let vv = stderr(&["--lock-name=r", "-vv", "--", "true"]);
    assert_eq!(quiet, "");
    assert!(
        v.lines().count() > default.lines().count(),
        "-v shows nothing more than the default for a normal run:\n--- default ---\n{default}--- -v ---\n{v}"
    );
    assert!(
        verbose_unlock.lines().count() > default_unlock.lines().count(),
        "--unlock -v shows nothing more than --unlock:\n{verbose_unlock}"
    );
    assert!(
        vv.lines().count() > v.lines().count(),
        "-vv (\"etcd-level detail\") shows nothing more than -v:\n--- -v ---\n{v}--- -vv ---\n{vv}"
    );
}

#[test]
fn debug_lines_come_with_v_or_distlock_log_and_not_by_default() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("debug"));
    let dir = scratch_dir();
    // Passing a signal on to the command is a debug line of a normal run.
    let ways: [(&str, &[&str], Option<&str>, bool); 3] = [
        ("default", &[], None, false),
        ("-v", &["-v"], None, true),
        ("DISTLOCK_LOG", &[], Some("distlock=debug"), true),
    ];
    for (way, flags, filter, shows) in ways {
        let err = dir.path().join(format!("{way}.err"));
        let mut args = vec!["--lock-name=d"];
        args.extend_from_slice(flags);
        args.extend(["--", "sleep", "30"]);
        let env: Vec<(&str, &str)> = filter.map(|f| ("DISTLOCK_LOG", f)).into_iter().collect();
        let mut bg = distlock_bg(&etcd, &p, &args, &env, &err, way);
        wait_contenders(&ep, &p, "d", 1);
        bg.signal(Signal::SIGTERM);
        assert_eq!(
            shell_status(bg.wait(DEADLINE)),
            143,
            "{way}: {:?}",
            read_lines(&err)
        );
        let text = fs::read_to_string(&err).unwrap();
        assert_eq!(
            text.contains("passing SIGTERM on to the command"),
            shows,
            "{way}: debug line expected: {shows}:\n{text}"
        );
        wait_contenders(&ep, &p, "d", 0);
    }
}

#[test]
fn text_diagnostics_carry_no_terminal_escapes_when_stderr_is_not_a_terminal() {
    let etcd = Etcd::start();
    let p = prefix("ansi");
    let r =
        run(distlock(&etcd, &p)
            .env("DISTLOCK_LOG", "debug")
            .args(["--lock-name=a", "--", "true"]));
    r.code(0);
    assert!(
        !r.stderr.is_empty(),
        "DISTLOCK_LOG=debug shows something: {r}"
    );
    assert!(
        r.stderr.lines().all(|l| l.starts_with("distlock: ")),
        "every line starts with `distlock: `: {r}"
    );
    assert_no_raw_controls(&r.stderr, "stderr with DISTLOCK_LOG=debug");
}

/// Every stderr line is a JSON object; returns them.
fn json_lines(r: &Run) -> Vec<Value> {
    r.stderr_lines()
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("stderr line {l:?} is not JSON ({e}): {r}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

#[test]
fn json_log_format_makes_every_stderr_line_json_and_results_stay_on_stdout() {
    let etcd = Etcd::start();
    let p = prefix("jsonlog");
    lock(&etcd, &p, "j", &["--reason=busy now"]);

    // A waiting run that times out: the progress line and the final error, all JSON.
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=j",
        "--log-format=json",
        "--timeout=1500ms",
        "--",
        "true",
    ]));
    r.code(1);
    let lines = json_lines(&r);
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && message(l).contains("waiting for j: held by")),
        "{r}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR", "{r}");
    assert!(message(last).contains("busy"), "{r}");
    assert_eq!(last["fields"]["exit_code"], 1, "{r}");

    // --nowait, from the flag and from the environment, with every target's debug lines.
    for (flag, env) in [(Some("--log-format=json"), None), (None, Some("json"))] {
        let mut cmd = distlock(&etcd, &p);
        cmd.args(["--lock-name=j", "--nowait"])
            .env("DISTLOCK_LOG", "debug");
        if let Some(flag) = flag {
            cmd.arg(flag);
        }
        if let Some(env) = env {
            cmd.env("DISTLOCK_LOG_FORMAT", env);
        }
        let r = run(cmd.args(["--", "true"]));
        r.code(1);
        let lines = json_lines(&r);
        let last = lines.last().unwrap_or_else(|| panic!("no error line: {r}"));
        assert_eq!(last["level"], "ERROR", "{r}");
        assert!(message(last).contains("j is busy: held by"), "{r}");
        assert_eq!(last["fields"]["exit_code"], 1, "{r}");
    }

    // --status and --list print their results on stdout, diagnostics stay JSON on stderr.
    let r = run(distlock(&etcd, &p).args(["--lock-name=j", "--status", "-v", "--log-format=json"]));
    r.code(0);
    assert!(r.stdout.starts_with("j: held by "), "{r}");
    json_lines(&r);
    let r = run(distlock(&etcd, &p).args(["--list", "-v", "--log-format=json"]));
    r.code(0);
    assert!(r.stdout.starts_with("LOCK"), "{r}");
    json_lines(&r);
    let r = run(distlock(&etcd, &p).args(["--lock-name=j", "--unlock", "--log-format=json"]));
    r.code(0);
    assert_eq!(r.stdout, "", "{r}");
    let lines = json_lines(&r);
    assert!(lines.iter().any(|l| message(l).contains("released")), "{r}");

    // A configuration error, before any configuration could be read, is JSON too.
    let r = run(distlock(&etcd, &p).args(["--lock-name=a/b", "--lock", "--log-format=json"]));
    r.code(2);
    let lines = json_lines(&r);
    assert_eq!(lines.len(), 1, "{r}");
    assert_eq!(lines[0]["fields"]["exit_code"], 2, "{r}");
    assert!(message(&lines[0]).contains("lock name"), "{r}");
}

#[test]
fn a_reader_that_stops_early_does_not_make_status_list_or_show_config_panic() {
    use std::process::Stdio;
    // Like `distlock --show-config | head -0`: the pipe's reader is gone before anything is
    // written. A Rust println! to it panics (exit 101 and a panic message).
    let etcd = Etcd::start();
    let p = prefix("pipe");
    lock(&etcd, &p, "held", &[]);
    for args in [
        &["--show-config"][..],
        &["--lock-name=held", "--status"],
        &["--list"],
    ] {
        let (reader, writer) = nix::unistd::pipe().expect("pipe");
        drop(reader);
        let output = distlock_std(&etcd.endpoint(), &p)
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .expect("run distlock");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.is_empty(),
            "{args:?}: {:?}, stderr: {stderr}",
            output.status
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What a script can test, and a --lock that waits on its own host

#[test]
fn status_and_list_exit_0_when_a_lock_is_held_and_1_when_none_is() {
    let etcd = Etcd::start();
    let p = prefix("held-or-not");
    let code = |args: &[&str]| run(distlock(&etcd, &p).args(args)).code;
    for output in ["--output=text", "--output=json"] {
        assert_eq!(code(&["--lock-name=a", "--status", output]), 1, "{output}");
        assert_eq!(code(&["--list", output]), 1, "{output}");
        // --conflict-exit-code is for "not acquired"; a free lock is still 1.
        let free = code(&[
            "--lock-name=a",
            "--status",
            "--conflict-exit-code=75",
            output,
        ]);
        assert_eq!(free, 1, "{output}");
    }
    lock(&etcd, &p, "a", &[]);
    for output in ["--output=text", "--output=json"] {
        assert_eq!(code(&["--lock-name=a", "--status", output]), 0, "{output}");
        assert_eq!(code(&["--lock-name=b", "--status", output]), 1, "{output}");
        assert_eq!(code(&["--list", output]), 0, "{output}");
    }
    // As a script uses it.
    let script = r#""$DL" --lock-name=a --status >/dev/null && echo held
"$DL" --lock-name=b --status >/dev/null || echo free"#;
    let out = sh_with_distlock_env(&etcd, &p, script).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "held\nfree\n");
    // 2 and 3 keep their meanings.
    assert_eq!(code(&["--lock-name=a/b", "--status"]), 2);
    let r = run(distlock_at("http://127.0.0.1:1", &p).args([
        "--lock-name=a",
        "--status",
        "--maxtime=1s",
    ]));
    r.code(3).one_error_line();
    let r = run(distlock_at("http://127.0.0.1:1", &p).args(["--list", "--maxtime=1s"]));
    r.code(3).one_error_line();
}

#[test]
fn a_lock_waiting_on_its_own_hosts_lock_says_so_and_a_signal_speaks_of_no_command() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("own-host"));
    let dir = scratch_dir();
    lock(&etcd, &p, "percona_prod", &["--reason=Upgrade RPMs"]);
    let since = contenders(&ep, &p, "percona_prod")[0].json()["since"]
        .as_str()
        .unwrap()
        .to_string();
    // `2026-12-06T14:02:07Z` → `14:02 UTC` (a test at midnight may see the date too).
    let minute = &since[11..16];

    let err = dir.path().join("rerun.err");
    let mut rerun = distlock_bg(
        &etcd,
        &p,
        &["--lock-name=percona_prod", "--lock"],
        &[],
        &err,
        "rerun",
    );
    wait_contenders(&ep, &p, "percona_prod", 2);
    let line = wait_until(DEADLINE, "the waiting line", || {
        waiting_lines(&err).into_iter().next()
    });
    let head = format!(
        "distlock: waiting for percona_prod: held by this host ({}, --lock since ",
        hostname()
    );
    let tail = " UTC, reason \"Upgrade RPMs\"); distlock --lock-name=percona_prod --unlock \
                releases it";
    assert!(
        line.starts_with(&head) && line.ends_with(tail) && line.contains(minute),
        "{line:?}"
    );

    rerun.signal(Signal::SIGTERM);
    assert_eq!(shell_status(rerun.wait(DEADLINE)), 143);
    let lines = read_lines(&err);
    assert_eq!(
        lines.last().map(String::as_str),
        Some(
            "distlock: interrupted by SIGTERM while waiting for the lock; nothing is left in etcd"
        ),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("command")),
        "--lock runs no command: {lines:#?}"
    );
    assert_eq!(
        contenders(&ep, &p, "percona_prod").len(),
        1,
        "the waiter left nothing"
    );
}
