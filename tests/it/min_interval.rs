//! `--min-interval D`: at most one successful run per D, fleet-wide. A run whose command exits
//! 0 leaves a stamp (`<prefix>.distlock/stamp/<name>`) on a lease of TTL D; until etcd expires
//! it, every later run under the name is skipped: exit 1, one line, the command not run. The
//! lease decides, never a timestamp, so the servers' clocks do not matter.
//!
//! Each test starts its own etcd and uses its own key prefix; the commands count their runs in
//! a file. Tests wait for events (a file's lines, a key gone, a lease gone), never a fixed time.

use std::path::{Path, PathBuf};

use crate::common::*;
use tempfile::TempDir;

/// The lock every test here uses.
const NAME: &str = "job";

/// The stamp's key for `NAME` under prefix `p`.
fn stamp_key(p: &str) -> String {
    format!("{p}.distlock/stamp/{NAME}")
}

/// A script that counts its run in `count`, then, with `go`, waits until that file exists
/// (so a test decides when the command ends), and exits `code`.
fn script(count: &Path, go: Option<&Path>, code: i32) -> String {
    let wait = go.map_or(String::new(), |go| {
        format!("while [ ! -e '{}' ]; do sleep 0.05; done; ", go.display())
    });
    format!("echo $$ >> '{}'; {wait}exit {code}", count.display())
}

/// `distlock --lock-name=job <extra> -- sh -c <script>`.
fn job(etcd: &Etcd, p: &str, extra: &[&str], script: &str) -> assert_cmd::Command {
    let mut cmd = distlock(etcd, p);
    cmd.arg(format!("--lock-name={NAME}"))
        .args(extra)
        .args(["--", "sh", "-c", script]);
    cmd
}

/// The same in the background.
fn job_in_background(etcd: &Etcd, p: &str, extra: &[&str], script: &str) -> Background {
    let mut cmd = distlock_std(&etcd.endpoint(), p);
    cmd.arg(format!("--lock-name={NAME}"))
        .args(extra)
        .args(["--", "sh", "-c", script]);
    Background::spawn(cmd, "distlock --min-interval")
}

/// A scratch directory with the count file and the go file's path in it.
fn files() -> (TempDir, PathBuf, PathBuf) {
    let dir = scratch_dir();
    let (count, go) = (dir.path().join("count"), dir.path().join("go"));
    (dir, count, go)
}

/// Waits until the command has run `n` times in all.
fn wait_runs(count: &Path, n: usize) {
    wait_for(DEADLINE, &format!("{n} run(s) of the command"), || {
        read_lines(count).len() == n
    });
}

