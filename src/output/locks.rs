//! `--status` and `--list`: which contenders hold a lock (one, or several with `--max-holders`
//! and `--shared`) and who waits, as text or JSON.

use super::{print_json, print_table};
use crate::access::Access;
use crate::config::{Format, LockName};
use crate::stamp::Found;
use crate::view::{clean, format_age, human_duration, utc, utc_of, Kind, View};
use serde_json::json;
use std::time::{Duration, SystemTime};

/// The number of holders a lock allows, as its holders' records say (1: a mutex).
pub(super) fn max_holders(views: &[View]) -> u32 {
    views
        .iter()
        .find(|v| v.holds)
        .and_then(|v| v.max_holders)
        .unwrap_or(1)
}

/// `--status`: the holders, then the waiters in queue order. `views` come from `queue`;
/// `stamp` is the `--min-interval` stamp, if one stands.
pub fn print_status(format: Format, name: &LockName, views: &[View], stamp: Option<&Found>) {
    let (holders, waiters): (Vec<&View>, Vec<&View>) = views.iter().partition(|v| v.holds);
    let n = max_holders(views);
    if format == Format::Json {
        return print_json(&json!({
            "lock": name.to_string(),
            "held": !holders.is_empty(),
            "holder": holders.first(),
            "waiters": waiters,
            "holders": holders,
            "max_holders": n,
            "min_interval": stamp.map(stamp_json),
        }));
    }
    let Some(first) = holders.first() else {
        say!("{name}: free");
        print_stamp(stamp);
        return;
    };
    // Say how each contender takes the lock only where that is not all exclusive.
    let modes = views.iter().any(|v| v.access != Access::Exclusive.as_str());
    if holders.len() == 1 && n == 1 {
        say!("{name}: held by {}", first.describe());
        print_holder(first, modes, "  ");
    } else {
        match n {
            1 => say!("{name}: held by {} (shared)", holders.len()),
            n => say!("{name}: held by {} of at most {n}", holders.len()),
        }
        for (i, holder) in holders.iter().enumerate() {
            say!("  holder {}: {}", i + 1, holder.describe());
            print_holder(holder, modes, "    ");
        }
    }
    if waiters.is_empty() {
        say!("  no one waiting");
    }
    for (i, waiter) in waiters.iter().enumerate() {
        let access = match modes {
            true => format!(" ({})", waiter.access),
            false => String::new(),
        };
        say!("  waiting {}{access}: {}", i + 1, waiter.describe());
    }
    print_stamp(stamp);
}

/// The `--min-interval` stamp in `--status`'s (and `--history`'s) JSON: the last successful
/// run, and when etcd expires the stamp (`null`: never, it is on no lease).
pub(super) fn stamp_json(found: &Found) -> serde_json::Value {
    let s = found.stamp.as_ref();
    json!({
        "key": found.key,
        "host": s.map(|s| &s.host),
        "pid": s.map(|s| s.pid),
        "started": s.map(|s| &s.started),
        "interval_s": s.map(|s| s.interval_s),
        "token": s.map(|s| s.token),
        "expires_in_s": found.expires_in_s,
    })
}

/// The `--min-interval` stamp in `--status`'s (and `--history`'s) text, if one stands.
pub(super) fn print_stamp(stamp: Option<&Found>) {
    let Some(found) = stamp else { return };
    let runs_out = match found.expires_in_s {
        Some(secs) => format!("next run allowed in {}", human_duration(secs.max(0) as u64)),
        None => "on no lease: runs are skipped until it is deleted".into(),
    };
    match &found.stamp {
        Some(s) => say!(
            "  min-interval:  last run {} on {} (token {}), every {}; {runs_out}",
            utc_of(&s.started),
            clean(&s.host, 60),
            s.token,
            human_duration(s.interval_s)
        ),
        None => say!(
            "  min-interval:  stamp {}; {runs_out}",
            clean(&found.key, 300)
        ),
    }
}

/// A holder's details, one per line.
fn print_holder(holder: &View, modes: bool, indent: &str) {
    let ttl = lease_line(holder);
    say!("{indent}key:           {}", clean(&holder.key, 300));
    say!("{indent}fencing token: {}", holder.fencing_token);
    if let Some(mode) = holder.mode {
        say!("{indent}mode:          {}", mode.as_str());
    }
    if modes {
        say!("{indent}access:        {}", holder.access);
    }
    if let Some(program) = &holder.program {
        say!("{indent}program:       {}", clean(program, 100));
    }
    if let Some(since) = &holder.since {
        say!("{indent}since:         {}", utc_of(since));
    }
    say!("{indent}lease:         {ttl}");
    if let Some(expires) = holder.expires.as_deref().filter(|e| !as_asked(holder, e)) {
        // What was asked for: a leader change restarts the lease's countdown (see README).
        say!("{indent}expires:       {} (as asked)", utc_of(expires));
    }
}

