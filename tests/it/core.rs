//! The core behaviour of `distlock` as a user sees it, against the real binary and a real etcd:
//! exit codes, what is printed, what lands in etcd (checked with etcdctl), what the command
//! sees, and how long it takes. Each test starts its own etcd and uses its own key prefix.
//! docs/CONTRACT.md is the user contract; the README and docs/etcd-keys.md pin the output
//! and key formats it leaves open.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Parses `--lock`'s stdout: exactly `DISTLOCK_KEY=...` and `DISTLOCK_FENCING_TOKEN=...`.
fn parse_lock_output(r: &Run) -> (String, i64) {
    parse_lock_stdout(&r.stdout)
        .unwrap_or_else(|| panic!("--lock must print exactly the key and token lines: {r}"))
}

/// The lease-id part of a contender key, checked to be lower-case hex without padding.
fn lease_of_key(key: &str) -> i64 {
    let hex = key.rsplit('/').next().unwrap();
    assert!(
        !hex.is_empty()
            && !hex.starts_with('0')
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "key {key:?} does not end in a lower-case hex lease id"
    );
    i64::from_str_radix(hex, 16).unwrap()
}

/// A distlock run-mode waiter in the background, whose command appends `n` to `file`.
fn append_waiter(etcd: &Etcd, p: &str, name: &str, file: &Path, n: u32) -> Background {
    let mut cmd = distlock_std(&etcd.endpoint(), p);
    cmd.arg(format!("--lock-name={name}")).args([
        "--",
        "sh",
        "-c",
        &format!("echo {n} >> '{}'", file.display()),
    ]);
    Background::spawn(cmd, &format!("distlock waiter {n}"))
}

/// The `since` field: RFC 3339, and (when in UTC, as the contract shows) close to now.
fn assert_recent_rfc3339(since: &str) {
    let b = since.as_bytes();
    assert!(
        b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':',
        "since {since:?} is not RFC 3339"
    );
    if since.ends_with('Z') {
        let t = humantime::parse_rfc3339(since).unwrap_or_else(|e| panic!("since {since:?}: {e}"));
        let age = std::time::SystemTime::now()
            .duration_since(t)
            .unwrap_or_default();
        assert!(
            age < Duration::from_secs(120),
            "since {since:?} is not recent"
        );
    }
}

/// A port on loopback that nothing listens on.
fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------------------------
// --lock / --unlock

#[test]
fn lock_prints_key_and_token_and_stores_the_contract_record() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("lock"));
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=percona_prod",
        "--lock",
        "--reason=Upgrade RPMs on node-3",
    ]));
    r.code(0);
    let (key, token) = parse_lock_output(&r);
    assert!(key.starts_with(&format!("{p}percona_prod/")), "{r}");
    lease_of_key(&key);

    let kvs = contenders(&ep, &p, "percona_prod");
    assert_eq!(kvs.len(), 1, "{kvs:?}");
    let kv = &kvs[0];
    assert_eq!(kv.key, key);
    assert_eq!(
        kv.create_revision, token,
        "the fencing token is the key's create revision"
    );
    // Detached from its lease: held after distlock exits, until someone unlocks.
    assert_eq!(
        kv.lease, 0,
        "a --lock key without --ttl must not be under a lease"
    );

    let v = kv.json();
    assert_eq!(v["format"], 1, "{v}");
    assert_eq!(v["host"], hostname().as_str(), "{v}");
    assert!(v["pid"].as_u64().is_some_and(|pid| pid > 0), "{v}");
    assert_eq!(v["user"], username().as_str(), "{v}");
    assert_eq!(v["reason"], "Upgrade RPMs on node-3", "{v}");
    assert_recent_rfc3339(v["since"].as_str().unwrap_or_else(|| panic!("since: {v}")));
    assert_eq!(v["mode"], "lock", "{v}");
    assert!(v["program"].is_null(), "program is null for --lock: {v}");
    assert!(
        v["ttl"].is_null(),
        "ttl is null for --lock without --ttl: {v}"
    );

    // Still held after the process exited: a second --lock --nowait is refused.
    let r = run(distlock(&etcd, &p).args(["--lock-name=percona_prod", "--lock", "--nowait"]));
    r.code(1);
    assert_eq!(contenders(&ep, &p, "percona_prod").len(), 1);
}

#[test]
fn unlock_removes_the_holder_key() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("unlock"));
    let (key, _) = lock(&etcd, &p, "db", &["--reason=maintenance"]);
    assert!(get_key(&ep, &key).is_some());

    let r = run(distlock(&etcd, &p).args(["--lock-name=db", "--unlock"]));
    r.code(0);
    assert_eq!(
        get_prefix(&ep, &p),
        vec![],
        "--unlock must leave nothing behind"
    );

    // And the lock can be taken again at once.
    run(distlock(&etcd, &p).args(["--lock-name=db", "--lock", "--nowait"])).code(0);
}