/// etcd's current revision: it grows with every write.
fn revision(ep: &str) -> i64 {
    let out = etcdctl(ep, ["get", "-w", "json", "--", "/nothing"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

#[test]
fn a_run_that_exits_0_stamps_and_the_next_run_is_skipped_without_running() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-skip"));
    let (_dir, count, _) = files();
    let run_it = script(&count, None, 0);

    let first = run(&mut job(&etcd, &p, &["--min-interval=1h"], &run_it));
    first.code(0);
    assert_eq!(read_lines(&count).len(), 1, "{first}");
    assert_eq!(first.stderr, "", "{first}");

    // The stamp: on its own lease of 1h, saying who ran and when; the lock's key is gone.
    let stamp = get_key(&ep, &stamp_key(&p)).expect("a stamp after a run that exited 0");
    let (left, granted) = lease_ttl(&ep, stamp.lease).expect("the stamp is on a live lease");
    assert_eq!(granted, 3600, "{stamp:?}");
    assert!((3590..=3600).contains(&left), "{left}s left");
    let v = stamp.json();
    assert_eq!(v["host"], hostname(), "{v}");
    assert_eq!(v["interval_s"], 3600, "{v}");
    assert!(v["pid"].as_u64().is_some_and(|pid| pid > 0), "{v}");
    assert!(v["token"].as_i64().is_some_and(|t| t > 0), "{v}");
    let started = v["started"].as_str().unwrap_or_default();
    assert!(humantime::parse_rfc3339(started).is_ok(), "{v}");
    assert!(contenders(&ep, &p, NAME).is_empty());

    // The next run, here or anywhere: skipped, with one line saying why and until when.
    let second = run(&mut job(&etcd, &p, &["--min-interval=1h"], &run_it));
    let line = second.code(1).one_error_line().to_string();
    assert_eq!(
        read_lines(&count).len(),
        1,
        "the command must not run: {second}"
    );
    // The stamping host's time, as every distlock message shows a time: in UTC.
    let started = format!(
        "{} UTC",
        started.trim_end_matches('Z').replacen('T', " ", 1)
    );
    let ran = format!(
        "distlock: skipped {NAME}: it ran at {started} on {}",
        hostname()
    );
    assert!(line.starts_with(&ran), "{ran:?} not in {line:?}");
    // The time left as etcd counts it: whole seconds, at most the hour.
    let next = " and --min-interval 1h allows the next run in ";
    assert!(
        [format!("{next}59m"), format!("{next}1h00m00s")]
            .iter()
            .any(|part| line.contains(part.as_str())),
        "{line:?}"
    );
    // As "busy" is: --conflict-exit-code applies, and the stamp is left alone.
    let third = run(&mut job(
        &etcd,
        &p,
        &["--min-interval=1h", "--conflict-exit-code=75"],
        &run_it,
    ));
    third.code(75).one_error_line();
    assert_eq!(read_lines(&count).len(), 1, "{third}");
    let after = get_key(&ep, &stamp_key(&p)).expect("the stamp stays");
    assert_eq!(
        after.mod_revision, stamp.mod_revision,
        "skips rewrote the stamp"
    );
    // Skipped runs take no lease and leave no key: only the stamp's lease is left.
    assert_eq!(etcd.leases(), [stamp.lease]);
    assert!(contenders(&ep, &p, NAME).is_empty());
}

/// -q treats a skip as it treats "busy": the skip is a "not acquired" failure like a busy
/// --nowait, so whatever -q does to one (issue 23) it does to the other.
#[test]
fn quiet_treats_a_skip_as_it_treats_busy() {
    let etcd = Etcd::start();
    let p = prefix("mi-quiet");
    let (_dir, count, go) = files();
    let r = run(&mut job(
        &etcd,
        &p,
        &["--min-interval=1h"],
        &script(&count, None, 0),
    ));
    r.code(0);
    let skipped = run(&mut job(
        &etcd,
        &p,
        &["-q", "--min-interval=1h"],
        &script(&count, None, 0),
    ));
    skipped.code(1);
    // Busy: another lock name held by a command that waits.
    let mut holder = distlock_std(&etcd.endpoint(), &p);
    holder
        .args(["--lock-name=other", "--"])
        .args(["sh", "-c", &script(&count, Some(&go), 0)]);
    let mut holder = Background::spawn(holder, "holder");
    wait_runs(&count, 2);
    let busy = run(distlock(&etcd, &p).args(["-q", "--lock-name=other", "--nowait", "true"]));
    busy.code(1);
    std::fs::write(&go, "").unwrap();
    assert_eq!(holder.wait_code(DEADLINE), 0);
    assert_eq!(
        skipped.stderr.is_empty(),
        busy.stderr.is_empty(),
        "skipped: {skipped}\nbusy: {busy}"
    );
    assert_eq!(read_lines(&count).len(), 2, "{skipped}");
}

#[test]
fn a_failed_run_does_not_stamp_and_leaves_nothing() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-fail"));
    let (_dir, count, _) = files();
    let r = run(&mut job(
        &etcd,
        &p,
        &["--min-interval=1h"],
        &script(&count, None, 3),
    ));
    r.code(3);
    assert_eq!(get_key(&ep, &stamp_key(&p)), None, "{r}");
    assert_eq!(
        etcd.leases(),
        Vec::<i64>::new(),
        "the stamp's lease is revoked"
    );
    // So the next run runs; a command that is not found does not stamp either.
    run(&mut job(
        &etcd,
        &p,
        &["--min-interval=1h"],
        &script(&count, None, 0),
    ))
    .code(0);
    assert_eq!(read_lines(&count).len(), 2);
    etcdctl(&ep, ["del", "--", &stamp_key(&p)]);
    let r = run(distlock(&etcd, &p).args([
        &format!("--lock-name={NAME}"),
        "--min-interval=1h",
        "--",
        "/nonexistent/command",
    ]));
    r.code(127);
    assert_eq!(get_key(&ep, &stamp_key(&p)), None, "{r}");
}

#[test]
fn once_etcd_expires_the_stamp_the_next_run_runs() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-expire"));
    let (_dir, count, _) = files();
    let run_it = script(&count, None, 0);
    run(&mut job(&etcd, &p, &["--min-interval=2s"], &run_it)).code(0);
    let stamp = get_key(&ep, &stamp_key(&p)).expect("a stamp");
    assert_eq!(
        lease_ttl(&ep, stamp.lease).map(|(_, granted)| granted),
        Some(2)
    );
    let skipped = run(&mut job(&etcd, &p, &["--min-interval=2s"], &run_it));
    skipped.code(1);
    assert!(skipped.stderr.contains("--min-interval 2s"), "{skipped}");
    wait_for(DEADLINE, "etcd to expire the stamp", || {
        get_key(&ep, &stamp_key(&p)).is_none()
    });
    run(&mut job(&etcd, &p, &["--min-interval=2s"], &run_it)).code(0);
    assert_eq!(read_lines(&count).len(), 2);
}

