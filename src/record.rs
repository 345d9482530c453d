//! What a contender stores in its key, so that whoever waits or looks can see who holds a lock
//! and why: a small JSON object (distlock), an empty value (etcdctl), or the Go tool's
//! `<unix-seconds>;<hostname>;<reason>` on the legacy key.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub reason: String,
    /// When the lock was taken (RFC 3339); while waiting, when the wait began.
    pub since: String,
    pub mode: Mode,
    /// The command's program name only: its arguments can hold secrets.
    pub program: Option<String>,
    /// Lease TTL in seconds; `None` for a `--lock` held until unlocked.
    pub ttl: Option<u64>,
    /// Written only by a contender that holds the lock. The waiter behind it relies on this:
    /// when this key goes, that waiter takes over without asking etcd again (see `wait.rs`).
    #[serde(default)]
    pub held: bool,
    /// `--max-holders`: how many may hold the lock at once. Every contender of a lock must
    /// agree; a record without it (an older distlock) means 1.
    #[serde(default = "one")]
    pub max_holders: u32,
    /// `--shared`: held beside other shared holders.
    #[serde(default)]
    pub shared: bool,
    /// When a lock taken with `--lock --ttl`, `--extend`ed, or kept by `--hold-at-least` after
    /// its command ended is meant to expire (RFC 3339); `None`: never, or while a command
    /// runs. etcd restarts every lease's countdown when its leader changes, so the lease may
    /// outlive this time; this is what was asked for.
    #[serde(default)]
    pub expires: Option<String>,
    /// A run's `--on-lost` (`kill` or `warn`): what happens to its command when its key is
    /// removed, for `--unlock` to say. `None` for `--lock`, and in an older distlock's record.
    #[serde(default)]
    pub on_lost: Option<String>,
}

fn one() -> u32 {
    1
}

/// How the holder holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// While its command runs.
    Run,
    /// Until someone runs `--unlock` (or its `--ttl` passes).
    Lock,
    /// Written by a later distlock: still a distlock record, shown as `other`.
    #[serde(other)]
    Other,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Lock => "lock",
            Mode::Other => "other",
        }
    }
}

impl Record {
    pub fn new(mode: Mode, program: Option<String>, reason: &str, ttl: Option<Duration>) -> Self {
        Record {
            format: FORMAT,
            host: hostname(),
            pid: std::process::id(),
            user: username(),
            reason: reason.to_string(),
            since: now_rfc3339(),
            mode,
            program,
            ttl: ttl.map(|t| t.as_secs()),
            held: false,
            max_holders: 1,
            shared: false,
            expires: None,
            on_lost: None,
        }
    }

    /// The same record of a run whose command is stopped (`kill`) or only warned (`warn`)
    /// when the lock is lost.
    pub fn on_lost(self, on_lost: &str) -> Self {
        Record {
            on_lost: Some(on_lost.to_string()),
            ..self
        }
    }

    /// The same record for a semaphore of `max_holders`, or a shared holder.
    pub fn sharing(self, max_holders: u32, shared: bool) -> Self {
        Record {
            max_holders,
            shared,
            ..self
        }
    }

    /// The same record, meant to expire at `at` (`None`: never).
    pub fn expiring(&self, at: Option<SystemTime>) -> Self {
        Record {
            expires: at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            ..self.clone()
        }
    }

    /// The same record, stamped as taken at `when` (and with another TTL). Only a holder
    /// writes it.
    pub fn taken_at(&self, when: SystemTime, ttl: Option<Duration>) -> Self {
        Record {
            since: humantime::format_rfc3339_seconds(when).to_string(),
            ttl: ttl.map(|t| t.as_secs()),
            held: true,
            ..self.clone()
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(value: &[u8]) -> Option<Record> {
        serde_json::from_slice(value).ok()
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// This machine's host name, as records and history entries give it.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_values() {
        let r = Record::new(
            Mode::Run,
            Some("yum".into()),
            "Upgrade \"RPMs\" ✓",
            Some(Duration::from_secs(10)),
        );
        assert_eq!(Record::from_json(&r.to_json()).as_ref(), Some(&r));
        assert_eq!(Record::from_json(b""), None);
        assert_eq!(Record::from_json(b"1700000000;host;reason"), None);
        assert_eq!(Record::from_json(&[0xff, 0xfe]), None);
        let json = String::from_utf8(r.to_json()).unwrap();
        let later = json.replace(r#""mode":"run""#, r#""mode":"shared""#);
        assert_eq!(
            Record::from_json(later.as_bytes()).map(|r| r.mode),
            Some(Mode::Other)
        );
        // A record of an older distlock is a mutex contender.
        let old = json.replace(r#","max_holders":1,"shared":false,"expires":null"#, "");
        assert_ne!(old, json);
        assert_eq!(Record::from_json(old.as_bytes()).as_ref(), Some(&r));
        let semaphore = r.clone().sharing(3, false);
        assert_eq!(Record::from_json(&semaphore.to_json()), Some(semaphore));
    }
}