#[test]
fn unlock_of_a_free_lock_is_exit_1_or_the_conflict_exit_code() {
    let etcd = Etcd::start();
    let p = prefix("unlockfree");
    let r = run(distlock(&etcd, &p).args(["--lock-name=free", "--unlock"]));
    r.code(1).one_error_line();

    let r = run(distlock(&etcd, &p).args([
        "--lock-name=free",
        "--unlock",
        "--conflict-exit-code",
        "7",
    ]));
    r.code(7).one_error_line();

    // The same option changes the exit code of "busy" too.
    lock(&etcd, &p, "busy", &[]);
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=busy",
        "--nowait",
        "--conflict-exit-code=7",
        "--",
        "true",
    ]));
    r.code(7);
    assert_eq!(get_prefix(&etcd.endpoint(), &p).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Run mode

#[test]
fn run_mode_gives_the_command_its_lock_environment_and_releases_after() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("runenv"));
    let dir = scratch_dir();
    let env_file = dir.path().join("env");
    let go = dir.path().join("go");
    // The command records its environment, then waits for the test to look at etcd. The
    // argument `s3cr3t` must never reach etcd.
    let script = format!(
        "env > '{f}.tmp' && mv '{f}.tmp' '{f}'; while [ ! -e '{go}' ]; do sleep 0.02; done",
        f = env_file.display(),
        go = go.display()
    );
    let mut cmd = distlock_std(&ep, &p);
    cmd.args([
        "--lock-name=job",
        "--reason=nightly",
        "--",
        "sh",
        "-c",
        &script,
        "sh",
        "s3cr3t",
    ]);
    let job = Background::spawn(cmd, "distlock run");

    wait_for(DEADLINE, "the command to write its environment", || {
        env_file.exists()
    });
    let env = fs::read_to_string(&env_file).unwrap();
    let var = |name: &str| -> String {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not in the command's environment:\n{env}"))
            .to_string()
    };
    let key = var("DISTLOCK_KEY");
    let lease_hex = var("DISTLOCK_LEASE_ID");
    let token: i64 = var("DISTLOCK_FENCING_TOKEN")
        .parse()
        .expect("decimal fencing token");
    assert_eq!(var("DISTLOCK_LOCK_NAME"), "job");
    assert_eq!(key, format!("{p}job/{lease_hex}"));
    assert_eq!(var("ETCD_LOCK_KEY"), key);
    assert_eq!(var("ETCD_LOCK_REV"), token.to_string());

    let kvs = contenders(&ep, &p, "job");
    assert_eq!(kvs.len(), 1, "{kvs:?}");
    let kv = &kvs[0];
    assert_eq!(kv.key, key);
    assert_eq!(kv.create_revision, token);
    assert_eq!(
        kv.lease,
        lease_of_key(&key),
        "the key is under the lease its name says"
    );
    assert!(
        !kv.value.contains("s3cr3t"),
        "arguments leaked into etcd: {}",
        kv.value
    );
    let v = kv.json();
    assert_eq!(v["mode"], "run", "{v}");
    assert_eq!(v["program"], "sh", "{v}");
    assert_eq!(v["ttl"], 10, "{v}");
    assert_eq!(v["reason"], "nightly", "{v}");
    let (_, granted) = lease_ttl(&ep, kv.lease).expect("the lease is alive while the command runs");
    assert_eq!(granted, 10);

    fs::write(&go, "").unwrap();
    let out = job.output(DEADLINE);
    assert_eq!(
        shell_status(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get_prefix(&ep, &p),
        vec![],
        "the key must be gone after the command ended"
    );
    assert_eq!(lease_ttl(&ep, kv.lease), None, "the lease must be revoked");
}

#[test]
fn the_commands_own_exit_status_comes_back_and_the_lock_is_released() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("exitcode"));
    for (script, expected) in [
        ("exit 0", 0),
        ("exit 42", 42),
        ("exit 1", 1),
        ("exit 255", 255),
    ] {
        let r = run(distlock(&etcd, &p).args(["--lock-name=x", "--", "sh", "-c", script]));
        r.code(expected);
        assert_eq!(get_prefix(&ep, &p), vec![], "after `{script}`");
    }
}

#[test]
fn stdout_of_the_command_is_passed_through() {
    let etcd = Etcd::start();
    let p = prefix("stdout");
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=x",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]));
    r.code(0);
    assert_eq!(r.stdout, "out\n", "{r}");
    assert!(r.stderr.contains("err\n"), "{r}");
}

#[test]
fn a_command_that_is_not_found_is_127_and_releases_the_lock() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("notfound"));
    let r =
        run(distlock(&etcd, &p).args(["--lock-name=x", "--", "/nonexistent/distlock-test-cmd"]));
    r.code(127).one_error_line();
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=x",
        "--",
        "no-such-command-for-distlock-tests",
    ]));
    r.code(127).one_error_line();
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn a_command_that_cannot_be_executed_is_126_and_releases_the_lock() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("noexec"));
    let dir = scratch_dir();
    let script = write_file(dir.path(), "not-executable.sh", "#!/bin/sh\necho hi\n");
    let r = run(distlock(&etcd, &p)
        .args(["--lock-name=x", "--"])
        .arg(&script));
    r.code(126).one_error_line();
    // A directory cannot be executed either.
    let r = run(distlock(&etcd, &p)
        .args(["--lock-name=x", "--"])
        .arg(dir.path()));
    r.code(126);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn a_command_killed_by_sigterm_is_143() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sigterm"));
    let r = run(distlock(&etcd, &p).args(["--lock-name=x", "--", "sh", "-c", "kill -TERM $$"]));
    r.code(143);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn a_command_killed_by_sigint_shows_as_130() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("sigint"));
    // distlock re-raises SIGINT on itself (docs/CONTRACT.md); either way the shell sees 130.
    let r = run(distlock(&etcd, &p).args(["--lock-name=x", "--", "sh", "-c", "kill -INT $$"]));
    r.code(130);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Waiting: order, timeouts, --nowait