/// A command that runs longer than D finds the stamp's lease gone (etcd counts D from the
/// run's start) and stamps nothing: D has passed already.
#[test]
fn a_run_longer_than_the_interval_stamps_nothing() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-long"));
    let (_dir, count, go) = files();
    let mut holder = job_in_background(
        &etcd,
        &p,
        &["--min-interval=2s"],
        &script(&count, Some(&go), 0),
    );
    wait_runs(&count, 1);
    // The lock's lease and the stamp's; the stamp's goes after 2s.
    assert_eq!(etcd.leases().len(), 2);
    wait_for(DEADLINE, "etcd to expire the stamp's lease", || {
        etcd.leases().len() == 1
    });
    std::fs::write(&go, "").unwrap();
    assert_eq!(holder.wait_code(DEADLINE), 0);
    assert_eq!(get_key(&ep, &stamp_key(&p)), None);
    run(&mut job(
        &etcd,
        &p,
        &["--min-interval=2s"],
        &script(&count, None, 0),
    ))
    .code(0);
    assert_eq!(read_lines(&count).len(), 2);
}

/// The servers that fired at the same second all queue; the first runs the job and stamps,
/// and each waiter, taking the lock after it, is skipped.
#[test]
fn a_queue_of_runs_started_together_runs_the_command_once() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-queue"));
    let (_dir, count, go) = files();
    let run_it = script(&count, Some(&go), 0);
    let mut runs = vec![job_in_background(
        &etcd,
        &p,
        &["--min-interval=1h"],
        &run_it,
    )];
    wait_runs(&count, 1);
    for _ in 0..5 {
        runs.push(job_in_background(
            &etcd,
            &p,
            &["--min-interval=1h"],
            &run_it,
        ));
    }
    wait_contenders(&ep, &p, NAME, 6);
    std::fs::write(&go, "").unwrap();
    let codes: Vec<i32> = runs.iter_mut().map(|r| r.wait_code(DEADLINE)).collect();
    assert_eq!(codes, [0, 1, 1, 1, 1, 1]);
    assert_eq!(
        read_lines(&count).len(),
        1,
        "the command ran more than once"
    );
    for r in runs.into_iter().skip(1) {
        let out = r.output(DEADLINE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("distlock: skipped {NAME}: it ran at")),
            "{stderr}"
        );
    }
    assert!(contenders(&ep, &p, NAME).is_empty());
    assert_eq!(etcd.leases().len(), 1, "only the stamp's lease is left");
}

/// `--nowait` (and `--timeout=0`) finds the stamp before joining the queue: a skipped run
/// writes nothing at all, not even a lease.
#[test]
fn a_skipped_nowait_run_writes_nothing_to_etcd() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-nowait"));
    let (_dir, count, _) = files();
    let run_it = script(&count, None, 0);
    run(&mut job(
        &etcd,
        &p,
        &["--nowait", "--min-interval=1h"],
        &run_it,
    ))
    .code(0);
    let leases = etcd.leases();
    let before = revision(&ep);
    for wait in ["--nowait", "--timeout=0"] {
        let r = run(&mut job(&etcd, &p, &[wait, "--min-interval=1h"], &run_it));
        assert!(r.code(1).one_error_line().contains("skipped"), "{r}");
    }
    assert_eq!(revision(&ep), before, "a skipped run wrote to etcd");
    assert_eq!(etcd.leases(), leases, "a skipped run took a lease");
    assert_eq!(read_lines(&count).len(), 1);
}

