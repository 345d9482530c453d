//! What a contender in a lock's queue is, as a reader sees it: who wrote its key (distlock,
//! the old Go tool, etcdctl), from which host and process, since when, why, and how it takes the
//! lock. `--status`, `--list`, the "waiting for" lines and busy errors all describe a holder
//! this way. Whatever another tool left in etcd is shown, never trusted: control characters
//! are escaped and long text is cut.

use crate::access::Access;
use crate::queue::Contender;
use crate::record::{self, Record};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A contender as `--status`, `--list` and JSON show it. The JSON shape is documented in the
/// README and kept stable: fields are only ever added.
#[derive(Debug, Serialize)]
pub struct View {
    pub key: String,
    /// The create revision of the key: the fencing token of its holder.
    pub fencing_token: i64,
    /// Lease id in hex, or null for a lock held until unlocked.
    pub lease: Option<String>,
    pub kind: Kind,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub user: Option<String>,
    pub reason: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    pub age_seconds: Option<u64>,
    pub mode: Option<record::Mode>,
    pub program: Option<String>,
    /// Seconds until the lease expires unless renewed; null when it never expires.
    pub ttl_left: Option<i64>,
    /// `exclusive`, `shared` or `semaphore`: how it takes the lock.
    pub access: &'static str,
    /// `--max-holders` of a distlock record.
    pub max_holders: Option<u32>,
    /// When a `--lock` is meant to expire (RFC 3339).
    pub expires: Option<String>,
    /// Whether its host is this host (by name).
    pub this_host: bool,
    /// Whether a live process renews its lease: a running distlock command, and another
    /// tool's key on a lease (etcdctl lock renews its own). Not a `--lock`, nor a run kept by
    /// `--hold-at-least` after its command ended: their process has exited.
    pub renewed: bool,
    /// When the lease expires unless renewed (RFC 3339), where `ttl_left` is known.
    pub expires_at: Option<String>,
    /// A run's `--on-lost` (`kill`, `warn`), where its record says.
    pub on_lost: Option<String>,
    /// The lease's TTL in seconds, as its record says.
    #[serde(skip)]
    pub ttl: Option<u64>,
    /// Whether it holds the lock (`holders` or `waiters` in JSON).
    #[serde(skip)]
    pub holds: bool,
}

/// Who wrote a contender's key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Distlock,
    /// The Go tool's key.
    Legacy,
    /// etcdctl or anything else.
    Other,
}

impl View {
    pub fn of(c: &Contender) -> View {
        let mut view = View {
            key: c.key.clone(),
            fencing_token: c.create_revision,
            lease: (c.lease != 0).then(|| format!("{:x}", c.lease)),
            kind: Kind::Other,
            host: None,
            pid: None,
            user: None,
            reason: None,
            since: None,
            age_seconds: None,
            mode: None,
            program: None,
            ttl_left: None,
            access: Access::of_value(&c.value).as_str(),
            max_holders: None,
            expires: None,
            this_host: false,
            renewed: c.lease != 0,
            expires_at: None,
            on_lost: None,
            ttl: None,
            holds: false,
        };
        if let Some(r) = Record::from_json(&c.value) {
            view.max_holders = Some(r.max_holders);
            view.expires = r.expires;
            view.kind = Kind::Distlock;
            view.age_seconds = humantime::parse_rfc3339_weak(&r.since)
                .ok()
                .map(|t| age_of(t).as_secs());
            view.this_host = r.host == record::hostname();
            view.host = Some(r.host);
            view.pid = Some(r.pid);
            view.user = Some(r.user);
            view.reason = Some(r.reason);
            view.since = Some(r.since);
            view.renewed = r.mode == record::Mode::Run && view.expires.is_none();
            view.ttl = r.ttl;
            view.on_lost = r.on_lost;
            view.mode = Some(r.mode);
            view.program = r.program;
        } else if let Some((secs, host, reason)) = legacy_value(c) {
            // RFC 3339 stops at year 9999: a larger number is not a time we can show.
            let then = (secs < 253_402_300_800).then(|| UNIX_EPOCH + Duration::from_secs(secs));
            view.kind = Kind::Legacy;
            view.since = then.map(|t| humantime::format_rfc3339_seconds(t).to_string());
            view.age_seconds = then.map(|t| age_of(t).as_secs());
            view.this_host = host == record::hostname();
            view.host = Some(host);
            view.reason = Some(reason);
            view.mode = Some(record::Mode::Lock);
        }
        view
    }

