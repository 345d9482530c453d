//! The cron and Puppet user's day (issue 23), against the real binary and a real etcd: flock's
//! short flags (`-n`, `-w SECS`, `-s`, `-E CODE`, `-c CMD`), `-q` silencing skips but not
//! failures, the timeout that says it gave up, "did you mean" for mistyped options, the hint
//! for a shell line given as one word, the YAML file's `endpoints` string, scheme-less
//! endpoints and booleans, and `--show-config --output=json`'s typed values.

use std::time::Duration;

use crate::common::*;

/// A lock held with `--lock` by another "node", and a distlock to contend for it.
fn held(name: &str) -> (Etcd, String, String) {
    let etcd = Etcd::start();
    let p = prefix(name);
    let (key, _) = lock(&etcd, &p, name, &["--reason=nightly backup"]);
    (etcd, p, key)
}

#[test]
fn quiet_busy_nowait_says_nothing_and_exits_1_or_the_conflict_code() {
    let (etcd, p, key) = held("quietn");
    let ep = etcd.endpoint();
    for quiet in ["-q", "-qq", "--quiet"] {
        let r =
            run(distlock(&etcd, &p).args(["--lock-name=quietn", quiet, "-n", "-c", "echo ran"]));
        r.code(1);
        assert_eq!(
            (r.stdout.as_str(), r.stderr.as_str()),
            ("", ""),
            "{quiet}: {r}"
        );
    }
    // flock's -E, and the long spelling, with -q.
    let r = run(distlock(&etcd, &p).args(["-qn", "-E", "75", "--lock-name=quietn", "true"]));
    assert_eq!(r.code(75).stderr, "", "{r}");
    let r = run(distlock(&etcd, &p).args(["-q", "--nowait", "-E75", "--lock-name=quietn", "true"]));
    assert_eq!(r.code(75).stderr, "", "{r}");
    // Without -q the line names the holder, as before.
    let r = run(distlock(&etcd, &p).args(["--lock-name=quietn", "-n", "--", "true"]));
    let line = r.code(1).one_error_line();
    assert!(
        line.starts_with("distlock: quietn is busy: held by "),
        "{r}"
    );
    assert!(line.contains("nightly backup"), "{r}");
    // Only the holder's key: no skip left anything behind.
    let keys: Vec<String> = contenders(&ep, &p, "quietn")
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, [key]);
}

#[test]
fn quiet_still_prints_real_failures() {
    // etcd down: exit 3 with its line, -q or not.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let r = run(distlock_at(&nobody, &prefix("quietdown")).args([
        "-q",
        "-n",
        "--maxtime=300ms",
        "--lock-name=x",
        "true",
    ]));
    assert!(r.code(3).one_error_line().contains("127.0.0.1"), "{r}");
    // A usage error: exit 2 with its line.
    let r = run(distlock_at(&nobody, &prefix("quietusage")).args([
        "-q",
        "--ttl=0",
        "--lock-name=x",
        "true",
    ]));
    assert!(r.code(2).one_error_line().contains("--ttl"), "{r}");
    // The command not found is no skip either.
    let etcd = Etcd::start();
    let p = prefix("quiet127");
    let r = run(distlock(&etcd, &p).args([
        "-q",
        "--lock-name=x",
        "--",
        "no-such-command-for-distlock",
    ]));
    assert!(
        r.code(127).one_error_line().contains("command not found"),
        "{r}"
    );
    assert!(etcd.keys(&p).is_empty());
}

#[test]
fn a_fractional_w_gives_up_after_that_long_and_says_it_gave_up() {
    let (etcd, p, key) = held("gaveup");
    let ep = etcd.endpoint();
    let r = run(distlock(&etcd, &p).args(["--lock-name=gaveup", "-w", "0.5", "-c", "echo ran"]));
    let line = r.code(1).one_error_line().to_string();
    assert!(
        line.starts_with("distlock: gave up on gaveup after waiting 500ms: held by "),
        "{r}"
    );
    assert!(line.contains("nightly backup"), "{r}");
    assert!(!line.contains("is busy"), "{r}");
    assert_eq!(r.stdout, "", "{r}");
    assert!(r.took >= Duration::from_millis(500), "{r}");
    assert!(r.took < Duration::from_secs(5), "{r}");
    // --timeout takes the same fractions; with -q the give-up is silent.
    let r = run(distlock(&etcd, &p).args(["--lock-name=gaveup", "--timeout=0.3", "-q", "true"]));
    assert_eq!(r.code(1).stderr, "", "{r}");
    assert!(r.took >= Duration::from_millis(300), "{r}");
    // A longer wait prints its waiting line first; the last line says it gave up.
    let r = run(distlock(&etcd, &p).args(["--lock-name=gaveup", "-w", "2", "true"]));
    let last = r.code(1).stderr_lines().last().copied().unwrap_or_default();
    assert!(
        last.starts_with("distlock: gave up on gaveup after waiting 2s: held by"),
        "{r}"
    );
    // The waiters took their keys with them.
    let keys: Vec<String> = contenders(&ep, &p, "gaveup")
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, [key]);
}

