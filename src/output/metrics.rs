//! `--list --output=prometheus`: every lock's state in node_exporter's textfile-collector
//! format (the Prometheus text exposition format), for a cron job that writes it to a file
//! node_exporter reads. `promtool check metrics` accepts it (tests/it/follow.rs checks).

use crate::history::Entry;
use crate::view::View;
use std::fmt::Write;
use std::time::UNIX_EPOCH;

/// What the metrics of one lock are made from: its contenders, and its newest history entry.
struct Lock<'a> {
    name: &'a str,
    views: &'a [View],
    last: Option<&'a Entry>,
}

/// One metric family: its name, help, and each lock's sample: more labels (`outcome="exit"`)
/// and the value; `None` when the lock has none.
struct Family {
    name: &'static str,
    help: &'static str,
    sample: fn(&Lock) -> Option<(String, f64)>,
}

fn plain(value: f64) -> Option<(String, f64)> {
    Some((String::new(), value))
}

/// A time from a record or an entry, as Unix seconds.
fn unix(rfc3339: Option<&str>) -> Option<f64> {
    let at = humantime::parse_rfc3339_weak(rfc3339?).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_secs() as f64)
}

const FAMILIES: &[Family] = &[
    Family {
        name: "distlock_lock_holders",
        help: "Contenders that hold the lock now.",
        sample: |l| plain(l.views.iter().filter(|v| v.holds).count() as f64),
    },
    Family {
        name: "distlock_lock_waiters",
        help: "Contenders that wait for the lock.",
        sample: |l| plain(l.views.iter().filter(|v| !v.holds).count() as f64),
    },
    Family {
        name: "distlock_lock_max_holders",
        help: "How many may hold the lock at once (1: a mutex), as its holders' records say.",
        sample: |l| plain(super::locks::max_holders(l.views) as f64),
    },
    Family {
        name: "distlock_lock_held_seconds",
        help: "How long the longest holder has held the lock, by its host's clock; 0 when free.",
        sample: |l| {
            let held = l.views.iter().filter(|v| v.holds);
            plain(held.filter_map(|v| v.age_seconds).max().unwrap_or(0) as f64)
        },
    },
    Family {
        name: "distlock_lock_expiry_timestamp_seconds",
        help: "When the lock taken with --lock --ttl is meant to expire (Unix time); absent \
               when no holder's lock expires by itself.",
        sample: |l| {
            let held = l.views.iter().filter(|v| v.holds);
            let at = held.filter_map(|v| unix(v.expires.as_deref()));
            at.min_by(f64::total_cmp).and_then(plain)
        },
    },
    Family {
        name: "distlock_lock_last_outcome",
        help: "How the newest entry of the lock's history ended (outcome label: exit, signal, \
               lost, max_runtime, unlocked, held, expired, interrupted, not_started); always 1.",
        sample: |l| Some((format!(",outcome=\"{}\"", label(&l.last?.outcome)), 1.0)),
    },
    Family {
        name: "distlock_lock_last_exit_code",
        help: "The exit code distlock gave for the newest entry of the lock's history.",
        sample: |l| l.last?.exit_code.map(f64::from).and_then(plain),
    },
    Family {
        name: "distlock_lock_last_released_timestamp_seconds",
        help: "When the newest entry of the lock's history let go of the lock (Unix time); \
               absent while it holds it.",
        sample: |l| unix(l.last?.released.as_deref()).and_then(plain),
    },
];

/// The metrics of `locks` (name, contenders) and `last` (name, newest history entry), in the
/// text exposition format; a lock with a history and no contenders is free, not absent.
pub fn print_metrics(locks: &[(String, Vec<View>)], last: &[(String, Entry)]) {
    let mut names: Vec<&str> = locks.iter().map(|(n, _)| n.as_str()).collect();
    names.extend(last.iter().map(|(n, _)| n.as_str()));
    names.sort_unstable();
    names.dedup();
    let all: Vec<Lock> = names
        .into_iter()
        .map(|name| Lock {
            name,
            views: locks
                .iter()
                .find(|(n, _)| n == name)
                .map_or(&[][..], |(_, v)| v.as_slice()),
            last: last.iter().find(|(n, _)| n == name).map(|(_, e)| e),
        })
        .collect();
    let mut text = String::new();
    for family in FAMILIES {
        let _ = writeln!(text, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(text, "# TYPE {} gauge", family.name);
        for lock in &all {
            if let Some((labels, value)) = (family.sample)(lock) {
                let name = label(lock.name);
                let _ = writeln!(text, "{}{{lock=\"{name}\"{labels}}} {value}", family.name);
            }
        }
    }
    say!("{}", text.trim_end());
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
