//! Hostile input: malformed command lines, environments and configuration files are exit 2
//! with one `distlock: ` line and leave etcd untouched (checked against a live etcd, so that
//! "nothing written" means something); and whatever other tools left under the prefix never
//! crashes `--status`, `--list` or a waiter.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::common::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Where a case's configuration file comes from.
enum File {
    None,
    /// This content, written to a fresh file given with `--config`.
    Yaml(Vec<u8>),
    /// This content, written to a fresh file named by DISTLOCK_CONFIG.
    YamlFromEnv(Vec<u8>),
    /// A path given with `--config` as is.
    Path(PathBuf),
}

/// One malformed input.
struct Case {
    what: String,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    file: File,
    /// Text the error line must contain; `{file}` stands for the configuration file's path.
    expect: Vec<String>,
}

fn case(what: &str, args: &[&str]) -> Case {
    Case {
        what: what.to_string(),
        args: args.iter().map(OsString::from).collect(),
        env: Vec::new(),
        file: File::None,
        expect: Vec::new(),
    }
}

impl Case {
    /// Adds an option, before the command if there is one.
    fn arg(mut self, arg: impl Into<OsString>) -> Case {
        let at = self
            .args
            .iter()
            .position(|a| a == "--")
            .unwrap_or(self.args.len());
        self.args.insert(at, arg.into());
        self
    }

    fn args_str(self, args: &[&str]) -> Case {
        args.iter().fold(self, |case, a| case.arg(*a))
    }