#[test]
fn dash_s_holders_overlap_and_an_exclusive_one_waits_for_them() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("dashs"));
    let dir = scratch_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // A holds shared until B, also shared, has run beside it.
    let mut first = distlock_std(&ep, &p);
    first.args([
        "-s",
        "--lock-name=backup",
        "-c",
        &format!(
            "touch '{}' && while [ ! -e '{}' ]; do sleep 0.05; done",
            a.display(),
            b.display()
        ),
    ]);
    let mut first = Background::logged(first, dir.path(), "first shared holder");
    wait_for(DEADLINE, "the first shared holder's command", || a.exists());
    let record = contenders(&ep, &p, "backup")[0].json();
    assert_eq!(record["shared"], true, "{record}");
    // An exclusive contender does not get in beside it.
    run(distlock(&etcd, &p).args(["-n", "--lock-name=backup", "true"])).code(1);
    let r = run(distlock(&etcd, &p).args([
        "-sn",
        "--lock-name=backup",
        "-c",
        &format!("touch '{}' && echo beside", b.display()),
    ]));
    assert_eq!(r.code(0).stdout, "beside\n", "{r}");
    assert_eq!(first.wait_code(DEADLINE), 0, "{}", first.report());
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn dash_c_runs_the_line_through_sh() {
    let etcd = Etcd::start();
    let p = prefix("dashc");
    let r = run(distlock(&etcd, &p).args(["--lock-name=c", "-c", "echo a && echo b"]));
    assert_eq!(r.code(0).stdout, "a\nb\n", "{r}");
    assert_eq!(r.stderr, "", "{r}");
    // The line's own status, and its environment.
    let r = run(distlock(&etcd, &p).args([
        "-lock-name=c",
        "-c",
        "echo \"$DISTLOCK_LOCK_NAME\"; exit 3",
    ]));
    assert_eq!(r.code(3).stdout, "c\n", "{r}");
    // -c and a command are one too many.
    for both in [
        &["--lock-name=c", "-c", "echo a", "--", "echo", "b"][..],
        &["--lock-name=c", "-c", "echo a", "echo"],
    ] {
        let r = run(distlock(&etcd, &p).args(both));
        assert!(
            r.code(2).one_error_line().contains("--command"),
            "{both:?}: {r}"
        );
        assert_eq!(r.stdout, "", "{r}");
    }
    assert!(etcd.keys(&p).is_empty());
}

#[test]
fn a_shell_line_given_as_one_word_gets_a_hint_and_the_lock_is_released() {
    let etcd = Etcd::start();
    let p = prefix("hint");
    let r = run(distlock(&etcd, &p).args(["--lock-name=x", "--", "yum -y upgrade && echo done"]));
    assert_eq!(
        r.code(127).one_error_line(),
        "distlock: command not found: \"yum -y upgrade && echo done\"; to run a shell command \
         line use -c '…' or -- sh -c '…'",
        "{r}"
    );
    // A plain name keeps the plain message.
    let r = run(distlock(&etcd, &p).args(["--lock-name=x", "--", "no-such-yum"]));
    assert!(!r.code(127).one_error_line().contains("-c"), "{r}");
    assert!(etcd.keys(&p).is_empty());
}

#[test]
fn mistyped_options_get_a_did_you_mean_and_write_nothing() {
    let etcd = Etcd::start();
    let p = prefix("didyou");
    for (typed, meant) in [
        ("--lockname=x", "--lock-name"),
        ("--lock_name=x", "--lock-name"),
        ("-lockname=x", "--lock-name"),
        ("--DISTLOCK_LOCKNAME=x", "--lock-name"),
        ("--nowiat", "--nowait"),
        ("--hold_at_least=5", "--hold-at-least"),
    ] {
        let r = run(distlock(&etcd, &p).args([typed, "--", "true"]));
        let line = r.code(2).one_error_line();
        assert!(
            line.contains(&format!("did you mean {meant}?")),
            "{typed}: {r}"
        );
    }
    assert!(etcd.keys(&p).is_empty());
}