    /// Who it is, then for how long and why: `node-3 (pid 4242, root) for 2m13s: "Upgrade
    /// RPMs"`, with `this host (node-3, …)` and `(exited; --lock)` as `who` says. Every
    /// message that names a holder or waiter says it so.
    pub fn describe(&self) -> String {
        let age = self
            .age_seconds
            .map(|s| format!(" for {}", format_age(Duration::from_secs(s))))
            .unwrap_or_default();
        let reason = match self.reason.as_deref() {
            Some("") | None => String::new(),
            Some(r) => format!(": {}", quoted(r, 200)),
        };
        match self.kind {
            Kind::Other => self.who(true),
            _ => format!("{}{age}{reason}", self.who(true)),
        }
    }
}

impl View {
    /// Whether its process has exited by design: a `--lock`, or a run kept by
    /// `--hold-at-least` after its command ended. Which of the two, as shown after its pid.
    pub fn exited(&self) -> Option<&'static str> {
        match (self.kind, self.mode) {
            (Kind::Distlock, Some(record::Mode::Lock)) => Some("--lock"),
            (Kind::Distlock, Some(record::Mode::Run)) if !self.renewed => Some("--hold-at-least"),
            _ => None,
        }
    }

    /// Who it is, for `--status`, `--list` and `--unlock`: `node-3 (pid 4242, root)`, with
    /// `this host (node-3, …)` for this host's, and `pid 4242 (exited; --lock)` where its
    /// process is gone by design. etcdctl's and the Go tool's as `describe` says.
    pub fn who(&self, with_user: bool) -> String {
        if self.kind != Kind::Distlock {
            return self.describe_who();
        }
        let host = clean(self.host.as_deref().unwrap_or("?"), 100);
        let mut parts = Vec::new();
        if self.this_host {
            parts.push(host.clone());
        }
        let pid = self.pid.unwrap_or_default();
        parts.push(match self.exited() {
            Some(how) => format!("pid {pid} (exited; {how})"),
            None => format!("pid {pid}"),
        });
        if with_user {
            parts.push(clean(self.user.as_deref().unwrap_or("?"), 100));
        }
        match self.this_host {
            true => format!("this host ({})", parts.join(", ")),
            false => format!("{host} ({})", parts.join(", ")),
        }
    }

    /// `describe` without the age and the reason.
    fn describe_who(&self) -> String {
        match self.kind {
            Kind::Legacy => {
                let host = clean(self.host.as_deref().unwrap_or("?"), 100);
                match self.this_host {
                    true => format!("this host ({host}, the old Go distlock)"),
                    false => format!("{host} (the old Go distlock)"),
                }
            }
            _ => format!(
                "{} (not distlock's, e.g. etcdctl lock; lease {})",
                clean(&self.key, 300),
                self.lease.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// A duration in whole seconds as a person reads it: `59m 58s`, `2h 5s`, `3days 4h 5m 6s`.
pub fn human_duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// A time as a person reads it, in UTC: `2026-12-06 14:03:00 UTC`.
pub fn utc(at: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(at).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
}

/// An RFC 3339 time from a record, as `utc` shows it, or cleaned as it is when it is none.
pub fn utc_of(rfc3339: &str) -> String {
    humantime::parse_rfc3339_weak(rfc3339)
        .map(utc)
        .unwrap_or_else(|_| clean(rfc3339, 40))
}

/// The Go tool wrote `<unix-seconds>;<hostname>;<reason>` on the bare lock key.
fn legacy_value(c: &Contender) -> Option<(u64, String, String)> {
    if c.key.ends_with('/') || c.lease != 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&c.value);
    let mut parts = text.splitn(3, ';');
    let secs = parts.next()?.trim().parse::<u64>().ok()?;
    let host = parts.next()?.to_string();
    Some((secs, host, parts.next().unwrap_or_default().to_string()))
}

/// Who a contender is, in one line, for messages.
pub fn describe(contender: &Contender) -> String {
    View::of(contender).describe()
}

fn age_of(then: SystemTime) -> Duration {
    SystemTime::now().duration_since(then).unwrap_or_default()
}

/// `42s`, `2m13s`, `5h07m`, `3d04h`: two units at most, readable at any size.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Text from etcd made safe for a terminal: control characters escaped, cut to `max` chars.
pub fn clean(text: &str, max: usize) -> String {
    let line = crate::error::one_line(text);
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn quoted(text: &str, max: usize) -> String {
    format!("\"{}\"", clean(text, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::hostname;

    #[test]
    fn ages_are_short_at_any_size() {
        assert_eq!(format_age(Duration::from_secs(5)), "5s");
        assert_eq!(format_age(Duration::from_secs(133)), "2m13s");
        assert_eq!(format_age(Duration::from_secs(5 * 3600 + 7 * 60)), "5h07m");
        assert_eq!(
            format_age(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3d04h"
        );
    }

    fn contender(key: &str, value: &[u8], lease: i64) -> Contender {
        Contender {
            key: key.into(),
            value: value.to_vec(),
            create_revision: 1,
            lease,
        }
    }

    #[test]
    fn foreign_values_are_described_not_parsed() {
        let legacy = contender("/distlock/x", b"1700000000;oldhost;old reason", 0);
        assert_eq!(View::of(&legacy).kind, Kind::Legacy);
        assert!(describe(&legacy).contains("oldhost"));
        assert!(describe(&contender("/distlock/x/1", b"", 7)).contains("not distlock's"));
        assert!(describe(&contender("/distlock/x/1", &[0xff, 0, 1], 7)).contains("not distlock's"));
    }

    #[test]
    fn durations_and_times_read_as_a_person_writes_them() {
        assert_eq!(human_duration(3598), "59m 58s");
        assert_eq!(human_duration(723), "12m 3s");
        assert_eq!(human_duration(0), "0s");
        let at = UNIX_EPOCH + Duration::from_secs(1_796_565_780);
        assert_eq!(utc(at), "2026-12-06 14:03:00 UTC");
        assert_eq!(utc_of("2026-12-06T14:03:00Z"), "2026-12-06 14:03:00 UTC");
        assert_eq!(utc_of("not a \u{1b}time"), "not a \\u{1b}time");
    }

    #[test]
    fn a_holder_whose_process_exited_by_design_is_shown_so() {
        let record = |mode, expires: Option<&str>| {
            let r = Record::new(mode, None, "", None);
            let r = Record {
                host: "elsewhere".into(),
                pid: 4242,
                user: "root".into(),
                expires: expires.map(String::from),
                ..r
            };
            View::of(&contender("/d/x/1", &r.to_json(), 7))
        };
        let lock = record(record::Mode::Lock, None);
        assert_eq!(
            lock.who(true),
            "elsewhere (pid 4242 (exited; --lock), root)"
        );
        assert!(!lock.renewed && !lock.this_host);
        let run = record(record::Mode::Run, None);
        assert_eq!(run.who(false), "elsewhere (pid 4242)");
        assert!(run.renewed);
        let kept = record(record::Mode::Run, Some("2026-12-06T14:03:00Z"));
        assert_eq!(kept.exited(), Some("--hold-at-least"));
        assert!(!kept.renewed);
        let here = Record::new(record::Mode::Run, None, "", None);
        let here = View::of(&contender("/d/x/2", &here.to_json(), 7));
        assert!(here.this_host);
        assert!(here
            .who(false)
            .starts_with(&format!("this host ({}, pid ", hostname())));
    }

    #[test]
    fn terminal_control_characters_are_escaped() {
        let nasty = contender("/distlock/x\u{1b}[2J/1", b"", 7);
        assert!(!describe(&nasty).contains('\u{1b}'));
        assert_eq!(clean(&"é".repeat(10), 5), "éééé…");
    }
}