#[test]
fn waiters_get_the_lock_first_come_first_served() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("fifo"));
    let dir = scratch_dir();
    let file = dir.path().join("order");
    lock(&etcd, &p, "q", &[]);

    // Start each waiter only once the previous one is queued (its key is in etcd), so the
    // queue order is known: 1, 2, 3.
    let mut waiters = Vec::new();
    for n in 1..=3 {
        waiters.push(append_waiter(&etcd, &p, "q", &file, n));
        let what = format!("waiter {n} to queue");
        wait_for(DEADLINE, &what, || {
            contenders(&ep, &p, "q").len() == n as usize + 1
        });
    }
    assert!(!file.exists(), "a waiter ran while the lock was held");

    run(distlock(&etcd, &p).args(["--lock-name=q", "--unlock"])).code(0);
    for (i, w) in waiters.into_iter().enumerate() {
        let out = w.output(DEADLINE);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(shell_status(out.status), 0, "waiter {}: {err}", i + 1);
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "1\n2\n3\n");
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn timeout_bounds_the_wait_and_leaves_no_key_behind() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("timeout"));
    let dir = scratch_dir();
    let ran = dir.path().join("ran");
    let (holder, _) = lock(&etcd, &p, "t", &[]);
    let touch = format!("touch '{}'", ran.display());

    for timeout in ["1", "1s"] {
        let r = run(distlock(&etcd, &p).args([
            "--lock-name=t",
            "--timeout",
            timeout,
            "--",
            "sh",
            "-c",
            &touch,
        ]));
        r.code(1);
        assert!(
            r.stderr
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("distlock: ")),
            "{r}"
        );
        // ~1 s of waiting plus start-up; generous for a loaded 2-core machine.
        assert!(
            r.took >= Duration::from_millis(950),
            "--timeout {timeout} gave up early: {r}"
        );
        assert!(
            r.took < Duration::from_millis(2500),
            "--timeout {timeout} waited too long: {r}"
        );
        assert!(!ran.exists(), "the command ran without the lock");
        let keys: Vec<String> = get_prefix(&ep, &p).into_iter().map(|kv| kv.key).collect();
        assert_eq!(
            keys,
            vec![holder.clone()],
            "a timed-out waiter left its key behind"
        );
    }

    // --lock obeys it too.
    let r = run(distlock(&etcd, &p).args(["--lock-name=t", "--lock", "--timeout=1s"]));
    r.code(1);
    assert!(r.took < Duration::from_millis(2500), "{r}");
    assert_eq!(get_prefix(&ep, &p).len(), 1);
}

#[test]
fn nowait_against_a_held_lock_fails_at_once_and_leaves_no_key_behind() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("nowait"));
    let dir = scratch_dir();
    let ran = dir.path().join("ran");
    let (holder, _) = lock(&etcd, &p, "n", &["--reason=held for the test"]);

    let touch = format!("touch '{}'", ran.display());
    let r = run(distlock(&etcd, &p).args(["--lock-name=n", "--nowait", "--", "sh", "-c", &touch]));
    r.code(1).one_error_line();
    assert!(
        r.took < Duration::from_millis(1500),
        "--nowait must not wait: {r}"
    );
    assert!(!ran.exists());

    let r = run(distlock(&etcd, &p).args(["--lock-name=n", "--nowait", "--lock"]));
    r.code(1).one_error_line();
    assert!(
        r.took < Duration::from_millis(1500),
        "--nowait must not wait: {r}"
    );

    let keys: Vec<String> = get_prefix(&ep, &p).into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, vec![holder], "--nowait left a key behind");

    // --nowait on a free lock just runs.
    let r =
        run(distlock(&etcd, &p).args(["--lock-name=other", "--nowait", "--", "sh", "-c", &touch]));
    r.code(0);
    assert!(ran.exists());
}

// ---------------------------------------------------------------------------------------------
// --lock --ttl

#[test]
fn lock_with_ttl_expires_by_itself() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("ttl"));
    let start = Instant::now();
    let (key, _) = lock(&etcd, &p, "t", &["--ttl", "2"]);

    let kv = get_key(&ep, &key).expect("the key exists right after --lock");
    assert_ne!(kv.lease, 0, "--lock --ttl keeps the key under a lease");
    assert_eq!(kv.json()["ttl"], 2, "{}", kv.value);
    assert_eq!(kv.json()["mode"], "lock", "{}", kv.value);
    let (remaining, granted) = lease_ttl(&ep, kv.lease).expect("lease alive");
    // etcd may round a short TTL up, but not by much.
    assert!((2..=5).contains(&granted), "granted TTL {granted}");
    assert!(remaining <= granted);

    // Nobody unlocks: the key goes when the lease expires (etcd checks every 500 ms).
    let limit = Duration::from_secs(granted as u64 + 3);
    wait_for(limit, "the --ttl key to expire", || {
        get_key(&ep, &key).is_none()
    });
    let gone_after = start.elapsed();
    assert!(
        gone_after >= Duration::from_millis(granted as u64 * 1000 - 500),
        "the key vanished after {gone_after:?}, before its TTL of {granted}s"
    );
    assert_eq!(lease_ttl(&ep, kv.lease), None);
    // The lock is free again.
    run(distlock(&etcd, &p).args(["--lock-name=t", "--lock", "--nowait"])).code(0);
}

