//! What distlock prints: the holder of a lock in words, `--lock`'s result, `--status` and
//! `--list`, and the "waiting for …" progress line. Results go to stdout, everything else to
//! stderr.

use crate::config::LockName;
use crate::lock::{Contender, Ticket};
use crate::record::Record;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Who a contender is, in one line: `node-3 (pid 4242, root) for 2m13s: "Upgrade RPMs"`.
pub fn describe(contender: &Contender) -> String {
    match Holder::of(contender) {
        Holder::Distlock(r) => {
            let reason = if r.reason.is_empty() {
                String::new()
            } else {
                format!(": {:?}", r.reason)
            };
            format!(
                "{} (pid {}, {}) for {}{reason}",
                r.host,
                r.pid,
                r.user,
                age(&r.since)
            )
        }
        Holder::Legacy {
            since,
            host,
            reason,
        } => {
            let for_ = since
                .map(|s| format!(" for {}", format_age(elapsed_since(s))))
                .unwrap_or_default();
            format!("{host} (the old Go distlock){for_}: {reason:?}")
        }
        Holder::Other => format!(
            "{} (not distlock's: e.g. etcdctl lock; lease {:x})",
            contender.key, contender.lease
        ),
    }
}

/// What a key's value says about its owner.
pub enum Holder {
    Distlock(Record),
    Legacy {
        since: Option<u64>,
        host: String,
        reason: String,
    },
    Other,
}

impl Holder {
    pub fn of(contender: &Contender) -> Holder {
        if let Some(record) = Record::from_json(&contender.value) {
            return Holder::Distlock(record);
        }
        // The Go tool wrote `<unix-seconds>;<hostname>;<reason>` on the bare lock key.
        if !contender.key.ends_with('/') && contender.lease == 0 {
            let text = String::from_utf8_lossy(&contender.value);
            let mut parts = text.splitn(3, ';');
            if let (Some(secs), Some(host), reason) = (parts.next(), parts.next(), parts.next()) {
                if let Ok(secs) = secs.trim().parse::<u64>() {
                    return Holder::Legacy {
                        since: Some(secs),
                        host: host.to_string(),
                        reason: reason.unwrap_or_default().to_string(),
                    };
                }
            }
        }
        Holder::Other
    }
}

fn age(since: &str) -> String {
    match humantime::parse_rfc3339_weak(since) {
        Ok(t) => format_age(SystemTime::now().duration_since(t).unwrap_or_default()),
        Err(_) => "an unknown time".into(),
    }
}

fn elapsed_since(unix_secs: u64) -> Duration {
    let then = UNIX_EPOCH + Duration::from_secs(unix_secs);
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

/// `--lock`'s result, ready for `eval` in a shell script.
pub fn print_locked(ticket: &Ticket) {
    println!("DISTLOCK_KEY={}", ticket.key);
    println!("DISTLOCK_FENCING_TOKEN={}", ticket.revision);
}

pub fn print_status(name: &LockName, contenders: &[Contender]) {
    let Some((holder, waiters)) = contenders.split_first() else {
        println!("{name}: free");
        return;
    };
    println!("{name}: held by {}", describe(holder));
    println!(
        "  key {}  fencing token {}",
        holder.key, holder.create_revision
    );
    for (i, waiter) in waiters.iter().enumerate() {
        println!("  waiting {}: {}", i + 1, describe(waiter));
    }
}

pub fn print_list(locks: &[(String, Vec<Contender>)]) {
    let width = locks
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:width$}  {:>7}  HOLDER", "LOCK", "WAITING");
    for (name, contenders) in locks {
        let holder = contenders.first().map(describe).unwrap_or_default();
        let waiting = contenders.len().saturating_sub(1);
        println!("{name:width$}  {waiting:>7}  {holder}");
    }
}

/// "waiting for …" on stderr: after a second, again when the holder changes, and otherwise at
/// most once a minute.
pub struct Progress {
    name: String,
    quiet: bool,
    /// Looked at once a second; it costs no etcd request, the holder is already known.
    next_check: Instant,
    last: Option<(String, Instant)>,
}

impl Progress {
    pub fn new(name: &LockName, quiet: bool) -> Progress {
        Progress {
            name: name.to_string(),
            quiet,
            next_check: Instant::now() + Duration::from_secs(1),
            last: None,
        }
    }

    pub fn due(&self) -> Instant {
        if self.quiet {
            // Far enough never to fire.
            Instant::now() + Duration::from_secs(86400 * 365)
        } else {
            self.next_check
        }
    }

    pub fn report(&mut self, holder: Option<&Contender>) {
        let now = Instant::now();
        self.next_check = now + Duration::from_secs(1);
        let Some(holder) = holder else { return };
        let say = match &self.last {
            None => true,
            Some((key, at)) => *key != holder.key || now >= *at + Duration::from_secs(60),
        };
        if say {
            eprintln!(
                "distlock: waiting for {}: held by {}",
                self.name,
                describe(holder)
            );
            self.last = Some((holder.key.clone(), now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn foreign_values_are_described_not_parsed() {
        let c = |key: &str, value: &[u8], lease| Contender {
            key: key.into(),
            value: value.to_vec(),
            create_revision: 1,
            lease,
        };
        assert!(
            describe(&c("/distlock/x", b"1700000000;oldhost;old reason", 0)).contains("oldhost")
        );
        assert!(describe(&c("/distlock/x/1", b"", 7)).contains("not distlock's"));
        assert!(describe(&c("/distlock/x/1", &[0xff, 0, 1], 7)).contains("not distlock's"));
    }
}