/// A waiter with a timeout behind a run that fails runs; behind one that succeeds it is
/// skipped when it takes the lock, well within its timeout.
#[test]
fn a_waiter_with_a_timeout_runs_after_a_failed_run_and_is_skipped_after_a_stamped_one() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-timeout"));
    let (_dir, count, go) = files();
    let args = ["--timeout=60", "--min-interval=1h"];
    let mut failing = job_in_background(&etcd, &p, &args, &script(&count, Some(&go), 5));
    wait_runs(&count, 1);
    let mut waiter = job_in_background(&etcd, &p, &args, &script(&count, Some(&go), 0));
    wait_contenders(&ep, &p, NAME, 2);
    std::fs::write(&go, "").unwrap();
    assert_eq!(failing.wait_code(DEADLINE), 5);
    assert_eq!(waiter.wait_code(DEADLINE), 0);
    assert_eq!(read_lines(&count).len(), 2);

    etcdctl(&ep, ["del", "--", &stamp_key(&p)]);
    std::fs::remove_file(&go).unwrap();
    let mut stamping = job_in_background(&etcd, &p, &args, &script(&count, Some(&go), 0));
    wait_runs(&count, 3);
    let waiter = job_in_background(&etcd, &p, &args, &script(&count, None, 0));
    wait_contenders(&ep, &p, NAME, 2);
    std::fs::write(&go, "").unwrap();
    assert_eq!(stamping.wait_code(DEADLINE), 0);
    let out = waiter.output(DEADLINE);
    assert_eq!(shell_status(out.status), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipped"), "{stderr}");
    assert_eq!(read_lines(&count).len(), 3, "the waiter's command ran");
}

/// With `--max-holders 2`, the holders that took the lock before any stamp existed both run;
/// the one that takes it after a stamp is skipped.
#[test]
fn max_holders_run_side_by_side_until_one_stamps() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-sem"));
    let (_dir, count, go) = files();
    let args = ["--max-holders=2", "--min-interval=1h"];
    let run_it = script(&count, Some(&go), 0);
    let mut holders = vec![
        job_in_background(&etcd, &p, &args, &run_it),
        job_in_background(&etcd, &p, &args, &run_it),
    ];
    wait_runs(&count, 2);
    let third = job_in_background(&etcd, &p, &args, &run_it);
    wait_contenders(&ep, &p, NAME, 3);
    std::fs::write(&go, "").unwrap();
    for holder in &mut holders {
        assert_eq!(holder.wait_code(DEADLINE), 0);
    }
    let out = third.output(DEADLINE);
    assert_eq!(
        shell_status(out.status),
        1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_lines(&count).len(), 2);
}

/// The stamp's lease decides, never its `started` or any clock: a stamp written with a time
/// far in the past still stops runs while its lease lives, and one with a time far in the
/// future stops them only until its lease runs out.
#[test]
fn the_stamps_lease_decides_whatever_its_time_says() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-clock"));
    let (_dir, count, _) = files();
    let run_it = script(&count, None, 0);
    let stamp = |started: &str, interval_s: u64| {
        format!(
            r#"{{"host":"node-3","pid":1,"started":"{started}","interval_s":{interval_s},"token":1}}"#
        )
    };
    // Ran in 1970 with an interval of a second, by its clock: still stops runs for 60s.
    let lease = lease_grant(&ep, 60);
    put_with_lease(
        &ep,
        &stamp_key(&p),
        &stamp("1970-01-01T00:00:00Z", 1),
        lease,
    );
    let r = run(&mut job(&etcd, &p, &["--min-interval=1s"], &run_it));
    let line = r.code(1).one_error_line().to_string();
    assert!(
        line.contains("it ran at 1970-01-01 00:00:00 UTC on node-3"),
        "{line}"
    );
    assert!(
        ["in 5", "in 1m00s"]
            .iter()
            .any(|t| line.contains(&format!("allows the next run {t}"))),
        "{line}"
    );
    assert_eq!(read_lines(&count).len(), 0);

    // Runs in 2999 for an hour, by its clock: stops runs only while its 2s lease lives.
    etcdctl(&ep, ["lease", "revoke", &format!("{lease:x}")]);
    let lease = lease_grant(&ep, 2);
    put_with_lease(
        &ep,
        &stamp_key(&p),
        &stamp("2999-01-01T00:00:00Z", 3600),
        lease,
    );
    run(&mut job(&etcd, &p, &["--min-interval=1s"], &run_it)).code(1);
    wait_for(DEADLINE, "etcd to expire the stamp", || {
        get_key(&ep, &stamp_key(&p)).is_none()
    });
    run(&mut job(&etcd, &p, &["--min-interval=1s"], &run_it)).code(0);
    assert_eq!(read_lines(&count).len(), 1);

    // An operator's stamp on no lease, with any value, stops runs until deleted.
    etcdctl(&ep, ["del", "--", &stamp_key(&p)]);
    put(&ep, &stamp_key(&p), "paused by ops");
    let r = run(&mut job(&etcd, &p, &["--min-interval=1s"], &run_it));
    let line = r.code(1).one_error_line().to_string();
    assert!(line.contains("once someone deletes the stamp"), "{line}");
    assert_eq!(read_lines(&count).len(), 1);
}