// ---------------------------------------------------------------------------------------------
// The Go tool's legacy key

#[test]
fn a_legacy_key_is_honoured_waited_for_and_removable() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("legacy"));
    let legacy = format!("{p}old");
    put(&ep, &legacy, "1700000000;oldhost;old reason");

    let r = run(distlock(&etcd, &p).args(["--lock-name=old", "--nowait", "--", "true"]));
    r.code(1);
    let r = run(distlock(&etcd, &p).args(["--lock-name=old", "--nowait", "--lock"]));
    r.code(1);
    assert_eq!(get_prefix(&ep, &p).len(), 1, "only the legacy key");

    // A waiting run queues behind the legacy key and runs once it is deleted.
    let dir = scratch_dir();
    let file = dir.path().join("ran");
    let mut waiter = append_waiter(&etcd, &p, "old", &file, 1);
    wait_for(DEADLINE, "the waiter to queue", || {
        contenders(&ep, &p, "old").len() == 1
    });
    assert!(
        waiter.try_status().is_none(),
        "the waiter exited while the legacy key was held"
    );
    assert!(
        !file.exists(),
        "the waiter ran while the legacy key was held"
    );
    etcdctl(&ep, ["del", "--", &legacy]);
    let out = waiter.output(DEADLINE);
    assert_eq!(
        shell_status(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "1\n");
    assert_eq!(get_prefix(&ep, &p), vec![]);

    // --unlock removes a legacy holder.
    put(&ep, &legacy, "1700000000;oldhost;old reason");
    run(distlock(&etcd, &p).args(["--lock-name=old", "--unlock"])).code(0);
    assert_eq!(get_prefix(&ep, &p), vec![]);
    // And a legacy key under another name is none of its business.
    put(&ep, &format!("{p}older"), "1700000000;oldhost;other");
    run(distlock(&etcd, &p).args(["--lock-name=old", "--lock", "--nowait"])).code(0);
}

// ---------------------------------------------------------------------------------------------
// Fencing tokens

#[test]
fn fencing_tokens_grow_with_every_new_holder() {
    let etcd = Etcd::start();
    let p = prefix("fencing");
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (_, token) = lock(&etcd, &p, "f", &[]);
        tokens.push(token);
        run(distlock(&etcd, &p).args(["--lock-name=f", "--unlock"])).code(0);
    }
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=f",
        "--",
        "sh",
        "-c",
        "echo $DISTLOCK_FENCING_TOKEN",
    ]));
    r.code(0);
    tokens.push(r.stdout.trim().parse().unwrap_or_else(|_| panic!("{r}")));
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens do not grow: {tokens:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Interplay with `etcdctl lock`

#[test]
fn etcdctl_lock_holding_excludes_distlock() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("ctlholds"));
    let holder = etcdctl_lock(&ep, &format!("{p}shared"), &[]);
    wait_for(DEADLINE, "etcdctl to hold the lock", || {
        contenders(&ep, &p, "shared").len() == 1
    });

    let r = run(distlock(&etcd, &p).args(["--lock-name=shared", "--nowait", "--", "true"]));
    r.code(1);
    assert_eq!(contenders(&ep, &p, "shared").len(), 1);

    // A waiting distlock gets it once etcdctl lets go (SIGTERM makes etcdctl release).
    let dir = scratch_dir();
    let file = dir.path().join("ran");
    let waiter = append_waiter(&etcd, &p, "shared", &file, 1);
    wait_for(DEADLINE, "distlock to queue", || {
        contenders(&ep, &p, "shared").len() == 2
    });
    assert!(!file.exists());
    holder.signal(Signal::SIGTERM);
    let out = waiter.output(DEADLINE);
    assert_eq!(
        shell_status(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(file.exists());
}

#[test]
fn distlock_holding_excludes_etcdctl_lock() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("dlholds"));
    let dir = scratch_dir();
    let file = dir.path().join("ran");
    lock(&etcd, &p, "shared", &[]);

    let script = format!("echo \"$ETCD_LOCK_KEY\" > '{}'", file.display());
    let waiter = etcdctl_lock(&ep, &format!("{p}shared"), &["sh", "-c", &script]);
    wait_for(DEADLINE, "etcdctl to queue", || {
        contenders(&ep, &p, "shared").len() == 2
    });
    assert!(
        !file.exists(),
        "etcdctl lock ran its command while distlock held the lock"
    );

    run(distlock(&etcd, &p).args(["--lock-name=shared", "--unlock"])).code(0);
    let out = waiter.output(DEADLINE);
    assert!(
        out.status.success(),
        "etcdctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = fs::read_to_string(&file).unwrap();
    assert!(key.starts_with(&format!("{p}shared/")), "{key}");
}

// ---------------------------------------------------------------------------------------------
// etcd unreachable