#[test]
fn the_yaml_file_takes_an_endpoints_string_without_a_scheme_and_yes_for_true() {
    let etcd = Etcd::start();
    let (ep, p) = (etcd.endpoint(), prefix("yamlstr"));
    let hostport = ep.strip_prefix("http://").unwrap().to_string();
    let dir = scratch_dir();
    let yaml = write_file(
        dir.path(),
        "distlock.yaml",
        &format!("endpoints: {hostport}\nshared: yes\nprefix: {p}\n"),
    );
    let cmd = || {
        let mut c = distlock(&etcd, &p);
        c.env_remove("DISTLOCK_ENDPOINTS")
            .env_remove("DISTLOCK_PREFIX")
            .env("DISTLOCK_CONFIG", &yaml);
        c
    };
    let v = run(cmd().args(["--show-config", "--output=json"]))
        .code(0)
        .json();
    assert_eq!(v["endpoints"]["value"], serde_json::json!([ep]), "{v}");
    assert_eq!(v["shared"]["value"], true, "{v}");
    let (key, _) =
        parse_lock_stdout(&run(cmd().args(["--lock-name=y", "--lock"])).code(0).stdout).unwrap();
    assert_eq!(contenders(&ep, &p, "y")[0].json()["shared"], true);
    // Shared beside the first one, from the same file.
    run(cmd().args(["--lock-name=y", "-n", "true"])).code(0);
    run(distlock(&etcd, &p).args(["--lock-name=y", &format!("--unlock={key}")])).code(0);

    // host:port from the flag and the variable too; `On` and `0` as the variable.
    let r = run(distlock(&etcd, &p)
        .env("DISTLOCK_ENDPOINTS", &hostport)
        .env("DISTLOCK_SHARED", "On")
        .args(["--lock-name=z", "--show-config", "--output=json"]));
    let v = r.code(0).json();
    assert_eq!(v["endpoints"]["value"], serde_json::json!([ep]), "{v}");
    assert_eq!(v["shared"]["value"], true, "{v}");
    run(distlock_at("http://127.0.0.1:1", &p)
        .env("DISTLOCK_SHARED", "0")
        .args([
            &format!("--endpoints={hostport}"),
            "--lock-name=z",
            "-n",
            "true",
        ]))
    .code(0);

    // A value that is no boolean is refused by the file and the variable alike.
    let bad = write_file(dir.path(), "bad.yaml", "ttl: 5\nshared: maybe\n");
    let r = run(distlock(&etcd, &p)
        .env("DISTLOCK_CONFIG", &bad)
        .args(["--lock-name=z", "true"]));
    let line = r.code(2).one_error_line();
    assert!(line.contains("line 2") && line.contains("shared"), "{r}");
    let r = run(distlock(&etcd, &p)
        .env("DISTLOCK_SHARED", "maybe")
        .args(["--lock-name=z", "true"]));
    assert!(
        r.code(2).one_error_line().contains("DISTLOCK_SHARED"),
        "{r}"
    );
    assert_eq!(get_prefix(&ep, &p), vec![]);
}

#[test]
fn show_config_json_values_are_typed() {
    let etcd = Etcd::start();
    let p = prefix("typed");
    let r = run(distlock(&etcd, &p).env("DISTLOCK_TTL", "20").args([
        "--show-config",
        "--output=json",
        "--maxtime=1500ms",
        "-w",
        "90s",
        "-s",
        "-E",
        "75",
        "--max-runtime=1h30m",
        "--endpoints",
        &format!("{},127.0.0.1:9", etcd.endpoint()),
    ]));
    let v = r.code(0).json();
    let value = |key: &str| v[key]["value"].clone();
    use serde_json::json;
    assert_eq!(value("ttl"), json!(20), "{v}");
    assert_eq!(v["ttl"]["source"], "env DISTLOCK_TTL", "{v}");
    assert_eq!(value("maxtime"), json!(1.5), "{v}");
    assert_eq!(value("timeout"), json!(90), "{v}");
    assert_eq!(v["timeout"]["source"], "flag --timeout", "{v}");
    assert_eq!(value("max_runtime"), json!(5400), "{v}");
    assert_eq!(value("shared"), json!(true), "{v}");
    assert_eq!(value("max_holders"), json!(1), "{v}");
    assert_eq!(value("conflict_exit_code"), json!(75), "{v}");
    assert_eq!(
        value("endpoints"),
        json!([etcd.endpoint(), "http://127.0.0.1:9"]),
        "{v}"
    );
    assert_eq!(value("hold_at_least"), json!(null), "{v}");
    assert_eq!(value("cacert"), json!(null), "{v}");
    assert_eq!(value("password"), json!(null), "{v}");
    assert_eq!(value("prefix"), json!(p), "{v}");
    assert_eq!(value("output"), json!("json"), "{v}");
    assert_eq!(v["hold_at_least"]["source"], "default", "{v}");
    // The default wait, forever, is -1 as it is written.
    let v = run(distlock(&etcd, &p).args(["--show-config", "--output=json"]))
        .code(0)
        .json();
    assert_eq!(v["timeout"]["value"], json!(-1), "{v}");
    assert_eq!(v["shared"]["value"], json!(false), "{v}");
}

#[test]
fn hold_at_least_says_it_holds_only_with_v() {
    let etcd = Etcd::start();
    let p = prefix("holdv");
    let r = run(distlock(&etcd, &p).args(["--lock-name=h", "--hold-at-least=30", "true"]));
    assert_eq!(r.code(0).stderr, "", "{r}");
    assert_eq!(
        contenders(&etcd.endpoint(), &p, "h").len(),
        1,
        "the lock is kept"
    );
    let r = run(distlock(&etcd, &p).args(["--lock-name=h2", "--hold-at-least=30", "-v", "true"]));
    assert!(r.code(0).stderr.contains("(--hold-at-least)"), "{r}");
}
