//! `--list --output=prometheus`: every lock's state in node_exporter's textfile-collector
//! format (the Prometheus text exposition format), for a cron job that writes it to a file
//! node_exporter reads. `promtool check metrics` accepts it (tests/it/observe.rs checks).

use crate::view::View;
use std::fmt::Write;
use std::time::UNIX_EPOCH;

/// One metric family: its name, help, and the value each lock has (`None`: none for it).
struct Family {
    name: &'static str,
    help: &'static str,
    value: fn(&[View]) -> Option<f64>,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "distlock_lock_holders",
        help: "Contenders that hold the lock now.",
        value: |views| Some(views.iter().filter(|v| v.holds).count() as f64),
    },
    Family {
        name: "distlock_lock_waiters",
        help: "Contenders that wait for the lock.",
        value: |views| Some(views.iter().filter(|v| !v.holds).count() as f64),
    },
    Family {
        name: "distlock_lock_max_holders",
        help: "How many may hold the lock at once (1: a mutex), as its holders' records say.",
        value: |views| Some(super::locks::max_holders(views) as f64),
    },
    Family {
        name: "distlock_lock_held_seconds",
        help: "How long the longest holder has held the lock, by its host's clock; 0 when free.",
        value: |views| {
            let held = views.iter().filter(|v| v.holds);
            Some(held.filter_map(|v| v.age_seconds).max().unwrap_or(0) as f64)
        },
    },
    Family {
        name: "distlock_lock_expiry_timestamp_seconds",
        help: "When the lock taken with --lock --ttl is meant to expire (Unix time); absent \
               when no holder's lock expires by itself.",
        value: |views| {
            let at = views.iter().filter(|v| v.holds).filter_map(|v| {
                let at = humantime::parse_rfc3339_weak(v.expires.as_deref()?).ok()?;
                Some(at.duration_since(UNIX_EPOCH).ok()?.as_secs())
            });
            at.min().map(|s| s as f64)
        },
    },
];

/// The metrics of `locks` (name, contenders) in the text exposition format.
pub fn print_metrics(locks: &[(String, Vec<View>)]) {
    let mut text = String::new();
    for family in FAMILIES {
        let _ = writeln!(text, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(text, "# TYPE {} gauge", family.name);
        for (name, views) in locks {
            if let Some(value) = (family.value)(views) {
                let _ = writeln!(text, "{}{{lock=\"{}\"}} {value}", family.name, label(name));
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