#[test]
fn an_unreachable_endpoint_is_exit_3_within_maxtime() {
    let dir = scratch_dir();
    let ran = dir.path().join("ran");
    let touch = format!("touch '{}'", ran.display());
    let yaml = write_file(dir.path(), "maxtime.yaml", "maxtime: 1s\n");
    let p = prefix("unreachable");

    // maxtime from the environment, the YAML file and the flag; run, --lock and --unlock.
    let run_touch = ["--lock-name=x", "--", "sh", "-c", touch.as_str()];
    let cases: [(&str, &[&str]); 5] = [
        ("env", &run_touch),
        ("env", &["--lock-name=x", "--lock"]),
        ("env", &["--lock-name=x", "--unlock"]),
        ("yaml", &["--lock-name=x", "--lock"]),
        ("flag", &["--lock-name=x", "--maxtime=1s", "--lock"]),
    ];
    for (source, args) in cases {
        let mut cmd = distlock_at(&dead_endpoint(), &p);
        match source {
            "env" => cmd.env("DISTLOCK_MAXTIME", "1s"),
            "yaml" => cmd.env("DISTLOCK_CONFIG", &yaml),
            _ => &mut cmd,
        };
        let r = run(cmd.args(args));
        r.code(3).one_error_line();
        assert!(
            r.took < Duration::from_millis(2500),
            "maxtime from {source}, {args:?}: {r}"
        );
    }
    assert!(!ran.exists(), "the command ran without the lock");
}

#[test]
fn a_hung_etcd_is_exit_3_within_maxtime() {
    // A frozen etcd accepts connections (the kernel does) but answers nothing: only distlock's
    // own deadline ends the wait.
    let etcd = Etcd::start();
    let p = prefix("hung");
    etcd.pause();
    for args in [["--lock-name=x", "--lock"], ["--lock-name=x", "--unlock"]] {
        let r = run(distlock(&etcd, &p).env("DISTLOCK_MAXTIME", "1s").args(args));
        r.code(3).one_error_line();
        assert!(r.took < Duration::from_millis(2500), "{args:?}: {r}");
    }
    etcd.resume();
    assert_eq!(get_prefix(&etcd.endpoint(), "").len(), 0);
}

// ---------------------------------------------------------------------------------------------
// Inputs: spellings and precedence

/// `--lock`s lock `name` with `cmd` and returns the key it printed.
fn lock_key(cmd: &mut assert_cmd::Command, name: &str) -> String {
    let r = run(cmd.arg(format!("--lock-name={name}")).arg("--lock"));
    r.code(0);
    parse_lock_output(&r).0
}

#[test]
fn prefix_precedence_defaults_yaml_env_flag() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let dir = scratch_dir();
    let p = prefix("prec");
    let (yaml_p, env_p, flag_p) = (format!("{p}yaml/"), format!("{p}env/"), format!("{p}flag/"));
    let yaml = write_file(dir.path(), "c.yaml", &format!("prefix: {yaml_p}\n"));
    // distlock() sets DISTLOCK_PREFIX; each case sets or removes it itself.
    let base = || {
        let mut c = distlock(&etcd, "unused");
        c.env_remove("DISTLOCK_PREFIX");
        c
    };

    let key = lock_key(&mut base(), "a");
    assert!(key.starts_with("/distlock/a/"), "default prefix: {key}");

    let key = lock_key(base().env("DISTLOCK_CONFIG", &yaml), "b");
    assert!(
        key.starts_with(&format!("{yaml_p}b/")),
        "YAML over default: {key}"
    );

    let key = lock_key(
        base()
            .env("DISTLOCK_CONFIG", &yaml)
            .env("DISTLOCK_PREFIX", &env_p),
        "c",
    );
    assert!(
        key.starts_with(&format!("{env_p}c/")),
        "env over YAML: {key}"
    );

    let mut cmd = base();
    cmd.env("DISTLOCK_CONFIG", &yaml)
        .env("DISTLOCK_PREFIX", &env_p)
        .arg(format!("--prefix={flag_p}"));
    let key = lock_key(&mut cmd, "d");
    assert!(
        key.starts_with(&format!("{flag_p}d/")),
        "flag over env: {key}"
    );

    let key = lock_key(
        base()
            .env("DISTLOCK_CONFIG", &yaml)
            .env("DISTLOCK_PREFIX", ""),
        "e",
    );
    assert!(
        key.starts_with(&format!("{yaml_p}e/")),
        "empty env counts as unset: {key}"
    );

    // Each landed where it said, in etcd.
    for (pre, name) in [
        ("/distlock/", "a"),
        (&yaml_p, "b"),
        (&env_p, "c"),
        (&flag_p, "d"),
        (&yaml_p, "e"),
    ] {
        assert_eq!(contenders(&ep, pre, name).len(), 1, "{pre}{name}");
    }
}

#[test]
fn reason_precedence_yaml_env_flag() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let dir = scratch_dir();
    let p = prefix("reason");
    let yaml = write_file(dir.path(), "c.yaml", "reason: from yaml\n");
    let stored = |key: &str| {
        get_key(&ep, key).unwrap().json()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let key = lock_key(distlock(&etcd, &p).env("DISTLOCK_CONFIG", &yaml), "a");
    assert_eq!(stored(&key), "from yaml");
    let key = lock_key(
        distlock(&etcd, &p)
            .env("DISTLOCK_CONFIG", &yaml)
            .env("DISTLOCK_REASON", "from env"),
        "b",
    );
    assert_eq!(stored(&key), "from env");
    let mut cmd = distlock(&etcd, &p);
    cmd.env("DISTLOCK_CONFIG", &yaml)
        .env("DISTLOCK_REASON", "from env")
        .arg("--reason=from flag");
    let key = lock_key(&mut cmd, "c");
    assert_eq!(stored(&key), "from flag");
    let key = lock_key(
        distlock(&etcd, &p)
            .env("DISTLOCK_CONFIG", &yaml)
            .env("DISTLOCK_REASON", ""),
        "d",
    );
    assert_eq!(
        stored(&key),
        "from yaml",
        "an empty DISTLOCK_REASON counts as unset"
    );
    let key = lock_key(&mut distlock(&etcd, &p), "e");
    assert_eq!(stored(&key), "", "the default reason is empty");
}