    fn env(mut self, name: &str, value: impl Into<OsString>) -> Case {
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// The file's content, with `--config`.
    fn yaml(mut self, content: impl Into<Vec<u8>>) -> Case {
        self.file = File::Yaml(content.into());
        self
    }

    fn yaml_from_env(mut self, content: impl Into<Vec<u8>>) -> Case {
        self.file = File::YamlFromEnv(content.into());
        self
    }

    fn config_path(mut self, path: impl Into<PathBuf>) -> Case {
        self.file = File::Path(path.into());
        self
    }

    fn expect(mut self, parts: &[&str]) -> Case {
        self.expect.extend(parts.iter().map(|p| p.to_string()));
        self
    }

    /// A YAML error: the message names the file, the line and the key.
    fn yaml_error(self, line: u32, key: &str) -> Case {
        let line = format!("line {line}");
        self.expect(&["{file}", &line, key])
    }
}

/// 256 bytes, one too many for a lock name.
fn long_name(unit: &str) -> String {
    unit.repeat(256 / unit.len())
}

fn cases(live_port: u16) -> Vec<Case> {
    let lock = ["--lock-name=x", "--lock"];
    let run = ["--lock-name=x", "--", "true"];
    let invalid_utf8 = OsString::from_vec(vec![b'a', 0xff, 0xfe, b'z']);
    let big_reason = format!("reason: \"{}\"\n", "r".repeat(2 << 20));
    vec![
        // What to do.
        case(
            "--lock with --unlock",
            &["--lock-name=x", "--lock", "--unlock"],
        ),
        case(
            "--status with --list",
            &["--lock-name=x", "--status", "--list"],
        ),
        case(
            "--lock with --show-config",
            &["--lock-name=x", "--lock", "--show-config"],
        ),
        case(
            "--lock with a command",
            &["--lock-name=x", "--lock", "--", "true"],
        ),
        case(
            "--unlock with a command, no --",
            &["--lock-name=x", "--unlock", "true"],
        ),
        case("no command and no mode", &["--lock-name=x"]),
        case("an empty command after --", &["--lock-name=x", "--"]),
        case(
            "--nowait with a positive --timeout",
            &["--lock-name=x", "--nowait", "--timeout=30", "--", "true"],
        ),
        // Lock names.
        case("no lock name", &["--lock"]).expect(&["lock name"]),
        case("an empty lock name", &["--lock-name=", "--lock"]),
        case("lock name /", &["--lock-name=/", "--lock"]),
        case("lock name with /", &["--lock-name=a/b", "--lock"]),
        case("lock name of one space", &["--lock-name= ", "--lock"]),
        case("lock name with a space", &["--lock-name=a b", "--lock"]),
        case("lock name with a tab", &["--lock-name=a\tb", "--lock"]),
        case("lock name with a newline", &["--lock-name=a\nb", "--lock"]),
        case(
            "lock name with a no-break space",
            &["--lock-name=a\u{a0}b", "--lock"],
        ),
        case("lock name with BEL", &["--lock-name=a\u{7}", "--lock"]),
        case(
            "lock name with an escape sequence",
            &["--lock-name=\u{1b}[2J", "--lock"],
        ),
        case("lock name with DEL", &["--lock-name=a\u{7f}", "--lock"]),
        case("lock name not UTF-8 (flag)", &["--lock", "--lock-name"]).arg(invalid_utf8.clone()),
        case("lock name not UTF-8 (env)", &lock[1..]).env("DISTLOCK_LOCKNAME", invalid_utf8),
        case("lock name of 256 bytes", &["--lock"]).arg(format!("--lock-name={}", long_name("x"))),
        case("lock name of 256 bytes in 128 chars", &["--lock"])
            .arg(format!("--lock-name={}", long_name("é"))),
        case("lock name with / (env)", &["--lock"]).env("DISTLOCK_LOCKNAME", "a/b"),
        case("lock name with a space (file)", &["--lock"])
            .yaml("lockname: \"a b\"\n")
            .expect(&["{file}", "lockname"]),
        // Durations and numbers.
        case("--ttl 0", &lock).arg("--ttl=0").expect(&["--ttl"]),
        case("--ttl 1.5s", &lock)
            .arg("--ttl=1.5s")
            .expect(&["--ttl"]),
        case("--ttl 500ms", &run).arg("--ttl=500ms"),
        case("--ttl -5", &lock).arg("--ttl=-5"),
        case("--ttl 10x", &lock).arg("--ttl=10x"),
        case("--ttl without a value", &lock).arg("--ttl"),
        case("--timeout soon", &run)
            .arg("--timeout=soon")
            .expect(&["--timeout"]),
        case("--timeout -2", &run).arg("--timeout=-2"),
        case("--timeout empty", &run).arg("--timeout="),
        case("DISTLOCK_TTL=abc", &lock)
            .env("DISTLOCK_TTL", "abc")
            .expect(&["DISTLOCK_TTL"]),
        case("DISTLOCK_TIMEOUT=forever", &run)
            .env("DISTLOCK_TIMEOUT", "forever")
            .expect(&["DISTLOCK_TIMEOUT"]),
        case("DISTLOCK_MAXTIME=0", &lock).env("DISTLOCK_MAXTIME", "0"),
        case("--maxtime 0", &lock).arg("--maxtime=0"),
        case("--hold-at-least 0.5s", &run).arg("--hold-at-least=0.5s"),
        case("--conflict-exit-code 300", &run)
            .arg("--conflict-exit-code=300")
            .expect(&["--conflict-exit-code"]),
        case("--conflict-exit-code -1", &run).arg("--conflict-exit-code=-1"),
        case("--conflict-exit-code 1.0", &run).arg("--conflict-exit-code=1.0"),
        case("DISTLOCK_CONFLICT_EXIT_CODE=abc", &run).env("DISTLOCK_CONFLICT_EXIT_CODE", "abc"),
        case("--kill-grace above TTL/2", &run)
            .arg("--kill-grace=6s")
            .expect(&["--kill-grace"]),
        case("--kill-grace above --ttl/2", &run).args_str(&["--ttl=5", "--kill-grace=3s"]),
        case("DISTLOCK_KILL_GRACE above TTL/2", &run)
            .env("DISTLOCK_KILL_GRACE", "20s")
            .expect(&["DISTLOCK_KILL_GRACE"]),
        case("--on-lost=maybe", &run)
            .arg("--on-lost=maybe")
            .expect(&["--on-lost"]),
        case("DISTLOCK_ON_LOST=ignore", &run).env("DISTLOCK_ON_LOST", "ignore"),
        case("--output=xml", &lock)
            .arg("--output=xml")
            .expect(&["--output"]),
        case("--log-format=yaml", &lock).arg("--log-format=yaml"),
        // Numbers too large for etcd or for a clock.
        case("--timeout of 2^64-1 seconds", &run).arg("--timeout=18446744073709551615"),
        case("--maxtime of 2^64-1 seconds", &run).arg("--maxtime=18446744073709551615"),
        case("--ttl of 2^64-1 seconds", &run).arg("--ttl=18446744073709551615"),
        case("--ttl above etcd's longest lease", &lock).arg("--ttl=1000000000000"),
        case("--hold-at-least of 2^64-1 seconds", &run).arg("--hold-at-least=18446744073709551615"),
        // Configuration files.
        case("unknown key", &lock)
            .yaml("lockname: a\nlcokname: b\n")
            .yaml_error(2, "lcokname"),
        case("unknown key, other case", &lock)
            .yaml("reason: r\nLockName: b\n")
            .yaml_error(2, "LockName"),
        case("unknown key (DISTLOCK_CONFIG)", &lock)
            .yaml_from_env("prefix: /p/\nnowait: true\n")
            .yaml_error(2, "nowait"),
        case("a mapping under endpoints", &lock)
            .yaml("endpoints:\n  a: http://x\n")
            .yaml_error(2, "endpoints"),
        case("a mapping under prefix", &lock)
            .yaml("prefix:\n  nested:\n    deep: 1\n")
            .yaml_error(2, "prefix"),
        case("endpoints: a number", &lock)
            .yaml("endpoints: 2379\n")
            .yaml_error(1, "endpoints"),
        case("ttl: abc", &lock)
            .yaml("ttl: abc\n")
            .yaml_error(1, "ttl"),
        case("ttl: 1.5", &lock)
            .yaml("lockname: y\nttl: 1.5\n")
            .yaml_error(2, "ttl"),
        case("timeout: soon", &run)
            .yaml("reason: r\nprefix: /p/\ntimeout: soon\n")
            .yaml_error(3, "timeout"),
        case("conflict_exit_code: 300", &run)
            .yaml("conflict_exit_code: 300\n")
            .yaml_error(1, "conflict_exit_code"),
        case("on_lost: maybe", &run)
            .yaml("on_lost: maybe\n")
            .yaml_error(1, "on_lost"),
        case("output: xml", &lock)
            .yaml("\noutput: xml\n")
            .yaml_error(2, "output"),
        case("reason: a list", &lock)
            .yaml("reason: [a, b]\n")
            .yaml_error(1, "reason"),
        case("kill_grace above TTL/2", &run)
            .yaml("ttl: 4\nkill_grace: 3s\n")
            .expect(&["{file}", "kill_grace"]),
        case("endpoints: []", &lock)
            .yaml("endpoints: []\n")
            .expect(&["{file}"]),
        case("endpoints: [ftp://x]", &lock)
            .yaml("endpoints:\n  - ftp://x\n")
            .expect(&["{file}", "ftp://x"]),
        case("unknown key with a newline in it", &lock)
            .yaml("\"lock\\nname\": x\n")
            .yaml_error(1, "name"),
        case("unknown key with a terminal escape in it", &lock)
            .yaml("reason: r\n\"\\e[2Jx\": 1\n")
            .yaml_error(2, "[2Jx"),
        case("duplicate key", &lock)
            .yaml("ttl: 5\nttl: 6\n")
            .yaml_error(2, "ttl"),
        case("a tab for indentation", &lock)
            .yaml("lockname: a\n\tttl: 5\n")
            .expect(&["{file}", "line 2"]),
        case("an unterminated string", &lock)
            .yaml("reason: \"unterminated\n")
            .expect(&["{file}", "line"]),
        case("an unclosed list", &lock)
            .yaml("a: [b\n")
            .expect(&["{file}", "line 1"]),
        case("not YAML: a sentence", &lock)
            .yaml("just a sentence\n")
            .expect(&["{file}", "line 1"]),
        case("not YAML: a list", &lock)
            .yaml("- a\n- b\n")
            .expect(&["{file}"]),
        case("two documents", &lock)
            .yaml("---\nlockname: x\n---\nlockname: y\n")
            .expect(&["{file}"]),
        case("a binary file", &lock)
            .yaml(vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0xff, 0xfe])
            .expect(&["{file}"]),
        case("a NUL byte", &lock)
            .yaml(b"lock\0name: x\n".to_vec())
            .expect(&["{file}"]),
        case("a directory", &lock)
            .config_path("/")
            .expect(&["{file}"]),
        case("a missing named file", &lock)
            .config_path("/nonexistent/distlock.yaml")
            .expect(&["{file}"]),
        case("a missing file in DISTLOCK_CONFIG", &lock)
            .env("DISTLOCK_CONFIG", "/nonexistent/d.yaml")
            .expect(&["/nonexistent/d.yaml"]),
        case("a 2 MiB reason", &lock)
            .yaml(big_reason)
            .expect(&["{file}", "reason"]),
        // Endpoints.
        case("endpoint ftp://x", &lock)
            .arg("--endpoints=ftp://x")
            .expect(&["ftp://x"]),
        case("endpoint without a scheme or a port", &lock)
            .arg("--endpoints=localhost")
            .expect(&["localhost"]),
        case("endpoint http://", &lock).arg("--endpoints=http://"),
        case("endpoint https://", &lock).arg("--endpoints=https://"),
        case("endpoint with a space", &lock).arg("--endpoints=http://a b:2379"),
        case("endpoints: only commas", &lock).arg("--endpoints=,,"),
        case("second endpoint bad", &lock)
            .arg(format!("--endpoints=http://127.0.0.1:{live_port},ftp://x")),
        case("DISTLOCK_ENDPOINTS=ftp://x", &lock)
            .env("DISTLOCK_ENDPOINTS", "ftp://x")
            .expect(&["DISTLOCK_ENDPOINTS"]),
        // Unknown options.
        case("--nowiat", &["--lock-name=x", "--nowiat", "true"]).expect(&["--nowiat"]),
        case("-x", &["--lock-name=x", "-x", "true"]).expect(&["-x"]),
        case("--lock-nam", &["--lock-nam=x", "--lock"]).expect(&["--lock-nam"]),
        case(
            "--password (never a flag)",
            &["--lock-name=x", "--password=hunter2", "--lock"],
        ),
        // TLS and credentials.
        case("--cert without --key", &lock).arg("--cert=/etc/hostname"),
        case("--key without --cert", &lock).arg("--key=/etc/hostname"),
        case("a password without a user", &lock).env("DISTLOCK_PASSWORD", "pw"),
        case("a missing password file", &lock)
            .args_str(&["--user=u", "--password-file=/nonexistent/pw"]),
        case("a missing CA file", &lock)
            .arg(format!("--endpoints=https://127.0.0.1:{live_port}"))
            .arg("--cacert=/nonexistent/ca.pem"),
        case("a client key that is not a key", &lock)
            .arg(format!("--endpoints=https://127.0.0.1:{live_port}"))
            .args_str(&["--cert=/etc/hostname", "--key=/etc/hostname"]),
    ]
}