#[test]
fn status_shows_the_stamp_and_when_it_runs_out() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-status"));
    let (_dir, count, _) = files();
    let status = |format: &str| {
        run(distlock(&etcd, &p).args([
            &format!("--lock-name={NAME}"),
            "--status",
            &format!("--output={format}"),
        ]))
    };
    // A free lock: --status exits 1, stamp or not.
    let before = status("json");
    assert_eq!(
        before.code(1).json()["min_interval"],
        serde_json::Value::Null
    );
    assert!(!status("text").stdout.contains("min-interval"));

    run(&mut job(
        &etcd,
        &p,
        &["--min-interval=1h"],
        &script(&count, None, 0),
    ))
    .code(0);
    let written = get_key(&ep, &stamp_key(&p)).unwrap().json();
    let v = status("json").code(1).json();
    let m = &v["min_interval"];
    assert_eq!(v["held"], false, "{v}");
    assert_eq!(m["key"], stamp_key(&p), "{v}");
    for field in ["host", "pid", "started", "interval_s", "token"] {
        assert_eq!(m[field], written[field], "{field}: {v}");
    }
    let left = m["expires_in_s"].as_i64().unwrap_or_default();
    assert!((3590..=3600).contains(&left), "{v}");

    let text = status("text");
    let shown = text.code(1).stdout.clone();
    assert!(shown.starts_with(&format!("{NAME}: free\n")), "{shown}");
    // `2026-12-06T03:10:51Z` shown as `2026-12-06 03:10:51 UTC`.
    let started = written["started"].as_str().unwrap();
    let started = format!(
        "{} UTC",
        started.trim_end_matches('Z').replacen('T', " ", 1)
    );
    assert!(
        shown.contains(&format!(
            "min-interval:  last run {started} on {}",
            hostname()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("every 1h; next run allowed in 59m"),
        "{shown}"
    );
}

/// `--min-interval` shapes a command's run: as a flag to a mode that runs none it is a usage
/// error that writes nothing; from the environment those modes ignore it. Its value is whole
/// seconds.
#[test]
fn min_interval_is_for_running_a_command_and_takes_whole_seconds() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("mi-usage"));
    for args in [
        &["--lock", "--min-interval=1h"][..],
        &["--status", "--min-interval=1h"],
        &["--min-interval=0", "true"],
        &["--min-interval=1.5s", "true"],
        &["--min-interval=soon", "true"],
    ] {
        let r = run(distlock(&etcd, &p)
            .arg(format!("--lock-name={NAME}"))
            .args(args));
        assert!(
            r.code(2).one_error_line().contains("min-interval"),
            "{args:?}: {r}"
        );
    }
    assert!(get_prefix(&ep, &p).is_empty());
    let r = run(distlock(&etcd, &p)
        .env("DISTLOCK_MIN_INTERVAL", "1h")
        .args([&format!("--lock-name={NAME}"), "--lock"]));
    r.code(0);
    assert_eq!(get_key(&ep, &stamp_key(&p)), None, "--lock stamped: {r}");
    // From the environment, run mode takes it.
    run(distlock(&etcd, &p).args([&format!("--lock-name={NAME}"), "--unlock"])).code(0);
    run(distlock(&etcd, &p)
        .env("DISTLOCK_MIN_INTERVAL", "1h")
        .args([&format!("--lock-name={NAME}"), "true"]))
    .code(0);
    assert!(get_key(&ep, &stamp_key(&p)).is_some());
}