#[test]
fn lock_name_from_yaml_env_and_flag() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let dir = scratch_dir();
    let p = prefix("lockname");
    let yaml = write_file(dir.path(), "c.yaml", "lockname: fromyaml\n");
    let lock_with = |cmd: &mut assert_cmd::Command| {
        let r = run(cmd.arg("--lock"));
        r.code(0);
        parse_lock_output(&r).0
    };

    let key = lock_with(distlock(&etcd, &p).env("DISTLOCK_CONFIG", &yaml));
    assert!(key.starts_with(&format!("{p}fromyaml/")), "{key}");
    let key = lock_with(
        distlock(&etcd, &p)
            .env("DISTLOCK_CONFIG", &yaml)
            .env("DISTLOCK_LOCKNAME", "fromenv"),
    );
    assert!(key.starts_with(&format!("{p}fromenv/")), "{key}");
    let mut cmd = distlock(&etcd, &p);
    cmd.env("DISTLOCK_CONFIG", &yaml)
        .env("DISTLOCK_LOCKNAME", "fromenv")
        .arg("--lock-name=fromflag");
    let key = lock_with(&mut cmd);
    assert!(key.starts_with(&format!("{p}fromflag/")), "{key}");
    // An empty DISTLOCK_LOCKNAME counts as unset: the YAML name is used (and it is held).
    let r = run(distlock(&etcd, &p)
        .env("DISTLOCK_CONFIG", &yaml)
        .env("DISTLOCK_LOCKNAME", "")
        .args(["--lock", "--nowait"]));
    r.code(1);
    assert_eq!(contenders(&ep, &p, "fromyaml").len(), 1);
}

#[test]
fn endpoints_from_yaml_list_env_and_flag() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let dir = scratch_dir();
    let p = prefix("endpoints");
    let good = write_file(
        dir.path(),
        "good.yaml",
        &format!("endpoints:\n  - {ep}\nmaxtime: 1s\n"),
    );
    let bad = write_file(
        dir.path(),
        "bad.yaml",
        &format!("endpoints:\n  - {}\nmaxtime: 1s\n", dead_endpoint()),
    );

    // YAML list alone.
    let mut cmd = distlock(&etcd, &p);
    cmd.env_remove("DISTLOCK_ENDPOINTS")
        .env("DISTLOCK_CONFIG", &good);
    lock_key(&mut cmd, "a");
    // Env over a bad YAML.
    lock_key(distlock(&etcd, &p).env("DISTLOCK_CONFIG", &bad), "b");
    // Flag over a bad env.
    let mut cmd = distlock_at(&dead_endpoint(), &p);
    cmd.env("DISTLOCK_MAXTIME", "1s")
        .arg(format!("--endpoints={ep}"));
    lock_key(&mut cmd, "c");
    // Empty env counts as unset: the bad YAML is used, and fails with 3.
    let mut cmd = distlock(&etcd, &p);
    cmd.env("DISTLOCK_ENDPOINTS", "")
        .env("DISTLOCK_CONFIG", &bad);
    run(cmd.args(["--lock-name=d", "--lock"])).code(3);
    assert_eq!(get_prefix(&ep, &p).len(), 3);
}

#[test]
fn timeout_from_yaml_and_env_and_its_interplay_with_nowait() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("timeoutsrc"));
    let dir = scratch_dir();
    let yaml1 = write_file(dir.path(), "t1.yaml", "timeout: 1\n");
    let yaml30 = write_file(dir.path(), "t30.yaml", "timeout: 30s\n");
    let yaml5 = write_file(dir.path(), "t5.yaml", "timeout: 5\n");
    lock(&etcd, &p, "t", &[]);
    let busy = |cmd: &mut assert_cmd::Command| {
        let r = run(cmd.args(["--lock-name=t", "--", "true"]));
        r.code(1);
        r.took
    };

    let took = busy(distlock(&etcd, &p).env("DISTLOCK_CONFIG", &yaml1));
    assert!(
        (950..2500).contains(&took.as_millis()),
        "YAML timeout 1: {took:?}"
    );
    let took = busy(
        distlock(&etcd, &p)
            .env("DISTLOCK_CONFIG", &yaml30)
            .env("DISTLOCK_TIMEOUT", "1"),
    );
    assert!(
        (950..2500).contains(&took.as_millis()),
        "env timeout over YAML: {took:?}"
    );
    let took = busy(
        distlock(&etcd, &p)
            .env("DISTLOCK_TIMEOUT", "30s")
            .arg("--timeout=1s"),
    );
    assert!(
        (950..2500).contains(&took.as_millis()),
        "flag timeout over env: {took:?}"
    );

    // --nowait overrides a timeout that comes from the environment or the file...
    let took = busy(
        distlock(&etcd, &p)
            .env("DISTLOCK_TIMEOUT", "5")
            .arg("--nowait"),
    );
    assert!(
        took < Duration::from_millis(1500),
        "--nowait with DISTLOCK_TIMEOUT=5: {took:?}"
    );
    let took = busy(
        distlock(&etcd, &p)
            .env("DISTLOCK_CONFIG", &yaml5)
            .arg("--nowait"),
    );
    assert!(
        took < Duration::from_millis(1500),
        "--nowait with YAML timeout 5: {took:?}"
    );
    // ...but with a positive --timeout on the command line it is a usage error.
    let cases: [&[&str]; 2] = [
        &["--nowait", "--timeout", "5", "--", "true"],
        &["--timeout=5s", "--nowait", "--lock"],
    ];
    for args in cases {
        let r = run(distlock(&etcd, &p).arg("--lock-name=t").args(args));
        let msg = r.code(2).one_error_line();
        assert!(msg.contains("nowait"), "the message should say why: {r}");
    }
    assert_eq!(
        get_prefix(&ep, &p).len(),
        1,
        "only the holder: waiters and usage errors left nothing"
    );
}