/// Why etcd does not look untouched: a key anywhere, or a lease.
fn touched(endpoint: &str) -> Option<String> {
    let keys = etcdctl(endpoint, ["get", "--prefix", "--keys-only", ""]);
    let leases = etcdctl(endpoint, ["lease", "list"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    if !keys.is_empty() {
        return Some(format!("keys were written: {keys:?}"));
    }
    if !leases.contains("found 0 leases") {
        return Some(format!("leases were granted: {}", leases.trim()));
    }
    None
}

/// What is wrong with a case's outcome, if anything.
fn check(case: &Case, out: &Output, file: Option<&Path>, endpoint: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    let code = shell_status(out.status);
    if code != 2 {
        wrong.push(format!("exit {code}, expected 2"));
    }
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.len() != 1 || !lines[0].starts_with("distlock: ") {
        let shown: String = stderr.chars().take(600).collect();
        wrong.push(format!("stderr is not one `distlock: ` line: {shown:?}"));
    }
    if !out.stdout.is_empty() {
        wrong.push(format!("stdout not empty: {:?}", text(&out.stdout)));
    }
    let line = lines.first().copied().unwrap_or_default();
    if let Some(c) = line.chars().find(|c| c.is_control()) {
        wrong.push(format!("raw control character {c:?} in the message"));
    }
    for part in &case.expect {
        let part = match file {
            Some(path) => part.replace("{file}", &path.display().to_string()),
            None => part.clone(),
        };
        if !line.contains(&part) {
            wrong.push(format!("the message does not name {part:?}"));
        }
    }
    if let Some(why) = touched(endpoint) {
        wrong.push(why);
        // Leave etcd clean for the next case.
        etcdctl(endpoint, ["del", "--prefix", ""]);
        for lease in etcdctl(endpoint, ["lease", "list"]).lines().skip(1) {
            etcdctl(endpoint, ["lease", "revoke", lease.trim()]);
        }
    }
    if !wrong.is_empty() {
        let shown: String = line.chars().take(300).collect();
        wrong.push(format!("message: {shown}"));
    }
    wrong
}

#[test]
fn malformed_input_is_exit_2_with_one_line_and_leaves_etcd_untouched() {
    let etcd = Etcd::start();
    let endpoint = etcd.endpoint();
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let p = prefix("hostile");
    let dir = scratch_dir();
    let cases = cases(port);
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut cmd = distlock_std(&endpoint, &p);
        let mut file = None;
        match &case.file {
            File::None => {}
            File::Yaml(content) | File::YamlFromEnv(content) => {
                let path = dir.path().join(format!("case-{i}.yaml"));
                fs::write(&path, content).unwrap();
                if matches!(case.file, File::Yaml(_)) {
                    cmd.arg("--config").arg(&path);
                } else {
                    cmd.env("DISTLOCK_CONFIG", &path);
                }
                file = Some(path);
            }
            File::Path(path) => {
                cmd.arg("--config").arg(path);
                file = Some(path.clone());
            }
        }
        cmd.args(&case.args);
        for (name, value) in &case.env {
            cmd.env(name, value);
        }
        let (out, _) = run_timed(cmd, Duration::from_secs(20));
        let wrong = check(case, &out, file.as_deref(), &endpoint);
        if !wrong.is_empty() {
            failures.push(format!("{}:\n    {}", case.what, wrong.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed inputs were not handled as usage errors:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Whatever is under the prefix

/// Writes `value` (any bytes) to `key` (any bytes but NUL) with etcdctl reading the value from
/// stdin, which takes binary data and values larger than a command-line argument may be.
fn put_raw(endpoint: &str, key: &[u8], value: &[u8]) {
    use std::io::Write;
    let mut cmd = etcdctl_cmd(endpoint);
    cmd.arg("put")
        .arg("--")
        .arg(OsString::from_vec(key.to_vec()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if value.is_empty() {
        // etcdctl takes no value from stdin as a missing value.
        cmd.arg("");
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(value).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "put: {}", text(&out.stderr));
}

/// The (raw) keys under `prefix`.
fn raw_keys(endpoint: &str, prefix: &str) -> Vec<String> {
    let mut cmd = etcdctl_cmd(endpoint);
    cmd.args(["get", "--prefix", "--keys-only", "--", prefix]);
    let out = cmd.output().unwrap();
    text(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Runs `args` against the seeded prefix and checks the output is sane: exit 0 or 1, something on
/// stdout, no raw terminal control characters, valid JSON with `--output=json`.
fn looks_sane(endpoint: &str, prefix: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = distlock_std(endpoint, prefix);
    cmd.args(args);
    let (out, _) = run_timed(cmd, Duration::from_secs(20));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let brief = |s: &str| s.chars().take(400).collect::<String>();
    // 1: the lock is free, or no lock is held.
    let code = shell_status(out.status);
    if code != 0 && code != 1 {
        return Err(format!("{args:?}: exit {code}: {}", brief(&stderr)));
    }
    if stdout.trim().is_empty() {
        return Err(format!("{args:?}: printed nothing"));
    }
    if let Some(c) = stdout
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(format!("{args:?}: raw control character {c:?} in output"));
    }
    if args.contains(&"--output=json") {
        serde_json::from_str::<serde_json::Value>(&stdout)
            .map_err(|e| format!("{args:?}: not JSON ({e}): {}", brief(&stdout)))?;
    }
    Ok(stdout)
}

/// `--list`, which must show each of `listed`, and `--status` of each of `names`, as text
/// and as JSON: what `looks_sane` finds wrong.
fn list_and_status_look_sane(
    endpoint: &str,
    prefix: &str,
    listed: &[&str],
    names: &[&str],
) -> Vec<String> {
    let mut failures = Vec::new();
    for output in ["--output=text", "--output=json"] {
        match looks_sane(endpoint, prefix, &["--list", output]) {
            Ok(stdout) => failures.extend(
                listed
                    .iter()
                    .filter(|name| !stdout.contains(*name))
                    .map(|name| format!("--list {output} does not show {name}")),
            ),
            Err(e) => failures.push(e),
        }
        for name in names {
            let lock_name = format!("--lock-name={name}");
            if let Err(e) = looks_sane(endpoint, prefix, &[&lock_name, "--status", output]) {
                failures.push(e);
            }
        }
    }
    failures
}

/// Waiters with `--timeout 1` behind each of `names`: all must wait and give up (exit 1),
/// in parallel to keep the test short.
fn waiters_wait(endpoint: &str, prefix: &str, names: &[&str]) -> Vec<String> {
    let running: Vec<(&str, Background)> = names
        .iter()
        .map(|name| {
            let mut cmd = distlock_std(endpoint, prefix);
            cmd.args([
                "-q",
                "--timeout=1",
                &format!("--lock-name={name}"),
                "--",
                "true",
            ]);
            (*name, Background::spawn(cmd, "a waiter"))
        })
        .collect();
    let mut wrong = Vec::new();
    for (name, bg) in running {
        let out = bg.output(Duration::from_secs(20));
        let code = shell_status(out.status);
        if code != 1 {
            let stderr: String = text(&out.stderr).chars().take(400).collect();
            wrong.push(format!(
                "waiter behind {name:?}: exit {code}, expected 1: {stderr}"
            ));
        }
    }
    wrong
}

#[test]
fn foreign_keys_under_the_prefix_never_crash_status_list_or_waiters() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("foreign");
    let key = |rest: &str| format!("{p}{rest}").into_bytes();
    put_raw(&ep, &key("nonjson/1"), b"not json {");
    put_raw(
        &ep,
        &key("binary/1"),
        &[0xff, 0x00, 0xfe, 0x1b, b'[', b'2', b'J', 0x07],
    );
    put_raw(&ep, &key("big/1"), &vec![b'A'; 1 << 20]);
    put_raw(&ep, &key("deep/y/z"), b"another tool's data");
    put_raw(&ep, p.as_bytes(), b"a key equal to the prefix");
    put_raw(&ep, &key("/etc/passwd"), b"root:x:0:0");
    put_raw(&ep, &key("../../etc/shadow/1"), b"");
    put_raw(&ep, &key("empty/694d7e0a1b2c3d4e"), b"");
    put_raw(
        &ep,
        &key("wrongtypes/1"),
        br#"{"format":"one","host":7,"pid":-5,"since":[]}"#,
    );
    put_raw(
        &ep,
        &key("oddrecord/1"),
        br#"{"format":99,"host":"\u001b[31mred","pid":4294967295,"user":"\u0007","reason":"\u001b]0;pwned\u0007","since":"not a time","mode":"zzz","program":null,"ttl":18446744073709551615}"#,
    );
    put_raw(&ep, &key("legacyodd"), b"12;;;;;;");
    put_raw(&ep, &key("legacybad"), b"soon;host;reason");
    let mut evil = key("evil\x1b]0;title\x07");
    evil.extend_from_slice(b"/1");
    put_raw(&ep, &evil, b"");
    let mut not_utf8 = key("notutf8");
    not_utf8.extend_from_slice(&[0xff, 0xfe, b'/', b'1']);
    put_raw(&ep, &not_utf8, &[0xc3, 0x28]);
    let seeded = raw_keys(&ep, &p);

    // Waiters wait behind each of these; --status looks at them and at a few odder names;
    // --list shows each of them that has a contender key of its own.
    let waited = [
        "nonjson",
        "binary",
        "big",
        "deep",
        "empty",
        "wrongtypes",
        "oddrecord",
        "legacyodd",
    ];
    let listed: Vec<&str> = waited
        .into_iter()
        .filter(|n| !["empty", "legacyodd"].contains(n))
        .collect();
    let looked_at: Vec<&str> = waited
        .into_iter()
        .chain(["legacybad", "..", "nobody-here"])
        .collect();
    let mut failures = list_and_status_look_sane(&ep, &p, &listed, &looked_at);
    failures.extend(waiters_wait(&ep, &p, &waited));
    // The waiters took their keys away with them; the foreign keys are untouched.
    let after = raw_keys(&ep, &p);
    if after != seeded {
        failures.push(format!("keys changed: before {seeded:?}, after {after:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The Go tool's value is `<unix-seconds>;<hostname>;<reason>`: seconds far in the future (a
/// clock gone wrong, or anyone who can write the prefix) must not crash anything.
#[test]
fn legacy_values_from_the_far_future_never_crash() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("future");
    // Year 11476: beyond what RFC 3339 can write.
    put(
        &ep,
        &format!("{p}year11476"),
        "300000000000;futurehost;from the future",
    );
    // Beyond what a clock can hold.
    put(&ep, &format!("{p}u64max"), "18446744073709551615;h;r");
    put(&ep, &format!("{p}i64max"), "9223372036854775807;h;r");
    let names = ["year11476", "u64max", "i64max"];
    let mut failures = list_and_status_look_sane(&ep, &p, &[], &names);
    failures.extend(waiters_wait(&ep, &p, &names));
    // --nowait describes the holder in its "busy" message.
    for name in ["year11476", "u64max"] {
        let mut cmd = distlock_std(&ep, &p);
        cmd.args(["--nowait", &format!("--lock-name={name}"), "--", "true"]);
        let (out, _) = run_timed(cmd, Duration::from_secs(20));
        let code = shell_status(out.status);
        if code != 1 {
            let stderr: String = text(&out.stderr).chars().take(300).collect();
            failures.push(format!(
                "--nowait behind {name}: exit {code}, expected 1: {stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// etcd answers one request with at most what the client accepts (4 MiB for etcd-client):
/// other tools' large values under the prefix must not make `--list` fail.
#[test]
fn many_large_foreign_values_do_not_break_list() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let p = prefix("large");
    for i in 0..5 {
        put_raw(
            &ep,
            format!("{p}blob{i}/data").as_bytes(),
            &vec![b'B'; 1 << 20],
        );
    }
    let failures = list_and_status_look_sane(&ep, &p, &[], &["blob0"]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
