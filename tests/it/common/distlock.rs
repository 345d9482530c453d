//! The binary under test: `distlock` with a clean environment against a test's etcd, the
//! outcome of a run, and locks as the tests look at them (what distlock printed and what etcd
//! holds). Also what distlock records about this machine, and the settings it shows.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{get_prefix, shell_status, wait_until, Background, Etcd, Kv, DEADLINE};

/// `distlock` against `endpoints` with keys under `prefix`, and nothing from the caller's
/// environment or machine: every inherited DISTLOCK_* variable removed, the config file
/// /dev/null (an empty, valid configuration), stdin /dev/null.
pub fn distlock_std(endpoints: &str, prefix: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distlock"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DISTLOCK_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("DISTLOCK_CONFIG", "/dev/null")
        .env("DISTLOCK_ENDPOINTS", endpoints)
        .env("DISTLOCK_PREFIX", prefix)
        .stdin(Stdio::null());
    cmd
}

/// `distlock_std` as an `assert_cmd::Command`, against a single etcd.
pub fn distlock(etcd: &Etcd, prefix: &str) -> assert_cmd::Command {
    assert_cmd::Command::from_std(distlock_std(&etcd.endpoint(), prefix))
}

/// `distlock_std` as an `assert_cmd::Command`, against any endpoints (a cluster, or a port
/// nothing listens on).
pub fn distlock_at(endpoints: &str, prefix: &str) -> assert_cmd::Command {
    assert_cmd::Command::from_std(distlock_std(endpoints, prefix))
}

/// Runs `cmd` to completion (at most `timeout`, then it is killed and the test fails) and
/// returns its output and how long it took.
pub fn run_timed(cmd: Command, timeout: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let out = Background::spawn(cmd, "distlock").output(timeout);
    (out, start.elapsed())
}

/// Parses `--lock`'s stdout: exactly `DISTLOCK_KEY=...` then `DISTLOCK_FENCING_TOKEN=...`.
pub fn parse_lock_stdout(stdout: &str) -> Option<(String, i64)> {
    let mut lines = stdout.lines();
    let key = lines.next()?.strip_prefix("DISTLOCK_KEY=")?;
    let token = lines
        .next()?
        .strip_prefix("DISTLOCK_FENCING_TOKEN=")?
        .parse()
        .ok()?;
    lines.next().is_none().then(|| (key.to_string(), token))
}

/// The outcome of one distlock run, printable in assertion messages.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "exit {} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Asserts the exit code, showing everything when it is not the expected one.
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(self.code, expected, "unexpected exit code: {self}");
        assert!(
            !self.stderr.contains("panicked"),
            "distlock panicked: {self}"
        );
        self
    }

    /// Asserts docs/CONTRACT.md's error style: exactly one line on stderr, starting with
    /// `distlock: `.
    pub fn one_error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line on stderr: {self}");
        assert!(
            lines[0].starts_with("distlock: "),
            "error line not prefixed: {self}"
        );
        lines[0]
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self}"))
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs distlock to the end (killing it after a minute, so a hang fails the test).
pub fn run(cmd: &mut assert_cmd::Command) -> Run {
    let start = Instant::now();
    let out = cmd
        .timeout(Duration::from_secs(60))
        .output()
        .expect("cannot run distlock");
    Run {
        code: shell_status(out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// `distlock --lock-name=<name> --lock <extra>`, asserted to succeed; returns the key and the
/// fencing token it printed.
pub fn lock(etcd: &Etcd, p: &str, name: &str, extra: &[&str]) -> (String, i64) {
    let r = run(distlock(etcd, p)
        .arg(format!("--lock-name={name}"))
        .arg("--lock")
        .args(extra));
    r.code(0);
    parse_lock_stdout(&r.stdout)
        .unwrap_or_else(|| panic!("--lock must print exactly the key and token lines: {r}"))
}

/// The contenders of lock `name` under `p` (keys `<p><name>/...`), in queue order.
pub fn contenders(ep: &str, p: &str, name: &str) -> Vec<Kv> {
    let mut kvs = get_prefix(ep, &format!("{p}{name}/"));
    kvs.sort_by_key(|kv| kv.create_revision);
    kvs
}

/// Waits until lock `name` has exactly `n` contenders, and returns them.
pub fn wait_contenders(ep: &str, p: &str, name: &str, n: usize) -> Vec<Kv> {
    wait_until(DEADLINE, &format!("{n} contender(s) of {name}"), || {
        let kvs = contenders(ep, p, name);
        (kvs.len() == n).then_some(kvs)
    })
}

/// The host name distlock records.
pub fn hostname() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

/// The user name distlock records.
pub fn username() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name
}

/// Every setting `--show-config` shows, in its order: the YAML keys, as the example file
/// lists them (generated from the settings table and checked against it by a unit test),
/// then the password, which is never in a file.
pub fn all_settings() -> Vec<String> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("distlock.yaml.example");
    let text = fs::read_to_string(&example).expect("read distlock.yaml.example");
    let mut keys: Vec<String> = text
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .filter_map(|l| l.split_once(':'))
        .map(|(key, _)| key)
        .filter(|key| !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(String::from)
        .collect();
    keys.push("password".into());
    keys
}