#[test]
fn single_dash_long_flags_and_a_command_without_double_dash() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("godash"));
    let r = run(distlock(&etcd, &p).args(["-lock-name=x", "-lock", "-reason=go style"]));
    r.code(0);
    let (key, _) = parse_lock_output(&r);
    assert_eq!(get_key(&ep, &key).unwrap().json()["reason"], "go style");
    run(distlock(&etcd, &p).args(["-lock-name", "x", "-unlock"])).code(0);
    assert_eq!(get_prefix(&ep, &p), vec![]);

    let dir = scratch_dir();
    let file = dir.path().join("out");
    let script = format!("echo \"$DISTLOCK_LOCK_NAME\" \"$1\" > '{}'", file.display());
    let r = run(distlock(&etcd, &p).args([
        "--lock-name=y",
        "sh",
        "-c",
        &script,
        "sh",
        "--not-a-distlock-flag",
    ]));
    r.code(0);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "y --not-a-distlock-flag\n"
    );
    let r = run(distlock(&etcd, &p).args(["-lock-name=z", "-nowait", "sh", "-c", "exit 5"]));
    r.code(5);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn yaml_with_every_legacy_key_including_internallock_is_accepted() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let dir = scratch_dir();
    let p = prefix("yamlkeys");
    let yaml = write_file(
        dir.path(),
        "legacy.yaml",
        &format!(
            "# as the Go tool's users wrote it\nlockname: fromfile\nreason: \"from the file\"\n\
             endpoints:\n  - {ep}\ntimeout: 5\nprefix: {p}\nmaxtime: 2s\ninternallock: true\n"
        ),
    );
    let mut cmd = distlock_at("unused", "unused");
    cmd.env_remove("DISTLOCK_ENDPOINTS")
        .env_remove("DISTLOCK_PREFIX")
        .env("DISTLOCK_CONFIG", &yaml);
    let r = run(cmd.arg("--lock"));
    r.code(0);
    let (key, _) = parse_lock_output(&r);
    assert!(key.starts_with(&format!("{p}fromfile/")), "{key}");
    assert_eq!(
        get_key(&ep, &key).unwrap().json()["reason"],
        "from the file"
    );

    // The same file through --config.
    let mut cmd = distlock_at("unused", "unused");
    cmd.env_remove("DISTLOCK_ENDPOINTS")
        .env_remove("DISTLOCK_PREFIX")
        .arg("--config")
        .arg(&yaml);
    run(cmd.arg("--unlock")).code(0);
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

/// Asserts a configuration error: exit 2, one line naming the file, the key and the line.
fn assert_config_error(r: &Run, file: &Path, key: &str, line: u32) {
    r.code(2);
    let msg = r.one_error_line();
    let file = file.display().to_string();
    assert!(
        msg.contains(&file),
        "the message must name the file {file}: {r}"
    );
    assert!(
        msg.contains(key),
        "the message must name the key {key}: {r}"
    );
    // The file name has digits of its own; look for the line number in the rest.
    let rest = msg.replace(&file, "");
    let has_line = rest
        .split(|c: char| !c.is_ascii_digit())
        .any(|n| n == line.to_string());
    assert!(has_line, "the message must name line {line}: {r}");
}

#[test]
fn unknown_or_malformed_yaml_is_exit_2_naming_file_line_and_key() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let dir = scratch_dir();
    let p = prefix("badyaml");
    let cases = [
        (
            "unknown.yaml",
            "lockname: a\nreason: r\nbogus_key: 1\n",
            "bogus_key",
            3,
        ),
        (
            "timeout.yaml",
            "lockname: a\ntimeout: banana\n",
            "timeout",
            2,
        ),
        (
            "ttl.yaml",
            "reason: r\nprefix: /p/\nttl: [1, 2]\n",
            "ttl",
            3,
        ),
        ("endpoints.yaml", "endpoints:\n  a: b\n", "endpoints", 2),
        ("maxtime.yaml", "maxtime: -3s\n", "maxtime", 1),
    ];
    for (name, text, key, line) in cases {
        let path = write_file(dir.path(), name, text);
        let r = run(distlock(&etcd, &p)
            .env("DISTLOCK_CONFIG", &path)
            .args(["--lock-name=x", "--lock"]));
        assert_config_error(&r, &path, key, line);
        // And through --config.
        let r = run(distlock(&etcd, &p)
            .arg("--config")
            .arg(&path)
            .args(["--lock-name=x", "--lock"]));
        assert_config_error(&r, &path, key, line);
    }
    // A file that is not YAML at all names the file (and where it broke).
    let path = write_file(
        dir.path(),
        "syntax.yaml",
        "lockname: a\nreason: [unclosed\n",
    );
    let r = run(distlock(&etcd, &p)
        .env("DISTLOCK_CONFIG", &path)
        .args(["--lock-name=x", "--lock"]));
    r.code(2);
    assert!(
        r.one_error_line().contains(&path.display().to_string()),
        "{r}"
    );
    assert_eq!(
        get_prefix(&ep, "").len(),
        0,
        "a configuration error must change nothing in etcd"
    );
}

