//! etcdctl, the operator's view of etcd: commands against any endpoints, the keys and leases
//! it shows, and `etcdctl lock` as a peer of distlock.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use super::{tool, Background};

// etcdctl: the operator's view of etcd
/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// 0 when the key is not attached to a lease.
    pub lease: i64,
}

impl Kv {
    /// The value parsed as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.value)
            .unwrap_or_else(|e| panic!("value of {} is not JSON ({e}): {:?}", self.key, self.value))
    }
}

/// An `etcdctl` command (API v3) against `endpoints`, with short client timeouts.
pub fn etcdctl_cmd(endpoints: &str) -> Command {
    let mut cmd = Command::new(tool("etcdctl"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=5s")
        .stdin(Stdio::null());
    cmd
}

/// Runs `etcdctl <args>` and returns its stdout; panics with its stderr if it fails.
pub fn etcdctl<I, S>(endpoints: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = etcdctl_cmd(endpoints);
    cmd.args(args);
    stdout_of(cmd)
}

/// Runs an etcdctl command and returns its stdout; panics with its stderr if it fails.
pub(super) fn stdout_of(mut cmd: Command) -> String {
    let out = cmd.output().expect("cannot run etcdctl");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("etcdctl printed non-UTF-8")
}

/// Every key under `prefix` (in key order), decoded from `etcdctl get -w json`, where keys and
/// values are base64.
/// The lock history distlock keeps under `<prefix>.distlock/` is left out: it is meant to
/// stay (see `history_kvs`).
pub fn get_prefix(endpoints: &str, prefix: &str) -> Vec<Kv> {
    let out = etcdctl(endpoints, ["get", "--prefix", "-w", "json", "--", prefix]);
    parse_kvs(&out)
        .into_iter()
        .filter(|kv| !is_history(prefix, &kv.key))
        .collect()
}

/// Whether `key` is in distlock's metadata (its lock history) under `prefix` or under a test's
/// prefix below it, not a lock.
pub(super) fn is_history(prefix: &str, key: &str) -> bool {
    key.starts_with(prefix) && key.contains("/.distlock/")
}

/// The history entries of lock `name` under `prefix`, oldest first.
pub fn history_kvs(endpoints: &str, prefix: &str, name: &str) -> Vec<Kv> {
    let dir = format!("{prefix}.distlock/history/{name}/");
    parse_kvs(&etcdctl(
        endpoints,
        ["get", "--prefix", "-w", "json", "--", &dir],
    ))
}

/// One key, if it exists.
pub fn get_key(endpoints: &str, key: &str) -> Option<Kv> {
    let out = etcdctl(endpoints, ["get", "-w", "json", "--", key]);
    parse_kvs(&out).into_iter().next()
}

pub(super) fn parse_kvs(json: &str) -> Vec<Kv> {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("etcdctl json ({e}): {json}"));
    let Some(kvs) = v["kvs"].as_array() else {
        return Vec::new();
    };
    let text =
        |k: &serde_json::Value| String::from_utf8(base64_decode(k.as_str().unwrap_or(""))).unwrap();
    kvs.iter()
        .map(|kv| Kv {
            key: text(&kv["key"]),
            value: text(&kv["value"]),
            create_revision: kv["create_revision"].as_i64().unwrap_or(0),
            mod_revision: kv["mod_revision"].as_i64().unwrap_or(0),
            lease: kv["lease"].as_i64().unwrap_or(0),
        })
        .collect()
}

/// Standard base64 with padding, as Go's encoding/json writes []byte.
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("not base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `etcdctl put key value`.
pub fn put(endpoints: &str, key: &str, value: &str) {
    etcdctl(endpoints, ["put", "--", key, value]);
}

/// `etcdctl lease grant ttl`; returns the lease id.
pub fn lease_grant(endpoints: &str, ttl: u32) -> i64 {
    let out = etcdctl(
        endpoints,
        ["lease", "grant", &ttl.to_string(), "-w", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["ID"]
        .as_i64()
        .unwrap_or_else(|| panic!("no lease ID in {out}"))
}

/// `etcdctl put --lease=<id> key value`.
pub fn put_with_lease(endpoints: &str, key: &str, value: &str, lease: i64) {
    etcdctl(
        endpoints,
        ["put", &format!("--lease={lease:x}"), "--", key, value],
    );
}

/// The lease's (remaining TTL, granted TTL) in seconds, or None if it does not exist (any
/// more).
pub fn lease_ttl(endpoints: &str, lease: i64) -> Option<(i64, i64)> {
    let out = etcdctl(
        endpoints,
        ["lease", "timetolive", &format!("{lease:x}"), "-w", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ttl = v["ttl"].as_i64().unwrap_or(-1);
    (ttl >= 0).then(|| (ttl, v["granted-ttl"].as_i64().unwrap_or(0)))
}

/// `etcdctl lock <name> [-- cmd...]` in the background (its own process group, killed on
/// drop). Without a command it holds the lock until signalled (SIGTERM releases it).
pub fn etcdctl_lock(endpoints: &str, name: &str, cmd: &[&str]) -> Background {
    let mut c = etcdctl_cmd(endpoints);
    c.args(["lock", name]);
    if !cmd.is_empty() {
        c.arg("--").args(cmd);
    }
    Background::spawn(c, "etcdctl lock")
}