/// Whether the lease expires when the record says it was meant to (within a few seconds),
/// so that the lease line says it all.
fn as_asked(holder: &View, expires: &str) -> bool {
    let asked = humantime::parse_rfc3339_weak(expires).ok();
    let lease = holder.expires_at.as_deref();
    let lease = lease.and_then(|at| humantime::parse_rfc3339_weak(at).ok());
    match (asked, lease) {
        (Some(a), Some(l)) => {
            let apart = a.duration_since(l).or_else(|_| l.duration_since(a));
            apart.is_ok_and(|d| d <= Duration::from_secs(2))
        }
        _ => false,
    }
}

/// What a holder's lease line says: how long it lasts and whether anything renews it.
fn lease_line(holder: &View) -> String {
    let expiry = |left: i64, unless: &str| {
        let left = left.max(0) as u64;
        let at = SystemTime::now() + Duration::from_secs(left);
        format!(
            "expires in {}{unless}, at {}",
            human_duration(left),
            utc(at)
        )
    };
    match (holder.ttl_left, &holder.lease) {
        (None, None) => "held until unlocked".into(),
        (None, Some(_)) => "lease gone".into(),
        // A running command's lease: its TTL is what counts, the countdown restarts.
        (Some(left), _) if holder.renewed && holder.kind == Kind::Distlock => format!(
            "{}, renewed while it runs",
            human_duration(holder.ttl.unwrap_or(left.max(0) as u64))
        ),
        (Some(left), _) if holder.renewed => expiry(left, " unless renewed"),
        // Nothing renews it: a --lock --ttl, or --hold-at-least after the command.
        (Some(left), _) => expiry(left, ""),
    }
}

/// `--list`: one row per lock, in columns as wide as their widest cell.
pub fn print_list(format: Format, locks: &[(String, Vec<View>)]) {
    if format == Format::Json {
        let locks: Vec<_> = locks
            .iter()
            .map(|(name, views)| {
                let (holders, waiters): (Vec<&View>, Vec<&View>) =
                    views.iter().partition(|v| v.holds);
                json!({
                    "lock": name,
                    "holder": holders.first(),
                    "waiting": waiters.len(),
                    "holders": holders,
                    "max_holders": max_holders(views),
                })
            })
            .collect();
        return print_json(&json!({ "locks": locks }));
    }
    let rows: Vec<[String; 7]> = locks
        .iter()
        .map(|(name, views)| {
            let holder = views.iter().find(|v| v.holds);
            let holding = views.iter().filter(|v| v.holds).count();
            let holders = match max_holders(views) {
                1 => holding.to_string(),
                n => format!("{holding}/{n}"),
            };
            let who = holder.map_or(String::new(), |h| match h.kind {
                Kind::Distlock => h.who(false),
                Kind::Legacy => {
                    format!("{} (Go tool)", clean(h.host.as_deref().unwrap_or("?"), 60))
                }
                Kind::Other => "(etcdctl or other)".into(),
            });
            let age = holder
                .and_then(|h| h.age_seconds)
                .map_or("-".into(), |s| format_age(Duration::from_secs(s)));
            let reason = holder.and_then(|h| h.reason.as_deref()).unwrap_or("");
            [
                clean(name, 255),
                who,
                age,
                holder.map_or("-".into(), expires_cell),
                holders,
                (views.len() - holding).to_string(),
                clean(reason, 80),
            ]
        })
        .collect();
    let header = [
        "LOCK", "HOLDER", "FOR", "EXPIRES", "HOLDERS", "WAITING", "REASON",
    ];
    print_table(header, &rows);
}

/// When the holder's lock expires by itself, for `--list` (from its record, no request):
/// `in 59m 58s`; `never` for a lock held until unlocked; `-` where a running process renews
/// it (or another tool's key says nothing); `overdue` when the time asked for has passed but
/// the lease lives on (etcd restarted its countdown on a leader change).
fn expires_cell(holder: &View) -> String {
    let asked = holder.expires.as_deref();
    match (holder.kind, asked) {
        (Kind::Distlock, Some(at)) => match humantime::parse_rfc3339_weak(at) {
            Ok(at) => match at.duration_since(SystemTime::now()) {
                Ok(left) => format!("in {}", human_duration(left.as_secs())),
                Err(_) => "overdue".into(),
            },
            Err(_) => clean(at, 40),
        },
        (Kind::Distlock, None) if holder.exited().is_some() => "never".into(),
        (Kind::Legacy, _) => "never".into(),
        _ => "-".into(),
    }
}