#[test]
fn a_missing_named_config_file_is_exit_2() {
    let etcd = Etcd::start();
    let p = prefix("nocfg");
    let missing = "/nonexistent/distlock-test.yaml";
    let r = run(distlock(&etcd, &p).args(["--config", missing, "--lock-name=x", "--lock"]));
    r.code(2);
    assert!(r.one_error_line().contains(missing), "{r}");
    let r = run(distlock(&etcd, &p)
        .env("DISTLOCK_CONFIG", missing)
        .args(["--lock-name=x", "--lock"]));
    r.code(2);
    assert!(r.one_error_line().contains(missing), "{r}");
    assert_eq!(get_prefix(&etcd.endpoint(), "").len(), 0);
}

#[test]
fn a_missing_default_config_file_is_fine() {
    if Path::new("/etc/distlock/distlock.yaml").exists() {
        eprintln!("skipped: /etc/distlock/distlock.yaml exists on this machine");
        return;
    }
    let etcd = Etcd::start();
    let p = prefix("defcfg");
    let mut cmd = distlock(&etcd, &p);
    cmd.env_remove("DISTLOCK_CONFIG");
    lock_key(&mut cmd, "x");
}

#[test]
fn invalid_lock_names_are_exit_2_and_change_nothing() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("names");
    let too_long = "a".repeat(256);
    for name in [
        "",
        "a/b",
        "/a",
        "a b",
        "a\tb",
        "a\nb",
        "a\u{7f}b",
        too_long.as_str(),
    ] {
        let r = run(distlock(&etcd, &p)
            .arg(format!("--lock-name={name}"))
            .arg("--lock"));
        r.code(2).one_error_line();
        let r = run(distlock(&etcd, &p)
            .env("DISTLOCK_LOCKNAME", name)
            .args(["--", "true"]));
        if name.is_empty() {
            // Empty env is unset: then the name is missing, still a usage error.
            r.code(2);
        } else {
            r.code(2).one_error_line();
        }
    }
    assert_eq!(get_prefix(&ep, "").len(), 0);

    // The limits themselves are fine: 255 bytes, and non-ASCII UTF-8.
    let longest = "b".repeat(255);
    lock_key(&mut distlock(&etcd, &p), &longest);
    lock_key(&mut distlock(&etcd, &p), "größe-ß");
}

#[test]
fn usage_errors_are_exit_2_and_change_nothing() {
    let etcd = Etcd::start();
    let p = prefix("usage");
    let cases: &[(&[&str], &str)] = &[
        (&["--lock"], "no lock name"),
        (&["--", "true"], "no lock name"),
        (
            &["--lock-name=x", "--ttl=0", "--lock"],
            "a TTL must be positive",
        ),
        (&["--lock-name=x", "--ttl=abc", "--lock"], "not a duration"),
        (
            &["--lock-name=x", "--timeout=soon", "--lock"],
            "not a duration",
        ),
        (
            &["--lock-name=x", "--lock", "--unlock"],
            "two modes at once",
        ),
    ];
    for (args, why) in cases {
        let r = run(distlock(&etcd, &p).args(*args));
        assert_eq!(r.code, 2, "{args:?} ({why}): {r}");
        // docs/CONTRACT.md: every error, usage errors included, is one `distlock: ` line.
        r.one_error_line();
    }
    assert_eq!(get_prefix(&etcd.endpoint(), "").len(), 0);
}

#[test]
fn an_unknown_flag_is_a_usage_error_not_the_start_of_a_command() {
    // A mistyped flag must not be run as a command (the Go tool, whose flag package stops at
    // the first non-flag word, says "flag provided but not defined" and exits 2).
    let etcd = Etcd::start();
    let p = prefix("unknownflag");
    for args in [
        ["--lock-name=x", "--no-such-flag", "--lock"],
        ["--lock-name=x", "--nowiat", "true"],
        ["-lock-name=x", "-nowiat", "true"],
    ] {
        let r = run(distlock(&etcd, &p).args(args));
        assert_eq!(r.code, 2, "{args:?}: {r}");
        r.one_error_line();
    }
    assert_eq!(get_prefix(&etcd.endpoint(), "").len(), 0);
}

#[test]
fn the_shipped_example_config_works() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("distlock.yaml.example");
    assert!(example.exists(), "{} is missing", example.display());
    let etcd = Etcd::start();
    let p = prefix("example");
    // The example's endpoints point at a real fleet: the environment overrides them.
    let r = run(distlock(&etcd, &p)
        .arg("--config")
        .arg(&example)
        .args(["--lock-name=example", "--lock"]));
    r.code(0);
    let (key, _) = parse_lock_output(&r);
    assert!(key.starts_with(&format!("{p}example/")), "{r}");
    let r = run(distlock(&etcd, &p)
        .arg("--config")
        .arg(&example)
        .args(["--lock-name=example", "--unlock"]));
    r.code(0);
    assert_eq!(get_prefix(&etcd.endpoint(), &p), vec![]);
}
